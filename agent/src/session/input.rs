//! Input streams: a command's stdin as client → agent bytes, the mirror of output journals.
//!
//! Invariants:
//! - Bytes carry their stream offset; the agent keeps `received` (the next offset it expects)
//!   and skips what a resending client repeats, so no byte is lost or given twice.
//! - The acknowledged offset is what the agent holds for the command. For a streamed input it
//!   is at most [`STREAM_BUFFER`] ahead of what the command has read, so a slow command holds
//!   the client back instead of filling the agent's memory. A client that ignores the
//!   acknowledgements and sends more than [`CLIENT_WINDOW`] past them overruns: the input is
//!   closed (the command's stdin ends, what was held is dropped) and every later frame of it is
//!   refused with [`InputError::Overrun`], so the agent never holds more than
//!   [`STREAM_LIMIT`] of a streamed input. A stored input (`--disconnected`,
//!   `--job`) is acknowledged as it is stored: in memory up to [`STORED_MEMORY`], then in a 0600
//!   file beside the session's spill file; the command starts only once it is complete.
//! - The state lock is short-held and never covers disk I/O: the stored file is written by the
//!   one appender (serialised by `append`) and read by the runspace outside the lock.
//! - A stored file is a guard: dropping the input removes it. A handover hands its name over
//!   (`exec` runs no destructors).

use remora_unix::LockRecover;
use std::{
    collections::{HashMap, VecDeque},
    fs::File,
    os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
};

use bytes::Bytes;
use remora_wire::InputMode;
use serde::{Deserialize, Serialize};

use tokio::sync::watch;
use uuid::Uuid;

/// Unconsumed bytes of a streamed input the agent acknowledges (and so may hold).
pub const STREAM_BUFFER: u64 = 4 * 1024 * 1024;
/// Bytes a client may send beyond the agent's acknowledgement: its window (docs/PROTOCOL.md).
pub const CLIENT_WINDOW: u64 = 8 * 1024 * 1024;
/// Most unconsumed bytes of a streamed input the agent holds before it closes the input.
pub const STREAM_LIMIT: u64 = STREAM_BUFFER + CLIENT_WINDOW;
/// Stored input kept in memory before the rest goes to a file.
pub const STORED_MEMORY: usize = 1024 * 1024;
/// Largest chunk handed to the runspace at once.
const READ_CHUNK: usize = 256 * 1024;

/// Why input was not taken.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("command {0} does not read input from the client (it was invoked with -n or a terminal stdin)")]
    NoInput(u64),
    #[error("input of command {command} arrived at offset {offset}, past the {received} bytes received; send from {received}")]
    Gap { command: u64, offset: u64, received: u64 },
    #[error("input of command {command} ran past its window ({STREAM_LIMIT} bytes beyond what the command read) by a client that did not wait for acknowledgements; the input was closed, so send it again with a new command and a client that waits for InputAck")]
    Overrun {
        command: u64,
        /// The input had already overrun: a later frame of the same flood.
        again: bool,
    },
    #[error("cannot store the input of command {command} in {}: {source}", path.display())]
    Store {
        command: u64,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What the runspace does next with a command's input.
#[derive(Debug)]
pub enum InputNext {
    /// Bytes to write to the command, at the start of what is unconsumed.
    Data(Bytes),
    /// All input was given: close the command's stdin.
    Eof,
    /// Nothing held; wait for a change.
    Wait,
}

/// The acknowledgement of an input stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputAckState {
    pub offset: u64,
    pub eof: bool,
    /// Every byte received is acknowledged.
    pub caught_up: bool,
}

/// The stored part of an input, in a file that is removed when the input is dropped (a
/// handover's `exec` drops nothing, so the file stays for the next program).
#[derive(Debug)]
struct StoredFile {
    path: PathBuf,
    file: Arc<File>,
    /// Stream offset of the file's first byte.
    base: u64,
}

