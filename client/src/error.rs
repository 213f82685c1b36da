//! The client library's error type. Messages say what failed, on which host, and what to do.

use remora_wire::{ErrorCode, WireError};

use crate::ssh::SshError;

/// Everything that can go wrong talking to an agent.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// SSH could not connect, verify the host or authenticate (exit 255, like ssh).
    #[error(transparent)]
    Ssh(#[from] SshError),
    /// The agent refused a request.
    #[error("{host}: {message}")]
    Refused {
        host: String,
        code: ErrorCode,
        message: String,
    },
    /// The byte stream to the agent broke or carried something unreadable.
    #[error("{host}: connection to remora-agent failed: {source}")]
    Wire {
        host: String,
        #[source]
        source: WireError,
    },
    /// The agent closed the connection before answering.
    #[error("{host}: remora-agent closed the connection unexpectedly{hint}")]
    Closed { host: String, hint: String },
    /// The agent answered with something that does not fit the request.
    #[error("{host}: unexpected reply from remora-agent ({what}); are client and agent versions compatible?")]
    Unexpected { host: String, what: String },
    /// The link broke and reconnecting did not succeed within the policy's window.
    #[error("{host}: the link broke and reconnecting failed ({source}); the session is still on the host: collect its output with `remora receive {host} --id {session}`")]
    GaveUp {
        host: String,
        session: uuid::Uuid,
        #[source]
        source: Box<ClientError>,
    },
    /// `remora install` could not put the agent on the host.
    #[error("cannot install remora-agent on {host}: {reason}")]
    Install { host: String, reason: String },
    /// Writing received output locally failed; nothing was acknowledged past what was written.
    #[error("cannot write received output: {0}")]
    Output(#[source] std::io::Error),
}

impl ClientError {
    /// Whether this failure is about reaching the host at all (the CLI exits 255, like ssh).
    pub fn is_connection_failure(&self) -> bool {
        matches!(
            self,
            ClientError::Ssh(_) | ClientError::Wire { .. } | ClientError::Closed { .. } | ClientError::GaveUp { .. }
        )
    }

    /// Whether reconnecting may help: the link broke or could not be made, rather than a host
    /// key, authentication or agent refusal that would only repeat.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Ssh(err) => err.is_transient(),
            ClientError::Wire { .. } | ClientError::Closed { .. } => true,
            _ => false,
        }
    }

    /// The agent's error code, when the agent refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Result alias for the client library.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;
