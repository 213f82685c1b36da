//! A tiny in-process SSH server on a loopback port for the connection tests: one accepted user
//! key, session channels, a `remora` subsystem that echoes, every other subsystem refused.

use std::{path::Path, sync::Arc};

use russh::{
    keys::{
        ssh_key::{LineEnding, PublicKey},
        Algorithm, PrivateKey,
    },
    server::{self, Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey},
    Channel, ChannelId, MethodKind, MethodSet,
};
use tokio::net::TcpListener;

/// A running test server; it stops when the test's runtime ends.
pub struct TestServer {
    pub port: u16,
    pub host_key: PublicKey,
}

impl TestServer {
    /// Serves connections that authenticate with `user_key`.
    pub async fn start(user_key: PublicKey) -> TestServer {
        let host_key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
        let public = host_key.public_key().clone();
        let config = Arc::new(server::Config {
            methods: MethodSet::from(&[MethodKind::PublicKey][..]),
            auth_rejection_time: std::time::Duration::ZERO,
            keys: vec![host_key],
            ..server::Config::default()
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let handler = Echo {
                    user_key: user_key.clone(),
                };
                let config = config.clone();
                tokio::spawn(async move {
                    if let Ok(session) = server::run_stream(config, stream, handler).await {
                        let _ = session.await;
                    }
                });
            }
        });
        TestServer { port, host_key: public }
    }
}

/// Writes a fresh Ed25519 key to `path` (OpenSSH format) and returns its public half.
pub fn write_key(path: &Path) -> PublicKey {
    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
    std::fs::write(path, key.to_openssh(LineEnding::LF).unwrap()).unwrap();
    key.public_key().clone()
}

struct Echo {
    user_key: PublicKey,
}

impl Echo {
    fn verdict(&self, key: &PublicKey) -> Auth {
        if key.key_data() == self.user_key.key_data() {
            Auth::Accept
        } else {
            Auth::reject()
        }
    }
}

impl server::Handler for Echo {
    type Error = russh::Error;

    async fn auth_publickey_offered(&mut self, _user: &str, offer: PublicKeyOffer<'_>) -> Result<Auth, Self::Error> {
        Ok(self.verdict(offer.public_key))
    }

    async fn auth_publickey(&mut self, _user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        Ok(self.verdict(key.public_key))
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        Ok(())
    }

    async fn subsystem_request(&mut self, id: ChannelId, name: &str, session: &mut Session) -> Result<(), Self::Error> {
        match name {
            "remora" => session.channel_success(id),
            _ => session.channel_failure(id),
        }
    }

    async fn data(&mut self, id: ChannelId, data: &[u8], session: &mut Session) -> Result<(), Self::Error> {
        session.data(id, data.to_vec())
    }
}
