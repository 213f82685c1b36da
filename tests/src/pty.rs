//! A program on a real pseudo-terminal, as a user would run it: its output is parsed by a
//! terminal emulator (`vt100`, with a large scrollback), so tests wait for what the user would
//! *see*, type keys, resize the window and send signals.

use std::{
    io::{Read, Write},
    os::{
        fd::{AsRawFd, OwnedFd},
        unix::process::CommandExt,
    },
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Condvar, Mutex},
    time::{Duration, Instant},
};

use anyhow::{anyhow, Context};
use nix::pty::{openpty, Winsize};

/// Lines of history the user's emulator keeps.
const SCROLLBACK: usize = 200_000;

/// Raw output kept for [`PtyProgram::raw`] and marker searches (the newest bytes).
const RAW_KEPT: usize = 4 << 20;

struct Shared {
    parser: vt100::Parser,
    /// False for [`PtyProgram::spawn_unparsed`]: bytes are counted and kept, not emulated.
    parse: bool,
    raw: Vec<u8>,
    /// Every byte read so far.
    total: u64,
    closed: bool,
}

/// A child on a pty, and what its terminal shows.
pub struct PtyProgram {
    child: Child,
    master: std::fs::File,
    shared: Arc<(Mutex<Shared>, Condvar)>,
}

