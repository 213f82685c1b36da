//! `remora cp`: copying files, directories and symlinks to and from a host.
//!
//! Invariants:
//! - Nothing half-written appears under a real name, on either side: bytes go to a temporary
//!   name beside the target (`.NAME.remora-KEY.part`), the SHA-256 of the whole file is compared
//!   end to end, and only then is the file renamed into place.
//! - A broken link reconnects (the client's [`ReconnectPolicy`](crate::resume::ReconnectPolicy))
//!   and the file continues from what the receiving side holds: the agent's partial file for an
//!   upload, the local one for a download. A later run of the same copy resumes the same way,
//!   because the temporary name depends on the target and the source's size and mtime.
//! - Uploads keep at most [`UPLOAD_WINDOW`] bytes unacknowledged; downloads are paced by the
//!   connection itself (the agent's bounded outbox), so memory stays bounded on both sides.
//! - Everything is checked before anything is written: a missing source, a directory without
//!   `-r`, a file over a directory fail without touching the destination.
//! - Symlinks are copied as links (their target text), never followed, at any depth.
//! - A download trusts nothing the host lists: the listing is validated first
//!   ([`crate::listing`]) and every path is made relative to a directory handle, never through
//!   a link ([`download`]).

// The local helpers return the crate's one error type, as the async API does; its SSH variant
// is large, but these run once per path, never in a hot loop.
#![allow(clippy::result_large_err)]

use std::{
    fs::{self, File},
    io::{self, Read, Seek},
    os::unix::{ffi::OsStrExt, fs::MetadataExt},
    path::{Path, PathBuf},
};

use remora_unix::read_prefix;
use remora_wire::{AgentBody, ClientBody, ClientFrame, FileData, FileEnd, PathKind, PathMeta, PutPath, SessionRef};
use sha2::{Digest, Sha256};

pub use crate::listing::base_name;
use crate::{
    error::{ClientError, CopyRefusal, Result},
    Client,
};

mod download;

pub(crate) use download::Downloader;

/// Unacknowledged upload bytes in flight: also the most a link cut can make the client send twice.
pub const UPLOAD_WINDOW: u64 = 4 * 1024 * 1024;
/// Bytes per data frame.
const CHUNK: usize = 256 * 1024;

/// How to copy.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// Relative remote paths start at this session's runspace directory (else home).
    pub session: Option<SessionRef>,
    /// Copy directories and their contents (`-r`).
    pub recursive: bool,
    /// Keep modes and mtimes (`-p`).
    pub preserve: bool,
}

/// Told about each file's progress (the CLI draws a progress bar).
pub trait CopyProgress: Send {
    /// A file starts; `done` bytes of it are already there (a resumed partial file).
    fn file(&mut self, name: &str, size: u64, done: u64);
    /// The current file moved on to `done` bytes.
    fn advance(&mut self, done: u64);
    /// The current file is complete.
    fn finished(&mut self);
}

/// No progress reporting.
pub struct NoProgress;

impl CopyProgress for NoProgress {
    fn file(&mut self, _: &str, _: u64, _: u64) {}
    fn advance(&mut self, _: u64) {}
    fn finished(&mut self) {}
}

/// One path written by a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// Where it came from.
    pub source: Vec<u8>,
    /// Where it was written (absolute on the host for uploads).
    pub path: Vec<u8>,
    pub kind: PathKind,
    /// Its size.
    pub size: u64,
    /// Bytes already there from an earlier, interrupted attempt.
    pub resumed_from: u64,
}

fn local(action: &'static str, path: &Path, hint: &'static str) -> impl FnOnce(io::Error) -> ClientError {
    let path = path.to_path_buf();
    move |cause| ClientError::Local {
        action,
        path,
        cause,
        hint,
    }
}

