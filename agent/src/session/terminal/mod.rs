//! A session's terminal: the user's login shell on a pseudo-terminal whose master the agent
//! holds, a screen model fed every output byte, and the output as a seq-numbered ring.
//!
//! Invariants:
//! - The pump (one task per terminal) always reads the master, so a slow or absent client never
//!   stalls the shell; memory stays bounded because the ring keeps at most [`RING_BYTES`] and
//!   the screen model at most [`screen::MAX_CELLS`] cells and `scrollback` lines of at most
//!   [`screen::HISTORY_BYTES`], whatever the window size. A client whose resume point left the ring gets
//!   a redraw from the model instead.
//! - Only the interactive client's connection may type or resize; watchers only read.
//! - Keystrokes and screen contents are never logged.
//! - The shell and everything it started leave with the terminal: SIGHUP to the shell's and the
//!   foreground process groups, then SIGKILL to every process of its session.

pub mod handover;
mod pty;
pub mod screen;
mod slot;

use std::{
    collections::{HashMap, VecDeque},
    os::fd::{AsRawFd, OwnedFd},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use bytes::Bytes;
use nix::{
    sys::signal::{kill, killpg, Signal},
    unistd::Pid,
};
use remora_wire::{TermRedraw, TerminalInfo};
use tokio::{io::unix::AsyncFd, sync::watch};
use uuid::Uuid;

pub use pty::TermSpec;
use screen::Screen;
pub use slot::TerminalSlot;

use super::{runspace::ShellProcess, ConnId};
use tokio_util::sync::CancellationToken;

/// Raw output kept for clients that resume without a redraw.
pub const RING_BYTES: usize = 512 * 1024;
/// One read from the master.
const READ_CHUNK: usize = 64 * 1024;
/// Time the shell has after SIGHUP before everything on its terminal is killed.
const HANGUP_GRACE: Duration = Duration::from_secs(2);

/// One terminal.
pub struct Terminal {
    /// Tells this terminal from an earlier one of the same session.
    pub generation: u64,
    /// The shell's pid, also its process group and session id.
    pub pid: i32,
    master: AsyncFd<OwnedFd>,
    state: Mutex<TermState>,
    changed: watch::Sender<()>,
    /// Serialises keystrokes and remembers the last input seq taken.
    input: tokio::sync::Mutex<u64>,
    /// The shell process while no pump runs (before the first, and parked for a handover).
    process: Mutex<Option<ShellProcess>>,
    /// Lines of history the screen model keeps.
    scrollback: usize,
}

impl std::fmt::Debug for Terminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminal")
            .field("generation", &self.generation)
            .field("pid", &self.pid)
            .finish()
    }
}

#[derive(Debug)]
struct TermState {
    screen: Screen,
    /// Output chunks by seq, oldest first, at most `RING_BYTES` in all.
    ring: VecDeque<(u64, Bytes)>,
    ring_bytes: usize,
    last_seq: u64,
    /// Highest seq each streaming connection acknowledged.
    acks: HashMap<ConnId, u64>,
    /// The connection allowed to type and resize.
    interactive: Option<ConnId>,
    watchers: u32,
    /// Set when the shell ended: its exit code (128 + signal for a signal).
    exit: Option<Option<i32>>,
}

/// What a stream sends next.
#[derive(Debug)]
pub enum Next {
    Output(u64, Bytes),
    /// The stream fell out of the ring: repaint from the model.
    Redraw(TermRedraw),
    /// Everything is sent and the shell has ended.
    Ended(Option<i32>),
    /// Nothing to send (or the window is full): wait for a change.
    Wait,
}

