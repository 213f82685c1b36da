//! What sshd runs per SSH channel (`Subsystem remora /path/remora-agent subsystem`).
//!
//! It reaches the user's daemon (starting it if needed), hands over its stdin and stdout, then
//! waits for the daemon to finish with them. It copies no protocol bytes itself.

use std::os::fd::AsRawFd;

use remora_wire::{encode, AgentBody, AgentFrame, ErrorCode, ErrorReply};
use tokio::io::AsyncReadExt;

use crate::{
    error::{AgentError, Result},
    fdpass, handover, launcher,
    paths::StatePaths,
};

/// Runs one subsystem process to its end.
pub(crate) async fn run(paths: StatePaths) -> Result<()> {
    handover::upgrade_if_replaced(&paths).await;
    let mut stream = match launcher::connect_or_start(&paths).await {
        Ok(stream) => stream,
        Err(err) => {
            report_to_client(&err);
            return Err(err);
        }
    };
    let stdin = std::io::stdin().as_raw_fd();
    let stdout = std::io::stdout().as_raw_fd();
    fdpass::send_handoff(&mut stream, stdin, stdout, &origin())
        .await
        .map_err(AgentError::io("cannot hand the connection to", paths.socket()))?;
    release_stdio()?;
    let mut byte = [0u8; 1];
    let _ = stream.read(&mut byte).await;
    Ok(())
}

/// Where the SSH client connects from, as sshd tells its children.
fn origin() -> String {
    match std::env::var("SSH_CONNECTION") {
        Ok(conn) => {
            let mut parts = conn.split_whitespace();
            match (parts.next(), parts.next()) {
                (Some(addr), Some(port)) => format!("ssh from {addr}:{port}"),
                _ => "ssh".into(),
            }
        }
        Err(_) => "ssh".into(),
    }
}

/// Points our stdin/stdout at /dev/null so only the daemon holds sshd's ends: when the daemon
/// closes them, sshd sees the channel end.
fn release_stdio() -> Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(AgentError::io("cannot open", "/dev/null"))?;
    for fd in [0, 1] {
        // SAFETY: dup2 onto our own standard descriptors; nothing else uses them after handoff.
        if unsafe { nix::libc::dup2(null.as_raw_fd(), fd) } < 0 {
            return Err(AgentError::io("cannot redirect stdio to", "/dev/null")(
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

/// Tells the client, in its own protocol, why there is no agent to talk to.
fn report_to_client(err: &AgentError) {
    use std::io::Write;
    let frame = AgentFrame {
        id: 0,
        body: AgentBody::Error(ErrorReply {
            code: ErrorCode::Internal,
            message: format!("remora-agent: {err}"),
        }),
    };
    let mut buf = Vec::new();
    if encode(&frame, &mut buf).is_ok() {
        let mut stdout = std::io::stdout();
        let _ = stdout.write_all(&buf).and_then(|()| stdout.flush());
    }
}
