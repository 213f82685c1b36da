//! How the bytes of an SSH connection reach the host's sshd: a TCP connection, a forwarded TCP
//! channel of a jump host (ProxyJump, several hops), or the stdin and stdout of a command
//! (ProxyCommand). Each jump host is resolved with its own ssh_config settings and authenticated
//! like any host; a failure names the hop.
//!
//! Invariant: what carries a connection (the jump hosts' connections, the proxy command) lives
//! exactly as long as the connection it carries, in its [`Carrier`].

use std::{process::Stdio, time::Duration};

use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
    process::{Child, Command},
};

use super::{connect::SshLink, resolve, HostSettings, Route, SshError, Target};

/// Jump hosts chained through each other at most (a config whose hops jump through each other
/// would otherwise recurse forever).
const MAX_HOPS: usize = 16;

/// How long a proxy command that closed its stdout gets to exit, for its status to be reported.
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// A byte stream an SSH connection can run over.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

/// Whatever must stay alive while the connection runs over it.
pub enum Carrier {
    /// The kernel's TCP connection: nothing to keep.
    Direct,
    /// The connection to the last jump host (which keeps its own carrier).
    Jump { hop: String, link: Box<SshLink> },
    /// The proxy command; killed when the connection is dropped.
    Command { command: String, child: Child },
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

/// The settings of the jump host `last` of a chain, reached through the hops `before` it (or
/// its own route when it is the first).
fn jump_host_settings(settings: &HostSettings, last: &Target, before: &[Target]) -> Result<HostSettings, SshError> {
    let mut hop_settings = resolve(last, &settings.jump_options)?;
    if !before.is_empty() {
        hop_settings.route = Route::Jump(before.to_vec());
    }
    Ok(hop_settings)
}

/// Every jump host a connection with `settings` goes through, the one nearest the host first:
/// the order of [`super::SshLink::jump_host_keys`].
pub fn jump_chain(settings: &HostSettings) -> Result<Vec<HostSettings>, SshError> {
    let mut chain: Vec<HostSettings> = Vec::new();
    let mut route = settings.route.clone();
    while let Route::Jump(hops) = route {
        let (last, before) = hops.split_last().ok_or(SshError::JumpLoop { max: MAX_HOPS })?;
        if chain.len() + hops.len() > MAX_HOPS {
            return Err(SshError::JumpLoop { max: MAX_HOPS });
        }
        let hop = jump_host_settings(settings, last, before)?;
        route = hop.route.clone();
        chain.push(hop);
    }
    Ok(chain)
}

/// Opens the byte stream to `settings`' sshd; `depth` counts the jump hosts already in the chain.
/// Each step is bounded by `limit` (ConnectTimeout); jump hosts apply their own.
pub async fn open(
    settings: &HostSettings,
    depth: usize,
    limit: Duration,
) -> Result<(Box<dyn Transport>, Carrier), SshError> {
    match &settings.route {
        Route::Direct => {
            let tcp = tokio::time::timeout(limit, tcp_connect(settings)).await;
            let tcp = tcp.map_err(|_| timed_out(settings, limit))??;
            Ok((Box::new(tcp), Carrier::Direct))
        }
        Route::Command(command) => spawn_proxy_command(command),
        Route::Jump(hops) => through_jump_hosts(settings, hops, depth, limit).await,
    }
}

async fn tcp_connect(settings: &HostSettings) -> Result<TcpStream, SshError> {
    let address = (settings.hostname.as_str(), settings.port);
    let stream = TcpStream::connect(address).await.map_err(|source| SshError::Connect {
        host: settings.hostname.clone(),
        port: settings.port,
        cause: source,
    })?;
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!("cannot set TCP_NODELAY: {err}");
    }
    Ok(stream)
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
        return Err(SshError::JumpLoop { max: MAX_HOPS });
    };
    if depth + hops.len() > MAX_HOPS {
        return Err(SshError::JumpLoop { max: MAX_HOPS });
    }
    let hop = last.to_string();
    let within_hop = |source| SshError::JumpHost {
        hop: hop.clone(),
        cause: Box::new(source),
    };
    let hop_settings = jump_host_settings(settings, last, before).map_err(within_hop)?;
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
    let channel = channel.map_err(|_| timed_out(settings, limit))?;
    let channel = channel.map_err(|reason| SshError::JumpForward {
        hop: hop.clone(),
        host: settings.hostname.clone(),
        port: settings.port,
        reason,
    })?;
    let link = Box::new(link);
    Ok((Box::new(channel), Carrier::Jump { hop, link }))
}

/// Runs ProxyCommand with the user's shell, like ssh: `$SHELL -c "exec COMMAND"`. Its stderr
/// goes to ours, so its own complaints are seen.
fn spawn_proxy_command(command: &str) -> Result<(Box<dyn Transport>, Carrier), SshError> {
    let shell = std::env::var_os("SHELL")
        .filter(|shell| !shell.is_empty())
        .unwrap_or_else(|| "/bin/sh".into());
    tracing::debug!("running ProxyCommand: {command}");
    let spawned = Command::new(shell)
        .arg("-c")
        .arg(format!("exec {command}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn();
    let mut child = spawned.map_err(|source| SshError::ProxyCommandStart {
        command: command.to_string(),
        cause: source,
    })?;
    let (Some(stdout), Some(stdin)) = (child.stdout.take(), child.stdin.take()) else {
        unreachable!("both pipes were requested");
    };
    let carrier = Carrier::Command {
        command: command.to_string(),
        child,
    };
    Ok((Box::new(tokio::io::join(stdout, stdin)), carrier))
}

pub fn timed_out(settings: &HostSettings, limit: Duration) -> SshError {
    SshError::ConnectTimeout {
        host: settings.hostname.clone(),
        port: settings.port,
        secs: limit.as_secs(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::SshOptions;

    #[test]
    fn the_jump_chain_lists_each_hop_nearest_first_with_the_hops_own_routes() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config");
        let text = "Host target\n  ProxyJump a,b\nHost a\n  HostName a.example\n  ProxyJump outer\n\
            Host b\n  HostName b.example\nHost outer\n  HostName outer.example\n";
        std::fs::write(&config, text).unwrap();
        let options = SshOptions {
            config_file: Some(config),
            ..SshOptions::default()
        };
        let chain = |target: &str| {
            let settings = resolve(&target.parse().unwrap(), &options).unwrap();
            let chain = jump_chain(&settings).unwrap();
            chain.into_iter().map(|hop| hop.hostname).collect::<Vec<_>>()
        };
        // b is reached through a, and a (first) through its own ProxyJump.
        assert_eq!(chain("target"), ["b.example", "a.example", "outer.example"]);
        assert!(chain("outer").is_empty());
    }
}
