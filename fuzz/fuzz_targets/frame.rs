//! Fuzz target: the frame reader over arbitrary bytes that arrive in arbitrary pieces, with reads
//! abandoned part-way (the reader is raced against timers in the agent, so it must be cancel-safe).
//!
//! Input: byte 0 picks the length limit, byte 1 seeds the delivery schedule, the rest is the
//! stream. Every frame the reader returns, and how the stream ends (clean close, oversize,
//! truncated), must match a plain reference parse of the same bytes.

#![no_main]

use std::{
    future::Future,
    io,
    pin::{pin, Pin},
    task::{Context, Poll, Waker},
};

use libfuzzer_sys::fuzz_target;
use remora_wire::{FrameReader, WireError, MAX_FRAME_LEN, MAX_HELLO_FRAME_LEN};
use tokio::io::{AsyncRead, ReadBuf};

/// What reading the next frame should give.
#[derive(Debug, PartialEq, Eq)]
enum Expected {
    Frame(Vec<u8>),
    Closed,
    TooLarge { len: u64, max: usize },
    Truncated { expected: usize, got: usize },
}

/// The protocol's framing, read the obvious way from a complete buffer.
fn reference(mut stream: &[u8], max: usize) -> Vec<Expected> {
    let mut frames = Vec::new();
    loop {
        if stream.is_empty() {
            frames.push(Expected::Closed);
            return frames;
        }
        let Some((prefix, rest)) = stream.split_first_chunk::<4>() else {
            frames.push(Expected::Truncated {
                expected: 4,
                got: stream.len(),
            });
            return frames;
        };
        let len = u32::from_be_bytes(*prefix) as usize;
        if len > max {
            frames.push(Expected::TooLarge { len: len as u64, max });
            return frames;
        }
        if rest.len() < len {
            frames.push(Expected::Truncated {
                expected: len,
                got: rest.len(),
            });
            return frames;
        }
        frames.push(Expected::Frame(rest[..len].to_vec()));
        stream = &rest[len..];
    }
}

/// Hands out its bytes in pieces of 1 byte to everything, pausing (`Pending`) now and then, on a
/// schedule drawn from the input.
struct Dribble<'a> {
    data: &'a [u8],
    rng: u32,
}

impl Dribble<'_> {
    fn roll(&mut self) -> u32 {
        // xorshift32: cheap, deterministic, never stuck at zero.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 17;
        self.rng ^= self.rng << 5;
        self.rng
    }
}

impl AsyncRead for Dribble<'_> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let roll = self.roll();
        if roll.is_multiple_of(4) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let piece = match (roll >> 2) % 4 {
            0 => 1,
            1 => 1 + (roll >> 8) as usize % 8,
            2 => 1 + (roll >> 8) as usize % 4096,
            _ => usize::MAX,
        };
        let n = piece.min(self.data.len()).min(buf.remaining());
        let (now, later) = self.data.split_at(n);
        buf.put_slice(now);
        self.data = later;
        Poll::Ready(Ok(()))
    }
}

/// Polls `read_frame` until it completes, dropping the future at every `Pending` (a cancelled
/// read) and starting a new one.
fn next(reader: &mut FrameReader<Dribble<'_>>, cx: &mut Context<'_>) -> Expected {
    loop {
        let mut read = pin!(reader.read_frame());
        let Poll::Ready(result) = read.as_mut().poll(cx) else {
            continue;
        };
        return match result {
            Ok(Some(body)) => Expected::Frame(body.to_vec()),
            Ok(None) => Expected::Closed,
            Err(WireError::FrameTooLarge { len, max }) => Expected::TooLarge { len, max },
            Err(WireError::Truncated { expected, got }) => Expected::Truncated { expected, got },
            Err(other) => panic!("reading from memory failed with {other}"),
        };
    }
}

fuzz_target!(|input: &[u8]| {
    let [limit, seed, stream @ ..] = input else {
        return;
    };
    let max = match limit % 4 {
        0 => MAX_HELLO_FRAME_LEN,
        1 => MAX_FRAME_LEN,
        // Small limits so the fuzzer reaches the oversize path with small inputs.
        _ => usize::from(*limit),
    };
    let mut reader = FrameReader::new(Dribble {
        data: stream,
        rng: u32::from(*seed) << 8 | 0x5a,
    });
    reader.set_max_len(max);
    let mut cx = Context::from_waker(Waker::noop());
    for expected in reference(stream, max) {
        let got = next(&mut reader, &mut cx);
        assert_eq!(got, expected, "limit {max}");
        if matches!(got, Expected::Frame(_)) {
            assert!(!reader.mid_frame(), "a returned frame is not in progress");
        }
    }
});
