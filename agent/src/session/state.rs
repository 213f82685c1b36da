//! A session's state as a plain synchronous state machine: no locks, no I/O, no async.
//!
//! Every change returns the [`Effects`] it needs carried out (what to save, what spill space to
//! release); `Session` performs them after dropping its lock, on the session's persister. That
//! keeps disk work away from the lock that `ls`, every stream and the reaper take, and makes the
//! state machine testable on its own.

use std::collections::BTreeMap;

use remora_wire::{Buffering, CommandInfo, CommandState, Stream, UnixMillis};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{
    buffer::{Buffer, Placement},
    command::CommandRecord,
    journal::Data,
    store::{self, CommandSnapshot},
    ConnId, SessionRefusal, SessionSettings, StopRefusal,
};

/// Disk work a change asks for.
#[derive(Debug)]
pub enum Effect {
    /// The session's description changed: save it.
    SaveSession(SessionSettings),
    /// A command ended: save it with its unacknowledged entries.
    SaveCommand(CommandSnapshot),
    /// An ended command's acknowledgement moved.
    SaveAck {
        command: u64,
        seq: u64,
        offset: u64,
        fully_acked: bool,
    },
    /// Spilled bytes nobody needs any more.
    ReleaseSpill(usize),
}

/// The effects of one change, in order.
#[derive(Debug, Default)]
#[must_use = "effects must be carried out"]
pub struct Effects(pub Vec<Effect>);

impl Effects {
    fn push(&mut self, effect: Effect) {
        self.0.push(effect);
    }

    /// Whether there is nothing to do.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The client currently attached to a session.
#[derive(Debug, Clone)]
pub(super) struct Lease {
    pub conn: ConnId,
    pub from: String,
    pub since: UnixMillis,
    /// Cancelled when another client takes the session over or it is disconnected by force.
    pub token: CancellationToken,
    /// The attached client process, when it said.
    pub client: Option<Uuid>,
    /// Streams of `conn` holding the attachment; it ends when the last one lets go.
    pub holders: u32,
}

/// Everything about a session that changes.
#[derive(Debug)]
pub(super) struct SessionState {
    pub(super) settings: SessionSettings,
    /// Why the last holder lost the session by force ("taken over by …", "disconnected by …").
    pub(super) released_by: Option<String>,
    pub(super) commands: BTreeMap<u64, CommandRecord>,
    pub(super) next_command: u64,
    pub(super) lease: Option<Lease>,
    pub(super) disconnected_at: Option<UnixMillis>,
    pub(super) broken: Option<String>,
    pub(super) buffer: Buffer,
}

impl SessionState {
    /// A new, empty, unattached session; its idle clock starts at `now`.
    pub(super) fn new(settings: SessionSettings, now: UnixMillis) -> Self {
        Self {
            settings,
            released_by: None,
            commands: BTreeMap::new(),
            next_command: 1,
            lease: None,
            disconnected_at: Some(now),
            broken: None,
            buffer: Buffer::default(),
        }
    }

    /// Queues a command; it runs after the ones before it.
    pub(super) fn enqueue(&mut self, text: String) -> Result<CommandInfo, SessionRefusal> {
        if let Some(reason) = &self.broken {
            return Err(SessionRefusal::Broken(reason.clone()));
        }
        let limit = self.settings.max_queued;
        let queued = self
            .commands
            .values()
            .filter(|c| c.state == CommandState::Queued)
            .count();
        if queued >= limit {
            return Err(SessionRefusal::QueueFull { limit });
        }
        let id = self.next_command;
        self.next_command += 1;
        let record = CommandRecord::queued(id, text);
        let info = record.info();
        self.commands.insert(id, record);
        Ok(info)
    }

    /// Where the next `len` bytes of output go.
    pub(super) fn placement(&self, len: usize) -> Placement {
        self.buffer.placement(&self.settings, self.lease.is_some(), len)
    }

    /// Spilling failed: the session keeps output in memory and blocks at the limit.
    pub(super) fn spill_failed(&mut self, reason: String) {
        self.buffer.spill_error.get_or_insert(reason);
    }

