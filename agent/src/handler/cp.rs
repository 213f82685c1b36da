//! `remora cp`: creating paths on the host (`PutPath`, `FileData`, `FileEnd`) and reading them
//! (`GetPath`, `ReadFile`).
//!
//! Invariants:
//! - Nothing half-written appears under a real name: a file's bytes go to a temporary name
//!   beside the target (`.NAME.remora-KEY.part`), the SHA-256 of the whole file is compared with
//!   the client's, and only then is it renamed into place. A mismatch or a failed write removes
//!   the temporary file; a broken link leaves it, so the next attempt resumes it.
//! - The temporary name depends on the target and the source's size and mtime (`source_key`):
//!   a later `cp` of the same source finds it and continues from its length; a changed source
//!   starts afresh.
//! - An upload holds an flock on its partial file. A reconnecting client waits briefly for its
//!   old connection to let go and resumes; a second client copying the same source to the same
//!   target at the same time gets a fresh name of its own. Writes are positional (at the frame's
//!   offset) in any case.
//! - Files are written by the agent, so as the user and under the agent's umask (the user's).
//!   Remote paths are plain paths: relative ones start at the session's runspace directory (or
//!   home), `..` included, as with scp.
//! - The target's directory is opened once and the target is made relative to it
//!   ([`remora_unix::Dir`]), so a link another local user plants under the target's or the
//!   partial file's name (in /tmp, a group-writable directory) is replaced or refused, never
//!   written through or chmod-ed: partial files are created `O_EXCL|O_NOFOLLOW` 0600, or resumed
//!   after `fstat` showed a regular file of ours with one link. Mode and mtime are set through the
//!   descriptor and never carry set-uid, set-gid or sticky bits.

use std::{
    collections::HashMap,
    ffi::OsStr,
    fs::{self, File},
    io::{self, Read},
    os::unix::{
        ffi::OsStrExt,
        ffi::OsStringExt,
        fs::{FileExt, MetadataExt},
    },
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use nix::fcntl::{Flock, FlockArg};
use remora_unix::{read_prefix, set_meta, CopiedMeta, Dir, EntryKind};
use remora_wire::{
    partial::part_name, AgentBody, ErrorCode, FileAck, FileData, FileEnd, GetPath, ListedPath, PathDone, PathKind,
    PathList, PathMeta, PutPath, PutReady, ReadFile, RequestId, SessionRef,
};
use sha2::{Digest, Sha256};

use super::{Ctx, Refusal};

/// Bytes per data frame of a download.
const CHUNK: usize = 256 * 1024;
/// Upload progress between acknowledgements.
const ACK_STEP: u64 = 1024 * 1024;
/// Most paths one `GetPath` lists.
const MAX_LISTED: usize = 1_000_000;
/// How long an upload waits for another one to let go of the same partial file (the old
/// connection of a client that reconnected, not yet noticed gone) before using a fresh name.
const PART_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Uploads open on one connection, by the request id of their `PutPath`.
#[derive(Default)]
pub struct Uploads(Mutex<HashMap<RequestId, Upload>>);

impl Uploads {
    fn take(&self, id: RequestId) -> Option<Upload> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&id)
    }

    fn put(&self, id: RequestId, upload: Upload) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(id, upload);
    }
}

/// A file being uploaded to its temporary name, locked (flock) so that no other upload writes it.
pub struct Upload {
    file: Flock<File>,
    /// The target's directory, opened once; `part` and the target's name are names in it.
    dir: Dir,
    part: Vec<u8>,
    name: Vec<u8>,
    /// The target's path, for messages and the reply.
    target: PathBuf,
    hasher: Sha256,
    written: u64,
    started_at: u64,
    acked: u64,
    meta: PathMeta,
    preserve: bool,
}

/// A refusal naming the path and what went wrong with it.
fn io_refusal(ctx: &Ctx, action: &str, path: &Path, err: &io::Error) -> Refusal {
    let code = match err.kind() {
        io::ErrorKind::NotFound => ErrorCode::PathNotFound,
        io::ErrorKind::PermissionDenied => ErrorCode::PermissionDenied,
        _ if matches!(err.raw_os_error(), Some(nix::libc::ENOSPC) | Some(nix::libc::EDQUOT)) => ErrorCode::NoSpace,
        _ => ErrorCode::IoFailed,
    };
    let next = match code {
        ErrorCode::PathNotFound => "; check the path",
        ErrorCode::PermissionDenied => "; pick a path the user may write, or change its permissions",
        ErrorCode::NoSpace => "; free space on the host and run the same cp again to resume",
        _ => "",
    };
    Refusal::new(
        code,
        format!("{}: cannot {action} {}: {err}{next}", ctx.daemon.host, path.display()),
    )
}

