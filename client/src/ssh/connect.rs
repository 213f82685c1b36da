//! Making the connection: TCP with a timeout, the SSH handshake with host-key verification,
//! public-key authentication, and opening the `remora` subsystem.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use russh::{
    client::{self, AuthResult, Handle},
    keys::{decode_secret_key, ssh_key::PublicKey, HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate},
    ChannelMsg, Disconnect,
};
use tokio::net::TcpStream;

use super::{
    known_hosts::{self, HostKeyStatus},
    HostSettings, SshError, StrictHostKeyChecking,
};

/// Default time to establish the TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default keepalive: dead links are noticed within interval × count.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(3);

/// The byte stream of an open subsystem channel.
pub type SubsystemStream = russh::ChannelStream<client::Msg>;

/// An authenticated SSH connection.
pub struct SshLink {
    handle: Handle<Verifier>,
    host: String,
}

impl SshLink {
    /// Connects, verifies the host key and authenticates.
    ///
    /// TCP and the key exchange are bounded by ConnectTimeout (30 s by default), so a link that
    /// swallows packets fails instead of hanging; authentication is not, as it may wait for a
    /// passphrase typed at the terminal.
    pub async fn connect(settings: &HostSettings) -> Result<SshLink, SshError> {
        let limit = settings.connect_timeout.unwrap_or(CONNECT_TIMEOUT);
        let handle = tokio::time::timeout(limit, Self::handshake(settings))
            .await
            .map_err(|_| SshError::ConnectTimeout {
                host: settings.hostname.clone(),
                port: settings.port,
                secs: limit.as_secs(),
            })??;
        let mut link = SshLink {
            handle,
            host: settings.hostname.clone(),
        };
        link.authenticate(settings).await?;
        Ok(link)
    }

    /// TCP connect and key exchange with host-key verification.
    async fn handshake(settings: &HostSettings) -> Result<Handle<Verifier>, SshError> {
        let tcp = tcp_connect(settings).await?;
        let rejection = Arc::new(Mutex::new(None));
        let verifier = Verifier {
            settings: settings.clone(),
            rejection: rejection.clone(),
        };
        let handle = client::connect_stream(Arc::new(client_config(settings)), tcp, verifier)
            .await
            .map_err(|source| {
                rejection
                    .lock()
                    .expect("not poisoned")
                    .take()
                    .unwrap_or(protocol(settings, source))
            })?;
        Ok(handle)
    }

    /// Opens a session channel and starts the subsystem `name` on it.
    pub async fn open_subsystem(&self, name: &str) -> Result<SubsystemStream, SshError> {
        let err = |source| SshError::Protocol {
            host: self.host.clone(),
            source,
        };
        let mut channel = self.handle.channel_open_session().await.map_err(err)?;
        channel.request_subsystem(true, name).await.map_err(err)?;
        loop {
            match channel.wait().await {
                Some(ChannelMsg::Success) => return Ok(channel.into_stream()),
                Some(ChannelMsg::Failure) | None => return Err(SshError::SubsystemRefused { name: name.to_string() }),
                Some(_) => continue,
            }
        }
    }

    /// Disconnects politely.
    pub async fn close(self) -> Result<(), SshError> {
        let _ = self.handle.disconnect(Disconnect::ByApplication, "", "en").await;
        Ok(())
    }

    async fn authenticate(&mut self, settings: &HostSettings) -> Result<(), SshError> {
        let mut tried = Vec::new();
        for path in &settings.identity_files {
            let Some(key) = load_identity(path, &mut tried) else {
                continue;
            };
            let hash = self.rsa_hash(&key).await;
            let result = self
                .handle
                .authenticate_publickey(&settings.user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
                .await
                .map_err(|source| protocol(settings, source))?;
            tried.push(format!("publickey {}", path.display()));
            if let AuthResult::Success = result {
                return Ok(());
            }
        }
        if settings.identity_files.is_empty() {
            tried.push("no identity files (set IdentityFile or pass -i)".into());
        }
        Err(SshError::AuthFailed {
            user: settings.user.clone(),
            host: settings.alias.clone(),
            tried,
        })
    }

    async fn rsa_hash(&self, key: &PrivateKey) -> Option<HashAlg> {
        if !key.algorithm().is_rsa() {
            return None;
        }
        self.handle.best_supported_rsa_hash().await.ok().flatten().flatten()
    }
}

async fn tcp_connect(settings: &HostSettings) -> Result<TcpStream, SshError> {
    let limit = settings.connect_timeout.unwrap_or(CONNECT_TIMEOUT);
    let address = (settings.hostname.as_str(), settings.port);
    let stream = tokio::time::timeout(limit, TcpStream::connect(address))
        .await
        .map_err(|_| SshError::ConnectTimeout {
            host: settings.hostname.clone(),
            port: settings.port,
            secs: limit.as_secs(),
        })?
        .map_err(|source| SshError::Connect {
            host: settings.hostname.clone(),
            port: settings.port,
            source,
        })?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

fn client_config(settings: &HostSettings) -> client::Config {
    client::Config {
        keepalive_interval: Some(settings.server_alive_interval.unwrap_or(KEEPALIVE_INTERVAL)),
        keepalive_max: settings.server_alive_count_max as usize,
        window_size: 8 * 1024 * 1024,
        maximum_packet_size: 32 * 1024,
        nodelay: true,
        ..client::Config::default()
    }
}

fn protocol(settings: &HostSettings, source: russh::Error) -> SshError {
    SshError::Protocol {
        host: settings.hostname.clone(),
        source,
    }
}

/// Reads an identity file, asking for its passphrase on the terminal when it is encrypted.
fn load_identity(path: &Path, tried: &mut Vec<String>) -> Option<PrivateKey> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) => {
            tracing::warn!("identity file {}: {err}; skipping it", path.display());
            tried.push(format!("{} (unreadable: {err})", path.display()));
            return None;
        }
    };
    match decode_secret_key(&text, None) {
        Ok(key) => Some(key),
        Err(russh::keys::Error::KeyIsEncrypted) => decrypt_identity(path, &text, tried),
        Err(err) => {
            tracing::warn!("identity file {} is not a usable private key: {err}", path.display());
            tried.push(format!("{} (not a private key)", path.display()));
            None
        }
    }
}

