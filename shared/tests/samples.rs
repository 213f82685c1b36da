//! Checked-in sample frames (`shared/samples/*.hex`, one per message) must keep decoding to the
//! same messages, so a change that breaks older peers fails here. `docs/PROTOCOL.md` shows each.
//!
//! To add a message: add it to `samples()`, run with `REMORA_WRITE_SAMPLES=1`, commit the file.

use std::{fs, path::PathBuf};

use remora_wire::*;
use uuid::Uuid;

const SESSION: Uuid = Uuid::from_u128(0x6f1c_2b9e_4d3a_4b8e_9f21_0c5d_7e8a_1b2c);
const AGENT: Uuid = Uuid::from_u128(0x0a4e_55f0_3c1d_4e2a_8b7c_9d0e_1f2a_3b4c);
const T0: UnixMillis = 1_795_000_000_000;

fn session_info() -> SessionInfo {
    SessionInfo {
        name: "build".into(),
        instance_id: SESSION,
        host: "web01".into(),
        state: SessionState::Disconnected,
        availability: Availability::None,
        configuration: "default".into(),
        created_at: T0,
        disconnected_at: Some(T0 + 5_000),
        idle_timeout_secs: 7200,
        expires_at: Some(T0 + 5_000 + 7_200_000),
        buffering: Buffering::Block,
        attached: None,
        commands_running: 1,
        commands_queued: 0,
        commands_completed: 2,
        broken_reason: None,
        unacked_bytes: 4096,
        temporary: false,
        spilled_bytes: 0,
        dropped_bytes: 0,
        blocked_reason: None,
        // Added after this sample was written: older frames decode with the defaults.
        agent_version: String::new(),
        terminal: None,
        commands_failed: 0,
    }
}

fn command_info() -> CommandInfo {
    CommandInfo {
        id: 3,
        command: "make -j4".into(),
        state: CommandState::Running,
        exit_code: None,
        queued_at: T0 + 6_000,
        started_at: Some(T0 + 6_001),
        ended_at: None,
        dropped_bytes: 0,
        // Added after this sample was written: older frames decode with the defaults.
        options: JobOptions::default(),
        attempts: 0,
        reason: None,
    }
}

/// A job with a label, dependencies and retries, skipped because its dependency failed.
fn skipped_job() -> CommandInfo {
    CommandInfo {
        id: 5,
        command: "make install".into(),
        state: CommandState::Skipped,
        ended_at: Some(T0 + 61_000),
        options: job_options(),
        attempts: 0,
        reason: Some("job 4 did not succeed (Completed with exit code 2)".into()),
        ..command_info()
    }
}

fn job_options() -> JobOptions {
    JobOptions {
        label: Some("deploy".into()),
        after: vec![Dependency {
            job: 4,
            kind: DependencyKind::Succeeded,
        }],
        retries: 2,
        retry_delay_ms: 5_000,
    }
}