fn conflict(ctx: &Ctx, message: String) -> Refusal {
    Refusal::new(ErrorCode::PathConflict, format!("{}: {message}", ctx.daemon.host))
}

fn bytes_path(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}

/// Where relative remote paths start: the session's runspace directory, else home.
fn base_dir(ctx: &Ctx, session: &Option<SessionRef>) -> Result<PathBuf, Refusal> {
    let home = || {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/".into())
    };
    match session {
        None => Ok(home()),
        Some(reference) => {
            let session = ctx.find_session(reference)?;
            Ok(session.runspace_dir().unwrap_or_else(home))
        }
    }
}

fn resolve(base: &Path, path: &[u8]) -> PathBuf {
    let path = bytes_path(path);
    match path.as_os_str().is_empty() {
        true => base.to_path_buf(),
        false => base.join(path),
    }
}

/// `PutPath`: create a directory or symlink at once, or open a file's temporary name.
pub async fn put(ctx: &Ctx, id: RequestId, request: PutPath) -> Result<(), Refusal> {
    let base = base_dir(ctx, &request.session)?;
    let dest = resolve(&base, &request.dest);
    let dest_is_dir = fs::metadata(&dest).is_ok_and(|m| m.is_dir());
    let target = match &request.name {
        Some(name) if dest_is_dir || request.dest.ends_with(b"/") => dest.join(OsStr::from_bytes(name)),
        Some(_) if request.into_dir => {
            return Err(conflict(
                ctx,
                format!(
                    "{} is not a directory; several sources need a directory to copy into",
                    dest.display()
                ),
            ));
        }
        _ => dest,
    };
    let place = match &request.within {
        Some(root) => Place::within(ctx, &resolve(&base, root), target)?,
        None => Place::open(ctx, target)?,
    };
    let existing = place
        .dir
        .kind(&place.name)
        .map_err(|e| io_refusal(ctx, "read", &place.target, &e))?;
    match request.meta.kind {
        PathKind::Dir => put_dir(ctx, id, &request, &place, existing).await,
        PathKind::Symlink => put_symlink(ctx, id, &request, &place, existing).await,
        PathKind::File => put_file(ctx, id, &request, place, existing).await,
        PathKind::Unknown => Err(Refusal::new(
            ErrorCode::InvalidRequest,
            "unknown path kind; upgrade remora-agent",
        )),
    }
}

/// Where an uploaded path goes: `name` in the directory `dir`, opened once.
struct Place {
    dir: Dir,
    name: Vec<u8>,
    target: PathBuf,
}

impl Place {
    /// `target` as a name in its parent directory, opened by path (the user's own request).
    fn open(ctx: &Ctx, target: PathBuf) -> Result<Place, Refusal> {
        let name = target.file_name().map(|n| n.as_bytes().to_vec());
        let Some(name) = name.filter(|n| n != b"..") else {
            let message = format!("{} names no file to create; name one", target.display());
            return Err(conflict(ctx, message));
        };
        let parent = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let dir = Dir::open(parent).map_err(|e| io_refusal(ctx, "open directory", parent, &e))?;
        Ok(Place { dir, name, target })
    }

    /// `target` inside the tree at `root` (made by an earlier request of the same copy): the
    /// root is opened by its path, each directory below it by name without following links.
    fn within(ctx: &Ctx, root: &Path, target: PathBuf) -> Result<Place, Refusal> {
        let outside = || {
            let message = format!("{} is not inside {}", target.display(), root.display());
            Refusal::new(ErrorCode::InvalidRequest, message)
        };
        let below = target.strip_prefix(root).map_err(|_| outside())?;
        let mut names = Vec::new();
        for component in below.components() {
            match component {
                std::path::Component::Normal(name) => names.push(name.as_bytes().to_vec()),
                _ => return Err(outside()),
            }
        }
        let Some(name) = names.pop() else {
            return Place::open(ctx, target);
        };
        let mut dir = Dir::open(root).map_err(|e| io_refusal(ctx, "open directory", root, &e))?;
        let mut at = root.to_path_buf();
        for step in &names {
            at.push(OsStr::from_bytes(step));
            dir = dir
                .subdir(step)
                .map_err(|e| io_refusal(ctx, "enter directory", &at, &e))?;
        }
        Ok(Place { dir, name, target })
    }
}

