//! Hostile input over the real wire (`ssh -s HOST remora`): each gets a clear error or a closed
//! connection within a bounded time, the daemon keeps serving everyone else, and nothing on disk
//! is corrupted.

use std::{
    io::{Read, Write},
    process::{Child, ChildStdin, ChildStdout, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use remora_wire::{
    decode, encode, AgentBody, AgentFrame, ClientBody, ClientFrame, ErrorCode, Hello, ListSessions, NewSession,
    Receive, SessionRef, MAX_FRAME_LEN, PROTOCOL_VERSION,
};

use crate::support::{remora, session, Sshd};

/// The agent's limits, with room for scheduling: a hello is due within 10 s, a started frame must
/// finish within 20 s, a client must read something within 30 s.
const HELLO_LIMIT: Duration = Duration::from_secs(20);
const FRAME_LIMIT: Duration = Duration::from_secs(35);
const STALL_LIMIT: Duration = Duration::from_secs(60);
/// How long a reply to a well-formed request may take.
const REPLY: Duration = Duration::from_secs(10);

/// What the agent sent on a raw link: a frame, or the end of the stream.
enum Incoming {
    Frame(Box<AgentFrame>),
    Closed,
}

/// A raw protocol connection through OpenSSH's client, frames read on a thread.
pub(crate) struct RawLink {
    child: Child,
    stdin: Option<ChildStdin>,
    incoming: mpsc::Receiver<Incoming>,
}

impl RawLink {
    fn open(sshd: &Sshd) -> RawLink {
        let (mut child, stdout) = RawLink::spawn(sshd);
        let stdin = child.stdin.take();
        let incoming = read_frames(stdout);
        RawLink { child, stdin, incoming }
    }

    /// `ssh -s HOST remora` with piped stdin and stdout.
    fn spawn(sshd: &Sshd) -> (Child, ChildStdout) {
        let mut child = sshd
            .ssh()
            .args(["-s", sshd.alias(), "remora"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        (child, stdout)
    }

    /// Opens a link and completes the hello.
    pub(crate) fn greeted(sshd: &Sshd) -> RawLink {
        let mut link = RawLink::open(sshd);
        link.send(1, ClientBody::Hello(hello()));
        assert!(matches!(link.next(REPLY).body, AgentBody::Welcome(_)));
        link
    }

    fn write(&mut self, bytes: &[u8]) {
        self.stdin.as_mut().unwrap().write_all(bytes).unwrap();
        self.stdin.as_mut().unwrap().flush().unwrap();
    }

    pub(crate) fn send(&mut self, id: u64, body: ClientBody) {
        let mut bytes = Vec::new();
        encode(&ClientFrame { id, body }, &mut bytes).unwrap();
        self.write(&bytes);
    }

    /// The next frame, which must come within `limit`.
    pub(crate) fn next(&self, limit: Duration) -> AgentFrame {
        match self.incoming.recv_timeout(limit) {
            Ok(Incoming::Frame(frame)) => *frame,
            Ok(Incoming::Closed) => panic!("the agent closed the connection"),
            Err(_) => panic!("no frame within {limit:?}"),
        }
    }

    /// The error the agent answers with, within `limit`.
    fn error(&self, limit: Duration) -> (ErrorCode, String) {
        match self.next(limit).body {
            AgentBody::Error(error) => (error.code, error.message),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    /// Waits, within `limit`, for the agent to close the connection; returns when it did.
    fn closed_within(&self, limit: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let left = limit.saturating_sub(start.elapsed());
            match self.incoming.recv_timeout(left) {
                Ok(Incoming::Closed) => return start.elapsed(),
                Ok(Incoming::Frame(_)) => continue,
                Err(_) => panic!("the connection stayed open for {limit:?}"),
            }
        }
    }
}

impl Drop for RawLink {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads frames from `stdout` on a thread until the stream ends.
fn read_frames(mut stdout: ChildStdout) -> mpsc::Receiver<Incoming> {
    let (tx, incoming) = mpsc::channel();
    thread::spawn(move || loop {
        let mut len = [0u8; 4];
        let mut body = Vec::new();
        let complete = stdout.read_exact(&mut len).is_ok() && {
            body.resize(u32::from_be_bytes(len) as usize, 0);
            stdout.read_exact(&mut body).is_ok()
        };
        let incoming = match complete {
            true => Incoming::Frame(Box::new(decode(&body).expect("the agent sends well-formed frames"))),
            false => Incoming::Closed,
        };
        let closed = matches!(incoming, Incoming::Closed);
        if tx.send(incoming).is_err() || closed {
            return;
        }
    });
    incoming
}

fn hello() -> Hello {
    Hello {
        protocol: PROTOCOL_VERSION,
        min_protocol: 1,
        software: "hostile-test".into(),
        capabilities: vec![],
        client: Default::default(),
    }
}

/// A session with some output, to check that it stays intact.
fn bystander(sshd: &Sshd) {
    remora(
        sshd,
        &["invoke", sshd.alias(), "--name", "bystander", "--", "export KEPT=yes"],
    )
    .ok();
}

/// The daemon still serves, the bystander session kept its state, and nothing odd is on disk.
fn still_serving(sshd: &Sshd, daemon: i32) {
    assert_eq!(sshd.daemon_pid(), Some(daemon), "the same daemon still runs");
    let kept = remora(
        sshd,
        &["invoke", sshd.alias(), "--name", "bystander", "--", "echo $KEPT"],
    )
    .ok();
    assert_eq!(kept, "yes\n");
    assert_eq!(session(sshd, "bystander")["state"], "Disconnected");
    let stored = std::fs::read_dir(sshd.state_dir().join("data/sessions")).unwrap();
    for entry in stored {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            uuid::Uuid::parse_str(&name).is_ok(),
            "only session ids are stored: {name:?}"
        );
    }
}

#[test]
fn oversized_unknown_and_misaddressed_requests_get_clear_errors() {
    let sshd = Sshd::start().unwrap();
    bystander(&sshd);
    let daemon = sshd.daemon_pid().unwrap();

    let mut link = RawLink::greeted(&sshd);
    let mut unknown = Vec::new();
    let teleport = serde_json::json!({"id": 5, "body": {"Teleport": {"to": "mars"}}});
    encode(&teleport, &mut unknown).unwrap();
    link.write(&unknown);
    let reply = link.next(REPLY);
    assert_eq!(reply.id, 5, "answered by id");
    assert!(
        matches!(reply.body, AgentBody::Error(ref e) if e.code == ErrorCode::UnknownMessage),
        "{reply:?}"
    );

    let stranger = SessionRef::Id(uuid::Uuid::new_v4());
    let receive = Receive {
        session: stranger,
        follow: false,
        window: 1 << 20,
        command: None,
        keep: false,
        force: false,
        idle_timeout_secs: None,
    };
    link.send(6, ClientBody::Receive(receive));
    assert_eq!(link.error(REPLY).0, ErrorCode::SessionNotFound);

    for name in [
        "x".repeat(100_000),
        "a/b".into(),
        "..".into(),
        "nul\0name".into(),
        "bell\x07".into(),
        "".into(),
    ] {
        let request = NewSession {
            name: name.clone(),
            configuration: None,
            idle_timeout_secs: None,
            buffering: None,
        };
        link.send(7, ClientBody::NewSession(request));
        let (code, message) = link.error(REPLY);
        assert_eq!(code, ErrorCode::InvalidName, "{name:?}: {message}");
        assert!(
            message.len() < 400,
            "the message does not echo a huge name back: {}",
            message.len()
        );
    }

    link.write(&(MAX_FRAME_LEN as u32 + 1).to_be_bytes());
    let (code, message) = link.error(REPLY);
    assert_eq!(code, ErrorCode::BadFrame, "{message}");
    link.closed_within(REPLY);
    still_serving(&sshd, daemon);
}

#[test]
fn silent_and_stalled_peers_are_closed_in_bounded_time() {
    let sshd = Sshd::start().unwrap();
    bystander(&sshd);
    let daemon = sshd.daemon_pid().unwrap();

    let silent = RawLink::open(&sshd);
    let mut half_frame = RawLink::greeted(&sshd);
    half_frame.write(&1000u32.to_be_bytes());
    half_frame.write(b"only a few bytes of the body");

    let (code, message) = silent.error(HELLO_LIMIT);
    assert_eq!(code, ErrorCode::HelloRequired, "{message}");
    silent.closed_within(REPLY);
    still_serving(&sshd, daemon);

    let (code, message) = half_frame.error(FRAME_LIMIT);
    assert_eq!(code, ErrorCode::BadFrame, "{message}");
    assert!(message.contains("incomplete"), "{message}");
    half_frame.closed_within(REPLY);
    still_serving(&sshd, daemon);
}

#[test]
fn a_client_that_never_reads_its_replies_is_let_go_without_hurting_others() {
    let sshd = Sshd::start().unwrap();
    bystander(&sshd);
    for name in ["a", "b", "c", "d"] {
        remora(&sshd, &["new", sshd.alias(), "--name", name]).ok();
    }
    let daemon = sshd.daemon_pid().unwrap();
    // Requests go in; nobody reads what comes back.
    let (mut child, stdout) = RawLink::spawn(&sshd);
    let mut flood = Vec::new();
    let hello = ClientBody::Hello(hello());
    encode(&ClientFrame { id: 1, body: hello }, &mut flood).unwrap();
    for id in 2..10_002 {
        let list = ClientBody::ListSessions(ListSessions { name_glob: None });
        encode(&ClientFrame { id, body: list }, &mut flood).unwrap();
    }
    let mut stdin = child.stdin.take().unwrap();
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&flood);
    });

    let start = Instant::now();
    still_serving(&sshd, daemon);
    assert!(
        start.elapsed() < REPLY,
        "others are served at once: {:?}",
        start.elapsed()
    );
    remora_testkit::wait_until(STALL_LIMIT, "the agent to give up on the client", || {
        sshd.daemon_log()
            .contains("client read nothing for 30 s; closing the connection")
    })
    .unwrap();
    // Reading now drains what was in flight; the stream then ends.
    let incoming = read_frames(stdout);
    while let Ok(Incoming::Frame(_)) = incoming.recv_timeout(REPLY) {}
    let _ = child.kill();
    let _ = child.wait();
    writer.join().unwrap();
    still_serving(&sshd, daemon);
}

/// Stdin frames a flooding client sends, 1 MiB each: far more than the agent may hold.
const FLOOD_FRAMES: u64 = 320;
const FLOOD_FRAME: usize = 1024 * 1024;

#[test]
fn stdin_sent_past_its_window_is_refused_and_closed_and_the_daemon_stays_small() {
    use remora_wire::{InputMode, Invoke, DEFAULT_WINDOW};
    let sshd = Sshd::start().unwrap();
    bystander(&sshd);
    let daemon = sshd.daemon_pid().unwrap();
    let mut link = RawLink::greeted(&sshd);
    let invoke = Invoke {
        session: Some(SessionRef::Name("flood".into())),
        command: "sleep 600".into(),
        create: true,
        follow: true,
        window: DEFAULT_WINDOW,
        stdin: InputMode::Stream,
        idle_timeout_secs: None,
        configuration: None,
        buffering: None,
        job: Default::default(),
    };
    link.send(2, ClientBody::Invoke(invoke));
    let invoked = loop {
        if let AgentBody::Invoked(invoked) = link.next(REPLY).body {
            break invoked;
        }
    };
    let before = remora_testkit::rss_kib(daemon).unwrap();

    // The command reads nothing; the client sends on without waiting for a single InputAck,
    // then asks for a listing, answered only once every frame before it was handled.
    let (session, command) = (invoked.session.instance_id, invoked.command.id);
    let mut stdin = link.stdin.take().unwrap();
    let writer = thread::spawn(move || {
        for n in 0..FLOOD_FRAMES {
            let data = vec![b'x'; FLOOD_FRAME];
            let offset = n * FLOOD_FRAME as u64;
            let input = remora_wire::Input {
                session,
                command,
                offset,
                data,
                eof: false,
            };
            send_on(&mut stdin, 0, ClientBody::Input(input));
        }
        send_on(
            &mut stdin,
            99,
            ClientBody::ListSessions(ListSessions { name_glob: None }),
        );
        stdin
    });
    let mut refusals = Vec::new();
    loop {
        let frame = link.next(STALL_LIMIT);
        match frame.body {
            AgentBody::Error(error) => refusals.push((error.code, error.message)),
            _ if frame.id == 99 => break,
            _ => {}
        }
    }
    let after = remora_testkit::rss_kib(daemon).unwrap();
    assert!(
        after < before + 128 * 1024,
        "{FLOOD_FRAMES} MiB of unacknowledged stdin took the daemon from {before} KiB to {after} KiB"
    );
    let (code, message) = refusals.first().expect("the flood is refused").clone();
    assert_eq!(code, ErrorCode::LimitReached, "{message}");
    assert!(message.contains("flood") && message.contains("window"), "{message}");
    // 12 MiB of window, and what the command's (widened) stdin pipe took.
    let taken = FLOOD_FRAMES - refusals.len() as u64;
    assert!(taken <= 14, "every frame past the window is refused: {taken} taken");
    let log = sshd.daemon_log();
    assert_eq!(log.matches("ran past its window").count(), 1, "logged once: {log}");
    drop(writer.join().unwrap());
    still_serving(&sshd, daemon);
}

/// Writes one frame to a raw link's stdin (from another thread than the link's).
fn send_on(stdin: &mut ChildStdin, id: u64, body: ClientBody) {
    let mut bytes = Vec::new();
    encode(&ClientFrame { id, body }, &mut bytes).unwrap();
    stdin.write_all(&bytes).unwrap();
}
