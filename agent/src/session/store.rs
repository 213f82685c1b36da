//! Sessions on disk, so a daemon that is killed, upgraded or rebooted does not lose them.
//!
//! Layout under `<data dir>/sessions/<instance id>/` (directories 0700, files 0600):
//! - `session.msgpack`: name, id, creation time, settings; written at creation and on changes.
//! - `<command>.journal`: a finished command — a header (its state) followed by each
//!   unacknowledged journal entry as its own MessagePack value, streamed to disk so a command of
//!   any size is saved in bounded memory; renamed into place before the command's end is
//!   reported (so it survives a crash of the daemon) and fsynced right after (a crash of the
//!   machine), deleted once a client acknowledged all of it. An empty journal (the machine
//!   stopped between the two) is skipped with an error in the log; any other unreadable one
//!   leaves the session on disk, unrestored.
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

use crate::error::{AgentError, Result};

use super::{
    command::CommandRecord,
    job::StoredWorkflow,
    journal::{Data, Entry, EntryKind, Journal},
    spill::SpillRef,
    SessionSettings,
};

/// Where one session's files live.
#[derive(Debug, Clone)]
pub struct SessionStore {
    dir: PathBuf,
}

#[derive(Debug, Serialize, Deserialize)]
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
    /// The configuration's `on_job_end` hook, carried through a handover.
    #[serde(default)]
    pub on_job_end: Option<String>,
}

fn default_max_queued() -> usize {
    1000
}

/// The first value of a `.journal` file; the entries follow it.
#[derive(Debug, Serialize, Deserialize)]
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
    /// Label, dependencies, retries; missing in journals stored before workflows existed.
    #[serde(default)]
    workflow: StoredWorkflow,
}

#[derive(Debug, Serialize, Deserialize)]
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
    /// Output in the session's spill file; only in a handover, which keeps the file.
    Spilled {
        seq: u64,
        end_offset: u64,
        stream: Stream,
        generation: u64,
        offset: u64,
        len: usize,
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
    pub fn save_session(&self, stored: &StoredSession) -> Result<()> {
        let path = self.dir.join("session.msgpack");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(AgentError::io("cannot create", &self.dir))?;
        let bytes = rmp_serde::to_vec_named(stored).map_err(|cause| AgentError::Encode { what: "session", cause })?;
        write_file(&path, &bytes).map_err(AgentError::io("cannot write", &path))
    }

    /// Writes a finished command and its unacknowledged entries, one entry at a time (spilled
    /// ones are read back by `load` as it goes), through a temporary file.
    pub fn save_command(&self, snapshot: &CommandSnapshot, load: impl Fn(Entry) -> Option<Entry>) -> Result<()> {
        let path = self.dir.join(format!("{}.journal", snapshot.header.id));
        let temp = path.with_extension("tmp");
        let io = |action| AgentError::io(action, &temp);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(AgentError::io("cannot create", &self.dir))?;
        let file = private_file(&temp).map_err(io("cannot create"))?;
        let mut out = std::io::BufWriter::new(&file);
        write_value(&mut out, &snapshot.header).map_err(io("cannot write"))?;
        for entry in snapshot.entries.iter().cloned().filter_map(load) {
            if let Some(stored) = stored_entry(&entry) {
                write_value(&mut out, &stored).map_err(io("cannot write"))?;
            }
        }
        out.flush().map_err(io("cannot write"))?;
        drop(out);
        fs::rename(&temp, &path).map_err(AgentError::io("cannot rename into place", &path))
    }

    /// Puts a saved command's journal, and its name in the directory, on the disk. Run after the
    /// save has been reported: the renamed file already survives a crash of the daemon, this
    /// makes it survive one of the machine. A journal forgotten meanwhile has nothing to sync.
    pub fn sync_command(&self, command: u64) -> Result<()> {
        let path = self.dir.join(format!("{command}.journal"));
        match fs::File::open(&path) {
            Ok(file) => file.sync_all().map_err(AgentError::io("cannot sync", &path))?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(AgentError::io("cannot open", &path)(err)),
        }
        fs::File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(AgentError::io("cannot sync", &self.dir))
    }

    /// Records how far a saved journal is acknowledged; forgets it once all of it is.
    pub fn save_ack(&self, command: u64, seq: u64, offset: u64, fully_acked: bool) -> Result<()> {
        let journal = self.dir.join(format!("{command}.journal"));
        let acked = self.dir.join(format!("{command}.acked"));
        if fully_acked {
            let _ = fs::remove_file(&acked);
            return match fs::remove_file(&journal) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                    Err(AgentError::io("cannot remove", &journal)(err))
                }
                _ => Ok(()),
            };
        }
        write_file(&acked, format!("{seq} {offset}\n").as_bytes()).map_err(AgentError::io("cannot write", &acked))
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

