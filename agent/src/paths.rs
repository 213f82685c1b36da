//! Where the agent keeps its socket, pid file, data and configuration, and the checks that make
//! those places private to one user.
//!
//! Invariant: every directory handed out by [`StatePaths::prepare`] exists, is a real directory
//! (not a symlink), is owned by the current uid and has no group or world permissions.
//!
//! The socket goes under `$XDG_RUNTIME_DIR` only when that is a private directory of this user
//! already (what a systemd user session provides); it is never created. Without one (containers,
//! `su`, cron, sshd without PAM) it goes under the data directory, `~/.local/share/remora/run`.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
};

use crate::error::{AgentError, Result};

/// The agent's places on disk.
#[derive(Debug, Clone)]
pub struct StatePaths {
    /// The `--state-dir` these paths were derived from, if any (passed on to a spawned daemon).
    pub root: Option<PathBuf>,
    /// Holds the daemon socket and pid file.
    pub run_dir: PathBuf,
    /// Holds persisted sessions and journals.
    pub data_dir: PathBuf,
    /// Holds `agent.toml`.
    pub config_dir: PathBuf,
    /// Holds the daemon log.
    pub log_dir: PathBuf,
}

impl StatePaths {
    /// Everything under one directory (`--state-dir`), so tests and instances never collide.
    pub fn under(root: &Path) -> Self {
        Self {
            root: Some(root.to_path_buf()),
            run_dir: root.join("run"),
            data_dir: root.join("data"),
            config_dir: root.join("config"),
            log_dir: root.join("log"),
        }
    }

    /// The per-user directories of the platform (XDG on Linux).
    pub fn per_user() -> Result<Self> {
        let dirs = directories::ProjectDirs::from("", "", "remora").ok_or(AgentError::NoStateDir)?;
        let data_dir = dirs.data_local_dir().to_path_buf();
        let run_dir = runtime_dir(std::env::var_os("XDG_RUNTIME_DIR")).unwrap_or_else(|| data_dir.join("run"));
        Ok(Self {
            root: None,
            run_dir,
            log_dir: data_dir.join("log"),
            data_dir,
            config_dir: dirs.config_dir().to_path_buf(),
        })
    }

    /// From `--state-dir` when given, else the per-user directories.
    pub fn from_option(state_dir: Option<&Path>) -> Result<Self> {
        match state_dir {
            Some(root) => Ok(Self::under(root)),
            None => Self::per_user(),
        }
    }

    /// Creates every directory with mode 0700 and verifies each is private to this user, the
    /// `--state-dir` itself first (a symlinked or shared root would let others swap what is
    /// inside).
    pub fn prepare(&self) -> Result<()> {
        let root = self.root.iter();
        for dir in root.chain([&self.run_dir, &self.data_dir, &self.config_dir, &self.log_dir]) {
            ensure_private_dir(dir)?;
        }
        Ok(())
    }

    /// The daemon's listening socket.
    pub fn socket(&self) -> PathBuf {
        self.run_dir.join("agent.sock")
    }

    /// Holds the daemon's pid; locked (flock) for the daemon's whole life.
    pub fn pid_file(&self) -> PathBuf {
        self.run_dir.join("daemon.pid")
    }

    /// Serialises daemon start-up between concurrent subsystem processes.
    pub fn spawn_lock(&self) -> PathBuf {
        self.run_dir.join("spawn.lock")
    }

    /// The daemon's log file.
    pub fn log_file(&self) -> PathBuf {
        self.log_dir.join("daemon.log")
    }

    /// The agent's configuration file.
    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("agent.toml")
    }
}

/// `$XDG_RUNTIME_DIR/remora` when `xdg` names an existing directory private to this user (the
/// XDG rules: owned by the user, mode 0700); `None` when it is unset, relative, missing,
/// someone else's (after `su`) or open to others, so the caller falls back to a directory it
/// creates and checks itself.
fn runtime_dir(xdg: Option<OsString>) -> Option<PathBuf> {
    let dir = PathBuf::from(xdg?);
    if !dir.is_absolute() {
        return None;
    }
    match verify_private_dir(&dir) {
        Ok(()) => Some(dir.join("remora")),
        Err(err) => {
            tracing::debug!("XDG_RUNTIME_DIR not used: {err}");
            None
        }
    }
}

/// Creates `dir` (and missing parents) with mode 0700, then refuses it unless it is a real
/// directory owned by us without group/world access ([`remora_unix::ensure_private_dir`]).
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<()> {
    remora_unix::ensure_private_dir(dir).map_err(agent_error)
}

/// Checks, without following symlinks, that `dir` is private to the current user.
pub(crate) fn verify_private_dir(dir: &Path) -> Result<()> {
    remora_unix::verify_private_dir(dir).map_err(agent_error)
}

fn agent_error(err: remora_unix::PrivateDirError) -> AgentError {
    use remora_unix::PrivateDirError::*;
    match err {
        Create { path, cause } => AgentError::Io {
            action: "cannot create directory",
            path,
            cause,
        },
        Inspect { path, cause } => AgentError::Io {
            action: "cannot inspect",
            path,
            cause,
        },
        NotPrivate { path, reason } => AgentError::UnsafeDirectory { path, reason },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{fs, os::unix::fs::PermissionsExt};

    #[test]
    fn prepare_creates_private_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = StatePaths::under(&tmp.path().join("state"));
        paths.prepare().unwrap();
        let mode = fs::metadata(&paths.run_dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn group_readable_dir_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("open");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o750)).unwrap();
        let err = ensure_private_dir(&dir).unwrap_err();
        assert!(matches!(err, AgentError::UnsafeDirectory { .. }), "{err}");
    }

    #[test]
    fn the_runtime_dir_is_used_only_when_it_is_already_private() {
        let tmp = tempfile::tempdir().unwrap();
        let private = tmp.path().join("private");
        ensure_private_dir(&private).unwrap();
        assert_eq!(runtime_dir(Some(private.clone().into())), Some(private.join("remora")));
        let missing = tmp.path().join("missing");
        assert_eq!(runtime_dir(Some(missing.clone().into())), None);
        assert!(!missing.exists(), "never created");
        let open = tmp.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(runtime_dir(Some(open.into())), None);
        assert_eq!(runtime_dir(Some("relative".into())), None);
        assert_eq!(runtime_dir(Some("".into())), None);
        assert_eq!(runtime_dir(None), None);
    }

    #[test]
    fn symlinked_dir_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        ensure_private_dir(&real).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = verify_private_dir(&link).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let err = StatePaths::under(&link).prepare().unwrap_err();
        assert!(
            err.to_string().contains("symbolic link"),
            "the --state-dir itself: {err}"
        );
        assert!(!real.join("run").exists(), "nothing created through the link");
    }
}
