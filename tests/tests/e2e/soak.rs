//! A bounded soak: many sessions × many commands, received through a link that is cut at random
//! moments (one receiver's connection at a time, a hundred times or more per round), by clients
//! that come and go. Every line must arrive exactly once and in order; after the sessions are
//! removed the daemon's open descriptors return to baseline, and its memory stays flat from one
//! round to the next (what the allocator keeps on purpose is told apart from a leak).
//!
//! Size: `REMORA_SOAK=SESSIONSxCOMMANDS` (default 20x40, two rounds of about 15 s each; the full run is
//! `REMORA_SOAK=50x200 cargo test -p remora-tests --test e2e soak -- --nocapture`, and
//! `REMORA_SOAK_ROUNDS=4` runs it four times over to show the memory stays flat).

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

/// Freed heap the daemon keeps for the next burst (`M_TRIM_THRESHOLD` in its `keep_freed_heap`).
const KEPT_HEAP_KIB: u64 = 16 * 1024;

/// Beyond that, how far the daemon's anonymous memory may stay above its baseline after a round.
const ANON_SLACK_KIB: u64 = 8 * 1024;

/// How much a round may add to the memory the round before left: a leak of per-session or
/// per-line state grows with every round, the allocator's retention does not.
const FLAT_SLACK_KIB: u64 = 2 * 1024;

/// Rounds of the whole soak, each on fresh sessions (`REMORA_SOAK_ROUNDS`, at least 2).
fn rounds() -> usize {
    std::env::var("REMORA_SOAK_ROUNDS").ok().map_or(2, |text| {
        text.parse::<usize>().expect("REMORA_SOAK_ROUNDS is a number").max(2)
    })
}

/// How often, on average, one receiver's link is cut.
const CUT_EVERY: Duration = Duration::from_millis(200);

/// The shortest pause between two cuts: at most 100 reconnects a second, whatever the number of
/// receivers (the harness's sshd and clients share two cores).
const CUT_PAUSE_MIN: Duration = Duration::from_millis(10);

/// Bytes a receiver's connection carries before it may be cut: past its handshake, so a
/// reconnect always gets through it and nearly every cut lands mid-stream and resumes.
const SETTLED: u64 = 4 * 1024;

/// Cuts a round must make at least, per line received: 100 in the full run's million lines.
const LINES_PER_CUT: usize = 10_000;

/// What this run is sized to.
struct Size {
    sessions: usize,
    commands: usize,
}

