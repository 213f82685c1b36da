//! Fuzz target: one client connection to an in-process daemon. The input is the byte stream the
//! client sends; `serve_connection` reads it over a `tokio::io::duplex`, dispatches every request
//! to the handlers, and must answer with well-formed frames and end once the client closes.
//!
//! Input: byte 0 picks a preamble (0: none, the fuzzer writes its own hello; 1: a hello; 2: a
//! hello from the client process that holds session `busy`), the rest follows it verbatim.
//!
//! No shell is ever started: the configuration allows no new session (`max_sessions = 0`) and
//! names a shell that does not exist. The daemon instead starts with sessions built in memory,
//! with fixed instance ids (1..=6) the fuzzer can name, in every state a handler cares about:
//! finished, running and queued commands, broken, temporary, drop and spill buffering, and
//! attached to another client. Spill files go to a temporary state dir.
//!
//! Confined: `cp` requests name any path the fuzzer picks, absolute or relative to home, to
//! write, create, list or read. Before the first input the process is restricted with Landlock
//! (see `confine.rs`) to a fresh state dir plus libFuzzer's own corpus and artifact dirs, and a
//! probe checks that a file beside the state dir cannot be created; if that cannot be set up,
//! the target panics instead of fuzzing unconfined. A transfer outside the state dir is therefore
//! refused with a permission error, as on a host where the user may not write there.

#![no_main]

mod confine;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, LazyLock},
    time::Duration,
};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use remora_agent::{
    serve_connection,
    session::{Session, SessionSettings},
    ConfigStore, Daemon,
};
use remora_wire::{
    encode, AgentFrame, Buffering, ClientBody, ClientFrame, ClientInfo, CommandState, FrameReader, Hello, Stream,
    MAX_FRAME_LEN, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

/// A connection must be over this long after its client closed (no stream outlives it).
const CLOSE_DEADLINE: Duration = Duration::from_secs(5);
/// The connection id of a client that is not the fuzzer, attached to session `busy`.
const OTHER_CONN: u64 = 1_000_000;
/// The client process that holds `busy`; a hello carrying it takes the session back.
const OTHER_CLIENT: Uuid = Uuid::from_u128(7);

const CONFIG: &str = r#"
# No new session may start (max_sessions = 0), so no shell is ever spawned; if the limit were
# bypassed, the shell does not exist.
[configurations.default]
shell = "/nonexistent/remora-fuzz/shell"
max_sessions = 0
max_queued = 4
"#;

struct Harness {
    runtime: tokio::runtime::Runtime,
    /// Holds agent.toml and the spill dir; the only place the daemon may touch.
    state: PathBuf,
}

static HARNESS: LazyLock<Harness> = LazyLock::new(|| {
    // Before anything else, so that every thread the runtime starts inherits the confinement.
    let state = confine::confined_state_dir();
    std::fs::write(state.join("agent.toml"), CONFIG).expect("write agent.toml inside the confinement");
    // One thread: no cross-thread wake-ups per input, which multiply the cost of each input on a
    // busy machine. (The message target decodes on a 2 MiB worker-sized stack instead.)
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime");
    Harness { runtime, state }
});

fn settings(state: &Path, buffering: Buffering, memory_limit: usize) -> SessionSettings {
    SessionSettings {
        configuration: "default".into(),
        idle_timeout_secs: 3600,
        max_idle_timeout_secs: 12 * 3600,
        buffering,
        memory_limit,
        spill_quota: 64,
        max_queued: 4,
        spill_dir: state.join("spill"),
        store_root: None,
        on_job_end: None,
    }
}

/// A session with a fixed id and commands: each is its output chunks and how it ends (`None`:
/// still running), then one more queued command if `queued`.
fn session(
    id: u128,
    name: &str,
    settings: SessionSettings,
    commands: &[(&[&str], Option<i32>)],
    queued: bool,
) -> Arc<Session> {
    let mut session = Session::new(name.into(), name.starts_with("tmp-"), settings);
    session.id = Uuid::from_u128(id);
    for (output, exit) in commands {
        session.enqueue(format!("echo {output:?}")).expect("queue");
        let (command, _) = session.start_next().0.expect("start");
        for (i, chunk) in output.iter().enumerate() {
            let stream = if i % 2 == 0 { Stream::Stdout } else { Stream::Stderr };
            session.append_output(command, stream, Bytes::copy_from_slice(chunk.as_bytes()));
        }
        if let Some(code) = exit {
            session.finish(command, CommandState::Completed, Some(*code));
        }
    }
    if queued {
        session.enqueue("sleep 1".into()).expect("queue");
    }
    Arc::new(session)
}

/// A daemon holding one session in each state the handlers distinguish.
fn daemon(state: &Path) -> Arc<Daemon> {
    let daemon = Daemon::new(
        Uuid::from_u128(0xa9e7),
        ConfigStore::open(&state.join("agent.toml")),
        state.join("spill"),
    );
    let memory = |mode| settings(state, mode, 1 << 20);
    let sessions = [
        session(
            1,
            "build",
            memory(Buffering::Block),
            &[(&["hello\n", "warning\n"], Some(0)), (&["partial"], None)],
            true,
        ),
        session(2, "broken", memory(Buffering::Block), &[(&["out\n"], Some(3))], false),
        session(3, "tmp-fuzz", memory(Buffering::Block), &[(&["x"], Some(0))], false),
        session(
            4,
            "drop",
            settings(state, Buffering::Drop, 8),
            &[(&["aaaa", "bbbb", "cccc", "dddd"], Some(1))],
            false,
        ),
        session(
            5,
            "spill",
            settings(state, Buffering::Spill, 4),
            &[(&["12345678", "abcdefgh", "ABCDEFGH"], None)],
            false,
        ),
        session(6, "busy", memory(Buffering::Block), &[(&[], None)], true),
    ];
    sessions[1].mark_broken("runspace lost: fuzz".into());
    sessions[5]
        .attach(OTHER_CONN, "other@elsewhere", Some(OTHER_CLIENT), false)
        .expect("attach busy");
    // Adopted as the daemon adopts every session: with its persister running, so `rm`, which
    // answers once the persister has deleted the session's files, gets its answer.
    for session in sessions {
        daemon
            .adopt(session)
            .map_err(|_| "a session name twice")
            .expect("unique names");
    }
    Arc::new(daemon)
}

fn hello(client: Option<Uuid>) -> Vec<u8> {
    let frame = ClientFrame {
        id: 1,
        body: ClientBody::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            min_protocol: MIN_PROTOCOL_VERSION,
            software: "remora-fuzz".into(),
            capabilities: vec![],
            client: ClientInfo {
                host: "fuzzhost".into(),
                user: "fuzzer".into(),
                pid: 1,
                id: client,
            },
        }),
    };
    let mut bytes = Vec::new();
    encode(&frame, &mut bytes).expect("encode hello");
    bytes
}

