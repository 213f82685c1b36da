//! Making the connection: the byte stream (TCP or a proxy command from [`route`], or a channel
//! forwarded by a jump host connected here first), the SSH handshake with host-key verification,
//! authentication, and opening the `remora` subsystem on a session channel.
//!
//! Invariants: what carries a connection (the jump hosts' connections, the proxy command) lives
//! exactly as long as the connection it carries, in its [`Carrier`]. Reaching sshd and the key
//! exchange are bounded by ConnectTimeout, so a link that swallows packets fails instead of
//! hanging; authentication is not, as it may wait for a passphrase.

use std::{borrow::Cow, sync::Arc, time::Duration};

use super::{
    auth,
    host_key::{self, Accepted, VerifiedKey, Verifier},
    route::{self, Transport},
    HostSettings, Route, SshError, Target,
};
use russh::{
    client::{self, Handle},
    ChannelMsg, Disconnect, Preferred,
};

/// Default time to establish TCP and finish the key exchange.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default keepalive: a dead link is noticed within interval × ServerAliveCountMax, and noticing
/// quickly is what lets attached commands reconnect.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(3);
/// What one read from the transport takes at most (two of russh's largest packets).
const TRANSPORT_READ_BUFFER: usize = 64 * 1024;
/// Per-channel flow-control window: OpenSSH's own (2 MiB). Larger buys nothing on a LAN and
/// leaves more in flight to be sent again after a cut (the client reads in bursts between
/// writing output, so the socket buffers fill up to the window).
const WINDOW_SIZE: u32 = 2 * 1024 * 1024;
/// Largest packet we accept (what OpenSSH's sshd sends).
const MAXIMUM_PACKET_SIZE: u32 = 32 * 1024;
/// How long a proxy command that closed its stdout gets to exit, for its status to be reported.
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// The byte stream of an open subsystem channel (`AsyncRead + AsyncWrite + Unpin + Send + 'static`).
pub type SubsystemStream = russh::ChannelStream<client::Msg>;

/// An authenticated SSH connection.
pub struct SshLink {
    handle: Handle<Verifier>,
    host: String,
    /// The host as the user named it (for messages that suggest a command).
    alias: String,
    /// The host key (or certificate) the handshake accepted.
    host_key: Option<VerifiedKey>,
    /// What the connection runs over; dropped after `handle`.
    carrier: Carrier,
}

/// Whatever must stay alive while the connection runs over it.
pub enum Carrier {
    /// The kernel's TCP connection: nothing to keep.
    Direct,
    /// The connection to the last jump host (which keeps its own carrier).
    Jump { hop: String, link: Box<SshLink> },
    /// The proxy command; killed when the connection is dropped.
    Command {
        command: String,
        child: tokio::process::Child,
    },
}

impl Carrier {
    /// Replaces a handshake failure with a better reason when the carrier explains it (the proxy
    /// command died, the jump host went away).
    pub async fn explain(&mut self, err: SshError) -> SshError {
        match self {
            // The handshake fails as soon as the command's stdout closes; its exit follows.
            Carrier::Command { command, child } => match tokio::time::timeout(EXIT_GRACE, child.wait()).await {
                Ok(Ok(status)) => SshError::ProxyCommandExited {
                    command: command.clone(),
                    status: status.to_string(),
                },
                _ => err,
            },
            Carrier::Jump { hop, link } if link.is_closed() => SshError::JumpHost {
                hop: hop.clone(),
                cause: Box::new(err),
            },
            Carrier::Direct | Carrier::Jump { .. } => err,
        }
    }
}

impl SshLink {
    /// Connects (through jump hosts or a proxy command if configured), verifies the host key and
    /// authenticates.
    pub async fn connect(settings: &HostSettings) -> Result<SshLink, SshError> {
        SshLink::connect_at_depth(settings, 0).await
    }

    /// [`SshLink::connect`] for a host `depth` jump hosts into a chain.
    pub(super) fn connect_at_depth(
        settings: &HostSettings,
        depth: usize,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<SshLink, SshError>> + Send + '_>> {
        // Boxed: reaching a jump host is itself a connect.
        Box::pin(async move {
            let limit = settings.connect_timeout.unwrap_or(CONNECT_TIMEOUT);
            let (transport, mut carrier) = open(settings, depth, limit).await?;
            let handshake = tokio::time::timeout(limit, handshake(settings, transport)).await;
            let handshake = handshake.map_err(|_| route::timed_out(settings, limit))?;
            let (mut handle, accepted) = match handshake {
                Ok(handshake) => handshake,
                Err(err) => return Err(carrier.explain(err).await),
            };
            auth::authenticate(&mut handle, settings).await?;
            Ok(SshLink {
                handle,
                host: settings.hostname.clone(),
                alias: settings.alias.clone(),
                host_key: accepted.get(),
                carrier,
            })
        })
    }

