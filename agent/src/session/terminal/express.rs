//! The express path of a keystroke's echo: the interactive stream, while it waits with nothing
//! to send, lends the terminal its place in the output ([`Express`]), and the pump sends a short
//! read (an echo, a prompt) straight into the connection's queue before it reads again. The
//! stream takes its place back when it wakes and goes on from where the pump left it.
//!
//! Invariants:
//! - At most one express per terminal, lent by the interactive client's stream, and only while
//!   that stream is waiting: the stream and the pump never send at the same time, so output
//!   stays in seq order.
//! - The pump sends only what the stream itself would send next (`TermCore::next` at the
//!   express's cursor, within its window), and never waits: a full queue leaves the chunk to
//!   the stream.

use std::sync::Mutex;

use bytes::Bytes;
use remora_unix::LockRecover;

use super::core::{Next, TermCore};
use crate::session::ConnId;

/// Sends one chunk (`seq`, bytes) to the stream's connection without waiting; false when the
/// connection's queue has no room or is gone.
pub type SendNow = Box<dyn FnMut(u64, Bytes) -> bool + Send>;

/// A waiting stream's place in the output, lent to the pump.
pub struct Express {
    conn: ConnId,
    /// The next seq the stream would send.
    cursor: u64,
    window: u64,
    send: SendNow,
}

impl Express {
    pub fn new(conn: ConnId, cursor: u64, window: u64, send: SendNow) -> Self {
        Self {
            conn,
            cursor,
            window,
            send,
        }
    }

    /// Sends every chunk the stream would send next; true when it sent any.
    fn send_due(&mut self, core: &Mutex<TermCore>) -> bool {
        let mut sent = false;
        loop {
            let next = core.lock_or_recover().next(self.conn, self.cursor, self.window);
            let Next::Output(seq, data) = next else { return sent };
            if !(self.send)(seq, data) {
                return sent;
            }
            self.cursor = seq + 1;
            sent = true;
        }
    }
}

/// A terminal's slot for the one lent express.
#[derive(Default)]
pub(super) struct ExpressSlot(Mutex<Option<Express>>);

impl ExpressSlot {
    pub(super) fn lend(&self, express: Express) {
        *self.0.lock_or_recover() = Some(express);
    }

    /// Takes `conn`'s express back: the cursor it reached.
    pub(super) fn reclaim(&self, conn: ConnId) -> Option<u64> {
        let mut slot = self.0.lock_or_recover();
        match slot.as_ref() {
            Some(express) if express.conn == conn => slot.take().map(|e| e.cursor),
            _ => None,
        }
    }

    /// Sends what is due through the lent express, if there is one; true when it sent any.
    pub(super) fn send_due(&self, core: &Mutex<TermCore>) -> bool {
        self.0.lock_or_recover().as_mut().is_some_and(|e| e.send_due(core))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn core_with(chunks: &[&[u8]]) -> Mutex<TermCore> {
        let mut core = TermCore::new(24, 80);
        core.join(1, true, 0);
        for chunk in chunks {
            let _ = core.push(chunk);
        }
        Mutex::new(core)
    }

    type Sent = Arc<Mutex<Vec<(u64, Bytes)>>>;

    /// An express whose sends land in `sent` while `room` allows.
    fn recording(cursor: u64, window: u64, room: usize) -> (Express, Sent) {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let log = sent.clone();
        let send: SendNow = Box::new(move |seq, data| {
            let mut log = log.lock().unwrap();
            let fits = log.len() < room;
            if fits {
                log.push((seq, data));
            }
            fits
        });
        (Express::new(1, cursor, window, send), sent)
    }

    #[test]
    fn the_pump_sends_what_the_stream_would_send_next_in_order_and_hands_back_the_cursor() {
        let core = core_with(&[b"a", b"bc"]);
        let slot = ExpressSlot::default();
        let (express, sent) = recording(2, 1 << 20, usize::MAX);
        slot.lend(express);
        assert!(slot.send_due(&core));
        assert_eq!(*sent.lock().unwrap(), vec![(2, Bytes::from_static(b"bc"))]);
        assert!(!slot.send_due(&core), "nothing new: nothing sent twice");
        assert_eq!(slot.reclaim(2), None, "another connection's stream takes nothing");
        assert_eq!(slot.reclaim(1), Some(3));
        assert!(!slot.send_due(&core), "taken back: the pump sends nothing");
    }

    #[test]
    fn a_full_queue_or_a_full_window_leaves_the_chunk_to_the_stream() {
        let core = core_with(&[b"abcd", b"ef"]);
        let slot = ExpressSlot::default();
        let (express, sent) = recording(1, 1 << 20, 1);
        slot.lend(express);
        assert!(slot.send_due(&core));
        assert_eq!(sent.lock().unwrap().len(), 1);
        assert_eq!(slot.reclaim(1), Some(2), "the refused chunk is the stream's next");

        let (express, sent) = recording(2, 4, usize::MAX);
        slot.lend(express);
        assert!(!slot.send_due(&core), "four bytes in flight fill a window of four");
        assert!(sent.lock().unwrap().is_empty());
        assert_eq!(slot.reclaim(1), Some(2));
    }
}
