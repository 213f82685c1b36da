//! Length-prefixed frames: a `u32` big-endian body length, then a MessagePack body.
//!
//! The reader enforces a maximum body length that the owner can raise once the hello is done, so
//! an unauthenticated or confused peer can never make this side allocate more than
//! [`MAX_HELLO_FRAME_LEN`] bytes.

use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::WireError;

/// Largest frame body accepted after the hello exchange.
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;
/// Largest frame body accepted before the hello exchange.
pub const MAX_HELLO_FRAME_LEN: usize = 64 * 1024;

const LEN_PREFIX: usize = 4;

/// Appends one frame (length prefix and MessagePack body) for `message` to `out`.
pub fn encode<T: Serialize>(message: &T, out: &mut Vec<u8>) -> Result<(), WireError> {
    let start = out.len();
    out.extend_from_slice(&[0; LEN_PREFIX]);
    rmp_serde::encode::write_named(out, message)?;
    let body_len = out.len() - start - LEN_PREFIX;
    let prefix = u32::try_from(body_len).map_err(|_| WireError::FrameTooLarge {
        len: body_len as u64,
        max: MAX_FRAME_LEN,
    })?;
    out[start..start + LEN_PREFIX].copy_from_slice(&prefix.to_be_bytes());
    Ok(())
}

/// Decodes one frame body (without its length prefix).
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    Ok(rmp_serde::from_slice(body)?)
}

/// Reads frames from a byte stream.
pub struct FrameReader<R> {
    inner: R,
    max_len: usize,
    body: Vec<u8>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader that accepts only hello-sized frames until [`FrameReader::set_max_len`].
    pub fn new(inner: R) -> Self {
        Self { inner, max_len: MAX_HELLO_FRAME_LEN, body: Vec::new() }
    }

    /// Changes the largest body this reader accepts.
    pub fn set_max_len(&mut self, max_len: usize) {
        self.max_len = max_len;
    }

    /// Reads the next frame body. `Ok(None)` means the peer closed cleanly between frames.
    pub async fn read_frame(&mut self) -> Result<Option<&[u8]>, WireError> {
        let mut prefix = [0u8; LEN_PREFIX];
        let got = read_full(&mut self.inner, &mut prefix).await?;
        if got == 0 {
            return Ok(None);
        }
        if got < LEN_PREFIX {
            return Err(WireError::Truncated { expected: LEN_PREFIX, got });
        }
        let len = u32::from_be_bytes(prefix) as usize;
        if len > self.max_len {
            return Err(WireError::FrameTooLarge { len: len as u64, max: self.max_len });
        }
        self.body.resize(len, 0);
        let got = read_full(&mut self.inner, &mut self.body).await?;
        if got < len {
            return Err(WireError::Truncated { expected: len, got });
        }
        Ok(Some(&self.body))
    }

    /// Reads and decodes the next message. `Ok(None)` means a clean close.
    pub async fn read_message<T: DeserializeOwned>(&mut self) -> Result<Option<T>, WireError> {
        match self.read_frame().await? {
            Some(body) => decode(body).map(Some),
            None => Ok(None),
        }
    }
}

/// Reads until `buf` is full or the stream ends; returns how many bytes arrived.
async fn read_full<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]).await? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Writes frames to a byte stream, reusing one encode buffer.
pub struct FrameWriter<W> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// Wraps a byte stream.
    pub fn new(inner: W) -> Self {
        Self { inner, buf: Vec::new() }
    }

    /// Encodes `message` into the pending buffer without writing it yet.
    pub fn queue<T: Serialize>(&mut self, message: &T) -> Result<(), WireError> {
        encode(message, &mut self.buf)
    }

    /// Writes every queued frame and flushes the stream.
    pub async fn flush(&mut self) -> Result<(), WireError> {
        if !self.buf.is_empty() {
            self.inner.write_all(&self.buf).await?;
            self.buf.clear();
        }
        self.inner.flush().await?;
        Ok(())
    }

    /// Encodes, writes and flushes one message.
    pub async fn send<T: Serialize>(&mut self, message: &T) -> Result<(), WireError> {
        self.queue(message)?;
        self.flush().await
    }

    /// Bytes queued but not yet written.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Shuts the write side down after flushing.
    pub async fn shutdown(&mut self) -> Result<(), WireError> {
        self.flush().await?;
        self.inner.shutdown().await?;
        Ok(())
    }
}
