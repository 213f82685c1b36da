//! Input streams: client → agent bytes for a command's stdin, and the messages of `remora cp`.
//!
//! Input is the mirror of output journals: bytes carry their stream offset, the agent
//! acknowledges the offset up to which it holds them, and a client that reconnects sends again
//! from its last acknowledged offset; the agent skips what it already has. Paths are bytes, so
//! any file name (spaces, newlines, non-UTF-8) travels unchanged.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::SessionRef;

/// Where a command's stdin comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputMode {
    /// `/dev/null`.
    #[default]
    Null,
    /// [`Input`] frames while the command runs; the command starts at once.
    Stream,
    /// [`Input`] frames stored on the host to their end before the command starts
    /// (`--disconnected`, `--job`).
    Stored,
    /// A mode introduced by a newer peer.
    #[serde(other)]
    Unknown,
}

/// Stdin bytes of a command, at `offset` of its input stream. No reply; the agent answers with
/// [`InputAck`] as it takes bytes in. A frame that repeats bytes the agent holds is trimmed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Input {
    pub session: Uuid,
    pub command: u64,
    /// Stream offset of `data[0]`.
    pub offset: u64,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
    /// The input ends after `data`.
    #[serde(default)]
    pub eof: bool,
}

/// Event: the agent holds a command's input up to `offset` (exclusive); the client may forget
/// those bytes and send up to its window beyond them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputAck {
    pub session: Uuid,
    pub command: u64,
    pub offset: u64,
    /// The end of input was received too: nothing more to send.
    #[serde(default)]
    pub eof: bool,
}

/// What a path is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathKind {
    #[default]
    File,
    Dir,
    /// Copied as a link: its target text, not what it points to.
    Symlink,
    #[serde(other)]
    Unknown,
}

/// A path's type and attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathMeta {
    pub kind: PathKind,
    #[serde(default)]
    pub size: u64,
    /// Permission bits (`0o7777`).
    #[serde(default)]
    pub mode: u32,
    /// Modification time, seconds since the epoch.
    #[serde(default)]
    pub mtime: i64,
    #[serde(default)]
    pub mtime_nanos: u32,
    /// A symlink's target.
    #[serde(default, with = "serde_bytes")]
    pub link_target: Vec<u8>,
}

/// Request: create one path on the host (`remora cp` upload). Reply: for a file,
/// [`PutReady`] then, after the client's [`FileData`] frames and [`FileEnd`], [`PathDone`];
/// for a directory or symlink, [`PathDone`] at once. Errors name the path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PutPath {
    /// Relative `dest` is resolved against this session's runspace directory; `None`: home.
    #[serde(default)]
    pub session: Option<SessionRef>,
    /// The destination as given.
    #[serde(with = "serde_bytes")]
    pub dest: Vec<u8>,
    /// The source's file name: when `dest` is a directory (or ends in `/`) the path is created
    /// inside it under this name.
    #[serde(default, with = "serde_bytes")]
    pub name: Option<Vec<u8>>,
    /// `dest` must be an existing directory (several sources).
    #[serde(default)]
    pub into_dir: bool,
    pub meta: PathMeta,
    /// Apply `meta.mode`'s permission bits exactly and `meta.mtime` (`-p`); otherwise the mode is
    /// masked by the user's umask and the mtime is now. Set-uid, set-gid and sticky bits never.
    #[serde(default)]
    pub preserve: bool,
    /// Identifies the source version (size, mtime): a partial file of the same key is resumed.
    #[serde(default)]
    pub source_key: String,
    /// For a path inside a tree this copy creates: the tree's root as the first `PutPath` made
    /// it (the path its reply named), with `dest` below it. The agent opens the root once and
    /// enters each directory between it and `dest` without following links, so a directory
    /// another local user swapped for a link leads nowhere. `None`: `dest` is a plain path.
    #[serde(default, with = "serde_bytes")]
    pub within: Option<Vec<u8>>,
}

/// Reply to a file's [`PutPath`]: send its bytes from `offset` (what a partial file holds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PutReady {
    /// The absolute path the file will have.
    #[serde(with = "serde_bytes")]
    pub path: Vec<u8>,
    pub offset: u64,
}

/// File bytes at `offset`: client → agent for an upload (the [`PutPath`]'s request id), agent →
/// client for a download (the [`ReadFile`]'s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileData {
    pub offset: u64,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// Event: the agent has written an upload up to `offset`; the client may send its window beyond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileAck {
    pub offset: u64,
}

/// The end of a file's bytes, with the SHA-256 (lower-case hex) of the whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEnd {
    pub size: u64,
    pub sha256: String,
}

/// Reply: a path was created (renamed into place after its checksum matched).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathDone {
    #[serde(with = "serde_bytes")]
    pub path: Vec<u8>,
    /// File bytes written by this request (0 for directories, links, a resumed remainder's prefix).
    #[serde(default)]
    pub bytes: u64,
}

/// Request: describe a path to download. Reply: [`PathList`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GetPath {
    #[serde(default)]
    pub session: Option<SessionRef>,
    #[serde(with = "serde_bytes")]
    pub path: Vec<u8>,
    /// List a directory's tree; without it a directory is refused.
    #[serde(default)]
    pub recursive: bool,
}

/// Reply to [`GetPath`]: the path and, for a directory, everything below it, parents first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathList {
    /// The absolute path listed.
    #[serde(with = "serde_bytes")]
    pub root: Vec<u8>,
    pub entries: Vec<ListedPath>,
}

/// One path of a [`PathList`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListedPath {
    /// Relative to the root; empty for the root itself.
    #[serde(with = "serde_bytes")]
    pub path: Vec<u8>,
    pub meta: PathMeta,
}

/// Request: send a file's bytes from `offset`. Reply: [`FileData`] frames, then [`FileEnd`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadFile {
    /// An absolute path, as a [`PathList`] named it.
    #[serde(with = "serde_bytes")]
    pub path: Vec<u8>,
    #[serde(default)]
    pub offset: u64,
}