/// A local path's kind and attributes, symlinks not followed.
fn local_meta(path: &Path) -> Result<PathMeta> {
    let meta = fs::symlink_metadata(path).map_err(local("read", path, ""))?;
    let kind = if meta.is_dir() {
        PathKind::Dir
    } else if meta.file_type().is_symlink() {
        PathKind::Symlink
    } else {
        PathKind::File
    };
    let link_target = match kind {
        PathKind::Symlink => {
            use std::os::unix::ffi::OsStringExt;
            fs::read_link(path)
                .map_err(local("read", path, ""))?
                .into_os_string()
                .into_vec()
        }
        _ => Vec::new(),
    };
    if kind == PathKind::File {
        File::open(path).map_err(local("read", path, ""))?;
    }
    Ok(PathMeta {
        kind,
        size: if kind == PathKind::File { meta.len() } else { 0 },
        mode: meta.mode() & 0o7777,
        mtime: meta.mtime(),
        mtime_nanos: meta.mtime_nsec() as u32,
        link_target,
    })
}

/// Identifies a source version: a partial file is resumed only for the same one.
fn source_key(meta: &PathMeta) -> String {
    format!("{}-{}.{}", meta.size, meta.mtime, meta.mtime_nanos)
}

/// A local tree, parents first, children sorted by name.
fn walk(root: &Path, relative: &Path, entries: &mut Vec<(PathBuf, PathMeta)>) -> Result<()> {
    let dir = root.join(relative);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .map_err(local("list", &dir, ""))?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    names.sort();
    for name in names {
        let path = relative.join(name);
        let meta = local_meta(&root.join(&path))?;
        let is_dir = meta.kind == PathKind::Dir;
        entries.push((path.clone(), meta));
        if is_dir {
            walk(root, &path, entries)?;
        }
    }
    Ok(())
}

/// `base/relative`, or `base` itself for an empty `relative` (`join` would add a slash).
fn join_path(base: &Path, relative: &Path) -> PathBuf {
    match relative.as_os_str().is_empty() {
        true => base.to_path_buf(),
        false => base.join(relative),
    }
}

fn join_bytes(base: &[u8], relative: &Path) -> Vec<u8> {
    let mut path = base.to_vec();
    if !relative.as_os_str().is_empty() {
        if !path.ends_with(b"/") {
            path.push(b'/');
        }
        path.extend_from_slice(relative.as_os_str().as_bytes());
    }
    path
}

/// One `cp` upload on a client's connection (reached through [`Client::upload`]).
pub(crate) struct Uploader<'a> {
    pub(crate) client: &'a mut Client,
}

