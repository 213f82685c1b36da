//! A session's terminal: the user's login shell on a pseudo-terminal whose master the agent
//! holds, the output as a seq-numbered ring, and a screen model that reads the ring after.
//!
//! Forward first, then model: the pump puts what it reads into the ring and wakes the streams,
//! which send it on at once; a job on a blocking thread feeds the same chunks to the model in
//! batches ([`MODEL_BATCH`]). The emulator's cost (most of a terminal's CPU under a `cat`) is
//! never between the pty and a client, and runs on another core beside it.
//!
//! Invariants:
//! - The pump (one task per terminal) always reads the master while the model keeps up, so a
//!   slow or absent client never stalls the shell; the model lags by at most
//!   [`MODEL_BACKLOG`] bytes (past it the pump waits for the model, as a terminal waits for its
//!   screen). Memory stays bounded: the ring keeps the unmodelled chunks and [`RING_BYTES`]
//!   of the rest, the screen model at most [`screen::MAX_CELLS`] cells and `scrollback` lines
//!   of at most [`screen::HISTORY_BYTES`], whatever the window size. A client whose resume
//!   point left the ring gets a redraw from the model instead.
//! - A redraw and a transcript reflect every chunk pushed before they were asked for: they
//!   catch the model up first, and a redraw names the seq it reflects.
//! - Locks: the model's before the core's, never the other way; the core's is held for
//!   bookkeeping only, never while the emulator runs.
//! - Only the interactive client's connection may type or resize; watchers only read.
//! - Keystrokes and screen contents are never logged.
//! - The shell and everything it started leave with the terminal: SIGHUP to the shell's and the
//!   foreground process groups, then SIGKILL to every process of its session.
//!
//! Files: `core.rs` (the pure state machine: ring, acks, windows, viewers, the model's size and
//! progress), `model.rs` (the screen model and the seq it has read), `screen.rs` (the `vt100`
//! emulator, scrollback and transcript), `pty.rs` (the OS seam: spawning,
//! the master, signals, `/proc`), `spec.rs` (what the shell starts with, from passwd and the
//! runspace behind a `Lookups` seam), `slot.rs` (a session's one terminal), `handover.rs`.
//! This file joins them: the core behind a short-held lock, its effects carried out after it.

pub mod core;
mod express;
pub mod handover;
mod model;
mod pty;
pub mod screen;
mod slot;
pub mod spec;

use std::{
    os::fd::OwnedFd,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::Duration,
};

use remora_unix::LockRecover;
use remora_wire::{TermRedraw, TerminalInfo};
use tokio::sync::{watch, Notify};
use uuid::Uuid;

pub use self::core::{Next, TermEffects, RING_BYTES};
pub use express::{Express, SendNow};
pub use slot::TerminalSlot;
pub use spec::TermSpec;

use self::{core::TermCore, express::ExpressSlot, model::Model, pty::Master, screen::Screen};
use super::{runspace::ShellProcess, ConnId};
use tokio_util::sync::CancellationToken;

/// One read from the master.
const READ_CHUNK: usize = 64 * 1024;
/// The most one read of a pty master returns while more is coming (Linux's line discipline
/// hands out 4095 bytes at a time).
const PTY_READ_MOST: usize = 4095;
/// Most output the model reads in one go, between looks at the core.
pub const MODEL_BATCH: usize = 256 * 1024;
/// Most output the model reads on the daemon's own thread (a keystroke's echo, a prompt).
const MODEL_INLINE: usize = 4 * 1024;
/// Most output the model may lag behind the pty before the pump waits for it.
pub const MODEL_BACKLOG: usize = 2 << 20;
/// Time the shell has after SIGHUP before everything on its terminal is killed.
const HANGUP_GRACE: Duration = Duration::from_secs(2);

