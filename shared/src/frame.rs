//! Length-prefixed frames: a `u32` big-endian body length, then a MessagePack body.
//!
//! The reader enforces a maximum body length that the owner can raise once the hello is done, so
//! an unauthenticated or confused peer can never make this side allocate more than
//! [`MAX_HELLO_FRAME_LEN`] bytes.

use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::WireError;

/// Largest frame body accepted after the hello exchange.
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;
/// Largest frame body accepted before the hello exchange.
pub const MAX_HELLO_FRAME_LEN: usize = 64 * 1024;
/// How much the body buffer grows at a time while a frame arrives.
const BODY_CHUNK: usize = 256 * 1024;

const LEN_PREFIX: usize = 4;
/// Read-ahead buffer, so small frames cost one read call per batch rather than two per frame.
const READ_BUFFER: usize = 64 * 1024;

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

/// How deeply arrays and maps may nest in a frame body. The messages nest about six levels; the
/// rest is room for what newer peers add. rmp-serde's own limit (1024) recurses deeper than a
/// 2 MiB tokio worker stack holds in a debug build, so one small frame could abort the daemon.
const MAX_DEPTH: usize = 64;

/// Decodes one frame body (without its length prefix).
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    let mut deserializer = rmp_serde::Deserializer::from_read_ref(body);
    deserializer.set_max_depth(MAX_DEPTH);
    Ok(T::deserialize(&mut deserializer)?)
}

/// Reads frames from a byte stream.
///
/// Cancel-safe: a partly read frame stays buffered in the reader, so `read_frame` may be raced
/// against a timer or a shutdown signal without losing or misaligning bytes.
pub struct FrameReader<R> {
    inner: BufReader<R>,
    max_len: usize,
    prefix: [u8; LEN_PREFIX],
    body: Vec<u8>,
    /// Body length once the prefix is complete.
    body_len: Option<usize>,
    /// Bytes of the current prefix or body read so far.
    filled: usize,
    /// The last call returned a whole frame; the next starts afresh.
    returned: bool,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader that accepts only hello-sized frames until [`FrameReader::set_max_len`].
    pub fn new(inner: R) -> Self {
        Self {
            inner: BufReader::with_capacity(READ_BUFFER, inner),
            max_len: MAX_HELLO_FRAME_LEN,
            prefix: [0; LEN_PREFIX],
            body: Vec::new(),
            body_len: None,
            filled: 0,
            returned: false,
        }
    }

    /// Changes the largest body this reader accepts.
    pub fn set_max_len(&mut self, max_len: usize) {
        self.max_len = max_len;
    }

    /// Whether part of a frame has arrived but not the rest (a stalled or dribbling peer).
    pub fn mid_frame(&self) -> bool {
        !self.returned && (self.filled > 0 || self.body_len.is_some())
    }

    /// Reads the next frame body. `Ok(None)` means the peer closed cleanly between frames.
    pub async fn read_frame(&mut self) -> Result<Option<&[u8]>, WireError> {
        if self.returned {
            self.returned = false;
            self.body_len = None;
            self.filled = 0;
        }
        loop {
            let want = self.body_len.unwrap_or(LEN_PREFIX);
            if self.filled == want {
                match self.body_len {
                    None => self.start_body()?,
                    Some(len) => {
                        self.returned = true;
                        return Ok(Some(&self.body[..len]));
                    }
                }
                continue;
            }
            let target = match self.body_len {
                None => &mut self.prefix[self.filled..want],
                Some(_) => {
                    // Grow with what arrives, not what is announced: a peer that announces a
                    // large frame and sends nothing costs one chunk, not the whole frame.
                    let end = want.min(self.filled + BODY_CHUNK);
                    if self.body.len() < end {
                        self.body.resize(end, 0);
                    }
                    &mut self.body[self.filled..end]
                }
            };
            let got = self.inner.read(target).await?;
            if got == 0 {
                return match (self.body_len, self.filled) {
                    (None, 0) => Ok(None),
                    _ => Err(WireError::Truncated {
                        expected: want,
                        got: self.filled,
                    }),
                };
            }
            self.filled += got;
        }
    }

    /// The prefix is complete: check the announced length and make room for the body.
    fn start_body(&mut self) -> Result<(), WireError> {
        let len = u32::from_be_bytes(self.prefix) as usize;
        if len > self.max_len {
            return Err(WireError::FrameTooLarge {
                len: len as u64,
                max: self.max_len,
            });
        }
        self.body_len = Some(len);
        self.filled = 0;
        Ok(())
    }

    /// Reads and decodes the next message. `Ok(None)` means a clean close.
    pub async fn read_message<T: DeserializeOwned>(&mut self) -> Result<Option<T>, WireError> {
        match self.read_frame().await? {
            Some(body) => decode(body).map(Some),
            None => Ok(None),
        }
    }
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