/// The attributes an uploaded path takes from the client's request.
fn copied_meta(meta: &PathMeta) -> CopiedMeta {
    CopiedMeta {
        mode: meta.mode,
        mtime: meta.mtime,
        mtime_nanos: meta.mtime_nanos,
    }
}

async fn put_dir(
    ctx: &Ctx,
    id: RequestId,
    request: &PutPath,
    place: &Place,
    existing: Option<EntryKind>,
) -> Result<(), Refusal> {
    let target = &place.target;
    match existing {
        Some(EntryKind::Dir) => {}
        Some(_) => {
            return Err(conflict(
                ctx,
                format!("cannot overwrite non-directory {} with a directory", target.display()),
            ));
        }
        None => place
            .dir
            .mkdir(&place.name, request.meta.mode & 0o777 | 0o700)
            .map_err(|e| io_refusal(ctx, "create directory", target, &e))?,
    }
    // With -p the client sends each directory again after its contents, so its mtime sticks.
    if request.preserve {
        let set = || -> io::Result<()> {
            let dir = place.dir.subdir(&place.name)?;
            set_meta(&dir, copied_meta(&request.meta), true)
        };
        set().map_err(|e| io_refusal(ctx, "set the mode and mtime of", target, &e))?;
    }
    done(ctx, id, target, 0).await
}

async fn put_symlink(
    ctx: &Ctx,
    id: RequestId,
    request: &PutPath,
    place: &Place,
    existing: Option<EntryKind>,
) -> Result<(), Refusal> {
    let target = &place.target;
    if existing == Some(EntryKind::Dir) {
        return Err(conflict(
            ctx,
            format!("cannot overwrite directory {} with a symlink", target.display()),
        ));
    }
    let part = part_name(
        &place.name,
        &[request.source_key.as_bytes(), target.as_os_str().as_bytes()],
    );
    let _ = place.dir.remove(&part);
    let made = place
        .dir
        .symlink(&request.meta.link_target, &part)
        .and_then(|()| place.dir.rename(&part, &place.name));
    if let Err(err) = made {
        let _ = place.dir.remove(&part);
        return Err(io_refusal(ctx, "create symlink", target, &err));
    }
    done(ctx, id, target, 0).await
}

async fn put_file(
    ctx: &Ctx,
    id: RequestId,
    request: &PutPath,
    place: Place,
    existing: Option<EntryKind>,
) -> Result<(), Refusal> {
    let Place { dir, name, target } = place;
    if existing == Some(EntryKind::Dir) {
        return Err(conflict(
            ctx,
            format!("cannot overwrite directory {} with a file", target.display()),
        ));
    }
    let (part, file) = open_part(&dir, &name, &target, &request.source_key)
        .await
        .map_err(|e| io_refusal(ctx, "create", &target, &e))?;
    let mut hasher = Sha256::new();
    let mut offset = file.metadata().map(|m| m.len()).unwrap_or(0);
    if offset > request.meta.size {
        offset = 0;
        file.set_len(0).map_err(|e| io_refusal(ctx, "write", &target, &e))?;
    }
    read_prefix(&file, offset, |bytes| hasher.update(bytes))
        .map_err(|e| io_refusal(ctx, "read the partial file of", &target, &e))?;
    let ready = PutReady {
        path: target.as_os_str().as_bytes().to_vec(),
        offset,
    };
    ctx.uploads.put(
        id,
        Upload {
            file,
            dir,
            part,
            name,
            target,
            hasher,
            written: offset,
            started_at: offset,
            acked: offset,
            meta: request.meta.clone(),
            preserve: request.preserve,
        },
    );
    ctx.send(id, AgentBody::PutReady(ready)).await?;
    Ok(())
}

