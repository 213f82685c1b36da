//! Errors of the SSH transport. Every one means the host could not be reached, trusted or logged
//! into, so the CLI exits 255 for all of them, like ssh.

use std::{io, path::PathBuf};

/// Why an SSH connection could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("invalid target {target:?}: {reason}; use [user@]host[:port] or an ssh_config alias")]
    BadTarget { target: String, reason: String },
    #[error("cannot read ssh config {path}: {source}")]
    ConfigRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    ConfigLine { path: PathBuf, line: usize, reason: String },
    #[error("cannot connect to {host} port {port}: {source}")]
    Connect {
        host: String,
        port: u16,
        #[source]
        source: io::Error,
    },
    #[error("connecting to {host} port {port} timed out after {secs} s (ConnectTimeout)")]
    ConnectTimeout { host: String, port: u16, secs: u64 },
    #[error(
        "no host key for {host} is known in {known_hosts} ({algorithm} key {fingerprint}){other_types}; \
         verify the fingerprint, then connect once with `-o StrictHostKeyChecking=accept-new` \
         (or add the key with `ssh-keyscan -p PORT HOST >> {known_hosts}`)"
    )]
    HostKeyUnknown {
        host: String,
        algorithm: String,
        fingerprint: String,
        known_hosts: String,
        other_types: String,
    },
    #[error(
        "\n@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
         @    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n\
         @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
         IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n\
         The {algorithm} host key for {host} is now {fingerprint}.\n\
         Offending key in {file}:{line}\n\
         Connection refused. If the host really was reinstalled, remove the old key with\n\
         `ssh-keygen -f {file} -R '{host}'` and connect again."
    )]
    HostKeyChanged {
        host: String,
        algorithm: String,
        fingerprint: String,
        file: String,
        line: usize,
    },
    #[error("the host key of {host} is marked @revoked in {file}:{line}; refusing to connect")]
    HostKeyRevoked { host: String, file: String, line: usize },
    #[error("{host} presented a host certificate; remora does not verify host certificates yet")]
    HostCertificate { host: String },
    #[error("cannot record the host key of {host} in {path}: {source}")]
    KnownHostsWrite {
        host: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("permission denied for {user}@{host} (tried: {}); check IdentityFile and the host's authorized_keys", tried.join(", "))]
    AuthFailed {
        user: String,
        host: String,
        tried: Vec<String>,
    },
    #[error("the host's sshd refused the `{name}` subsystem; add `Subsystem {name} /path/to/remora-agent subsystem` to its sshd_config and reload sshd")]
    SubsystemRefused { name: String },
    #[error("SSH protocol error with {host}: {source}")]
    Protocol {
        host: String,
        #[source]
        source: russh::Error,
    },
}
