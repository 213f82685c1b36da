//! Sessions: a named, UUID-identified container holding one runspace and its commands.
//!
//! Invariants:
//! - Session state lives behind one short-held mutex; nothing awaits while holding it.
//! - Every change that a waiter may care about (new output, command state, acks, leases) bumps
//!   the session's `changed` watch, so streams wait on events, never on timers.
//! - These types never cross the wire; [`Session::info`] converts them at the edge.

pub mod buffer;
mod command;
pub mod journal;
mod name;
pub mod runspace;
mod spill;
pub mod store;

use std::{
    collections::BTreeMap,
    sync::{Mutex, MutexGuard},
};

use bytes::Bytes;
use remora_wire::{
    Attachment, Availability, Buffering, CommandInfo, CommandState, SessionInfo, SessionState, Stream, UnixMillis,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use command::CommandRecord;
pub use journal::{Entry, EntryKind};
pub use name::validate_name;

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
}

/// The client currently attached to a session.
#[derive(Debug, Clone)]
struct Lease {
    conn: ConnId,
    from: String,
    since: UnixMillis,
    /// Cancelled when another client takes the session over or it is disconnected by force.
    token: CancellationToken,
    /// The attached client process, when it said.
    client: Option<Uuid>,
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
}

#[derive(Debug)]
struct Inner {
    settings: SessionSettings,
    /// Why the last holder lost the session by force ("taken over by …", "disconnected by …").
    released_by: Option<String>,
    commands: BTreeMap<u64, CommandRecord>,
    next_command: u64,
    lease: Option<Lease>,
    disconnected_at: Option<UnixMillis>,
    broken: Option<String>,
    buffer: buffer::Buffer,
}

/// One session.
#[derive(Debug)]
pub struct Session {
    pub id: Uuid,
    pub name: String,
    /// Created by `invoke` without a name; removed once its output is acknowledged.
    pub temporary: bool,
    pub created_at: UnixMillis,
    /// Cancelled when the session is removed: stops its runspace and streams.
    pub closed: CancellationToken,
    inner: Mutex<Inner>,
    changed: watch::Sender<()>,
    /// Where the session and its finished journals are saved (named sessions only).
    store: Option<store::SessionStore>,
    /// The running command a client asked to stop, for the runspace.
    stop_requests: watch::Sender<Option<u64>>,
}

