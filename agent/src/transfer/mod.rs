//! The agent's side of `remora cp`, below the handlers: uploads ([`upload`]) and downloads
//! ([`download`]), mirroring the client's `transfer` module.
//!
//! It exists so that no file work of a copy runs on the daemon's async worker. The daemon has
//! one worker thread (`entry.rs`); a multi-GB resume hashed there would stop every session's
//! streams, keystrokes and heartbeats for as long as the hash takes.
//!
//! Invariants:
//! - No disk I/O on the async worker: every `stat`, `open`, listing, read, write, hash, `fsync`,
//!   `set_meta` and rename of a copy runs in a blocking job ([`blocking`], the blocking pool).
//! - A blocking job never waits for the connection: it gets its input when it starts and hands
//!   its output back when it ends, so a slow or silent client never holds a pool thread. The
//!   async side waits instead, on bounded queues: an upload's data waits in its [`upload::Feed`]
//!   (a few MiB at most), a download reads one batch ahead of the connection's bounded outbox.
//! - Cancellation: a job checks its connection's token between chunks (every 256 KiB of a hash
//!   or a write, every listed entry) and stops with [`TransferError::Cancelled`]. A stopped
//!   upload leaves its partial file as it is, so the next attempt resumes it.
//! - It knows paths, files and the wire's plain data types (`PutPath`, `PathMeta`, …), never
//!   sessions, connections, frames or handlers: the handler resolves the session's directory
//!   and turns results into frames.

pub(crate) mod download;
pub(crate) mod upload;

use std::{
    ffi::OsStr,
    io,
    os::unix::{ffi::OsStrExt, fs::FileExt},
    path::{Path, PathBuf},
};

use remora_wire::ErrorCode;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

/// Bytes read per step when hashing, and per data frame of a download.
pub(crate) const CHUNK: usize = 256 * 1024;
/// Most paths one `GetPath` lists.
pub(crate) const MAX_LISTED: usize = 1_000_000;

/// Why a copy step failed. Messages name the path and the next step; [`TransferError::on_host`]
/// says which ones the handler prefixes with the host's name.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransferError {
    #[error("cannot {action} {}: {cause}{}", path.display(), next_step(cause))]
    Io {
        action: &'static str,
        path: PathBuf,
        cause: io::Error,
    },
    /// The request asks for something the existing paths rule out (a file over a directory…).
    #[error("{0}")]
    Conflict(String),
    #[error("{} is not inside {}", target.display(), root.display())]
    Outside { target: PathBuf, root: PathBuf },
    #[error("{} holds more than {MAX_LISTED} paths; copy it in parts", root.display())]
    TooMany { root: PathBuf },
    #[error("unknown path kind; upgrade remora-agent")]
    UnknownKind,
    #[error(
        "{} arrived as {written} bytes with SHA-256 {sha256}, but the source has {size} bytes with SHA-256 {expected}; nothing was written, run cp again",
        target.display()
    )]
    Mismatch {
        target: PathBuf,
        written: u64,
        sha256: String,
        size: u64,
        expected: String,
    },
    /// The connection ended (or the daemon is stopping); nobody waits for a reply.
    #[error("the connection ended")]
    Cancelled,
    /// A blocking job ended without an answer (it panicked); its file is left as it was.
    #[error("the disk work on {} stopped unexpectedly ({cause}); see the agent's log and run cp again", path.display())]
    Stopped { path: PathBuf, cause: String },
}

impl TransferError {
    /// The wire code a client sees for this failure.
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            TransferError::Io { cause, .. } => io_code(cause),
            TransferError::Conflict(_) => ErrorCode::PathConflict,
            TransferError::Outside { .. } | TransferError::UnknownKind => ErrorCode::InvalidRequest,
            TransferError::TooMany { .. } => ErrorCode::LimitReached,
            TransferError::Mismatch { .. } => ErrorCode::ChecksumMismatch,
            TransferError::Cancelled | TransferError::Stopped { .. } => ErrorCode::Internal,
        }
    }

    /// Whether the message is about the host's files, so it starts with the host's name.
    pub(crate) fn on_host(&self) -> bool {
        matches!(
            self,
            TransferError::Io { .. }
                | TransferError::Conflict(_)
                | TransferError::Mismatch { .. }
                | TransferError::Stopped { .. }
        )
    }
}

/// Wraps an I/O error with what was being done to which path.
fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> TransferError {
    let path = path.to_path_buf();
    move |cause| TransferError::Io { action, path, cause }
}