fn client_samples() -> Vec<(&'static str, ClientFrame)> {
    let hello = Hello {
        protocol: PROTOCOL_VERSION,
        min_protocol: MIN_PROTOCOL_VERSION,
        software: "remora 0.1.0".into(),
        capabilities: vec![],
        client: ClientInfo {
            host: "laptop".into(),
            user: "ada".into(),
            pid: 4242,
            id: Some(AGENT),
        },
    };
    let frame = |id, body| ClientFrame { id, body };
    vec![
        ("client-hello", frame(1, ClientBody::Hello(hello))),
        (
            "client-new-session",
            frame(
                2,
                ClientBody::NewSession(NewSession {
                    name: "build".into(),
                    idle_timeout_secs: Some(7200),
                    ..Default::default()
                }),
            ),
        ),
        (
            "client-list-sessions",
            frame(
                3,
                ClientBody::ListSessions(ListSessions {
                    name_glob: Some("bu*".into()),
                }),
            ),
        ),
        (
            "client-invoke",
            frame(
                4,
                ClientBody::Invoke(Invoke {
                    session: Some(SessionRef::Name("build".into())),
                    command: "make -j4".into(),
                    create: true,
                    follow: false,
                    window: DEFAULT_WINDOW,
                    idle_timeout_secs: None,
                    configuration: None,
                    buffering: None,
                    job: JobOptions::default(),
                    stdin: remora_wire::InputMode::Null,
                }),
            ),
        ),
        (
            "client-receive",
            frame(
                5,
                ClientBody::Receive(Receive {
                    session: SessionRef::Id(SESSION),
                    follow: true,
                    window: DEFAULT_WINDOW,
                    command: Some(3),
                    keep: false,
                    force: false,
                    idle_timeout_secs: None,
                }),
            ),
        ),
        (
            "client-ack",
            frame(
                0,
                ClientBody::Ack(Ack {
                    session: SESSION,
                    command: 3,
                    seq: 17,
                }),
            ),
        ),
        (
            "client-disconnect",
            frame(
                8,
                ClientBody::Disconnect(Disconnect {
                    session: SessionRef::Name("build".into()),
                    idle_timeout_secs: Some(86400),
                    buffering: None,
                }),
            ),
        ),
        (
            "client-list-commands",
            frame(
                9,
                ClientBody::ListCommands(ListCommands {
                    session: SessionRef::Name("build".into()),
                    label_glob: None,
                }),
            ),
        ),
        (
            "client-list-commands-label",
            frame(
                11,
                ClientBody::ListCommands(ListCommands {
                    session: SessionRef::Name("build".into()),
                    label_glob: Some("deploy*".into()),
                }),
            ),
        ),
        (
            "client-invoke-job",
            frame(
                12,
                ClientBody::Invoke(Invoke {
                    session: Some(SessionRef::Name("build".into())),
                    command: "make install".into(),
                    create: true,
                    follow: false,
                    window: DEFAULT_WINDOW,
                    idle_timeout_secs: None,
                    configuration: None,
                    buffering: None,
                    job: job_options(),
                    // Added after this sample was written: decodes with the default.
                    stdin: InputMode::Null,
                }),
            ),
        ),
        (
            "client-wait",
            frame(
                13,
                ClientBody::Wait(WaitJobs {
                    session: SessionRef::Name("build".into()),
                    commands: vec![4, 5],
                    label_glob: None,
                    any: false,
                    updates: false,
                }),
            ),
        ),
        (
            "client-stop-command",
            frame(
                10,
                ClientBody::StopCommand(StopCommand {
                    session: SessionRef::Name("build".into()),
                    command: Some(3),
                }),
            ),
        ),
        (
            "client-remove-sessions",
            frame(
                6,
                ClientBody::RemoveSessions(RemoveSessions {
                    names: vec!["build*".into()],
                    ids: vec![],
                    dry_run: true,
                }),
            ),
        ),
        ("client-standby", frame(u64::MAX, ClientBody::Standby)),
    ]
    .into_iter()
    .chain(terminal_client_samples())
    .collect()
}

fn terminal_client_samples() -> Vec<(&'static str, ClientFrame)> {
    let frame = |id, body| ClientFrame { id, body };
    vec![
        (
            "client-open-terminal",
            frame(
                11,
                ClientBody::OpenTerminal(OpenTerminal {
                    session: Some(SessionRef::Name("build".into())),
                    create: true,
                    rows: 24,
                    cols: 80,
                    term: "xterm-256color".into(),
                    force: false,
                    watch: false,
                    resume: Some(TermResume { generation: 1, seq: 41 }),
                    window: DEFAULT_TERM_WINDOW,
                    idle_timeout_secs: None,
                    configuration: None,
                    buffering: None,
                }),
            ),
        ),
        (
            "client-term-input",
            frame(
                0,
                ClientBody::TermInput(TermInput {
                    session: SESSION,
                    generation: 1,
                    seq: 7,
                    data: b"ls\r".to_vec(),
                }),
            ),
        ),
        (
            "client-term-resize",
            frame(
                0,
                ClientBody::TermResize(TermResize {
                    session: SESSION,
                    rows: 50,
                    cols: 132,
                }),
            ),
        ),
        (
            "client-term-ack",
            frame(
                0,
                ClientBody::TermAck(TermAck {
                    session: SESSION,
                    seq: 42,
                }),
            ),
        ),
        (
            "client-term-transcript",
            frame(
                12,
                ClientBody::TermTranscript(TermTranscript {
                    session: SessionRef::Name("build".into()),
                }),
            ),
        ),
    ]
}

