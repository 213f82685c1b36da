//! What a stream sends next: one consistent view of a session's journals per pass.
//!
//! A stream delivers journals in command order, from the first unacknowledged entry, with at
//! most `window` bytes of output in flight (sent and not acknowledged). [`next_batch`] reads the
//! commands, their acknowledgements and their entries under the session's lock once, and
//! advances the stream's [`Cursors`]; the stream then loads spilled bytes and sends without it.

use std::collections::BTreeMap;

use super::{
    command::CommandRecord,
    journal::{Entry, EntryKind},
};

/// Smallest window honoured, so a confused client cannot make the agent send byte by byte.
pub const MIN_WINDOW: u64 = 64 * 1024;
/// Largest window honoured, bounding what one stream can have in flight.
pub const MAX_WINDOW: u64 = 64 * 1024 * 1024;
/// Output sent per pass in keep mode, where acks do not pace the stream.
const KEEP_BATCH: u64 = 1024 * 1024;

/// Which commands a stream delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One command, to its end (attached invoke, `receive --job`).
    Command(u64),
    /// Every command with unacknowledged output; with `follow`, until none is running or queued.
    Pending { follow: bool },
}

/// Where a stream stands in one command's journal.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    seq: u64,
    offset: u64,
    ended: bool,
}

/// A stream's position in every journal it delivers.
#[derive(Debug, Default)]
pub struct Cursors {
    commands: BTreeMap<u64, Cursor>,
    /// Exit code of the last command whose end this stream sent.
    pub last_exit: Option<i32>,
}

/// What one pass found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Entries to send; ask again right after sending them.
    Sent,
    /// Nothing new: wait for a change.
    Idle,
    /// The window is full: wait for an ack.
    WindowFull,
}

/// Entries to send, in order, and where the stream stands.
#[derive(Debug)]
pub struct Batch {
    pub entries: Vec<(u64, Entry)>,
    pub progress: Progress,
    /// The scope is delivered: the stream ends after sending `entries`.
    pub finished: bool,
}

/// The next entries for a stream; `window: None` is keep mode (nothing will be acknowledged).
pub fn next_batch(
    commands: &BTreeMap<u64, CommandRecord>,
    scope: Scope,
    cursors: &mut Cursors,
    window: Option<u64>,
) -> Batch {
    let wanted = match scope {
        Scope::Command(command) => vec![command],
        Scope::Pending { .. } => pending(commands),
    };
    let mut in_flight = window.map_or(0, |_| cursors.in_flight(commands));
    let mut entries = Vec::new();
    let mut window_full = false;
    let mut last_end = None;
    for command in wanted {
        let cursor = cursors.at(commands, command);
        if cursor.ended {
            continue;
        }
        let Some(record) = commands
            .get(&command)
            .filter(|r| !(r.is_ended() && r.journal.fully_acked()))
        else {
            cursor.ended = true;
            continue;
        };
        let budget = window.map_or(KEEP_BATCH, |w| w.saturating_sub(in_flight));
        if budget == 0 {
            window_full = true;
            break;
        }
        for entry in record.journal.entries_after(cursor.seq, budget) {
            in_flight += entry.end_offset - cursor.offset;
            cursor.seq = entry.seq;
            cursor.offset = entry.end_offset;
            if let EntryKind::Ended { exit_code, .. } = entry.kind {
                cursor.ended = true;
                last_end = Some(exit_code);
            }
            entries.push((command, entry));
        }
        if !cursor.ended {
            break;
        }
    }
    if let Some(exit_code) = last_end {
        cursors.last_exit = exit_code;
    }
    let progress = match (entries.is_empty(), window_full) {
        (false, _) => Progress::Sent,
        (true, true) => Progress::WindowFull,
        (true, false) => Progress::Idle,
    };
    let finished = cursors.finished(commands, scope, progress);
    Batch {
        entries,
        progress,
        finished,
    }
}

/// Ids of commands that still have unacknowledged entries or have not ended, in order.
fn pending(commands: &BTreeMap<u64, CommandRecord>) -> Vec<u64> {
    commands
        .values()
        .filter(|c| !c.is_ended() || !c.journal.fully_acked())
        .map(|c| c.id)
        .collect()
}

impl Cursors {
    /// The cursor of `command`, starting at (or moved up to) its acknowledged position.
    fn at(&mut self, commands: &BTreeMap<u64, CommandRecord>, command: u64) -> &mut Cursor {
        let (acked_seq, acked_offset) = commands
            .get(&command)
            .map_or((0, 0), |c| (c.journal.acked_seq(), c.journal.acked_offset()));
        let cursor = self.commands.entry(command).or_insert(Cursor {
            seq: acked_seq,
            offset: acked_offset,
            ended: false,
        });
        if !cursor.ended && cursor.seq < acked_seq {
            cursor.seq = acked_seq;
            cursor.offset = acked_offset;
        }
        cursor
    }

