//! Keepers: a small process per session that holds the runspace shell's descriptors, so the
//! shell and a running command outlive the daemon (a `kill -9`, the OOM killer, a panic).
//!
//! ```text
//! daemon ─ control socket (socketpair, the keeper's stdin) ─► keeper ── holds ─► shell's stdin,
//!                                                                      stdout, stderr, status
//! next daemon ─ run/keepers/<session>.sock (0600, peer uid checked) ─► keeper (orphaned)
//! ```
//!
//! Lifecycle:
//! - **Holding.** The daemon starts `remora-agent keeper --socket PATH` with one end of a
//!   socketpair as its stdin and sends it [`Hold`]: the session, the shell's pid, how much output
//!   it may buffer and for how long it waits for a daemon, with the four descriptors. The keeper
//!   then only waits on that socket: no CPU, no reads. [`RELEASE`] ends it (the session is over).
//! - **Orphaned.** The control socket's end without a release means the daemon died. The keeper
//!   binds `PATH` and drains the shell's stdout, stderr and status pipe into records
//!   ([`Record`]), in the order the bytes were written: a status line is taken only after both
//!   output pipes are drained, as the runspace does. Past its limit it stops reading output, so
//!   the command waits (block), and nothing is lost. With no daemon for its wait, it ends.
//! - **Adopted.** A process of the keeper's own uid that connects gets [`Handed`] (the pid, the
//!   records' size, the descriptors) and the records; its connection becomes the control
//!   socket, and the keeper holds again. Another uid is refused without a byte.
//!
//! The keeper never interprets the protocol and runs no async runtime: it is a `poll` loop over
//! at most five descriptors with one buffer (see `process.rs`); `link.rs` is the daemon's side.

mod link;
mod process;

pub use link::{adopt, spawn, Adopted, KeeperLink};
pub use process::run;

use std::{
    io::{self, Read},
    os::fd::{FromRawFd, OwnedFd, RawFd},
};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

/// The message ending a keeper: the session is over.
pub const RELEASE: u8 = b'R';
/// Tag of [`Hold`].
const HOLD: u8 = b'H';
/// Tag of [`Handed`].
const HANDED: u8 = b'K';
/// Descriptors a keeper holds: the shell's stdin, stdout, stderr and status pipe, in this order.
pub const HELD_FDS: usize = 4;
/// Most bytes one record carries.
const RECORD_MOST: usize = 64 * 1024;

/// Which pipe a record's bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Stdout,
    Stderr,
    Status,
}

impl Source {
    fn tag(self) -> u8 {
        match self {
            Self::Stdout => 1,
            Self::Stderr => 2,
            Self::Status => 3,
        }
    }

    fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            1 => Some(Self::Stdout),
            2 => Some(Self::Stderr),
            3 => Some(Self::Status),
            _ => None,
        }
    }
}

/// Bytes a keeper read while no daemon held it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub source: Source,
    pub data: Vec<u8>,
}

/// Appends `data` from `source` to `out` as records of at most [`RECORD_MOST`] bytes.
fn encode_records(out: &mut Vec<u8>, source: Source, data: &[u8]) {
    for piece in data.chunks(RECORD_MOST) {
        out.push(source.tag());
        out.extend_from_slice(&(piece.len() as u32).to_be_bytes());
        out.extend_from_slice(piece);
    }
}

/// Parses records; a malformed one is an error naming it, never a panic.
pub fn decode_records(mut bytes: &[u8]) -> io::Result<Vec<Record>> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("a keeper's record {what}"));
    let mut records = Vec::new();
    while let Some((&tag, rest)) = bytes.split_first() {
        let source = Source::from_tag(tag).ok_or_else(|| bad("has an unknown source"))?;
        let len = rest.get(..4).ok_or_else(|| bad("is cut short"))?;
        let len = u32::from_be_bytes(len.try_into().expect("four bytes")) as usize;
        if len > RECORD_MOST {
            return Err(bad("is longer than a record may be"));
        }
        let data = rest.get(4..4 + len).ok_or_else(|| bad("is cut short"))?;
        records.push(Record {
            source,
            data: data.to_vec(),
        });
        bytes = &rest[4 + len..];
    }
    Ok(records)
}

/// What the daemon tells a new keeper, with the descriptors it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    pub session: uuid::Uuid,
    pub pid: i32,
    /// Most bytes of output buffered while orphaned.
    pub limit: u64,
    /// How long an orphaned keeper waits for a daemon before it ends, in seconds.
    pub wait_secs: u64,
}

const HOLD_LEN: usize = 1 + 16 + 4 + 8 + 8;

