//! What `remora` and the connection holder say to each other over the holder's socket: one
//! framed request (MessagePack, the wire crate's framing), one reply, then — after `Opened` — the
//! raw byte stream of an agent channel.

use remora_wire::UnixMillis;
use serde::{Deserialize, Serialize};

use crate::ssh::SshOptions;

/// A request, stamped with the sender's version: a holder of another version refuses it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    pub version: String,
    pub request: Request,
}

/// What a caller asks of the holder.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// Open a channel to the host's agent on a held connection (connecting first if needed) and
    /// carry this socket's bytes to it.
    Open { target: String, options: SshOptions },
    /// Connect to the host now, so the next call finds the connection warm.
    Warm { target: String, options: SshOptions },
    /// The held connections.
    List,
    /// Close held connections: one host's (as typed), or all; the holder exits when none is left.
    Stop { host: Option<String> },
}

/// The holder's answer.
#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    /// The channel is open: the agent's protocol follows on this socket.
    Opened,
    /// Nothing was opened; the caller connects on its own.
    Refused {
        reason: String,
    },
    Accepted,
    Held(Vec<Held>),
    Stopped {
        count: u32,
    },
}

/// One held connection, for `remora conn ls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// The host as typed.
    pub host: String,
    /// When the connection was made.
    pub since: UnixMillis,
    /// Seconds since the last call through it ended (0 while one is running).
    pub idle_secs: u64,
    /// Calls served.
    pub requests: u64,
    /// Calls running now.
    pub active: u32,
    /// Live SSH connections to the host (0 while the first is being made).
    pub connections: u32,
    /// ControlPersist in force: `yes` or seconds.
    pub persist: String,
}
