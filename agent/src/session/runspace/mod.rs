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
//! Files: `shell.rs` (spawning, init, one command), `pipes.rs` (raw pipe reads), `stop.rs`
//! (interrupting a command).

mod pipes;
mod shell;
mod stop;

use std::{path::PathBuf, sync::Arc};

use remora_wire::CommandState;

pub use shell::Shell;

use self::shell::{exit_code, Outcome};
use super::Session;
use crate::config::ShellSpec;

/// What a runspace starts: its shell, extra environment and working directory.
#[derive(Debug, Clone)]
pub struct RunspaceSpec {
    pub shell: ShellSpec,
    pub env: std::collections::BTreeMap<String, String>,
    /// Default: the user's home directory.
    pub cwd: Option<PathBuf>,
}

/// Feeds the session's shell commands until the session closes or the shell dies. Run it as a
/// tracked task: when the session closes, the shell is killed and unended commands are stopped.
pub async fn run(session: Arc<Session>, mut shell: Shell) {
    if let Err(err) = shell.init().await {
        session.mark_broken(err.to_string());
        shell.kill().await;
        return;
    }
    while let Some((id, text)) = next_command(&session, &mut shell).await {
        match shell.execute(&session, id, &text).await {
            Outcome::Exited(code) => session.finish(id, CommandState::Completed, Some(code)),
            Outcome::Stopped(code) => session.finish(id, CommandState::Stopped, Some(code)),
            Outcome::ShellGone(code) => {
                session.finish(id, CommandState::Completed, Some(code));
                session.mark_broken(format!(
                    "the runspace shell exited with status {code} during command {id}"
                ));
                return;
            }
            Outcome::Closed => break,
        }
    }
    shell.kill().await;
    session.stop_all();
}

/// Waits for the next queued command; `None` when the session closed or the shell died idle.
async fn next_command(session: &Session, shell: &mut Shell) -> Option<(u64, String)> {
    loop {
        let mut changed = session.subscribe();
        if session.closed.is_cancelled() {
            return None;
        }
        if let Some(next) = session.start_next() {
            return Some(next);
        }
        tokio::select! {
            _ = changed.changed() => {}
            _ = session.closed.cancelled() => return None,
            status = shell.child.wait() => {
                let code = status.map_or(-1, exit_code);
                session.mark_broken(format!("the runspace shell exited with status {code} while idle"));
                return None;
            }
        }
    }
}
