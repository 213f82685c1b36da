//! Errors of the codec. They describe the bytes, not the session they belong to.

use std::io;

/// Why a frame could not be read, written, encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The underlying stream failed.
    #[error("connection I/O failed: {0}")]
    Io(#[from] io::Error),
    /// The peer announced a frame larger than this side accepts.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes; is the peer speaking the remora protocol?")]
    FrameTooLarge { len: u64, max: usize },
    /// The stream ended inside a frame.
    #[error("connection closed in the middle of a frame ({got} of {expected} bytes received)")]
    Truncated { expected: usize, got: usize },
    /// A message could not be turned into MessagePack.
    #[error("cannot encode message: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// A frame body is not a message this side understands.
    #[error("cannot decode message: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
}
