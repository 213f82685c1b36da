//! The wire crate: remora's protocol as plain data plus the framing codec.
//!
//! Invariants (see `docs/PROTOCOL.md`):
//! - A frame is a `u32` big-endian body length followed by a MessagePack body encoded with struct
//!   maps, so peers skip fields they do not know.
//! - Nothing here knows about sockets, SSH or agent state: the codec works on any
//!   `AsyncRead`/`AsyncWrite`, and agent state types convert into these messages at the edge.
//! - Decoding never panics; every malformed input is a [`WireError`].

mod boundary;
mod display;
mod error;
mod frame;
mod message;

mod terminal;
mod transfer;

pub use boundary::FrameBoundary;
pub use error::WireError;
pub use frame::{
    decode, encode, encode_with_payload, read_single, FrameReader, FrameWriter, MAX_FRAME_LEN, MAX_HELLO_FRAME_LEN,
};
pub use message::*;
/// Raw byte strings in messages (scrollback lines of a redraw).
pub use serde_bytes::ByteBuf;
pub use transfer::*;
