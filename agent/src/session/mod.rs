//! Sessions: a named, UUID-identified container holding one runspace and its commands.
//!
//! Invariants:
//! - A session's state (`state.rs`) is a synchronous state machine behind one short-held mutex;
//!   nothing awaits and nothing touches the disk while holding it. Its changes return effects
//!   that [`Session`] carries out after unlocking, on the session's persister (`persist.rs`).
//! - Every change that a waiter may care about (new output, command state, acks, leases) bumps
//!   the session's `changed` watch, so streams wait on events, never on timers.
//! - An attachment is an [`Attachment`] value: dropping it detaches.
//! - These types never cross the wire; [`Session::info`] converts them at the edge.

pub mod batch;
pub mod buffer;
mod command;
pub mod handle;
pub mod handover;
pub mod input;
mod job;
pub mod journal;
mod lease;
mod name;
pub mod notice;
mod oom;
pub mod persist;
pub mod runspace;
mod spill;
mod state;
pub mod store;
pub mod terminal;
pub mod workflow;

use remora_unix::LockRecover;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use remora_wire::{
    Attachment as WireAttachment, Availability, Buffering, CommandInfo, CommandState, SessionInfo,
    SessionState as WireState, Stream, UnixMillis,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use batch::{Batch, Cursors, Scope};
pub use command::CommandRecord;
pub use journal::{Entry, EntryKind};
pub use lease::Attachment;
pub use name::validate_name;

use self::{
    buffer::Placement,
    journal::Data,
    persist::{Job, Persister, Queue},
    spill::Spill,
    state::{Effect, Effects, SessionState},
};
use crate::clock::now_millis;

/// Identifies one client connection to the daemon.
pub type ConnId = u64;

/// Session defaults and limits, resolved from the configuration at creation.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub configuration: String,
    pub idle_timeout_secs: u64,
    /// The configuration's cap on `idle_timeout_secs`.
    pub max_idle_timeout_secs: u64,
    pub buffering: Buffering,
    /// Unacknowledged output held in memory before buffering applies.
    pub memory_limit: usize,
    /// Unacknowledged output held on disk in spill mode.
    pub spill_quota: u64,
    /// Commands that may wait in the queue.
    pub max_queued: usize,
    /// Where this session's spill file goes.
    pub spill_dir: std::path::PathBuf,
    /// Where sessions are persisted (`<data dir>/sessions`); `None` keeps this one in memory only.
    pub store_root: Option<std::path::PathBuf>,
    /// The configuration's `on_job_end` command (see `notice.rs`).
    pub on_job_end: Option<String>,
}

/// Why a stop request could not be honoured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopRefusal {
    NothingRunning,
    NoSuchCommand(u64),
    AlreadyEnded(u64, CommandState),
}

/// Why a request about a session could not be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionRefusal {
    Broken(String),
    /// `max_queued` commands are already waiting.
    QueueFull {
        limit: usize,
    },
    Busy {
        from: String,
        since: UnixMillis,
    },
    /// The job's dependencies, label or retries were refused (see `workflow.rs`).
    Workflow(String),
}

/// One session.
#[derive(Debug)]
pub struct Session {
    pub id: Uuid,
    pub name: String,
    /// Created by `invoke` without a name; removed once its output is acknowledged.
    pub temporary: bool,
    pub created_at: UnixMillis,
    /// Cancelled when the session is removed or the daemon stops: stops its runspace and streams.
    pub closed: CancellationToken,
    state: Mutex<SessionState>,
    changed: watch::Sender<()>,
    /// The running command a client asked to stop, for the runspace.
    stop_requests: watch::Sender<Option<u64>>,
    spill: Arc<Spill>,
    /// Disk work, carried out in order by the persister.
    jobs: Queue,
    /// The persister until the daemon starts it (see [`Session::take_persister`]).
    persister: Mutex<Option<Persister>>,
    /// Saved to disk (a named session with a store).
    stored: bool,
    /// The configuration's `on_job_end` command, run when a job ends.
    on_job_end: Option<String>,
    /// The runspace shell as seen from outside its task: its pid, directory, environment and
    /// the shell while parked (`handle.rs`).
    pub runspace: handle::RunspaceHandle,
    /// The session's terminal, once one was opened (`terminal/slot.rs`).
    pub terminal: terminal::TerminalSlot,
    /// Commands' stdin streams (`input.rs`).
    pub inputs: input::Inputs,
}

impl Session {
    /// A new, empty, unattached session. Nothing is written or started: the daemon starts its
    /// persister and runspace when it registers it.
    pub fn new(name: String, temporary: bool, settings: SessionSettings) -> Self {
        let id = Uuid::new_v4();
        let spill = Arc::new(Spill::new(&settings.spill_dir, id));
        Self::with_identity(id, name, temporary, now_millis(), settings, spill)
    }

