//! Warm connections: a small per-user process (the *holder*) keeps each host's SSH connection
//! open after a call, and later calls — from any `remora` process — reach the host's agent
//! through it, over a unix socket, without a new SSH handshake (ssh's ControlMaster with
//! ControlPersist, without its failure modes).
//!
//! Invariants:
//! - An optimisation, never a dependency: a holder that is absent, stale, of another version,
//!   or that cannot reach the host, makes the call connect on its own, quietly.
//! - Prompts happen in the foreground: the holder never asks anything (batch mode); the first
//!   call connects directly — host-key questions, passphrases, `accept-new` notices included —
//!   and only then asks the holder to warm up.
//! - Private: the socket sits in a 0700 directory of the user's, is 0600, and the holder serves
//!   only its own uid (peer credentials); the caller checks the holder's uid too.
//! - Detached: the holder's stdio is /dev/null and it runs in its own session, so no caller ever
//!   waits on it for end-of-file.
//! - No channel ceiling: when sshd refuses another channel (MaxSessions) the holder opens another
//!   connection to the host.
//! - As safe as a fresh connection: a held connection is keyed by the caller's fully resolved
//!   [`Destination`], and each call checks the host key the holder reports against its own
//!   known_hosts before using the channel; a key it would not accept (changed, revoked, unknown)
//!   makes it forget that connection and connect directly, with a fresh connection's errors and
//!   questions.
//! - Nothing in argv: `remora __hold` takes no arguments; the first destination to warm comes
//!   as a frame on its stdin, every later one over the socket.

mod destination;
mod protocol;
mod serve;
mod spare;

use std::{
    io::{Read, Write},
    path::{Path, PathBuf},
    time::Duration,
};

use tokio::{io::AsyncWriteExt, net::UnixStream};

pub use destination::Destination;
pub use protocol::Held;
pub use serve::serve;

use self::protocol::{Envelope, Reply, Request};
use crate::{error::Result, ssh::VerifiedKey, ClientError};

/// This library's version: holders of other versions are not used.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// How long a call waits for the holder to open a channel (it may have to connect first).
const OPEN_TIMEOUT: Duration = Duration::from_secs(40);
/// How long a quick request (list, stop, warm) may take.
const QUICK_TIMEOUT: Duration = Duration::from_secs(5);

/// Where this user's holder lives and how to start it.
#[derive(Debug, Clone)]
pub struct Holder {
    dir: PathBuf,
    /// The program that runs the holder as `PROGRAM __hold …` (the `remora` binary).
    program: PathBuf,
}

