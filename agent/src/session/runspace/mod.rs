//! The runspace: one persistent shell per session, fed one command at a time.
//!
//! Each command is sent to the shell's stdin as `eval '<text>' </dev/null 3>&-` followed by a
//! `printf` of `$?` to fd 3, a private status pipe. So `cd`, variables and functions persist
//! between commands, commands read /dev/null, and they cannot see or disturb the status pipe.
//!
//! Output ordering: the status line is written after the command's last write to stdout/stderr,
//! so when it arrives everything the command wrote is already in the pipes; the loop drains both
//! before recording the end. Output written while no command runs (a background job) stays in
//! the pipe and is attributed to the next command.
//!
//! A shell that exits (`exit 3`) ends the running command with the shell's status and marks the
//! session Broken: the state the user built up is gone, and pretending otherwise would be worse.
//!
//! A handover to a new agent binary (`handover` cancelled) parks the shell in the session
//! between two reads, the running command still running; the new program adopts it and goes on.
//!
//! Files: `shell.rs` (spawning, init, one command, handing over), `process.rs` (the shell as a
//! spawned or adopted process), `pipes.rs` (raw pipe reads), `stop.rs` (interrupting a command).

mod input_pipe;
mod pipes;
mod process;
mod shell;
mod stop;

use std::{path::PathBuf, sync::Arc, time::Duration};

use remora_wire::CommandState;
use tokio_util::sync::CancellationToken;

pub use process::ShellProcess;
pub use shell::{Shell, ShellFds};

use self::shell::Outcome;
use super::Session;
use crate::{clock::now_millis, config::ShellSpec};

/// What a runspace starts: its shell, extra environment and working directory.
#[derive(Debug, Clone)]
pub struct RunspaceSpec {
    pub shell: ShellSpec,
    pub env: std::collections::BTreeMap<String, String>,
    /// Default: the user's home directory.
    pub cwd: Option<PathBuf>,
    /// Where the shell's status fifo is made: a name in the agent's private directory.
    pub status_fifo: PathBuf,
}

/// A shell parked for a handover, with the command it was running.
pub struct Parked {
    pub shell: Shell,
    pub running: Option<u64>,
}

impl std::fmt::Debug for Parked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parked")
            .field("pid", &self.shell.fds().pid)
            .field("running", &self.running)
            .finish()
    }
}

/// Feeds the session's shell commands until the session closes or the shell dies. Run it as a
/// tracked task: when the session closes, the shell is killed and unended commands are stopped.
pub async fn run(session: Arc<Session>, mut shell: Shell, handover: CancellationToken) {
    if let Err(err) = shell.init().await {
        session.mark_broken(err.to_string());
        shell.kill().await;
        return;
    }
    drive(session, shell, None, handover).await;
}

/// Goes on with a parked shell: after a handover that did not happen, or in the new program.
pub async fn resume(session: Arc<Session>, parked: Parked, handover: CancellationToken) {
    drive(session, parked.shell, parked.running, handover).await;
}

async fn drive(session: Arc<Session>, mut shell: Shell, mut running: Option<u64>, handover: CancellationToken) {
    session.runspace.set_pid(shell.fds().pid);
    loop {
        let (id, outcome) = match running.take() {
            Some(id) => (id, shell.follow(&session, id, &handover).await),
            None => match next_command(&session, &mut shell, &handover).await {
                Next::Command(id, text) => (id, shell.execute(&session, id, &text, &handover).await),
                Next::Closed => break,
                Next::ShellGone => return,
                Next::HandOver => return session.runspace.park(Parked { shell, running: None }),
            },
        };
        match outcome {
            // A job with retries left stays Running; `next_command` runs it again after its delay.
            Outcome::Exited(code) if code != 0 && session.retry_after_failure(id, code) => {}
            Outcome::Exited(code) => session.finish_durably(id, CommandState::Completed, Some(code)).await,
            Outcome::Stopped(code) => session.finish_durably(id, CommandState::Stopped, Some(code)).await,
            Outcome::ShellGone(code) => {
                session.finish(id, CommandState::Completed, Some(code));
                session.mark_broken(format!(
                    "the runspace shell exited with status {code} during command {id}"
                ));
                return;
            }
            Outcome::Closed => break,
            Outcome::HandOver => {
                return session.runspace.park(Parked {
                    shell,
                    running: Some(id),
                })
            }
        }
    }
    shell.kill().await;
    session.runspace.clear();
    session.stop_all();
}

/// What the runspace does next.
enum Next {
    Command(u64, String),
    Closed,
    ShellGone,
    HandOver,
}

/// Waits for the next queued command (or a retry's delay to pass).
async fn next_command(session: &Session, shell: &mut Shell, handover: &CancellationToken) -> Next {
    loop {
        let mut changed = session.subscribe();
        if session.closed.is_cancelled() {
            return Next::Closed;
        }
        if handover.is_cancelled() {
            return Next::HandOver;
        }
        let (start, wake_at) = session.start_next();
        if let Some((id, text)) = start {
            return Next::Command(id, text);
        }
        let retry_due = async {
            match wake_at {
                Some(at) => tokio::time::sleep(Duration::from_millis(at.saturating_sub(now_millis()))).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = changed.changed() => {}
            _ = retry_due => {}
            _ = session.closed.cancelled() => return Next::Closed,
            _ = handover.cancelled() => return Next::HandOver,
            code = shell.process.wait() => {
                session.mark_broken(format!("the runspace shell exited with status {code} while idle"));
                return Next::ShellGone;
            }
        }
    }
}