fn terminal_agent_samples() -> Vec<(&'static str, AgentFrame)> {
    let frame = |id, body| AgentFrame { id, body };
    let with_terminal = SessionInfo {
        terminal: Some(TerminalInfo {
            rows: 24,
            cols: 80,
            foreground: Some("vim".into()),
            exit_code: None,
            watchers: 0,
        }),
        ..session_info()
    };
    vec![
        (
            "agent-terminal-opened",
            frame(
                11,
                AgentBody::TerminalOpened(TerminalOpened {
                    session: with_terminal,
                    generation: 1,
                    started: false,
                    created: false,
                    input_seq: 6,
                }),
            ),
        ),
        (
            "agent-term-output",
            frame(
                11,
                AgentBody::TermOutput(TermOutput {
                    session: SESSION,
                    seq: 42,
                    data: b"total 0\r\n".to_vec(),
                }),
            ),
        ),
        (
            "agent-term-redraw",
            frame(
                11,
                AgentBody::TermRedraw(TermRedraw {
                    session: SESSION,
                    seq: 41,
                    scrollback: vec![serde_bytes::ByteBuf::from(b"$ make\x1b[m".to_vec())],
                    screen: b"\x1b[?1049l\x1b[m\x1b[H\x1b[Jbuild ok\r\n$ ".to_vec(),
                    rows: 24,
                    cols: 80,
                }),
            ),
        ),
        (
            "agent-term-input-ack",
            frame(
                0,
                AgentBody::TermInputAck(TermInputAck {
                    session: SESSION,
                    seq: 7,
                }),
            ),
        ),
        (
            "agent-term-ended",
            frame(
                11,
                AgentBody::TermEnded(TermEnded {
                    session: SESSION,
                    exit_code: Some(0),
                }),
            ),
        ),
        (
            "agent-transcript",
            frame(
                12,
                AgentBody::Transcript(Transcript {
                    text: "$ make\nbuild ok\n".into(),
                    lines_lost: 0,
                }),
            ),
        ),
    ]
}

fn agent_samples() -> Vec<(&'static str, AgentFrame)> {
    let welcome = Welcome {
        protocol: 1,
        software: "remora-agent 0.1.0".into(),
        capabilities: vec![],
        agent_id: AGENT,
        host: "web01".into(),
        user: "ada".into(),
        max_frame: MAX_FRAME_LEN as u64,
        // Added after this sample was written: older frames decode with the defaults.
        agent_version: String::new(),
        daemon_pid: 0,
    };
    let frame = |id, body| AgentFrame { id, body };
    vec![
        ("agent-welcome", frame(1, AgentBody::Welcome(welcome))),
        ("agent-session", frame(2, AgentBody::Session(session_info()))),
        (
            "agent-sessions",
            frame(
                3,
                AgentBody::Sessions(SessionList {
                    sessions: vec![session_info()],
                }),
            ),
        ),
        (
            "agent-invoked",
            frame(
                4,
                AgentBody::Invoked(Invoked {
                    session: session_info(),
                    command: command_info(),
                }),
            ),
        ),
        (
            "agent-receiving",
            frame(
                5,
                AgentBody::Receiving(Receiving {
                    session: session_info(),
                }),
            ),
        ),
        (
            "agent-output",
            frame(
                5,
                AgentBody::Output(Output {
                    session: SESSION,
                    command: 3,
                    seq: 17,
                    stream: Stream::Stdout,
                    data: b"compiling...\n".to_vec(),
                }),
            ),
        ),
        (
            "agent-output-dropped",
            frame(
                5,
                AgentBody::OutputDropped(OutputDropped {
                    session: SESSION,
                    command: 3,
                    seq: 9,
                    first_seq: 4,
                    bytes: 65536,
                }),
            ),
        ),
        (
            "agent-command-ended",
            frame(
                5,
                AgentBody::CommandEnded(CommandEnded {
                    session: SESSION,
                    command: 3,
                    seq: 18,
                    state: CommandState::Completed,
                    exit_code: Some(0),
                    ended_at: T0 + 60_000,
                }),
            ),
        ),
        (
            "agent-stream-end",
            frame(
                5,
                AgentBody::StreamEnd(StreamEnd {
                    last_exit_code: Some(0),
                    commands_pending: 0,
                    released_by: None,
                }),
            ),
        ),
        (
            "agent-removed",
            frame(
                6,
                AgentBody::Removed(SessionList {
                    sessions: vec![session_info()],
                }),
            ),
        ),
        (
            "agent-commands",
            frame(
                9,
                AgentBody::Commands(CommandList {
                    session: session_info(),
                    commands: vec![command_info()],
                }),
            ),
        ),
        (
            "agent-waited",
            frame(
                13,
                AgentBody::Waited(Waited {
                    session: SessionInfo {
                        commands_failed: 1,
                        ..session_info()
                    },
                    commands: vec![skipped_job()],
                    last: Some(5),
                }),
            ),
        ),
        (
            "agent-command-ended-skipped",
            frame(
                5,
                AgentBody::CommandEnded(CommandEnded {
                    session: SESSION,
                    command: 5,
                    seq: 2,
                    state: CommandState::Skipped,
                    exit_code: None,
                    ended_at: T0 + 61_000,
                }),
            ),
        ),
        (
            "agent-error",
            frame(
                7,
                AgentBody::Error(ErrorReply {
                    code: ErrorCode::SessionNotFound,
                    message: "no session named \"nope\" on web01 for user ada; list them with `remora ls`".into(),
                }),
            ),
        ),
    ]
    .into_iter()
    .chain(terminal_agent_samples())
    .collect()
}