    /// Opens a TCP channel from this host to `host:port` (what a jump host does); the error is
    /// the server's reason.
    pub(super) async fn forward(&self, host: &str, port: u16) -> Result<SubsystemStream, String> {
        let channel = self
            .handle
            .channel_open_direct_tcpip(host, u32::from(port), "127.0.0.1", 0)
            .await;
        match channel {
            Ok(channel) => Ok(channel.into_stream()),
            Err(russh::Error::ChannelOpenFailure(reason)) => Err(format!("{reason:?}")),
            Err(err) => Err(err.to_string()),
        }
    }

    /// Opens a session channel and requests the subsystem `name`, waiting for the server's reply.
    pub async fn open_subsystem(&self, name: &str) -> Result<SubsystemStream, SshError> {
        let channel = self.handle.channel_open_session().await;
        let mut channel = channel.map_err(|source| self.protocol(source))?;
        channel
            .request_subsystem(true, name)
            .await
            .map_err(|source| self.protocol(source))?;
        loop {
            match channel.wait().await {
                Some(ChannelMsg::Success) => return Ok(channel.into_stream()),
                Some(ChannelMsg::Failure | ChannelMsg::Eof | ChannelMsg::Close) | None => break,
                Some(_) => continue,
            }
        }
        if self.handle.is_closed() {
            return Err(self.protocol(russh::Error::Disconnect));
        }
        Err(SshError::SubsystemRefused { name: name.to_string() })
    }

    pub(super) fn handle(&self) -> &Handle<Verifier> {
        &self.handle
    }

    /// The host name connected to.
    pub(super) fn host(&self) -> &str {
        &self.host
    }

    /// The host as the user named it.
    pub(super) fn alias(&self) -> &str {
        &self.alias
    }

    /// The host key (or certificate) this connection's handshake accepted.
    pub fn host_key(&self) -> Option<&VerifiedKey> {
        self.host_key.as_ref()
    }

