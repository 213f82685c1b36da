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
/// How often, within the grace period, a lost SIGINT is sent again.
const INTERRUPT_AGAIN: Duration = Duration::from_millis(100);

/// What to do to the running command.
pub(super) enum StopAction {
    Interrupt,
    /// SIGINT to the group again when the last one was lost: none of the processes it reached
    /// is left, and the shell has started others since, so it is still running the command. A
    /// SIGINT is lost when it reaches a child between fork and exec (the child still runs the
    /// shell's handler, then execs and exits normally, and bash carries on a loop, taking the
    /// normal exit to mean the child dealt with the signal): a loop that forks all the time
    /// ignored `stop` most of the time. A program still shutting down on the first SIGINT is not
    /// hurried, and a shell without children (printing the command's status) is never sent one.
    InterruptAgain,
    Kill,
}

/// Interrupting the running command on request. SIGINT goes to the runspace's process group:
/// the command gets it, and the interactive shell abandons the rest of the command line and
/// reports 130, keeping its state. A SIGINT that was lost is sent again every
/// [`INTERRUPT_AGAIN`] until the command ends; what is still running after [`STOP_GRACE`] is
/// killed, except the shell itself.
pub(super) struct Stopper {
    requests: watch::Receiver<Option<u64>>,
    command: u64,
    state: StopState,
    /// The processes the last SIGINT reached, besides the shell.
    interrupted: Vec<i32>,
}

#[derive(PartialEq)]
enum StopState {
    NotRequested,
    InterruptDue,
    /// Interrupted; SIGINT again (if lost) at `again`, SIGKILL at `kill` unless that was done.
    Interrupting {
        again: Instant,
        kill: Option<Instant>,
    },
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
            interrupted: Vec::new(),
        }
    }

    pub(super) fn requested(&self) -> bool {
        self.state != StopState::NotRequested
    }

    /// Resolves when there is something to do; cancel-safe.
    pub(super) async fn next(&mut self) -> StopAction {
        loop {
            match self.state {
                StopState::InterruptDue => {
                    let now = Instant::now();
                    self.state = StopState::Interrupting {
                        again: now + INTERRUPT_AGAIN,
                        kill: Some(now + STOP_GRACE),
                    };
                    return StopAction::Interrupt;
                }
                StopState::Interrupting {
                    again,
                    kill: Some(kill),
                } if kill <= again => {
                    tokio::time::sleep_until(kill).await;
                    self.state = StopState::Interrupting { again, kill: None };
                    return StopAction::Kill;
                }
                StopState::Interrupting { again, kill } => {
                    tokio::time::sleep_until(again).await;
                    self.state = StopState::Interrupting {
                        again: again + INTERRUPT_AGAIN,
                        kill,
                    };
                    return StopAction::InterruptAgain;
                }
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

/// Every process in `pgid` except `keep` (the shell), found through /proc.
fn group_except(pgid: Pid, keep: Pid) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != keep.as_raw() && process_group_of(pid) == Some(pgid.as_raw()))
        .collect()
}

/// Sends `signal` to each of `pids`.
fn signal_all(pids: &[i32], signal: Signal) {
    for &pid in pids {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
    }
}

/// The process group of `pid`, from /proc/PID/stat (the field after state and ppid).
fn process_group_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(2)?.parse().ok()
}

impl Stopper {
    /// Carries out a stop action on the runspace's process group `pgid` (the shell's pid).
    pub(super) fn apply(&mut self, pgid: Pid, action: StopAction) {
        if pgid.as_raw() <= 0 {
            return;
        }
        match action {
            StopAction::Interrupt => {
                self.interrupted = group_except(pgid, pgid);
                let _ = killpg(pgid, Signal::SIGINT);
            }
            StopAction::InterruptAgain => {
                if self.interrupted.iter().any(|&pid| alive(pid)) {
                    return;
                }
                let now = group_except(pgid, pgid);
                if now.iter().all(|pid| self.interrupted.contains(pid)) {
                    return;
                }
                self.interrupted = now;
                let _ = killpg(pgid, Signal::SIGINT);
            }
            StopAction::Kill => signal_all(&group_except(pgid, pgid), Signal::SIGKILL),
        }
    }
}

/// Whether `pid` still runs (a zombie has ended).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| Some(stat.rsplit_once(')')?.1.split_whitespace().next()? != "Z"))
        .unwrap_or(false)
}
