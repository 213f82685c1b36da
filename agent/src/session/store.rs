//! Sessions on disk, so a daemon that is killed, upgraded or rebooted does not lose them.
//!
//! Layout under `<data dir>/sessions/<instance id>/` (directories 0700, files 0600):
//! - `session.msgpack`: name, id, creation time, settings; written at creation and on changes.
//! - `<command>.journal`: a finished command — a header (its state) followed by each
//!   unacknowledged journal entry as its own MessagePack value, streamed to disk so a command of
//!   any size is saved in bounded memory; fsynced when the command ends, deleted once a client
//!   acknowledged all of it.
//! - `<command>.acked`: how far clients acknowledged a persisted journal since it was written.
//!
//! A daemon that starts finds these and brings the sessions back Broken (their shells are gone)
//! with every finished command's output receivable. Commands that were running when the daemon
//! died are lost. The stored types are this module's own: session state never serializes itself.

use std::{
    fs,
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use bytes::Bytes;
use remora_wire::{Buffering, CommandState, Stream, UnixMillis};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    command::CommandRecord,
    journal::{Data, Entry, EntryKind, Journal},
    SessionSettings,
};

/// Where one session's files live.
#[derive(Debug, Clone)]
pub struct SessionStore {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
pub struct StoredSession {
    pub id: Uuid,
    pub name: String,
    pub created_at: UnixMillis,
    pub configuration: String,
    pub idle_timeout_secs: u64,
    pub max_idle_timeout_secs: u64,
    pub buffering: Buffering,
    pub memory_limit: usize,
    pub spill_quota: u64,
    /// Missing in sessions stored before the limit existed.
    #[serde(default = "default_max_queued")]
    pub max_queued: usize,
}

fn default_max_queued() -> usize {
    1000
}

/// The first value of a `.journal` file; the entries follow it.
#[derive(Serialize, Deserialize)]
struct StoredCommand {
    id: u64,
    text: String,
    state: CommandState,
    exit_code: Option<i32>,
    queued_at: UnixMillis,
    started_at: Option<UnixMillis>,
    ended_at: Option<UnixMillis>,
    acked_seq: u64,
    acked_offset: u64,
    dropped_bytes: u64,
}

#[derive(Serialize, Deserialize)]
enum StoredEntry {
    Output {
        seq: u64,
        end_offset: u64,
        stream: Stream,
        data: serde_bytes::ByteBuf,
    },
    Dropped {
        seq: u64,
        end_offset: u64,
        first_seq: u64,
        bytes: u64,
    },
    Ended {
        seq: u64,
        end_offset: u64,
        state: CommandState,
        exit_code: Option<i32>,
        ended_at: UnixMillis,
    },
}

impl SessionStore {
    /// The store of session `id` under `root` (`<data dir>/sessions`).
    pub fn new(root: &Path, id: Uuid) -> Self {
        Self {
            dir: root.join(id.to_string()),
        }
    }

    /// Writes the session's description.
    pub fn save_session(&self, stored: &StoredSession) -> std::io::Result<()> {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir)?;
        write_file(&self.dir.join("session.msgpack"), &encode(stored)?, false)
    }

    /// Writes a finished command and its unacknowledged entries, one entry at a time (spilled
    /// ones are read back by the caller's iterator as it goes), through a temporary file.
    pub fn save_command(&self, record: &CommandRecord, entries: impl Iterator<Item = Entry>) -> std::io::Result<()> {
        let header = StoredCommand {
            id: record.id,
            text: record.text.clone(),
            state: record.state,
            exit_code: record.exit_code,
            queued_at: record.queued_at,
            started_at: record.started_at,
            ended_at: record.ended_at,
            acked_seq: record.journal.acked_seq(),
            acked_offset: record.journal.acked_offset(),
            dropped_bytes: record.journal.dropped_bytes(),
        };
        let path = self.dir.join(format!("{}.journal", record.id));
        let temp = path.with_extension("tmp");
        let file = private_file(&temp)?;
        let mut out = std::io::BufWriter::new(&file);
        write_value(&mut out, &header)?;
        for stored in entries.filter_map(|entry| stored_entry(&entry)) {
            write_value(&mut out, &stored)?;
        }
        out.flush()?;
        drop(out);
        file.sync_all()?;
        fs::rename(&temp, path)
    }

    /// Records how far a persisted journal is acknowledged; forgets it once all of it is.
    pub fn save_ack(&self, record: &CommandRecord) -> std::io::Result<()> {
        let journal = self.dir.join(format!("{}.journal", record.id));
        let acked = self.dir.join(format!("{}.acked", record.id));
        if record.journal.fully_acked() {
            let _ = fs::remove_file(acked);
            return fs::remove_file(journal);
        }
        let position = format!("{} {}\n", record.journal.acked_seq(), record.journal.acked_offset());
        write_file(&acked, position.as_bytes(), false)
    }

