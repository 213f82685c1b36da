//! Where a session keeps output no client has acknowledged, by buffering mode:
//! `block` holds it in memory and pauses the command at the limit; `drop` holds it in memory and
//! discards the oldest (reported as a gap); `spill` holds it in memory up to the limit, then in a
//! spill file up to the quota, and only then pauses the command.

use std::path::PathBuf;

use bytes::Bytes;
use remora_wire::Buffering;
use uuid::Uuid;

use super::{
    journal::{Data, Entry, EntryKind, Freed},
    spill::SpillFile,
    SessionSettings,
};

/// How far a command may run ahead of an attached, reading client in spill mode before it is
/// paced: a few receive windows, so the stream never waits on the command, and the daemon's
/// memory stays flat however long the stream.
const ATTACHED_READ_AHEAD: usize = 16 << 20;

/// A session's unacknowledged output accounting and spill file.
#[derive(Debug, Default)]
pub struct Buffer {
    /// Output bytes held in memory.
    pub memory: usize,
    /// Output bytes held in the spill file.
    pub spilled: usize,
    spill: Option<SpillFile>,
    /// Why spilling stopped working (disk full, permissions); the session then blocks.
    spill_error: Option<String>,
}

impl Buffer {
    /// Stores a chunk where the mode says: memory, or the spill file past the memory limit.
    ///
    /// While a client is `attached` and reading, spill mode keeps to memory and paces the command
    /// instead (see [`Buffer::pause_reason`]): writing to disk what is about to be sent anyway
    /// would only slow the stream down.
    pub fn store(&mut self, settings: &SessionSettings, attached: bool, session: Uuid, bytes: Bytes) -> Data {
        let spill = settings.buffering == Buffering::Spill
            && !attached
            && self.memory + bytes.len() > settings.memory_limit
            && (self.spilled as u64) < settings.spill_quota
            && self.spill_error.is_none();
        if spill {
            match self.spill_chunk(&settings.spill_dir, session, &bytes) {
                Ok(offset) => {
                    self.spilled += bytes.len();
                    return Data::Spilled {
                        offset,
                        len: bytes.len(),
                    };
                }
                Err(err) => {
                    tracing::error!(%session, "spilling output failed, blocking instead: {err}");
                    self.spill_error = Some(format!("spill file error: {err}"));
                }
            }
        }
        self.memory += bytes.len();
        Data::Memory(bytes)
    }

    fn spill_chunk(&mut self, dir: &std::path::Path, session: Uuid, bytes: &[u8]) -> std::io::Result<u64> {
        if self.spill.is_none() {
            self.spill = Some(SpillFile::create(dir, session)?);
        }
        self.spill.as_mut().expect("just created").append(bytes)
    }

    /// Accounts for acknowledged or dropped output; empties the spill file when it holds nothing.
    pub fn release(&mut self, freed: Freed) {
        self.memory -= freed.memory;
        self.spilled -= freed.spilled;
        if self.spilled == 0 {
            if let Some(spill) = self.spill.as_mut().filter(|s| !s.is_empty()) {
                if let Err(err) = spill.reset() {
                    tracing::warn!("cannot empty a spill file: {err}");
                }
            }
        }
    }

    /// Deletes the spill file of a session being removed (its spilled output is no longer
    /// wanted); nothing more is spilled after that.
    pub fn discard_spill(&mut self) {
        self.spill = None;
        self.spill_error = Some("the session was removed".into());
    }

    /// Why the command's output must not be read now, if it must not.
    pub fn pause_reason(&self, settings: &SessionSettings, attached: bool) -> Option<String> {
        let memory_full = self.memory >= settings.memory_limit;
        let read_ahead_full = self.memory >= settings.memory_limit.min(ATTACHED_READ_AHEAD);
        match settings.buffering {
            Buffering::Drop => None,
            Buffering::Spill if attached && read_ahead_full => {
                Some("a client is attached: the command is paced to what it receives".into())
            }
            // Spilling starts only once memory is (nearly) full, so a full quota means both are.
            Buffering::Spill if self.spilled as u64 >= settings.spill_quota => {
                Some("spill quota reached; waiting for a client to receive".into())
            }
            Buffering::Spill => match &self.spill_error {
                Some(err) if memory_full => Some(format!("{err}; waiting for a client to receive")),
                _ => None,
            },
            _ if memory_full => Some("output buffer full; waiting for a client to receive".into()),
            _ => None,
        }
    }

    /// The entry with its bytes in memory, read back from the spill file if needed. A chunk
    /// that cannot be read back is reported as dropped, never silently skipped.
    pub fn load(&self, mut entry: Entry) -> Entry {
        let EntryKind::Output {
            data: Data::Spilled { offset, len },
            stream,
        } = entry.kind
        else {
            return entry;
        };
        let read = self.spill.as_ref().map(|s| s.read(offset, len));
        entry.kind = match read {
            Some(Ok(bytes)) => EntryKind::Output {
                stream,
                data: Data::Memory(bytes),
            },
            other => {
                tracing::error!("cannot read spilled output back: {other:?}");
                EntryKind::Dropped {
                    first_seq: entry.seq,
                    bytes: len as u64,
                }
            }
        };
        entry
    }
}

/// Where spill files go: `<data dir>/spill`.
pub fn spill_dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("spill")
}