fn sample_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("samples")
        .join(format!("{name}.hex"))
}

fn to_hex(bytes: &[u8]) -> String {
    let hex: Vec<String> = bytes
        .chunks(32)
        .map(|line| line.iter().map(|b| format!("{b:02x}")).collect())
        .collect();
    hex.join("\n") + "\n"
}

fn from_hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

fn check<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(name: &str, message: &T) {
    let path = sample_path(name);
    if std::env::var_os("REMORA_WRITE_SAMPLES").is_some() {
        let mut bytes = Vec::new();
        encode(message, &mut bytes).unwrap();
        fs::write(&path, to_hex(&bytes)).unwrap();
    }
    let text = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; write it with REMORA_WRITE_SAMPLES=1", path.display()));
    let bytes = from_hex(&text);
    let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
    assert_eq!(len, bytes.len() - 4, "{name}: length prefix");
    let decoded: T = decode(&bytes[4..]).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(&decoded, message, "{name}");
}

#[test]
fn checked_in_client_frames_decode() {
    for (name, frame) in client_samples() {
        check(name, &frame);
    }
}

#[test]
fn checked_in_agent_frames_decode() {
    for (name, frame) in agent_samples() {
        check(name, &frame);
    }
}

/// Named sample frames of each direction.
type Samples = (Vec<(&'static str, ClientFrame)>, Vec<(&'static str, AgentFrame)>);