/// One terminal: the pure core ([`TermCore`]) behind a short-held lock, and the operating
/// system's side (the pty master, the shell process, signals) around it.
pub struct Terminal {
    /// Tells this terminal from an earlier one of the same session.
    pub generation: u64,
    /// The shell's pid, also its process group and session id.
    pub pid: i32,
    master: Master,
    core: Mutex<TermCore>,
    /// The screen model; see the module docs for the lock order.
    model: Mutex<Model>,
    /// Set while a model job is scheduled or running.
    modeling: AtomicBool,
    /// Told when the model has read more (the pump waits on it past the backlog).
    modeled: Notify,
    changed: watch::Sender<()>,
    /// Serialises keystrokes and remembers the last input seq taken.
    input: tokio::sync::Mutex<u64>,
    /// The shell process while no pump runs (before the first, and parked for a handover).
    process: Mutex<Option<ShellProcess>>,
    /// Lines of history the screen model keeps.
    scrollback: usize,
    /// The interactive stream's place, lent to the pump while the stream waits.
    express: ExpressSlot,
}

impl std::fmt::Debug for Terminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminal")
            .field("generation", &self.generation)
            .field("pid", &self.pid)
            .finish()
    }
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
        let core = TermCore::new(rows, cols);
        let model = Model::new(Screen::new(rows, cols, scrollback), 0);
        Self::assemble(generation, pid, spawned.master, process, (core, model), scrollback)
    }

    fn assemble(
        generation: u64,
        pid: i32,
        master: OwnedFd,
        process: ShellProcess,
        (core, model): (TermCore, Model),
        scrollback: usize,
    ) -> std::io::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            generation,
            pid,
            master: Master::register(master)?,
            core: Mutex::new(core),
            model: Mutex::new(model),
            modeling: AtomicBool::new(false),
            modeled: Notify::new(),
            changed: watch::Sender::new(()),
            input: tokio::sync::Mutex::new(0),
            process: Mutex::new(Some(process)),
            scrollback,
            express: ExpressSlot::default(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, TermCore> {
        self.core.lock_or_recover()
    }

    /// Carries out a change's effects, after the lock is gone.
    fn apply(&self, effects: TermEffects) -> std::io::Result<()> {
        if let Some((rows, cols)) = effects.resize_pty {
            self.master.resize(rows, cols)?;
        }
        if effects.wake {
            self.changed.send_replace(());
        }
        Ok(())
    }

    /// Applies effects that ask for no system call (output, acks, the end).
    fn wake(&self, effects: TermEffects) {
        debug_assert!(effects.resize_pty.is_none());
        if effects.wake {
            self.changed.send_replace(());
        }
    }

    /// Wakes on every change after this call.
    pub fn subscribe(&self) -> watch::Receiver<()> {
        self.changed.subscribe()
    }

    /// Takes output read from the master: into the ring for the streams, then the model.
    fn push(self: &Arc<Self>, bytes: &[u8]) {
        let effects = self.lock().push(bytes);
        self.wake(effects);
        self.schedule_model();
    }

    /// Takes a short read (an echo): sent at once through the lent express when there is one;
    /// false when it waits for the streams instead.
    /// The send comes last: the task woken last (here the connection's writer) is the one the
    /// runtime polls next.
    fn push_short(self: &Arc<Self>, bytes: &[u8]) -> bool {
        let effects = self.lock().push(bytes);
        self.wake(effects);
        self.schedule_model();
        self.express.send_due(&self.core)
    }

    /// Lends the pump the interactive stream's place while the stream waits (see `express.rs`).
    pub fn lend_express(&self, express: Express) {
        self.express.lend(express);
    }

    /// Takes `conn`'s express back: the seq its stream goes on from, when it was lent.
    pub fn reclaim_express(&self, conn: ConnId) -> Option<u64> {
        self.express.reclaim(conn)
    }

    /// Starts a model job unless one is on its way; it reads until nothing is left. It runs
    /// after the streams have sent what woke them: on the daemon's thread when it is a few
    /// bytes (a keystroke's echo: cheaper than waking a thread) and the model is free, else on
    /// a blocking thread. A push that lands as a job finishes is read by it or starts the next.
    fn schedule_model(self: &Arc<Self>) {
        if self.modeling.swap(true, Ordering::AcqRel) {
            return;
        }
        let terminal = self.clone();
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            if terminal.lock().unmodeled_bytes() <= MODEL_INLINE {
                if let Some(mut model) = terminal.model.try_lock_or_recover() {
                    // Nothing is pushed while this runs: the pump shares the thread.
                    terminal.catch_up(&mut model);
                    drop(model);
                    if !terminal.release_job() {
                        return;
                    }
                }
            }
            tokio::task::spawn_blocking(move || terminal.model_job());
        });
    }

    /// A model job on a blocking thread; see [`Terminal::schedule_model`].
    fn model_job(&self) {
        loop {
            self.catch_up(&mut self.model.lock_or_recover());
            if !self.release_job() {
                break;
            }
        }
    }

    /// Ends the running model job; true when output came meanwhile and the caller holds the
    /// job again.
    fn release_job(&self) -> bool {
        self.modeling.store(false, Ordering::Release);
        self.lock().unmodeled_bytes() > 0 && !self.modeling.swap(true, Ordering::AcqRel)
    }

    /// Feeds `model` every chunk pushed so far (the emulator runs here, outside the core's lock).
    fn catch_up(&self, model: &mut Model) {
        loop {
            let work = self.lock().model_work(MODEL_BATCH);
            model.read(&work);
            self.lock().set_modeled(model.seq());
            self.modeled.notify_waiters();
            if work.chunks.is_empty() {
                return;
            }
        }
    }

    /// Returns once the model lags by at most [`MODEL_BACKLOG`] bytes.
    async fn model_room(&self) {
        loop {
            let modeled = self.modeled.notified();
            tokio::pin!(modeled);
            modeled.as_mut().enable();
            if self.lock().unmodeled_bytes() <= MODEL_BACKLOG {
                return;
            }
            modeled.await;
        }
    }

    /// Runs `read` on the caught-up model, on a blocking thread.
    async fn with_model<T: Send + 'static>(
        self: &Arc<Self>,
        read: impl FnOnce(&mut Model) -> T + Send + 'static,
    ) -> std::io::Result<T> {
        let terminal = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut model = terminal.model.lock_or_recover();
            terminal.catch_up(&mut model);
            read(&mut model)
        })
        .await
        .map_err(|e| std::io::Error::other(format!("the screen model failed: {e}")))
    }

    fn set_exit(&self, code: Option<i32>) {
        let effects = self.lock().set_exit(code);
        self.wake(effects);
    }

    /// True while the shell runs with no pump reading (parked for a handover).
    pub fn is_parked(&self) -> bool {
        self.process.lock().unwrap_or_else(|p| p.into_inner()).is_some() && self.exit().is_none()
    }

    /// The shell's exit code once it ended.
    pub fn exit(&self) -> Option<Option<i32>> {
        self.lock().exit()
    }

    /// True when `seq + 1` onward is still in the ring (a resume without a redraw).
    pub fn can_resume_after(&self, seq: u64) -> bool {
        self.lock().can_resume_after(seq)
    }

    /// The screen as it stands, with the seq it reflects (every chunk pushed before the call).
    pub async fn redraw(self: &Arc<Self>, session: Uuid) -> std::io::Result<TermRedraw> {
        self.with_model(move |model| model.redraw(session)).await
    }

    /// The next thing for a stream whose next seq is `cursor`, within `window` bytes past the
    /// connection's ack.
    pub fn next(&self, conn: ConnId, cursor: u64, window: u64) -> Next {
        self.lock().next(conn, cursor, window)
    }

    /// A connection wrote output up to `seq`.
    pub fn ack(&self, conn: ConnId, seq: u64) {
        let effects = self.lock().ack(conn, seq);
        self.wake(effects);
    }

    /// A stream of `conn` starts (interactive or watching).
    pub fn join(self: &Arc<Self>, conn: ConnId, interactive: bool, acked: u64) -> Viewer {
        self.lock().join(conn, interactive, acked);
        Viewer {
            terminal: self.clone(),
            conn,
            interactive,
        }
    }

    /// Whether `conn` may type and resize.
    pub fn is_interactive(&self, conn: ConnId) -> bool {
        self.lock().is_interactive(conn)
    }

    /// Writes keystrokes numbered `seq`; a seq already taken is skipped (a resent frame).
    /// Returns the highest seq taken.
    pub async fn input(&self, seq: u64, data: &[u8]) -> std::io::Result<u64> {
        let mut taken = self.input.lock().await;
        if seq <= *taken {
            return Ok(*taken);
        }
        self.master.write_all(data).await?;
        *taken = seq;
        Ok(seq)
    }

    /// The highest input seq taken.
    pub async fn input_seq(&self) -> u64 {
        *self.input.lock().await
    }

    /// Resizes the terminal (the foreground program gets SIGWINCH) and its model once it has
    /// read the output before, to at most the model's cell budget ([`screen::fit`]): a huge
    /// window gets fewer rows, not a huge model.
    pub fn resize(self: &Arc<Self>, rows: u16, cols: u16) -> std::io::Result<()> {
        let effects = self.lock().resize(rows, cols);
        self.apply(effects)?;
        self.schedule_model();
        Ok(())
    }

    /// The transcript since the last call, as plain text, and lines lost to the bound.
    pub async fn transcript(self: &Arc<Self>) -> std::io::Result<(String, u64)> {
        self.with_model(Model::transcript).await
    }

    /// What `ls` shows.
    pub fn info(&self) -> TerminalInfo {
        let (rows, cols, exit, watchers) = {
            let core = self.lock();
            let (rows, cols) = core.size();
            (rows, cols, core.exit(), core.watchers())
        };
        let foreground = match exit {
            Some(_) => None,
            None => self.master.foreground_group().and_then(pty::process_name),
        };
        TerminalInfo {
            rows,
            cols,
            foreground,
            exit_code: exit.flatten(),
            watchers,
        }
    }

    /// Raw descriptor of the master, for logs and handover.
    pub fn master_fd(&self) -> i32 {
        self.master.raw_fd()
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
        self.terminal.lock().leave(self.conn, self.interactive);
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
            biased;
            _ = closed.cancelled() => break Stop::Closed,
            _ = handover.cancelled() => break Stop::HandOver,
            _ = terminal.model_room() => {}
        }
        tokio::select! {
            ready = terminal.master.readable() => {
                let Ok(mut guard) = ready else { break Stop::Hungup };
                match guard.try_io(|fd| nix::unistd::read(fd.get_ref(), &mut buf).map_err(std::io::Error::from)) {
                    Ok(Ok(0)) | Ok(Err(_)) => break Stop::Hungup, // EIO: the slave is closed
                    Ok(Ok(n)) if n < PTY_READ_MOST => {
                        // Less than a pty hands out at once (a keystroke's echo): sent to the
                        // interactive client from here, else the streams send it before this
                        // task reads again (and finds the master drained).
                        if !terminal.push_short(&buf[..n]) {
                            tokio::task::yield_now().await;
                        }
                    }
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
            terminal.master.hang_up(terminal.pid);
            match tokio::time::timeout(HANGUP_GRACE, process.wait()).await {
                Ok(code) => code,
                Err(_) => {
                    pty::kill_session(terminal.pid);
                    process.wait().await
                }
            }
        }
    };
    // Whatever the shell left on its terminal goes with it.
    terminal.master.hang_up(terminal.pid);
    pty::kill_session(terminal.pid);
    terminal.set_exit(Some(code));
}

/// Reads what is ready into `buf` without waiting; returns how much.
fn top_up(terminal: &Terminal, buf: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        match terminal.master.read_now(&mut buf[filled..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    filled
}

fn drain(terminal: &Arc<Terminal>, buf: &mut [u8]) {
    while let Ok(n) = terminal.master.read_now(buf) {
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
