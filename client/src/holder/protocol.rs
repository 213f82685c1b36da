//! What `remora` and the connection holder say to each other over the holder's socket: one
//! framed request (MessagePack, the wire crate's framing), one reply, then — after `Opened` — the
//! raw byte stream of an agent channel.
//!
//! The caller's resolved settings travel here, in the frame, never in the holder's argv (which
//! other local users can read in `ps`).

use remora_wire::UnixMillis;
use serde::{Deserialize, Serialize};

pub use super::destination::Destination;

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
    Open { destination: Destination },
    /// Connect to the host now, so the next call finds the connection warm.
    Warm { destination: Destination },
    /// Close the connections held for exactly this destination (the caller no longer trusts
    /// their host key); answered with `Stopped`.
    Forget { destination: Destination },
    /// The held connections.
    List,
    /// Close held connections: one host's (as typed), or all; the holder exits when none is left.
    Stop { host: Option<String> },
}

/// The holder's answer.
#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    /// The channel is open: the agent's protocol follows on this socket. `host_key` is what the
    /// held connection's handshake accepted (OpenSSH one-line form, a certificate if one was
    /// used), `jump_keys` what its jump hosts' handshakes accepted (the hop nearest the host
    /// first), for the caller to check against its own known_hosts before using the channel.
    Opened {
        host_key: String,
        #[serde(default)]
        jump_keys: Vec<String>,
    },
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
    /// Agent channels on standby, ready for the next call without a new SSH channel.
    #[serde(default)]
    pub ready: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(message: &impl Serialize) -> String {
        let mut frame = Vec::new();
        remora_wire::encode(message, &mut frame).unwrap();
        frame.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// The sample frames of PROTOCOL.md, *Between remora processes: the connection holder*.
    #[test]
    fn the_documented_sample_frames_encode_as_shown() {
        let list = Envelope {
            version: "0.1.0".into(),
            request: Request::List,
        };
        let stop = Envelope {
            version: "0.1.0".into(),
            request: Request::Stop {
                host: Some("web01".into()),
            },
        };
        assert_eq!(
            hex(&list),
            "0000001c82a776657273696f6ea5302e312e30a772657175657374a44c697374"
        );
        assert_eq!(
            hex(&stop),
            "0000002982a776657273696f6ea5302e312e30a77265717565737481a453746f7081a4686f7374a57765623031"
        );
        assert_eq!(
            hex(&Reply::Stopped { count: 1 }),
            "0000001181a753746f7070656481a5636f756e7401"
        );
        assert_eq!(
            hex(&Reply::Refused {
                reason: "too many".into()
            }),
            "0000001a81a75265667573656481a6726561736f6ea8746f6f206d616e79"
        );
    }
}
