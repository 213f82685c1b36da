//! A session in its handover form: everything a new agent program needs to carry on exactly
//! where this one stopped — commands queued, running and ended, every unacknowledged journal
//! entry (spilled ones by reference into the spill file, which stays), the buffer accounting and
//! the parked shell's descriptors (a running command's stdin fifo among them) and commands'
//! input streams. Session state never serializes itself; it converts here.

use std::{io, path::Path, sync::Arc};

use remora_wire::UnixMillis;
use serde::{Deserialize, Serialize};

use super::{
    runspace::ShellFds,
    spill::{Spill, SpillState},
    store::{self, HandedCommand, StoredSession},
    terminal::handover::HandedTerminal,
    Session,
};

/// One session, handed over.
#[derive(Debug, Serialize, Deserialize)]
pub struct SessionSnapshot {
    /// Identity and settings, in the stored form.
    pub description: StoredSession,
    pub temporary: bool,
    pub released_by: Option<String>,
    pub next_command: u64,
    pub disconnected_at: Option<UnixMillis>,
    pub broken: Option<String>,
    pub memory_bytes: usize,
    pub spilled_bytes: usize,
    pub spill_error: Option<String>,
    pub commands: Vec<HandedCommand>,
    pub spill: Option<SpillState>,
    pub runspace: Option<HandedRunspace>,
    /// The parked terminal, when the session had a live one.
    #[serde(default)]
    pub terminal: Option<HandedTerminal>,
    /// Commands' stdin streams: unwritten bytes, stored files by name.
    #[serde(default)]
    pub inputs: Vec<super::input::HandedInput>,
}

/// The parked shell of a session, handed over.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HandedRunspace {
    pub shell: ShellFds,
    /// The command that was running (it still is).
    pub running: Option<u64>,
    /// A client had asked to stop it.
    pub stop_requested: bool,
}

impl Session {
    /// The session as it stands, with its parked shell. Attached clients lose their attachment
    /// (their connections end with the handover), so the idle clock starts at `now`.
    pub fn handover_snapshot(&self, now: UnixMillis) -> SessionSnapshot {
        let runspace = self.parked_runspace();
        let inputs = self.inputs.handover();
        let state = self.lock();
        SessionSnapshot {
            description: store::stored_session(self.id, &self.name, self.created_at, &state.settings),
            temporary: self.temporary,
            released_by: state.released_by.clone(),
            next_command: state.next_command,
            disconnected_at: if state.lease.is_some() {
                Some(now)
            } else {
                state.disconnected_at
            },
            broken: state.broken.clone(),
            memory_bytes: state.buffer.memory,
            spilled_bytes: state.buffer.spilled,
            spill_error: state.buffer.spill_error.clone(),
            commands: state.commands.values().map(store::hand_command).collect(),
            spill: self.spill.handover_state(),
            runspace,
            terminal: self.terminal.get().and_then(|t| t.handover_form()),
            inputs,
        }
    }

    fn parked_runspace(&self) -> Option<HandedRunspace> {
        self.runspace.with_parked(|parked| HandedRunspace {
            shell: parked.shell.fds(),
            running: parked.running,
            stop_requested: parked.running.is_some() && *self.stop_requests.borrow() == parked.running,
        })
    }

    /// A session handed over by a previous program of this process, and its runspace to adopt.
    pub fn from_handover(
        snapshot: SessionSnapshot,
        spill_dir: &Path,
        store_root: &Path,
    ) -> io::Result<(Session, Option<HandedRunspace>, Option<HandedTerminal>)> {
        let SessionSnapshot {
            description: stored,
            temporary,
            ..
        } = &snapshot;
        let settings = store::settings_of(stored, spill_dir, store_root);
        let spill = Spill::adopt(spill_dir, stored.id, snapshot.spill)?;
        let session = Session::with_identity(
            stored.id,
            stored.name.clone(),
            *temporary,
            stored.created_at,
            settings,
            Arc::new(spill),
        );
        let mut state = session.lock();
        state.released_by = snapshot.released_by;
        state.next_command = snapshot.next_command;
        state.disconnected_at = snapshot.disconnected_at;
        state.broken = snapshot.broken;
        state.buffer.memory = snapshot.memory_bytes;
        state.buffer.spilled = snapshot.spilled_bytes;
        state.buffer.spill_error = snapshot.spill_error;
        state.commands = snapshot
            .commands
            .into_iter()
            .map(store::take_command)
            .map(|c| (c.id, c))
            .collect();
        drop(state);
        session.inputs.adopt(snapshot.inputs, spill_dir)?;
        if let Some(runspace) = &snapshot.runspace {
            if runspace.stop_requested {
                session.stop_requests.send_replace(runspace.running);
            }
        }
        Ok((session, snapshot.runspace, snapshot.terminal))
    }
}