/// Opens and locks the target's partial file in `dir` (resumed only when it is a regular file
/// of ours with one link; anything else under the name is replaced, never followed). Another
/// upload of the same source to the same target holding it (two clients at once) gets a fresh
/// name of its own after a short wait.
async fn open_part(dir: &Dir, name: &[u8], target: &Path, source_key: &str) -> io::Result<(Vec<u8>, Flock<File>)> {
    let part = part_name(name, &[source_key.as_bytes(), target.as_os_str().as_bytes()]);
    let deadline = tokio::time::Instant::now() + PART_LOCK_WAIT;
    loop {
        let (file, _) = dir.resume_or_create(&part)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            // Still the file under that name (not one another upload renamed into place meanwhile).
            Ok(locked) if dir.holds(&part, &locked) => return Ok((part, locked)),
            Ok(_) => {}
            Err((_, nix::errno::Errno::EWOULDBLOCK)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => break,
            Err((_, errno)) => return Err(errno.into()),
        }
    }
    let fresh = part_name(
        name,
        &[
            format!("{source_key}-{}", uuid::Uuid::new_v4()).as_bytes(),
            target.as_os_str().as_bytes(),
        ],
    );
    let file = dir.create_new(&fresh)?;
    let locked = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| errno)?;
    Ok((fresh, locked))
}

/// `FileData` of an upload: written at its offset; acknowledged every [`ACK_STEP`].
pub async fn data(ctx: &Ctx, id: RequestId, data: FileData) {
    let Some(mut upload) = ctx.uploads.take(id) else {
        return ctx
            .send_error(id, ErrorCode::InvalidRequest, "file data for no open upload".into())
            .await;
    };
    let skip = upload.written.saturating_sub(data.offset) as usize;
    if data.offset > upload.written {
        let message = format!(
            "file data at {} past the {} bytes written; resend",
            data.offset, upload.written
        );
        return ctx.send_error(id, ErrorCode::InvalidRequest, message).await;
    }
    let fresh = &data.data[skip.min(data.data.len())..];
    if let Err(err) = upload.file.write_all_at(fresh, upload.written) {
        let refusal = io_refusal(ctx, "write", &upload.target, &err);
        let _ = upload.dir.remove(&upload.part);
        return ctx.send_error(id, refusal.code, refusal.message).await;
    }
    upload.hasher.update(fresh);
    upload.written += fresh.len() as u64;
    let ack = (upload.written >= upload.acked + ACK_STEP).then_some(upload.written);
    if let Some(offset) = ack {
        upload.acked = offset;
    }
    ctx.uploads.put(id, upload);
    if let Some(offset) = ack {
        let _ = ctx.send(id, AgentBody::FileAck(FileAck { offset })).await;
    }
}

/// `FileEnd` of an upload: checks size and SHA-256, applies mode and mtime, renames into place.
pub async fn end(ctx: &Ctx, id: RequestId, end: FileEnd) -> Result<(), Refusal> {
    let upload = ctx
        .uploads
        .take(id)
        .ok_or_else(|| Refusal::new(ErrorCode::InvalidRequest, "end of file for no open upload"))?;
    let sha256 = data_encoding::HEXLOWER.encode(&upload.hasher.clone().finalize());
    if upload.written != end.size || sha256 != end.sha256 {
        let _ = upload.dir.remove(&upload.part);
        let message = format!(
            "{}: {} arrived as {} bytes with SHA-256 {sha256}, but the source has {} bytes with SHA-256 {}; nothing was written, run cp again",
            ctx.daemon.host,
            upload.target.display(),
            upload.written,
            end.size,
            end.sha256
        );
        return Err(Refusal::new(ErrorCode::ChecksumMismatch, message));
    }
    let finish = || -> io::Result<()> {
        upload.file.sync_data()?;
        set_meta(&*upload.file, copied_meta(&upload.meta), upload.preserve)?;
        upload.dir.rename(&upload.part, &upload.name)
    };
    if let Err(err) = finish() {
        let _ = upload.dir.remove(&upload.part);
        return Err(io_refusal(ctx, "write", &upload.target, &err));
    }
    done(ctx, id, &upload.target, upload.written - upload.started_at).await
}

async fn done(ctx: &Ctx, id: RequestId, path: &Path, bytes: u64) -> Result<(), Refusal> {
    let done = PathDone {
        path: path.as_os_str().as_bytes().to_vec(),
        bytes,
    };
    ctx.send(id, AgentBody::PathDone(done)).await?;
    Ok(())
}