    /// Output bytes sent on this stream and not yet acknowledged by anyone.
    fn in_flight(&self, commands: &BTreeMap<u64, CommandRecord>) -> u64 {
        self.commands
            .iter()
            .map(|(command, cursor)| {
                let acked = commands
                    .get(command)
                    .map_or(cursor.offset, |c| c.journal.acked_offset());
                cursor.offset.saturating_sub(acked)
            })
            .sum()
    }

    fn ended(&self, command: u64) -> bool {
        self.commands.get(&command).is_some_and(|c| c.ended)
    }

    fn finished(&self, commands: &BTreeMap<u64, CommandRecord>, scope: Scope, progress: Progress) -> bool {
        match scope {
            Scope::Command(command) => self.ended(command),
            Scope::Pending { follow: false } => progress == Progress::Idle,
            Scope::Pending { follow: true } => pending(commands).into_iter().all(|c| self.ended(c)),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use remora_wire::{CommandState, Stream};

    use super::*;
    use crate::session::journal::Data;

    fn commands(outputs: &[(&[&str], bool)]) -> BTreeMap<u64, CommandRecord> {
        let mut map = BTreeMap::new();
        for (index, (chunks, ended)) in outputs.iter().enumerate() {
            let id = index as u64 + 1;
            let mut record = CommandRecord::queued(id, format!("cmd {id}"));
            record.state = CommandState::Running;
            for chunk in *chunks {
                record
                    .journal
                    .push_output(Stream::Stdout, Data::Memory(Bytes::copy_from_slice(chunk.as_bytes())));
            }
            if *ended {
                record.finish(CommandState::Completed, Some(id as i32));
            }
            map.insert(id, record);
        }
        map
    }

    fn seqs(batch: &Batch) -> Vec<(u64, u64)> {
        batch.entries.iter().map(|(c, e)| (*c, e.seq)).collect()
    }

    #[test]
    fn commands_are_delivered_in_order_and_a_running_one_holds_back_the_next() {
        let commands = commands(&[(&["a"], true), (&["b"], false), (&["c"], true)]);
        let mut cursors = Cursors::default();
        let batch = next_batch(
            &commands,
            Scope::Pending { follow: true },
            &mut cursors,
            Some(MIN_WINDOW),
        );
        assert_eq!(seqs(&batch), [(1, 1), (1, 2), (2, 1)]);
        assert_eq!(cursors.last_exit, Some(1));
        assert!(!batch.finished);
        let again = next_batch(
            &commands,
            Scope::Pending { follow: true },
            &mut cursors,
            Some(MIN_WINDOW),
        );
        assert_eq!(again.progress, Progress::Idle, "command 2 is still running");
    }

    #[test]
    fn the_window_bounds_what_is_in_flight_until_acked() {
        let big = "x".repeat(MIN_WINDOW as usize);
        let mut commands = commands(&[(&[&big, &big], true)]);
        let mut cursors = Cursors::default();
        let first = next_batch(&commands, Scope::Command(1), &mut cursors, Some(MIN_WINDOW));
        assert_eq!(seqs(&first), [(1, 1)]);
        let full = next_batch(&commands, Scope::Command(1), &mut cursors, Some(MIN_WINDOW));
        assert_eq!(full.progress, Progress::WindowFull);
        commands.get_mut(&1).unwrap().journal.ack(1);
        let rest = next_batch(&commands, Scope::Command(1), &mut cursors, Some(MIN_WINDOW));
        assert_eq!(seqs(&rest), [(1, 2), (1, 3)]);
        assert!(rest.finished);
    }

    #[test]
    fn a_new_stream_resumes_after_the_acknowledged_entries() {
        let mut commands = commands(&[(&["a", "b", "c"], true)]);
        commands.get_mut(&1).unwrap().journal.ack(2);
        let mut cursors = Cursors::default();
        let batch = next_batch(
            &commands,
            Scope::Pending { follow: false },
            &mut cursors,
            Some(MIN_WINDOW),
        );
        assert_eq!(seqs(&batch), [(1, 3), (1, 4)]);
        let done = next_batch(
            &commands,
            Scope::Pending { follow: false },
            &mut cursors,
            Some(MIN_WINDOW),
        );
        assert!(done.finished && done.entries.is_empty());
    }

    #[test]
    fn keep_mode_sends_without_acks_and_fully_acked_commands_are_skipped() {
        let mut commands = commands(&[(&["a"], true), (&["b"], true)]);
        commands.get_mut(&1).unwrap().journal.ack(2);
        let mut cursors = Cursors::default();
        let batch = next_batch(&commands, Scope::Pending { follow: false }, &mut cursors, None);
        assert_eq!(seqs(&batch), [(2, 1), (2, 2)]);
    }
}