impl Drop for StoredFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[derive(Debug)]
struct InputState {
    mode: InputMode,
    received: u64,
    consumed: u64,
    /// Unconsumed bytes in memory; they come before any stored file's.
    memory: VecDeque<Bytes>,
    memory_bytes: usize,
    file: Option<StoredFile>,
    eof: bool,
    /// The command ended: input is accepted and discarded.
    closed: bool,
    /// A client sent past the window: the input is closed and later frames are refused.
    overrun: bool,
}

/// One command's input stream.
#[derive(Debug)]
pub struct InputStream {
    state: Mutex<InputState>,
    /// Serialises appends (two connections of one client may overlap around a reconnect).
    append: tokio::sync::Mutex<()>,
    spill_path: PathBuf,
}

/// The input streams of a session's commands: one of the session's parts.
#[derive(Debug)]
pub struct Inputs {
    streams: Mutex<HashMap<u64, Arc<InputStream>>>,
    /// The session whose commands these are (names its stored files and log lines).
    session: Uuid,
    name: String,
    /// The session's change signal: input taken or written wakes the streams that acknowledge it.
    changed: watch::Sender<()>,
}

impl Inputs {
    pub fn new(session: Uuid, name: String, changed: watch::Sender<()>) -> Self {
        Self {
            streams: Mutex::new(HashMap::new()),
            session,
            name,
            changed,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<InputStream>>> {
        self.streams.lock_or_recover()
    }

    fn notify(&self) {
        self.changed.send_replace(());
    }

    fn get(&self, command: u64) -> Option<Arc<InputStream>> {
        self.lock().get(&command).cloned()
    }

    /// Whether `command` may start: it has no stored input, or all of it arrived.
    pub fn ready(&self, command: u64) -> bool {
        self.get(command).is_none_or(|input| {
            let state = input.lock();
            state.mode != InputMode::Stored || state.eof || state.closed
        })
    }
}

impl InputStream {
    fn lock(&self) -> MutexGuard<'_, InputState> {
        self.state.lock_or_recover()
    }

    fn ack(&self) -> InputAckState {
        let state = self.lock();
        let offset = match (state.mode, state.closed) {
            (InputMode::Stream, false) => state.received.min(state.consumed + STREAM_BUFFER),
            _ => state.received,
        };
        InputAckState {
            offset,
            eof: state.eof && offset == state.received,
            caught_up: offset == state.received,
        }
    }
}

impl InputState {
    fn new(mode: InputMode) -> Self {
        Self {
            mode,
            received: 0,
            consumed: 0,
            memory: VecDeque::new(),
            memory_bytes: 0,
            file: None,
            eof: false,
            closed: false,
            overrun: false,
        }
    }

    /// Whether taking `fresh` more bytes would hold a streamed input past [`STREAM_LIMIT`].
    fn overruns(&self, fresh: usize) -> bool {
        self.mode == InputMode::Stream && !self.closed && self.received + fresh as u64 > self.consumed + STREAM_LIMIT
    }

    /// Ends the input: nothing held, the command's stdin closes, later bytes are discarded.
    fn close(&mut self) {
        self.closed = true;
        self.consumed = self.received;
        self.memory.clear();
        self.memory_bytes = 0;
        self.file = None;
    }

    /// Drops `n` consumed bytes from the front.
    fn consume(&mut self, mut n: usize) {
        self.consumed += n as u64;
        while n > 0 {
            let Some(front) = self.memory.front_mut() else { return };
            let take = n.min(front.len());
            let _ = front.split_to(take);
            self.memory_bytes -= take;
            n -= take;
            if front.is_empty() {
                self.memory.pop_front();
            }
        }
    }
}

impl Inputs {
    /// Opens the input stream of a command being queued with `mode` (`Null` opens nothing).
    pub(super) fn open(&self, command: u64, mode: InputMode, spill_dir: &Path) {
        if mode == InputMode::Null {
            return;
        }
        let spill_path = spill_dir.join(format!("{}-input-{command}", self.session));
        let stream = InputStream {
            state: Mutex::new(InputState::new(mode)),
            append: tokio::sync::Mutex::new(()),
            spill_path,
        };
        self.lock().insert(command, Arc::new(stream));
    }