impl Uploader<'_> {
    /// Copies local `sources` to `dest` on the host (Copy-Item -ToSession).
    pub(crate) async fn upload(
        &mut self,
        sources: &[PathBuf],
        dest: &[u8],
        options: &CopyOptions,
        progress: &mut dyn CopyProgress,
    ) -> Result<Vec<Copied>> {
        let mut trees = Vec::new();
        for source in sources {
            let meta = local_meta(source)?;
            if meta.kind == PathKind::Dir && !options.recursive {
                return Err(CopyRefusal::DirectoryWithoutR(source.clone()).into());
            }
            let mut entries = vec![(PathBuf::new(), meta)];
            if entries[0].1.kind == PathKind::Dir {
                walk(source, Path::new(""), &mut entries)?;
            }
            trees.push((source, entries));
        }
        let mut copied = Vec::new();
        for (source, entries) in trees {
            let name = base_name(source.as_os_str().as_bytes());
            let mut root: Option<Vec<u8>> = None;
            for (relative, meta) in &entries {
                let request = PutPath {
                    session: options.session.clone(),
                    dest: match &root {
                        Some(root) => join_bytes(root, relative),
                        None => dest.to_vec(),
                    },
                    name: root.is_none().then(|| name.clone()),
                    into_dir: root.is_none() && sources.len() > 1,
                    meta: meta.clone(),
                    preserve: options.preserve,
                    source_key: source_key(meta),
                    within: root.clone(),
                };
                let local = join_path(source, relative);
                let done = self.put_resuming(request, &local, progress).await?;
                root.get_or_insert_with(|| done.path.clone());
                copied.push(done);
            }
            if options.preserve {
                let root = root.unwrap_or_default();
                for (relative, meta) in entries.iter().rev().filter(|(_, m)| m.kind == PathKind::Dir) {
                    let request = PutPath {
                        session: options.session.clone(),
                        dest: join_bytes(&root, relative),
                        name: None,
                        into_dir: false,
                        meta: meta.clone(),
                        preserve: true,
                        source_key: source_key(meta),
                        within: Some(root.clone()),
                    };
                    self.put_resuming(request, &join_path(source, relative), progress)
                        .await?;
                }
            }
        }
        Ok(copied)
    }

    /// One path up, again from what the host holds after each broken link.
    async fn put_resuming(
        &mut self,
        request: PutPath,
        local: &Path,
        progress: &mut dyn CopyProgress,
    ) -> Result<Copied> {
        loop {
            match self.put_once(request.clone(), local, progress).await {
                Err(err) if err.is_transient() && self.client.can_reconnect() => self.client.reconnect(&err).await?,
                result => return result,
            }
        }
    }

    async fn put_once(&mut self, request: PutPath, local: &Path, progress: &mut dyn CopyProgress) -> Result<Copied> {
        let meta = request.meta.clone();
        let source = local.as_os_str().as_bytes().to_vec();
        let connection = &mut self.client.connection;
        let id = connection.send(ClientBody::PutPath(request)).await?;
        let ready = match connection.next_reply(id).await? {
            AgentBody::PathDone(done) => {
                return Ok(Copied {
                    source,
                    path: done.path,
                    kind: meta.kind,
                    size: 0,
                    resumed_from: 0,
                })
            }
            AgentBody::PutReady(ready) => ready,
            other => return Err(connection.unexpected(&other)),
        };
        let mut file = File::open(local).map_err(local_err("read", local))?;
        let mut hasher = Sha256::new();
        read_prefix(&file, ready.offset, |bytes| hasher.update(bytes)).map_err(local_err("read", local))?;
        file.seek(io::SeekFrom::Start(ready.offset))
            .map_err(local_err("read", local))?;
        progress.file(&String::from_utf8_lossy(&ready.path), meta.size, ready.offset);
        let (mut sent, mut acked) = (ready.offset, ready.offset);
        let mut buf = vec![0u8; CHUNK];
        loop {
            while sent < acked + UPLOAD_WINDOW {
                let n = file.read(&mut buf).map_err(local_err("read", local))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                let data = FileData {
                    offset: sent,
                    data: buf[..n].to_vec(),
                };
                connection
                    .send_frame(ClientFrame {
                        id,
                        body: ClientBody::FileData(data),
                    })
                    .await?;
                sent += n as u64;
            }
            if sent < acked + UPLOAD_WINDOW {
                break;
            }
            match connection.next_reply(id).await? {
                AgentBody::FileAck(ack) => {
                    acked = ack.offset;
                    progress.advance(acked);
                }
                other => return Err(connection.unexpected(&other)),
            }
        }
        if sent != meta.size {
            return Err(CopyRefusal::ChangedWhileCopied {
                path: local.to_path_buf(),
                listed: meta.size,
                sent,
            }
            .into());
        }
        let end = FileEnd {
            size: sent,
            sha256: data_encoding::HEXLOWER.encode(&hasher.finalize()),
        };
        connection
            .send_frame(ClientFrame {
                id,
                body: ClientBody::FileEnd(end),
            })
            .await?;
        loop {
            match connection.next_reply(id).await? {
                AgentBody::FileAck(ack) => progress.advance(ack.offset),
                AgentBody::PathDone(done) => {
                    progress.finished();
                    return Ok(Copied {
                        source,
                        path: done.path,
                        kind: PathKind::File,
                        size: meta.size,
                        resumed_from: ready.offset,
                    });
                }
                other => return Err(connection.unexpected(&other)),
            }
        }
    }
}

fn local_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ClientError {
    let path = path.to_path_buf();
    move |cause| {
        let hint = match cause.raw_os_error() {
            Some(nix::libc::ENOSPC) => "; free space and run the same cp again to resume",
            _ => "",
        };
        ClientError::Local {
            action,
            path,
            cause,
            hint,
        }
    }
}
