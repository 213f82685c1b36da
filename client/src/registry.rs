//! The sessions this machine's client created, by host, so `remora ls` without a host can find
//! them again (like Get-PSSession without -ComputerName). A small JSON file in the client's data
//! dir; losing it loses nothing on the hosts.
//!
//! Invariants:
//! - Private: the directory is 0700 and every file in it 0600. On a machine that is also a host,
//!   the agent shares `~/.local/share/remora` and refuses it when it is open to others.
//! - Several `remora` processes may update it at once: each update is a read-modify-write under
//!   an exclusive flock on `sessions.lock`, written to a unique temporary file that replaces
//!   `sessions.json` atomically, so no update loses another's entries and readers never see half
//!   a file.

use std::{
    fs,
    io::{self, Write},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use remora_wire::SessionInfo;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The registry could not be updated (reading it never fails: a missing or unreadable file is
/// an empty registry).
#[derive(Debug, thiserror::Error)]
#[error("cannot update the session registry {}: {cause}; check that its directory is yours and writable", .path.display())]
pub struct RegistryError {
    /// The directory or file that failed.
    pub path: PathBuf,
    pub cause: io::Error,
}

type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// One session this client created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Known {
    /// The target as typed (`web01`, `ada@db:2222`).
    pub host: String,
    pub name: String,
    pub instance_id: Uuid,
}

/// The registry: `sessions.json` and its lock file in one private directory.
pub struct LocalRegistry {
    dir: PathBuf,
}

impl LocalRegistry {
    /// The registry under the user's data dir (`$XDG_DATA_HOME/remora`, by default
    /// `~/.local/share/remora`).
    pub fn open() -> Option<Self> {
        let data = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .filter(|dir| dir.is_absolute())
            .unwrap_or_else(|| crate::ssh::home_dir().join(".local/share"));
        Some(Self::in_dir(data.join("remora")))
    }

    /// The registry in `dir` (created on the first update).
    pub fn in_dir(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The registry file.
    pub fn path(&self) -> PathBuf {
        self.dir.join("sessions.json")
    }

    /// Every recorded session (none when the file is missing or unreadable).
    pub fn entries(&self) -> Vec<Known> {
        fs::read(self.path())
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Records sessions created on `host` (temporary ones are skipped).
    pub fn record(&self, host: &str, sessions: &[SessionInfo]) -> Result<()> {
        let known = sessions.iter().filter(|s| !s.temporary).map(|s| Known {
            host: host.into(),
            name: s.name.clone(),
            instance_id: s.instance_id,
        });
        self.add(known.collect())
    }

    /// Adds entries not recorded yet.
    fn add(&self, known: Vec<Known>) -> Result<()> {
        self.update(|entries| {
            for new in known {
                if !entries.iter().any(|e| e.instance_id == new.instance_id) {
                    entries.push(new);
                }
            }
        })
    }

    /// Keeps only the entries `keep` accepts.
    pub fn retain(&self, keep: impl Fn(&Known) -> bool) -> Result<()> {
        self.update(|entries| entries.retain(|e| keep(e)))
    }

    /// Read-modify-write under the lock; see the module invariants.
    fn update(&self, change: impl FnOnce(&mut Vec<Known>)) -> Result<()> {
        let failed = |path: &Path| {
            let path = path.to_path_buf();
            move |cause| RegistryError { path, cause }
        };
        remora_unix::tighten_private_dir(&self.dir)
            .map_err(io::Error::other)
            .map_err(failed(&self.dir))?;
        let lock_path = self.dir.join("sessions.lock");
        let _lock = remora_unix::lock_exclusive(&lock_path).map_err(failed(&lock_path))?;
        let mut entries = self.entries();
        change(&mut entries);
        let path = self.path();
        let bytes = serde_json::to_vec_pretty(&entries).map_err(io::Error::other);
        bytes
            .and_then(|bytes| replace(&self.dir, &path, &bytes))
            .map_err(failed(&path))
    }
}

/// Writes `bytes` to a fresh temporary file in `dir` (0600), syncs it and renames it over `path`.
fn replace(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut temp = tempfile::Builder::new()
        .prefix(".sessions.")
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|err| err.error)?;
    Ok(())
}

/// Records best effort: a registry problem must not fail the command that created the session.
pub fn remember(host: &str, sessions: &[SessionInfo]) {
    if let Some(registry) = LocalRegistry::open() {
        if let Err(err) = registry.record(host, sessions) {
            tracing::warn!("{err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::DirBuilderExt;

    fn known(name: &str) -> Vec<Known> {
        vec![Known {
            host: "h".into(),
            name: name.into(),
            instance_id: Uuid::new_v4(),
        }]
    }

    #[test]
    fn the_registry_is_private_and_keeps_every_writer_s_entries() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("share/remora");
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let dir = dir.clone();
                std::thread::spawn(move || LocalRegistry::in_dir(dir).add(known(&format!("s{i}"))).unwrap())
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let registry = LocalRegistry::in_dir(dir.clone());
        assert_eq!(registry.entries().len(), 8);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&registry.path()), 0o600);
        assert_eq!(mode(&dir.join("sessions.lock")), 0o600);
        let left: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 2, "no temporary files left behind: {left:?}");
    }

    #[test]
    fn a_directory_left_open_by_an_older_client_is_made_private() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("remora");
        fs::DirBuilder::new().mode(0o755).create(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        LocalRegistry::in_dir(dir.clone()).add(known("a")).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    }
}