    /// The command's input mode (`Null` when it has none).
    pub fn mode(&self, command: u64) -> InputMode {
        self.get(command).map_or(InputMode::Null, |i| i.lock().mode)
    }

    /// Takes input bytes at `offset`; returns the acknowledgement to send.
    pub async fn push(&self, command: u64, offset: u64, data: Vec<u8>, eof: bool) -> Result<InputAckState, InputError> {
        let input = self.get(command).ok_or(InputError::NoInput(command))?;
        let _append = input.append.lock().await;
        let (fresh, to_file) = {
            let mut state = input.lock();
            if state.overrun {
                return Err(InputError::Overrun { command, again: true });
            }
            if offset > state.received {
                return Err(InputError::Gap {
                    command,
                    offset,
                    received: state.received,
                });
            }
            let skip = ((state.received - offset) as usize).min(data.len());
            let fresh = Bytes::from(data).slice(skip..);
            if state.overruns(fresh.len()) {
                state.overrun = true;
                state.close();
                drop(state);
                self.notify();
                return Err(InputError::Overrun { command, again: false });
            }
            let to_file = !state.closed
                && state.mode == InputMode::Stored
                && (state.file.is_some() || state.memory_bytes + fresh.len() > STORED_MEMORY);
            (fresh, to_file)
        };
        if to_file && !fresh.is_empty() {
            self.store_input(&input, command, &fresh)?;
        }
        {
            let mut state = input.lock();
            state.received += fresh.len() as u64;
            if !to_file && !state.closed && !fresh.is_empty() {
                state.memory_bytes += fresh.len();
                state.memory.push_back(fresh);
            }
            if state.closed {
                state.consumed = state.received;
            }
            state.eof |= eof;
        }
        self.notify();
        Ok(input.ack())
    }

    /// Appends to the stored file (created 0600 on first use), outside the state lock.
    fn store_input(&self, input: &InputStream, command: u64, bytes: &[u8]) -> Result<(), InputError> {
        let error = |source| InputError::Store {
            command,
            path: input.spill_path.clone(),
            source,
        };
        let (file, position) = {
            let mut state = input.lock();
            if state.file.is_none() {
                if let Some(dir) = input.spill_path.parent() {
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(dir)
                        .map_err(error)?;
                }
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&input.spill_path)
                    .map_err(error)?;
                let base = state.received;
                state.file = Some(StoredFile {
                    path: input.spill_path.clone(),
                    file: Arc::new(file),
                    base,
                });
            }
            let stored = state.file.as_ref().expect("just made");
            (stored.file.clone(), state.received - stored.base)
        };
        file.write_all_at(bytes, position).map_err(error)
    }

    /// The acknowledgement of `command`'s input, if it has one.
    pub fn ack(&self, command: u64) -> Option<InputAckState> {
        self.get(command).map(|input| input.ack())
    }

    /// What to write to the command next; a stored part is read outside the lock.
    pub fn next(&self, command: u64) -> InputNext {
        let Some(input) = self.get(command) else {
            return InputNext::Eof;
        };
        let (file, position, len) = {
            let state = input.lock();
            if let Some(front) = state.memory.front() {
                return InputNext::Data(front.clone());
            }
            match &state.file {
                Some(stored) if state.consumed < state.received => {
                    let len = ((state.received - state.consumed) as usize).min(READ_CHUNK);
                    (stored.file.clone(), state.consumed - stored.base, len)
                }
                _ if state.eof || state.closed => return InputNext::Eof,
                _ => return InputNext::Wait,
            }
        };
        match remora_unix::read_exact_at(&file, len, position) {
            Ok(buf) => InputNext::Data(Bytes::from(buf)),
            Err(err) => {
                tracing::error!(session = %self.name, command, "reading stored input failed: {err}; closing the command's stdin");
                InputNext::Eof
            }
        }
    }

