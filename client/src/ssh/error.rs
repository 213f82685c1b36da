//! Errors of the SSH transport. Messages are shown to users verbatim, so each says what failed,
//! for which host or file, and what to do next.
//!
//! A variant that wraps a cause prints it in its own message, in the middle where it reads best,
//! and so does not also expose it as [`std::error::Error::source`]: an error chain printed with
//! `{:#}` would repeat it.
//!
//! Every variant means the host could not be reached, trusted or logged into; the CLI exits 255
//! for all of them, like ssh (see [`SshError::is_connection_failure`]).

use std::{io, path::PathBuf};

use super::known_hosts::host_pattern;

/// Why an SSH connection could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// The command line's `[user@]host[:port]` does not parse.
    #[error("invalid target {target:?}: {reason}; use [user@]host[:port] or an ssh_config alias")]
    BadTarget { target: String, reason: String },
    /// An ssh_config file (or one it includes) exists but cannot be read.
    #[error("cannot read ssh config {path}: {cause}; fix its permissions or pass another file with -F")]
    ConfigRead { path: PathBuf, cause: io::Error },
    /// A line of an ssh_config file is malformed or has a value remora cannot use.
    #[error("{path}:{line}: {reason}")]
    ConfigLine { path: PathBuf, line: usize, reason: String },
    /// A `-o` option is malformed or has a value remora cannot use.
    #[error("option -o {option:?}: {reason}")]
    BadOption { option: String, reason: String },
    /// The TCP connection failed.
    #[error("cannot connect to {host} port {port}: {cause}; check the host name, the port and that sshd runs there")]
    Connect { host: String, port: u16, cause: io::Error },
    /// TCP or the SSH handshake did not finish in time.
    #[error(
        "connecting to {host} port {port} timed out after {secs} s; check that the host is up and reachable \
         (or raise ConnectTimeout)"
    )]
    ConnectTimeout { host: String, port: u16, secs: u64 },
    /// The host's key is in no known_hosts file and the policy does not allow learning it.
    #[error(
        "no host key for {} in {known_hosts} ({algorithm} key {fingerprint}){}; verify the fingerprint, \
         then connect once with `-o StrictHostKeyChecking=accept-new`, or add the key with \
         `ssh-keyscan -p {port} {host} >> {known_hosts}`",
        host_pattern(.host, *.port),
        if *.asked { "; StrictHostKeyChecking=ask, but there is no terminal to ask on" } else { "" }
    )]
    HostKeyUnknown {
        host: String,
        port: u16,
        algorithm: &'static str,
        fingerprint: String,
        known_hosts: String,
        /// The policy was `ask`, and there was no terminal to ask on.
        asked: bool,
    },
    /// known_hosts records a different key for the host: refused, whatever the policy.
    #[error(
        "\n@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
         @    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n\
         @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
         IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n\
         Someone could be eavesdropping on you right now (man-in-the-middle attack)!\n\
         It is also possible that a host key has just been changed.\n\
         The {algorithm} host key for {} is {fingerprint};\n\
         known_hosts records a different {recorded} key for it.\n\
         Offending {recorded} key in {file}:{line}\n\
         Connection refused (remora refuses changed keys whatever StrictHostKeyChecking says).\n\
         If the host really was reinstalled, remove the old key with\n\
         `ssh-keygen -f {file} -R '{}'` and connect again.",
        host_pattern(.host, *.port),
        host_pattern(.host, *.port)
    )]
    HostKeyChanged {
        host: String,
        port: u16,
        algorithm: &'static str,
        fingerprint: String,
        /// The algorithm of the recorded key (the same one unless only other types are recorded).
        recorded: &'static str,
        file: String,
        line: usize,
    },
    /// The host presented a key marked `@revoked`.
    #[error(
        "the host key of {} is marked @revoked in {file}:{line}; refusing to connect (ask the host's admin \
         for its new key)",
        host_pattern(.host, *.port)
    )]
    HostKeyRevoked {
        host: String,
        port: u16,
        file: String,
        line: usize,
    },
    /// The host's certificate is not one an `@cert-authority` line lets remora trust.
    #[error("the host certificate of {host} is refused: {reason}")]
    HostCertificateRefused { host: String, reason: String },
    /// The user answered no to StrictHostKeyChecking=ask.
    #[error("host key for {host} not accepted: you answered no; nothing was recorded")]
    HostKeyDeclined { host: String },
    /// `accept-new` could not record the key.
    #[error("cannot record the host key of {host} in {path}: {cause}; check that the file is writable")]
    KnownHostsWrite {
        host: String,
        path: PathBuf,
        cause: io::Error,
    },
    /// No identity was accepted.
    #[error(
        "permission denied for {user}@{host} (tried: {}); check IdentityFile, ssh-agent (ssh-add -l) and the \
         host's ~/.ssh/authorized_keys",
        if .tried.is_empty() { "nothing".to_string() } else { .tried.join(", ") }
    )]
    AuthFailed {
        user: String,
        host: String,
        /// Every method and key offered, with why it did not count when that is known.
        tried: Vec<String>,
    },
    /// The connection ended while authenticating: a broken link, or the host closing it after too
    /// many attempts (MaxAuthTries).
    #[error(
        "the connection to {host} ended while logging in as {user} ({reason}; tried: {}); if it keeps \
         happening the host may be refusing after too many keys: set IdentitiesOnly yes and IdentityFile",
        if .tried.is_empty() { "nothing yet".to_string() } else { .tried.join(", ") }
    )]
    AuthInterrupted {
        user: String,
        host: String,
        reason: String,
        tried: Vec<String>,
    },
    /// sshd has no such subsystem (or refused to start it).
    #[error(
        "the host's sshd refused the `{name}` subsystem; add `Subsystem {name} /path/to/remora-agent subsystem` \
         to its sshd_config and reload sshd"
    )]
    SubsystemRefused { name: String },
    /// Neither the subsystem nor an agent on the host's PATH or in `~/.local/bin`.
    #[error(
        "{host} has no `remora` subsystem in its sshd_config and no remora-agent on its PATH or in \
         ~/.local/bin; run `remora install {host}` (no root needed), or have its admin add \
         `Subsystem remora /path/to/remora-agent subsystem` to sshd_config"
    )]
    AgentMissing { host: String },
    /// sshd refused to run a command.
    #[error("{host}'s sshd refused to run a command (exec request); check ForceCommand and the account's shell")]
    ExecRefused { host: String },
    /// A command run for remora's own use (the agent probe, `install`) printed more than any
    /// honest reply would: the host is misbehaving, and reading on would let it fill our memory.
    #[error("{host} printed more than {limit} bytes in reply to `{command}`; remora stopped reading. Run it by hand with ssh to see why")]
    ExecOutputTooLarge {
        host: String,
        command: String,
        limit: usize,
    },
    /// Reaching or logging into a jump host failed.
    #[error("jump host {hop}: {cause}")]
    JumpHost { hop: String, cause: Box<SshError> },
    /// A jump host would not open a TCP channel to the next host.
    #[error(
        "jump host {hop} could not connect to {host} port {port} ({reason}); check that the host is reachable \
         from {hop} and that its sshd allows forwarding (AllowTcpForwarding)"
    )]
    JumpForward {
        hop: String,
        host: String,
        port: u16,
        reason: String,
    },
    /// ProxyJump chains through more hosts than any sane setup (usually hops that jump through
    /// each other).
    #[error(
        "ProxyJump chains through more than {max} jump hosts; check ssh_config for hosts that jump through each other"
    )]
    JumpLoop { max: usize },
    /// ProxyCommand could not be started.
    #[error("cannot run ProxyCommand `{command}`: {cause}; check the command and $SHELL")]
    ProxyCommandStart { command: String, cause: io::Error },
    /// ProxyCommand ended before the SSH handshake finished.
    #[error("ProxyCommand `{command}` ended ({status}) before the SSH handshake finished; run it by hand to see why")]
    ProxyCommandExited { command: String, status: String },
    /// The SSH connection failed after the TCP connection was made.
    #[error("SSH connection to {host} failed: {cause} (run with -vv for details)")]
    Protocol { host: String, cause: russh::Error },
    /// The server signs its host key only with SHA-1 `ssh-rsa` (OpenSSH before 7.2).
    #[error("{host} offers only the SHA-1 `ssh-rsa` host-key signature (an sshd older than OpenSSH 7.2), which remora, like OpenSSH 8.8 and later, does not use unless told to; if you accept that for this host, add `HostKeyAlgorithms +ssh-rsa` to its Host block in ssh_config (or pass -o HostKeyAlgorithms=+ssh-rsa)")]
    OnlySha1RsaHostKey { host: String },
    /// The server offers no host-key algorithm remora asked for.
    #[error("{host} offers only host-key algorithms remora does not use ({offered}); it asked for {asked}, set by HostKeyAlgorithms in ssh_config")]
    NoCommonHostKeyAlgorithm {
        host: String,
        offered: String,
        asked: String,
    },
}