impl Terminal {
    /// Starts the shell described by `spec`; run [`pump`] next.
    pub fn spawn(spec: &TermSpec, generation: u64, scrollback: usize) -> std::io::Result<Arc<Self>> {
        let (rows, cols) = screen::fit(spec.rows, spec.cols);
        let spawned = pty::spawn(&TermSpec {
            rows,
            cols,
            ..spec.clone()
        })?;
        let pid = spawned.child.id() as i32;
        // Waited for through a pidfd like a handed-over one, so both ways look the same.
        let process = ShellProcess::adopt(pid)?;
        drop(spawned.child);
        let screen = Screen::new(spec.rows, spec.cols, scrollback);
        Self::assemble(generation, pid, spawned.master, process, screen, scrollback)
    }

    fn assemble(
        generation: u64,
        pid: i32,
        master: OwnedFd,
        process: ShellProcess,
        screen: Screen,
        scrollback: usize,
    ) -> std::io::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            generation,
            pid,
            // SAFETY: the master is ours alone and stays open as long as the AsyncFd.
            master: unsafe { AsyncFd::register(master) }.map_err(|err| err.into_parts().1)?,
            state: Mutex::new(TermState {
                screen,
                ring: VecDeque::new(),
                ring_bytes: 0,
                last_seq: 0,
                acks: HashMap::new(),
                interactive: None,
                watchers: 0,
                exit: None,
            }),
            changed: watch::Sender::new(()),
            input: tokio::sync::Mutex::new(0),
            process: Mutex::new(Some(process)),
            scrollback,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, TermState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes on every change after this call.
    pub fn subscribe(&self) -> watch::Receiver<()> {
        self.changed.subscribe()
    }

    /// Takes output read from the master: into the model and the ring.
    fn push(&self, bytes: &[u8]) {
        let mut state = self.lock();
        state.screen.process(bytes);
        state.last_seq += 1;
        let seq = state.last_seq;
        state.ring_bytes += bytes.len();
        state.ring.push_back((seq, Bytes::copy_from_slice(bytes)));
        while state.ring_bytes > RING_BYTES && state.ring.len() > 1 {
            if let Some((_, old)) = state.ring.pop_front() {
                state.ring_bytes -= old.len();
            }
        }
        drop(state);
        self.changed.send_replace(());
    }

    fn set_exit(&self, code: Option<i32>) {
        self.lock().exit = Some(code);
        self.changed.send_replace(());
    }

    /// True while the shell runs with no pump reading (parked for a handover).
    pub fn is_parked(&self) -> bool {
        self.process.lock().unwrap_or_else(|p| p.into_inner()).is_some() && self.exit().is_none()
    }

    /// The shell's exit code once it ended.
    pub fn exit(&self) -> Option<Option<i32>> {
        self.lock().exit
    }

    /// True when `seq + 1` onward is still in the ring (a resume without a redraw).
    pub fn can_resume_after(&self, seq: u64) -> bool {
        let state = self.lock();
        let first = state.ring.front().map_or(state.last_seq + 1, |(s, _)| *s);
        seq <= state.last_seq && seq + 1 >= first
    }

    /// The screen as it stands, with the seq it reflects.
    pub fn redraw(&self, session: Uuid) -> TermRedraw {
        let state = self.lock();
        let (rows, cols) = state.screen.size();
        TermRedraw {
            session,
            seq: state.last_seq,
            scrollback: state
                .screen
                .scrollback()
                .into_iter()
                .map(serde_bytes::ByteBuf::from)
                .collect(),
            screen: state.screen.repaint(),
            rows,
            cols,
        }
    }

    /// The next thing for a stream whose next seq is `cursor`, within `window` bytes past the
    /// connection's ack.
    pub fn next(&self, session: Uuid, conn: ConnId, cursor: u64, window: u64) -> Next {
        let state = self.lock();
        let first = state.ring.front().map_or(state.last_seq + 1, |(s, _)| *s);
        if cursor < first && cursor <= state.last_seq {
            drop(state);
            return Next::Redraw(self.redraw(session));
        }
        if cursor > state.last_seq {
            return match state.exit {
                Some(code) => Next::Ended(code),
                None => Next::Wait,
            };
        }
        let acked = state.acks.get(&conn).copied().unwrap_or(0);
        let in_flight: u64 = state
            .ring
            .iter()
            .filter(|(s, _)| *s > acked && *s < cursor)
            .map(|(_, b)| b.len() as u64)
            .sum();
        if in_flight >= window {
            return Next::Wait;
        }
        let index = (cursor - first) as usize;
        match state.ring.get(index) {
            Some((seq, bytes)) => Next::Output(*seq, bytes.clone()),
            None => Next::Wait,
        }
    }