impl Session {
    /// A new, empty, unattached session.
    pub fn new(name: String, temporary: bool, settings: SessionSettings) -> Self {
        let now = now_millis();
        let id = Uuid::new_v4();
        let store = settings
            .store_root
            .as_deref()
            .filter(|_| !temporary)
            .map(|root| store::SessionStore::new(root, id));
        if let Some(store) = &store {
            if let Err(err) = store.save_session(&store::stored_session(id, &name, now, &settings)) {
                tracing::error!(session = %name, "cannot save the session to disk: {err}");
            }
        }
        Self {
            id,
            store,
            name,
            temporary,
            created_at: now,
            closed: CancellationToken::new(),
            inner: Mutex::new(Inner {
                settings,
                released_by: None,
                commands: BTreeMap::new(),
                next_command: 1,
                lease: None,
                disconnected_at: Some(now),
                broken: None,
                buffer: buffer::Buffer::default(),
            }),
            changed: watch::Sender::new(()),
            stop_requests: watch::Sender::new(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn notify(&self) {
        self.changed.send_replace(());
    }

    /// A receiver that wakes on every change after this call.
    pub fn subscribe(&self) -> watch::Receiver<()> {
        self.changed.subscribe()
    }

    /// Queues a command; it runs after the ones before it.
    pub fn enqueue(&self, text: String) -> Result<CommandInfo, SessionRefusal> {
        let mut inner = self.lock();
        if let Some(reason) = &inner.broken {
            return Err(SessionRefusal::Broken(reason.clone()));
        }
        let limit = inner.settings.max_queued;
        let queued = inner
            .commands
            .values()
            .filter(|c| c.state == CommandState::Queued)
            .count();
        if queued >= limit {
            return Err(SessionRefusal::QueueFull { limit });
        }
        let id = inner.next_command;
        inner.next_command += 1;
        let record = CommandRecord::queued(id, text);
        let info = record.info();
        inner.commands.insert(id, record);
        drop(inner);
        self.notify();
        Ok(info)
    }

    /// Marks the oldest queued command Running and returns its id and text.
    pub fn start_next(&self) -> Option<(u64, String)> {
        let mut inner = self.lock();
        let record = inner.commands.values_mut().find(|c| c.state == CommandState::Queued)?;
        record.state = CommandState::Running;
        record.started_at = Some(now_millis());
        let next = (record.id, record.text.clone());
        drop(inner);
        self.notify();
        Some(next)
    }

    /// Appends output of a running command to its journal.
    pub fn append_output(&self, command: u64, stream: Stream, bytes: Bytes) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        if let Some(record) = inner.commands.get_mut(&command) {
            let data = inner
                .buffer
                .store(&inner.settings, inner.lease.is_some(), self.id, bytes);
            record.journal.push_output(stream, data);
        }
        if inner.settings.buffering == Buffering::Drop {
            drop_oldest_until_within(inner);
        }
        self.notify();
    }

    /// Ends a command with its final state; the end becomes its journal's last entry.
    pub fn finish(&self, command: u64, state: CommandState, exit_code: Option<i32>) {
        let mut inner = self.lock();
        if let Some(record) = inner.commands.get_mut(&command) {
            record.finish(state, exit_code);
        }
        self.persist_ended(&mut inner);
        drop(inner);
        self.notify();
    }

    /// Marks the runspace gone: the running command Failed (unless already ended), queued ones
    /// Failed, and the session Broken with `reason`.
    pub fn mark_broken(&self, reason: String) {
        let mut inner = self.lock();
        for record in inner.commands.values_mut().filter(|c| !c.is_ended()) {
            record.finish(CommandState::Failed, None);
        }
        inner.broken.get_or_insert(reason);
        self.persist_ended(&mut inner);
        drop(inner);
        self.notify();
    }

    /// Stops every command that has not ended (session removal).
    pub fn stop_all(&self) {
        let mut inner = self.lock();
        for record in inner.commands.values_mut().filter(|c| !c.is_ended()) {
            record.finish(CommandState::Stopped, None);
        }
        self.persist_ended(&mut inner);
        drop(inner);
        self.notify();
    }

    /// Stops `command` (default: the running one): a queued command is cancelled at once, a
    /// running one is handed to the runspace to interrupt. Returns what is being stopped.
    pub fn request_stop(&self, command: Option<u64>) -> Result<CommandInfo, StopRefusal> {
        let mut inner = self.lock();
        let target = match command {
            Some(id) => id,
            None => inner
                .commands
                .values()
                .find(|c| c.state == CommandState::Running)
                .map(|c| c.id)
                .ok_or(StopRefusal::NothingRunning)?,
        };
        let record = inner
            .commands
            .get_mut(&target)
            .ok_or(StopRefusal::NoSuchCommand(target))?;
        match record.state {
            CommandState::Queued => record.finish(CommandState::Stopped, None),
            CommandState::Running => {
                self.stop_requests.send_replace(Some(target));
            }
            state => return Err(StopRefusal::AlreadyEnded(target, state)),
        }
        let info = record.info();
        drop(inner);
        self.notify();
        Ok(info)
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
        self.lock().commands.values().map(CommandRecord::info).collect()
    }

    /// Records that a client has written a command's output up to `seq`.
    pub fn ack(&self, command: u64, seq: u64) {
        let mut inner = self.lock();
        let freed = inner
            .commands
            .get_mut(&command)
            .map(|c| c.journal.ack(seq))
            .unwrap_or_default();
        inner.buffer.release(freed);
        if let (Some(store), Some(record)) = (&self.store, inner.commands.get(&command).filter(|c| c.persisted)) {
            if let Err(err) = store.save_ack(record) {
                tracing::warn!(session = %self.name, "cannot record an acknowledgement on disk: {err}");
            }
        }
        drop(inner);
        self.notify();
    }

    /// Why the runspace must stop reading the command's output for now (buffering limits).
    pub fn pause_reason(&self) -> Option<String> {
        let inner = self.lock();
        inner.buffer.pause_reason(&inner.settings, inner.lease.is_some())
    }

    /// Attaches `conn`. Another client's attachment refuses it (Busy) unless `force`, which takes
    /// the session over and ends the other client's stream. Returns the attachment's token,
    /// cancelled if this client later loses the session by force.
    ///
    /// The same client process (`client`) reconnecting after its link broke takes its own
    /// attachment back without `force`: the agent may not have noticed the old link die yet.
    pub fn attach(
        &self,
        conn: ConnId,
        from: &str,
        client: Option<Uuid>,
        force: bool,
    ) -> Result<CancellationToken, SessionRefusal> {
        let mut inner = self.lock();
        match &inner.lease {
            Some(lease) if lease.conn == conn => return Ok(lease.token.clone()),
            Some(lease) if !force && (client.is_none() || lease.client != client) => {
                return Err(SessionRefusal::Busy {
                    from: lease.from.clone(),
                    since: lease.since,
                })
            }
            Some(lease) => {
                lease.token.cancel();
                inner.released_by = Some(format!("taken over by {from}"));
            }
            None => {}
        }
        let token = CancellationToken::new();
        inner.lease = Some(Lease {
            conn,
            from: from.to_string(),
            since: now_millis(),
            token: token.clone(),
            client,
        });
        inner.disconnected_at = None;
        drop(inner);
        self.notify();
        Ok(token)
    }

    /// Detaches `conn` if it holds the session; the idle clock starts now.
    pub fn detach(&self, conn: ConnId) {
        let mut inner = self.lock();
        if inner.lease.as_ref().is_some_and(|l| l.conn == conn) {
            inner.lease = None;
            inner.disconnected_at = Some(now_millis());
        }
        drop(inner);
        self.notify();
    }

    /// Detaches whoever holds the session (Disconnect-PSSession); their stream ends.
    pub fn release(&self, by: &str) {
        let mut inner = self.lock();
        if let Some(lease) = inner.lease.take() {
            lease.token.cancel();
            inner.released_by = Some(format!("disconnected by {by}"));
            inner.disconnected_at = Some(now_millis());
        }
        drop(inner);
        self.notify();
    }

    /// The session's current settings.
    pub fn settings(&self) -> SessionSettings {
        self.lock().settings.clone()
    }

    /// Why the last holder lost the session by force.
    pub fn released_by(&self) -> Option<String> {
        self.lock().released_by.clone()
    }

    /// Changes the idle timeout and/or buffering mode.
    pub fn update_settings(&self, idle_timeout_secs: Option<u64>, buffering: Option<Buffering>) {
        let mut inner = self.lock();
        if let Some(secs) = idle_timeout_secs {
            inner.settings.idle_timeout_secs = secs;
        }
        if let Some(mode) = buffering {
            inner.settings.buffering = mode;
        }
        if let Some(store) = &self.store {
            let _ = store.save_session(&store::stored_session(
                self.id,
                &self.name,
                self.created_at,
                &inner.settings,
            ));
        }
        drop(inner);
        self.notify();
    }

    /// Journal entries of `command` after `after_seq`, at most `max_bytes` of output.
    pub fn entries_after(&self, command: u64, after_seq: u64, max_bytes: u64) -> Vec<Entry> {
        let inner = self.lock();
        inner
            .commands
            .get(&command)
            .map_or_else(Vec::new, |c| c.journal.entries_after(after_seq, max_bytes))
            .into_iter()
            .map(|entry| inner.buffer.load(entry))
            .collect()
    }

    /// Ids of commands that still have unacknowledged entries or have not ended, in order.
    pub fn pending_commands(&self) -> Vec<u64> {
        let inner = self.lock();
        inner
            .commands
            .values()
            .filter(|c| !c.is_ended() || !c.journal.fully_acked())
            .map(|c| c.id)
            .collect()
    }

    /// Acked seq and acked offset of a command's journal.
    pub fn acked_position(&self, command: u64) -> (u64, u64) {
        let inner = self.lock();
        inner
            .commands
            .get(&command)
            .map_or((0, 0), |c| (c.journal.acked_seq(), c.journal.acked_offset()))
    }

    /// Whether `command` has ended and every entry of its journal is acknowledged.
    pub fn command_drained(&self, command: u64) -> bool {
        let inner = self.lock();
        inner
            .commands
            .get(&command)
            .is_some_and(|c| c.is_ended() && c.journal.fully_acked())
    }

    /// Number of commands Running or Queued.
    pub fn active_commands(&self) -> u32 {
        self.lock().commands.values().filter(|c| !c.is_ended()).count() as u32
    }

    /// Exit code of the most recently ended command.
    pub fn last_exit_code(&self) -> Option<i32> {
        let inner = self.lock();
        inner
            .commands
            .values()
            .rev()
            .find(|c| c.is_ended())
            .and_then(|c| c.exit_code)
    }

    /// True when every command has ended and every journal entry is acknowledged.
    pub fn drained(&self) -> bool {
        let inner = self.lock();
        inner.commands.values().all(|c| c.is_ended() && c.journal.fully_acked())
    }

    /// Why the session is Broken, if it is.
    pub fn broken_reason(&self) -> Option<String> {
        self.lock().broken.clone()
    }

    /// The session as the client `viewer` sees it.
    pub fn info(&self, viewer: ConnId, host: &str) -> SessionInfo {
        let inner = self.lock();
        let (state, availability) = match (&inner.broken, &inner.lease) {
            (Some(_), _) => (SessionState::Broken, Availability::None),
            (None, Some(lease)) if lease.conn == viewer => (SessionState::Opened, Availability::Available),
            (None, Some(_)) => (SessionState::Disconnected, Availability::Busy),
            (None, None) => (SessionState::Disconnected, Availability::None),
        };
        let tally = CommandTally::of(inner.commands.values());
        let expires_at = inner
            .disconnected_at
            .map(|at| at + inner.settings.idle_timeout_secs * 1000);
        SessionInfo {
            name: self.name.clone(),
            instance_id: self.id,
            host: host.to_string(),
            state,
            availability,
            configuration: inner.settings.configuration.clone(),
            created_at: self.created_at,
            disconnected_at: inner.disconnected_at,
            idle_timeout_secs: inner.settings.idle_timeout_secs,
            expires_at,
            buffering: inner.settings.buffering,
            attached: inner.lease.as_ref().map(|l| Attachment {
                from: l.from.clone(),
                since: l.since,
            }),
            commands_running: tally.running,
            commands_queued: tally.queued,
            commands_completed: tally.ended,
            broken_reason: inner.broken.clone(),
            unacked_bytes: (inner.buffer.memory + inner.buffer.spilled) as u64,
            spilled_bytes: inner.buffer.spilled as u64,
            dropped_bytes: tally.dropped_bytes,
            blocked_reason: inner.buffer.pause_reason(&inner.settings, inner.lease.is_some()),
            temporary: self.temporary,
        }
    }

    /// Public facts about one command.
    pub fn command_info(&self, command: u64) -> Option<CommandInfo> {
        self.lock().commands.get(&command).map(CommandRecord::info)
    }
}

impl Session {
    /// A session read back from disk after the daemon restarted: Broken, its shell gone, its
    /// finished commands' unreceived output still there.
    pub fn restore(stored: store::StoredSession, commands: Vec<CommandRecord>, settings: SessionSettings) -> Self {
        let session = Self::restored_shell(stored, settings);
        let mut inner = session.lock();
        inner.buffer.memory = commands.iter().map(|c| c.journal.memory_bytes()).sum();
        inner.next_command = commands.last().map_or(1, |c| c.id + 1);
        inner.commands = commands.into_iter().map(|c| (c.id, c)).collect();
        inner.broken = Some("runspace lost: the agent restarted; finished commands' output is still receivable".into());
        drop(inner);
        session
    }

    fn restored_shell(stored: store::StoredSession, settings: SessionSettings) -> Self {
        let root = settings.store_root.clone();
        let mut session = Self::new(
            stored.name.clone(),
            false,
            SessionSettings {
                store_root: None,
                ..settings
            },
        );
        session.id = stored.id;
        session.created_at = stored.created_at;
        session.store = root.map(|root| store::SessionStore::new(&root, stored.id));
        session
    }

    /// Deletes what is stored on disk for this session (it is being removed for good): its saved
    /// state and its spill file, now rather than when the last task holding the session ends.
    pub fn discard_stored(&self) {
        if let Some(store) = &self.store {
            store.remove();
        }
        self.lock().buffer.discard_spill();
    }

    /// Saves every ended command that is not saved yet.
    fn persist_ended(&self, inner: &mut Inner) {
        let Some(store) = &self.store else { return };
        let Inner { commands, buffer, .. } = inner;
        for record in commands.values_mut().filter(|c| c.is_ended() && !c.persisted) {
            // Spilled chunks are read back one at a time as they are written out.
            let entries = record.journal.entries_after(0, u64::MAX);
            match store.save_command(record, entries.into_iter().map(|e| buffer.load(e))) {
                Ok(()) => record.persisted = true,
                Err(err) => {
                    tracing::error!(session = %self.name, command = record.id, "cannot save a finished command: {err}")
                }
            }
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

/// Drop mode: discards the oldest unacknowledged output, oldest command first, until the
/// session is back within its memory limit.
fn drop_oldest_until_within(inner: &mut Inner) {
    while inner.buffer.memory > inner.settings.memory_limit {
        let freed = inner.commands.values_mut().find_map(|c| c.journal.drop_oldest_output());
        match freed {
            Some(freed) => inner.buffer.release(freed),
            None => return,
        }
    }
}
