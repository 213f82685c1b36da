//! One command (job) in a session: its text, state, timings and journal.

use remora_wire::{CommandInfo, CommandState, UnixMillis};

use super::{job::Workflow, journal::Journal};
use crate::clock::now_millis;

/// A command and everything it produced.
#[derive(Debug, Clone)]
pub struct CommandRecord {
    pub id: u64,
    pub text: String,
    pub state: CommandState,
    pub exit_code: Option<i32>,
    pub queued_at: UnixMillis,
    pub started_at: Option<UnixMillis>,
    pub ended_at: Option<UnixMillis>,
    pub journal: Journal,
    /// Label, dependencies and retries.
    pub workflow: Workflow,
}

impl CommandRecord {
    /// A command waiting for the runspace.
    pub fn queued(id: u64, text: String) -> Self {
        Self {
            id,
            text,
            state: CommandState::Queued,
            exit_code: None,
            queued_at: now_millis(),
            started_at: None,
            ended_at: None,
            journal: Journal::default(),
            workflow: Workflow::default(),
        }
    }

    /// Whether the command has reached a final state.
    pub fn is_ended(&self) -> bool {
        matches!(
            self.state,
            CommandState::Completed | CommandState::Failed | CommandState::Stopped | CommandState::Skipped
        )
    }

    /// Records the final state and appends the journal's end entry (once); false if it had
    /// already ended.
    pub fn finish(&mut self, state: CommandState, exit_code: Option<i32>) -> bool {
        self.finish_at(state, exit_code, now_millis())
    }

    /// [`CommandRecord::finish`] at a given time.
    pub fn finish_at(&mut self, state: CommandState, exit_code: Option<i32>, now: UnixMillis) -> bool {
        if self.is_ended() {
            return false;
        }
        self.state = state;
        self.exit_code = exit_code;
        self.ended_at = Some(now);
        self.workflow.retry_at = None;
        self.journal.push_end(state, exit_code, now);
        true
    }

    /// The wire view of this command.
    pub fn info(&self) -> CommandInfo {
        CommandInfo {
            id: self.id,
            command: self.text.clone(),
            state: self.state,
            exit_code: self.exit_code,
            queued_at: self.queued_at,
            started_at: self.started_at,
            ended_at: self.ended_at,
            dropped_bytes: self.journal.dropped_bytes(),
            options: self.workflow.options.clone(),
            attempts: self.workflow.attempts,
            reason: self.workflow.reason.clone(),
        }
    }
}
