//! Every message of the protocol. Each client request says which reply it gets.
//!
//! Top-level frames are structs (`{id, body}`) so a peer that cannot understand a body can still
//! read the request id and answer it with [`ErrorCode::UnknownMessage`]. Every struct field that a
//! later version may add carries `#[serde(default)]`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use crate::terminal::*;
use crate::transfer::{
    FileAck, FileData, FileEnd, GetPath, Input, InputAck, InputMode, PathDone, PathList, PutPath, PutReady, ReadFile,
};

/// Protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Oldest protocol version this build still accepts.
pub const MIN_PROTOCOL_VERSION: u32 = 1;
/// Name of the SSH subsystem the agent serves.
pub const SUBSYSTEM_NAME: &str = "remora";

/// Milliseconds since the Unix epoch.
pub type UnixMillis = u64;

/// Correlates a request with its replies and events. `0` is used for messages that expect none.
pub type RequestId = u64;

/// One frame from the client to the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientFrame {
    /// Echoed in every reply and event caused by this frame.
    pub id: RequestId,
    pub body: ClientBody,
}

/// Just the id of a client frame, for answering a body this side cannot decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameId {
    #[serde(default)]
    pub id: RequestId,
}

/// What the client asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientBody {
    /// First frame of every connection. Reply: [`AgentBody::Welcome`] or an error, then close.
    Hello(Hello),
    /// Create a named session. Reply: [`AgentBody::Session`].
    NewSession(NewSession),
    /// List sessions. Reply: [`AgentBody::Sessions`].
    ListSessions(ListSessions),
    /// Run a command in a session. Reply: [`AgentBody::Invoked`], then, when `follow`, the
    /// command's [`AgentBody::Output`] and [`AgentBody::CommandEnded`] events and a final
    /// [`AgentBody::StreamEnd`].
    Invoke(Invoke),
    /// Get output not yet acknowledged. Reply: [`AgentBody::Receiving`], output events, then
    /// [`AgentBody::StreamEnd`].
    Receive(Receive),
    /// Remove sessions, stopping their commands and runspaces. Reply: [`AgentBody::Removed`].
    RemoveSessions(RemoveSessions),
    /// List a session's commands. Reply: [`AgentBody::Commands`].
    ListCommands(ListCommands),
    /// Stop a command. Reply: [`AgentBody::Commands`] with the command(s) being stopped.
    StopCommand(StopCommand),
    /// Detach whoever is attached. Reply: [`AgentBody::Session`].
    Disconnect(Disconnect),
    /// The client has durably written a command's output up to `seq`. No reply.
    Ack(Ack),
    /// Answer to the agent's [`AgentBody::Ping`]. No reply.
    Pong(Heartbeat),
    /// Open or attach to a session's terminal (see [`OpenTerminal`]).
    OpenTerminal(OpenTerminal),
    /// Keystrokes for the terminal. Reply: [`AgentBody::TermInputAck`].
    TermInput(TermInput),
    /// The interactive client's window size changed. No reply.
    TermResize(TermResize),
    /// Terminal output written out up to a seq. No reply.
    TermAck(TermAck),
    /// The terminal's transcript. Reply: [`AgentBody::Transcript`].
    TermTranscript(TermTranscript),
    /// Wait until a session's chosen jobs end (Wait-Job). Reply: with `updates`, a
    /// [`AgentBody::Commands`] table now and whenever a chosen job changes; then
    /// [`AgentBody::Waited`].
    Wait(WaitJobs),
    /// Stdin bytes for a command invoked with an [`InputMode`] other than `null`. No reply;
    /// [`AgentBody::InputAck`] events follow.
    Input(Input),
    /// Create a path on the host (`cp` upload); see [`PutPath`].
    PutPath(PutPath),
    /// Bytes of an upload, with the [`PutPath`]'s request id. No reply; [`AgentBody::FileAck`].
    FileData(FileData),
    /// The end of an upload, with the [`PutPath`]'s request id. Reply: [`AgentBody::PathDone`].
    FileEnd(FileEnd),
    /// Describe a path to download. Reply: [`AgentBody::PathList`].
    GetPath(GetPath),
    /// Download a file. Reply: [`AgentBody::FileData`] frames, then [`AgentBody::FileEnd`].
    ReadFile(ReadFile),
    /// End this client's use of the connection but keep the transport for a later client (the
    /// connection holder's spare channels): everything is released as if the connection had
    /// closed, then the agent waits, without the hello timeout, for the next [`Hello`]. Allowed
    /// before a hello too (a channel opened ahead of need). Reply: [`AgentBody::StandingBy`],
    /// the last frame before the next hello's [`AgentBody::Welcome`].
    Standby,
}

