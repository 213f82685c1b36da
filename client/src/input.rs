//! A command's stdin as an input stream: bytes read from a local source, sent with their
//! offsets, held until the agent acknowledges them, and sent again from the first
//! unacknowledged byte after a reconnect.
//!
//! Memory is bounded by the window: the feed reads the source only while fewer than
//! [`INPUT_WINDOW`] bytes are unacknowledged, so a 10 GB input never sits in the client.

use std::{
    collections::VecDeque,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use remora_wire::{Input, InputAck};
use tokio::{
    io::{AsyncRead, AsyncReadExt, ReadBuf},
    sync::mpsc,
};
use uuid::Uuid;

/// Unacknowledged input bytes the client may have sent or hold.
pub const INPUT_WINDOW: u64 = 8 * 1024 * 1024;
/// Largest input frame.
const CHUNK: usize = 256 * 1024;

/// A local byte source for a command's stdin.
pub type InputSource = Box<dyn AsyncRead + Send + Unpin>;

/// One command's input stream, on the client side.
pub struct InputFeed {
    source: InputSource,
    session: Uuid,
    command: u64,
    /// Bytes `[acked, read_end)`, kept until acknowledged.
    held: VecDeque<u8>,
    /// The buffer each read of the source lands in, reused (no allocation or zeroing per read).
    read_buf: Vec<u8>,
    acked: u64,
    sent: u64,
    read_end: u64,
    eof_read: bool,
    eof_sent: bool,
    eof_acked: bool,
}

impl InputFeed {
    /// A feed reading `source`; it is bound to its command with [`InputFeed::bind`].
    pub fn new(source: InputSource) -> Self {
        Self {
            source,
            session: Uuid::nil(),
            command: 0,
            held: VecDeque::new(),
            read_buf: Vec::new(),
            acked: 0,
            sent: 0,
            read_end: 0,
            eof_read: false,
            eof_sent: false,
            eof_acked: false,
        }
    }

    /// The command whose stdin this is.
    pub(crate) fn bind(&mut self, session: Uuid, command: u64) {
        self.session = session;
        self.command = command;
    }

    /// Whether the agent has everything, end of input included.
    pub fn complete(&self) -> bool {
        self.eof_acked
    }

    /// Bytes the agent has acknowledged.
    pub fn acknowledged(&self) -> u64 {
        self.acked
    }

    /// Starts sending again from the first unacknowledged byte (a new connection).
    pub(crate) fn rewind(&mut self) {
        self.sent = self.acked;
        self.eof_sent = false;
    }

    /// Takes the agent's acknowledgement.
    pub(crate) fn on_ack(&mut self, ack: &InputAck) {
        if ack.session != self.session || ack.command != self.command {
            return;
        }
        if ack.offset > self.acked {
            let forget = (ack.offset.min(self.read_end) - self.acked) as usize;
            self.held.drain(..forget);
            self.acked = ack.offset.min(self.read_end);
            self.sent = self.sent.max(self.acked);
        }
        if ack.eof && self.eof_read && self.acked == self.read_end {
            self.eof_acked = true;
        }
    }

    /// The next frame to send; pending while the window is full or everything was sent.
    /// Cancel-safe: nothing is lost if the future is dropped.
    pub(crate) async fn next_frame(&mut self) -> std::io::Result<Input> {
        loop {
            if self.sent < self.read_end {
                let start = (self.sent - self.acked) as usize;
                let len = ((self.read_end - self.sent) as usize).min(CHUNK);
                let data = copy_range(&self.held, start, len);
                let offset = self.sent;
                self.sent += len as u64;
                let eof = self.eof_read && self.sent == self.read_end;
                self.eof_sent |= eof;
                return Ok(self.frame(offset, data, eof));
            }
            if self.eof_read {
                if !self.eof_sent {
                    self.eof_sent = true;
                    return Ok(self.frame(self.sent, Vec::new(), true));
                }
                return std::future::pending().await;
            }
            let room = INPUT_WINDOW.saturating_sub(self.read_end - self.acked) as usize;
            if room == 0 {
                return std::future::pending().await;
            }
            if self.read_buf.len() < CHUNK {
                self.read_buf.resize(CHUNK, 0);
            }
            let want = room.min(CHUNK);
            let n = self.source.read(&mut self.read_buf[..want]).await?;
            if n == 0 {
                self.eof_read = true;
            } else {
                self.held.extend(&self.read_buf[..n]);
                self.read_end += n as u64;
            }
        }
    }

    fn frame(&self, offset: u64, data: Vec<u8>, eof: bool) -> Input {
        Input {
            session: self.session,
            command: self.command,
            offset,
            data,
            eof,
        }
    }
}

/// Bytes `start .. start + len` of `held`, copied slice by slice (not byte by byte).
fn copy_range(held: &VecDeque<u8>, start: usize, len: usize) -> Vec<u8> {
    let (front, back) = held.as_slices();
    let mut data = Vec::with_capacity(len);
    let end = start + len;
    if start < front.len() {
        data.extend_from_slice(&front[start..end.min(front.len())]);
    }
    if end > front.len() {
        let from = start.saturating_sub(front.len());
        data.extend_from_slice(&back[from..end - front.len()]);
    }
    data
}

/// Splits one source into `n` that each yield all of its bytes (every host gets the same
/// input). A bounded queue per copy: the slowest reader paces the source.
pub fn tee(mut source: InputSource, n: usize) -> Vec<InputSource> {
    let (senders, readers): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::channel::<Bytes>(8)).unzip();
    tokio::spawn(async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match source.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let chunk = Bytes::copy_from_slice(&buf[..n]);
            let mut any = false;
            for sender in &senders {
                any |= sender.send(chunk.clone()).await.is_ok();
            }
            if !any {
                return;
            }
        }
    });
    readers
        .into_iter()
        .map(|rx| {
            Box::new(ChannelReader {
                rx,
                current: Bytes::new(),
            }) as InputSource
        })
        .collect()
}