impl SshError {
    /// Always true: every SSH error is a connection or authentication failure (the CLI exits 255).
    pub fn is_connection_failure(&self) -> bool {
        true
    }

    /// Whether trying again later may succeed (the network was in the way), as opposed to a
    /// refusal that would only repeat (host key, authentication, configuration).
    pub fn is_transient(&self) -> bool {
        match self {
            SshError::JumpHost { cause, .. } => cause.is_transient(),
            other => matches!(
                other,
                SshError::Connect { .. }
                    | SshError::ConnectTimeout { .. }
                    | SshError::Protocol { .. }
                    | SshError::JumpForward { .. }
                    | SshError::ProxyCommandExited { .. }
                    | SshError::AuthInterrupted { .. }
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_key_messages_name_the_host_as_known_hosts_does() {
        let unknown = SshError::HostKeyUnknown {
            host: "127.0.0.1".into(),
            port: 2222,
            algorithm: "ED25519",
            fingerprint: "SHA256:x".into(),
            known_hosts: "/k".into(),
            asked: false,
        };
        let text = unknown.to_string();
        assert!(
            text.starts_with("no host key for [127.0.0.1]:2222 in /k (ED25519 key SHA256:x);"),
            "{text}"
        );
        assert!(text.contains("StrictHostKeyChecking=accept-new"), "{text}");
        let changed = SshError::HostKeyChanged {
            host: "web01".into(),
            port: 22,
            algorithm: "ED25519",
            fingerprint: "SHA256:x".into(),
            recorded: "ED25519",
            file: "/k".into(),
            line: 3,
        };
        let text = changed.to_string();
        assert!(text.contains("Offending ED25519 key in /k:3"), "{text}");
        assert!(text.contains("ssh-keygen -f /k -R 'web01'"), "{text}");
    }
}
