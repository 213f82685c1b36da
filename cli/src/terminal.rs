//! The local terminal while `remora shell` runs: raw mode and the screen modes' reset as a
//! guard, the window size, and ssh-style escapes read after a newline.
//!
//! Invariant: once [`Attached`] is dropped the terminal is as it was before the attach (settings,
//! normal screen, cursor shown, no mouse, paste or focus reporting), on every way out.

use std::{
    io::{IsTerminal, Write},
    os::fd::{AsFd, BorrowedFd},
};

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

/// What a host may have switched on in the local terminal, switched off again, in the order
/// tmux uses on detach. The save before leaving the alternate screen keeps the cursor where it is
/// when the host never entered it (leaving restores the last saved cursor); the scroll region is
/// reset between a save and a restore because setting it moves the cursor home.
const RESET_MODES: &[u8] = concat!(
    "\x1b7\x1b[?1049l",                                                   // the normal screen
    "\x1b7\x1b[r\x1b8",                                                   // the whole screen scrolls
    "\x1b[m",                                                             // no colours or attributes
    "\x1b[?25h",                                                          // the cursor shown
    "\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1005l\x1b[?1006l\x1b[?1015l", // no mouse reports
    "\x1b[?1004l",                                                        // no focus events
    "\x1b[?2004l",                                                        // no bracketed paste
    "\x1b[?1l\x1b>",                                                      // normal cursor keys and keypad
)
.as_bytes();

/// The local terminal while `remora shell` is attached: raw input, and on drop (detach, a
/// takeover, the link given up, the shell's end, an error, a signal, a panic unwinding) the screen
/// modes put back as they were before the attach, whatever the host left them in, then the
/// terminal settings restored.
pub struct Attached {
    /// Dropped after the modes are reset, so the reset is written while output is still raw.
    _raw: Option<RawMode>,
}

impl Attached {
    /// Raw mode on stdin when it is a terminal; the reset on drop whenever stdout is one.
    pub fn enter() -> Self {
        Self { _raw: RawMode::enter() }
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        let mut stdout = std::io::stdout().lock();
        if stdout.is_terminal() {
            let _ = stdout.write_all(RESET_MODES).and_then(|()| stdout.flush());
        }
    }
}

/// The window size of stdout's terminal (else stdin's), as (rows, columns).
pub fn window_size() -> Option<(u16, u16)> {
    [1, 0].into_iter().find_map(|fd| {
        // SAFETY: winsize is plain integers, for which all zeroes is a valid value.
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