fn load_session(dir: &Path) -> Result<(StoredSession, Vec<CommandRecord>)> {
    let meta_path = dir.join("session.msgpack");
    let meta = fs::read(&meta_path).map_err(AgentError::io("cannot read", &meta_path))?;
    let session: StoredSession = rmp_serde::from_slice(&meta).map_err(|cause| AgentError::Unreadable {
        path: meta_path.clone(),
        what: "the session description".into(),
        cause,
    })?;
    let mut commands = Vec::new();
    for entry in fs::read_dir(dir).map_err(AgentError::io("cannot list", dir))?.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "journal") {
            if entry.metadata().is_ok_and(|m| m.len() == 0) {
                // Renamed into place but never synced before the machine went down.
                tracing::error!(
                    "{} is empty (the machine stopped before it reached the disk); that command's output is lost",
                    path.display()
                );
                continue;
            }
            let (stored, entries) = read_journal(&path)?;
            let acked = fs::read_to_string(path.with_extension("acked")).ok();
            commands.push(restore_command(stored, entries, acked.as_deref()));
        }
    }
    commands.sort_by_key(|c| c.id);
    Ok((session, commands))
}

/// Reads a `.journal` file: its header, then entries until the end of the file.
fn read_journal(path: &Path) -> Result<(StoredCommand, Vec<StoredEntry>)> {
    let unreadable = |what: String| {
        move |cause| AgentError::Unreadable {
            path: path.to_path_buf(),
            what,
            cause,
        }
    };
    let file = fs::File::open(path).map_err(AgentError::io("cannot open", path))?;
    let mut values = rmp_serde::Deserializer::new(std::io::BufReader::new(file));
    let header = StoredCommand::deserialize(&mut values).map_err(unreadable("the header".into()))?;
    let mut entries = Vec::new();
    loop {
        match StoredEntry::deserialize(&mut values) {
            Ok(entry) => entries.push(entry),
            Err(rmp_serde::decode::Error::InvalidMarkerRead(err))
                if err.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                return Ok((header, entries))
            }
            Err(err) => return Err(unreadable(format!("entry {}", entries.len() + 1))(err)),
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
        workflow: stored.workflow.into(),
    }
}

/// A finished command as it will be saved: its header and its unacknowledged entries, taken
/// under the session's lock (cheap: output bytes are shared, spilled ones are references).
#[derive(Debug)]
pub struct CommandSnapshot {
    header: StoredCommand,
    entries: Vec<Entry>,
}

impl CommandSnapshot {
    /// The command's id.
    pub fn id(&self) -> u64 {
        self.header.id
    }
}

/// Takes the snapshot of a command to save.
pub fn snapshot(record: &CommandRecord) -> CommandSnapshot {
    CommandSnapshot {
        header: StoredCommand {
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
            workflow: (&record.workflow).into(),
        },
        entries: record.journal.entries_after(0, u64::MAX),
    }
}

/// The settings of a stored session, with where this daemon keeps spill files and sessions.
pub fn settings_of(stored: &StoredSession, spill_dir: &Path, root: &Path) -> SessionSettings {
    SessionSettings {
        configuration: stored.configuration.clone(),
        idle_timeout_secs: stored.idle_timeout_secs,
        max_idle_timeout_secs: stored.max_idle_timeout_secs,
        buffering: stored.buffering,
        memory_limit: stored.memory_limit,
        spill_quota: stored.spill_quota,
        max_queued: stored.max_queued,
        spill_dir: spill_dir.to_path_buf(),
        store_root: Some(root.to_path_buf()),
        on_job_end: stored.on_job_end.clone(),
    }
}

/// A command in full for a handover: its header and every unacknowledged entry, spilled ones by
/// reference (the spill file is handed over with it).
#[derive(Debug, Serialize, Deserialize)]
pub struct HandedCommand {
    header: StoredCommand,
    entries: Vec<StoredEntry>,
}

/// The handover form of a command (queued, running or ended).
pub fn hand_command(record: &CommandRecord) -> HandedCommand {
    let CommandSnapshot { header, entries } = snapshot(record);
    HandedCommand {
        header,
        entries: entries.iter().filter_map(stored_entry).collect(),
    }
}

/// A command from its handover form.
pub fn take_command(handed: HandedCommand) -> CommandRecord {
    restore_command(handed.header, handed.entries, None)
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
        on_job_end: settings.on_job_end.clone(),
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
            stream,
            data: Data::Spilled(chunk),
        } => StoredEntry::Spilled {
            seq,
            end_offset,
            stream: *stream,
            generation: chunk.generation,
            offset: chunk.offset,
            len: chunk.len,
        },
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
        StoredEntry::Spilled {
            seq,
            end_offset,
            stream,
            generation,
            offset,
            len,
        } => Entry {
            seq,
            end_offset,
            kind: EntryKind::Output {
                stream,
                data: Data::Spilled(SpillRef {
                    generation,
                    offset,
                    len,
                }),
            },
        },
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
fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temp = path.with_extension("tmp");
    let mut file = private_file(&temp)?;
    file.write_all(bytes)?;
    fs::rename(&temp, path)
}