    /// A connection wrote output up to `seq`.
    pub fn ack(&self, conn: ConnId, seq: u64) {
        let mut state = self.lock();
        let last = state.last_seq;
        let entry = state.acks.entry(conn).or_default();
        *entry = (*entry).max(seq.min(last));
        drop(state);
        self.changed.send_replace(());
    }

    /// A stream of `conn` starts (interactive or watching).
    pub fn join(self: &Arc<Self>, conn: ConnId, interactive: bool, acked: u64) -> Viewer {
        let mut state = self.lock();
        state.acks.insert(conn, acked);
        if interactive {
            state.interactive = Some(conn);
        } else {
            state.watchers += 1;
        }
        Viewer {
            terminal: self.clone(),
            conn,
            interactive,
        }
    }

    /// Whether `conn` may type and resize.
    pub fn is_interactive(&self, conn: ConnId) -> bool {
        self.lock().interactive == Some(conn)
    }

    /// Writes keystrokes numbered `seq`; a seq already taken is skipped (a resent frame).
    /// Returns the highest seq taken.
    pub async fn input(&self, seq: u64, data: &[u8]) -> std::io::Result<u64> {
        let mut taken = self.input.lock().await;
        if seq <= *taken {
            return Ok(*taken);
        }
        let mut rest = data;
        while !rest.is_empty() {
            let mut guard = self.master.writable().await?;
            match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), rest).map_err(std::io::Error::from)) {
                Ok(Ok(n)) => rest = &rest[n..],
                Ok(Err(err)) => return Err(err),
                Err(_would_block) => continue,
            }
        }
        *taken = seq;
        Ok(seq)
    }

    /// The highest input seq taken.
    pub async fn input_seq(&self) -> u64 {
        *self.input.lock().await
    }

    /// Resizes the terminal and its model (the foreground program gets SIGWINCH), to at most
    /// the model's cell budget ([`screen::fit`]): a huge window gets fewer rows, not a huge model.
    pub fn resize(&self, rows: u16, cols: u16) -> std::io::Result<()> {
        let (rows, cols) = screen::fit(rows, cols);
        let mut state = self.lock();
        if state.screen.size() != (rows, cols) {
            state.screen.resize(rows, cols);
            pty::resize(self.master.get_ref(), rows, cols)?;
        }
        drop(state);
        self.changed.send_replace(());
        Ok(())
    }

    /// The transcript since the last call, as plain text, and lines lost to the bound.
    pub fn transcript(&self) -> (String, u64) {
        self.lock().screen.take_transcript()
    }

    /// What `ls` shows.
    pub fn info(&self) -> TerminalInfo {
        let state = self.lock();
        let (rows, cols) = state.screen.size();
        let foreground = match state.exit {
            Some(_) => None,
            None => pty::foreground_group(self.master.get_ref()).and_then(pty::process_name),
        };
        TerminalInfo {
            rows,
            cols,
            foreground,
            exit_code: state.exit.flatten(),
            watchers: state.watchers,
        }
    }

    /// SIGHUP to the shell's and the foreground process groups, like a terminal closing.
    fn hang_up(&self) {
        let _ = killpg(Pid::from_raw(self.pid), Signal::SIGHUP);
        if let Some(group) = pty::foreground_group(self.master.get_ref()) {
            let _ = killpg(Pid::from_raw(group), Signal::SIGHUP);
        }
    }

    /// SIGKILL to every process of the terminal's session.
    fn kill_all(&self) {
        for pid in pty::session_members(self.pid) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }

    /// Raw descriptor of the master, for logs and handover.
    pub fn master_fd(&self) -> i32 {
        self.master.get_ref().as_raw_fd()
    }
}

