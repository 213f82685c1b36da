//! A bounded soak: many sessions × many commands, received through a link that is cut at random
//! moments, by clients that come and go. Every line must arrive exactly once and in order, and
//! after the sessions are removed the daemon's open descriptors and memory return to baseline.
//!
//! Size: `REMORA_SOAK=SESSIONSxCOMMANDS` (default 10x40, about 10 s; the full run is
//! `REMORA_SOAK=50x200 cargo test -p remora-tests --test e2e soak -- --nocapture`).

use std::{
    io,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use remora_client::{resume::ReconnectPolicy, ssh::SshOptions, Client, OutputSink};
use remora_wire::{
    CommandEnded, Invoke, NewSession, Output, OutputDropped, Receive, RemoveSessions, SessionRef, Stream,
};

use crate::support::{FaultyLink, Sshd};

/// How far the daemon's memory may stay above its baseline once everything is removed and it
/// has handed free memory back (within a reaper tick): per-session state must not accumulate.
const RSS_SLACK_KIB: u64 = 8 * 1024;

/// What this run is sized to.
struct Size {
    sessions: usize,
    commands: usize,
}

fn size() -> Size {
    let text = std::env::var("REMORA_SOAK").unwrap_or_else(|_| "10x40".into());
    let (sessions, commands) = text.split_once('x').expect("REMORA_SOAK is SESSIONSxCOMMANDS");
    Size {
        sessions: sessions.parse().expect("a number of sessions"),
        commands: commands.parse().expect("a number of commands"),
    }
}

/// Stdout in memory; nothing may be dropped (spill mode).
#[derive(Default)]
struct Lines(Vec<u8>);

impl OutputSink for Lines {
    fn output(&mut self, output: &Output) -> io::Result<()> {
        assert_eq!(output.stream, Stream::Stdout, "{output:?}");
        self.0.extend_from_slice(&output.data);
        Ok(())
    }
    fn dropped(&mut self, dropped: &OutputDropped) -> io::Result<()> {
        panic!("output was dropped: {dropped:?}")
    }
    fn ended(&mut self, _: &CommandEnded) -> io::Result<()> {
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn options(sshd: &Sshd) -> SshOptions {
    SshOptions {
        config_file: Some(sshd.ssh_config()),
        ..SshOptions::default()
    }
}

/// The daemon's open descriptors and resident memory (KiB).
fn daemon_footprint(pid: i32) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    (fds, remora_testkit::rss_kib(pid).expect("the daemon is running"))
}

fn name(session: usize) -> String {
    format!("soak-{session}")
}

/// Lines each command prints.
const LINES: usize = 100;

/// Each command pauses briefly (so receivers follow it live while the link is cut), then prints
/// [`LINES`] numbered lines.
fn command_text(session: usize, command: usize) -> String {
    format!("sleep 0.1; seq -f 's{session}-c{command}-%g' {LINES}")
}

fn expected(session: usize, commands: usize) -> String {
    (0..commands)
        .flat_map(|c| (1..=LINES).map(move |line| format!("s{session}-c{c}-{line}\n")))
        .collect()
}

/// Compares what arrived with what was printed, naming the first line that differs.
fn check_exactly_once(session: usize, got: &str, want: &str) {
    let (got, want): (Vec<&str>, Vec<&str>) = (got.lines().collect(), want.lines().collect());
    if let Some(at) = (0..got.len().max(want.len())).find(|&i| got.get(i) != want.get(i)) {
        let around = |lines: &[&str]| lines[at.saturating_sub(2)..(at + 3).min(lines.len())].join(" | ");
        panic!(
            "session {session}: line {at} differs ({} lines arrived, {} printed): got [{}], want [{}]",
            got.len(),
            want.len(),
            around(&got),
            around(&want)
        );
    }
}

/// Creates the sessions.
async fn create_sessions(sshd: &Sshd, size: &Size) {
    let mut client = Client::connect(sshd.alias(), &options(sshd)).await.unwrap();
    for session in 0..size.sessions {
        let request = NewSession {
            name: name(session),
            ..NewSession::default()
        };
        client.new_session(request).await.unwrap();
    }
    client.close().await.unwrap();
}

/// Queues every command, disconnected, round-robin over the sessions, over a steady link.
async fn queue_everything(sshd: &Sshd, size: &Size) {
    let mut client = Client::connect(sshd.alias(), &options(sshd)).await.unwrap();
    for command in 0..size.commands {
        for session in 0..size.sessions {
            let invoke = Invoke {
                session: Some(SessionRef::Name(name(session))),
                command: command_text(session, command),
                create: false,
                follow: false,
                window: remora_wire::DEFAULT_WINDOW,
                idle_timeout_secs: None,
                configuration: None,
                buffering: None,
                job: Default::default(),
                stdin: remora_wire::InputMode::Null,
            };
            client.invoke(invoke, &mut Lines::default()).await.unwrap();
        }
    }
    client.close().await.unwrap();
}

/// Receives one session to its end through the flaky alias: one receive that follows the
/// session's queue to its end and rides out every cut by resuming. A cut before the stream has
/// started (nothing delivered yet) is retried with a new client; a receive may not end early
/// after delivering output, since a new client could then be sent an unacknowledged tail again.
async fn receive_all(sshd: &Sshd, session: usize, commands: usize, resumed: &AtomicUsize) -> String {
    let mut lines = Lines::default();
    let deadline = Instant::now() + Duration::from_secs(600);
    while lines.0.len() < expected(session, commands).len() {
        assert!(Instant::now() < deadline, "session {session} never completed");
        let Ok(mut client) = Client::connect("flaky", &options(sshd)).await else {
            // The link was cut during the handshake; a new client tries again.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let counter = Arc::new(AtomicUsize::new(0));
        let seen = counter.clone();
        client.set_reconnect(ReconnectPolicy {
            window: Duration::from_secs(60),
            interval: Duration::from_millis(100),
            on_event: Some(Arc::new(move |event| {
                if matches!(event, remora_client::resume::ReconnectEvent::Resumed { .. }) {
                    seen.fetch_add(1, Ordering::SeqCst);
                }
            })),
        });
        let request = Receive {
            session: SessionRef::Name(name(session)),
            follow: true,
            window: remora_wire::DEFAULT_WINDOW,
            command: None,
            keep: false,
            force: true,
            idle_timeout_secs: None,
        };
        let before = lines.0.len();
        let result = client.receive(request, &mut lines).await;
        let complete = lines.0.len() == expected(session, commands).len();
        assert!(
            complete || lines.0.len() == before,
            "session {session}: a receive ended early after delivering output: {result:?}"
        );
        resumed.fetch_add(counter.load(Ordering::SeqCst), Ordering::SeqCst);
        let _ = client.close().await;
    }
    String::from_utf8(lines.0).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sessions_and_commands_through_random_cuts_arrive_exactly_once_and_leave_nothing_behind() {
    let size = size();
    let sshd = Sshd::start().unwrap();
    let link = Arc::new(FaultyLink::start(sshd.addr()).unwrap());
    sshd.add_alias("flaky", link.addr().port()).unwrap();

    let mut warmup = Client::connect(sshd.alias(), &options(&sshd)).await.unwrap();
    warmup.list(None).await.unwrap();
    warmup.close().await.unwrap();
    let daemon = sshd.daemon_pid().unwrap();
    let baseline = daemon_footprint(daemon);
    let started = Instant::now();

    create_sessions(&sshd, &size).await;
    queue_everything(&sshd, &size).await;
    let cutting = Arc::new(AtomicBool::new(true));
    // Every cut makes every receiver reconnect at once; between cuts there must be time for that
    // storm of handshakes (the harness's sshd and clients share two cores), or nothing progresses.
    let calm_ms = 300 + 40 * size.sessions as u64;
    let cutter = {
        let (link, cutting) = (link.clone(), cutting.clone());
        tokio::spawn(async move {
            let mut state = 0x2545_f491_4f6c_dd1du64;
            let mut cuts = 0;
            let mut pause = Duration::from_millis(calm_ms / 2);
            while cutting.load(Ordering::SeqCst) {
                tokio::time::sleep(pause).await;
                link.cut();
                cuts += 1;
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                pause = Duration::from_millis(calm_ms + state % 600);
            }
            cuts
        })
    };
    let resumed = Arc::new(AtomicUsize::new(0));
    let receivers = (0..size.sessions).map(|session| {
        let (sshd, resumed) = (&sshd, resumed.clone());
        async move { (session, receive_all(sshd, session, size.commands, &resumed).await) }
    });
    let received = futures::future::join_all(receivers).await;
    cutting.store(false, Ordering::SeqCst);
    let cuts = cutter.await.unwrap();
    let peak = daemon_footprint(daemon);
    for (session, text) in received {
        check_exactly_once(session, &text, &expected(session, size.commands));
    }

    let mut client = Client::connect(sshd.alias(), &options(&sshd)).await.unwrap();
    let removed = client
        .remove(RemoveSessions {
            names: vec!["soak-*".into()],
            ..RemoveSessions::default()
        })
        .await
        .unwrap();
    assert_eq!(removed.len(), size.sessions);
    client.close().await.unwrap();
    let mut after = daemon_footprint(daemon);
    let settle = Instant::now() + Duration::from_secs(15);
    while (after.0 > baseline.0 || after.1 > baseline.1 + RSS_SLACK_KIB) && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = daemon_footprint(daemon);
    }
    eprintln!(
        "soak {}x{}: {} lines in {:.1}s; {cuts} cuts, {} streams resumed, {} connections; daemon fds {} -> {} -> {}, RSS {} -> {} -> {} KiB",
        size.sessions,
        size.commands,
        size.sessions * size.commands * LINES,
        started.elapsed().as_secs_f64(),
        resumed.load(Ordering::SeqCst),
        link.connections(),
        baseline.0,
        peak.0,
        after.0,
        baseline.1,
        peak.1,
        after.1
    );
    assert!(
        resumed.load(Ordering::SeqCst) > 0,
        "the link was actually cut mid-stream"
    );
    assert!(after.0 <= baseline.0, "every descriptor the sessions used was closed");
    assert!(after.1 <= baseline.1 + RSS_SLACK_KIB, "memory returned near baseline");
}