/// Opens a connection: versions, capabilities and who is asking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// Newest protocol version the client speaks.
    pub protocol: u32,
    /// Oldest protocol version the client speaks.
    #[serde(default)]
    pub min_protocol: u32,
    /// Client software and version, for logs and `ls`.
    #[serde(default)]
    pub software: String,
    /// Optional features the client understands.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Where the client runs, shown as the attachment's origin.
    #[serde(default)]
    pub client: ClientInfo,
}

/// Identity of a client process, as it describes itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub pid: u32,
    /// Random per client process: a reconnecting client takes its own stale attachment back.
    #[serde(default)]
    pub id: Option<Uuid>,
}

/// Names a session by its name or by its instance id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionRef {
    Name(String),
    Id(Uuid),
}

/// How a session holds output that no client has acknowledged yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Buffering {
    /// At the memory limit the command's output is no longer read, so the command stalls.
    #[default]
    Block,
    /// At the memory limit the oldest unacknowledged output is discarded and reported.
    Drop,
    /// Past the memory limit output goes to a journal file, up to a disk quota.
    Spill,
    /// A mode introduced by a newer peer.
    #[serde(other)]
    Unknown,
}

impl Buffering {
    /// The mode's name as the wire, agent.toml and `--buffering` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Buffering::Block => "block",
            Buffering::Drop => "drop",
            Buffering::Spill => "spill",
            Buffering::Unknown => "unknown",
        }
    }
}

/// Request: create a session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewSession {
    pub name: String,
    /// Configuration to take defaults from; `None` is the agent's default configuration.
    #[serde(default)]
    pub configuration: Option<String>,
    #[serde(default)]
    pub idle_timeout_secs: Option<u64>,
    #[serde(default)]
    pub buffering: Option<Buffering>,
}

/// Request: list sessions, optionally only those whose name matches a glob.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListSessions {
    #[serde(default)]
    pub name_glob: Option<String>,
}

/// Request: run one command in a session's runspace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invoke {
    /// Session to run in; `None` runs in a temporary session removed once its output is acked.
    #[serde(default)]
    pub session: Option<SessionRef>,
    /// Shell text, run by the runspace's shell as if typed at its prompt.
    pub command: String,
    /// Create the named session when it does not exist.
    #[serde(default)]
    pub create: bool,
    /// Stream the command's output to this connection; `false` is `--disconnected`.
    #[serde(default)]
    pub follow: bool,
    /// Unacknowledged output bytes the agent may have in flight to this client.
    #[serde(default = "default_window")]
    pub window: u64,
    /// Set the session's idle timeout (a created session's, or an existing one's).
    #[serde(default)]
    pub idle_timeout_secs: Option<u64>,
    /// Configuration of a session this request creates (`None`: the agent's default); an
    /// existing session with another configuration is refused (`invalid_request`).
    #[serde(default)]
    pub configuration: Option<String>,
    /// Buffering mode of a session this request creates (`None`: the configuration's); an
    /// existing session with another mode is refused (`invalid_request`).
    #[serde(default)]
    pub buffering: Option<Buffering>,
    /// The job's label, dependencies and retries.
    #[serde(default)]
    pub job: JobOptions,
    /// Where the command's stdin comes from.
    #[serde(default)]
    pub stdin: InputMode,
}

/// How a job takes part in its session's workflow: its label, the jobs it waits for, and how
/// often it is rerun after failing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOptions {
    /// Free text shown by `jobs` and matched by `--label GLOB`.
    #[serde(default)]
    pub label: Option<String>,
    /// Jobs of the same session that must end first; unknown ids and cycles are refused.
    #[serde(default)]
    pub after: Vec<Dependency>,
    /// Reruns after a non-zero exit: at most `retries + 1` attempts, in the same runspace.
    #[serde(default)]
    pub retries: u32,
    /// Pause between a failed attempt and the next.
    #[serde(default)]
    pub retry_delay_ms: u64,
}

/// One job another waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    pub job: u64,
    #[serde(default)]
    pub kind: DependencyKind,
}