#[cfg(test)]
mod tests {
    use remora_wire::{CommandState, Stream};

    use super::*;
    use crate::session::test_settings;

    /// A session `name` created at `created_at`, saved in a scratch directory.
    fn saved_session(name: &str, created_at: u64) -> (tempfile::TempDir, Uuid, SessionStore) {
        let root = tempfile::tempdir().unwrap();
        let id = Uuid::new_v4();
        let store = SessionStore::new(root.path(), id);
        store
            .save_session(&stored_session(id, name, created_at, &test_settings()))
            .unwrap();
        (root, id, store)
    }

    fn ended_command(id: u64, chunks: &[&str]) -> CommandRecord {
        let mut record = CommandRecord::queued(id, format!("echo {id}"));
        for chunk in chunks {
            record
                .journal
                .push_output(Stream::Stdout, Data::Memory(Bytes::copy_from_slice(chunk.as_bytes())));
        }
        record.finish(CommandState::Completed, Some(3));
        record
    }

    fn texts(record: &CommandRecord) -> Vec<String> {
        record
            .journal
            .entries_after(0, u64::MAX)
            .into_iter()
            .filter_map(|e| match e.kind {
                EntryKind::Output {
                    data: Data::Memory(bytes),
                    ..
                } => Some(String::from_utf8_lossy(&bytes).into_owned()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_saved_session_comes_back_with_its_unacknowledged_output_and_acks() {
        let (root, id, store) = saved_session("kept", 7);
        let record = ended_command(1, &["a", "b", "c"]);
        store.save_command(&snapshot(&record), Some).unwrap();
        store.save_ack(1, 1, 1, false).unwrap();

        let loaded = load_all(root.path());
        let (session, commands) = &loaded[0];
        assert_eq!((session.id, session.name.as_str(), session.created_at), (id, "kept", 7));
        assert_eq!(commands[0].state, CommandState::Completed);
        assert_eq!(texts(&commands[0]), ["b", "c"], "the acknowledged chunk is gone");
        let mode = |path: &Path| std::os::unix::fs::PermissionsExt::mode(&fs::metadata(path).unwrap().permissions());
        assert_eq!(mode(&root.path().join(id.to_string()).join("1.journal")) & 0o777, 0o600);
    }

    #[test]
    fn a_fully_acknowledged_journal_is_deleted() {
        let (root, _, store) = saved_session("s", 0);
        store.save_command(&snapshot(&ended_command(1, &["x"])), Some).unwrap();
        store.save_ack(1, 2, 1, true).unwrap();
        assert!(load_all(root.path())[0].1.is_empty());
    }

    #[test]
    fn an_unreadable_journal_names_the_file_and_the_entry() {
        let (root, id, store) = saved_session("s", 0);
        store.save_command(&snapshot(&ended_command(1, &["x"])), Some).unwrap();
        let journal = root.path().join(id.to_string()).join("1.journal");
        let mut bytes = fs::read(&journal).unwrap();
        bytes.extend([0xc1, 0xc1]); // never-used MessagePack markers
        fs::write(&journal, bytes).unwrap();
        let err = load_session(&root.path().join(id.to_string())).unwrap_err().to_string();
        assert!(err.contains("1.journal") && err.contains("entry 3"), "{err}");
        assert!(load_all(root.path()).is_empty(), "left there, not restored half");
    }

    #[test]
    fn an_empty_journal_costs_its_command_not_the_session() {
        let (root, id, store) = saved_session("s", 0);
        store.save_command(&snapshot(&ended_command(1, &["x"])), Some).unwrap();
        store.save_command(&snapshot(&ended_command(2, &["y"])), Some).unwrap();
        store.sync_command(2).unwrap();
        fs::write(root.path().join(id.to_string()).join("1.journal"), b"").unwrap();
        let loaded = load_all(root.path());
        let commands = &loaded[0].1;
        assert_eq!(commands.iter().map(|c| c.id).collect::<Vec<_>>(), [2]);
        assert_eq!(texts(&commands[0]), ["y"]);
        store.sync_command(9).unwrap(); // forgotten meanwhile: nothing to sync
    }

    #[test]
    fn a_command_in_full_survives_the_handover_form_with_spilled_references() {
        let mut record = CommandRecord::queued(4, "make".into());
        record.state = CommandState::Running;
        let chunk = SpillRef {
            generation: 2,
            offset: 10,
            len: 5,
        };
        record.journal.push_output(Stream::Stderr, Data::Spilled(chunk));
        let back =
            take_command(rmp_serde::from_slice(&rmp_serde::to_vec_named(&hand_command(&record)).unwrap()).unwrap());
        assert_eq!((back.id, back.state), (4, CommandState::Running));
        let entries = back.journal.entries_after(0, u64::MAX);
        assert!(matches!(
            entries[0].kind,
            EntryKind::Output { stream: Stream::Stderr, data: Data::Spilled(c) } if c == chunk
        ));
    }
}