fn io_code(err: &io::Error) -> ErrorCode {
    match err.kind() {
        io::ErrorKind::NotFound => ErrorCode::PathNotFound,
        io::ErrorKind::PermissionDenied => ErrorCode::PermissionDenied,
        _ if matches!(err.raw_os_error(), Some(nix::libc::ENOSPC) | Some(nix::libc::EDQUOT)) => ErrorCode::NoSpace,
        _ => ErrorCode::IoFailed,
    }
}

fn next_step(err: &io::Error) -> &'static str {
    match io_code(err) {
        ErrorCode::PathNotFound => "; check the path",
        ErrorCode::PermissionDenied => "; pick a path the user may write, or change its permissions",
        ErrorCode::NoSpace => "; free space on the host and run the same cp again to resume",
        _ => "",
    }
}

/// Runs `job` on the blocking pool; `path` names what it works on if it never answers.
async fn blocking<T, F>(path: &Path, job: F) -> Result<T, TransferError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, TransferError> + Send + 'static,
{
    tokio::task::spawn_blocking(job)
        .await
        .unwrap_or_else(|err| Err(stopped(path, &err)))
}

fn stopped(path: &Path, err: &tokio::task::JoinError) -> TransferError {
    tracing::error!("the disk work on {} stopped: {err}", path.display());
    TransferError::Stopped {
        path: path.to_path_buf(),
        cause: err.to_string(),
    }
}

/// `Err(Cancelled)` once the connection has ended; called between chunks.
fn check(cancel: &CancellationToken) -> Result<(), TransferError> {
    match cancel.is_cancelled() {
        true => Err(TransferError::Cancelled),
        false => Ok(()),
    }
}

/// Hashes the first `len` bytes of `file` in [`CHUNK`] steps (positional reads), stopping when
/// `cancel` fires.
fn hash_prefix(file: &std::fs::File, len: u64, cancel: &CancellationToken) -> Result<Sha256, PrefixError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK.min(len as usize)];
    let mut at = 0;
    while at < len {
        check(cancel).map_err(|_| PrefixError::Cancelled)?;
        let want = ((len - at) as usize).min(CHUNK);
        file.read_exact_at(&mut buf[..want], at).map_err(PrefixError::Io)?;
        hasher.update(&buf[..want]);
        at += want as u64;
    }
    Ok(hasher)
}

/// Why [`hash_prefix`] stopped; the caller names the path.
enum PrefixError {
    Cancelled,
    Io(io::Error),
}

impl PrefixError {
    fn naming(self, action: &'static str, path: &Path) -> TransferError {
        match self {
            PrefixError::Cancelled => TransferError::Cancelled,
            PrefixError::Io(err) => io_err(action, path)(err),
        }
    }
}

/// A path the client sent, as bytes.
pub(crate) fn bytes_path(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}

/// A remote path as the client sent it: relative ones start at `base` (the session's runspace
/// directory or home); an empty one is `base` itself.
pub(crate) fn resolve(base: &Path, path: &[u8]) -> PathBuf {
    let path = bytes_path(path);
    match path.as_os_str().is_empty() {
        true => base.to_path_buf(),
        false => base.join(path),
    }
}

/// A path's bytes as the wire has them.
pub(crate) fn wire_path(path: &Path) -> Vec<u8> {
    path.as_os_str().as_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn a_prefix_hash_stops_when_the_connection_ends() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&vec![7u8; CHUNK * 3]).unwrap();
        let cancel = CancellationToken::new();
        let whole = hash_prefix(&file, CHUNK as u64 * 2, &cancel).ok().unwrap().finalize();
        assert_eq!(whole, Sha256::digest(vec![7u8; CHUNK * 2]));
        cancel.cancel();
        assert!(matches!(
            hash_prefix(&file, CHUNK as u64 * 2, &cancel),
            Err(PrefixError::Cancelled)
        ));
    }

    #[test]
    fn io_failures_name_the_path_and_the_next_step() {
        let err = io_err("write", Path::new("/far/f"))(io::Error::from_raw_os_error(nix::libc::ENOSPC));
        assert_eq!(err.code(), ErrorCode::NoSpace);
        assert!(err.on_host());
        let text = err.to_string();
        assert!(text.starts_with("cannot write /far/f: "), "{text}");
        assert!(
            text.ends_with("; free space on the host and run the same cp again to resume"),
            "{text}"
        );
    }
}
