//! The terminal as a plain synchronous state machine: the output ring with its seq numbers,
//! how far the screen model has read it, each stream's acknowledgement and window, and who may
//! type. No locks, no I/O, no async: [`Terminal`](super::Terminal) holds it behind a short-held
//! mutex and carries out the [`TermEffects`] each change returns after unlocking (wake the
//! streams, size the pty). The model itself ([`super::screen::Screen`]) is not here: output is
//! forwarded from the ring first and modelled after, off the forwarding path.
//!
//! Invariants:
//! - Seqs grow by one per chunk pushed; the ring holds the newest chunks: every chunk the model
//!   has not read yet, and of the rest at most [`RING_BYTES`] (always the newest one), so a
//!   stream resumes exactly or gets a redraw, and a redraw always has the model's seq + 1
//!   onward still in the ring.
//! - The model reads the chunks in seq order, each once; `modeled` never passes `last_seq`.
//! - A stream never has more than its window of bytes sent past its connection's ack.
//! - At most one connection is interactive; a watcher never becomes it.
//! - An ack never passes the last seq pushed.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

use super::screen::fit;
use crate::session::ConnId;

/// Raw output kept for clients that resume without a redraw.
pub const RING_BYTES: usize = 512 * 1024;

/// What the caller does after a change, outside the lock.
#[derive(Debug, Default, PartialEq, Eq)]
#[must_use = "effects must be carried out"]
pub struct TermEffects {
    /// Streams waiting for output, acks or the end should look again.
    pub wake: bool,
    /// The pty's window size must become this (rows, columns).
    pub resize_pty: Option<(u16, u16)>,
}

impl TermEffects {
    fn wake() -> Self {
        Self {
            wake: true,
            resize_pty: None,
        }
    }
}

/// What a stream sends next.
#[derive(Debug)]
pub enum Next {
    Output(u64, Bytes),
    /// The stream fell out of the ring: repaint from the model ([`super::Terminal::redraw`]).
    Redraw,
    /// Everything is sent and the shell has ended.
    Ended(Option<i32>),
    /// Nothing to send (or the window is full): wait for a change.
    Wait,
}

/// What the model reads next ([`TermCore::model_work`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ModelWork {
    /// Output chunks by seq, oldest first, each following the model's last.
    pub chunks: Vec<(u64, Bytes)>,
    /// The window's size, taken once the model has read chunk `sized_after`.
    pub size: (u16, u16),
    pub sized_after: u64,
}

/// See the module docs.
#[derive(Debug)]
pub struct TermCore {
    /// The model's size (rows, columns), clamped by [`fit`], and the last seq pushed before
    /// the window took it (the model resizes once it has read that chunk).
    size: (u16, u16),
    sized_after: u64,
    /// Output chunks by seq, oldest first: the unmodelled ones and `RING_BYTES` of the rest.
    ring: VecDeque<(u64, Bytes)>,
    ring_bytes: usize,
    last_seq: u64,
    /// The last seq the model has read, and the bytes pushed after it.
    modeled: u64,
    unmodeled_bytes: usize,
    /// Highest seq each streaming connection acknowledged.
    acks: HashMap<ConnId, u64>,
    /// The connection allowed to type and resize.
    interactive: Option<ConnId>,
    watchers: u32,
    /// Set when the shell ended: its exit code (128 + signal for a signal).
    exit: Option<Option<i32>>,
}

impl TermCore {
    /// A terminal of `rows` × `cols` (clamped by [`fit`]) with no output yet.
    pub fn new(rows: u16, cols: u16) -> Self {
        Self {
            size: fit(rows, cols),
            sized_after: 0,
            ring: VecDeque::new(),
            ring_bytes: 0,
            last_seq: 0,
            modeled: 0,
            unmodeled_bytes: 0,
            acks: HashMap::new(),
            interactive: None,
            watchers: 0,
            exit: None,
        }
    }