fn decrypt_identity(path: &Path, text: &str, tried: &mut Vec<String>) -> Option<PrivateKey> {
    let prompt = format!("Enter passphrase for key '{}': ", path.display());
    let passphrase = match rpassword::prompt_password(prompt) {
        Ok(passphrase) => passphrase,
        Err(_) => {
            tried.push(format!(
                "{} (encrypted, and no terminal to ask for its passphrase)",
                path.display()
            ));
            return None;
        }
    };
    match decode_secret_key(text, Some(&passphrase)) {
        Ok(key) => Some(key),
        Err(_) => {
            tried.push(format!("{} (wrong passphrase)", path.display()));
            None
        }
    }
}

/// russh's callback object: verifies the host key and keeps the precise reason for a refusal.
struct Verifier {
    settings: HostSettings,
    rejection: Arc<Mutex<Option<SshError>>>,
}

impl client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let verdict = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => self.verify(key),
            PublicKeyOrCertificate::Certificate(_) => Err(SshError::HostCertificate {
                host: self.settings.alias.clone(),
            }),
        };
        match verdict {
            Ok(()) => Ok(true),
            Err(refusal) => {
                *self.rejection.lock().expect("not poisoned") = Some(refusal);
                Ok(false)
            }
        }
    }
}

impl Verifier {
    fn verify(&self, key: &PublicKey) -> Result<(), SshError> {
        let settings = &self.settings;
        let (host, port) = (settings.hostname.as_str(), settings.port);
        let shown = known_hosts::host_pattern(host, port);
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let algorithm = key.algorithm().to_string();
        match known_hosts::check(&settings.known_hosts_files, host, port, key) {
            HostKeyStatus::Known => Ok(()),
            HostKeyStatus::Changed { file, line } => Err(SshError::HostKeyChanged {
                host: shown,
                algorithm,
                fingerprint,
                file,
                line,
            }),
            HostKeyStatus::Revoked { file, line } => Err(SshError::HostKeyRevoked {
                host: shown,
                file,
                line,
            }),
            HostKeyStatus::Unknown { other_types } => self.unknown(key, shown, algorithm, fingerprint, other_types),
        }
    }

    fn unknown(
        &self,
        key: &PublicKey,
        shown: String,
        algorithm: String,
        fingerprint: String,
        other_types: bool,
    ) -> Result<(), SshError> {
        let settings = &self.settings;
        let first_file = settings.known_hosts_files.first();
        match settings.strict_host_key_checking {
            StrictHostKeyChecking::AcceptNew if !other_types => {
                let file = first_file.ok_or_else(|| SshError::KnownHostsWrite {
                    host: shown.clone(),
                    path: "UserKnownHostsFile".into(),
                    source: std::io::Error::other("no known_hosts file configured"),
                })?;
                known_hosts::learn(file, &settings.hostname, settings.port, key).map_err(|source| {
                    SshError::KnownHostsWrite {
                        host: shown.clone(),
                        path: file.clone(),
                        source,
                    }
                })?;
                eprintln!("Warning: Permanently added '{shown}' ({algorithm}) to the list of known hosts.");
                Ok(())
            }
            StrictHostKeyChecking::No => {
                tracing::warn!("accepting unknown host key {fingerprint} for {shown} (StrictHostKeyChecking=no)");
                Ok(())
            }
            _ => Err(SshError::HostKeyUnknown {
                host: shown,
                algorithm,
                fingerprint,
                known_hosts: first_file.map_or_else(|| "~/.ssh/known_hosts".into(), |f| f.display().to_string()),
                other_types: if other_types {
                    " though keys of other types are recorded for it".into()
                } else {
                    String::new()
                },
            }),
        }
    }
}
