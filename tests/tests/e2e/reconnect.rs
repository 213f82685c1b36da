//! Broken links for real: a proxy between the client and sshd cuts or refuses connections while
//! output streams; the client reconnects, resumes, and nothing is lost or duplicated.

use std::{
    io::{BufRead, Read},
    process::{Command, Stdio},
};

use crate::support::{run_child, session, FaultyLink, Sshd, TIMEOUT};

/// A test sshd reached through a `FaultyLink` under the alias `flaky`.
struct Flaky {
    sshd: Sshd,
    link: FaultyLink,
    config: std::path::PathBuf,
}

impl Flaky {
    fn start() -> Flaky {
        let sshd = Sshd::start().unwrap();
        let (link, config) = crate::support::flaky(&sshd);
        Flaky { sshd, link, config }
    }

    fn remora(&self, args: &[&str]) -> Command {
        let mut command = self.sshd.remora_with_config(&self.config);
        command.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        command
    }

    /// Writes `len` bytes of deterministic noise to a file on the "host" and returns them.
    fn noise_file(&self, len: usize) -> (std::path::PathBuf, Vec<u8>) {
        let mut state = 0x853c_49e6_748f_ea9bu64;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 32) as u8
            })
            .collect();
        let path = self.sshd.dir().join("noise.bin");
        std::fs::write(&path, &bytes).unwrap();
        (path, bytes)
    }
}

/// Reads a child's stdout to the end, cutting the link each time another `every` bytes arrived
/// (up to `cuts` times). Returns what was read.
fn read_with_cuts(child: &mut std::process::Child, link: &FaultyLink, every: usize, cuts: usize) -> Vec<u8> {
    let mut stdout = child.stdout.take().unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let (mut done, mut cut_at_connection) = (0, 0);
    loop {
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            return got;
        }
        got.extend_from_slice(&buf[..n]);
        let reconnected = link.connections() > cut_at_connection;
        if done < cuts && got.len() >= every * (done + 1) && reconnected {
            cut_at_connection = link.connections();
            link.cut();
            done += 1;
        }
    }
}

#[test]
fn a_40_mb_stream_survives_two_cuts_byte_for_byte() {
    let flaky = Flaky::start();
    let (path, expected) = flaky.noise_file(40 * 1024 * 1024);
    let command = format!("cat {}", path.display());
    let mut child = flaky
        .remora(&["invoke", "flaky", "--name", "big", "--", &command])
        .spawn()
        .unwrap();
    let got = read_with_cuts(&mut child, &flaky.link, 12 * 1024 * 1024, 2);
    let output = run_child(child, TIMEOUT).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(got.len(), expected.len(), "{stderr}");
    assert!(got == expected, "every byte once, in order");
    assert_eq!(stderr.matches("resumed after").count(), 2, "{stderr}");
    assert!(flaky.link.connections() >= 3);
}

#[test]
fn twenty_random_cuts_during_a_long_receive_lose_and_repeat_nothing() {
    let flaky = Flaky::start();
    // 80 MiB: after each cut the client still prints what the socket buffers held (a few MiB
    // when its stdout is read slowly) before it notices, so twenty cuts take more than 20 MiB.
    let (path, expected) = flaky.noise_file(80 * 1024 * 1024);
    let command = format!("cat {}", path.display());
    let host = flaky.sshd.alias();
    crate::support::remora(
        &flaky.sshd,
        &["invoke", host, "--name", "soak", "--disconnected", "--", &command],
    )
    .ok();
    let mut child = flaky.remora(&["receive", "flaky", "--name", "soak"]).spawn().unwrap();
    let every = 1024 * 1024 + (std::process::id() as usize % 4096);
    let got = read_with_cuts(&mut child, &flaky.link, every, 20);
    let output = run_child(child, TIMEOUT).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(got == expected, "{} of {} bytes; {stderr}", got.len(), expected.len());
    assert!(flaky.link.connections() > 20, "cut 20 times: {stderr}");
    assert!(stderr.contains("resumed after"), "{stderr}");
}

#[test]
fn a_link_down_longer_than_reconnect_for_ends_with_the_command_to_resume() {
    let flaky = Flaky::start();
    let gate = flaky.sshd.dir().join("gate");
    let command = format!(
        "echo first; while [ ! -e {} ]; do sleep 0.05; done; echo second",
        gate.display()
    );
    let mut child = flaky
        .remora(&[
            "invoke",
            "flaky",
            "--name",
            "s",
            "--reconnect-for",
            "3s",
            "--",
            &command,
        ])
        .spawn()
        .unwrap();
    let mut first = [0u8; 6];
    child.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
    assert_eq!(&first, b"first\n");
    crate::support::wait_until("the client to acknowledge what it printed", || {
        session(&flaky.sshd, "s")["unacked_bytes"] == 0
    })
    .unwrap();
    flaky.link.refuse();
    flaky.link.cut();
    let output = run_child(child, TIMEOUT).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(255), "{stderr}");
    assert!(
        stderr.contains("retrying") && stderr.contains("remora receive flaky --id"),
        "{stderr}"
    );

    let id = session(&flaky.sshd, "s")["instance_id"].as_str().unwrap().to_string();
    assert!(stderr.contains(&id), "names the session to resume: {stderr}");
    std::fs::write(&gate, "").unwrap();
    let rest = crate::support::remora(&flaky.sshd, &["receive", flaky.sshd.alias(), "--id", &id]).ok();
    assert_eq!(rest, "second\n", "the session kept the rest");
}