    /// Appends output of a running command to its journal.
    pub(super) fn push_output(&mut self, command: u64, stream: Stream, data: Data) -> Effects {
        let mut effects = Effects::default();
        let Some(record) = self.commands.get_mut(&command) else {
            if let Data::Spilled(chunk) = data {
                effects.push(Effect::ReleaseSpill(chunk.len));
            }
            return effects;
        };
        match &data {
            Data::Memory(bytes) => self.buffer.memory += bytes.len(),
            Data::Spilled(chunk) => self.buffer.spilled += chunk.len,
        }
        record.journal.push_output(stream, data);
        if self.settings.buffering == Buffering::Drop {
            self.drop_oldest_until_within();
        }
        effects
    }

    /// Ends a command with its final state; the end becomes its journal's last entry.
    pub(super) fn finish(&mut self, command: u64, state: CommandState, exit_code: Option<i32>) -> Effects {
        let mut effects = Effects::default();
        if let Some(record) = self.commands.get_mut(&command) {
            if record.finish(state, exit_code) {
                effects.push(Effect::SaveCommand(store::snapshot(record)));
            }
        }
        effects
    }

    /// What `command` will look like once ended at `now`, for saving it before the end is
    /// published (see `Session::finish_durably`); `None` if it has ended already.
    pub(super) fn ended_snapshot(
        &self,
        command: u64,
        state: CommandState,
        exit_code: Option<i32>,
        now: UnixMillis,
    ) -> Option<CommandSnapshot> {
        let mut ended = self.commands.get(&command)?.clone();
        ended.finish_at(state, exit_code, now).then(|| store::snapshot(&ended))
    }

    /// Ends a command whose ended form is already saved: only how far it is acknowledged (acks
    /// may have come in while it was being saved) is left to record.
    pub(super) fn finish_saved(
        &mut self,
        command: u64,
        state: CommandState,
        exit_code: Option<i32>,
        now: UnixMillis,
    ) -> Effects {
        let mut effects = Effects::default();
        if let Some(record) = self.commands.get_mut(&command) {
            if record.finish_at(state, exit_code, now) {
                effects.push(Effect::SaveAck {
                    command,
                    seq: record.journal.acked_seq(),
                    offset: record.journal.acked_offset(),
                    fully_acked: record.journal.fully_acked(),
                });
            }
        }
        effects
    }

    /// Ends every command that has not ended with `state`.
    fn finish_all(&mut self, state: CommandState) -> Effects {
        let mut effects = Effects::default();
        for record in self.commands.values_mut().filter(|c| !c.is_ended()) {
            if record.finish(state, None) {
                effects.push(Effect::SaveCommand(store::snapshot(record)));
            }
        }
        effects
    }

    /// The runspace is gone: unended commands Failed, the session Broken with `reason`.
    pub(super) fn mark_broken(&mut self, reason: String) -> Effects {
        self.broken.get_or_insert(reason);
        self.finish_all(CommandState::Failed)
    }

    /// Stops every command that has not ended (session removal, daemon shutdown).
    pub(super) fn stop_all(&mut self) -> Effects {
        self.finish_all(CommandState::Stopped)
    }

    /// Stops `command` (default: the running one). A queued command ends at once; a running
    /// one is returned in `interrupt` for the runspace to interrupt.
    pub(super) fn request_stop(&mut self, command: Option<u64>) -> Result<StopAccepted, StopRefusal> {
        let target = match command {
            Some(id) => id,
            None => self
                .commands
                .values()
                .find(|c| c.state == CommandState::Running)
                .map(|c| c.id)
                .ok_or(StopRefusal::NothingRunning)?,
        };
        let record = self.commands.get(&target).ok_or(StopRefusal::NoSuchCommand(target))?;
        match record.state {
            CommandState::Running if record.workflow.retry_at.is_none() => Ok(StopAccepted {
                info: record.info(),
                interrupt: Some(target),
                effects: Effects::default(),
            }),
            // Queued, or between attempts: nothing runs that needs interrupting.
            CommandState::Queued | CommandState::Running => {
                let effects = self.finish(target, CommandState::Stopped, None);
                let info = self.commands[&target].info();
                Ok(StopAccepted {
                    info,
                    interrupt: None,
                    effects,
                })
            }
            state => Err(StopRefusal::AlreadyEnded(target, state)),
        }
    }