    /// A terminal handed over: the numbering carried on, the ring kept. The ring counts as
    /// modelled: the caller has fed it into a fresh model.
    pub fn from_ring(rows: u16, cols: u16, last_seq: u64, ring: Vec<(u64, Bytes)>) -> Self {
        let mut core = Self::new(rows, cols);
        core.last_seq = last_seq;
        core.sized_after = last_seq;
        core.modeled = last_seq;
        core.ring_bytes = ring.iter().map(|(_, b)| b.len()).sum();
        core.ring = ring.into();
        core
    }

    /// Takes output read from the master into the ring, for the streams first and the model
    /// after ([`TermCore::model_work`]).
    pub fn push(&mut self, bytes: &[u8]) -> TermEffects {
        self.last_seq += 1;
        self.ring_bytes += bytes.len();
        self.unmodeled_bytes += bytes.len();
        self.ring.push_back((self.last_seq, Bytes::copy_from_slice(bytes)));
        self.trim();
        TermEffects::wake()
    }

    /// Lets the oldest modelled chunks go past `RING_BYTES` (the newest chunk always stays).
    fn trim(&mut self) {
        while self.ring_bytes > RING_BYTES && self.ring.len() > 1 {
            match self.ring.front() {
                Some((seq, old)) if *seq <= self.modeled => {
                    self.ring_bytes -= old.len();
                    self.ring.pop_front();
                }
                _ => break,
            }
        }
    }

    /// The model's next batch: the chunks it has not read, oldest first, up to `most` bytes
    /// (at least one when there is any), and the size to take on the way.
    pub fn model_work(&self, most: usize) -> ModelWork {
        let mut taken = 0;
        let chunks = self
            .unmodeled()
            .take_while(|(_, bytes)| {
                let first = taken == 0;
                taken += bytes.len();
                first || taken <= most
            })
            .cloned()
            .collect();
        ModelWork {
            chunks,
            size: self.size,
            sized_after: self.sized_after,
        }
    }

    /// The model has read every chunk up to `seq`.
    pub fn set_modeled(&mut self, seq: u64) {
        let seq = seq.min(self.last_seq);
        if seq <= self.modeled {
            return;
        }
        let read: usize = self
            .unmodeled()
            .take_while(|(s, _)| *s <= seq)
            .map(|(_, b)| b.len())
            .sum();
        self.unmodeled_bytes -= read;
        self.modeled = seq;
        self.trim();
    }

    /// The chunks after the model's last, oldest first (they are all in the ring, in seq order).
    fn unmodeled(&self) -> impl Iterator<Item = &(u64, Bytes)> {
        let read_in_ring = (self.modeled + 1).saturating_sub(self.first_seq()) as usize;
        self.ring.iter().skip(read_in_ring)
    }

    /// Bytes pushed that the model has not read yet.
    pub fn unmodeled_bytes(&self) -> usize {
        self.unmodeled_bytes
    }

    /// The last seq the model has read.
    pub fn modeled(&self) -> u64 {
        self.modeled
    }

    /// The shell ended with `code`.
    pub fn set_exit(&mut self, code: Option<i32>) -> TermEffects {
        self.exit = Some(code);
        TermEffects::wake()
    }

    /// The shell's exit code once it ended.
    pub fn exit(&self) -> Option<Option<i32>> {
        self.exit
    }

    fn first_seq(&self) -> u64 {
        self.ring.front().map_or(self.last_seq + 1, |(s, _)| *s)
    }

    /// True when `seq + 1` onward is still in the ring (a resume without a redraw).
    pub fn can_resume_after(&self, seq: u64) -> bool {
        seq <= self.last_seq && seq + 1 >= self.first_seq()
    }

    /// The next thing for a stream whose next seq is `cursor`, within `window` bytes past the
    /// connection's ack.
    pub fn next(&self, conn: ConnId, cursor: u64, window: u64) -> Next {
        let first = self.first_seq();
        if cursor < first && cursor <= self.last_seq {
            return Next::Redraw;
        }
        if cursor > self.last_seq {
            return match self.exit {
                Some(code) => Next::Ended(code),
                None => Next::Wait,
            };
        }
        let acked = self.acks.get(&conn).copied().unwrap_or(0);
        let in_flight: u64 = self
            .ring
            .iter()
            .filter(|(s, _)| *s > acked && *s < cursor)
            .map(|(_, b)| b.len() as u64)
            .sum();
        if in_flight >= window {
            return Next::Wait;
        }
        match self.ring.get((cursor - first) as usize) {
            Some((seq, bytes)) => Next::Output(*seq, bytes.clone()),
            None => Next::Wait,
        }
    }