impl Hold {
    fn encode(&self) -> [u8; HOLD_LEN] {
        let mut out = [0u8; HOLD_LEN];
        out[0] = HOLD;
        out[1..17].copy_from_slice(self.session.as_bytes());
        out[17..21].copy_from_slice(&self.pid.to_be_bytes());
        out[21..29].copy_from_slice(&self.limit.to_be_bytes());
        out[29..37].copy_from_slice(&self.wait_secs.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8; HOLD_LEN]) -> io::Result<Self> {
        if bytes[0] != HOLD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a keeper expected its hold message",
            ));
        }
        let number = |range: std::ops::Range<usize>| u64::from_be_bytes(bytes[range].try_into().expect("eight bytes"));
        Ok(Self {
            session: uuid::Uuid::from_bytes(bytes[1..17].try_into().expect("sixteen bytes")),
            pid: i32::from_be_bytes(bytes[17..21].try_into().expect("four bytes")),
            limit: number(21..29),
            wait_secs: number(29..37),
        })
    }
}

/// What an orphaned keeper hands a daemon that adopts it, before the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handed {
    pub session: uuid::Uuid,
    pub pid: i32,
    /// Bytes of records that follow.
    pub records_len: u64,
}

const HANDED_LEN: usize = 1 + 16 + 4 + 8;

impl Handed {
    fn encode(&self) -> [u8; HANDED_LEN] {
        let mut out = [0u8; HANDED_LEN];
        out[0] = HANDED;
        out[1..17].copy_from_slice(self.session.as_bytes());
        out[17..21].copy_from_slice(&self.pid.to_be_bytes());
        out[21..29].copy_from_slice(&self.records_len.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8; HANDED_LEN]) -> io::Result<Self> {
        if bytes[0] != HANDED {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the keeper did not hand over",
            ));
        }
        Ok(Self {
            session: uuid::Uuid::from_bytes(bytes[1..17].try_into().expect("sixteen bytes")),
            pid: i32::from_be_bytes(bytes[17..21].try_into().expect("four bytes")),
            records_len: u64::from_be_bytes(bytes[21..29].try_into().expect("eight bytes")),
        })
    }
}

/// Receives a fixed-size message and the descriptors sent with its first byte, reading the
/// rest of it (a stream socket may split it) with plain reads.
fn recv_with_fds<const N: usize>(stream: &mut std::os::unix::net::UnixStream) -> io::Result<([u8; N], Vec<OwnedFd>)> {
    use std::os::fd::AsRawFd;
    let mut message = [0u8; N];
    let mut space = nix::cmsg_space!([RawFd; HELD_FDS]);
    let (received, fds) = {
        let mut iov = [io::IoSliceMut::new(&mut message)];
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        let mut fds = Vec::new();
        for cmsg in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(raw) = cmsg {
                // SAFETY: the kernel just installed these descriptors in our table; we own them.
                fds.extend(raw.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
            }
        }
        (msg.bytes, fds)
    };
    if received == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the other end closed"));
    }
    stream.read_exact(&mut message[received..])?;
    Ok((message, fds))
}

/// Sends `message` with `fds` riding on it.
fn send_with_fds(stream: &std::os::unix::net::UnixStream, message: &[u8], fds: &[RawFd]) -> io::Result<()> {
    use std::{io::Write, os::fd::AsRawFd};
    let rights = [nix::sys::socket::ControlMessage::ScmRights(fds)];
    let iov = [io::IoSlice::new(message)];
    let sent = nix::sys::socket::sendmsg::<()>(stream.as_raw_fd(), &iov, &rights, MsgFlags::empty(), None)?;
    (&*stream).write_all(&message[sent..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_in_order_split_at_their_most() {
        let mut bytes = Vec::new();
        encode_records(&mut bytes, Source::Stdout, b"one\n");
        encode_records(&mut bytes, Source::Stderr, &vec![7u8; RECORD_MOST + 1]);
        encode_records(&mut bytes, Source::Status, b"0\n");
        let records = decode_records(&bytes).unwrap();
        let shape: Vec<(Source, usize)> = records.iter().map(|r| (r.source, r.data.len())).collect();
        assert_eq!(
            shape,
            vec![
                (Source::Stdout, 4),
                (Source::Stderr, RECORD_MOST),
                (Source::Stderr, 1),
                (Source::Status, 2)
            ]
        );
    }

    #[test]
    fn malformed_records_are_errors_that_say_what_is_wrong() {
        for (bytes, wrong) in [
            (vec![9u8, 0, 0, 0, 1, b'x'], "unknown source"),
            (vec![1u8, 0, 0], "cut short"),
            (vec![1u8, 0, 0, 0, 5, b'x'], "cut short"),
            (vec![1u8, 0xff, 0xff, 0xff, 0xff], "longer than"),
        ] {
            let err = decode_records(&bytes).unwrap_err();
            assert!(err.to_string().contains(wrong), "{err}");
        }
    }

    #[test]
    fn hold_and_handed_round_trip() {
        let hold = Hold {
            session: uuid::Uuid::new_v4(),
            pid: 4242,
            limit: 1 << 30,
            wait_secs: 86_400,
        };
        assert_eq!(Hold::decode(&hold.encode()).unwrap(), hold);
        let handed = Handed {
            session: hold.session,
            pid: 7,
            records_len: 99,
        };
        assert_eq!(Handed::decode(&handed.encode()).unwrap(), handed);
        assert!(Hold::decode(&[0u8; HOLD_LEN]).is_err());
    }
}
