//! `remora-agent serve`: an embedded SSH server for hosts without sshd (containers, the demo).
//!
//! It serves exactly one thing: the `remora` subsystem, relayed to the user's daemon in protocol
//! mode. Authentication is public-key only, against an OpenSSH authorized_keys file re-read on
//! every attempt. The server runs as one Unix user and serves that user's daemon, so the SSH user
//! name is logged but not checked: whoever holds an authorized key acts as this user, exactly as
//! with that user's `~/.ssh/authorized_keys` under sshd.

mod authorized_keys;
mod handler;
mod host_key;

use std::{future::Future, io::Write, net::SocketAddr, path::PathBuf, pin::Pin, sync::Arc, time::Duration};

use russh::{
    keys::HashAlg,
    server::{Config, Server},
    MethodKind, MethodSet,
};
use tokio::net::{TcpListener, UnixStream};
use tokio_util::sync::CancellationToken;

pub(crate) use authorized_keys::AuthorizedKeys;
pub(crate) use host_key::load_or_create_host_key;

use crate::{
    error::{AgentError, Result},
    paths::StatePaths,
};

/// Where and how to serve.
pub(crate) struct ServeOptions {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Who may log in (OpenSSH authorized_keys format).
    pub authorized_keys: PathBuf,
    /// Host key; default `<config dir>/ssh_host_ed25519_key`, generated on first start.
    pub host_key: Option<PathBuf>,
}

/// How the server reaches the daemon for each subsystem channel: a fresh unix stream already in
/// protocol mode.
pub(crate) type DaemonConnector =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<UnixStream>> + Send>> + Send + Sync>;

/// Binds, prints `listening on ADDR` and `host key SHA256:…` on stdout, then serves until
/// `shutdown` is cancelled.
pub(crate) async fn run(
    options: ServeOptions,
    paths: &StatePaths,
    connect: DaemonConnector,
    shutdown: CancellationToken,
) -> Result<()> {
    let key_path = options
        .host_key
        .clone()
        .unwrap_or_else(|| paths.config_dir.join("ssh_host_ed25519_key"));
    let host_key = load_or_create_host_key(&key_path)?;
    let fingerprint = host_key.public_key().fingerprint(HashAlg::Sha256);
    let listener = TcpListener::bind(options.listen)
        .await
        .map_err(AgentError::io("cannot listen on", options.listen.to_string()))?;
    let addr = listener
        .local_addr()
        .map_err(AgentError::io("cannot read the address of", options.listen.to_string()))?;
    announce(addr, &fingerprint.to_string());
    tracing::info!(%addr, %fingerprint, "embedded SSH server listening");
    serve(
        listener,
        server_config(host_key),
        options.authorized_keys,
        connect,
        shutdown,
    )
    .await
}

/// Serves connections on `listener` until `shutdown` is cancelled.
pub(crate) async fn serve(
    listener: TcpListener,
    config: Config,
    authorized_keys: PathBuf,
    connect: DaemonConnector,
    shutdown: CancellationToken,
) -> Result<()> {
    let mut server = RemoraServer {
        authorized_keys,
        connect,
    };
    let running = server.run_on_socket(Arc::new(config), &listener);
    let handle = running.handle();
    tokio::select! {
        result = running => result.map_err(AgentError::io("ssh server failed on", "listener"))?,
        _ = shutdown.cancelled() => handle.shutdown("remora-agent serve is stopping".into()),
    }
    Ok(())
}

/// The server's SSH settings: public-key auth only, keepalives, a large window.
pub(crate) fn server_config(host_key: russh::keys::PrivateKey) -> Config {
    Config {
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        auth_rejection_time: Duration::from_millis(200),
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![host_key],
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 3,
        window_size: 8 * 1024 * 1024,
        nodelay: true,
        ..Config::default()
    }
}

fn announce(addr: SocketAddr, fingerprint: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "listening on {addr}");
    let _ = writeln!(stdout, "host key {fingerprint}");
    let _ = stdout.flush();
}

/// Hands each connection its own handler.
struct RemoraServer {
    authorized_keys: PathBuf,
    connect: DaemonConnector,
}

impl Server for RemoraServer {
    type Handler = handler::ClientHandler;

    fn new_client(&mut self, peer: Option<SocketAddr>) -> Self::Handler {
        handler::ClientHandler::new(peer, self.authorized_keys.clone(), self.connect.clone())
    }
}