    /// A connection wrote output up to `seq`.
    pub fn ack(&mut self, conn: ConnId, seq: u64) -> TermEffects {
        let last = self.last_seq;
        let entry = self.acks.entry(conn).or_default();
        *entry = (*entry).max(seq.min(last));
        TermEffects::wake()
    }

    /// A stream of `conn` starts, interactive (it takes the keyboard) or watching.
    pub fn join(&mut self, conn: ConnId, interactive: bool, acked: u64) {
        self.acks.insert(conn, acked);
        if interactive {
            self.interactive = Some(conn);
        } else {
            self.watchers += 1;
        }
    }

    /// A stream of `conn` ended.
    pub fn leave(&mut self, conn: ConnId, interactive: bool) {
        self.acks.remove(&conn);
        if interactive {
            if self.interactive == Some(conn) {
                self.interactive = None;
            }
        } else {
            self.watchers = self.watchers.saturating_sub(1);
        }
    }

    /// Whether `conn` may type and resize.
    pub fn is_interactive(&self, conn: ConnId) -> bool {
        self.interactive == Some(conn)
    }

    /// Streams watching beside the interactive client.
    pub fn watchers(&self) -> u32 {
        self.watchers
    }

    /// Takes a window of `rows` × `cols` (clamped by [`fit`]); the pty follows when the size
    /// changed, and the model once it has read the output pushed before.
    pub fn resize(&mut self, rows: u16, cols: u16) -> TermEffects {
        let size = fit(rows, cols);
        let mut effects = TermEffects::wake();
        if self.size != size {
            self.size = size;
            self.sized_after = self.last_seq;
            effects.resize_pty = Some(size);
        }
        effects
    }

    /// The model's size (rows, columns).
    pub fn size(&self) -> (u16, u16) {
        self.size
    }