    /// Records that a client has written a command's output up to `seq`.
    pub(super) fn ack(&mut self, command: u64, seq: u64) -> Effects {
        let mut effects = Effects::default();
        let Some(record) = self.commands.get_mut(&command) else {
            return effects;
        };
        let before = record.journal.acked_seq();
        let freed = record.journal.ack(seq);
        if freed.spilled > 0 {
            effects.push(Effect::ReleaseSpill(freed.spilled));
        }
        if record.is_ended() && record.journal.acked_seq() > before {
            effects.push(Effect::SaveAck {
                command,
                seq: record.journal.acked_seq(),
                offset: record.journal.acked_offset(),
                fully_acked: record.journal.fully_acked(),
            });
        }
        self.buffer.release(freed);
        effects
    }

    /// Attaches `conn`; see `Session::attach`. Returns the attachment's token.
    pub(super) fn attach(
        &mut self,
        conn: ConnId,
        from: &str,
        client: Option<Uuid>,
        force: bool,
        now: UnixMillis,
    ) -> Result<CancellationToken, SessionRefusal> {
        match &mut self.lease {
            Some(lease) if lease.conn == conn => {
                lease.holders += 1;
                return Ok(lease.token.clone());
            }
            Some(lease) if !force && (client.is_none() || lease.client != client) => {
                return Err(SessionRefusal::Busy {
                    from: lease.from.clone(),
                    since: lease.since,
                })
            }
            Some(lease) => {
                lease.token.cancel();
                self.released_by = Some(format!("taken over by {from}"));
            }
            None => {}
        }
        let token = CancellationToken::new();
        self.lease = Some(Lease {
            conn,
            from: from.to_string(),
            since: now,
            token: token.clone(),
            client,
            holders: 1,
        });
        self.disconnected_at = None;
        Ok(token)
    }

    /// One stream of `conn` let go; the last one detaches and starts the idle clock.
    pub(super) fn detach(&mut self, conn: ConnId, now: UnixMillis) {
        let Some(lease) = self.lease.as_mut().filter(|l| l.conn == conn) else {
            return;
        };
        lease.holders = lease.holders.saturating_sub(1);
        if lease.holders == 0 {
            self.lease = None;
            self.disconnected_at = Some(now);
        }
    }

    /// Detaches whoever holds the session (Disconnect-PSSession); their streams end.
    pub(super) fn release(&mut self, by: &str, now: UnixMillis) {
        if let Some(lease) = self.lease.take() {
            lease.token.cancel();
            self.released_by = Some(format!("disconnected by {by}"));
            self.disconnected_at = Some(now);
        }
    }

    /// Changes the idle timeout and/or buffering mode; saved only when something changed.
    pub(super) fn update_settings(&mut self, idle_timeout_secs: Option<u64>, buffering: Option<Buffering>) -> Effects {
        let before = (self.settings.idle_timeout_secs, self.settings.buffering);
        if let Some(secs) = idle_timeout_secs {
            self.settings.idle_timeout_secs = secs;
        }
        if let Some(mode) = buffering {
            self.settings.buffering = mode;
        }
        let mut effects = Effects::default();
        if before != (self.settings.idle_timeout_secs, self.settings.buffering) {
            effects.push(Effect::SaveSession(self.settings.clone()));
        }
        effects
    }

    /// When the idle timeout removes the session, if nobody is attached.
    pub(super) fn expires_at(&self) -> Option<UnixMillis> {
        match self.lease {
            Some(_) => None,
            None => self
                .disconnected_at
                .map(|at| at + self.settings.idle_timeout_secs * 1000),
        }
    }

    /// Why the runspace must stop reading the command's output for now.
    pub(super) fn pause_reason(&self) -> Option<String> {
        self.buffer.pause_reason(&self.settings, self.lease.is_some())
    }

    /// Number of commands Running or Queued.
    pub(super) fn active_commands(&self) -> u32 {
        self.commands.values().filter(|c| !c.is_ended()).count() as u32
    }

    /// True when every command has ended and every journal entry is acknowledged.
    pub(super) fn drained(&self) -> bool {
        self.commands.values().all(|c| c.is_ended() && c.journal.fully_acked())
    }

