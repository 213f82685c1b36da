//! Length-prefixed frames: a `u32` big-endian body length, then a MessagePack body.
//!
//! The reader enforces a maximum body length that the owner can raise once the hello is done, so
//! an unauthenticated or confused peer can never make this side allocate more than
//! [`MAX_HELLO_FRAME_LEN`] bytes.

use std::{collections::VecDeque, io::IoSlice};

use bytes::Bytes;
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
/// Chunks handed to one vectored write (well under every system's IOV_MAX).
const MAX_SLICES: usize = 64;
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

/// MessagePack for an empty byte string (`bin 8`, length 0).
const EMPTY_BIN: [u8; 2] = [0xc4, 0x00];
/// MessagePack marker of a byte string with a 32-bit length.
const BIN32: u8 = 0xc6;

/// Appends the header of a frame whose body is `message` with `payload` as its last value, for
/// writing `payload` beside it without copying it into the frame: `message` must end with an
/// empty byte string (the field `payload` stands for, e.g. `Output::data`, declared last).
/// `header` followed by `payload` is exactly a frame that [`decode`] reads back whole.
pub fn encode_with_payload<T: Serialize>(message: &T, payload_len: usize, out: &mut Vec<u8>) -> Result<(), WireError> {
    let start = out.len();
    encode(message, out)?;
    if !out.ends_with(&EMPTY_BIN) {
        out.truncate(start);
        return Err(WireError::Encode(rmp_serde::encode::Error::Syntax(
            "a payload frame's message must end with an empty byte string".into(),
        )));
    }
    out.truncate(out.len() - EMPTY_BIN.len());
    let payload_len32 = u32::try_from(payload_len).map_err(|_| WireError::FrameTooLarge {
        len: payload_len as u64,
        max: MAX_FRAME_LEN,
    })?;
    out.push(BIN32);
    out.extend_from_slice(&payload_len32.to_be_bytes());
    let body_len = out.len() - start - LEN_PREFIX + payload_len;
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

/// Reads exactly one frame of at most `max` bytes and nothing after it, for a stream whose
/// frame is followed by other bytes (the connection holder's reply, then an agent channel).
/// Unbuffered, so not cancel-safe: use [`FrameReader`] for a stream of frames.
pub async fn read_single<T: DeserializeOwned>(
    stream: &mut (impl AsyncRead + Unpin),
    max: usize,
) -> Result<T, WireError> {
    let len = stream.read_u32().await? as usize;
    if len > max {
        return Err(WireError::FrameTooLarge { len: len as u64, max });
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    decode(&body)
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

/// Writes frames to a byte stream: small frames are encoded into one buffer; payloads queued with
/// [`FrameWriter::queue_with_payload`] are written as they are, beside their header, in one
/// vectored write.
pub struct FrameWriter<W> {
    inner: W,
    buf: Vec<u8>,
    /// Encoded frames and payloads waiting to be written, in order (before `buf`).
    chunks: VecDeque<Bytes>,
    queued: usize,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// Wraps a byte stream.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            chunks: VecDeque::new(),
            queued: 0,
        }
    }

    /// Encodes `message` into the pending buffer without writing it yet.
    pub fn queue<T: Serialize>(&mut self, message: &T) -> Result<(), WireError> {
        let before = self.buf.len();
        encode(message, &mut self.buf)?;
        self.queued += self.buf.len() - before;
        Ok(())
    }

    /// Queues the frame of `message` followed by `payload`, uncopied (see
    /// [`encode_with_payload`]).
    pub fn queue_with_payload<T: Serialize>(&mut self, message: &T, payload: Bytes) -> Result<(), WireError> {
        let before = self.buf.len();
        encode_with_payload(message, payload.len(), &mut self.buf)?;
        self.queued += self.buf.len() - before + payload.len();
        self.chunks.push_back(Bytes::from(std::mem::take(&mut self.buf)));
        self.chunks.push_back(payload);
        Ok(())
    }

    /// Writes every queued frame and flushes the stream.
    pub async fn flush(&mut self) -> Result<(), WireError> {
        if !self.buf.is_empty() {
            self.chunks.push_back(Bytes::from(std::mem::take(&mut self.buf)));
        }
        while !self.chunks.is_empty() {
            let slices: Vec<IoSlice<'_>> = self.chunks.iter().take(MAX_SLICES).map(|c| IoSlice::new(c)).collect();
            let written = self.inner.write_vectored(&slices).await?;
            if written == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into());
            }
            self.advance(written);
        }
        self.queued = 0;
        self.inner.flush().await?;
        Ok(())
    }

    /// Drops `written` bytes from the front of the queued chunks.
    fn advance(&mut self, mut written: usize) {
        while written > 0 {
            let front = self.chunks.front_mut().expect("wrote no more than was queued");
            if front.len() <= written {
                written -= front.len();
                self.chunks.pop_front();
            } else {
                bytes::Buf::advance(front, written);
                written = 0;
            }
        }
    }

    /// Encodes, writes and flushes one message.
    pub async fn send<T: Serialize>(&mut self, message: &T) -> Result<(), WireError> {
        self.queue(message)?;
        self.flush().await
    }

    /// Bytes queued but not yet written.
    pub fn pending(&self) -> usize {
        self.queued
    }

    /// The byte stream written to.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// Shuts the write side down after flushing.
    pub async fn shutdown(&mut self) -> Result<(), WireError> {
        self.flush().await?;
        self.inner.shutdown().await?;
        Ok(())
    }
}
