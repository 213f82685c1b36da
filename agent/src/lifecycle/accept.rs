//! One accepted socket connection: peer check, mode tag, then the protocol.

use std::{sync::Arc, time::Duration};

use tokio::net::UnixStream;
use tracing::{debug, info, warn};

use crate::{
    connection,
    daemon::{Daemon, UpgradeRequest},
    error::{AgentError, Result},
    fdpass::{self, MODE_HANDOFF, MODE_PROTOCOL, MODE_UPGRADE},
};

/// Time a connecting process has to send its mode tag.
const TAG_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one socket connection to its end, logging why it ended.
pub(super) async fn handle(daemon: Arc<Daemon>, stream: UnixStream) {
    // Refused before the stream is dropped, so the refusal is in the log by the time the peer
    // sees the hang-up.
    if let Err(err) = check_peer(&stream) {
        warn!("daemon connection ended: {err}");
        return;
    }
    if let Err(err) = serve(daemon, stream).await {
        warn!("daemon connection ended: {err}");
    }
}

async fn serve(daemon: Arc<Daemon>, mut stream: UnixStream) -> Result<()> {
    let io_err = |action| AgentError::io(action, "daemon socket");
    let closed = daemon.connection_token();
    let tag = tokio::select! {
        tag = tokio::time::timeout(TAG_TIMEOUT, fdpass::recv_tag(&stream)) => tag,
        // A daemon stopping or handing over does not wait for the tag; the peer reconnects.
        _ = closed.cancelled() => return Ok(()),
    };
    let tag = tag
        .map_err(|_| io_err("timed out waiting for a mode tag on")(std::io::ErrorKind::TimedOut.into()))?
        .map_err(io_err("cannot read the mode tag from"))?;
    match (tag.mode, tag.fds.len()) {
        (MODE_PROTOCOL, 0) => {
            let (reader, writer) = stream.into_split();
            connection::serve(daemon, reader, writer, "local socket".into()).await;
        }
        (MODE_HANDOFF, 2) => {
            let origin = fdpass::recv_origin(&mut stream)
                .await
                .map_err(io_err("cannot read the origin from"))?;
            let mut fds = tag.fds.into_iter();
            let (read_fd, write_fd) = (fds.next().expect("two fds"), fds.next().expect("two fds"));
            let (reader, writer) =
                fdpass::into_halves(read_fd, write_fd).map_err(io_err("cannot use descriptors from"))?;
            connection::serve(daemon, reader, writer, origin).await;
            debug!("handed-off connection ended; releasing its subsystem process");
        }
        (MODE_UPGRADE, 0) => {
            let binary = fdpass::recv_origin(&mut stream)
                .await
                .map_err(io_err("cannot read the binary to hand over to from"))?;
            info!(binary = %binary, "asked to hand the daemon over");
            let request = UpgradeRequest {
                binary: binary.into(),
                requester: stream,
            };
            let _ = daemon.upgrades.send(request).await;
        }
        (mode, fds) => {
            warn!("refusing daemon connection with mode tag {mode:#04x} and {fds} descriptors")
        }
    }
    Ok(())
}

/// Refuses connections from any uid but ours (the socket's 0700 directory is the first wall).
fn check_peer(stream: &UnixStream) -> Result<()> {
    match remora_unix::foreign_peer(stream)
        .map_err(AgentError::io("cannot read peer credentials of", "daemon socket"))?
    {
        Some((peer, own)) => Err(AgentError::ForeignPeer { peer, own }),
        None => Ok(()),
    }
}
