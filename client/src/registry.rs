//! The sessions this machine's client created, by host, so `remora ls` without a host can find
//! them again (like Get-PSSession without -ComputerName). A small JSON file in the client's data
//! dir, replaced atomically; losing it loses nothing on the hosts.

use std::{
    fs,
    io::{self, Write},
    path::PathBuf,
};

use remora_wire::SessionInfo;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One session this client created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Known {
    /// The target as typed (`web01`, `ada@db:2222`).
    pub host: String,
    pub name: String,
    pub instance_id: Uuid,
}

/// The registry file.
pub struct LocalRegistry {
    path: PathBuf,
}

impl LocalRegistry {
    /// The registry under the user's data dir (`~/.local/share/remora/sessions.json`).
    pub fn open() -> Option<Self> {
        let home = crate::ssh::home_dir();
        let data = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".local/share"));
        Some(Self {
            path: data.join("remora").join("sessions.json"),
        })
    }

    /// Every recorded session.
    pub fn entries(&self) -> Vec<Known> {
        fs::read(&self.path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Records sessions created on `host` (temporary ones are skipped).
    pub fn record(&self, host: &str, sessions: &[SessionInfo]) -> io::Result<()> {
        let mut entries = self.entries();
        for session in sessions.iter().filter(|s| !s.temporary) {
            if !entries.iter().any(|e| e.instance_id == session.instance_id) {
                entries.push(Known {
                    host: host.into(),
                    name: session.name.clone(),
                    instance_id: session.instance_id,
                });
            }
        }
        self.save(&entries)
    }

    /// Keeps only the entries `keep` accepts.
    pub fn retain(&self, keep: impl Fn(&Known) -> bool) -> io::Result<()> {
        let entries: Vec<Known> = self.entries().into_iter().filter(|e| keep(e)).collect();
        self.save(&entries)
    }

    fn save(&self, entries: &[Known]) -> io::Result<()> {
        let dir = self.path.parent().expect("registry path has a parent");
        fs::create_dir_all(dir)?;
        let temp = dir.join(format!(".sessions.{}.tmp", std::process::id()));
        let mut file = fs::File::create(&temp)?;
        file.write_all(&serde_json::to_vec_pretty(entries)?)?;
        file.sync_all()?;
        fs::rename(temp, &self.path)
    }
}

/// Records best effort: a registry problem must not fail the command that created the session.
pub fn remember(host: &str, sessions: &[SessionInfo]) {
    if let Some(registry) = LocalRegistry::open() {
        if let Err(err) = registry.record(host, sessions) {
            tracing::warn!("cannot record sessions in the local registry: {err}");
        }
    }
}
