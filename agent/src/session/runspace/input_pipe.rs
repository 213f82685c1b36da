//! A running command's stdin: a fifo the agent writes and the command reads.
//!
//! The shell opens the fifo as its fd 4 (`exec 4<FIFO`), reports that on the status pipe (an
//! `i` line) and runs the command as `eval '…' <&4 4<&-`, so the command reads this pipe and
//! never the shell's own stdin, which carries the runspace's command stream. The agent opens
//! the fifo read-write (non-blocking): opening never waits for the shell. It closes its end
//! only once all input was written *and* the shell has opened the fifo (closing earlier would
//! leave the shell's open waiting for a writer forever); the command then reads end-of-file.
//! The fifo lives in the agent's private (0700) spill directory and is unlinked once the shell
//! has opened it, or when the pipe is dropped; a handover keeps the descriptor open across
//! `exec`.

use std::{
    fs::OpenOptions,
    io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
        unix::fs::{DirBuilderExt, OpenOptionsExt},
    },
    path::{Path, PathBuf},
};

use nix::{
    fcntl::{fcntl, FcntlArg, FdFlag, OFlag},
    sys::stat::Mode,
};
use tokio::net::unix::pipe;

use crate::session::{
    input::{fifo_path, InputNext},
    Session,
};

/// Capacity asked for the fifo.
const PIPE_SIZE: i32 = 1024 * 1024;

/// The write end of a command's stdin fifo.
pub(super) struct InputPipe {
    path: PathBuf,
    sender: pipe::Sender,
    /// All input was written: close once the shell opened the fifo.
    pub eof: bool,
    /// The shell opened the fifo (its `i` status line).
    pub opened: bool,
}

impl InputPipe {
    /// Makes a fresh 0600 fifo for `command` in `dir` and opens it.
    pub(super) fn create(dir: &Path, session: uuid::Uuid, command: u64) -> io::Result<Self> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        let path = fifo_path(dir, session, command);
        let _ = std::fs::remove_file(&path);
        nix::unistd::mkfifo(&path, Mode::from_bits_truncate(0o600))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags((OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).bits())
            .open(&path)?;
        // A larger pipe means fewer, larger writes (and wake-ups) for a fast reader; a kernel
        // that refuses keeps its default.
        let _ = fcntl(&file, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
        let sender = pipe::Sender::from_owned_fd_unchecked(OwnedFd::from(file))?;
        Ok(Self {
            path,
            sender,
            eof: false,
            opened: false,
        })
    }

    /// The shell has the fifo open: its name is no longer needed.
    pub(super) fn mark_opened(&mut self) {
        self.opened = true;
        let _ = std::fs::remove_file(&self.path);
    }

    /// Whether the agent's end can be closed: all input written and the shell holds the fifo.
    pub(super) fn finished(&self) -> bool {
        self.eof && self.opened
    }

    /// Where the command reads.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The descriptor, for a handover.
    pub(super) fn raw_fd(&self) -> RawFd {
        self.sender.as_raw_fd()
    }

    /// Lets the descriptor survive `exec`, or not.
    pub(super) fn inherit(&self, inherit: bool) -> io::Result<()> {
        let flags = if inherit { FdFlag::empty() } else { FdFlag::FD_CLOEXEC };
        fcntl(&self.sender, FcntlArg::F_SETFD(flags))?;
        Ok(())
    }

    /// Takes over a pipe a previous program of this process handed over.
    ///
    /// # Safety
    /// `fd` must be open, owned by nobody else in this process, and the write end of `path`.
    pub(super) unsafe fn adopt(fd: RawFd, path: PathBuf, eof: bool, opened: bool) -> io::Result<Self> {
        // SAFETY: the caller vouches that the descriptor is ours alone.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        fcntl(&fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
        crate::fdpass::set_nonblocking(&fd)?;
        Ok(Self {
            path,
            sender: pipe::Sender::from_owned_fd_unchecked(fd)?,
            eof,
            opened,
        })
    }

    /// Writes the next piece of the command's input; false once the input is complete (or the
    /// pipe failed) and the pipe should be closed. Cancel-safe: bytes count as consumed only in
    /// the same poll that wrote them.
    pub(super) async fn feed(&self, session: &Session, command: u64) -> bool {
        loop {
            let mut changed = session.subscribe();
            match session.inputs.next(command) {
                InputNext::Data(bytes) => {
                    if self.sender.writable().await.is_err() {
                        return false;
                    }
                    match self.sender.try_write(&bytes) {
                        Ok(n) => {
                            session.inputs.consumed(command, n);
                            return true;
                        }
                        Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                        Err(_) => return false,
                    }
                }
                InputNext::Eof => return false,
                InputNext::Wait => {
                    let _ = changed.changed().await;
                }
            }
        }
    }
}

impl Drop for InputPipe {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// [`InputPipe::feed`] on an optional pipe: never ready without one or once all is written.
pub(super) async fn feed(pipe: Option<&InputPipe>, session: &Session, command: u64) -> bool {
    match pipe {
        Some(pipe) if !pipe.eof => pipe.feed(session, command).await,
        _ => std::future::pending().await,
    }
}
