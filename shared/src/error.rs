//! Errors of the codec. They describe the bytes, not the session they belong to.
//!
//! Each message includes its cause's text, so the cause is not also chained as `source()`: a
//! printed error chain would repeat it.

use std::io;

/// Why a frame could not be read, written, encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The underlying stream failed.
    #[error("connection I/O failed: {0}")]
    Io(io::Error),
    /// The peer announced a frame larger than this side accepts.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes; is the peer speaking the remora protocol?")]
    FrameTooLarge { len: u64, max: usize },
    /// The stream ended inside a frame.
    #[error("connection closed in the middle of a frame ({got} of {expected} bytes received)")]
    Truncated { expected: usize, got: usize },
    /// A message could not be turned into MessagePack.
    #[error("cannot encode message: {0}")]
    Encode(rmp_serde::encode::Error),
    /// A frame body is not a message this side understands.
    #[error("cannot decode message: {0}")]
    Decode(rmp_serde::decode::Error),
}

impl From<io::Error> for WireError {
    fn from(err: io::Error) -> Self {
        WireError::Io(err)
    }
}

impl From<rmp_serde::encode::Error> for WireError {
    fn from(err: rmp_serde::encode::Error) -> Self {
        WireError::Encode(err)
    }
}

impl From<rmp_serde::decode::Error> for WireError {
    fn from(err: rmp_serde::decode::Error) -> Self {
        WireError::Decode(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_hold_their_cause_once_and_chain_nothing() {
        let err = WireError::from(io::Error::other("broken pipe"));
        assert_eq!(err.to_string(), "connection I/O failed: broken pipe");
        assert!(std::error::Error::source(&err).is_none());
    }
}
