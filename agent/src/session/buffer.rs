//! Where a session keeps output no client has acknowledged, by buffering mode:
//! `block` holds it in memory and pauses the command at the limit; `drop` holds it in memory and
//! discards the oldest (reported as a gap); `spill` holds it in memory up to the limit, then in a
//! spill file up to the quota, and only then pauses the command.
//!
//! This is accounting only: it decides where a chunk goes and why a command must wait. The spill
//! file itself (`spill.rs`) is written and read outside the session's lock.

use std::path::PathBuf;

use remora_wire::Buffering;

use super::{journal::Freed, SessionSettings};

/// How far a command may run ahead of an attached, reading client in spill mode before it is
/// paced: a few receive windows, so the stream never waits on the command, and the daemon's
/// memory stays flat however long the stream.
const ATTACHED_READ_AHEAD: usize = 16 << 20;

/// Where the next chunk of output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Memory,
    Spill,
}

/// A session's unacknowledged output accounting.
#[derive(Debug, Default, Clone)]
pub struct Buffer {
    /// Output bytes held in memory.
    pub memory: usize,
    /// Output bytes held in the spill file.
    pub spilled: usize,
    /// Why spilling stopped working (disk full, permissions); the session then blocks.
    pub spill_error: Option<String>,
}

impl Buffer {
    /// Where a chunk of `len` bytes goes: memory, or the spill file past the memory limit.
    ///
    /// While a client is `attached` and reading, spill mode keeps to memory and paces the command
    /// instead (see [`Buffer::pause_reason`]): writing to disk what is about to be sent anyway
    /// would only slow the stream down.
    pub fn placement(&self, settings: &SessionSettings, attached: bool, len: usize) -> Placement {
        let spill = settings.buffering == Buffering::Spill
            && !attached
            && self.memory + len > settings.memory_limit
            && (self.spilled as u64) < settings.spill_quota
            && self.spill_error.is_none();
        if spill {
            Placement::Spill
        } else {
            Placement::Memory
        }
    }

    /// Accounts for acknowledged or dropped output.
    pub fn release(&mut self, freed: Freed) {
        self.memory -= freed.memory;
        self.spilled -= freed.spilled;
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
}

/// Where spill files go: `<data dir>/spill`.
pub fn spill_dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("spill")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::test_settings;

    #[test]
    fn spill_mode_spills_past_the_memory_limit_only_when_detached() {
        let settings = SessionSettings {
            buffering: Buffering::Spill,
            memory_limit: 10,
            ..test_settings()
        };
        let buffer = Buffer {
            memory: 8,
            ..Buffer::default()
        };
        assert_eq!(buffer.placement(&settings, false, 2), Placement::Memory);
        assert_eq!(buffer.placement(&settings, false, 3), Placement::Spill);
        assert_eq!(
            buffer.placement(&settings, true, 3),
            Placement::Memory,
            "attached: pace instead"
        );
    }

    #[test]
    fn a_spill_error_or_a_full_quota_keeps_output_in_memory_and_blocks() {
        let settings = SessionSettings {
            buffering: Buffering::Spill,
            memory_limit: 10,
            spill_quota: 5,
            ..test_settings()
        };
        let full_quota = Buffer {
            memory: 10,
            spilled: 5,
            ..Buffer::default()
        };
        assert_eq!(full_quota.placement(&settings, false, 1), Placement::Memory);
        assert!(full_quota.pause_reason(&settings, false).unwrap().contains("quota"));
        let failed = Buffer {
            memory: 10,
            spill_error: Some("spill file error: disk full".into()),
            ..Buffer::default()
        };
        assert_eq!(failed.placement(&settings, false, 1), Placement::Memory);
        assert!(failed.pause_reason(&settings, false).unwrap().contains("disk full"));
    }

    #[test]
    fn block_pauses_at_the_limit_and_drop_never_does() {
        let block = SessionSettings {
            buffering: Buffering::Block,
            memory_limit: 4,
            ..test_settings()
        };
        let full = Buffer {
            memory: 4,
            ..Buffer::default()
        };
        assert!(full.pause_reason(&block, false).is_some());
        let drop = SessionSettings {
            buffering: Buffering::Drop,
            ..block
        };
        assert!(full.pause_reason(&drop, false).is_none());
    }
}
