//! What the daemon holds: the registry, its identity, its defaults and its tasks.
//!
//! A leaf of the layering (lifecycle → connection → handler → state → session/config): it knows
//! sessions and configurations, never connections or handlers.

use remora_unix::LockRecover;
use std::{
    fs,
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use tokio::sync::Notify;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use uuid::Uuid;

use crate::{
    clock::now_millis,
    config::ConfigStore,
    error::{AgentError, Result},
    paths::StatePaths,
    registry::Registry,
    session::{
        runspace::{self, RunspaceSpec},
        store, terminal, ConnId, Session,
    },
};

/// A request to hand the daemon over to a new binary, with the socket to answer on.
#[derive(Debug)]
pub struct UpgradeRequest {
    pub binary: PathBuf,
    pub requester: tokio::net::UnixStream,
}

/// The daemon's shared state.
#[derive(Debug)]
pub struct Daemon {
    pub registry: Registry,
    /// Stable id of this state directory, so a reconnecting client knows it reached the same agent.
    pub agent_id: Uuid,
    pub host: String,
    pub user: String,
    /// Session configurations, re-read from agent.toml when it changes.
    pub config: ConfigStore,
    /// Where sessions spill output past their memory limit.
    pub spill_dir: PathBuf,
    /// Where sessions are persisted across restarts; `None` keeps them in memory only.
    pub store_root: Option<PathBuf>,
    /// Cancelled when the daemon stops.
    pub shutdown: CancellationToken,
    /// Every connection, runspace, persister and background task, awaited at shutdown.
    pub tasks: TaskTracker,
    /// Woken when an idle clock may have started or changed, so the reaper re-plans.
    pub idle_changed: Notify,
    /// Every runspace task (also in `tasks`' care at shutdown: see [`Daemon::wait_all`]).
    pub runspaces: TaskTracker,
    /// Client connections, ended together for a handover.
    pub connections: TaskTracker,
    /// Upgrade requests, for the lifecycle loop (which owns the socket and the lock).
    pub upgrades: tokio::sync::mpsc::Sender<UpgradeRequest>,
    /// The receiving end, until the lifecycle loop takes it.
    upgrade_requests: Mutex<Option<tokio::sync::mpsc::Receiver<UpgradeRequest>>>,
    /// Cancelled to make runspaces park their shells for a handover; replaced if it fails.
    handover: Mutex<CancellationToken>,
    /// Cancelled to end every client connection for a handover; replaced if it fails.
    connections_closed: Mutex<CancellationToken>,
    next_conn: AtomicU64,
}

impl Daemon {
    /// Loads (or creates) the daemon's identity under `paths` and brings back saved sessions.
    pub fn load(paths: &StatePaths) -> Result<Self> {
        let spill_dir = crate::session::buffer::spill_dir(&paths.data_dir);
        let mut daemon = Self::new(
            load_agent_id(paths)?,
            ConfigStore::open(&paths.config_file()),
            spill_dir,
        );
        daemon.store_root = Some(paths.data_dir.join("sessions"));
        Ok(daemon)
    }

    /// A daemon with no sessions.
    pub fn new(agent_id: Uuid, config: ConfigStore, spill_dir: PathBuf) -> Self {
        let shutdown = CancellationToken::new();
        let (upgrades, upgrade_requests) = tokio::sync::mpsc::channel(4);
        Self {
            upgrades,
            upgrade_requests: Mutex::new(Some(upgrade_requests)),
            registry: Registry::default(),
            agent_id,
            host: nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            user: current_user(),
            config,
            spill_dir,
            store_root: None,
            connections_closed: Mutex::new(shutdown.child_token()),
            shutdown,
            tasks: TaskTracker::new(),
            idle_changed: Notify::new(),
            runspaces: TaskTracker::new(),
            connections: TaskTracker::new(),
            handover: Mutex::new(CancellationToken::new()),
            next_conn: AtomicU64::new(1),
        }
    }

    /// Brings back the sessions a previous daemon saved, Broken (their shells are gone) with
    /// their finished commands' output.
    pub fn restore_sessions(&self) {
        let Some(root) = &self.store_root else { return };
        for (stored, commands) in store::load_all(root) {
            let settings = store::settings_of(&stored, &self.spill_dir, root);
            let session = Arc::new(Session::restore(&stored, commands, settings));
            match self.adopt(session) {
                Ok(session) => tracing::info!(session = %session.name, "restored a session saved by a previous daemon"),
                Err(session) => {
                    tracing::warn!(session = %session.name, "a stored session's name is taken; skipping it")
                }
            }
        }
    }

    /// Registers a session and starts its persister; on a name clash returns the holder.
    pub fn adopt(&self, session: Arc<Session>) -> std::result::Result<Arc<Session>, Arc<Session>> {
        self.registry.insert(session.clone())?;
        if let Some(persister) = session.take_persister() {
            self.tasks.spawn(persister.run());
        }
        self.idle_changed.notify_one();
        Ok(session)
    }

    /// Starts a registered session's runspace as one of the daemon's tasks. The shell is
    /// spawned on a blocking thread: a spawn waits for the forked child's `exec`, which on the
    /// daemon's one async thread would hold up every other connection and session meanwhile.
    pub async fn start_runspace(&self, session: &Arc<Session>, spec: RunspaceSpec) -> Result<()> {
        let spawned = tokio::task::spawn_blocking(move || runspace::Shell::spawn(&spec)).await;
        let shell = spawned.map_err(|err| AgentError::Runspace(format!("could not be started: {err}")))??;
        self.runspaces
            .spawn(runspace::run(session.clone(), shell, self.handover_token()));
        Ok(())
    }

    /// Starts a session's terminal: the shell on a new pty, its pump a tracked task (with the
    /// runspaces: a handover parks both) that ends the terminal's processes when the session
    /// closes. `None` when another client started one first (this one is ended at once). The
    /// shell is spawned on a blocking thread, like a runspace's.
    pub async fn start_terminal(
        &self,
        session: &Arc<Session>,
        spec: terminal::TermSpec,
        scrollback: usize,
    ) -> std::io::Result<Option<Arc<terminal::Terminal>>> {
        let generation = session.terminal.next_generation();
        let spawn = move || terminal::Terminal::spawn(&spec, generation, scrollback);
        let terminal = tokio::task::spawn_blocking(spawn)
            .await
            .map_err(std::io::Error::other)??;
        if !session.terminal.install(terminal.clone()) {
            let closed = CancellationToken::new();
            closed.cancel();
            self.tasks
                .spawn(terminal::pump(terminal, closed, CancellationToken::new()));
            return Ok(None);
        }
        self.resume_terminal(session, terminal.clone());
        Ok(Some(terminal))
    }

    /// Runs (or goes on with) a session's terminal: after a handover, or one that did not happen.
    pub fn resume_terminal(&self, session: &Arc<Session>, terminal: Arc<terminal::Terminal>) {
        session.terminal.install(terminal.clone());
        self.runspaces
            .spawn(terminal::pump(terminal, session.closed.clone(), self.handover_token()));
    }

    /// Goes on with a parked shell (after a handover, or one that did not happen).
    pub fn resume_runspace(&self, session: &Arc<Session>, parked: runspace::Parked) {
        self.runspaces
            .spawn(runspace::resume(session.clone(), parked, self.handover_token()));
    }

    fn handover_token(&self) -> CancellationToken {
        self.handover.lock_or_recover().clone()
    }

    /// The token a new connection closes on: the daemon stopping, or a handover.
    pub fn connection_token(&self) -> CancellationToken {
        self.connections_closed.lock_or_recover().child_token()
    }

    /// Ends every connection and parks every runspace, for a handover.
    pub fn quiesce(&self) {
        self.connections_closed.lock_or_recover().cancel();
        self.handover.lock_or_recover().cancel();
        self.connections.close();
        self.runspaces.close();
    }

    /// Serves again after a handover that did not happen: new tokens, parked shells resumed.
    pub fn unquiesce(&self) {
        *self.connections_closed.lock_or_recover() = self.shutdown.child_token();
        *self.handover.lock_or_recover() = CancellationToken::new();
        self.connections.reopen();
        self.runspaces.reopen();
        for session in self.registry.list(None) {
            if let Some(parked) = session.runspace.take_parked() {
                self.resume_runspace(&session, parked);
            }
            if let Some(terminal) = session.terminal.get().filter(|t| t.is_parked()) {
                self.resume_terminal(&session, terminal);
            }
        }
    }

    /// Waits for every task the daemon started: connections, runspaces, persisters, the reaper.
    pub async fn wait_all(&self) {
        for tracker in [&self.connections, &self.runspaces, &self.tasks] {
            tracker.close();
            tracker.wait().await;
        }
    }

    /// Upgrade requests, once (for the lifecycle loop).
    pub fn take_upgrade_requests(&self) -> Option<tokio::sync::mpsc::Receiver<UpgradeRequest>> {
        self.upgrade_requests.lock_or_recover().take()
    }

    /// A fresh connection id.
    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Removes a session, logging why.
    pub fn remove_session(&self, id: Uuid, why: &str) {
        if let Some(session) = self.registry.remove(id) {
            session.discard_stored();
            tracing::info!(session = %session.name, instance_id = %session.id, "session removed: {why}");
        }
    }

    /// A client let go of a session or changed an idle timeout: the reaper re-plans.
    pub fn idle_clocks_changed(&self) {
        self.idle_changed.notify_one();
    }

    /// Removes every session whose idle timeout has passed; returns the next expiry, if any.
    pub fn remove_expired(&self) -> Option<remora_wire::UnixMillis> {
        let now = now_millis();
        let mut next = None;
        for session in self.registry.list(None) {
            match session.expires_at() {
                Some(at) if at <= now => self.remove_session(session.id, "idle timeout expired"),
                Some(at) => next = Some(next.map_or(at, |n: u64| n.min(at))),
                None => {}
            }
        }
        next
    }
}

fn load_agent_id(paths: &StatePaths) -> Result<Uuid> {
    let path = paths.data_dir.join("agent-id");
    if let Ok(text) = fs::read_to_string(&path) {
        if let Ok(id) = text.trim().parse() {
            return Ok(id);
        }
    }
    write_agent_id(&path)
}

fn write_agent_id(path: &Path) -> Result<Uuid> {
    let id = Uuid::new_v4();
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(AgentError::io("cannot write", path))?;
    writeln!(file, "{id}").map_err(AgentError::io("cannot write", path))?;
    Ok(id)
}

fn current_user() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}
