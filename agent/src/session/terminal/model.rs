//! The screen model as the terminal feeds it: a [`Screen`] and the seq of the last output chunk
//! it has read. Output reaches attached clients from the ring first; the model reads the same
//! chunks after, in batches on a blocking thread (see [`super::Terminal`]), so the emulator's
//! cost is never on the path of bytes to a client.
//!
//! Invariant: the model has read exactly the chunks 1 ..= `seq`, in order, each once; a redraw
//! says so with that seq, and the stream goes on at `seq + 1`.

use remora_wire::TermRedraw;
use uuid::Uuid;

use super::{core::ModelWork, screen::Screen};

/// See the module docs.
#[derive(Debug)]
pub(super) struct Model {
    screen: Screen,
    seq: u64,
}

impl Model {
    /// A model that has read the chunks up to `seq` already (0 for a new terminal).
    pub(super) fn new(screen: Screen, seq: u64) -> Self {
        Self { screen, seq }
    }

    /// Reads a batch (oldest first), skipping any chunk it has read already, and takes the
    /// window's size once it has read the output pushed before the resize.
    pub(super) fn read(&mut self, work: &ModelWork) {
        for (seq, bytes) in &work.chunks {
            if *seq > work.sized_after {
                self.take_size(work.size);
            }
            if *seq == self.seq + 1 {
                self.screen.process(bytes);
                self.seq = *seq;
            }
        }
        if self.seq >= work.sized_after {
            self.take_size(work.size);
        }
    }

    fn take_size(&mut self, (rows, cols): (u16, u16)) {
        if self.screen.size() != (rows, cols) {
            self.screen.resize(rows, cols);
        }
    }

    /// The last seq read.
    pub(super) fn seq(&self) -> u64 {
        self.seq
    }

    /// The screen as it stands after the chunks read.
    pub(super) fn redraw(&self, session: Uuid) -> TermRedraw {
        let (rows, cols) = self.screen.size();
        TermRedraw {
            session,
            seq: self.seq,
            scrollback: self
                .screen
                .scrollback()
                .into_iter()
                .map(serde_bytes::ByteBuf::from)
                .collect(),
            screen: self.screen.repaint(),
            rows,
            cols,
        }
    }

    /// The transcript since the last call, as plain text, and lines lost to the bound.
    pub(super) fn transcript(&mut self) -> (String, u64) {
        self.screen.take_transcript()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn chunks_are_read_in_seq_order_once_and_a_redraw_names_the_last() {
        let mut model = Model::new(Screen::new(24, 80, 100), 0);
        model.read(&work(&[(1, "one "), (2, "two ")], (24, 80), 0));
        model.read(&work(&[(2, "two "), (3, "three")], (24, 80), 0));
        model.read(&work(&[(5, " gap")], (24, 80), 0));
        assert_eq!(model.seq(), 3, "a resent chunk is skipped, a gap is never jumped");
        let redraw = model.redraw(Uuid::nil());
        assert_eq!(redraw.seq, 3);
        let mut copy = vt100::Parser::new(24.try_into().unwrap(), 80.try_into().unwrap(), 0);
        copy.process(&redraw.screen);
        assert_eq!(copy.screen().contents().trim_end(), "one two three");
    }

    #[test]
    fn a_resize_takes_effect_between_the_chunks_before_and_after_it() {
        let mut model = Model::new(Screen::new(24, 80, 100), 0);
        let wide = "x".repeat(100);
        model.read(&work(&[(1, &wide), (2, "\r\n"), (3, &wide)], (24, 120), 2));
        let redraw = model.redraw(Uuid::nil());
        assert_eq!((redraw.rows, redraw.cols), (24, 120));
        let mut copy = vt100::Parser::new(24.try_into().unwrap(), 120.try_into().unwrap(), 0);
        copy.process(&redraw.screen);
        let rows: Vec<String> = copy.screen().rows(0, 120).take(3).collect();
        assert_eq!(rows[0].len(), 80, "chunk 1 wrapped at the old width: {rows:?}");
        assert_eq!(rows[2].len(), 100, "chunk 3 drawn at the new width: {rows:?}");
    }

    #[test]
    fn a_resize_with_nothing_left_to_read_is_taken_at_once() {
        let mut model = Model::new(Screen::new(24, 80, 100), 4);
        model.read(&work(&[], (30, 90), 4));
        let redraw = model.redraw(Uuid::nil());
        assert_eq!((redraw.rows, redraw.cols, redraw.seq), (30, 90, 4));
    }

    fn work(chunks: &[(u64, &str)], size: (u16, u16), sized_after: u64) -> ModelWork {
        ModelWork {
            chunks: chunks
                .iter()
                .map(|(seq, text)| (*seq, Bytes::from(text.to_string())))
                .collect(),
            size,
            sized_after,
        }
    }
}