impl Holder {
    /// The holder of this user and version, started from `program` when needed. Its directory is
    /// `$XDG_RUNTIME_DIR/remora-client`, else `~/.cache/remora/holder`.
    pub fn new(program: PathBuf) -> Self {
        let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
            Some(runtime) => PathBuf::from(runtime).join("remora-client"),
            None => crate::ssh::home_dir().join(".cache/remora/holder"),
        };
        Self { dir, program }
    }

    /// The holder's directory (socket, lock).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The same holder in another directory.
    pub fn with_dir(self, dir: PathBuf) -> Self {
        Self { dir, ..self }
    }

    fn socket(&self) -> PathBuf {
        socket_in(&self.dir)
    }

    /// A channel to the agent of `destination` through a held connection, with the host keys
    /// that connection accepted (for the caller to check); `None` when the holder is not there
    /// or cannot get one (the caller then connects itself).
    pub async fn open(&self, destination: &Destination) -> Option<(UnixStream, HeldKeys)> {
        let request = Request::Open {
            destination: destination.clone(),
        };
        match self.ask(request, OPEN_TIMEOUT).await {
            Ok((Reply::Opened { host_key, jump_keys }, stream)) => match HeldKeys::read(&host_key, &jump_keys) {
                Some(keys) => Some((stream, keys)),
                None => {
                    tracing::debug!("the connection holder reported an unreadable host key");
                    None
                }
            },
            Ok((Reply::Refused { reason }, _)) => {
                tracing::debug!("the connection holder did not open a channel: {reason}");
                None
            }
            Ok(_) => None,
            Err(HolderAbsent) => {
                tracing::debug!("no connection holder answered");
                None
            }
        }
    }

    /// Makes the holder connect to `destination` now (starting the holder if it is not
    /// running), so the next call is warm. Best effort and quick; never prompts.
    pub async fn warm(&self, destination: &Destination) {
        let request = Request::Warm {
            destination: destination.clone(),
        };
        if self.ask(request, QUICK_TIMEOUT).await.is_ok() {
            return;
        }
        if let Err(err) = self.start(destination) {
            tracing::debug!("cannot start the connection holder: {err}");
        }
    }

    /// Makes the holder close what it holds for exactly `destination` (best effort).
    pub async fn forget(&self, destination: &Destination) {
        let request = Request::Forget {
            destination: destination.clone(),
        };
        let _ = self.ask(request, QUICK_TIMEOUT).await;
    }

    /// The held connections; empty when no holder runs.
    pub async fn list(&self) -> Result<Vec<Held>> {
        match self.ask(Request::List, QUICK_TIMEOUT).await {
            Ok((Reply::Held(held), _)) => Ok(held),
            Ok(_) => Ok(Vec::new()),
            Err(HolderAbsent) => Ok(Vec::new()),
        }
    }

    /// Closes held connections (one host's, or all); returns how many.
    pub async fn stop(&self, host: Option<&str>) -> Result<u32> {
        let request = Request::Stop {
            host: host.map(str::to_string),
        };
        match self.ask(request, QUICK_TIMEOUT).await {
            Ok((Reply::Stopped { count }, _)) => Ok(count),
            _ => Ok(0),
        }
    }

    async fn ask(&self, request: Request, limit: Duration) -> std::result::Result<(Reply, UnixStream), HolderAbsent> {
        let exchange = async {
            let mut stream = UnixStream::connect(self.socket()).await.map_err(|_| HolderAbsent)?;
            if !same_uid(&stream) {
                return Err(HolderAbsent);
            }
            let envelope = Envelope {
                version: VERSION.to_string(),
                request,
            };
            write_frame(&mut stream, &envelope).await.map_err(|_| HolderAbsent)?;
            let reply = read_frame(&mut stream).await.map_err(|_| HolderAbsent)?;
            Ok((reply, stream))
        };
        tokio::time::timeout(limit, exchange).await.map_err(|_| HolderAbsent)?
    }

    /// Starts the holder detached (own session, stdout on /dev/null, stderr to its log),
    /// warming `destination`, which it reads from its stdin: argv shows nothing but `__hold`.
    ///
    /// The holder is a grandchild: the child forks it and exits at once, and is reaped here, so
    /// the holder belongs to init (or a subreaper) and leaves no zombie in this call when it
    /// exits first (`conn stop` while the call that started it still runs).
    fn start(&self, destination: &Destination) -> std::result::Result<(), HolderError> {
        prepare_dir(&self.dir)?;
        let mut warm = Vec::new();
        let envelope = Envelope {
            version: VERSION.to_string(),
            request: Request::Warm {
                destination: destination.clone(),
            },
        };
        remora_wire::encode(&envelope, &mut warm).map_err(|err| HolderError(err.to_string()))?;
        let mut command = std::process::Command::new(&self.program);
        let log = self.dir.join("holder.log");
        command.arg("__hold").stdin(std::process::Stdio::piped());
        remora_unix::detach(&mut command, &log, remora_unix::Parent::Init)
            .map_err(|err| HolderError(format!("cannot open {}: {err}", log.display())))?;
        let mut child = command
            .spawn()
            .map_err(|err| HolderError(format!("cannot start {}: {err}", self.program.display())))?;
        // Far below a pipe's buffer, so this does not wait for the holder to read; closing the
        // pipe afterwards is the frame's end.
        if warm.len() <= MAX_STDIN_FRAME {
            if let Some(mut stdin) = child.stdin.take() {
                let _ = stdin.write_all(&warm);
            }
        }
        // The intermediate child exited as soon as it forked the holder.
        let _ = child.wait();
        Ok(())
    }
}

/// The host keys a held connection's handshakes accepted.
#[derive(Debug, Clone)]
pub struct HeldKeys {
    /// The host's.
    pub host: VerifiedKey,
    /// Its jump hosts', the one nearest the host first.
    pub jump_hosts: Vec<VerifiedKey>,
}

