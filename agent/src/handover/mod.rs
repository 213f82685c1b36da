//! Handing the running daemon over to a new `remora-agent` binary without losing anything:
//! running commands and their shells, queued commands, unreceived output, session settings.
//!
//! The old program, asked over its socket (`remora-agent upgrade`, which `remora install` and a
//! subsystem started from a replaced binary run):
//! 1. runs `NEW handover-check`: the new binary must read this program's snapshot format;
//! 2. quiesces: ends every client connection (clients reconnect and resume from their last
//!    ack) and parks every runspace's shell between two reads;
//! 3. waits for each session's pending disk work, then writes a snapshot (`snapshot.rs`) of
//!    every session, with the numbers of the descriptors that must survive: the listening
//!    socket, the pid-file lock and each shell's pipes;
//! 4. clears close-on-exec on exactly those and `exec`s `NEW daemon --resume SNAPSHOT`.
//!
//! The process keeps its pid, so the shells stay its children and the pid file stays true; the
//! socket never stops accepting (connections wait in its backlog). The new program (`resume.rs`)
//! adopts everything and serves. Any failure before `exec` undoes steps 2–4 and the old program
//! keeps serving, and the requester is told why.

mod check;
mod resume;
mod snapshot;

use std::{
    os::fd::{AsRawFd, RawFd},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use tokio::io::AsyncWriteExt;
use tracing::{info, warn};

pub(crate) use check::print_formats;
pub(crate) use resume::{adopt_listener, adopt_pid_lock, adopt_sessions, close_stray_fds};
pub(crate) use snapshot::DaemonSnapshot;

use crate::{
    clock::now_millis,
    daemon::{Daemon, UpgradeRequest},
    error::{AgentError, HandoverFailure, Result},
    paths::StatePaths,
};

/// How long connections and runspaces have to let go, and disk work to finish.
const QUIESCE_BOUND: Duration = Duration::from_secs(10);

/// What the old program hands over besides its sessions.
pub(crate) struct Inherited<'a> {
    pub paths: &'a StatePaths,
    pub listener: RawFd,
    pub pid_lock: RawFd,
}

/// Serves one upgrade request: on success this never returns (the process runs the new binary);
/// on failure the daemon serves on and the requester reads why.
pub(crate) async fn serve_request(daemon: &Arc<Daemon>, inherited: &Inherited<'_>, request: UpgradeRequest) {
    let UpgradeRequest { binary, mut requester } = request;
    let error = match hand_over(daemon, inherited, &binary, &mut requester).await {
        Ok(never) => match never {},
        Err(err) => err,
    };
    warn!(
        "handover to {} refused: {error}; this daemon keeps serving",
        binary.display()
    );
    let _ = requester.write_all(format!("refused: {error}\n").as_bytes()).await;
}

async fn hand_over(
    daemon: &Arc<Daemon>,
    inherited: &Inherited<'_>,
    binary: &Path,
    requester: &mut tokio::net::UnixStream,
) -> Result<std::convert::Infallible> {
    let version = check::check_binary(binary).await?;
    info!(binary = %binary.display(), %version, "handing over: ending connections and parking runspaces");
    daemon.quiesce();
    let result = prepare_and_exec(daemon, inherited, binary, &version, requester).await;
    daemon.unquiesce();
    result
}

async fn prepare_and_exec(
    daemon: &Arc<Daemon>,
    inherited: &Inherited<'_>,
    binary: &Path,
    version: &str,
    requester: &mut tokio::net::UnixStream,
) -> Result<std::convert::Infallible> {
    let settled = async {
        daemon.connections.wait().await;
        daemon.runspaces.wait().await;
        for session in daemon.registry.list(None) {
            session.flush().await;
        }
    };
    if tokio::time::timeout(QUIESCE_BOUND, settled).await.is_err() {
        return Err(AgentError::Handover(HandoverFailure::NotSettled {
            secs: QUIESCE_BOUND.as_secs(),
        }));
    }
    let snapshot = DaemonSnapshot::take(daemon, inherited, now_millis());
    let file = inherited.paths.run_dir.join("handover.msgpack");
    snapshot.write(&file)?;
    let inherit = Inheritance::new(&snapshot);
    if let Err(err) = inherit.apply(true) {
        let _ = std::fs::remove_file(&file);
        inherit.undo();
        return Err(AgentError::Handover(HandoverFailure::KeepDescriptors(err)));
    }
    let reply = format!("handing over to remora-agent {version} at {}\n", binary.display());
    let _ = requester.write_all(reply.as_bytes()).await;
    info!(
        sessions = snapshot.sessions.len(),
        "snapshot written; executing {}",
        binary.display()
    );
    let err = exec(binary, inherited.paths, &file);
    let _ = std::fs::remove_file(&file);
    inherit.undo();
    Err(AgentError::Handover(HandoverFailure::Exec {
        binary: binary.to_path_buf(),
        cause: err,
    }))
}

/// Replaces this program with `binary`, resuming from `snapshot`. Returns only on failure.
fn exec(binary: &Path, paths: &StatePaths, snapshot: &Path) -> nix::Error {
    use std::{ffi::CString, os::unix::ffi::OsStrExt};
    let c = |text: &std::ffi::OsStr| CString::new(text.as_bytes()).unwrap_or_default();
    let mut args = vec![c(binary.as_os_str()), c("daemon".as_ref())];
    if let Some(root) = &paths.root {
        args.extend([c("--state-dir".as_ref()), c(root.as_os_str())]);
    }
    args.extend([c("--resume".as_ref()), c(snapshot.as_os_str())]);
    match nix::unistd::execv(&args[0], &args) {
        Err(err) => err,
        Ok(never) => match never {},
    }
}