fn winsize(rows: u16, cols: u16) -> Winsize {
    Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl PtyProgram {
    /// Starts `command` as the leader of a new session on a fresh `rows`×`cols` terminal.
    pub fn spawn(command: Command, rows: u16, cols: u16) -> anyhow::Result<Self> {
        Self::start(command, rows, cols, true)
    }

    /// Like [`PtyProgram::spawn`] without the emulator (for throughput: only
    /// [`PtyProgram::wait_for_bytes`] and [`PtyProgram::raw`] see the output).
    pub fn spawn_unparsed(command: Command, rows: u16, cols: u16) -> anyhow::Result<Self> {
        Self::start(command, rows, cols, false)
    }

    fn start(mut command: Command, rows: u16, cols: u16, parse: bool) -> anyhow::Result<Self> {
        let pair = openpty(Some(&winsize(rows, cols)), None).context("openpty")?;
        let slave: OwnedFd = pair.slave;
        command
            .stdin(Stdio::from(slave.try_clone()?))
            .stdout(Stdio::from(slave.try_clone()?))
            .stderr(Stdio::from(slave.try_clone()?));
        // SAFETY: setsid and ioctl are async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                nix::libc::setsid();
                nix::libc::ioctl(0, nix::libc::TIOCSCTTY as _, 0);
                Ok(())
            });
        }
        let child = command.spawn().context("spawn on a pty")?;
        drop(slave);
        let master = std::fs::File::from(pair.master);
        let shared = Arc::new((
            Mutex::new(Shared {
                parser: vt100::Parser::new(
                    std::num::NonZeroU16::new(rows).unwrap(),
                    std::num::NonZeroU16::new(cols).unwrap(),
                    if parse { SCROLLBACK } else { 0 },
                ),
                parse,
                raw: Vec::new(),
                total: 0,
                closed: false,
            }),
            Condvar::new(),
        ));
        let mut reader = master.try_clone()?;
        let feed = shared.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            loop {
                let n = reader.read(&mut buf).unwrap_or(0);
                let (lock, wake) = &*feed;
                let mut state = lock.lock().unwrap();
                if n == 0 {
                    state.closed = true;
                    wake.notify_all();
                    break;
                }
                if state.parse {
                    state.parser.process(&buf[..n]);
                }
                state.total += n as u64;
                state.raw.extend_from_slice(&buf[..n]);
                if state.raw.len() > RAW_KEPT {
                    let cut = state.raw.len() - RAW_KEPT / 2;
                    state.raw.drain(..cut);
                }
                wake.notify_all();
            }
        });
        Ok(Self { child, master, shared })
    }

    /// Types bytes.
    pub fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.master.write_all(bytes)?;
        Ok(())
    }

    /// Changes the window size (the program gets SIGWINCH) and the emulator's.
    pub fn resize(&mut self, rows: u16, cols: u16) -> anyhow::Result<()> {
        let size = winsize(rows, cols);
        // SAFETY: TIOCSWINSZ reads one winsize.
        unsafe { nix::libc::ioctl(self.master.as_raw_fd(), nix::libc::TIOCSWINSZ, &size) };
        let (lock, _) = &*self.shared;
        let mut state = lock.lock().unwrap();
        state.parser.screen_mut().set_size(
            std::num::NonZeroU16::new(rows).unwrap(),
            std::num::NonZeroU16::new(cols).unwrap(),
        );
        Ok(())
    }

    /// Waits (up to `limit`) until `check` holds for the screen; returns the screen's text.
    pub fn wait_for(
        &self,
        limit: Duration,
        what: &str,
        mut check: impl FnMut(&vt100::Screen) -> bool,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + limit;
        let (lock, wake) = &*self.shared;
        let mut state = lock.lock().unwrap();
        loop {
            if check(state.parser.screen()) {
                return Ok(state.parser.screen().contents());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(anyhow!(
                    "timed out after {limit:?} waiting for {what}; the screen shows:\n{}",
                    state.parser.screen().contents()
                ));
            }
            state = wake.wait_timeout(state, left).unwrap().0;
        }
    }

    /// Waits (up to `limit`) until the newest output contains `marker` (no emulator needed);
    /// returns the total bytes read by then. Only output after `since` (a total) counts.
    pub fn wait_for_bytes(&self, limit: Duration, marker: &[u8], since: u64) -> anyhow::Result<u64> {
        let deadline = Instant::now() + limit;
        let (lock, wake) = &*self.shared;
        let mut state = lock.lock().unwrap();
        // Only bytes not yet searched (and a marker's length before them) are looked at.
        let mut scanned = since;
        loop {
            let kept_from = state.total - state.raw.len() as u64;
            let from = scanned
                .saturating_sub(marker.len() as u64 - 1)
                .max(kept_from)
                .max(since);
            let tail = &state.raw[(from - kept_from) as usize..];
            if tail.windows(marker.len()).any(|w| w == marker) {
                return Ok(state.total);
            }
            scanned = state.total;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || state.closed {
                return Err(anyhow!(
                    "no {:?} in the output within {limit:?}",
                    String::from_utf8_lossy(marker)
                ));
            }
            state = wake.wait_timeout(state, left).unwrap().0;
        }
    }

    /// Bytes read so far.
    pub fn total(&self) -> u64 {
        self.shared.0.lock().unwrap().total
    }

    /// Waits until the screen contains `text`.
    pub fn wait_for_text(&self, limit: Duration, text: &str) -> anyhow::Result<String> {
        self.wait_for(limit, &format!("{text:?} on the screen"), |s| {
            s.contents().contains(text)
        })
    }

    /// Runs `read` on the screen as it is now.
    pub fn screen<T>(&self, read: impl FnOnce(&vt100::Screen) -> T) -> T {
        let (lock, _) = &*self.shared;
        read(lock.lock().unwrap().parser.screen())
    }

    /// Every line the user's terminal holds, scrollback first, as plain text.
    pub fn history(&self) -> Vec<String> {
        let (lock, _) = &*self.shared;
        let mut state = lock.lock().unwrap();
        let screen = state.parser.screen_mut();
        screen.set_scrollback(usize::MAX);
        let back = screen.scrollback();
        let cols = screen.size().1.get();
        let rows = screen.size().0.get() as usize;
        let mut lines = Vec::new();
        // Page through the history from the oldest line, one screen at a time.
        let mut offset = back;
        loop {
            screen.set_scrollback(offset);
            let take = if offset >= rows { rows } else { offset };
            lines.extend(screen.rows(0, cols).take(take));
            if offset < rows {
                break;
            }
            offset -= rows;
        }
        screen.set_scrollback(0);
        lines.extend(screen.rows(0, cols));
        lines
    }

    /// The newest bytes the program wrote (up to a few MiB).
    pub fn raw(&self) -> Vec<u8> {
        self.shared.0.lock().unwrap().raw.clone()
    }

    /// The program's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (up to `limit`) for the program to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(anyhow!("the program did not exit within {limit:?}"));
            }
            // The child's exit has no event to wait on here besides polling its status.
            let (lock, wake) = &*self.shared;
            let state = lock.lock().unwrap();
            let _ = wake.wait_timeout(state, Duration::from_millis(20)).unwrap();
        }
    }

    /// Sends a signal to the program.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal);
    }
}

impl Drop for PtyProgram {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
