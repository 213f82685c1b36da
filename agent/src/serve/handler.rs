//! One SSH connection to the embedded server: public-key auth, session channels, and the
//! `remora` subsystem relayed to the daemon. Everything else is refused.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf};

use remora_wire::SUBSYSTEM_NAME;
use russh::{
    keys::ssh_key::PublicKey,
    server::{Auth, ChannelOpenHandle, Handler, Msg, PublicKeyOffer, Session, VerifiedPublicKey},
    Channel, ChannelId,
};
use tracing::{debug, info, warn};

use super::{AuthorizedKeys, DaemonConnector};

/// Per-connection state.
pub(super) struct ClientHandler {
    peer: Option<SocketAddr>,
    authorized_keys: PathBuf,
    connect: DaemonConnector,
    /// Session channels opened but not yet given a subsystem.
    channels: HashMap<ChannelId, Channel<Msg>>,
}

impl ClientHandler {
    pub(super) fn new(peer: Option<SocketAddr>, authorized_keys: PathBuf, connect: DaemonConnector) -> Self {
        Self {
            peer,
            authorized_keys,
            connect,
            channels: HashMap::new(),
        }
    }

    fn is_authorized(&self, user: &str, key: &PublicKey) -> bool {
        let line = match AuthorizedKeys::read(&self.authorized_keys) {
            Ok(keys) => keys.allowing_line(key),
            Err(err) => {
                warn!("{err}");
                None
            }
        };
        let allowed = line.is_some();
        info!(peer = ?self.peer, user, allowed, line, "public key offered");
        allowed
    }

    fn verdict(allowed: bool) -> Auth {
        if allowed {
            Auth::Accept
        } else {
            Auth::reject()
        }
    }
}

impl Handler for ClientHandler {
    type Error = russh::Error;

    async fn auth_publickey_offered(&mut self, user: &str, offer: PublicKeyOffer<'_>) -> Result<Auth, Self::Error> {
        Ok(Self::verdict(self.is_authorized(user, offer.public_key)))
    }

    async fn auth_publickey(&mut self, user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        Ok(Self::verdict(self.is_authorized(user, key.public_key)))
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn subsystem_request(&mut self, id: ChannelId, name: &str, session: &mut Session) -> Result<(), Self::Error> {
        let channel = match (name == SUBSYSTEM_NAME, self.channels.remove(&id)) {
            (true, Some(channel)) => channel,
            _ => {
                debug!(name, "refusing subsystem");
                return session.channel_failure(id);
            }
        };
        session.channel_success(id)?;
        tokio::spawn(relay(channel, self.connect.clone(), session.handle()));
        Ok(())
    }

    async fn exec_request(&mut self, id: ChannelId, _data: &[u8], session: &mut Session) -> Result<(), Self::Error> {
        debug!("refusing exec: only the remora subsystem is served");
        session.channel_failure(id)
    }

    async fn shell_request(&mut self, id: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        debug!("refusing shell: only the remora subsystem is served");
        session.channel_failure(id)
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        id: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(id)
    }

    async fn env_request(
        &mut self,
        id: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(id)
    }
}

/// Copies bytes both ways between the channel and a fresh daemon connection until both sides
/// have finished, then closes the channel.
async fn relay(channel: Channel<Msg>, connect: DaemonConnector, handle: russh::server::Handle) {
    let id = channel.id();
    let mut stream = channel.into_stream();
    match connect().await {
        Ok(mut daemon) => {
            if let Err(err) = tokio::io::copy_bidirectional(&mut stream, &mut daemon).await {
                debug!("relay ended: {err}");
            }
        }
        Err(err) => warn!("cannot reach the remora daemon for a subsystem channel: {err}"),
    }
    drop(stream);
    let _ = handle.eof(id).await;
    let _ = handle.close(id).await;
}
