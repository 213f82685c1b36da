//! Downloads (`remora cp HOST:SRC DEST`): the host's listing is validated
//! ([`crate::listing`]) before anything is written, then every path is created relative to a
//! directory handle ([`remora_unix::Dir`]).
//!
//! Invariants:
//! - Nothing is written outside DEST: the root goes to a name in a directory opened once, and
//!   each directory below it is entered by name with `O_NOFOLLOW|O_DIRECTORY`. A symlink, made by
//!   the copy or found on disk, is never traversed; symlink entries are made as links.
//! - Partial files are created `O_EXCL|O_NOFOLLOW` 0600 or resumed after `fstat` showed a
//!   regular file of ours with one link; anything else under the partial name is unlinked, never
//!   written through. Mode and mtime are set through the descriptor, without set-uid, set-gid or
//!   sticky bits, and the rename is relative to the directory handle.

use std::{
    ffi::OsStr,
    fs, io,
    os::unix::{ffi::OsStrExt, fs::FileExt},
    path::{Path, PathBuf},
};

use remora_unix::{part_name, read_prefix, set_meta, CopiedMeta, Dir, EntryKind, WriteBack};
use remora_wire::{AgentBody, ClientBody, GetPath, PathKind, PathMeta, ReadFile, RequestId};
use sha2::{Digest, Sha256};

use super::{join_bytes, join_path, local_err, source_key, Copied, CopyOptions, CopyProgress};
use crate::{
    error::{ClientError, CopyRefusal, Result},
    listing::{self, shown, Entry, Listing, Name},
    Client,
};

/// Where a download's root goes: `name` in the directory `parent`, opened once.
struct Place {
    parent: Dir,
    name: Name,
    /// `DEST` or `DEST/NAME`, for messages and the result.
    shown: PathBuf,
}

/// The attributes a downloaded path takes from the host's listing.
fn copied_meta(meta: &PathMeta) -> CopiedMeta {
    CopiedMeta {
        mode: meta.mode,
        mtime: meta.mtime,
        mtime_nanos: meta.mtime_nanos,
    }
}

fn conflict(what: &'static str, path: &Path) -> ClientError {
    CopyRefusal::WouldOverwrite {
        what,
        path: path.to_path_buf(),
    }
    .into()
}

/// The directory and name the root of `listing` goes to: inside `dest` when it is a directory
/// (or ends in `/`), else `dest` itself.
fn place(dest: &Path, into_dir: bool, listing: &Listing) -> Result<Place> {
    let (parent, name) = match into_dir {
        true => (dest.to_path_buf(), listing.name.clone()),
        false => {
            let name = dest
                .file_name()
                .and_then(|n| Name::new(n.as_bytes()))
                .ok_or_else(|| CopyRefusal::NoFileName(dest.to_path_buf()))?;
            let parent = dest
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            (parent.to_path_buf(), name)
        }
    };
    Ok(Place {
        parent: Dir::open(&parent).map_err(local_err("open directory", &parent))?,
        shown: parent.join(OsStr::from_bytes(name.as_bytes())),
        name,
    })
}

/// Refuses a download that would put a file over a directory or the other way round.
fn check_target(place: &Place, meta: &PathMeta) -> Result<()> {
    let existing = place
        .parent
        .kind(place.name.as_bytes())
        .map_err(local_err("read", &place.shown))?;
    match (meta.kind, existing) {
        (PathKind::Dir, Some(kind)) if kind != EntryKind::Dir => Err(conflict("non-directory", &place.shown)),
        (PathKind::File | PathKind::Symlink, Some(EntryKind::Dir)) => Err(conflict("directory", &place.shown)),
        _ => Ok(()),
    }
}

/// The directories of the entry being written, opened one component at a time from the root
/// (`O_NOFOLLOW`); kept while the listing stays below them, so a tree costs one open per
/// directory.
struct OpenDirs {
    root: Option<Dir>,
    below: Vec<(Name, Dir)>,
}

impl OpenDirs {
    /// The directory `path` (components below the root), opened from what is held.
    fn at(&mut self, path: &[Name], shown: &Path) -> Result<&Dir> {
        let held = self
            .below
            .iter()
            .zip(path)
            .take_while(|((held, _), name)| held == *name)
            .count();
        self.below.truncate(held);
        for name in &path[held..] {
            let parent = self.below.last().map(|(_, dir)| dir).or(self.root.as_ref());
            let parent = parent.ok_or_else(|| conflict("non-directory", shown))?;
            let dir = parent
                .subdir(name.as_bytes())
                .map_err(local_err("enter directory", shown))?;
            self.below.push((name.clone(), dir));
        }
        let top = self.below.last().map(|(_, dir)| dir).or(self.root.as_ref());
        top.ok_or_else(|| conflict("non-directory", shown))
    }
}

/// One `cp` download on a client's connection (reached through [`Client::download`]).
pub(crate) struct Downloader<'a> {
    pub(crate) client: &'a mut Client,
}