/// What a dependency asks of the job it names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DependencyKind {
    /// Run once it has ended, however (`--after`).
    #[default]
    Ended,
    /// Run only if it completed with exit code 0; otherwise the waiting job is Skipped
    /// (`--after-ok`).
    Succeeded,
    #[serde(other)]
    Unknown,
}

/// Request: wait until a session's chosen jobs have ended (Wait-Job).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitJobs {
    pub session: SessionRef,
    /// The jobs to wait for; empty: every job the session has when the request arrives.
    #[serde(default)]
    pub commands: Vec<u64>,
    /// Only the chosen jobs whose label matches this glob.
    #[serde(default)]
    pub label_glob: Option<String>,
    /// Return when the first chosen job has ended, not all of them.
    #[serde(default)]
    pub any: bool,
    /// Send the chosen jobs' table at once and whenever one changes (`jobs --follow`).
    #[serde(default)]
    pub updates: bool,
}

/// Reply to [`WaitJobs`]: the chosen jobs, ended (or, with `any`, at least one of them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Waited {
    pub session: SessionInfo,
    pub commands: Vec<CommandInfo>,
    /// The job whose end the wait reports: the last to end (with `any`, the first); `None` when
    /// no job was chosen.
    #[serde(default)]
    pub last: Option<u64>,
}

/// Request: deliver output not yet acknowledged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receive {
    pub session: SessionRef,
    /// Keep streaming until no command is running or queued.
    #[serde(default)]
    pub follow: bool,
    /// Unacknowledged output bytes the agent may have in flight to this client.
    #[serde(default = "default_window")]
    pub window: u64,
    /// Only this command (job), followed to its end.
    #[serde(default)]
    pub command: Option<u64>,
    /// Leave the output to be received again: the client does not acknowledge it (Receive-Job -Keep).
    #[serde(default)]
    pub keep: bool,
    /// Take the session over from another attached client (`connect --force`).
    #[serde(default)]
    pub force: bool,
    /// Change the session's idle timeout while attaching (`connect --idle-timeout`).
    #[serde(default)]
    pub idle_timeout_secs: Option<u64>,
}

/// Request: detach whoever is attached to a session, optionally changing its idle timeout and
/// buffering mode (Disconnect-PSSession). Reply: [`AgentBody::Session`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disconnect {
    pub session: SessionRef,
    #[serde(default)]
    pub idle_timeout_secs: Option<u64>,
    #[serde(default)]
    pub buffering: Option<Buffering>,
}

impl Receive {
    /// Everything unacknowledged, following running commands to their end.
    pub fn follow_all(session: SessionRef) -> Self {
        Self {
            session,
            follow: true,
            window: DEFAULT_WINDOW,
            command: None,
            keep: false,
            force: false,
            idle_timeout_secs: None,
        }
    }
}

/// Request: list a session's commands (jobs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListCommands {
    pub session: SessionRef,
    /// Only jobs whose label matches this glob.
    #[serde(default)]
    pub label_glob: Option<String>,
}

/// Request: interrupt a running command (SIGINT to its process group, SIGKILL after a grace
/// period) or cancel a queued one, without ending the runspace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StopCommand {
    pub session: SessionRef,
    /// The job to stop; `None` is the running one.
    #[serde(default)]
    pub command: Option<u64>,
}

/// Default in-flight window: enough to keep a fast link busy, small enough to bound memory.
pub const DEFAULT_WINDOW: u64 = 8 * 1024 * 1024;

fn default_window() -> u64 {
    DEFAULT_WINDOW
}

/// Request: remove every session matching any of the names (globs) or ids.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RemoveSessions {
    #[serde(default)]
    pub names: Vec<String>,
    #[serde(default)]
    pub ids: Vec<Uuid>,
    /// Report what would be removed without removing it.
    #[serde(default)]
    pub dry_run: bool,
}

/// The client has written out a command's output up to and including `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub session: Uuid,
    pub command: u64,
    pub seq: u64,
}

/// One frame from the agent to the client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentFrame {
    /// The request this frame answers; `0` for frames not tied to a request.
    pub id: RequestId,
    pub body: AgentBody,
}

