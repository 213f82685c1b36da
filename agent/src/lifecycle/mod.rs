//! The per-user daemon's lifecycle: it owns every session and outlives every SSH connection.
//!
//! Take the pid-file lock (a second daemon exits quietly), remove a stale socket, bind, serve
//! connections until SIGTERM/SIGINT, then stop every runspace, wait (bounded) for their commands'
//! output to be saved, and remove the socket. Every connection is checked to come from our own
//! uid before a byte is read.

mod accept;
mod reaper;

use std::{fs, io::Write, sync::Arc, time::Duration};

use nix::fcntl::Flock;
use tokio::{net::UnixListener, signal::unix::SignalKind};
use tracing::{info, warn};

use crate::{
    daemon::Daemon,
    error::{AgentError, Result},
    handover::{self, DaemonSnapshot, Inherited},
    paths::StatePaths,
};

/// How long a stopping daemon waits for runspaces to end and their output to be saved.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(10);

/// Runs the daemon in the foreground until it is told to stop; `handed` is what a previous
/// program of this process handed over (see `handover`).
pub(crate) async fn run(paths: StatePaths, handed: Option<DaemonSnapshot>) -> Result<()> {
    paths.prepare()?;
    let (pid_lock, listener, daemon) = match handed {
        Some(snapshot) => {
            let pid_lock = handover::adopt_pid_lock(&snapshot)?;
            let listener = handover::adopt_listener(&snapshot)?;
            let daemon = Arc::new(Daemon::load(&paths)?);
            handover::adopt_sessions(&daemon, snapshot);
            (pid_lock, listener, daemon)
        }
        None => {
            let Some(pid_lock) = lock_pid_file(&paths)? else {
                info!("another daemon holds {}; exiting", paths.pid_file().display());
                return Ok(());
            };
            let listener = bind_socket(&paths)?;
            let daemon = Arc::new(Daemon::load(&paths)?);
            daemon.restore_sessions();
            (pid_lock, listener, daemon)
        }
    };
    info!(socket = %paths.socket().display(), agent_id = %daemon.agent_id, version = env!("CARGO_PKG_VERSION"), "daemon listening");
    daemon.tasks.spawn(reaper::run(daemon.clone()));
    let inherited = Inherited {
        paths: &paths,
        listener: handover::raw(&listener),
        pid_lock: handover::raw(&*pid_lock),
    };
    serve(&listener, &daemon, &inherited).await;
    shutdown(&daemon, &paths).await;
    Ok(())
}

async fn serve(listener: &UnixListener, daemon: &Arc<Daemon>, inherited: &Inherited<'_>) {
    let mut terminate = tokio::signal::unix::signal(SignalKind::terminate()).ok();
    let mut interrupt = tokio::signal::unix::signal(SignalKind::interrupt()).ok();
    let mut upgrades = daemon.take_upgrade_requests();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    daemon.connections.spawn(accept::handle(daemon.clone(), stream));
                }
                Err(err) => warn!("accept failed: {err}"),
            },
            Some(request) = recv_upgrade(&mut upgrades) => {
                handover::serve_request(daemon, inherited, request).await;
            }
            _ = recv_signal(&mut terminate) => break,
            _ = recv_signal(&mut interrupt) => break,
            _ = daemon.shutdown.cancelled() => break,
        }
    }
}

async fn recv_upgrade(
    upgrades: &mut Option<tokio::sync::mpsc::Receiver<crate::daemon::UpgradeRequest>>,
) -> Option<crate::daemon::UpgradeRequest> {
    match upgrades {
        Some(upgrades) => upgrades.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv_signal(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// Stops every session's runspace (running commands end Stopped and are saved) and waits,
/// within [`SHUTDOWN_BOUND`], for every task — runspaces, streams, persisters — to end.
async fn shutdown(daemon: &Arc<Daemon>, paths: &StatePaths) {
    info!("daemon stopping: ending {} sessions", daemon.registry.len());
    daemon.shutdown.cancel();
    drop(daemon.registry.clear());
    if tokio::time::timeout(SHUTDOWN_BOUND, daemon.wait_all()).await.is_err() {
        warn!(
            "tasks still running after {} s; exiting anyway",
            SHUTDOWN_BOUND.as_secs()
        );
    }
    let _ = fs::remove_file(paths.socket());
    info!("daemon stopped");
}

/// Takes the daemon's lifetime lock and records our pid; `None` if another daemon holds it.
fn lock_pid_file(paths: &StatePaths) -> Result<Option<Flock<fs::File>>> {
    let path = paths.pid_file();
    let Some(mut lock) = remora_unix::try_lock_exclusive(&path).map_err(AgentError::io("cannot lock", &path))? else {
        return Ok(None);
    };
    lock.set_len(0)
        .map_err(AgentError::io("cannot truncate pid file", &path))?;
    writeln!(lock, "{}", std::process::id()).map_err(AgentError::io("cannot write pid file", &path))?;
    Ok(Some(lock))
}

/// Binds the socket, replacing a stale one (safe: we hold the pid lock, so no daemon uses it).
fn bind_socket(paths: &StatePaths) -> Result<UnixListener> {
    let path = paths.socket();
    let (listener, replaced) = remora_unix::bind_private_socket(&path).map_err(AgentError::io("cannot bind", &path))?;
    if replaced {
        info!("removed stale socket {}", path.display());
    }
    UnixListener::from_std(listener).map_err(AgentError::io("cannot serve", &path))
}