fn size() -> Size {
    let text = std::env::var("REMORA_SOAK").unwrap_or_else(|_| "20x40".into());
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

/// What the daemon holds: open descriptors, threads, and memory in KiB: resident, and of it the
/// anonymous part (heap and stacks; the rest is the binary's own pages, which grow as the soak
/// runs code for the first time and are no leak).
#[derive(Debug, Clone, Copy)]
struct Footprint {
    fds: usize,
    threads: u64,
    rss_kib: u64,
    anon_kib: u64,
}

impl Footprint {
    fn of(pid: i32) -> Self {
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the daemon is running");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        };
        Footprint {
            fds,
            threads: field("Threads:"),
            rss_kib: field("VmRSS:"),
            anon_kib: field("RssAnon:"),
        }
    }
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
    let baseline = Footprint::of(daemon);
    let mut after = Vec::new();
    for round in 1..=rounds() {
        let started = Instant::now();
        let (cuts, resumed, peak) = one_round(&sshd, &link, &size).await;
        let settled = settle(daemon, &baseline).await;
        eprintln!(
            "soak {}x{} round {round}: {} lines in {:.1}s; {cuts} cuts, {resumed} streams resumed, {} connections; daemon fds {} -> {} -> {}, anonymous memory {} -> {} -> {} KiB (resident {} -> {} -> {}), threads {} -> {} -> {}",
            size.sessions,
            size.commands,
            size.sessions * size.commands * LINES,
            started.elapsed().as_secs_f64(),
            link.connections(),
            baseline.fds,
            peak.fds,
            settled.fds,
            baseline.anon_kib,
            peak.anon_kib,
            settled.anon_kib,
            baseline.rss_kib,
            peak.rss_kib,
            settled.rss_kib,
            baseline.threads,
            peak.threads,
            settled.threads,
        );
        let min_cuts = (size.sessions * size.commands * LINES).div_ceil(LINES_PER_CUT);
        assert!(
            cuts >= min_cuts,
            "round {round}: {cuts} cuts; this size needs {min_cuts} or more"
        );
        assert!(
            resumed * 4 >= cuts * 3,
            "round {round}: {resumed} streams resumed after {cuts} cuts: nearly every cut lands mid-stream"
        );
        assert!(
            settled.fds <= baseline.fds,
            "round {round}: every descriptor the sessions used was closed"
        );
        after.push(settled);
    }
    // The daemon keeps up to KEPT_HEAP_KIB of freed heap on purpose (see `keep_freed_heap`), so
    // one round's growth can be that; a leak shows as growth from one round to the next.
    assert!(
        after[0].anon_kib <= baseline.anon_kib + KEPT_HEAP_KIB + ANON_SLACK_KIB,
        "memory after a round stays within the heap the daemon keeps on purpose"
    );
    for (round, pair) in after.windows(2).enumerate() {
        assert!(
            pair[1].anon_kib <= pair[0].anon_kib + FLAT_SLACK_KIB,
            "round {} grew the daemon's memory by {} KiB over the round before: per-session or per-line state is kept",
            round + 2,
            pair[1].anon_kib.saturating_sub(pair[0].anon_kib)
        );
    }
}

/// Creates the sessions, queues every command, receives them all through the flaky link while
/// it is cut, checks every line arrived once and removes the sessions; returns the cuts, the
/// streams resumed and the daemon's footprint at its peak.
async fn one_round(sshd: &Sshd, link: &Arc<FaultyLink>, size: &Size) -> (usize, usize, Footprint) {
    let daemon = sshd.daemon_pid().unwrap();
    create_sessions(sshd, size).await;
    queue_everything(sshd, size).await;
    let cutting = Arc::new(AtomicBool::new(true));
    // A thread of its own: the test's runtime is saturated by fifty clients' decryption, and a
    // task of it would wake far too late to cut on time.
    let cutter = {
        let (link, cutting) = (link.clone(), cutting.clone());
        std::thread::spawn(move || cut_one_link_at_a_time(&link, &cutting))
    };
    let resumed = Arc::new(AtomicUsize::new(0));
    let receivers = (0..size.sessions).map(|session| {
        let resumed = resumed.clone();
        async move { (session, receive_all(sshd, session, size.commands, &resumed).await) }
    });
    let received = futures::future::join_all(receivers).await;
    cutting.store(false, Ordering::SeqCst);
    let cuts = cutter.join().unwrap();
    let peak = Footprint::of(daemon);
    for (session, text) in received {
        check_exactly_once(session, &text, &expected(session, size.commands));
    }
    let mut client = Client::connect(sshd.alias(), &options(sshd)).await.unwrap();
    let removed = client
        .remove(RemoveSessions {
            names: vec!["soak-*".into()],
            ..RemoveSessions::default()
        })
        .await
        .unwrap();
    assert_eq!(removed.len(), size.sessions);
    client.close().await.unwrap();
    (cuts, resumed.load(Ordering::SeqCst), peak)
}

/// Cuts one receiver's link at a time, each about every [`CUT_EVERY`] (at most one per
/// [`CUT_PAUSE_MIN`]), until told to stop;
/// returns how many it cut. A cut is a reconnect and a resume for that receiver while the
/// others stream on, and the last receivers are cut no more often than the first (a link cut
/// faster than a handshake takes never comes back).
fn cut_one_link_at_a_time(link: &FaultyLink, cutting: &AtomicBool) -> usize {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut cuts = 0;
    let every = CUT_EVERY.as_millis() as u64;
    while cutting.load(Ordering::SeqCst) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let pause = (every / 2 + state % every) / link.forwarding(SETTLED).max(1) as u64;
        std::thread::sleep(Duration::from_millis(pause).max(CUT_PAUSE_MIN));
        if link.cut_one(state >> 8, SETTLED) {
            cuts += 1;
        }
    }
    cuts
}

/// Waits (at most 15 s) until the daemon has closed what the round opened and its blocking
/// threads are gone, then returns its footprint.
async fn settle(daemon: i32, baseline: &Footprint) -> Footprint {
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let now = Footprint::of(daemon);
        let settled = now.fds <= baseline.fds && now.threads <= baseline.threads;
        if settled || Instant::now() > until {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
