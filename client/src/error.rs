//! The client library's error type. Messages say what failed, on which host, and what to do.
//!
//! A message that includes its cause does not also chain it as `source()`, so printing the chain
//! (`{:#}`) never repeats it; [`ClientError::Ssh`] is transparent and so is its message.

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
    #[error("{host}: connection to remora-agent failed: {cause}")]
    Wire { host: String, cause: WireError },
    /// The connection ended before the agent answered: the link broke, or the agent went away.
    #[error("{host}: the connection to remora-agent was lost{hint}")]
    Closed { host: String, hint: String },
    /// The agent answered with something that does not fit the request.
    #[error("{host}: unexpected reply from remora-agent ({what}); are client and agent versions compatible?")]
    Unexpected { host: String, what: String },
    /// The link broke and reconnecting did not succeed within the policy's window (or is off).
    #[error(
        "{host}: {}; the session is still on the host: collect its output with `remora receive {host} --id {session}`",
        link_lost(cause)
    )]
    GaveUp {
        host: String,
        session: uuid::Uuid,
        cause: Box<ClientError>,
    },
    /// `remora install` could not put the agent on the host.
    #[error("cannot install remora-agent on {host}: {reason}")]
    Install { host: String, reason: String },
    /// The connection holder could not be used or started (callers connect on their own).
    #[error("connection holder: {0}")]
    Holder(String),
    /// Writing received output locally failed; nothing was acknowledged past what was written.
    #[error("cannot write received output: {0}")]
    Output(std::io::Error),
    /// Reading the local input for a command's stdin failed.
    #[error("cannot read the input for the command's stdin: {0}")]
    Input(std::io::Error),
    /// A local path could not be read or written (`cp`).
    #[error("cannot {action} {}: {cause}{hint}", path.display())]
    Local {
        action: &'static str,
        path: std::path::PathBuf,
        cause: std::io::Error,
        hint: &'static str,
    },
    /// A copy that cannot be done as asked (`cp`): a directory without -r, a file over a
    /// directory, a checksum mismatch.
    #[error(transparent)]
    Copy(#[from] CopyRefusal),
    /// A host's listing for a download broke the rules of [`crate::listing`]: refused before
    /// anything was written.
    #[error("{host}: refused its listing of {asked}: {problem}; nothing was written (a host that sends this may be compromised)")]
    BadListing {
        host: String,
        asked: String,
        problem: crate::listing::ListingError,
    },
    /// The link broke during a transfer and reconnecting did not succeed in time (or is off).
    #[error("{host}: {}; run the same command again to resume", link_lost(cause))]
    LinkLost { host: String, cause: Box<ClientError> },
    /// The link broke and the reconnect policy's window is zero (`--reconnect-for 0`); always
    /// the cause of a [`ClientError::GaveUp`] or [`ClientError::LinkLost`].
    #[error("{cause}")]
    NotReconnecting { cause: String },
}

/// How a call that gave up on a broken link says so, from what ended its reconnecting.
fn link_lost(cause: &ClientError) -> String {
    match cause {
        ClientError::NotReconnecting { cause } => {
            format!("the link was lost ({cause}) and reconnecting is off (--reconnect-for 0)")
        }
        other => format!("the link broke and reconnecting failed ({other})"),
    }
}