/// Reads the chunks of a channel as one byte stream; the sender's end is end of input.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl AsyncRead for ChannelReader {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        while self.current.is_empty() {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(chunk)) => self.current = chunk,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = self.current.len().min(buf.remaining());
        let chunk = self.current.split_to(n);
        buf.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_is_copied_whole_across_the_deques_wrap() {
        let mut held: VecDeque<u8> = VecDeque::with_capacity(8);
        held.extend(0..8u8);
        held.drain(..5);
        held.extend(8..13u8); // wraps: [5, 6, 7] at the back of the buffer, [8 ..] at the front
        let all: Vec<u8> = held.iter().copied().collect();
        for start in 0..all.len() {
            for len in 0..=all.len() - start {
                assert_eq!(copy_range(&held, start, len), all[start..start + len], "{start}+{len}");
            }
        }
    }

    fn ack(offset: u64, eof: bool) -> InputAck {
        InputAck {
            session: Uuid::nil(),
            command: 0,
            offset,
            eof,
        }
    }

    #[tokio::test]
    async fn a_feed_resends_from_the_first_unacknowledged_byte_and_stays_within_its_window() {
        let data: Vec<u8> = (0..(INPUT_WINDOW as usize + 1000)).map(|i| i as u8).collect();
        let mut feed = InputFeed::new(Box::new(std::io::Cursor::new(data.clone())));
        let mut sent = 0u64;
        while sent < INPUT_WINDOW {
            let frame = feed.next_frame().await.unwrap();
            assert_eq!(frame.offset, sent);
            sent += frame.data.len() as u64;
        }
        let blocked = tokio::time::timeout(std::time::Duration::from_millis(20), feed.next_frame()).await;
        assert!(blocked.is_err(), "the window is full");
        feed.on_ack(&ack(1000, false));
        feed.rewind();
        let again = feed.next_frame().await.unwrap();
        assert_eq!(again.offset, 1000);
        assert_eq!(again.data[..], data[1000..1000 + again.data.len()]);
    }

    #[tokio::test]
    async fn an_empty_input_is_one_eof_frame() {
        let mut feed = InputFeed::new(Box::new(tokio::io::empty()));
        let frame = feed.next_frame().await.unwrap();
        assert!(frame.eof && frame.data.is_empty() && frame.offset == 0);
        feed.on_ack(&ack(0, true));
        assert!(feed.complete());
    }

    #[tokio::test]
    async fn tee_gives_every_reader_the_whole_input() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7) as u8).collect();
        let readers = tee(Box::new(std::io::Cursor::new(data.clone())), 3);
        let reads: Vec<_> = readers
            .into_iter()
            .map(|mut reader| {
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    reader.read_to_end(&mut got).await.unwrap();
                    got
                })
            })
            .collect();
        for read in reads {
            assert!(read.await.unwrap() == data);
        }
    }
}
