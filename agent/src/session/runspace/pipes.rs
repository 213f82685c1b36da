//! Raw reads from the shell's output pipes into the session's journal.

use std::{io, os::fd::AsFd};

use bytes::Bytes;
use nix::errno::Errno;
use remora_wire::Stream;

use crate::{
    pipe_width::{PipeWidth, DEFAULT_PIPE_BYTES},
    session::Session,
};

/// Largest read from a pipe, and so the largest journal chunk: a quarter of a widened pipe.
pub(super) const READ_CHUNK: usize = 256 * 1024;
/// The largest chunk to journal for `session`: [`READ_CHUNK`], or its memory limit if smaller,
/// so a single chunk never overflows the limit (drop mode would discard it whole).
pub(super) fn chunk_len(session: &Session) -> usize {
    session.settings().memory_limit.clamp(1, READ_CHUNK)
}

/// Reads in one drain, so a background writer cannot keep a drain going forever.
pub(super) const MAX_DRAIN_READS: usize = 64;

/// Reads from `reader`, or waits forever when the pipe is closed (`None`).
pub(super) async fn read_some<R: tokio::io::AsyncRead + Unpin>(
    reader: Option<&mut R>,
    buf: &mut [u8],
) -> io::Result<usize> {
    use tokio::io::AsyncReadExt;
    match reader {
        Some(reader) => reader.read(buf).await,
        None => std::future::pending().await,
    }
}

/// After a read of some bytes, takes whatever else the pipe holds right now, without waiting:
/// a command that writes in small pieces is journaled in chunks of up to [`READ_CHUNK`] — fewer
/// entries, frames and writes for the same bytes — and nothing waits longer than before.
pub(super) fn top_up(read: io::Result<usize>, pipe: Option<&impl AsFd>, buf: &mut [u8]) -> io::Result<usize> {
    let (Ok(first), Some(pipe)) = (&read, pipe) else {
        return read;
    };
    let mut filled = *first;
    while filled > 0 && filled < buf.len() {
        match nix::unistd::read(pipe.as_fd(), &mut buf[filled..]) {
            Ok(0) => break, // end of file: the next read reports it
            Ok(more) => filled += more,
            Err(Errno::EINTR) => continue,
            Err(_) => break, // EAGAIN: nothing more right now
        }
    }
    Ok(filled)
}

/// Widens the pipe once a read finds it was full at its default size: bulk output flows (see
/// `pipe_width.rs`).
pub(super) fn widen_on_bulk(read: &io::Result<usize>, pipe: Option<&impl AsFd>, width: &mut PipeWidth) {
    if let (Ok(n), Some(pipe)) = (read, pipe) {
        if *n >= DEFAULT_PIPE_BYTES {
            width.widen(pipe);
        }
    }
}

/// Journals one read; a closed or failed pipe stops being read.
pub(super) fn journal_read<R>(
    session: &Session,
    id: u64,
    stream: Stream,
    read: io::Result<usize>,
    buf: &[u8],
    pipe: &mut Option<R>,
) {
    match read {
        Ok(n) if n > 0 => session.append_output(id, stream, Bytes::copy_from_slice(&buf[..n])),
        _ => *pipe = None,
    }
}

/// Moves whatever the pipe holds right now into the journal, without waiting.
pub(super) fn drain_fd(fd: &impl AsFd, session: &Session, id: u64, stream: Stream) {
    let mut buf = vec![0u8; chunk_len(session)];
    for _ in 0..MAX_DRAIN_READS {
        match nix::unistd::read(fd.as_fd(), &mut buf) {
            Ok(n) if n > 0 => session.append_output(id, stream, Bytes::copy_from_slice(&buf[..n])),
            Err(Errno::EINTR) => continue,
            _ => return,
        }
    }
}

/// Reads and discards whatever the pipe holds right now (what a shell printed while starting).
pub(super) fn discard_fd(fd: &impl AsFd) {
    let mut buf = vec![0u8; READ_CHUNK];
    for _ in 0..MAX_DRAIN_READS {
        match nix::unistd::read(fd.as_fd(), &mut buf) {
            Ok(n) if n > 0 => continue,
            Err(Errno::EINTR) => continue,
            _ => break,
        }
    }
}
