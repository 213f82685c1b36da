//! Tests of the harness itself: the sshd it starts accepts OpenSSH's client, the faulty link
//! forwards, cuts and blackholes, and dropping an `Sshd` leaves nothing running.

use std::{
    io::{self, Read, Write},
    net::TcpStream,
    process::Stdio,
    time::Duration,
};

use remora_testkit::{command_line, process_alive, run, wait_for, wait_until, FaultyLink, Sshd};

/// Upper bound for one client run.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound for an event the test waits for.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a blackholed link must stay silent: asserting absence needs some bound.
const SILENCE: Duration = Duration::from_millis(500);

#[test]
fn openssh_client_runs_a_command_on_the_test_sshd() {
    let sshd = Sshd::start().unwrap();
    let output = run(sshd.ssh().args([sshd.alias(), "echo", "hello"]), RUN_TIMEOUT).unwrap();
    assert!(
        output.status.success(),
        "ssh failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        sshd.log()
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "hello\n");
}

#[test]
fn faulty_link_forwards_cuts_and_blackholes() {
    let sshd = Sshd::start().unwrap();
    let link = FaultyLink::start(sshd.addr()).unwrap();

    let mut first = connect(&link);
    assert_eq!(read_line(&mut first).unwrap().get(..8), Some("SSH-2.0-"));
    link.cut();
    assert_closed(&mut first);

    let mut stalled = connect(&link);
    assert!(read_line(&mut stalled).unwrap().starts_with("SSH-2.0-"));
    link.blackhole();
    // Forwarded, our banner would make sshd answer with its key exchange.
    stalled.write_all(b"SSH-2.0-harness_probe\r\n").unwrap();
    assert_silent(&mut stalled);
    let mut unforwarded = connect(&link);
    wait_until(EVENT_TIMEOUT, "the link to accept a third connection", || {
        link.connections() == 3
    })
    .unwrap();
    assert_silent(&mut unforwarded);

    link.restore();
    let mut restored = connect(&link);
    assert!(read_line(&mut restored).unwrap().starts_with("SSH-2.0-"));
    assert_silent(&mut stalled);
    assert_eq!(link.connections(), 4);
}

#[test]
fn openssh_client_reaches_the_sshd_through_a_faulty_link_alias() {
    let sshd = Sshd::start().unwrap();
    let link = FaultyLink::start(sshd.addr()).unwrap();
    sshd.add_alias("flaky", link.addr().port()).unwrap();
    let output = run(sshd.ssh().args(["flaky", "echo", "via the link"]), RUN_TIMEOUT).unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "via the link\n");
    assert_eq!(link.connections(), 1);
}

#[tokio::test]
async fn faulty_link_serves_async_clients_and_stops_inside_a_runtime() {
    use tokio::io::AsyncReadExt;

    let sshd = Sshd::start().unwrap();
    let link = FaultyLink::start(sshd.addr()).unwrap();
    let mut stream = tokio::net::TcpStream::connect(link.addr()).await.unwrap();
    let mut banner = [0u8; 8];
    tokio::time::timeout(EVENT_TIMEOUT, stream.read_exact(&mut banner))
        .await
        .expect("banner within the timeout")
        .unwrap();
    assert_eq!(&banner, b"SSH-2.0-");
    drop(link);
    let mut rest = Vec::new();
    tokio::time::timeout(EVENT_TIMEOUT, stream.read_to_end(&mut rest))
        .await
        .expect("a stopped link closes its connections")
        .unwrap_or(0);
}

#[test]
fn dropping_sshd_ends_sshd() {
    let sshd = Sshd::start().unwrap();
    let pid = sshd.pid();
    assert!(process_alive(pid));
    drop(sshd);
    assert!(!process_alive(pid), "sshd {pid} outlived its Sshd");
}

#[test]
fn dropping_sshd_ends_the_daemon_sessions_and_clients() {
    let sshd = Sshd::start().unwrap();
    // An attached client whose command runs in a session of the daemon until something ends it.
    let mut client = sshd
        .remora()
        .args(["invoke", sshd.alias(), "--name", "held", "--", "sleep", "300"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let command = wait_for(EVENT_TIMEOUT, "the session to run `sleep 300`", || {
        Ok(sshd
            .processes()
            .into_iter()
            .find(|&pid| command_line(pid).is_some_and(|args| args == ["sleep", "300"])))
    })
    .unwrap();
    let daemon = sshd.daemon_pid().expect("the subsystem started the daemon");
    let started = sshd.processes();
    assert!(started.contains(&daemon), "the daemon carries the marker: {started:?}");
    assert!(
        started.contains(&(client.id() as i32)),
        "so does the client: {started:?}"
    );
    let (listener, state_dir) = (sshd.pid(), sshd.state_dir());

    drop(sshd);
    for pid in started.into_iter().chain([listener, command]) {
        assert!(!process_alive(pid), "pid {pid} outlived its Sshd");
    }
    assert!(!state_dir.exists(), "the temp dir is removed");
    wait_until(EVENT_TIMEOUT, "the client to be reaped", || {
        client.try_wait().ok().flatten().is_some()
    })
    .unwrap();
}

fn connect(link: &FaultyLink) -> TcpStream {
    let stream = TcpStream::connect(link.addr()).unwrap();
    stream.set_read_timeout(Some(EVENT_TIMEOUT)).unwrap();
    stream
}

/// Reads up to and including `\n`, a byte at a time so nothing after the line is consumed.
fn read_line(stream: &mut TcpStream) -> io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.last() != Some(&b'\n') {
        match stream.read(&mut byte)? {
            0 => break,
            _ => line.push(byte[0]),
        }
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

fn read_some(stream: &mut TcpStream) -> io::Result<usize> {
    let mut buf = [0u8; 4096];
    stream.read(&mut buf)
}

/// Asserts that `stream` ends (end of file or a reset) without delivering more bytes.
fn assert_closed(stream: &mut TcpStream) {
    match read_some(stream) {
        Ok(0) => {}
        Err(err) if err.kind() == io::ErrorKind::ConnectionReset => {}
        other => panic!("a cut link is still open: {other:?}"),
    }
}

/// Asserts that no byte arrives on `stream` within [`SILENCE`] (and it is not closed either).
fn assert_silent(stream: &mut TcpStream) {
    stream.set_read_timeout(Some(SILENCE)).unwrap();
    match read_some(stream) {
        Err(err) if matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
        other => panic!("a blackholed link delivered something: {other:?}"),
    }
    stream.set_read_timeout(Some(EVENT_TIMEOUT)).unwrap();
}
