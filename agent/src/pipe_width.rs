//! Wider pipes for bulk output, only while it flows.
//!
//! A pipe holds 64 KiB by default, so a command printing at full speed wakes the daemon for
//! every few pages, and the daemon's writes to sshd wake it again each time sshd takes 32 KiB.
//! Grown to 1 MiB, the same bytes move in far fewer reads, writes and wakeups.
//!
//! The kernel counts every pipe's capacity against the user's `pipe-user-pages-soft` (64 MiB by
//! default); past it, *every* new pipe of the user's gets only two pages. So a pipe is widened
//! only once bulk output is seen on it, and a command's pipes go back to the default when it
//! ends: idle sessions and quiet connections cost no more than before.

use std::os::fd::AsFd;

use nix::fcntl::{fcntl, FcntlArg};

/// A pipe's default capacity (and what a quiet pipe is set back to).
pub(crate) const DEFAULT_PIPE_BYTES: usize = 64 * 1024;
/// Capacity while bulk output flows: the default `pipe-max-size`, which any user may set.
pub(crate) const WIDE_PIPE_BYTES: usize = 1024 * 1024;

/// Whether one pipe has been widened, so it is asked once per bulk run, not on every read.
#[derive(Debug, Default)]
pub struct PipeWidth {
    wide: bool,
    /// Widening was tried since the last narrowing (it may have been refused).
    tried: bool,
}

impl PipeWidth {
    /// Widens the pipe unless that was tried already. Best effort: a socket, or a user past the
    /// allowance, keeps the size it has.
    pub fn widen(&mut self, pipe: &impl AsFd) {
        if !self.tried {
            self.tried = true;
            self.wide = set_capacity(pipe, WIDE_PIPE_BYTES);
        }
    }

    /// Sets the pipe back to the default (whoever widened it: a daemon handed over forgets);
    /// it stays wide if it still holds more than that.
    pub fn narrow(&mut self, pipe: &impl AsFd) {
        self.wide = !set_capacity(pipe, DEFAULT_PIPE_BYTES);
        self.tried = false;
    }

    pub fn is_wide(&self) -> bool {
        self.wide
    }
}

fn set_capacity(pipe: &impl AsFd, bytes: usize) -> bool {
    fcntl(pipe, FcntlArg::F_SETPIPE_SZ(bytes as i32)).is_ok()
}

/// A connection's write half that can be widened when a bulk stream starts on it: the pipe to
/// sshd of a handed-off channel. Sockets keep their own buffers.
pub trait WidenOnBulk {
    fn widen_for_bulk(&self, width: &mut PipeWidth);
}

impl WidenOnBulk for tokio::net::unix::pipe::Sender {
    fn widen_for_bulk(&self, width: &mut PipeWidth) {
        width.widen(self);
    }
}

impl WidenOnBulk for tokio::net::unix::OwnedWriteHalf {
    fn widen_for_bulk(&self, _: &mut PipeWidth) {}
}

/// Split streams (in-memory ones in tests) have no pipe to widen.
impl<T> WidenOnBulk for tokio::io::WriteHalf<T> {
    fn widen_for_bulk(&self, _: &mut PipeWidth) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capacity(pipe: &impl AsFd) -> usize {
        fcntl(pipe, FcntlArg::F_GETPIPE_SZ).unwrap() as usize
    }

    #[test]
    fn a_pipe_is_widened_once_and_narrowed_back() {
        let (read, write) = nix::unistd::pipe().unwrap();
        let mut width = PipeWidth::default();
        assert_eq!(capacity(&write), DEFAULT_PIPE_BYTES);
        width.widen(&write);
        assert!(width.is_wide());
        assert_eq!(capacity(&read), WIDE_PIPE_BYTES, "both ends see one pipe");
        width.narrow(&read);
        assert!(!width.is_wide());
        assert_eq!(capacity(&write), DEFAULT_PIPE_BYTES);
    }

    #[test]
    fn a_pipe_holding_more_than_the_default_stays_wide() {
        let (_read, write) = nix::unistd::pipe().unwrap();
        let mut width = PipeWidth::default();
        width.widen(&write);
        nix::unistd::write(&write, &vec![7u8; DEFAULT_PIPE_BYTES + 4096]).unwrap();
        width.narrow(&write);
        assert!(width.is_wide(), "the bytes it holds are kept");
        assert_eq!(capacity(&write), WIDE_PIPE_BYTES);
    }
}