/// Replies and events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AgentBody {
    Welcome(Welcome),
    Session(SessionInfo),
    Sessions(SessionList),
    Invoked(Invoked),
    Receiving(Receiving),
    Output(Output),
    OutputDropped(OutputDropped),
    CommandEnded(CommandEnded),
    StreamEnd(StreamEnd),
    Removed(SessionList),
    Commands(CommandList),
    Error(ErrorReply),
    /// Reply to [`ClientBody::Wait`].
    Waited(Waited),
    /// Sent to clients that announced [`CAPABILITY_HEARTBEAT`] when they have been quiet; a
    /// client that stays silent for three intervals is disconnected (its link is dead).
    Ping(Heartbeat),
    TerminalOpened(TerminalOpened),
    TermOutput(TermOutput),
    TermRedraw(TermRedraw),
    TermInputAck(TermInputAck),
    TermEnded(TermEnded),
    Transcript(Transcript),
    InputAck(InputAck),
    PutReady(PutReady),
    FileAck(FileAck),
    FileData(FileData),
    FileEnd(FileEnd),
    PathDone(PathDone),
    PathList(PathList),
    /// Reply to [`ClientBody::Standby`]: nothing of the previous client remains, and the next
    /// frame the connection accepts is a [`Hello`].
    StandingBy,
}

/// Capability: the client answers [`AgentBody::Ping`] with [`ClientBody::Pong`].
pub const CAPABILITY_HEARTBEAT: &str = "heartbeat";

/// A heartbeat, echoed back unchanged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    #[serde(default)]
    pub sent_at: UnixMillis,
}

/// Reply to [`Hello`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// Version both sides will speak.
    pub protocol: u32,
    #[serde(default)]
    pub software: String,
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Stable id of this agent's state directory: a reconnect checks it reached the same agent.
    pub agent_id: Uuid,
    /// Host name the agent runs on.
    #[serde(default)]
    pub host: String,
    /// User the agent runs as.
    #[serde(default)]
    pub user: String,
    /// Largest frame body the agent accepts from now on.
    #[serde(default)]
    pub max_frame: u64,
    /// The agent's version (`0.1.0`); it changes when a handover replaces the binary.
    #[serde(default)]
    pub agent_version: String,
    /// The daemon's process id: the same before and after a handover.
    #[serde(default)]
    pub daemon_pid: u32,
}

/// Lifecycle of a session, relative to the client asking (PowerShell's `State`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionState {
    /// Attached to the asking client.
    Opened,
    /// Not attached to the asking client (maybe to another: see availability).
    Disconnected,
    /// The runspace is gone; output collected so far can still be received.
    Broken,
    /// Removed.
    Closed,
    #[serde(other)]
    Unknown,
}

/// Whether the asking client may attach (PowerShell's `Availability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Availability {
    /// Attached to the asking client.
    Available,
    /// Attached to another client.
    Busy,
    /// Attached to nobody.
    None,
    #[serde(other)]
    Unknown,
}

/// Which client holds a session, and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// `user@host pid N via ADDRESS` as far as known.
    pub from: String,
    pub since: UnixMillis,
}

/// Everything a client may show about a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub name: String,
    pub instance_id: Uuid,
    /// Host name of the agent holding the session.
    pub host: String,
    pub state: SessionState,
    pub availability: Availability,
    pub configuration: String,
    pub created_at: UnixMillis,
    #[serde(default)]
    pub disconnected_at: Option<UnixMillis>,
    pub idle_timeout_secs: u64,
    /// When an unattached session will be removed for idleness.
    #[serde(default)]
    pub expires_at: Option<UnixMillis>,
    pub buffering: Buffering,
    #[serde(default)]
    pub attached: Option<Attachment>,
    #[serde(default)]
    pub commands_running: u32,
    #[serde(default)]
    pub commands_queued: u32,
    #[serde(default)]
    pub commands_completed: u32,
    /// Of the ended commands, those that failed: Completed with a non-zero exit code, or Failed.
    #[serde(default)]
    pub commands_failed: u32,
    /// Why the session is Broken.
    #[serde(default)]
    pub broken_reason: Option<String>,
    /// Output bytes held for clients that have not acknowledged them.
    #[serde(default)]
    pub unacked_bytes: u64,
    /// Removed with its last command's acknowledged output (sessions of `invoke` without a name).
    #[serde(default)]
    pub temporary: bool,
    /// Of `unacked_bytes`, those held in the spill file.
    #[serde(default)]
    pub spilled_bytes: u64,
    /// Output discarded by `drop` buffering, over the session's life.
    #[serde(default)]
    pub dropped_bytes: u64,
    /// Why commands are paused, when buffering limits hold them (block mode full, spill quota).
    #[serde(default)]
    pub blocked_reason: Option<String>,
    /// Version of the agent holding the session.
    #[serde(default)]
    pub agent_version: String,
    /// The session's terminal, when it has one.
    #[serde(default)]
    pub terminal: Option<TerminalInfo>,
}