    /// The runspace wrote `n` bytes of the input to the command.
    pub fn consumed(&self, command: u64, n: usize) {
        if let Some(input) = self.get(command) {
            input.lock().consume(n);
            self.notify();
        }
    }

    /// The command ended or its stdin closed: what it did not read is dropped, and later input
    /// is accepted and discarded so the client can finish.
    pub fn close(&self, command: u64) {
        if let Some(input) = self.get(command) {
            input.lock().close();
        }
    }

    /// The input streams in handover form; their stored files are left for the next program.
    pub fn handover(&self) -> Vec<HandedInput> {
        let inputs = self.lock();
        inputs
            .iter()
            .map(|(command, input)| {
                let state = input.lock();
                let memory = state.memory.iter().flat_map(|b| b.iter().copied()).collect();
                let file = state.file.as_ref().map(|stored| (stored.path.clone(), stored.base));
                HandedInput {
                    command: *command,
                    mode: state.mode,
                    received: state.received,
                    consumed: state.consumed,
                    memory,
                    file,
                    eof: state.eof,
                    closed: state.closed,
                    overrun: state.overrun,
                }
            })
            .collect()
    }

    /// Takes over input streams handed over by the previous program.
    pub fn adopt(&self, handed: Vec<HandedInput>, spill_dir: &Path) -> std::io::Result<()> {
        let mut inputs = self.lock();
        for input in handed {
            let spill_path = spill_dir.join(format!("{}-input-{}", self.session, input.command));
            let mut state = InputState::new(input.mode);
            state.received = input.received;
            state.consumed = input.consumed;
            state.eof = input.eof;
            state.closed = input.closed;
            state.overrun = input.overrun;
            if !input.memory.is_empty() {
                state.memory_bytes = input.memory.len();
                state.memory.push_back(Bytes::from(input.memory));
            }
            if let Some((path, base)) = input.file {
                let file = std::fs::OpenOptions::new().read(true).write(true).open(&path)?;
                state.file = Some(StoredFile {
                    path,
                    file: Arc::new(file),
                    base,
                });
            }
            let stream = InputStream {
                state: Mutex::new(state),
                append: tokio::sync::Mutex::new(()),
                spill_path,
            };
            inputs.insert(input.command, Arc::new(stream));
        }
        Ok(())
    }
}

/// One command's input stream, handed over.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HandedInput {
    pub command: u64,
    pub mode: InputMode,
    pub received: u64,
    pub consumed: u64,
    /// Unconsumed bytes held in memory.
    #[serde(with = "serde_bytes")]
    pub memory: Vec<u8>,
    /// The stored file and the stream offset of its first byte.
    pub file: Option<(PathBuf, u64)>,
    pub eof: bool,
    pub closed: bool,
    /// The input was closed for running past its window.
    #[serde(default)]
    pub overrun: bool,
}