    fn with_identity(
        id: Uuid,
        name: String,
        temporary: bool,
        created_at: UnixMillis,
        settings: SessionSettings,
        spill: Arc<Spill>,
    ) -> Self {
        let store = settings
            .store_root
            .as_deref()
            .filter(|_| !temporary)
            .map(|root| store::SessionStore::new(root, id));
        let stored = store.is_some();
        let on_job_end = settings.on_job_end.clone();
        let (jobs, persister) = persist::channel(&name, store, spill.clone());
        let changed = watch::Sender::new(());
        Self {
            id,
            temporary,
            created_at,
            closed: CancellationToken::new(),
            state: Mutex::new(SessionState::new(settings, created_at)),
            stop_requests: watch::Sender::new(None),
            spill,
            jobs,
            persister: Mutex::new(Some(persister)),
            stored,
            on_job_end,
            runspace: handle::RunspaceHandle::default(),
            terminal: terminal::TerminalSlot::new(changed.clone()),
            inputs: input::Inputs::new(id, name.clone(), changed.clone()),
            name,
            changed,
        }
    }

    /// A session read back from disk after the daemon restarted: Broken, its shell gone, its
    /// finished commands' unreceived output still there.
    pub fn restore(stored: &store::StoredSession, commands: Vec<CommandRecord>, settings: SessionSettings) -> Self {
        let spill = Arc::new(Spill::new(&settings.spill_dir, stored.id));
        let session = Self::with_identity(
            stored.id,
            stored.name.clone(),
            false,
            stored.created_at,
            settings,
            spill,
        );
        let mut state = session.lock();
        state.buffer.memory = commands.iter().map(|c| c.journal.memory_bytes()).sum();
        state.next_command = commands.last().map_or(1, |c| c.id + 1);
        state.commands = commands.into_iter().map(|c| (c.id, c)).collect();
        state.broken = Some("runspace lost: the agent restarted; finished commands' output is still receivable".into());
        drop(state);
        session
    }

    /// The persister, once: the daemon runs it as one of its tracked tasks.
    pub fn take_persister(&self) -> Option<Persister> {
        self.persister.lock_or_recover().take()
    }

    /// Waits until every disk job queued so far is done.
    pub async fn flush(&self) {
        let (done, finished) = tokio::sync::oneshot::channel();
        if self.jobs.send(Job::Flush(done)).is_ok() {
            let _ = finished.await;
        }
    }

    /// Asks for the session's description to be saved (a new session).
    pub fn save_description(&self) {
        let settings = self.lock().settings.clone();
        self.carry_out(Effects(vec![Effect::SaveSession(settings)]));
    }

    fn lock(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock_or_recover()
    }

    fn notify(&self) {
        self.changed.send_replace(());
    }

    /// Applies a change under the lock, then wakes waiters and queues its effects.
    fn change<T>(&self, change: impl FnOnce(&mut SessionState) -> (T, Effects)) -> T {
        let (value, effects) = change(&mut self.lock());
        self.notify();
        self.carry_out(effects);
        value
    }

    /// Reads under the lock.
    fn read<T>(&self, read: impl FnOnce(&SessionState) -> T) -> T {
        read(&self.lock())
    }

    fn carry_out(&self, effects: Effects) {
        for effect in effects.0 {
            let job = match effect {
                Effect::SaveSession(settings) => {
                    Job::SaveSession(store::stored_session(self.id, &self.name, self.created_at, &settings))
                }
                Effect::SaveCommand(snapshot) => {
                    let id = snapshot.id();
                    let _ = self.jobs.send(Job::SaveCommand(snapshot));
                    self.queue_notice(id);
                    continue;
                }
                Effect::SaveAck {
                    command,
                    seq,
                    offset,
                    fully_acked,
                } => Job::SaveAck {
                    command,
                    seq,
                    offset,
                    fully_acked,
                },
                Effect::ReleaseSpill(bytes) => Job::ReleaseSpill(bytes),
            };
            // The persister outlives every holder of the session; a send fails only while the
            // daemon exits, when nothing can be saved any more anyway.
            let _ = self.jobs.send(job);
        }
    }

    /// Queues the `on_job_end` hook of an ended job behind the saves queued so far.
    fn queue_notice(&self, command: u64) {
        let Some(hook) = &self.on_job_end else { return };
        if let Some(info) = self.command_info(command) {
            let notice = notice::Notice::new(hook, &self.name, self.id, &info);
            let _ = self.jobs.send(Job::Notice(notice));
        }
    }