#[test]
fn a_cut_with_reconnecting_off_says_the_link_was_lost_and_how_to_collect_the_output() {
    let flaky = Flaky::start();
    let gate = flaky.sshd.dir().join("gate");
    let command = format!(
        "echo first; while [ ! -e {} ]; do sleep 0.05; done; echo second",
        gate.display()
    );
    let mut child = flaky
        .remora(&["invoke", "flaky", "--name", "s", "--reconnect-for", "0", "--", &command])
        .spawn()
        .unwrap();
    let mut first = [0u8; 6];
    child.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
    assert_eq!(&first, b"first\n");
    crate::support::wait_until("the client to acknowledge what it printed", || {
        session(&flaky.sshd, "s")["unacked_bytes"] == 0
    })
    .unwrap();
    flaky.link.cut();
    let output = run_child(child, TIMEOUT).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(255), "{stderr}");
    let id = session(&flaky.sshd, "s")["instance_id"].as_str().unwrap().to_string();
    let said = format!(
        "remora: flaky: the link was lost (flaky: the connection to remora-agent was lost) and reconnecting is \
         off (--reconnect-for 0); the session is still on the host: collect its output with \
         `remora receive flaky --id {id}`\n"
    );
    assert_eq!(stderr, said, "one line, blaming the link, not the agent");
    std::fs::write(&gate, "").unwrap();
    let rest = crate::support::remora(&flaky.sshd, &["receive", flaky.sshd.alias(), "--id", &id]).ok();
    assert_eq!(rest, "second\n", "the session kept the rest");
}

/// Starts a command in session `name` that prints `first`, waits for a gate file, then prints
/// `second`; attaches `remora connect` to it through the flaky link once `first` is out.
fn attach_gated(flaky: &Flaky, name: &str) -> (std::process::Child, std::path::PathBuf) {
    let gate = flaky.sshd.dir().join(format!("{name}.gate"));
    let command = format!(
        "echo first; while [ ! -e {} ]; do sleep 0.05; done; echo second",
        gate.display()
    );
    let host = flaky.sshd.alias();
    crate::support::remora(
        &flaky.sshd,
        &["invoke", host, "--name", name, "--disconnected", "--", &command],
    )
    .ok();
    let mut attached = flaky.remora(&["connect", "flaky", "--name", name]).spawn().unwrap();
    let mut first = [0u8; 6];
    attached.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
    assert_eq!(&first, b"first\n");
    (attached, gate)
}

/// Opens the gate and checks the attached client prints the rest exactly once and succeeds.
fn finish_gated(attached: std::process::Child, gate: &std::path::Path) -> String {
    std::fs::write(gate, "").unwrap();
    let output = run_child(attached, TIMEOUT).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "second\n",
        "the rest, once: {stderr}"
    );
    stderr
}

/// Waits (up to 40 s) until the session's availability is `expected`.
fn wait_availability(flaky: &Flaky, name: &str, expected: &str, what: &str) {
    let limit = std::time::Duration::from_secs(40);
    crate::support::wait_until_within(limit, what, || session(&flaky.sshd, name)["availability"] == expected).unwrap();
}

#[test]
fn a_silent_link_is_noticed_by_both_sides_and_the_client_resumes_when_it_returns() {
    let flaky = Flaky::start();
    let (attached, gate) = attach_gated(&flaky, "hb");
    assert_eq!(session(&flaky.sshd, "hb")["availability"], "Busy");
    flaky.link.blackhole();
    wait_availability(&flaky, "hb", "None", "the agent to notice the dead link");
    flaky.link.restore();
    wait_availability(&flaky, "hb", "Busy", "the client to come back");
    let stderr = finish_gated(attached, &gate);
    assert!(stderr.contains("resumed after"), "{stderr}");
}

#[test]
fn a_client_stopped_like_a_sleeping_laptop_is_let_go_and_resumes_on_waking() {
    use nix::{sys::signal::Signal, unistd::Pid};
    let flaky = Flaky::start();
    let (attached, gate) = attach_gated(&flaky, "nap");
    let pid = Pid::from_raw(attached.id() as i32);
    nix::sys::signal::kill(pid, Signal::SIGSTOP).unwrap();
    wait_availability(&flaky, "nap", "None", "the agent to let the silent client go");
    nix::sys::signal::kill(pid, Signal::SIGCONT).unwrap();
    wait_availability(&flaky, "nap", "Busy", "the client to come back");
    finish_gated(attached, &gate);
}

#[test]
fn jobs_follow_whose_link_is_cut_reconnects_and_sees_the_job_end() {
    let flaky = Flaky::start();
    let gate = flaky.sshd.dir().join("follow.gate");
    let command = format!("while [ ! -e {} ]; do sleep 0.05; done; exit 7", gate.display());
    let host = flaky.sshd.alias();
    crate::support::remora(
        &flaky.sshd,
        &["invoke", host, "--name", "w", "--disconnected", "--", &command],
    )
    .ok();
    let mut child = flaky
        .remora(&["jobs", "flaky", "--name", "w", "--follow"])
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("Running") {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "follow ended early: {seen}");
        seen.push_str(&line);
    }
    // The wait is in place on the agent (it sent the table): cut it, then end the job.
    let connections = flaky.link.connections();
    flaky.link.cut();
    crate::support::wait_until("the follow to reconnect", || flaky.link.connections() > connections).unwrap();
    std::fs::write(&gate, "").unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let output = run_child(child, TIMEOUT).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("resumed after"), "{stderr}");
    assert!(
        rest.contains("job 1 Completed exit 7"),
        "the end is shown: {seen}{rest}"
    );
}
