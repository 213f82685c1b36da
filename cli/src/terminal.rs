//! The local terminal while `remora shell` runs: raw mode as a guard, the window size, and
//! ssh-style escapes read after a newline.

use std::os::fd::{AsFd, BorrowedFd};

use nix::sys::termios::{self, SetArg, Termios};

use crate::values::EscapeChar;

/// Puts a terminal in raw mode; dropping it (detach, error, signal, a panic unwinding) restores
/// the settings it found.
pub struct RawMode {
    fd: BorrowedFd<'static>,
    saved: Termios,
}

impl RawMode {
    /// Raw mode on stdin, or `None` when stdin is not a terminal.
    pub fn enter() -> Option<Self> {
        // SAFETY: fd 0 stays open for the life of the process.
        let fd = unsafe { BorrowedFd::borrow_raw(0) };
        let saved = termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        // TCSADRAIN, like ssh: keys typed before raw mode starts are kept, not flushed.
        termios::tcsetattr(fd, SetArg::TCSADRAIN, &raw).ok()?;
        Some(Self { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.fd.as_fd(), SetArg::TCSADRAIN, &self.saved);
    }
}

/// The window size of stdout's terminal (else stdin's), as (rows, columns).
pub fn window_size() -> Option<(u16, u16)> {
    [1, 0].into_iter().find_map(|fd| {
        let mut size: nix::libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ writes one winsize.
        let ok = unsafe { nix::libc::ioctl(fd, nix::libc::TIOCGWINSZ, &mut size) } == 0;
        (ok && size.ws_row > 0 && size.ws_col > 0).then_some((size.ws_row, size.ws_col))
    })
}

/// What the user's keystrokes mean once escapes are taken out.
#[derive(Debug, PartialEq, Eq)]
pub enum Key {
    /// Bytes for the remote terminal.
    Send(Vec<u8>),
    /// `~.`
    Detach,
    /// `~?`
    Help,
}

/// Reads ssh-style escapes: the escape character right after a newline (or at the start)
/// followed by `.`, `?` or itself; anything else is sent as typed.
#[derive(Debug)]
pub struct Escapes {
    escape: Option<u8>,
    at_line_start: bool,
    pending: bool,
}

impl Escapes {
    pub fn new(escape: EscapeChar) -> Self {
        Self {
            escape: match escape {
                EscapeChar::Byte(b) => Some(b),
                EscapeChar::None => None,
            },
            at_line_start: true,
            pending: false,
        }
    }

    /// Splits typed bytes into what to send and escape commands, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Key> {
        let Some(escape) = self.escape else {
            return vec![Key::Send(bytes.to_vec())];
        };
        let mut keys = Vec::new();
        let mut send = Vec::new();
        for &byte in bytes {
            if self.pending {
                self.pending = false;
                match byte {
                    b'.' => {
                        flush(&mut keys, &mut send);
                        keys.push(Key::Detach);
                        return keys;
                    }
                    b'?' => {
                        flush(&mut keys, &mut send);
                        keys.push(Key::Help);
                        self.at_line_start = false;
                        continue;
                    }
                    b if b == escape => {
                        send.push(escape);
                        self.at_line_start = false;
                        continue;
                    }
                    _ => send.push(escape),
                }
            } else if self.at_line_start && byte == escape {
                self.pending = true;
                continue;
            }
            send.push(byte);
            self.at_line_start = byte == b'\r' || byte == b'\n';
        }
        flush(&mut keys, &mut send);
        keys
    }

    /// The escapes, as `~?` shows them.
    pub fn help(&self) -> String {
        let e = self.escape.map_or("~".to_string(), display);
        format!(
            "Supported escape sequences (after a newline):\r\n {e}.   - detach (the shell keeps running)\r\n {e}?   - this message\r\n {e}{e}   - send the escape character by typing it twice\r\n"
        )
    }
}

fn display(byte: u8) -> String {
    match byte {
        0..=31 => format!("^{}", (byte + 64) as char),
        _ => (byte as char).to_string(),
    }
}

fn flush(keys: &mut Vec<Key>, send: &mut Vec<u8>) {
    if !send.is_empty() {
        keys.push(Key::Send(std::mem::take(send)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_count_only_after_a_newline() {
        let mut escapes = Escapes::new(EscapeChar::Byte(b'~'));
        assert_eq!(escapes.feed(b"~."), vec![Key::Detach]);
        let mut escapes = Escapes::new(EscapeChar::Byte(b'~'));
        assert_eq!(escapes.feed(b"a~."), vec![Key::Send(b"a~.".to_vec())]);
        assert_eq!(escapes.feed(b"\r~~x"), vec![Key::Send(b"\r~x".to_vec())]);
        assert_eq!(escapes.feed(b"\r~?"), vec![Key::Send(b"\r".to_vec()), Key::Help]);
        assert_eq!(escapes.feed(b"\r~"), vec![Key::Send(b"\r".to_vec())]);
        assert_eq!(escapes.feed(b"."), vec![Key::Detach]);
        assert_eq!(escapes.feed(b"\r~x"), vec![Key::Send(b"\r~x".to_vec())]);
    }

    #[test]
    fn another_escape_or_none() {
        let mut escapes = Escapes::new(EscapeChar::Byte(b'%'));
        assert_eq!(escapes.feed(b"~.%."), vec![Key::Send(b"~.%.".to_vec())]);
        assert_eq!(escapes.feed(b"\r%."), vec![Key::Send(b"\r".to_vec()), Key::Detach]);
        let mut escapes = Escapes::new(EscapeChar::Byte(b'%'));
        assert_eq!(escapes.feed(b"%."), vec![Key::Detach]);
        let mut escapes = Escapes::new(EscapeChar::None);
        assert_eq!(escapes.feed(b"~."), vec![Key::Send(b"~.".to_vec())]);
    }
}