    /// A receiver that wakes on every change after this call.
    pub fn subscribe(&self) -> watch::Receiver<()> {
        self.changed.subscribe()
    }

    /// Queues a command; it runs after the ones before it.
    pub fn enqueue(&self, text: String) -> Result<CommandInfo, SessionRefusal> {
        self.enqueue_job(text, remora_wire::JobOptions::default(), remora_wire::InputMode::Null)
    }

    /// Queues a job with its label, dependencies and retries (see `workflow.rs`), and its stdin
    /// (`mode`): its input stream exists before the runspace can start it.
    pub fn enqueue_job(
        &self,
        text: String,
        options: remora_wire::JobOptions,
        mode: remora_wire::InputMode,
    ) -> Result<CommandInfo, SessionRefusal> {
        self.change(|state| {
            let queued = state.enqueue_job(text, options);
            if let Ok(info) = &queued {
                self.inputs.open(info.id, mode, &state.settings.spill_dir);
            }
            (queued, Effects::default())
        })
    }

    /// Marks the next runnable job Running (a retry whose delay is over, else the oldest queued
    /// job whose dependencies have ended and whose stored input is complete; jobs whose dependency
    /// failed are skipped on the way) and returns its id and text, or when to ask again (a retry's
    /// delay). Wakes waiters only when something changed: the runspace asks in a loop that waits
    /// for changes.
    pub fn start_next(&self) -> (Option<(u64, String)>, Option<UnixMillis>) {
        let next = self.lock().next_job(now_millis(), |command| self.inputs.ready(command));
        if next.changed {
            self.notify();
        }
        self.carry_out(next.effects);
        (next.start, next.wake_at)
    }

    /// An attempt exited with `code`: true when the job will be retried (see `workflow.rs`).
    pub fn retry_after_failure(&self, command: u64, code: i32) -> bool {
        let retrying = self.lock().retry_after_failure(command, code, now_millis());
        if retrying {
            self.notify();
        }
        retrying
    }

    /// The runspace shell's current directory, while it runs (where `cp` resolves paths).
    pub fn runspace_dir(&self) -> Option<std::path::PathBuf> {
        self.runspace.cwd()
    }

    /// Appends output of a running command to its journal. A chunk bound for the spill file is
    /// written there before it is journaled, outside the lock; only the runspace appends.
    pub fn append_output(&self, command: u64, stream: Stream, bytes: Bytes) {
        let data = match self.read(|state| state.placement(bytes.len())) {
            Placement::Memory => Data::Memory(bytes),
            Placement::Spill => match self.spill.append(&bytes) {
                Ok(chunk) => Data::Spilled(chunk),
                Err(err) => {
                    tracing::error!(session = %self.name, "spilling output failed, blocking instead: {err}");
                    self.lock().spill_failed(format!("spill file error: {err}"));
                    Data::Memory(bytes)
                }
            },
        };
        self.change(|state| ((), state.push_output(command, stream, data)));
    }

    /// Ends a command with its final state; the end becomes its journal's last entry.
    pub fn finish(&self, command: u64, state: CommandState, exit_code: Option<i32>) {
        self.inputs.close(command);
        self.change(|s| ((), s.finish(command, state, exit_code)));
    }

    /// Ends a command, its ended journal saved first (for a stored session): a command that
    /// clients see Completed survives a crash of the daemon right after.
    pub async fn finish_durably(&self, command: u64, state: CommandState, exit_code: Option<i32>) {
        self.inputs.close(command);
        let now = now_millis();
        if self.stored {
            if let Some(snapshot) = self.read(|s| s.ended_snapshot(command, state, exit_code, now)) {
                let _ = self.jobs.send(Job::SaveCommand(snapshot));
                self.flush().await;
            }
            self.change(|s| ((), s.finish_saved(command, state, exit_code, now)));
            self.queue_notice(command);
        } else {
            self.finish(command, state, exit_code);
        }
    }

    /// Marks the runspace gone: unended commands Failed and the session Broken with `reason`.
    pub fn mark_broken(&self, reason: String) {
        self.runspace.clear();
        self.change(|state| ((), state.mark_broken(reason)));
    }

    /// Stops every command that has not ended (session removal, daemon shutdown).
    pub fn stop_all(&self) {
        self.change(|state| ((), state.stop_all()));
    }