    /// Deletes everything stored for the session.
    pub fn remove(&self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Loads every stored session under `root`: its description and its finished commands.
pub fn load_all(root: &Path) -> Vec<(StoredSession, Vec<CommandRecord>)> {
    let Ok(dirs) = fs::read_dir(root) else {
        return Vec::new();
    };
    dirs.filter_map(|dir| {
        let dir = dir.ok()?.path();
        match load_session(&dir) {
            Ok(loaded) => Some(loaded),
            Err(err) => {
                tracing::error!(
                    "cannot restore the session stored in {}: {err}; leaving it there",
                    dir.display()
                );
                None
            }
        }
    })
    .collect()
}

fn load_session(dir: &Path) -> Result<(StoredSession, Vec<CommandRecord>), String> {
    let meta = fs::read(dir.join("session.msgpack")).map_err(|e| e.to_string())?;
    let session: StoredSession = rmp_serde::from_slice(&meta).map_err(|e| e.to_string())?;
    let mut commands = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "journal") {
            let (stored, entries) = read_journal(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let acked = fs::read_to_string(path.with_extension("acked")).ok();
            commands.push(restore_command(stored, entries, acked.as_deref()));
        }
    }
    commands.sort_by_key(|c| c.id);
    Ok((session, commands))
}

/// Reads a `.journal` file: its header, then entries until the end of the file.
fn read_journal(path: &Path) -> Result<(StoredCommand, Vec<StoredEntry>), String> {
    let file = fs::File::open(path).map_err(|e| e.to_string())?;
    let mut values = rmp_serde::Deserializer::new(std::io::BufReader::new(file));
    let header = StoredCommand::deserialize(&mut values).map_err(|e| e.to_string())?;
    let mut entries = Vec::new();
    loop {
        match StoredEntry::deserialize(&mut values) {
            Ok(entry) => entries.push(entry),
            Err(rmp_serde::decode::Error::InvalidMarkerRead(err))
                if err.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                return Ok((header, entries))
            }
            Err(err) => return Err(format!("entry {} is unreadable: {err}", entries.len() + 1)),
        }
    }
}

fn restore_command(stored: StoredCommand, entries: Vec<StoredEntry>, acked: Option<&str>) -> CommandRecord {
    let mut position = (stored.acked_seq, stored.acked_offset);
    if let Some((seq, offset)) = acked.and_then(|a| a.trim().split_once(' ')) {
        position = (seq.parse().unwrap_or(position.0), offset.parse().unwrap_or(position.1));
    }
    let entries: Vec<Entry> = entries
        .into_iter()
        .map(entry_of)
        .filter(|e| e.seq > position.0)
        .collect();
    let journal = Journal::restore(entries, position.0, position.1, stored.dropped_bytes);
    CommandRecord {
        id: stored.id,
        text: stored.text,
        state: stored.state,
        exit_code: stored.exit_code,
        queued_at: stored.queued_at,
        started_at: stored.started_at,
        ended_at: stored.ended_at,
        journal,
        persisted: true,
    }
}

/// The stored form of the session's settings.
pub fn stored_session(id: Uuid, name: &str, created_at: UnixMillis, settings: &SessionSettings) -> StoredSession {
    StoredSession {
        id,
        name: name.to_string(),
        created_at,
        configuration: settings.configuration.clone(),
        idle_timeout_secs: settings.idle_timeout_secs,
        max_idle_timeout_secs: settings.max_idle_timeout_secs,
        buffering: settings.buffering,
        memory_limit: settings.memory_limit,
        spill_quota: settings.spill_quota,
        max_queued: settings.max_queued,
    }
}

fn stored_entry(entry: &Entry) -> Option<StoredEntry> {
    let (seq, end_offset) = (entry.seq, entry.end_offset);
    Some(match &entry.kind {
        EntryKind::Output {
            stream,
            data: Data::Memory(bytes),
        } => StoredEntry::Output {
            seq,
            end_offset,
            stream: *stream,
            data: serde_bytes::ByteBuf::from(bytes.to_vec()),
        },
        EntryKind::Output {
            data: Data::Spilled { .. },
            ..
        } => return None,
        EntryKind::Dropped { first_seq, bytes } => StoredEntry::Dropped {
            seq,
            end_offset,
            first_seq: *first_seq,
            bytes: *bytes,
        },
        EntryKind::Ended {
            state,
            exit_code,
            ended_at,
        } => StoredEntry::Ended {
            seq,
            end_offset,
            state: *state,
            exit_code: *exit_code,
            ended_at: *ended_at,
        },
    })
}

fn entry_of(stored: StoredEntry) -> Entry {
    match stored {
        StoredEntry::Output {
            seq,
            end_offset,
            stream,
            data,
        } => Entry {
            seq,
            end_offset,
            kind: EntryKind::Output {
                stream,
                data: Data::Memory(Bytes::from(data.into_vec())),
            },
        },
        StoredEntry::Dropped {
            seq,
            end_offset,
            first_seq,
            bytes,
        } => Entry {
            seq,
            end_offset,
            kind: EntryKind::Dropped { first_seq, bytes },
        },
        StoredEntry::Ended {
            seq,
            end_offset,
            state,
            exit_code,
            ended_at,
        } => Entry {
            seq,
            end_offset,
            kind: EntryKind::Ended {
                state,
                exit_code,
                ended_at,
            },
        },
    }
}

fn encode<T: Serialize>(value: &T) -> std::io::Result<Vec<u8>> {
    rmp_serde::to_vec_named(value).map_err(std::io::Error::other)
}

fn write_value<T: Serialize>(out: &mut impl Write, value: &T) -> std::io::Result<()> {
    rmp_serde::encode::write_named(out, value).map_err(std::io::Error::other)
}

/// Creates (or truncates) a file readable by the user only.
fn private_file(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// Writes through a temporary file and a rename, so a crash leaves the old or the new file.
fn write_file(path: &Path, bytes: &[u8], sync: bool) -> std::io::Result<()> {
    let temp = path.with_extension("tmp");
    let mut file = private_file(&temp)?;
    file.write_all(bytes)?;
    if sync {
        file.sync_all()?;
    }
    fs::rename(&temp, path)
}
