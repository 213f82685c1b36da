//! A command's journal: its output chunks and final status, numbered by `seq` from 1.
//!
//! Invariants: sequence numbers have no gaps; an entry is discarded only once a client has
//! acknowledged it; every entry carries the byte offset of its end so in-flight output can be
//! measured as `sent_offset - acked_offset`.

use std::collections::VecDeque;

use bytes::Bytes;
use remora_wire::{CommandState, Stream, UnixMillis};

/// One journal entry.
#[derive(Debug, Clone)]
pub enum EntryKind {
    Output {
        stream: Stream,
        data: Bytes,
    },
    Ended {
        state: CommandState,
        exit_code: Option<i32>,
        ended_at: UnixMillis,
    },
}

/// An entry with its position.
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    /// Output bytes in the journal up to and including this entry.
    pub end_offset: u64,
    pub kind: EntryKind,
}

impl Entry {
    /// Output bytes this entry holds.
    pub fn data_len(&self) -> usize {
        match &self.kind {
            EntryKind::Output { data, .. } => data.len(),
            EntryKind::Ended { .. } => 0,
        }
    }
}

/// The ordered, acknowledged-aware output of one command.
#[derive(Debug, Default)]
pub struct Journal {
    entries: VecDeque<Entry>,
    last_seq: u64,
    end_offset: u64,
    acked_seq: u64,
    acked_offset: u64,
    held_bytes: usize,
}

impl Journal {
    /// Appends an output chunk; returns its seq.
    pub fn push_output(&mut self, stream: Stream, data: Bytes) -> u64 {
        self.end_offset += data.len() as u64;
        self.held_bytes += data.len();
        self.push(EntryKind::Output { stream, data })
    }

    /// Appends the final entry; returns its seq.
    pub fn push_end(&mut self, state: CommandState, exit_code: Option<i32>, ended_at: UnixMillis) -> u64 {
        self.push(EntryKind::Ended {
            state,
            exit_code,
            ended_at,
        })
    }

    fn push(&mut self, kind: EntryKind) -> u64 {
        self.last_seq += 1;
        self.entries.push_back(Entry {
            seq: self.last_seq,
            end_offset: self.end_offset,
            kind,
        });
        self.last_seq
    }

    /// Discards entries up to `seq`; returns the output bytes freed. Acks never move backwards
    /// and never past the last entry.
    pub fn ack(&mut self, seq: u64) -> usize {
        let seq = seq.min(self.last_seq);
        if seq <= self.acked_seq {
            return 0;
        }
        let mut freed = 0;
        while self.entries.front().is_some_and(|e| e.seq <= seq) {
            let entry = self.entries.pop_front().expect("front checked");
            freed += entry.data_len();
            self.acked_offset = entry.end_offset;
        }
        self.acked_seq = seq;
        self.held_bytes -= freed;
        freed
    }

    /// Entries after `after_seq`, up to `max_bytes` of output (at least one entry when any).
    pub fn entries_after(&self, after_seq: u64, max_bytes: u64) -> Vec<Entry> {
        let start = after_seq.max(self.acked_seq);
        let skip = self.entries.front().map_or(0, |e| (start + 1).saturating_sub(e.seq)) as usize;
        let mut out = Vec::new();
        let mut budget = max_bytes;
        for entry in self.entries.iter().skip(skip) {
            let len = entry.data_len() as u64;
            if !out.is_empty() && len > budget {
                break;
            }
            budget = budget.saturating_sub(len);
            out.push(entry.clone());
        }
        out
    }

    /// Highest acknowledged seq.
    pub fn acked_seq(&self) -> u64 {
        self.acked_seq
    }

    /// Output offset of everything acknowledged.
    pub fn acked_offset(&self) -> u64 {
        self.acked_offset
    }

    /// Output offset of the entry `seq` (or of the acked point when `seq` is already acked).
    pub fn offset_of(&self, seq: u64) -> u64 {
        self.entries
            .iter()
            .find(|e| e.seq == seq)
            .map_or(self.acked_offset, |e| e.end_offset)
    }

    /// Highest seq written.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Output bytes held because nobody acknowledged them yet.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// True when every entry, including the final one, is acknowledged.
    pub fn fully_acked(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal_with(chunks: &[&str]) -> Journal {
        let mut journal = Journal::default();
        for chunk in chunks {
            journal.push_output(Stream::Stdout, Bytes::copy_from_slice(chunk.as_bytes()));
        }
        journal
    }

    #[test]
    fn seqs_are_gapless_from_one() {
        let mut journal = journal_with(&["a", "b"]);
        let end = journal.push_end(CommandState::Completed, Some(0), 0);
        assert_eq!(end, 3);
        let seqs: Vec<u64> = journal.entries_after(0, u64::MAX).iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
    }

    #[test]
    fn ack_discards_only_up_to_seq_and_frees_bytes() {
        let mut journal = journal_with(&["abc", "de", "f"]);
        assert_eq!(journal.ack(2), 5);
        assert_eq!(journal.held_bytes(), 1);
        assert_eq!(journal.acked_offset(), 5);
        let rest = journal.entries_after(0, u64::MAX);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].seq, 3);
    }

    #[test]
    fn ack_never_moves_backwards_or_past_the_end() {
        let mut journal = journal_with(&["a", "b"]);
        journal.ack(1);
        assert_eq!(journal.ack(0), 0);
        journal.ack(99);
        assert_eq!(journal.acked_seq(), 2);
        assert!(journal.fully_acked());
    }

    #[test]
    fn entries_after_respects_the_byte_budget_but_returns_at_least_one() {
        let journal = journal_with(&["aaaa", "bbbb", "cccc"]);
        assert_eq!(journal.entries_after(0, 5).len(), 1);
        assert_eq!(journal.entries_after(0, 8).len(), 2);
        assert_eq!(journal.entries_after(0, 0).len(), 1);
        assert_eq!(journal.entries_after(2, u64::MAX)[0].seq, 3);
    }
}
