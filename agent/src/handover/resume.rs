//! The new program's side of a handover: before anything else opens a descriptor, close what
//! was not handed over; then adopt the lock, the socket, the sessions and their shells.

use std::{
    fs,
    os::fd::{FromRawFd, RawFd},
    sync::Arc,
};

use nix::fcntl::{Flock, FlockArg};
use tracing::{error, info};

use super::snapshot::DaemonSnapshot;
use crate::{
    daemon::Daemon,
    error::{AgentError, Result},
    session::{
        runspace::{Parked, Shell},
        terminal::Terminal,
        Session,
    },
};

/// Closes every descriptor above stderr except `keep`: nothing the old program left open by
/// mistake (an SSH client's pipe, say) may outlive it. Call before starting threads or runtimes.
pub(crate) fn close_stray_fds(keep: &[RawFd]) {
    let Ok(entries) = fs::read_dir("/proc/self/fd") else {
        return;
    };
    let open: Vec<RawFd> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in open.into_iter().filter(|fd| *fd > 2 && !keep.contains(fd)) {
        let _ = nix::unistd::close(fd);
    }
}

/// Takes the pid-file lock back: the handed-over descriptor already holds it, so locking it
/// again succeeds at once.
pub(crate) fn adopt_pid_lock(snapshot: &DaemonSnapshot) -> Result<Flock<fs::File>> {
    // SAFETY: the snapshot names the pid file's descriptor, handed over to this program alone.
    let file = unsafe { fs::File::from_raw_fd(snapshot.pid_lock) };
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| errno.into())
}

/// The listening socket, still bound, with connections waiting in its backlog.
pub(crate) fn adopt_listener(snapshot: &DaemonSnapshot) -> Result<tokio::net::UnixListener> {
    // SAFETY: the snapshot names the listener's descriptor, handed over to this program alone.
    let listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(snapshot.listener) };
    let io = |action| AgentError::io(action, "the handed-over socket");
    listener.set_nonblocking(true).map_err(io("cannot use"))?;
    tokio::net::UnixListener::from_std(listener).map_err(io("cannot watch"))
}

/// Registers every handed-over session and goes on with its shell.
pub(crate) fn adopt_sessions(daemon: &Daemon, snapshot: DaemonSnapshot) {
    let (count, from) = (snapshot.sessions.len(), snapshot.from_version);
    let (mut shells, mut terminals) = (0, 0);
    let root = daemon.store_root.clone().unwrap_or_default();
    for handed in snapshot.sessions {
        let name = handed.description.name.clone();
        let (session, runspace, terminal) = match Session::from_handover(handed, &daemon.spill_dir, &root) {
            Ok(adopted) => adopted,
            Err(err) => {
                error!(session = %name, "cannot take over the session's spill file: {err}; the session is lost");
                continue;
            }
        };
        let session = match daemon.adopt(Arc::new(session)) {
            Ok(session) => session,
            Err(_) => continue,
        };
        if let Some(handed) = terminal {
            // SAFETY: the snapshot names this terminal's master, handed over to this program
            // alone, and its shell is still this process's child (exec keeps the pid).
            match unsafe { Terminal::adopt(handed) } {
                Ok(terminal) => {
                    terminals += 1;
                    daemon.resume_terminal(&session, terminal);
                }
                Err(err) => error!(session = %name, "the terminal was lost in the handover: {err}"),
            }
        }
        let Some(runspace) = runspace else { continue };
        // SAFETY: the snapshot names this shell's pipes, handed over to this program alone, and
        // the shell is still this process's child (exec keeps the pid).
        match unsafe { Shell::adopt(runspace.shell) } {
            Ok(shell) => {
                shells += 1;
                daemon.resume_runspace(
                    &session,
                    Parked {
                        shell,
                        running: runspace.running,
                    },
                );
            }
            Err(err) => session.mark_broken(format!("runspace lost in the handover: {err}")),
        }
    }
    info!(
        sessions = count,
        runspaces = shells,
        terminals,
        "took over from remora-agent {from}"
    );
}