    /// Stops `command` (default: the running one): a queued command is cancelled at once, a
    /// running one is handed to the runspace to interrupt. Returns what is being stopped.
    pub fn request_stop(&self, command: Option<u64>) -> Result<CommandInfo, StopRefusal> {
        let accepted = self.change(|state| match state.request_stop(command) {
            Ok(mut accepted) => {
                let effects = std::mem::take(&mut accepted.effects);
                (Ok(accepted), effects)
            }
            Err(refusal) => (Err(refusal), Effects::default()),
        })?;
        if let Some(running) = accepted.interrupt {
            self.stop_requests.send_replace(Some(running));
        }
        Ok(accepted.info)
    }

    /// Forgets a stop request once its command ended.
    pub fn clear_stop(&self, command: u64) {
        self.stop_requests.send_if_modified(|request| {
            let matches = *request == Some(command);
            if matches {
                *request = None;
            }
            matches
        });
    }

    /// Where the runspace learns of stop requests.
    pub fn stop_requests(&self) -> watch::Receiver<Option<u64>> {
        self.stop_requests.subscribe()
    }

    /// All commands, oldest first.
    pub fn commands(&self) -> Vec<CommandInfo> {
        self.read(|state| state.commands.values().map(CommandRecord::info).collect())
    }

    /// Facts about the commands with these ids (unknown ones left out), in one pass.
    pub fn commands_among(&self, ids: &[u64]) -> Vec<CommandInfo> {
        self.read(|state| {
            ids.iter()
                .filter_map(|id| state.commands.get(id))
                .map(CommandRecord::info)
                .collect()
        })
    }

    /// The commands whose label matches `glob` (all when `None`), oldest first.
    pub fn commands_labelled(&self, glob: Option<&str>) -> Vec<CommandInfo> {
        let pattern = glob.map(wildmatch::WildMatch::new);
        self.read(|state| {
            state
                .commands
                .values()
                .filter(|c| match (&pattern, &c.workflow.options.label) {
                    (None, _) => true,
                    (Some(pattern), Some(label)) => pattern.matches(label),
                    (Some(_), None) => false,
                })
                .map(CommandRecord::info)
                .collect()
        })
    }

    /// Records that a client has written a command's output up to `seq`.
    pub fn ack(&self, command: u64, seq: u64) {
        self.change(|state| ((), state.ack(command, seq)));
    }

    /// Why the runspace must stop reading the command's output for now (buffering limits).
    pub fn pause_reason(&self) -> Option<String> {
        self.read(SessionState::pause_reason)
    }

    /// Attaches `conn`. Another client's attachment refuses it (Busy) unless `force`, which takes
    /// the session over and ends the other client's stream. Dropping the returned attachment
    /// detaches; its token is cancelled if this client later loses the session by force.
    ///
    /// The same client process (`client`) reconnecting after its link broke takes its own
    /// attachment back without `force`: the agent may not have noticed the old link die yet.
    pub fn attach(
        self: &Arc<Self>,
        conn: ConnId,
        from: &str,
        client: Option<Uuid>,
        force: bool,
    ) -> Result<Attachment, SessionRefusal> {
        let token = self.change(|state| {
            (
                state.attach(conn, from, client, force, now_millis()),
                Effects::default(),
            )
        })?;
        Ok(Attachment::new(self.clone(), conn, token))
    }

    /// One attachment of `conn` ended (see [`Attachment`]).
    fn detach(&self, conn: ConnId) {
        self.change(|state| (state.detach(conn, now_millis()), Effects::default()));
    }

    /// Detaches whoever holds the session (Disconnect-PSSession); their stream ends.
    pub fn release(&self, by: &str) {
        self.change(|state| (state.release(by, now_millis()), Effects::default()));
    }

    /// The session's current settings.
    pub fn settings(&self) -> SessionSettings {
        self.read(|state| state.settings.clone())
    }

    /// Changes the idle timeout and/or buffering mode.
    pub fn update_settings(&self, idle_timeout_secs: Option<u64>, buffering: Option<Buffering>) {
        self.change(|state| ((), state.update_settings(idle_timeout_secs, buffering)));
    }

    /// The next entries a stream sends, read in one pass under the lock. Spilled entries are
    /// still references: load them with [`Session::load`].
    pub fn next_batch(&self, scope: Scope, cursors: &mut Cursors, window: Option<u64>) -> Batch {
        self.read(|state| batch::next_batch(&state.commands, scope, cursors, window))
    }

    /// The entry with its bytes in memory (read back from the spill file, outside the lock);
    /// `None` if it was acknowledged and released meanwhile.
    pub fn load(&self, entry: Entry) -> Option<Entry> {
        persist::load(&self.spill, entry)
    }

    /// What a stream reports when it ends: the exit code to report and the commands pending.
    pub fn stream_end_facts(&self, scope: Scope) -> (Option<i32>, u32) {
        self.read(|state| {
            let exit = match scope {
                Scope::Command(command) => state.commands.get(&command).and_then(|c| c.exit_code),
                Scope::Pending { .. } => state.last_exit_code(),
            };
            (exit, state.active_commands())
        })
    }

