//! Warm calls that skip sshd: the holder keeps agent channels on standby between calls, so a
//! later call opens no SSH channel and starts no `remora-agent` process (nor login shell) on the
//! host, while every call still greets the agent as itself and leaves nothing behind for the
//! next one.

use nix::{sys::signal::Signal, unistd::Pid};

use crate::{
    stdin::{noise, sha256_hex, with_stdin},
    support::{remora, session, wait_until, Background, Sshd},
    warm::wait_held,
};

/// Agent channels sshd has started for this test's clients (`LogLevel VERBOSE`).
fn agent_channels(sshd: &Sshd) -> usize {
    sshd.log().matches("Starting session: subsystem 'remora'").count()
}

/// Waits until the holder has a channel on standby for `host`.
fn wait_ready(sshd: &Sshd, host: &str) {
    wait_held(sshd, host);
    wait_until("a channel on standby", || {
        let listed = remora(sshd, &["conn", "ls", "--json"]).stdout;
        serde_json::from_str::<serde_json::Value>(&listed)
            .ok()
            .and_then(|all| all.as_array()?.iter().find(|h| h["host"] == host)?["ready"].as_u64())
            .is_some_and(|ready| ready >= 1)
    })
    .unwrap();
}

#[test]
fn later_calls_start_nothing_on_the_host_and_each_is_its_own_client() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    remora(&sshd, &["new", host, "--name", "s"]).ok();
    wait_ready(&sshd, host);
    let before = agent_channels(&sshd);
    assert_eq!(
        remora(
            &sshd,
            &["invoke", host, "--name", "s", "--", "cd /tmp; X=kept; echo one"]
        )
        .ok(),
        "one\n"
    );
    assert_eq!(
        remora(&sshd, &["invoke", host, "--name", "s", "--", "echo $X $PWD"]).ok(),
        "kept /tmp\n",
        "the session's shell, through a reused channel"
    );
    remora(
        &sshd,
        &["invoke", host, "--name", "s", "--disconnected", "--", "echo later"],
    )
    .ok();
    assert_eq!(remora(&sshd, &["receive", host, "--name", "s"]).ok(), "later\n");
    let jobs = remora(&sshd, &["jobs", host, "--name", "s"]).ok();
    assert!(jobs.contains("echo later"), "{jobs}");
    let data = noise(300_000, 7);
    let (status, out, stderr) = with_stdin(
        sshd.remora(),
        &["invoke", host, "--name", "s", "--", "sha256sum"],
        data.clone(),
    );
    assert_eq!(status, 0, "{stderr}");
    assert!(
        String::from_utf8_lossy(&out).starts_with(&sha256_hex(&data)),
        "stdin arrives whole"
    );
    assert_eq!(
        agent_channels(&sshd),
        before,
        "no new agent channel (no subsystem process, no login shell) for six calls"
    );
    // Each call was a client of its own, and none is still attached.
    let info = session(&sshd, "s");
    assert_eq!(info["state"], "Disconnected", "{info}");
    let log = sshd.daemon_log();
    assert!(
        log.contains("connection on standby"),
        "the agent put the channel on standby: {log}"
    );
}

#[test]
fn a_caller_killed_mid_stream_leaves_nothing_for_the_next() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    remora(&sshd, &["new", host, "--name", "s"]).ok();
    wait_ready(&sshd, host);
    remora(
        &sshd,
        &[
            "invoke",
            host,
            "--name",
            "s",
            "--disconnected",
            "--",
            "i=0; while :; do i=$((i+1)); echo line $i; done",
        ],
    )
    .ok();
    let mut receiving = Background::start(&sshd, &["receive", host, "--name", "s", "--keep"]);
    receiving.wait_for_line("line 2000");
    receiving.child.kill().unwrap();
    let _ = receiving.finish();
    // The next calls get only their own frames: the killed caller's stream and attachment are
    // gone, whether its channel was kept or closed.
    wait_until("the killed caller's attachment to go", || {
        session(&sshd, "s")["attached"].is_null()
    })
    .unwrap();
    remora(&sshd, &["stop", host, "--name", "s"]).ok();
    for round in 0..3 {
        let echoed = remora(&sshd, &["invoke", host, "--", &format!("echo clean {round}")]);
        assert_eq!(echoed.status, 0, "{echoed:?}");
        assert_eq!(echoed.stdout, format!("clean {round}\n"), "{echoed:?}");
    }
}

