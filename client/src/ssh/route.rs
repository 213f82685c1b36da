//! How the bytes of an SSH connection reach the host's sshd: a TCP connection, a forwarded TCP
//! channel of a jump host (ProxyJump, several hops), or the stdin and stdout of a command
//! (ProxyCommand). Each jump host is resolved with its own ssh_config settings and authenticated
//! like any host; a failure names the hop.
//!
//! The jump hosts themselves are SSH connections, so going through them is `connect.rs`'s; this
//! file resolves the chain of hops and opens the other two kinds of byte stream.

use std::{process::Stdio, time::Duration};

use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
    process::{Child, Command},
};

use super::{resolve, HostSettings, Route, SshError, Target};

/// Jump hosts chained through each other at most (a config whose hops jump through each other
/// would otherwise recurse forever).
pub(super) const MAX_HOPS: usize = 16;

/// A byte stream an SSH connection can run over.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

/// The settings of the jump host `last` of a chain, reached through the hops `before` it (or
/// its own route when it is the first).
pub(super) fn jump_host_settings(
    settings: &HostSettings,
    last: &Target,
    before: &[Target],
) -> Result<HostSettings, SshError> {
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

/// Opens a TCP connection to `settings`' sshd, bounded by `limit` (ConnectTimeout).
pub async fn tcp(settings: &HostSettings, limit: Duration) -> Result<Box<dyn Transport>, SshError> {
    let tcp = tokio::time::timeout(limit, tcp_connect(settings)).await;
    let tcp = tcp.map_err(|_| timed_out(settings, limit))??;
    Ok(Box::new(tcp))
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

/// Runs ProxyCommand with the user's shell, like ssh: `$SHELL -c "exec COMMAND"`. Its stderr
/// goes to ours, so its own complaints are seen. The child is killed when dropped.
pub fn spawn_proxy_command(command: &str) -> Result<(Box<dyn Transport>, Child), SshError> {
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
    Ok((Box::new(tokio::io::join(stdout, stdin)), child))
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
