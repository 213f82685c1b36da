//! Terminal messages: a session's interactive shell on a pseudo-terminal held by the agent.
//!
//! The terminal's output is one stream numbered `seq` = 1, 2, 3, … for the terminal's life and
//! acknowledged like a journal ([`TermAck`]); keystrokes go the other way numbered the same way
//! and acknowledged by the agent ([`TermInputAck`]), so a client that reconnects re-sends exactly
//! the input the agent has not taken yet and resumes output after the last byte it wrote.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Buffering, SessionInfo, SessionRef};

/// Largest window side (rows or columns) the agent accepts.
pub const MAX_TERM_SIDE: u16 = 10_000;
/// Largest keystroke payload of one [`TermInput`].
pub const MAX_TERM_INPUT: usize = 64 * 1024;
/// Default in-flight window of terminal output (bytes sent but not acknowledged).
pub const DEFAULT_TERM_WINDOW: u64 = 1024 * 1024;

fn default_term_window() -> u64 {
    DEFAULT_TERM_WINDOW
}

/// Request: open (or attach to) a session's terminal. Reply: [`TerminalOpened`], then
/// [`TermRedraw`] and [`TermOutput`] events, [`TermEnded`] when the shell exits, and a final
/// `StreamEnd` (with `released_by` when another client took the terminal over).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenTerminal {
    /// The session; `None` creates a `shell-…` session.
    #[serde(default)]
    pub session: Option<SessionRef>,
    /// Create the named session when it does not exist.
    #[serde(default)]
    pub create: bool,
    /// The client's window size; also the size of a terminal this starts.
    pub rows: u16,
    pub cols: u16,
    /// The client's `TERM`, given to a shell this starts.
    #[serde(default)]
    pub term: String,
    /// Take the session over from another attached client.
    #[serde(default)]
    pub force: bool,
    /// Read-only: never attaches, sends input or resizes; may watch beside the interactive client.
    #[serde(default)]
    pub watch: bool,
    /// Resume after this output seq of terminal `generation` (a reconnect): no redraw when the
    /// agent still holds everything after it.
    #[serde(default)]
    pub resume: Option<TermResume>,
    /// Output bytes the agent may have in flight to this client.
    #[serde(default = "default_term_window")]
    pub window: u64,
    /// Settings of a session this request creates.
    #[serde(default)]
    pub idle_timeout_secs: Option<u64>,
    #[serde(default)]
    pub configuration: Option<String>,
    #[serde(default)]
    pub buffering: Option<Buffering>,
}

/// Where a reconnecting client stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermResume {
    pub generation: u64,
    /// Last output seq the client wrote.
    pub seq: u64,
}

/// Reply to [`OpenTerminal`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TerminalOpened {
    pub session: SessionInfo,
    /// Identifies this terminal within the session (a new shell after `exit` gets a new one).
    pub generation: u64,
    /// True when this request started the shell.
    #[serde(default)]
    pub started: bool,
    /// True when the session was created by this request.
    #[serde(default)]
    pub created: bool,
    /// Highest input seq the agent has taken: the client re-sends what comes after.
    #[serde(default)]
    pub input_seq: u64,
}

/// Client → agent: keystrokes, numbered from 1 per terminal. A seq already taken is ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermInput {
    pub session: Uuid,
    pub generation: u64,
    pub seq: u64,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// Agent → client: input up to `seq` was written to the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermInputAck {
    pub session: Uuid,
    pub seq: u64,
}

/// Client → agent: the interactive client's window changed. No reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermResize {
    pub session: Uuid,
    pub rows: u16,
    pub cols: u16,
}

/// Client → agent: terminal output up to `seq` is written out. No reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermAck {
    pub session: Uuid,
    pub seq: u64,
}

/// Agent → client: terminal output bytes, numbered from 1 without gaps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TermOutput {
    pub session: Uuid,
    pub seq: u64,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// Agent → client: the screen as it stands after output `seq`; live output goes on at `seq + 1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TermRedraw {
    pub session: Uuid,
    pub seq: u64,
    /// Lines that scrolled off the top, oldest first, each with its colours (SGR sequences):
    /// printed first so they land in the user's own scrollback.
    #[serde(default)]
    pub scrollback: Vec<serde_bytes::ByteBuf>,
    /// Bytes that repaint the screen (main or alternate), cursor and modes.
    #[serde(with = "serde_bytes")]
    pub screen: Vec<u8>,
    /// The terminal's size.
    pub rows: u16,
    pub cols: u16,
}

/// Agent → client: the terminal's shell ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermEnded {
    pub session: Uuid,
    /// Exit code, or `128 + signal` when a signal ended it.
    #[serde(default)]
    pub exit_code: Option<i32>,
}

/// Request: the terminal's transcript since the last such request, as plain text.
/// Reply: [`Transcript`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermTranscript {
    pub session: SessionRef,
}

/// Reply to [`TermTranscript`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transcript {
    /// Lines that scrolled off since the last transcript, then the screen's lines.
    pub text: String,
    /// Lines that were dropped because the scrollback bound them, since the last transcript.
    #[serde(default)]
    pub lines_lost: u64,
}

/// What `ls` shows about a session's terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalInfo {
    pub rows: u16,
    pub cols: u16,
    /// The program in the terminal's foreground (`vim`, `bash`), when known.
    #[serde(default)]
    pub foreground: Option<String>,
    /// Exit code once the shell ended.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Read-only clients watching.
    #[serde(default)]
    pub watchers: u32,
}
