//! The handover snapshot: one MessagePack file in the 0700 run directory, 0600, written by the
//! old program just before `exec` and deleted by the new one as soon as it has read it.

use std::{
    fs,
    io::Write,
    os::{fd::RawFd, unix::fs::OpenOptionsExt},
    path::Path,
};

use remora_wire::UnixMillis;
use serde::{Deserialize, Serialize};

use super::{check::FORMAT, Inherited};
use crate::{
    daemon::Daemon,
    error::{AgentError, HandoverFailure, Result},
    session::handover::SessionSnapshot,
};

/// Everything a new program needs to carry on as the daemon.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct DaemonSnapshot {
    /// The snapshot format ([`FORMAT`] when written by this program).
    pub format: u32,
    /// The version of the program that wrote it.
    pub from_version: String,
    /// The listening socket's descriptor.
    pub listener: RawFd,
    /// The pid file's descriptor, holding the daemon's flock.
    pub pid_lock: RawFd,
    pub sessions: Vec<SessionSnapshot>,
}

impl DaemonSnapshot {
    /// Takes the snapshot of a quiesced daemon (connections ended, runspaces parked).
    pub(crate) fn take(daemon: &Daemon, inherited: &Inherited<'_>, now: UnixMillis) -> Self {
        Self {
            format: FORMAT,
            from_version: env!("CARGO_PKG_VERSION").into(),
            listener: inherited.listener,
            pid_lock: inherited.pid_lock,
            sessions: daemon
                .registry
                .list(None)
                .iter()
                .map(|session| session.handover_snapshot(now))
                .collect(),
        }
    }

    /// Every descriptor that must survive `exec`.
    pub(crate) fn kept_fds(&self) -> Vec<RawFd> {
        let mut fds = vec![self.listener, self.pid_lock];
        for runspace in self.sessions.iter().filter_map(|s| s.runspace.as_ref()) {
            let shell = &runspace.shell;
            fds.extend([shell.stdin, shell.stdout, shell.stderr, shell.status, shell.input]);
        }
        fds.extend(
            self.sessions
                .iter()
                .filter_map(|s| s.terminal.as_ref())
                .map(|t| t.master),
        );
        fds.retain(|fd| *fd >= 0);
        fds
    }

    /// Writes the snapshot, private to the user.
    pub(crate) fn write(&self, path: &Path) -> Result<()> {
        let bytes = rmp_serde::to_vec_named(self).map_err(|cause| AgentError::Encode {
            what: "handover snapshot",
            cause,
        })?;
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(AgentError::io("cannot create", path))?;
        file.write_all(&bytes).map_err(AgentError::io("cannot write", path))
    }

    /// Reads a snapshot and deletes its file. A format this program does not read is an error
    /// (`handover-check` keeps that from happening).
    pub(crate) fn read_and_remove(path: &Path) -> Result<Self> {
        let bytes = fs::read(path).map_err(AgentError::io("cannot read", path));
        let _ = fs::remove_file(path);
        let snapshot: Self = rmp_serde::from_slice(&bytes?).map_err(|cause| AgentError::Unreadable {
            path: path.to_path_buf(),
            what: "the handover snapshot".into(),
            cause,
        })?;
        if snapshot.format != FORMAT {
            return Err(AgentError::Handover(HandoverFailure::SnapshotFormat {
                found: snapshot.format,
                reads: FORMAT,
            }));
        }
        Ok(snapshot)
    }
}