/// Sends `input` over one connection, reads every reply, and checks the daemon afterwards.
async fn run(state: PathBuf, input: Vec<u8>) {
    let daemon = daemon(&state);
    let (client, server) = tokio::io::duplex(64 * 1024);
    let (server_read, server_write) = tokio::io::split(server);
    let served = tokio::spawn(serve_connection(
        daemon.clone(),
        server_read,
        server_write,
        "fuzz".into(),
    ));
    let (client_read, mut client_write) = tokio::io::split(client);
    let send = async move {
        // The agent may close first (a refused hello, a bad frame): then writes fail, as they would.
        let _ = client_write.write_all(&input).await;
        let _ = client_write.shutdown().await;
    };
    let receive = async move {
        let mut replies = FrameReader::new(client_read);
        replies.set_max_len(MAX_FRAME_LEN);
        let mut count = 0usize;
        loop {
            match replies.read_message::<AgentFrame>().await {
                Ok(Some(_)) => count += 1,
                Ok(None) => return count,
                Err(err) => panic!("the agent sent a malformed frame: {err}"),
            }
        }
    };
    let finished = tokio::time::timeout(CLOSE_DEADLINE, async {
        let ((), _replies) = tokio::join!(send, receive);
        served.await
    })
    .await;
    let served = finished.expect("the connection ended after the client closed");
    served.expect("serve did not panic");
    // The fuzzer's connection (the daemon's first) let go of every session when it ended.
    for session in daemon.registry.list(None) {
        let info = session.info(1, "");
        assert_ne!(
            info.availability,
            remora_wire::Availability::Available,
            "session {} still attached to a closed connection",
            info.name
        );
    }
    daemon.shutdown.cancel();
    daemon.registry.clear();
}

fuzz_target!(|input: &[u8]| {
    let harness = &*HARNESS;
    let Some((&preamble, rest)) = input.split_first() else {
        return;
    };
    let mut bytes = match preamble % 3 {
        0 => Vec::new(),
        1 => hello(None),
        _ => hello(Some(OTHER_CLIENT)),
    };
    bytes.extend_from_slice(rest);
    let state = harness.state.clone();
    harness.runtime.block_on(run(state, bytes));
});