/// Where a command's input fifo lives.
pub fn fifo_path(dir: &Path, session: uuid::Uuid, command: u64) -> PathBuf {
    dir.join(format!("{session}-stdin-{command}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{test_settings, Session, SessionSettings};

    fn session() -> (Session, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let settings = SessionSettings {
            spill_dir: dir.path().to_path_buf(),
            ..test_settings()
        };
        (Session::new("s".into(), false, settings), dir)
    }

    fn drain(session: &Session, command: u64) -> Vec<u8> {
        let mut got = Vec::new();
        while let InputNext::Data(bytes) = session.inputs.next(command) {
            got.extend_from_slice(&bytes);
            session.inputs.consumed(command, bytes.len());
        }
        got
    }

    #[tokio::test]
    async fn a_streamed_input_is_acknowledged_only_a_buffer_ahead_of_the_command_and_repeats_are_trimmed() {
        let (session, _dir) = session();
        let id = session
            .enqueue_job("cat".into(), Default::default(), InputMode::Stream)
            .unwrap()
            .id;
        let chunk = vec![7u8; STREAM_BUFFER as usize];
        let ack = session.inputs.push(id, 0, chunk.clone(), false).await.unwrap();
        assert_eq!((ack.offset, ack.caught_up), (STREAM_BUFFER, true));
        let ack = session.inputs.push(id, STREAM_BUFFER, chunk, false).await.unwrap();
        assert_eq!(
            ack.offset, STREAM_BUFFER,
            "nothing read yet: the second buffer is not acknowledged"
        );
        let ack = session.inputs.push(id, 10, vec![9; 20], true).await.unwrap();
        assert!(
            !ack.eof,
            "a repeat adds nothing; eof waits for the acknowledgement to catch up"
        );
        assert!(matches!(
            session.inputs.push(id, 3 * STREAM_BUFFER, vec![1], false).await,
            Err(InputError::Gap { .. })
        ));
        let read = drain(&session, id);
        assert_eq!(read.len() as u64, 2 * STREAM_BUFFER);
        let ack = session.inputs.ack(id).unwrap();
        assert_eq!((ack.offset, ack.eof), (2 * STREAM_BUFFER, true));
        assert!(matches!(session.inputs.next(id), InputNext::Eof));
    }

    #[tokio::test]
    async fn a_client_that_sends_past_its_window_gets_an_error_and_its_input_is_closed() {
        let (session, _dir) = session();
        let id = session
            .enqueue_job("cat".into(), Default::default(), InputMode::Stream)
            .unwrap()
            .id;
        let chunk = vec![5u8; 1024 * 1024];
        let mut offset = 0;
        while offset + chunk.len() as u64 <= STREAM_LIMIT {
            session.inputs.push(id, offset, chunk.clone(), false).await.unwrap();
            offset += chunk.len() as u64;
        }
        let over = session.inputs.push(id, offset, chunk.clone(), false).await;
        assert!(
            matches!(over, Err(InputError::Overrun { again: false, .. })),
            "{over:?}"
        );
        let text = over.unwrap_err().to_string();
        assert!(text.contains("window") && text.contains("InputAck"), "{text}");
        let later = session.inputs.push(id, offset, chunk, false).await;
        assert!(
            matches!(later, Err(InputError::Overrun { again: true, .. })),
            "{later:?}"
        );
        let held = session.inputs.get(id).unwrap().lock().memory_bytes;
        assert_eq!(held, 0, "what the overrun held is dropped");
        assert!(
            matches!(session.inputs.next(id), InputNext::Eof),
            "the command's stdin ends"
        );
    }

    #[tokio::test]
    async fn a_stored_input_spills_to_a_private_file_and_holds_its_command_until_complete() {
        let (session, dir) = session();
        let id = session
            .enqueue_job("cat".into(), Default::default(), InputMode::Stored)
            .unwrap()
            .id;
        assert_eq!(session.start_next().0, None, "the input is not complete");
        let data: Vec<u8> = (0..3 * STORED_MEMORY).map(|i| i as u8).collect();
        for (i, piece) in data.chunks(STORED_MEMORY / 2).enumerate() {
            let ack = session
                .inputs
                .push(id, (i * STORED_MEMORY / 2) as u64, piece.to_vec(), false)
                .await
                .unwrap();
            assert_eq!(
                ack.offset,
                ((i + 1) * STORED_MEMORY / 2) as u64,
                "stored input is acknowledged as it is stored"
            );
        }
        let spill = dir.path().join(format!("{}-input-{id}", session.id));
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&spill).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        session
            .inputs
            .push(id, data.len() as u64, Vec::new(), true)
            .await
            .unwrap();
        assert_eq!(session.start_next().0.map(|(id, _)| id), Some(id));
        assert!(drain(&session, id) == data, "memory first, then the file, in order");
        session.finish(id, remora_wire::CommandState::Completed, Some(0));
        assert!(!spill.exists(), "the stored file goes with the command");
    }
}