/// Input streams and `cp` (both directions).
fn input_and_copy_samples() -> Samples {
    let client = |id, body| ClientFrame { id, body };
    let agent = |id, body| AgentFrame { id, body };
    let meta = PathMeta {
        kind: PathKind::File,
        size: 5,
        mode: 0o644,
        mtime: 1_795_000_000,
        mtime_nanos: 250_000_000,
        link_target: Vec::new(),
    };
    let clients = vec![
        (
            "client-invoke-stdin",
            client(
                20,
                ClientBody::Invoke(Invoke {
                    session: Some(SessionRef::Name("build".into())),
                    command: "tar x -C /srv".into(),
                    create: true,
                    follow: true,
                    window: DEFAULT_WINDOW,
                    idle_timeout_secs: None,
                    configuration: None,
                    buffering: None,
                    // Added after this sample was written: decodes with the default.
                    job: JobOptions::default(),
                    stdin: InputMode::Stream,
                }),
            ),
        ),
        (
            "client-input",
            client(
                0,
                ClientBody::Input(Input {
                    session: SESSION,
                    command: 3,
                    offset: 262_144,
                    data: b"hi\n".to_vec(),
                    eof: true,
                }),
            ),
        ),
        (
            "client-put-path",
            client(
                21,
                ClientBody::PutPath(PutPath {
                    session: None,
                    dest: b"/tmp/".to_vec(),
                    name: Some(b"new\nname \xff".to_vec()),
                    into_dir: false,
                    meta: meta.clone(),
                    preserve: true,
                    source_key: "5-1795000000.250000000".into(),
                    within: None,
                }),
            ),
        ),
        (
            "client-put-path-within",
            client(
                24,
                ClientBody::PutPath(PutPath {
                    session: None,
                    dest: b"/srv/site/assets/app.css".to_vec(),
                    name: None,
                    into_dir: false,
                    meta: meta.clone(),
                    preserve: false,
                    source_key: "5-1795000000.250000000".into(),
                    within: Some(b"/srv/site".to_vec()),
                }),
            ),
        ),
        (
            "client-file-data",
            client(
                21,
                ClientBody::FileData(FileData {
                    offset: 0,
                    data: b"hello".to_vec(),
                }),
            ),
        ),
        (
            "client-file-end",
            client(
                21,
                ClientBody::FileEnd(FileEnd {
                    size: 5,
                    sha256: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".into(),
                }),
            ),
        ),
        (
            "client-get-path",
            client(
                22,
                ClientBody::GetPath(GetPath {
                    session: Some(SessionRef::Name("build".into())),
                    path: b"logs".to_vec(),
                    recursive: true,
                }),
            ),
        ),
        (
            "client-read-file",
            client(
                23,
                ClientBody::ReadFile(ReadFile {
                    path: b"/home/ada/logs/app.log".to_vec(),
                    offset: 1_048_576,
                }),
            ),
        ),
    ];
    let agents = vec![
        (
            "agent-input-ack",
            agent(
                0,
                AgentBody::InputAck(InputAck {
                    session: SESSION,
                    command: 3,
                    offset: 262_147,
                    eof: true,
                }),
            ),
        ),
        (
            "agent-put-ready",
            agent(
                21,
                AgentBody::PutReady(PutReady {
                    path: b"/tmp/new\nname \xff".to_vec(),
                    offset: 0,
                }),
            ),
        ),
        ("agent-file-ack", agent(21, AgentBody::FileAck(FileAck { offset: 1_048_576 }))),
        ("agent-standing-by", agent(u64::MAX, AgentBody::StandingBy)),
        (
            "agent-path-done",
            agent(
                21,
                AgentBody::PathDone(PathDone {
                    path: b"/tmp/new\nname \xff".to_vec(),
                    bytes: 5,
                }),
            ),
        ),
        (
            "agent-path-list",
            agent(
                22,
                AgentBody::PathList(PathList {
                    root: b"/home/ada/logs".to_vec(),
                    entries: vec![
                        ListedPath {
                            path: Vec::new(),
                            meta: PathMeta {
                                kind: PathKind::Dir,
                                size: 0,
                                mode: 0o755,
                                ..meta.clone()
                            },
                        },
                        ListedPath {
                            path: b"app.log".to_vec(),
                            meta: meta.clone(),
                        },
                        ListedPath {
                            path: b"current".to_vec(),
                            meta: PathMeta {
                                kind: PathKind::Symlink,
                                size: 0,
                                mode: 0o777,
                                link_target: b"app.log".to_vec(),
                                ..meta.clone()
                            },
                        },
                    ],
                }),
            ),
        ),
        (
            "agent-file-data",
            agent(
                23,
                AgentBody::FileData(FileData {
                    offset: 1_048_576,
                    data: b"tail".to_vec(),
                }),
            ),
        ),
        (
            "agent-file-end",
            agent(
                23,
                AgentBody::FileEnd(FileEnd {
                    size: 1_048_580,
                    sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
                }),
            ),
        ),
        (
            "agent-error-no-space",
            agent(
                21,
                AgentBody::Error(ErrorReply {
                    code: ErrorCode::NoSpace,
                    message: "web01: cannot write /srv/app.tgz: No space left on device (os error 28); free space on the host and run the same cp again to resume".into(),
                }),
            ),
        ),
    ];
    (clients, agents)
}

#[test]
fn checked_in_input_and_copy_frames_decode() {
    let (clients, agents) = input_and_copy_samples();
    for (name, frame) in clients {
        check(name, &frame);
    }
    for (name, frame) in agents {
        check(name, &frame);
    }
}