    /// Why the last holder lost the session by force.
    pub fn released_by(&self) -> Option<String> {
        self.read(|state| state.released_by.clone())
    }

    /// True when every command has ended and every journal entry is acknowledged.
    pub fn drained(&self) -> bool {
        self.read(SessionState::drained)
    }

    /// When the idle timeout removes the session (nobody attached).
    pub fn expires_at(&self) -> Option<UnixMillis> {
        self.read(SessionState::expires_at)
    }

    /// Public facts about one command.
    pub fn command_info(&self, command: u64) -> Option<CommandInfo> {
        self.read(|state| state.commands.get(&command).map(CommandRecord::info))
    }

    /// Deletes what is stored on disk for this session (it is being removed for good): its saved
    /// state and its spill file, now rather than when the last task holding the session ends.
    pub fn discard_stored(&self) {
        let _ = self.jobs.send(Job::Remove);
    }

    /// The session as the client `viewer` sees it.
    pub fn info(&self, viewer: ConnId, host: &str) -> SessionInfo {
        let state = self.lock();
        let (session_state, availability) = match (&state.broken, &state.lease) {
            (Some(_), _) => (WireState::Broken, Availability::None),
            (None, Some(lease)) if lease.conn == viewer => (WireState::Opened, Availability::Available),
            (None, Some(_)) => (WireState::Disconnected, Availability::Busy),
            (None, None) => (WireState::Disconnected, Availability::None),
        };
        let tally = CommandTally::of(state.commands.values());
        let info = SessionInfo {
            name: self.name.clone(),
            instance_id: self.id,
            host: host.to_string(),
            state: session_state,
            availability,
            configuration: state.settings.configuration.clone(),
            created_at: self.created_at,
            disconnected_at: state.disconnected_at,
            idle_timeout_secs: state.settings.idle_timeout_secs,
            expires_at: state.expires_at(),
            buffering: state.settings.buffering,
            attached: state.lease.as_ref().map(|l| WireAttachment {
                from: l.from.clone(),
                since: l.since,
            }),
            commands_running: tally.running,
            commands_queued: tally.queued,
            commands_completed: tally.ended,
            commands_failed: state.failed_commands(),
            broken_reason: state.broken.clone(),
            unacked_bytes: (state.buffer.memory + state.buffer.spilled) as u64,
            spilled_bytes: state.buffer.spilled as u64,
            dropped_bytes: tally.dropped_bytes,
            blocked_reason: state.pause_reason(),
            temporary: self.temporary,
            agent_version: env!("CARGO_PKG_VERSION").into(),
            terminal: None,
        };
        drop(state);
        SessionInfo {
            terminal: self.terminal.get().map(|t| t.info()),
            ..info
        }
    }
}

/// A session's commands counted by state in one pass (`ls` asks for every session's).
#[derive(Default)]
struct CommandTally {
    running: u32,
    queued: u32,
    ended: u32,
    dropped_bytes: u64,
}

impl CommandTally {
    fn of<'a>(commands: impl Iterator<Item = &'a CommandRecord>) -> Self {
        let mut tally = CommandTally::default();
        for command in commands {
            match command.state {
                CommandState::Running => tally.running += 1,
                CommandState::Queued => tally.queued += 1,
                _ if command.is_ended() => tally.ended += 1,
                _ => {}
            }
            tally.dropped_bytes += command.journal.dropped_bytes();
        }
        tally
    }
}

/// Settings for unit tests: spill mode, small limits, no store.
#[cfg(test)]
pub fn test_settings() -> SessionSettings {
    SessionSettings {
        configuration: "default".into(),
        idle_timeout_secs: 7200,
        max_idle_timeout_secs: 43200,
        buffering: Buffering::Spill,
        memory_limit: 1 << 20,
        spill_quota: 1 << 30,
        max_queued: 100,
        spill_dir: std::env::temp_dir(),
        store_root: None,
        on_job_end: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asking_for_the_next_command_wakes_nobody_when_there_is_none() {
        let session = Session::new("s".into(), false, test_settings());
        let changes = session.subscribe();
        assert_eq!(session.start_next(), (None, None));
        assert!(
            !changes.has_changed().unwrap(),
            "a runspace waiting for work would spin"
        );
        session.enqueue("true".into()).unwrap();
        let changes = session.subscribe();
        assert!(session.start_next().0.is_some());
        assert!(changes.has_changed().unwrap(), "starting a command is news");
    }
}
