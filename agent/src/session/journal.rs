//! A command's journal: its output chunks and final status, numbered by `seq` from 1.
//!
//! Invariants: sequence numbers have no gaps (a [`EntryKind::Dropped`] entry stands for the
//! range of entries the `drop` buffering mode discarded, so the gap is reported, never silent);
//! an entry is discarded only once a client has acknowledged it, or by `drop` mode; every entry
//! carries the byte offset of its end so in-flight output is `sent_offset - acked_offset`.

use std::collections::VecDeque;

use bytes::Bytes;
use remora_wire::{CommandState, Stream, UnixMillis};

use super::spill::SpillRef;

/// Where an output chunk's bytes are.
#[derive(Debug, Clone)]
pub enum Data {
    Memory(Bytes),
    /// In the session's spill file.
    Spilled(SpillRef),
}

impl Data {
    pub fn len(&self) -> usize {
        match self {
            Data::Memory(bytes) => bytes.len(),
            Data::Spilled(chunk) => chunk.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One journal entry.
#[derive(Debug, Clone)]
pub enum EntryKind {
    Output {
        stream: Stream,
        data: Data,
    },
    /// Output discarded by `drop` buffering: entries `first_seq..=seq`, `bytes` bytes.
    Dropped {
        first_seq: u64,
        bytes: u64,
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
    /// Output bytes this entry holds (in memory or spilled).
    pub fn data_len(&self) -> usize {
        match &self.kind {
            EntryKind::Output { data, .. } => data.len(),
            _ => 0,
        }
    }
}

/// Bytes an operation freed, by where they were held.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Freed {
    pub memory: usize,
    pub spilled: usize,
}

impl Freed {
    fn add(&mut self, data: &Data) {
        match data {
            Data::Memory(bytes) => self.memory += bytes.len(),
            Data::Spilled(chunk) => self.spilled += chunk.len,
        }
    }
}

/// The ordered, acknowledgement-aware output of one command.
#[derive(Debug, Default, Clone)]
pub struct Journal {
    entries: VecDeque<Entry>,
    last_seq: u64,
    end_offset: u64,
    acked_seq: u64,
    acked_offset: u64,
    dropped_bytes: u64,
}

impl Journal {
    /// A journal read back from disk: `entries` are those after `acked_seq`.
    pub fn restore(entries: Vec<Entry>, acked_seq: u64, acked_offset: u64, dropped_bytes: u64) -> Self {
        let last_seq = entries.last().map_or(acked_seq, |e| e.seq);
        let end_offset = entries.last().map_or(acked_offset, |e| e.end_offset);
        Self {
            entries: entries.into(),
            last_seq,
            end_offset,
            acked_seq,
            acked_offset,
            dropped_bytes,
        }
    }

    /// Bytes held in memory by the entries.
    pub fn memory_bytes(&self) -> usize {
        self.entries.iter().map(Entry::data_len).sum()
    }

    /// Appends an output chunk; returns its seq.
    pub fn push_output(&mut self, stream: Stream, data: Data) -> u64 {
        self.end_offset += data.len() as u64;
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

    /// Discards entries up to `seq`. Acks never move backwards and never past the last entry.
    pub fn ack(&mut self, seq: u64) -> Freed {
        let seq = seq.min(self.last_seq);
        let mut freed = Freed::default();
        if seq <= self.acked_seq {
            return freed;
        }
        while self.entries.front().is_some_and(|e| e.seq <= seq) {
            let entry = self.entries.pop_front().expect("front checked");
            if let EntryKind::Output { data, .. } = &entry.kind {
                freed.add(data);
            }
            self.acked_offset = entry.end_offset;
        }
        self.acked_seq = seq;
        freed
    }

    /// Discards the oldest unacknowledged output chunk (drop mode), folding it into a
    /// `Dropped` entry at the front. Returns what it freed, or `None` when nothing is droppable.
    pub fn drop_oldest_output(&mut self) -> Option<Freed> {
        let index = self
            .entries
            .iter()
            .position(|e| matches!(e.kind, EntryKind::Output { .. }))?;
        if index > 1 || (index == 1 && !matches!(self.entries[0].kind, EntryKind::Dropped { .. })) {
            return None;
        }
        let entry = self.entries.remove(index).expect("position found");
        let EntryKind::Output { data, .. } = entry.kind else {
            unreachable!("found an output entry")
        };
        let mut freed = Freed::default();
        freed.add(&data);
        self.dropped_bytes += data.len() as u64;
        let first_seq = match self.entries.front() {
            Some(Entry {
                kind: EntryKind::Dropped { first_seq, .. },
                ..
            }) if index == 1 => *first_seq,
            _ => entry.seq,
        };
        let bytes = match self.entries.front() {
            Some(Entry {
                kind: EntryKind::Dropped { bytes, .. },
                ..
            }) if index == 1 => bytes + data.len() as u64,
            _ => data.len() as u64,
        };
        if index == 1 {
            self.entries.pop_front();
        }
        let kind = EntryKind::Dropped { first_seq, bytes };
        self.entries.push_front(Entry {
            seq: entry.seq,
            end_offset: entry.end_offset,
            kind,
        });
        Some(freed)
    }

    /// Entries after `after_seq`, up to `max_bytes` of output (at least one entry when any).
    pub fn entries_after(&self, after_seq: u64, max_bytes: u64) -> Vec<Entry> {
        let start = after_seq.max(self.acked_seq);
        let first = self.entries.partition_point(|e| e.seq <= start);
        let mut out = Vec::new();
        let mut budget = max_bytes;
        for entry in self.entries.iter().skip(first) {
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

    /// Highest seq written.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Output bytes discarded by `drop` buffering over the command's life.
    pub fn dropped_bytes(&self) -> u64 {
        self.dropped_bytes
    }

    /// True when every entry, including the final one, is acknowledged.
    pub fn fully_acked(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory(text: &str) -> Data {
        Data::Memory(Bytes::copy_from_slice(text.as_bytes()))
    }

    fn journal_with(chunks: &[&str]) -> Journal {
        let mut journal = Journal::default();
        for chunk in chunks {
            journal.push_output(Stream::Stdout, memory(chunk));
        }
        journal
    }

    fn seqs(journal: &Journal) -> Vec<u64> {
        journal.entries_after(0, u64::MAX).iter().map(|e| e.seq).collect()
    }

    #[test]
    fn seqs_are_gapless_from_one() {
        let mut journal = journal_with(&["a", "b"]);
        assert_eq!(journal.push_end(CommandState::Completed, Some(0), 0), 3);
        assert_eq!(seqs(&journal), [1, 2, 3]);
    }

    #[test]
    fn ack_discards_only_up_to_seq_and_frees_bytes() {
        let mut journal = journal_with(&["abc", "de", "f"]);
        assert_eq!(journal.ack(2), Freed { memory: 5, spilled: 0 });
        assert_eq!(journal.acked_offset(), 5);
        assert_eq!(seqs(&journal), [3]);
    }

    #[test]
    fn ack_never_moves_backwards_or_past_the_end() {
        let mut journal = journal_with(&["a", "b"]);
        journal.ack(1);
        assert_eq!(journal.ack(0), Freed::default());
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

    #[test]
    fn dropping_folds_the_oldest_chunks_into_one_reported_gap() {
        let mut journal = journal_with(&["aaaa", "bb", "c"]);
        assert_eq!(journal.drop_oldest_output().unwrap().memory, 4);
        assert_eq!(journal.drop_oldest_output().unwrap().memory, 2);
        let entries = journal.entries_after(0, u64::MAX);
        assert!(
            matches!(entries[0].kind, EntryKind::Dropped { first_seq: 1, bytes: 6 }),
            "{:?}",
            entries[0]
        );
        assert_eq!(entries[0].seq, 2);
        assert_eq!(seqs(&journal), [2, 3], "the gap keeps the numbering whole");
        assert_eq!(journal.dropped_bytes(), 6);
        assert_eq!(journal.entries_after(2, u64::MAX)[0].seq, 3);
        journal.ack(2);
        assert_eq!(seqs(&journal), [3]);
    }
}