/// The descriptors that must survive `exec`, and switching their close-on-exec flag.
struct Inheritance(Vec<RawFd>);

impl Inheritance {
    fn new(snapshot: &DaemonSnapshot) -> Self {
        Self(snapshot.kept_fds())
    }

    fn apply(&self, inherit: bool) -> nix::Result<()> {
        use nix::fcntl::{fcntl, FcntlArg, FdFlag};
        let flags = if inherit { FdFlag::empty() } else { FdFlag::FD_CLOEXEC };
        for fd in &self.0 {
            // SAFETY: these descriptors belong to the listener, the lock and parked shells,
            // all alive for the whole handover.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(*fd) };
            fcntl(fd, FcntlArg::F_SETFD(flags))?;
        }
        Ok(())
    }

    fn undo(&self) {
        if let Err(err) = self.apply(false) {
            warn!("cannot restore close-on-exec after a failed handover: {err}");
        }
    }
}

/// Asks the daemon behind `paths` to hand over to `binary` (`remora-agent upgrade`). Returns
/// the daemon's answer line, or `None` when no daemon runs (nothing to hand over).
pub(crate) async fn request(paths: &StatePaths, binary: &Path) -> Result<Option<String>> {
    let socket = paths.socket();
    let Ok(mut stream) = tokio::net::UnixStream::connect(&socket).await else {
        return Ok(None);
    };
    if let Some((peer, own)) =
        remora_unix::foreign_peer(&stream).map_err(AgentError::io("cannot check the owner of", &socket))?
    {
        return Err(AgentError::ForeignDaemon { peer, own });
    }
    let path = binary.to_string_lossy();
    crate::fdpass::send_upgrade(&mut stream, &path)
        .await
        .map_err(AgentError::io("cannot ask for a handover on", &socket))?;
    let mut answer = String::new();
    let read = tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut answer);
    match tokio::time::timeout(check::CHECK_TIMEOUT + QUIESCE_BOUND * 2, read).await {
        Ok(Ok(_)) if !answer.is_empty() => Ok(Some(answer.trim().to_string())),
        Ok(_) => Err(AgentError::Handover(HandoverFailure::NoAnswer)),
        Err(_) => Err(AgentError::Handover(HandoverFailure::AnswerTimedOut)),
    }
}

/// The path this program runs from, for a handover to it.
pub(crate) fn own_binary() -> Result<PathBuf> {
    std::env::current_exe().map_err(AgentError::io("cannot find own executable", "/proc/self/exe"))
}

/// Whether the daemon behind `pid` runs a binary that has since been replaced or removed (a
/// package upgrade or `remora install` put a new one in its place).
pub(crate) fn daemon_binary_replaced(pid: i32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .is_ok_and(|exe| exe.as_os_str().as_encoded_bytes().ends_with(b" (deleted)"))
}

/// The listener's descriptor, for [`Inherited`].
pub(crate) fn raw(fd: &impl AsRawFd) -> RawFd {
    fd.as_raw_fd()
}

/// Says hello to the daemon behind `paths` and returns its welcome (who serves now).
pub(crate) async fn confirm(paths: &StatePaths) -> Result<remora_wire::Welcome> {
    use remora_wire::{encode, AgentBody, ClientBody, ClientFrame, FrameReader, Hello, PROTOCOL_VERSION};
    let socket = paths.socket();
    let io = |action| AgentError::io(action, &socket);
    let talk = async {
        let mut stream = tokio::net::UnixStream::connect(&socket)
            .await
            .map_err(io("cannot connect to"))?;
        let hello = ClientFrame {
            id: 1,
            body: ClientBody::Hello(Hello {
                protocol: PROTOCOL_VERSION,
                min_protocol: 0,
                software: format!("remora-agent {} upgrade", env!("CARGO_PKG_VERSION")),
                capabilities: Vec::new(),
                client: Default::default(),
            }),
        };
        let mut bytes = vec![crate::fdpass::MODE_PROTOCOL];
        encode(&hello, &mut bytes)?;
        stream.write_all(&bytes).await.map_err(io("cannot write to"))?;
        let mut frames = FrameReader::new(stream);
        match frames.read_message().await? {
            Some(remora_wire::AgentFrame {
                body: AgentBody::Welcome(welcome),
                ..
            }) => Ok(welcome),
            _ => Err(AgentError::Handover(HandoverFailure::NotWelcomed)),
        }
    };
    tokio::time::timeout(QUIESCE_BOUND * 2, talk)
        .await
        .map_err(|_| AgentError::Handover(HandoverFailure::NewDaemonSilent))?
}

/// When the running daemon's binary was replaced (a package upgrade, `remora install`) and this
/// program is the binary now in place, hands the daemon over to it first. Best effort: a
/// refusal is logged and the old daemon serves this connection as before.
pub(crate) async fn upgrade_if_replaced(paths: &StatePaths) {
    let Some(pid) = std::fs::read_to_string(paths.pid_file())
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok())
    else {
        return;
    };
    let Ok(own) = own_binary() else { return };
    if !daemon_binary_replaced(pid) || own.as_os_str().as_encoded_bytes().ends_with(b" (deleted)") {
        return;
    }
    match request(paths, &own).await {
        Ok(Some(answer)) => info!("the daemon's binary was replaced: {answer}"),
        Ok(None) => {}
        Err(err) => warn!("the daemon's binary was replaced, but {err}"),
    }
}
