//! Reaching the user's daemon from a subsystem or server process, starting it when absent.
//!
//! Start-up is race-free: concurrent starters serialise on `spawn.lock` and re-try the socket
//! once they hold it; the daemon itself takes the pid-file lock before touching the socket, so
//! even a daemon started by hand cannot remove a live daemon's socket.

use std::{
    fs,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use nix::fcntl::Flock;
use tokio::{io::AsyncWriteExt, net::UnixStream};
use tracing::debug;

use crate::{
    error::{AgentError, Result},
    fdpass::MODE_PROTOCOL,
    paths::StatePaths,
};

/// How long a starter waits for a new daemon's socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to the daemon in protocol mode (the socket then carries remora frames),
/// starting the daemon first if it is not running.
pub(crate) async fn connect_daemon(paths: &StatePaths) -> Result<UnixStream> {
    let mut stream = connect_or_start(paths).await?;
    stream
        .write_all(&[MODE_PROTOCOL])
        .await
        .map_err(AgentError::io("cannot write to", paths.socket()))?;
    Ok(stream)
}

/// Connects to the daemon's socket, starting the daemon if nobody answers.
///
/// The directories are checked first and the daemon's uid after connecting: this process is
/// about to hand the user's SSH channel to whatever answers on that socket, so a socket in a
/// place others control, or served by another user, is refused.
pub(crate) async fn connect_or_start(paths: &StatePaths) -> Result<UnixStream> {
    paths.prepare()?;
    if let Ok(stream) = UnixStream::connect(paths.socket()).await {
        return ours(stream);
    }
    let lock_paths = paths.clone();
    let _spawn_lock = tokio::task::spawn_blocking(move || lock_spawn(&lock_paths))
        .await
        .map_err(AgentError::Task)??;
    if let Ok(stream) = UnixStream::connect(paths.socket()).await {
        return ours(stream);
    }
    let mut child = spawn_daemon(paths)?;
    ours(wait_for_socket(paths, &mut child).await?)
}

/// Accepts the connection only if the daemon behind it runs as this user.
fn ours(stream: UnixStream) -> Result<UnixStream> {
    match remora_unix::foreign_peer(&stream)
        .map_err(AgentError::io("cannot read peer credentials of", "daemon socket"))?
    {
        Some((peer, own)) => Err(AgentError::ForeignDaemon { peer, own }),
        None => Ok(stream),
    }
}

/// Blocks until this process is the only one starting a daemon.
fn lock_spawn(paths: &StatePaths) -> Result<Flock<fs::File>> {
    let path = paths.spawn_lock();
    remora_unix::lock_exclusive(&path).map_err(AgentError::io("cannot lock", &path))
}

/// Starts `remora-agent daemon` detached from this process's session and stdio. It stays our
/// child, so that [`wait_for_socket`] sees it exit early.
fn spawn_daemon(paths: &StatePaths) -> Result<Child> {
    let exe = std::env::current_exe().map_err(AgentError::io("cannot find own executable", "/proc/self/exe"))?;
    let mut command = Command::new(&exe);
    command.arg("daemon").stdin(Stdio::null());
    if let Some(root) = &paths.root {
        command.arg("--state-dir").arg(root);
    }
    let log = paths.log_file();
    remora_unix::detach(&mut command, &log, remora_unix::Parent::Caller)
        .map_err(AgentError::io("cannot open log", &log))?;
    debug!("starting daemon {}", exe.display());
    command.spawn().map_err(AgentError::io("cannot start the daemon", &exe))
}

/// Waits until the new daemon accepts connections, or reports why it did not.
async fn wait_for_socket(paths: &StatePaths, child: &mut Child) -> Result<UnixStream> {
    let started = Instant::now();
    let mut backoff = Duration::from_millis(2);
    loop {
        if let Ok(stream) = UnixStream::connect(paths.socket()).await {
            return Ok(stream);
        }
        let exited = child.try_wait().ok().flatten().is_some();
        if exited || started.elapsed() > START_TIMEOUT {
            return Err(AgentError::DaemonStart {
                waited_ms: started.elapsed().as_millis(),
                log: paths.log_file(),
            });
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(100));
    }
}