impl HeldKeys {
    /// Parses what the holder reported; `None` if any key is unreadable.
    fn read(host: &str, jump_hosts: &[String]) -> Option<HeldKeys> {
        Some(HeldKeys {
            host: VerifiedKey::from_openssh(host)?,
            jump_hosts: jump_hosts
                .iter()
                .map(|key| VerifiedKey::from_openssh(key))
                .collect::<Option<_>>()?,
        })
    }
}

/// Why the holder could not do something (kept small: it is returned by synchronous helpers).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HolderError(String);

impl From<HolderError> for ClientError {
    fn from(err: HolderError) -> Self {
        ClientError::Holder(err.0)
    }
}

/// The holder could not be asked: not running, stale, another version, or another uid.
#[derive(Debug)]
struct HolderAbsent;

impl From<HolderAbsent> for ClientError {
    fn from(_: HolderAbsent) -> Self {
        ClientError::Holder("no connection holder answered".into())
    }
}

/// Largest request or reply between a caller and the holder.
const MAX_FRAME: usize = 1 << 20;
/// Largest warm request written to a starting holder's stdin (a pipe holds 64 KiB).
const MAX_STDIN_FRAME: usize = 32 * 1024;

/// The destination a starting holder is to warm, read from `input` (its stdin: one frame, then
/// end of file); `None` for nothing, another version, or anything else.
pub fn read_warm_request(mut input: impl Read) -> Option<Destination> {
    let mut len = [0u8; 4];
    input.read_exact(&mut len).ok()?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_STDIN_FRAME {
        return None;
    }
    let mut body = vec![0u8; len];
    input.read_exact(&mut body).ok()?;
    match remora_wire::decode::<Envelope>(&body).ok()? {
        Envelope {
            version,
            request: Request::Warm { destination },
        } if version == VERSION => Some(destination),
        _ => None,
    }
}

/// Writes one length-prefixed MessagePack frame.
async fn write_frame<T: serde::Serialize>(stream: &mut UnixStream, message: &T) -> std::io::Result<()> {
    let mut bytes = Vec::new();
    remora_wire::encode(message, &mut bytes).map_err(std::io::Error::other)?;
    stream.write_all(&bytes).await
}

/// Reads exactly one frame, and nothing after it: the agent's byte stream may follow.
async fn read_frame<T: serde::de::DeserializeOwned>(stream: &mut UnixStream) -> std::io::Result<T> {
    remora_wire::read_single(stream, MAX_FRAME)
        .await
        .map_err(std::io::Error::other)
}

fn socket_in(dir: &Path) -> PathBuf {
    dir.join(format!("holder-{VERSION}.sock"))
}

fn same_uid(stream: &UnixStream) -> bool {
    remora_unix::foreign_peer(stream).is_ok_and(|foreign| foreign.is_none())
}

/// Creates the holder's directory 0700 and checks it is ours and private.
fn prepare_dir(dir: &Path) -> std::result::Result<(), HolderError> {
    remora_unix::ensure_private_dir(dir).map_err(|err| HolderError(format!("{err}; remove it")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warm_request_is_read_from_stdin_and_anything_else_is_not() {
        let settings = crate::ssh::resolve(&"h".parse().unwrap(), &crate::ssh::SshOptions::default()).unwrap();
        let destination = Destination::of(&settings);
        let frame = |version: &str, request: Request| {
            let mut bytes = Vec::new();
            let envelope = Envelope {
                version: version.into(),
                request,
            };
            remora_wire::encode(&envelope, &mut bytes).unwrap();
            bytes
        };
        let warm = || Request::Warm {
            destination: destination.clone(),
        };
        assert_eq!(
            read_warm_request(&frame(VERSION, warm())[..]),
            Some(destination.clone())
        );
        assert_eq!(read_warm_request(&frame("0.0.0-other", warm())[..]), None);
        assert_eq!(read_warm_request(&frame(VERSION, Request::List)[..]), None);
        assert_eq!(read_warm_request(&[0xff, 0xff, 0xff, 0xff, 0][..]), None, "too large");
        assert_eq!(read_warm_request(&b""[..]), None);
    }
}