/// `GetPath`: describe a path and, recursively, a directory's tree.
pub async fn get(ctx: &Ctx, id: RequestId, request: GetPath) -> Result<(), Refusal> {
    let base = base_dir(ctx, &request.session)?;
    let root = resolve(&base, &request.path);
    let meta = fs::symlink_metadata(&root).map_err(|e| io_refusal(ctx, "read", &root, &e))?;
    let mut entries = vec![ListedPath {
        path: Vec::new(),
        meta: path_meta(&root, &meta),
    }];
    if meta.is_dir() {
        if !request.recursive {
            return Err(conflict(
                ctx,
                format!("{} is a directory; copy it with -r", root.display()),
            ));
        }
        walk(ctx, &root, Path::new(""), &mut entries)?;
    } else if meta.is_file() {
        File::open(&root).map_err(|e| io_refusal(ctx, "read", &root, &e))?;
    }
    let list = PathList {
        root: root.as_os_str().as_bytes().to_vec(),
        entries,
    };
    ctx.send(id, AgentBody::PathList(list)).await?;
    Ok(())
}

fn walk(ctx: &Ctx, root: &Path, relative: &Path, entries: &mut Vec<ListedPath>) -> Result<(), Refusal> {
    let dir = root.join(relative);
    let listing = fs::read_dir(&dir).map_err(|e| io_refusal(ctx, "list", &dir, &e))?;
    let mut names: Vec<_> = listing.filter_map(|e| e.ok().map(|e| e.file_name())).collect();
    names.sort();
    for name in names {
        let path = relative.join(&name);
        let full = root.join(&path);
        let meta = fs::symlink_metadata(&full).map_err(|e| io_refusal(ctx, "read", &full, &e))?;
        if entries.len() >= MAX_LISTED {
            return Err(Refusal::new(
                ErrorCode::LimitReached,
                format!(
                    "{} holds more than {MAX_LISTED} paths; copy it in parts",
                    root.display()
                ),
            ));
        }
        entries.push(ListedPath {
            path: path.as_os_str().as_bytes().to_vec(),
            meta: path_meta(&full, &meta),
        });
        if meta.is_dir() {
            walk(ctx, root, &path, entries)?;
        }
    }
    Ok(())
}

/// A path's kind and attributes as the wire has them.
pub fn path_meta(path: &Path, meta: &fs::Metadata) -> PathMeta {
    let kind = if meta.is_dir() {
        PathKind::Dir
    } else if meta.file_type().is_symlink() {
        PathKind::Symlink
    } else {
        PathKind::File
    };
    PathMeta {
        kind,
        size: if kind == PathKind::File { meta.len() } else { 0 },
        mode: meta.mode() & 0o7777,
        mtime: meta.mtime(),
        mtime_nanos: meta.mtime_nsec() as u32,
        link_target: match kind {
            PathKind::Symlink => fs::read_link(path)
                .map(|t| t.into_os_string().into_vec())
                .unwrap_or_default(),
            _ => Vec::new(),
        },
    }
}

/// `ReadFile`: the file's bytes from `offset`, then its size and SHA-256. Runs as a stream of
/// the connection; the connection's bounded outbox paces it.
pub async fn read(ctx: Arc<Ctx>, id: RequestId, request: ReadFile) -> Result<(), Refusal> {
    let path = bytes_path(&request.path);
    let mut file = File::open(&path).map_err(|e| io_refusal(&ctx, "read", &path, &e))?;
    let mut hasher = Sha256::new();
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let offset = request.offset.min(size);
    read_prefix(&file, offset, |bytes| hasher.update(bytes)).map_err(|e| io_refusal(&ctx, "read", &path, &e))?;
    std::io::Seek::seek(&mut file, io::SeekFrom::Start(offset)).map_err(|e| io_refusal(&ctx, "read", &path, &e))?;
    let mut at = offset;
    loop {
        let mut buf = vec![0u8; CHUNK];
        let n = file.read(&mut buf).map_err(|e| io_refusal(&ctx, "read", &path, &e))?;
        if n == 0 {
            break;
        }
        buf.truncate(n);
        hasher.update(&buf);
        let frame = FileData { offset: at, data: buf };
        at += n as u64;
        tokio::select! {
            sent = ctx.send(id, AgentBody::FileData(frame)) => sent?,
            _ = ctx.closed.cancelled() => return Ok(()),
        }
    }
    let end = FileEnd {
        size: at,
        sha256: data_encoding::HEXLOWER.encode(&hasher.finalize()),
    };
    ctx.send(id, AgentBody::FileEnd(end)).await?;
    Ok(())
}