/// A stream's hold on the terminal; dropping it lets go (interactive or watching).
#[derive(Debug)]
pub struct Viewer {
    terminal: Arc<Terminal>,
    conn: ConnId,
    interactive: bool,
}

impl Drop for Viewer {
    fn drop(&mut self) {
        let mut state = self.terminal.lock();
        state.acks.remove(&self.conn);
        if self.interactive {
            if state.interactive == Some(self.conn) {
                state.interactive = None;
            }
        } else {
            state.watchers = state.watchers.saturating_sub(1);
        }
    }
}

/// Why a pump stopped.
enum Stop {
    /// The shell exited with this status.
    Exited(i32),
    /// Every holder of the slave side closed it.
    Hungup,
    /// The session was removed or the daemon stops.
    Closed,
    /// A handover parks the terminal.
    HandOver,
}

/// Reads the master into the terminal until the shell ends, the session closes (then ends
/// the terminal's processes) or a handover parks it (then leaves everything running).
pub async fn pump(terminal: Arc<Terminal>, closed: CancellationToken, handover: CancellationToken) {
    let Some(mut process) = terminal.process.lock().unwrap_or_else(|p| p.into_inner()).take() else {
        return;
    };
    let mut buf = vec![0u8; READ_CHUNK];
    let stop = loop {
        tokio::select! {
            ready = terminal.master.readable() => {
                let Ok(mut guard) = ready else { break Stop::Hungup };
                match guard.try_io(|fd| nix::unistd::read(fd.get_ref(), &mut buf).map_err(std::io::Error::from)) {
                    Ok(Ok(0)) | Ok(Err(_)) => break Stop::Hungup, // EIO: the slave is closed
                    Ok(Ok(n)) => {
                        // A pty hands out a few KiB per read: gather what is already there, so
                        // the model, the ring and the clients see fewer, larger chunks.
                        let filled = n + top_up(&terminal, &mut buf[n..]);
                        terminal.push(&buf[..filled]);
                    }
                    Err(_would_block) => continue,
                }
            }
            code = process.wait() => {
                // The shell is gone: take what it wrote last.
                drain(&terminal, &mut buf);
                break Stop::Exited(code);
            }
            _ = closed.cancelled() => break Stop::Closed,
            _ = handover.cancelled() => break Stop::HandOver,
        }
    };
    let code = match stop {
        Stop::HandOver => {
            *terminal.process.lock().unwrap_or_else(|p| p.into_inner()) = Some(process);
            return;
        }
        Stop::Exited(code) => code,
        Stop::Hungup | Stop::Closed => {
            terminal.hang_up();
            match tokio::time::timeout(HANGUP_GRACE, process.wait()).await {
                Ok(code) => code,
                Err(_) => {
                    terminal.kill_all();
                    process.wait().await
                }
            }
        }
    };
    // Whatever the shell left on its terminal goes with it.
    terminal.hang_up();
    terminal.kill_all();
    terminal.set_exit(Some(code));
}

/// Reads what is ready into `buf` without waiting; returns how much.
fn top_up(terminal: &Terminal, buf: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        match nix::unistd::read(terminal.master.get_ref(), &mut buf[filled..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    filled
}

fn drain(terminal: &Terminal, buf: &mut [u8]) {
    while let Ok(n) = nix::unistd::read(terminal.master.get_ref(), buf) {
        if n == 0 {
            break;
        }
        terminal.push(&buf[..n]);
    }
}

/// Checks a window size: both sides 1 ..= 10,000.
pub fn check_size(rows: u16, cols: u16) -> Result<(), String> {
    let max = remora_wire::MAX_TERM_SIDE;
    if rows == 0 || cols == 0 || rows > max || cols > max {
        return Err(format!(
            "window size {rows}x{cols} (rows x columns) is not usable: each side must be 1 ..= {max}"
        ));
    }
    Ok(())
}