    /// The last seq pushed and the ring, oldest first (a handover's form).
    pub fn ring(&self) -> (u64, impl Iterator<Item = &(u64, Bytes)>) {
        (self.last_seq, self.ring.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core() -> TermCore {
        TermCore::new(24, 80)
    }

    fn output(next: Next) -> (u64, Vec<u8>) {
        match next {
            Next::Output(seq, bytes) => (seq, bytes.to_vec()),
            other => panic!("expected output, got {other:?}"),
        }
    }

    #[test]
    fn output_is_numbered_and_a_stream_gets_it_in_order_then_waits() {
        let mut core = core();
        assert!(core.push(b"one").wake, "output wakes the streams");
        let _ = core.push(b"two");
        core.join(1, true, 0);
        assert_eq!(output(core.next(1, 1, 1 << 20)), (1, b"one".to_vec()));
        assert_eq!(output(core.next(1, 2, 1 << 20)), (2, b"two".to_vec()));
        assert!(matches!(core.next(1, 3, 1 << 20), Next::Wait));
        let _ = core.set_exit(Some(3));
        assert!(matches!(core.next(1, 3, 1 << 20), Next::Ended(Some(3))));
    }

    #[test]
    fn a_stream_waits_once_its_window_is_unacknowledged_and_an_ack_opens_it() {
        let mut core = core();
        for _ in 0..3 {
            let _ = core.push(&[b'x'; 100]);
        }
        core.join(7, false, 0);
        assert!(matches!(core.next(7, 2, 100), Next::Wait), "100 bytes in flight");
        assert!(core.ack(7, 1).wake);
        assert_eq!(output(core.next(7, 2, 100)).0, 2);
        let _ = core.ack(7, 99);
        assert_eq!(core.acks[&7], 3, "an ack never passes the last seq");
    }

    #[test]
    fn a_resume_point_that_left_the_ring_gets_a_redraw_and_the_ring_stays_bounded() {
        let mut core = core();
        let chunk = vec![b'y'; RING_BYTES / 4];
        for _ in 0..10 {
            let _ = core.push(&chunk);
        }
        assert_eq!(core.ring.len(), 10, "nothing the model has not read leaves the ring");
        core.set_modeled(10);
        assert!(core.ring_bytes <= RING_BYTES);
        assert!(!core.can_resume_after(1) && core.can_resume_after(9) && core.can_resume_after(10));
        assert!(matches!(core.next(1, 2, 1 << 30), Next::Redraw));
        let _ = core.push(&vec![b'z'; 2 * RING_BYTES]);
        core.set_modeled(11);
        assert_eq!(core.ring.len(), 1, "the newest chunk stays, however large");
    }

    #[test]
    fn one_interactive_connection_types_watchers_never_do_and_leaving_lets_go() {
        let mut core = core();
        core.join(1, true, 0);
        core.join(2, false, 0);
        assert!(core.is_interactive(1) && !core.is_interactive(2));
        core.join(3, true, 0);
        assert!(
            core.is_interactive(3) && !core.is_interactive(1),
            "--force takes the keys"
        );
        core.leave(1, true);
        assert!(core.is_interactive(3), "the old client leaving later changes nothing");
        core.leave(2, false);
        assert_eq!(core.watchers(), 0);
        core.leave(3, true);
        assert!(!core.is_interactive(3));
    }

    #[test]
    fn a_resize_sizes_the_pty_only_when_the_clamped_size_changes() {
        let mut core = core();
        assert_eq!(core.resize(24, 80).resize_pty, None);
        assert_eq!(core.resize(30, 100).resize_pty, Some((30, 100)));
        assert_eq!(core.resize(10_000, 10_000).resize_pty, Some((50, 10_000)));
        assert_eq!(core.size(), (50, 10_000));
    }

    #[test]
    fn the_model_takes_a_new_size_after_the_output_pushed_before_it() {
        let mut core = core();
        let _ = core.push(b"at 24x80");
        let _ = core.resize(30, 100);
        let _ = core.push(b"at 30x100");
        let work = core.model_work(1 << 20);
        assert_eq!((work.size, work.sized_after, work.chunks.len()), ((30, 100), 1, 2));
    }

    #[test]
    fn a_handed_over_ring_carries_the_numbering_on_as_read() {
        let ring = vec![(41, Bytes::from_static(b"hello ")), (42, Bytes::from_static(b"again"))];
        let mut core = TermCore::from_ring(24, 80, 42, ring);
        assert!(core.can_resume_after(40) && !core.can_resume_after(39));
        assert_eq!((core.modeled(), core.unmodeled_bytes()), (42, 0));
        let _ = core.push(b"!");
        assert_eq!(core.ring().0, 43);
        assert_eq!(core.model_work(1 << 20).chunks, vec![(43, Bytes::from_static(b"!"))]);
    }

    #[test]
    fn the_model_reads_each_chunk_once_in_order_in_batches() {
        let mut core = core();
        for chunk in [&b"ab"[..], b"cd", b"ef"] {
            let _ = core.push(chunk);
        }
        assert_eq!(core.unmodeled_bytes(), 6);
        let batch = core.model_work(3).chunks;
        assert_eq!(batch.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![1]);
        core.set_modeled(1);
        assert_eq!(core.unmodeled_bytes(), 4);
        let rest: Vec<u64> = core.model_work(1 << 20).chunks.iter().map(|(s, _)| *s).collect();
        assert_eq!(rest, vec![2, 3]);
        core.set_modeled(99);
        assert_eq!(
            (core.modeled(), core.unmodeled_bytes()),
            (3, 0),
            "never past the last seq"
        );
        assert!(core.model_work(1 << 20).chunks.is_empty());
        core.set_modeled(2);
        assert_eq!(core.modeled(), 3, "never goes back");
    }
}