    /// The host keys the jump hosts' handshakes accepted, the hop nearest this host first
    /// (`None` for a hop that recorded none).
    pub fn jump_host_keys(&self) -> Vec<Option<VerifiedKey>> {
        let mut keys = Vec::new();
        let mut carrier = &self.carrier;
        while let Carrier::Jump { link, .. } = carrier {
            keys.push(link.host_key.clone());
            carrier = &link.carrier;
        }
        keys
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Disconnects politely.
    pub async fn close(self) -> Result<(), SshError> {
        // A link that is already gone is as closed as we want it.
        let _ = self.handle.disconnect(Disconnect::ByApplication, "", "en").await;
        Ok(())
    }

    pub(super) fn protocol(&self, source: russh::Error) -> SshError {
        SshError::Protocol {
            host: self.host.clone(),
            cause: source,
        }
    }
}

/// Opens the byte stream to `settings`' sshd; `depth` counts the jump hosts already in the chain.
/// Each step is bounded by `limit` (ConnectTimeout); jump hosts apply their own.
async fn open(
    settings: &HostSettings,
    depth: usize,
    limit: Duration,
) -> Result<(Box<dyn Transport>, Carrier), SshError> {
    match &settings.route {
        Route::Direct => Ok((route::tcp(settings, limit).await?, Carrier::Direct)),
        Route::Command(command) => {
            let (transport, child) = route::spawn_proxy_command(command)?;
            let command = command.clone();
            Ok((transport, Carrier::Command { command, child }))
        }
        Route::Jump(hops) => through_jump_hosts(settings, hops, depth, limit).await,
    }
}

/// Connects to the last hop (through the ones before it), then asks it for a TCP channel to the
/// host.
async fn through_jump_hosts(
    settings: &HostSettings,
    hops: &[Target],
    depth: usize,
    limit: Duration,
) -> Result<(Box<dyn Transport>, Carrier), SshError> {
    let Some((last, before)) = hops.split_last() else {
        return Err(SshError::JumpLoop { max: route::MAX_HOPS });
    };
    if depth + hops.len() > route::MAX_HOPS {
        return Err(SshError::JumpLoop { max: route::MAX_HOPS });
    }
    let hop = last.to_string();
    let within_hop = |source| SshError::JumpHost {
        hop: hop.clone(),
        cause: Box::new(source),
    };
    let hop_settings = route::jump_host_settings(settings, last, before).map_err(within_hop)?;
    tracing::debug!(
        "connecting to {}:{} through jump host {hop}",
        settings.hostname,
        settings.port
    );
    let link = SshLink::connect_at_depth(&hop_settings, depth + 1)
        .await
        .map_err(within_hop)?;
    let forward = link.forward(&settings.hostname, settings.port);
    let channel = tokio::time::timeout(limit, forward).await;
    let channel = channel.map_err(|_| route::timed_out(settings, limit))?;
    let channel = channel.map_err(|reason| SshError::JumpForward {
        hop: hop.clone(),
        host: settings.hostname.clone(),
        port: settings.port,
        reason,
    })?;
    let link = Box::new(link);
    Ok((Box::new(channel), Carrier::Jump { hop, link }))
}

/// The key exchange with host-key verification, over `transport`.
async fn handshake(
    settings: &HostSettings,
    transport: Box<dyn Transport>,
) -> Result<(Handle<Verifier>, Accepted), SshError> {
    let (verifier, rejection, accepted) = Verifier::new(settings);
    let config = Arc::new(client_config(settings));
    // russh reads each packet's length, then its body, then the next length: one system call
    // each, three per keystroke's echo. Buffered, one read takes what has arrived.
    let transport = tokio::io::BufReader::with_capacity(TRANSPORT_READ_BUFFER, transport);
    client::connect_stream(config, transport, verifier)
        .await
        .map(|handle| (handle, accepted))
        .map_err(|source| {
            rejection
                .take()
                .unwrap_or_else(|| negotiation_failure(settings, source))
        })
}

/// A handshake failure, said in terms of the setting that decides it when the two sides share
/// no host-key algorithm.
fn negotiation_failure(settings: &HostSettings, source: russh::Error) -> SshError {
    let host = settings.hostname.clone();
    match source {
        russh::Error::NoCommonAlgo {
            kind: russh::AlgorithmKind::Key,
            ours,
            theirs,
        } => {
            if theirs.iter().any(|name| name == "ssh-rsa") && !ours.iter().any(|name| name == "ssh-rsa") {
                return SshError::OnlySha1RsaHostKey { host };
            }
            SshError::NoCommonHostKeyAlgorithm {
                host,
                offered: theirs.join(","),
                asked: ours.join(","),
            }
        }
        cause => SshError::Protocol { host, cause },
    }
}

fn client_config(settings: &HostSettings) -> client::Config {
    client::Config {
        keepalive_interval: Some(settings.server_alive_interval.unwrap_or(KEEPALIVE_INTERVAL)),
        keepalive_max: settings.server_alive_count_max as usize,
        window_size: WINDOW_SIZE,
        maximum_packet_size: MAXIMUM_PACKET_SIZE,
        nodelay: true,
        preferred: Preferred {
            key: Cow::Owned(host_key::host_key_preference(settings)),
            host_key_certificates: Cow::Owned(host_key::host_certificate_preference(settings)),
            cipher: Cow::Owned(
                configured_ciphers(&settings.ciphers).unwrap_or_else(|| cipher_preference(aes_in_hardware())),
            ),
            kex: Cow::Owned(kex_preference()),
            ..Preferred::DEFAULT
        },
        ..client::Config::default()
    }
}

/// russh's key exchanges, with the NIST-curve ECDH ones after the curve25519 family, where
/// OpenSSH puts them: an sshd restricted to them (FIPS mode on RHEL, a hardened OpenSSH 7.4) is
/// still reached; SHA-1 exchanges stay out.
fn kex_preference() -> Vec<russh::kex::Name> {
    use russh::kex;
    let mut names = Preferred::DEFAULT.kex.to_vec();
    let after = names
        .iter()
        .position(|name| *name == kex::CURVE25519_PRE_RFC_8731)
        .map_or(0, |at| at + 1);
    let nist = [
        kex::ECDH_SHA2_NISTP256,
        kex::ECDH_SHA2_NISTP384,
        kex::ECDH_SHA2_NISTP521,
    ];
    names.splice(after..after, nist);
    names
}

/// russh's ciphers, with AES-256-GCM first where the CPU has AES instructions: there it moves
/// bulk output about twice as fast as ChaCha20-Poly1305, which stays first elsewhere.
fn cipher_preference(aes_in_hardware: bool) -> Vec<russh::cipher::Name> {
    let mut ciphers = Preferred::DEFAULT.cipher.to_vec();
    if aes_in_hardware {
        ciphers.sort_by_key(|name| *name != russh::cipher::AES_256_GCM);
    }
    ciphers
}

/// The ciphers of a `Ciphers` list that russh speaks, in its order; `None` for an empty list.
/// (The list is checked when the settings are resolved, so none of it is unknown here.)
fn configured_ciphers(named: &[String]) -> Option<Vec<russh::cipher::Name>> {
    if named.is_empty() {
        return None;
    }
    let known = Preferred::DEFAULT.cipher;
    let chosen: Vec<russh::cipher::Name> = named
        .iter()
        .filter_map(|name| known.iter().find(|k| k.as_ref() == name.as_str()).copied())
        .collect();
    (!chosen.is_empty()).then_some(chosen)
}

/// The ciphers remora can use, by their SSH names.
pub fn supported_ciphers() -> Vec<String> {
    Preferred::DEFAULT
        .cipher
        .iter()
        .map(|c| c.as_ref().to_string())
        .collect()
}

/// The cipher remora asks for first on this machine, by its SSH name (what `ssh -c` takes): a
/// comparison with OpenSSH can ask for the same.
pub fn preferred_cipher() -> String {
    let first = cipher_preference(aes_in_hardware()).first().copied();
    first.unwrap_or(russh::cipher::CHACHA20_POLY1305).as_ref().to_string()
}

fn aes_in_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq");
    #[cfg(target_arch = "aarch64")]
    return std::arch::is_aarch64_feature_detected!("aes");
    #[allow(unreachable_code)]
    false
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::ssh::{
        test_server::{write_key, TestServer},
        StrictHostKeyChecking,
    };

