//! What the daemon holds: the registry, its identity and its defaults.

use std::{
    fs,
    io::Write,
    os::unix::fs::OpenOptionsExt,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use tokio_util::{sync::CancellationToken, task::TaskTracker};
use uuid::Uuid;

use crate::{
    config::ConfigStore,
    error::{AgentError, Result},
    paths::StatePaths,
    registry::Registry,
    session::ConnId,
};

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
    pub spill_dir: std::path::PathBuf,
    /// Where sessions are persisted across restarts; `None` keeps them in memory only.
    pub store_root: Option<std::path::PathBuf>,
    /// Cancelled when the daemon stops.
    pub shutdown: CancellationToken,
    /// Every connection and background task, awaited at shutdown.
    pub tasks: TaskTracker,
    next_conn: AtomicU64,
}

impl Daemon {
    /// Loads (or creates) the daemon's identity under `paths`.
    pub fn load(paths: &StatePaths) -> Result<Self> {
        let spill_dir = crate::session::buffer::spill_dir(&paths.data_dir);
        let mut daemon = Self::new(
            load_agent_id(paths)?,
            ConfigStore::open(&paths.config_file()),
            spill_dir,
        );
        let root = paths.data_dir.join("sessions");
        daemon.restore_sessions(&root);
        daemon.store_root = Some(root);
        Ok(daemon)
    }

    /// A daemon with no sessions.
    pub fn new(agent_id: Uuid, config: ConfigStore, spill_dir: std::path::PathBuf) -> Self {
        Self {
            registry: Registry::default(),
            agent_id,
            host: nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            user: current_user(),
            config,
            spill_dir,
            store_root: None,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            next_conn: AtomicU64::new(1),
        }
    }

    /// Brings back the sessions a previous daemon saved under `root`, Broken (their shells are
    /// gone) with their finished commands' output.
    fn restore_sessions(&self, root: &std::path::Path) {
        for (stored, commands) in crate::session::store::load_all(root) {
            let settings = crate::session::SessionSettings {
                configuration: stored.configuration.clone(),
                idle_timeout_secs: stored.idle_timeout_secs,
                max_idle_timeout_secs: stored.max_idle_timeout_secs,
                buffering: stored.buffering,
                memory_limit: stored.memory_limit,
                spill_quota: stored.spill_quota,
                max_queued: stored.max_queued,
                spill_dir: self.spill_dir.clone(),
                store_root: Some(root.to_path_buf()),
            };
            let name = stored.name.clone();
            let session = std::sync::Arc::new(crate::session::Session::restore(stored, commands, settings));
            match self.registry.insert(session) {
                Ok(()) => tracing::info!(session = %name, "restored a session saved by a previous daemon"),
                Err(_) => tracing::warn!(session = %name, "a stored session's name is taken; skipping it"),
            }
        }
    }

    /// A fresh connection id.
    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Removes a session, logging why.
    pub fn remove_session(self: &Arc<Self>, id: Uuid, why: &str) {
        if let Some(session) = self.registry.remove(id) {
            session.discard_stored();
            tracing::info!(session = %session.name, instance_id = %session.id, "session removed: {why}");
        }
    }
}

fn load_agent_id(paths: &StatePaths) -> Result<Uuid> {
    let path = paths.data_dir.join("agent-id");
    if let Ok(text) = fs::read_to_string(&path) {
        if let Ok(id) = text.trim().parse() {
            return Ok(id);
        }
    }
    let id = Uuid::new_v4();
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(AgentError::io("cannot write", &path))?;
    writeln!(file, "{id}").map_err(AgentError::io("cannot write", &path))?;
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