    /// Exit code of the most recently ended command.
    pub(super) fn last_exit_code(&self) -> Option<i32> {
        self.commands
            .values()
            .rev()
            .find(|c| c.is_ended())
            .and_then(|c| c.exit_code)
    }

    /// Drop mode: discards the oldest unacknowledged output, oldest command first, until the
    /// session is back within its memory limit.
    fn drop_oldest_until_within(&mut self) {
        while self.buffer.memory > self.settings.memory_limit {
            let freed = self.commands.values_mut().find_map(|c| c.journal.drop_oldest_output());
            match freed {
                Some(freed) => self.buffer.release(freed),
                None => return,
            }
        }
    }
}

/// A stop request that was accepted.
#[derive(Debug)]
pub(super) struct StopAccepted {
    pub info: CommandInfo,
    /// The running command the runspace must interrupt.
    pub interrupt: Option<u64>,
    pub effects: Effects,
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::session::test_settings;

    fn state(settings: SessionSettings) -> SessionState {
        SessionState::new(settings, 1_000)
    }

    fn output(state: &mut SessionState, command: u64, text: &str) -> Effects {
        state.push_output(
            command,
            Stream::Stdout,
            Data::Memory(Bytes::copy_from_slice(text.as_bytes())),
        )
    }

    fn saved_commands(effects: &Effects) -> Vec<u64> {
        effects
            .0
            .iter()
            .filter_map(|e| match e {
                Effect::SaveCommand(snapshot) => Some(snapshot.id()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn commands_run_in_order_and_ending_one_asks_to_save_it_once() {
        let mut state = state(test_settings());
        state.enqueue("a".into()).unwrap();
        state.enqueue("b".into()).unwrap();
        assert_eq!(state.next_job(2_000, |_| true).start, Some((1, "a".into())));
        assert!(
            output(&mut state, 1, "hi").is_empty(),
            "output is kept in memory, no disk work"
        );
        let effects = state.finish(1, CommandState::Completed, Some(0));
        assert_eq!(saved_commands(&effects), [1]);
        assert!(state.finish(1, CommandState::Failed, None).is_empty(), "ends once");
        assert_eq!(state.next_job(3_000, |_| true).start, Some((2, "b".into())));
        assert_eq!(state.active_commands(), 1);
    }

    #[test]
    fn a_command_saved_before_its_end_is_published_records_the_acks_that_came_meanwhile() {
        let mut state = state(test_settings());
        state.enqueue("a".into()).unwrap();
        let _ = state.next_job(0, |_| true);
        let _ = output(&mut state, 1, "x");
        let snapshot = state
            .ended_snapshot(1, CommandState::Completed, Some(0), 5)
            .expect("not ended yet");
        assert_eq!(snapshot.id(), 1);
        assert_eq!(state.commands[&1].state, CommandState::Running, "nothing published yet");
        let _ = state.ack(1, 1);
        let effects = state.finish_saved(1, CommandState::Completed, Some(0), 5);
        assert!(matches!(effects.0[..], [Effect::SaveAck { command: 1, seq: 1, .. }]));
        assert_eq!(state.commands[&1].ended_at, Some(5));
        assert!(
            state.ended_snapshot(1, CommandState::Failed, None, 6).is_none(),
            "ended once"
        );
    }

    #[test]
    fn a_full_queue_and_a_broken_session_refuse_commands() {
        let mut state = state(SessionSettings {
            max_queued: 1,
            ..test_settings()
        });
        state.enqueue("a".into()).unwrap();
        assert_eq!(state.enqueue("b".into()), Err(SessionRefusal::QueueFull { limit: 1 }));
        let effects = state.mark_broken("shell gone".into());
        assert_eq!(saved_commands(&effects), [1], "the queued command fails and is saved");
        assert!(matches!(state.enqueue("c".into()), Err(SessionRefusal::Broken(_))));
    }

    #[test]
    fn acks_of_ended_commands_are_saved_and_spilled_bytes_released() {
        let mut state = state(test_settings());
        state.enqueue("a".into()).unwrap();
        let _ = state.next_job(0, |_| true);
        let chunk = crate::session::spill::SpillRef {
            generation: 0,
            offset: 0,
            len: 5,
        };
        assert!(state.push_output(1, Stream::Stdout, Data::Spilled(chunk)).is_empty());
        assert_eq!(state.buffer.spilled, 5);
        let effects = state.ack(1, 1);
        assert!(
            matches!(effects.0[..], [Effect::ReleaseSpill(5)]),
            "running: no ack file yet"
        );
        let _ = state.finish(1, CommandState::Completed, Some(0));
        let effects = state.ack(1, 2);
        assert!(matches!(
            effects.0[..],
            [Effect::SaveAck {
                command: 1,
                seq: 2,
                fully_acked: true,
                ..
            }]
        ));
        assert!(state.ack(1, 2).is_empty(), "a repeated ack changes nothing");
        assert!(state.drained());
    }

    #[test]
    fn settings_are_saved_only_when_they_change() {
        let mut state = state(test_settings());
        let idle = state.settings.idle_timeout_secs;
        assert!(state.update_settings(Some(idle), None).is_empty());
        assert!(state.update_settings(None, None).is_empty());
        let effects = state.update_settings(Some(idle + 1), None);
        assert!(matches!(effects.0[..], [Effect::SaveSession(_)]));
    }

    #[test]
    fn leases_count_their_holders_and_the_idle_clock_starts_when_the_last_lets_go() {
        let mut state = state(test_settings());
        let idle_ms = state.settings.idle_timeout_secs * 1000;
        state.attach(7, "a", None, false, 10).unwrap();
        state.attach(7, "a", None, false, 11).unwrap();
        assert_eq!(state.expires_at(), None);
        assert!(matches!(
            state.attach(8, "b", None, false, 12),
            Err(SessionRefusal::Busy { .. })
        ));
        state.detach(7, 20);
        assert_eq!(state.expires_at(), None, "one stream of the connection still holds it");
        state.detach(7, 30);
        assert_eq!(state.expires_at(), Some(30 + idle_ms));
    }

    #[test]
    fn force_takes_over_and_cancels_the_old_holder() {
        let mut state = state(test_settings());
        let old = state.attach(7, "a", None, false, 10).unwrap();
        state.attach(8, "b", None, true, 11).unwrap();
        assert!(old.is_cancelled());
        assert_eq!(state.released_by.as_deref(), Some("taken over by b"));
        state.detach(7, 12);
        assert_eq!(
            state.lease.as_ref().map(|l| l.conn),
            Some(8),
            "the old holder's detach is a no-op"
        );
    }

    #[test]
    fn the_same_client_takes_its_own_attachment_back_without_force() {
        let mut state = state(test_settings());
        let client = Some(Uuid::new_v4());
        state.attach(7, "a", client, false, 10).unwrap();
        assert!(state.attach(9, "a", client, false, 11).is_ok());
    }

    #[test]
    fn stopping_a_queued_command_ends_it_and_a_running_one_is_interrupted() {
        let mut state = state(test_settings());
        state.enqueue("a".into()).unwrap();
        state.enqueue("b".into()).unwrap();
        let _ = state.next_job(0, |_| true);
        let running = state.request_stop(None).unwrap();
        assert_eq!(running.interrupt, Some(1));
        let queued = state.request_stop(Some(2)).unwrap();
        assert_eq!(queued.interrupt, None);
        assert_eq!(queued.info.state, CommandState::Stopped);
        assert_eq!(saved_commands(&queued.effects), [2]);
        assert_eq!(
            state.request_stop(Some(2)).unwrap_err(),
            StopRefusal::AlreadyEnded(2, CommandState::Stopped)
        );
        assert_eq!(state.request_stop(Some(9)).unwrap_err(), StopRefusal::NoSuchCommand(9));
    }

    #[test]
    fn drop_mode_stays_within_the_memory_limit() {
        let mut state = state(SessionSettings {
            buffering: Buffering::Drop,
            memory_limit: 4,
            ..test_settings()
        });
        state.enqueue("a".into()).unwrap();
        let _ = state.next_job(0, |_| true);
        let _ = output(&mut state, 1, "aaa");
        let _ = output(&mut state, 1, "bbb");
        assert!(state.buffer.memory <= 4);
        assert_eq!(state.commands[&1].journal.dropped_bytes(), 3);
    }
}