impl Downloader<'_> {
    /// Copies remote `sources` from the host to the local `dest` (Copy-Item -FromSession).
    pub(crate) async fn download(
        &mut self,
        sources: &[Vec<u8>],
        dest: &Path,
        options: &CopyOptions,
        progress: &mut dyn CopyProgress,
    ) -> Result<Vec<Copied>> {
        let dest_is_dir = fs::metadata(dest).is_ok_and(|m| m.is_dir());
        if sources.len() > 1 && !dest_is_dir {
            return Err(CopyRefusal::NotADirectory(dest.to_path_buf()).into());
        }
        let into_dir = dest_is_dir || dest.as_os_str().as_bytes().ends_with(b"/");
        let mut lists = Vec::new();
        for source in sources {
            let listing = self.listing(source, options).await?;
            let place = place(dest, into_dir, &listing)?;
            check_target(&place, &listing.entries[0].meta)?;
            lists.push((listing, place));
        }
        let mut copied = Vec::new();
        for (listing, place) in lists {
            self.download_tree(&listing, &place, options, progress, &mut copied)
                .await?;
        }
        Ok(copied)
    }

    /// The host's listing of `source`, validated.
    async fn listing(&mut self, source: &[u8], options: &CopyOptions) -> Result<Listing> {
        let request = GetPath {
            session: options.session.clone(),
            path: source.to_vec(),
            recursive: options.recursive,
        };
        let list = self.get_resuming(request).await?;
        listing::validate(list, source, options.recursive).map_err(|problem| ClientError::BadListing {
            host: self.client.connection.host().to_string(),
            asked: shown(source),
            problem,
        })
    }

    async fn download_tree(
        &mut self,
        listing: &Listing,
        place: &Place,
        options: &CopyOptions,
        progress: &mut dyn CopyProgress,
        copied: &mut Vec<Copied>,
    ) -> Result<()> {
        let mut dirs = OpenDirs {
            root: None,
            below: Vec::new(),
        };
        for entry in &listing.entries {
            let shown = join_path(&place.shown, Path::new(OsStr::from_bytes(&entry.raw)));
            let remote = join_bytes(&listing.root, Path::new(OsStr::from_bytes(&entry.raw)));
            let (dir, name) = match entry.path.split_last() {
                None => (&place.parent, &place.name),
                Some((name, parents)) => (dirs.at(parents, &shown)?, name),
            };
            let done = match entry.meta.kind {
                PathKind::Dir => make_dir(dir, name, &shown, &entry.meta, options.preserve)?,
                PathKind::Symlink => make_symlink(dir, name, &shown, &entry.meta)?,
                _ => {
                    let target = Target {
                        dir,
                        name,
                        shown: &shown,
                    };
                    self.fetch_resuming(&remote, &target, &entry.meta, options.preserve, progress)
                        .await?
                }
            };
            if entry.path.is_empty() && entry.meta.kind == PathKind::Dir {
                let root = place.parent.subdir(place.name.as_bytes());
                dirs.root = Some(root.map_err(local_err("enter directory", &shown))?);
            }
            copied.push(Copied { source: remote, ..done });
        }
        if options.preserve {
            drop(dirs.below);
            set_dir_times(place, dirs.root.as_ref(), &listing.entries)?;
        }
        Ok(())
    }

    async fn get_resuming(&mut self, request: GetPath) -> Result<remora_wire::PathList> {
        loop {
            let reply = self
                .client
                .connection
                .request(ClientBody::GetPath(request.clone()))
                .await;
            match reply {
                Err(err) if err.is_transient() && self.client.can_reconnect() => self.client.reconnect(&err).await?,
                Err(err) => return Err(err),
                Ok(AgentBody::PathList(list)) => return Ok(list),
                Ok(other) => return Err(self.client.connection.unexpected(&other)),
            }
        }
    }

    async fn fetch_resuming(
        &mut self,
        remote: &[u8],
        target: &Target<'_>,
        meta: &PathMeta,
        preserve: bool,
        progress: &mut dyn CopyProgress,
    ) -> Result<Copied> {
        let part = part_name(target.name.as_bytes(), &[source_key(meta).as_bytes(), remote]);
        let mut first_offset = None;
        loop {
            match self
                .fetch_once(remote, target, &part, meta, preserve, progress, &mut first_offset)
                .await
            {
                Err(err) if err.is_transient() && self.client.can_reconnect() => self.client.reconnect(&err).await?,
                Err(err) => {
                    if !err.is_transient() {
                        let _ = target.dir.remove(&part);
                    }
                    return Err(err);
                }
                Ok(copied) => return Ok(copied),
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn fetch_once(
        &mut self,
        remote: &[u8],
        target: &Target<'_>,
        part: &[u8],
        meta: &PathMeta,
        preserve: bool,
        progress: &mut dyn CopyProgress,
        first_offset: &mut Option<u64>,
    ) -> Result<Copied> {
        let shown = target.shown;
        let (file, _) = target.dir.resume_or_create(part).map_err(local_err("create", shown))?;
        let mut offset = file.metadata().map(|m| m.len()).unwrap_or(0);
        if offset > meta.size {
            file.set_len(0).map_err(local_err("write", shown))?;
            offset = 0;
        }
        first_offset.get_or_insert(offset);
        let mut hasher = Sha256::new();
        read_prefix(&file, offset, |bytes| hasher.update(bytes))
            .map_err(local_err("read the partial file of", shown))?;
        progress.file(&shown.to_string_lossy(), meta.size, offset);
        let request = ReadFile {
            path: remote.to_vec(),
            offset,
        };
        let id: RequestId = self.client.connection.send(ClientBody::ReadFile(request)).await?;
        let mut at = offset;
        let mut write_back = WriteBack::from(offset);
        loop {
            match self.client.connection.next_reply(id).await? {
                AgentBody::FileData(data) if data.offset == at => {
                    file.write_all_at(&data.data, at).map_err(local_err("write", shown))?;
                    hasher.update(&data.data);
                    at += data.data.len() as u64;
                    write_back.written(&file, at);
                    progress.advance(at);
                }
                AgentBody::FileEnd(end) => {
                    let sha256 = data_encoding::HEXLOWER.encode(&hasher.finalize());
                    if end.size != at || end.sha256 != sha256 {
                        let _ = target.dir.remove(part);
                        return Err(CopyRefusal::ChecksumMismatch {
                            path: shown.to_path_buf(),
                            got_size: at,
                            got_sha256: sha256,
                            size: end.size,
                            sha256: end.sha256,
                        }
                        .into());
                    }
                    let finish = || -> io::Result<()> {
                        file.sync_data()?;
                        set_meta(&file, copied_meta(meta), preserve)?;
                        target.dir.rename(part, target.name.as_bytes())
                    };
                    finish().map_err(local_err("write", shown))?;
                    progress.finished();
                    return Ok(Copied {
                        source: remote.to_vec(),
                        path: shown.as_os_str().as_bytes().to_vec(),
                        kind: PathKind::File,
                        size: at,
                        resumed_from: first_offset.unwrap_or(0),
                    });
                }
                other => return Err(self.client.connection.unexpected(&other)),
            }
        }
    }
}

/// A file being downloaded: `name` in `dir`.
struct Target<'a> {
    dir: &'a Dir,
    name: &'a Name,
    shown: &'a Path,
}

fn make_dir(parent: &Dir, name: &Name, shown: &Path, meta: &PathMeta, preserve: bool) -> Result<Copied> {
    match parent.kind(name.as_bytes()).map_err(local_err("read", shown))? {
        Some(EntryKind::Dir) => {}
        Some(_) => return Err(conflict("non-directory", shown)),
        None => parent
            .mkdir(name.as_bytes(), meta.mode & 0o777 | 0o700)
            .map_err(local_err("create directory", shown))?,
    }
    if preserve {
        let dir = parent
            .subdir(name.as_bytes())
            .map_err(local_err("enter directory", shown))?;
        set_meta(&dir, copied_meta(meta), true).map_err(local_err("set the mode of", shown))?;
    }
    Ok(copied_path(shown, PathKind::Dir))
}

fn make_symlink(parent: &Dir, name: &Name, shown: &Path, meta: &PathMeta) -> Result<Copied> {
    if parent.kind(name.as_bytes()).map_err(local_err("read", shown))? == Some(EntryKind::Dir) {
        return Err(conflict("directory", shown));
    }
    let part = part_name(name.as_bytes(), &[b"link".as_slice(), &meta.link_target]);
    let _ = parent.remove(&part);
    let made = parent
        .symlink(&meta.link_target, &part)
        .and_then(|()| parent.rename(&part, name.as_bytes()));
    if let Err(err) = made {
        let _ = parent.remove(&part);
        return Err(local_err("create symlink", shown)(err));
    }
    Ok(copied_path(shown, PathKind::Symlink))
}

/// `-p`: each directory gets its mode and mtime again after its contents were written, deepest
/// first, each opened from the root by name (`O_NOFOLLOW`).
fn set_dir_times(place: &Place, root: Option<&Dir>, entries: &[Entry]) -> Result<()> {
    let Some(root) = root else { return Ok(()) };
    for entry in entries.iter().rev().filter(|e| e.meta.kind == PathKind::Dir) {
        let shown = join_path(&place.shown, Path::new(OsStr::from_bytes(&entry.raw)));
        let mut opened = None;
        for name in &entry.path {
            let parent = opened.as_ref().unwrap_or(root);
            opened = Some(
                parent
                    .subdir(name.as_bytes())
                    .map_err(local_err("enter directory", &shown))?,
            );
        }
        let dir = opened.as_ref().unwrap_or(root);
        set_meta(dir, copied_meta(&entry.meta), true).map_err(local_err("set the mode and mtime of", &shown))?;
    }
    Ok(())
}

fn copied_path(path: &Path, kind: PathKind) -> Copied {
    Copied {
        source: Vec::new(),
        path: path.as_os_str().as_bytes().to_vec(),
        kind,
        size: 0,
        resumed_from: 0,
    }
}