impl ClientError {
    /// Whether this failure is about reaching the host at all (the CLI exits 255, like ssh).
    pub fn is_connection_failure(&self) -> bool {
        matches!(
            self,
            ClientError::Ssh(_)
                | ClientError::Wire { .. }
                | ClientError::Closed { .. }
                | ClientError::GaveUp { .. }
                | ClientError::LinkLost { .. }
                | ClientError::NotReconnecting { .. }
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

#[cfg(test)]
mod tests {
    use std::{error::Error, io};

    use super::*;

    /// The error and its chain of causes, as `anyhow` prints them with `{:#}`.
    fn chain(err: &dyn Error) -> String {
        let mut text = err.to_string();
        let mut next = err.source();
        while let Some(cause) = next {
            text = format!("{text}: {cause}");
            next = cause.source();
        }
        text
    }

    const LOOKUP: &str = "failed to lookup address information: Name or service not known";

    fn unresolvable() -> SshError {
        SshError::Connect {
            host: "nosuchhost".into(),
            port: 22,
            cause: io::Error::other(LOOKUP),
        }
    }

    #[test]
    fn an_unresolvable_host_is_reported_once_with_the_next_step() {
        let err = ClientError::from(unresolvable());
        assert_eq!(
            chain(&err),
            format!(
                "cannot connect to nosuchhost port 22: {LOOKUP}; check the host name, the port and that sshd runs there"
            )
        );
    }

    #[test]
    fn no_message_repeats_its_cause() {
        let cause = || io::Error::other("the cause");
        let errors: Vec<Box<dyn Error>> = vec![
            Box::new(SshError::ConfigRead {
                path: "/c".into(),
                cause: cause(),
            }),
            Box::new(unresolvable()),
            Box::new(SshError::KnownHostsWrite {
                host: "h".into(),
                path: "/k".into(),
                cause: cause(),
            }),
            Box::new(SshError::JumpHost {
                hop: "bastion".into(),
                cause: Box::new(unresolvable()),
            }),
            Box::new(SshError::ProxyCommandStart {
                command: "nc".into(),
                cause: cause(),
            }),
            Box::new(SshError::Protocol {
                host: "h".into(),
                cause: russh::Error::IO(cause()),
            }),
            Box::new(ClientError::Wire {
                host: "h".into(),
                cause: WireError::from(cause()),
            }),
            Box::new(ClientError::GaveUp {
                host: "h".into(),
                session: uuid::Uuid::nil(),
                cause: Box::new(ClientError::from(unresolvable())),
            }),
            Box::new(ClientError::LinkLost {
                host: "h".into(),
                cause: Box::new(ClientError::NotReconnecting {
                    cause: "the cause".into(),
                }),
            }),
            Box::new(ClientError::Output(cause())),
            Box::new(ClientError::from(unresolvable())),
        ];
        for err in errors {
            let text = chain(err.as_ref());
            let repeated = ["the cause", LOOKUP]
                .iter()
                .any(|cause| text.matches(cause).count() > 1);
            assert!(!repeated, "{text}");
            assert!(text.contains("the cause") || text.contains(LOOKUP), "{text}");
        }
    }

    #[test]
    fn giving_up_on_a_link_says_the_link_was_lost_and_how_to_collect_the_output() {
        let closed = || ClientError::Closed {
            host: "web1".into(),
            hint: String::new(),
        };
        let session = uuid::Uuid::nil();
        let off = ClientError::GaveUp {
            host: "web1".into(),
            session,
            cause: Box::new(ClientError::NotReconnecting {
                cause: closed().to_string(),
            }),
        };
        assert_eq!(
            off.to_string(),
            format!(
                "web1: the link was lost (web1: the connection to remora-agent was lost) and reconnecting is off \
                 (--reconnect-for 0); the session is still on the host: collect its output with \
                 `remora receive web1 --id {session}`"
            )
        );
        let ran_out = ClientError::GaveUp {
            host: "web1".into(),
            session,
            cause: Box::new(closed()),
        };
        assert!(
            ran_out
                .to_string()
                .starts_with("web1: the link broke and reconnecting failed (web1: the connection"),
            "{ran_out}"
        );
        assert!(off.is_connection_failure() && !off.is_transient());
    }
}

/// Why `cp` could not copy as asked.
#[derive(Debug, thiserror::Error)]
pub enum CopyRefusal {
    #[error("{} is a directory; copy it with -r", .0.display())]
    DirectoryWithoutR(std::path::PathBuf),
    #[error("cannot overwrite {what} {}", path.display())]
    WouldOverwrite {
        what: &'static str,
        path: std::path::PathBuf,
    },
    #[error("{} names no file to copy to; name one", .0.display())]
    NoFileName(std::path::PathBuf),
    #[error("{} is not a directory; several sources need a directory to copy into", .0.display())]
    NotADirectory(std::path::PathBuf),
    #[error("{} arrived as {got_size} bytes with SHA-256 {got_sha256}, but the host's file has {size} bytes with SHA-256 {sha256}; nothing was written, copy it again", path.display())]
    ChecksumMismatch {
        path: std::path::PathBuf,
        got_size: u64,
        got_sha256: String,
        size: u64,
        sha256: String,
    },
    #[error("{} changed while it was copied ({listed} bytes, then {sent}); copy it again", path.display())]
    ChangedWhileCopied {
        path: std::path::PathBuf,
        listed: u64,
        sent: u64,
    },
}