/// Reply listing sessions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionList {
    pub sessions: Vec<SessionInfo>,
}

/// State of one command (job).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandState {
    Queued,
    Running,
    /// Finished with an exit code (zero or not).
    Completed,
    /// Could not run or finish: the runspace died under it.
    Failed,
    /// Interrupted on request or by removal.
    Stopped,
    /// Never ran: a job it depended on with `--after-ok` did not succeed (see `reason`).
    Skipped,
    #[serde(other)]
    Unknown,
}

/// One command and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandInfo {
    /// Numbered from 1 within its session.
    pub id: u64,
    pub command: String,
    pub state: CommandState,
    #[serde(default)]
    pub exit_code: Option<i32>,
    pub queued_at: UnixMillis,
    #[serde(default)]
    pub started_at: Option<UnixMillis>,
    #[serde(default)]
    pub ended_at: Option<UnixMillis>,
    /// Output of this command discarded by `drop` buffering.
    #[serde(default)]
    pub dropped_bytes: u64,
    /// Label, dependencies and retries it was invoked with.
    #[serde(default)]
    pub options: JobOptions,
    /// Attempts started so far (more than 1 after retries).
    #[serde(default)]
    pub attempts: u32,
    /// Why it ended as it did, when that is not its exit code (Skipped: which dependency).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Reply to [`Invoke`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invoked {
    pub session: SessionInfo,
    pub command: CommandInfo,
}

/// A session's commands, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandList {
    pub session: SessionInfo,
    pub commands: Vec<CommandInfo>,
}

/// Reply to [`Receive`], before any output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receiving {
    pub session: SessionInfo,
}

/// Which of a command's output streams a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Event: a chunk of a command's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Output {
    pub session: Uuid,
    pub command: u64,
    /// Position in the command's journal, from 1, without gaps.
    pub seq: u64,
    pub stream: Stream,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// Event: `drop` buffering discarded this command's journal entries `first_seq..=seq`
/// (`bytes` bytes of output) before any client received them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputDropped {
    pub session: Uuid,
    pub command: u64,
    pub seq: u64,
    pub first_seq: u64,
    pub bytes: u64,
}

/// Event: a command ended. It is the last entry of the command's journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandEnded {
    pub session: Uuid,
    pub command: u64,
    pub seq: u64,
    pub state: CommandState,
    #[serde(default)]
    pub exit_code: Option<i32>,
    pub ended_at: UnixMillis,
}

/// Event: an invoke or receive stream has delivered everything it will.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamEnd {
    /// Exit code of the session's most recent ended command, when there is one.
    #[serde(default)]
    pub last_exit_code: Option<i32>,
    /// Commands still running or queued when the stream ended (receive without follow).
    #[serde(default)]
    pub commands_pending: u32,
    /// Set when the stream ended because this client lost the session: "taken over by …" or
    /// "disconnected by …".
    #[serde(default)]
    pub released_by: Option<String>,
}

/// Why a request failed. Codes are stable; messages are for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame could not be read (too large, truncated, not MessagePack).
    BadFrame,
    /// The first frame was not a hello.
    HelloRequired,
    /// No protocol version in common.
    VersionMismatch,
    /// A well-formed frame with a body this agent does not know.
    UnknownMessage,
    /// A session name that is empty, too long or has forbidden characters.
    InvalidName,
    /// A request whose fields make no sense together.
    InvalidRequest,
    SessionNotFound,
    SessionExists,
    /// The session's runspace is gone; receive its output and remove it.
    SessionBroken,
    /// The session is attached to another client.
    SessionBusy,
    /// The agent hit a limit (sessions, queue, memory).
    LimitReached,
    /// The agent failed; see its log.
    Internal,
    /// A path (`cp`) does not exist.
    PathNotFound,
    /// The user may not read or write a path.
    PermissionDenied,
    /// The host's disk (or quota) is full.
    NoSpace,
    /// A file would replace a directory or the other way round, or a directory was given
    /// without `-r`.
    PathConflict,
    /// A copied file's SHA-256 differs from its source's.
    ChecksumMismatch,
    /// Another file system error.
    IoFailed,
    #[serde(other)]
    Unknown,
}

/// Reply: the request failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub code: ErrorCode,
    pub message: String,
}
