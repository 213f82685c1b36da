//! The agent library's error type. Messages name the thing that failed and what to do next.

use std::{io, path::PathBuf};

/// Everything that can go wrong in the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    // Messages carry their cause in the text (it is logged with `{}`), so no variant also
    // chains it as a `source`: a printed chain would repeat it.
    #[error("{action} {path}: {cause}")]
    Io {
        action: &'static str,
        path: PathBuf,
        cause: io::Error,
    },
    #[error("refusing to use {path}: {reason}; fix its ownership or mode (it must be a directory owned by you with mode 0700) or pass another --state-dir")]
    UnsafeDirectory { path: PathBuf, reason: String },
    #[error("cannot find a home or runtime directory for this user; pass --state-dir DIR")]
    NoStateDir,
    #[error("the remora daemon did not start within {waited_ms} ms; see its log at {log}")]
    DaemonStart { waited_ms: u128, log: PathBuf },
    #[error("connection from uid {peer} refused: this daemon serves uid {own} only")]
    ForeignPeer { peer: u32, own: u32 },
    #[error("the daemon socket is served by uid {peer}, not {own}; refusing to hand it the connection (check who controls the run directory)")]
    ForeignDaemon { peer: u32, own: u32 },
    #[error("{path}: {what} is unreadable: {cause}")]
    Unreadable {
        path: PathBuf,
        what: String,
        cause: rmp_serde::decode::Error,
    },
    #[error("cannot encode the {what}: {cause}")]
    Encode {
        what: &'static str,
        cause: rmp_serde::encode::Error,
    },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("the runspace shell {0}")]
    Runspace(String),
    #[error("cannot hand the daemon over to {binary}: {reason}")]
    HandoverRefused { binary: PathBuf, reason: String },
    #[error("the handover failed: {0}; the daemon keeps serving")]
    Handover(HandoverFailure),
    #[error("protocol error: {0}")]
    Wire(#[from] remora_wire::WireError),
    #[error("{0}")]
    Sys(#[from] nix::Error),
    #[error("ssh server: {0}")]
    HostKey(HostKeyFailure),
    #[error("a background task of the agent failed: {0}; see the agent's log")]
    Task(#[from] tokio::task::JoinError),
}

/// Why a handover to a new binary did not happen (the old daemon keeps serving).
#[derive(Debug, thiserror::Error)]
pub enum HandoverFailure {
    #[error("the snapshot is in format {found}, this program reads {reads}")]
    SnapshotFormat { found: u32, reads: u32 },
    #[error("connections and runspaces did not settle within {secs} s")]
    NotSettled { secs: u64 },
    #[error("cannot keep descriptors open across exec: {0}")]
    KeepDescriptors(nix::Error),
    #[error("cannot execute {}: {cause}", binary.display())]
    Exec { binary: PathBuf, cause: nix::Error },
    #[error("the daemon closed the socket without an answer")]
    NoAnswer,
    #[error("the daemon did not answer in time")]
    AnswerTimedOut,
    #[error("the daemon did not welcome us after the handover")]
    NotWelcomed,
    #[error("the new daemon did not answer; see its log")]
    NewDaemonSilent,
}

/// Why the embedded server has no host key.
#[derive(Debug, thiserror::Error)]
pub enum HostKeyFailure {
    #[error("cannot read host key {}: {cause}; remove it to generate a new one", path.display())]
    Read {
        path: PathBuf,
        cause: russh::keys::ssh_key::Error,
    },
    #[error("cannot generate a host key: {0}")]
    Generate(russh::keys::ssh_key::Error),
    #[error("cannot encode the host key: {0}")]
    Encode(russh::keys::ssh_key::Error),
}

impl AgentError {
    /// Wraps an I/O error with what was being done to which path.
    pub fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |cause| AgentError::Io { action, path, cause }
    }
}

/// Result alias for the agent library.
pub type Result<T, E = AgentError> = std::result::Result<T, E>;
