//! Stopping a running command: SIGINT to the runspace's process group, then, after a grace
//! period, SIGKILL to every process of the group except the shell.

use std::time::Duration;

use nix::{
    sys::signal::{killpg, Signal},
    unistd::Pid,
};
use tokio::{sync::watch, time::Instant};

use crate::session::Session;

/// How long an interrupted command has before everything but the shell is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What to do to the running command.
pub(super) enum StopAction {
    Interrupt,
    Kill,
}

/// Interrupting the running command on request. SIGINT goes to the runspace's process group:
/// the command gets it, and the interactive shell abandons the rest of the command line and
/// reports 130, keeping its state. What is still running after [`STOP_GRACE`] is killed, except
/// the shell itself.
pub(super) struct Stopper {
    requests: watch::Receiver<Option<u64>>,
    command: u64,
    state: StopState,
}

#[derive(PartialEq)]
enum StopState {
    NotRequested,
    InterruptDue,
    Grace(Instant),
    Done,
}

impl Stopper {
    pub(super) fn new(session: &Session, command: u64) -> Self {
        let mut requests = session.stop_requests();
        let already = *requests.borrow_and_update() == Some(command);
        let state = if already {
            StopState::InterruptDue
        } else {
            StopState::NotRequested
        };
        Self {
            requests,
            command,
            state,
        }
    }

    pub(super) fn requested(&self) -> bool {
        self.state != StopState::NotRequested
    }

    pub(super) fn done(&self) -> bool {
        self.state == StopState::Done
    }

    /// Resolves when there is something to do; cancel-safe.
    pub(super) async fn next(&mut self) -> StopAction {
        loop {
            match self.state {
                StopState::InterruptDue => {
                    self.state = StopState::Grace(Instant::now() + STOP_GRACE);
                    return StopAction::Interrupt;
                }
                StopState::Grace(deadline) => {
                    tokio::time::sleep_until(deadline).await;
                    self.state = StopState::Done;
                    return StopAction::Kill;
                }
                StopState::Done => std::future::pending::<()>().await,
                StopState::NotRequested => {
                    if self.requests.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                    if *self.requests.borrow_and_update() == Some(self.command) {
                        self.state = StopState::InterruptDue;
                    }
                }
            }
        }
    }
}

/// SIGKILLs every process in `pgid` except `keep` (the shell), found through /proc.
fn kill_group_except(pgid: Pid, keep: Pid) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
        if pid != keep.as_raw() && process_group_of(pid) == Some(pgid.as_raw()) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// The process group of `pid`, from /proc/PID/stat (the field after state and ppid).
fn process_group_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(2)?.parse().ok()
}

/// Carries out a stop action on the runspace's process group `pgid` (the shell's pid).
pub(super) fn apply(pgid: Pid, action: StopAction) {
    if pgid.as_raw() <= 0 {
        return;
    }
    match action {
        StopAction::Interrupt => {
            let _ = killpg(pgid, Signal::SIGINT);
        }
        StopAction::Kill => kill_group_except(pgid, pgid),
    }
}