#[test]
fn a_daemon_restart_under_kept_channels_costs_one_fresh_channel() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    remora(&sshd, &["ls", host]).ok();
    wait_ready(&sshd, host);
    let daemon = sshd.daemon_pid().unwrap();
    nix::sys::signal::kill(Pid::from_raw(daemon), Signal::SIGTERM).unwrap();
    wait_until("the daemon to exit", || !crate::support::process_alive(daemon)).unwrap();
    // The kept channel closed with the daemon; the call quietly takes a fresh one.
    let listed = remora(&sshd, &["ls", host]);
    assert_eq!(
        (listed.status, listed.stderr.as_str()),
        (0, "no sessions\n"),
        "{listed:?}"
    );
}

#[test]
fn a_channel_kept_after_a_call_outlasts_the_agents_hello_timeout() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    remora(&sshd, &["new", host, "--name", "s"]).ok();
    wait_ready(&sshd, host);
    // This call takes the spare and gives it back on standby.
    assert_eq!(
        remora(&sshd, &["invoke", host, "--name", "s", "--", "echo used"]).ok(),
        "used\n"
    );
    wait_ready(&sshd, host);
    let before = agent_channels(&sshd);
    // Idle for longer than the 10 s a new connection has for its hello: the time itself is what
    // is tested here.
    std::thread::sleep(std::time::Duration::from_secs(12));
    assert_eq!(
        remora(&sshd, &["invoke", host, "--name", "s", "--", "echo later"]).ok(),
        "later\n"
    );
    assert_eq!(agent_channels(&sshd), before, "the kept channel was still there");
}

#[test]
fn a_call_on_a_kept_channel_cut_by_the_link_resumes_and_loses_nothing() {
    let sshd = Sshd::start().unwrap();
    let (link, config) = crate::support::flaky(&sshd);
    let flaky = |args: &[&str]| -> std::process::Command {
        let mut command = sshd.remora_with_config(&config);
        command.args(args);
        command
    };
    let run = |args: &[&str]| crate::support::run(&mut flaky(args), crate::support::TIMEOUT).unwrap();
    let gate = sshd.dir().join("gate");
    let command = format!(
        "seq 1 200; while [ ! -e {} ]; do sleep 0.05; done; seq 201 400",
        gate.display()
    );
    assert!(run(&["new", "flaky", "--name", "cut"]).status.success());
    assert!(
        run(&["invoke", "flaky", "--name", "cut", "--disconnected", "--", &command])
            .status
            .success()
    );
    wait_ready(&sshd, "flaky");
    let before = agent_channels(&sshd);
    let mut receiving = Background::spawn(flaky(&["receive", "flaky", "--name", "cut"]));
    receiving.wait_for_line("200");
    assert_eq!(agent_channels(&sshd), before, "the receive runs on a kept channel");
    link.cut();
    std::fs::write(&gate, "").unwrap();
    let (status, stderr, lines) = receiving.finish_with_lines();
    let expected: Vec<String> = (1..=400).map(|i| i.to_string()).collect();
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(lines, expected, "every line once, in order, across the cut: {stderr}");
    assert_eq!(session(&sshd, "cut")["commands_running"], 0);
    let after = run(&["invoke", "flaky", "--name", "cut", "--", "echo next"]);
    assert_eq!(
        String::from_utf8_lossy(&after.stdout),
        "next\n",
        "the next call gets only its own output"
    );
}