    fn settings(dir: &Path, port: u16) -> HostSettings {
        HostSettings {
            identity_files: vec![dir.join("id_ed25519")],
            connect_timeout: Some(Duration::from_secs(5)),
            ..HostSettings::for_tests(port, dir.join("known_hosts"))
        }
    }

    async fn timed<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(20), future)
            .await
            .expect("test timed out")
    }

    #[test]
    fn aes_gcm_goes_first_only_with_aes_hardware() {
        assert_eq!(cipher_preference(true)[0], russh::cipher::AES_256_GCM);
        assert_eq!(cipher_preference(false), Preferred::DEFAULT.cipher.to_vec());
        assert_eq!(cipher_preference(true).len(), cipher_preference(false).len());
        assert!(preferred_cipher().ends_with("@openssh.com"), "{}", preferred_cipher());
    }

    #[tokio::test]
    async fn connects_and_carries_bytes_through_the_subsystem() {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(write_key(&dir.path().join("id_ed25519"))).await;
        let settings = settings(dir.path(), server.port);
        let recorded = format!(
            "[127.0.0.1]:{} {}\n",
            server.port,
            server.host_key.to_openssh().unwrap()
        );
        std::fs::write(&settings.known_hosts_files[0], recorded).unwrap();
        let link = timed(SshLink::connect(&settings)).await.unwrap();
        let mut stream = timed(link.open_subsystem("remora")).await.unwrap();
        stream.write_all(b"ping").await.unwrap();
        let mut echoed = [0; 4];
        timed(stream.read_exact(&mut echoed)).await.unwrap();
        assert_eq!(&echoed, b"ping");
        let refused = timed(link.open_subsystem("sftp")).await.err().unwrap();
        assert!(matches!(refused, SshError::SubsystemRefused { .. }), "{refused}");
        link.close().await.unwrap();
    }

    #[tokio::test]
    async fn unknown_host_keys_are_refused_with_the_precise_reason() {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(write_key(&dir.path().join("id_ed25519"))).await;
        let mut settings = settings(dir.path(), server.port);
        let err = timed(SshLink::connect(&settings)).await.err().unwrap();
        assert!(matches!(err, SshError::HostKeyUnknown { .. }), "{err}");
        settings.strict_host_key_checking = StrictHostKeyChecking::AcceptNew;
        let link = timed(SshLink::connect(&settings)).await.unwrap();
        link.close().await.unwrap();
        settings.strict_host_key_checking = StrictHostKeyChecking::Yes;
        timed(SshLink::connect(&settings)).await.unwrap();
    }

    #[tokio::test]
    async fn rejected_keys_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        write_key(&dir.path().join("id_ed25519"));
        let server = TestServer::start(write_key(&dir.path().join("other"))).await;
        let mut settings = settings(dir.path(), server.port);
        settings.strict_host_key_checking = StrictHostKeyChecking::No;
        settings.identity_files.push(dir.path().join("missing"));
        let err = timed(SshLink::connect(&settings)).await.err().unwrap();
        let SshError::AuthFailed { tried, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(tried.len(), 2, "{err}");
        assert!(tried[0].ends_with("id_ed25519"), "{err}");
        assert!(tried[1].ends_with("missing (no such file)"), "{err}");
    }

    #[tokio::test]
    async fn unreachable_and_silent_hosts_fail_with_host_and_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let dir = tempfile::tempdir().unwrap();
        let err = timed(SshLink::connect(&settings(dir.path(), port)))
            .await
            .err()
            .unwrap();
        assert!(matches!(err, SshError::Connect { .. }), "{err}");
        assert!(err.to_string().contains(&format!("127.0.0.1 port {port}")), "{err}");

        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut settings = settings(dir.path(), silent.local_addr().unwrap().port());
        settings.connect_timeout = Some(Duration::from_millis(200));
        let err = timed(SshLink::connect(&settings)).await.err().unwrap();
        assert!(matches!(err, SshError::ConnectTimeout { .. }), "{err}");
    }
}
