//! The per-user daemon: started on demand exactly once, outliving every SSH connection.

use std::thread;

use crate::support::{live_command_lines, remora, session, Sshd};

/// Daemon processes serving this test's state directory.
fn daemons_for(sshd: &Sshd) -> usize {
    let state = sshd.state_dir().display().to_string();
    live_command_lines()
        .iter()
        .filter(|c| c.contains("remora-agent daemon") && c.contains(&state))
        .count()
}

#[test]
fn concurrent_first_connections_start_exactly_one_daemon() {
    let sshd = Sshd::start().unwrap();
    assert!(sshd.daemon_pid().is_none(), "no daemon before the first connection");
    let runs: Vec<_> = thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let sshd = &sshd;
                scope.spawn(move || remora(sshd, &["new", sshd.alias(), "--name", &format!("s{i}")]))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for run in runs {
        assert_eq!(run.status, 0, "{run:?}");
    }
    assert_eq!(daemons_for(&sshd), 1);
    assert_eq!(
        crate::support::ls_json(&sshd).len(),
        6,
        "every session landed in the one daemon"
    );
}

#[test]
fn the_daemon_and_running_commands_outlive_the_ssh_connection() {
    let sshd = Sshd::start().unwrap();
    let gate = sshd.dir().join("gate");
    let command = format!("while [ ! -e {} ]; do sleep 0.05; done; echo survived", gate.display());
    remora(
        &sshd,
        &["invoke", sshd.alias(), "--name", "bg", "--disconnected", "--", &command],
    )
    .ok();
    let daemon = sshd.daemon_pid().expect("daemon started");

    // No SSH connection exists now; the command is still running in the daemon.
    assert_eq!(session(&sshd, "bg")["commands_running"], 1);
    std::fs::write(&gate, "").unwrap();
    assert_eq!(
        remora(&sshd, &["receive", sshd.alias(), "--name", "bg"]).ok(),
        "survived\n"
    );
    assert_eq!(
        sshd.daemon_pid(),
        Some(daemon),
        "the same daemon served every connection"
    );
}

#[test]
fn sessions_and_finished_output_survive_a_killed_daemon() {
    use nix::{sys::signal::Signal, unistd::Pid};
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    remora(&sshd, &["invoke", host, "--name", "kept", "--", "echo seen before"]).ok();
    remora(
        &sshd,
        &[
            "invoke",
            host,
            "--name",
            "kept",
            "--disconnected",
            "--",
            "echo unread; echo err >&2; (exit 6)",
        ],
    )
    .ok();
    crate::support::wait_until("the command to finish", || {
        session(&sshd, "kept")["commands_completed"] == 2
    })
    .unwrap();
    let daemon = sshd.daemon_pid().unwrap();
    nix::sys::signal::kill(Pid::from_raw(daemon), Signal::SIGKILL).unwrap();
    crate::support::wait_until("the daemon to die", || !crate::support::process_alive(daemon)).unwrap();

    let restored = session(&sshd, "kept");
    assert_ne!(sshd.daemon_pid(), Some(daemon), "a new daemon answered");
    assert_eq!(restored["state"], "Broken");
    assert!(
        restored["broken_reason"].as_str().unwrap().contains("agent restarted"),
        "{restored}"
    );
    let received = remora(&sshd, &["receive", host, "--name", "kept"]);
    assert_eq!(
        (
            received.status,
            received.stdout.as_str(),
            received.stderr.contains("err\n")
        ),
        (6, "unread\n", true)
    );
    assert_eq!(
        remora(&sshd, &["receive", host, "--name", "kept"]).stdout,
        "",
        "still exactly once"
    );

    remora(&sshd, &["rm", host, "--name", "kept"]).ok();
    let stored = sshd.state_dir().join("data/sessions");
    assert_eq!(
        std::fs::read_dir(&stored).unwrap().count(),
        0,
        "removal deletes what was stored"
    );
}

#[test]
fn sigterm_stops_running_commands_and_keeps_their_output_for_the_next_daemon() {
    use nix::{sys::signal::Signal, unistd::Pid};
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    let started = sshd.dir().join("started");
    let command = format!(
        "echo before-term; echo err-before >&2; touch {}; sleep 613; echo never",
        started.display()
    );
    remora(
        &sshd,
        &["invoke", host, "--name", "term", "--disconnected", "--", &command],
    )
    .ok();
    crate::support::wait_until("the command to start", || started.exists()).unwrap();
    let daemon = sshd.daemon_pid().unwrap();
    nix::sys::signal::kill(Pid::from_raw(daemon), Signal::SIGTERM).unwrap();
    // The daemon bounds its shutdown at 10 s; it has no reason to take that long here.
    crate::support::wait_until("the daemon to exit", || !crate::support::process_alive(daemon)).unwrap();
    assert!(
        !live_command_lines().iter().any(|c| c.contains("sleep 613")),
        "the running command's processes ended with the daemon"
    );
    assert!(sshd.daemon_log().contains("daemon stopped"), "{}", sshd.daemon_log());

    let jobs = remora(&sshd, &["jobs", host, "--name", "term", "--json"]).ok();
    let jobs: serde_json::Value = serde_json::from_str(&jobs).unwrap();
    assert_eq!(jobs[0]["state"], "Stopped", "{jobs}");
    assert_ne!(sshd.daemon_pid(), Some(daemon), "a new daemon answered");
    let received = remora(&sshd, &["receive", host, "--name", "term"]);
    assert_eq!(received.stdout, "before-term\n", "{received:?}");
    assert!(received.stderr.contains("err-before\n"), "{received:?}");
    assert_eq!(session(&sshd, "term")["state"], "Broken");
}

#[test]
fn the_daemon_log_is_private_and_holds_no_command_text_or_output() {
    use std::os::unix::fs::PermissionsExt;
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    remora(
        &sshd,
        &[
            "invoke",
            host,
            "--name",
            "s",
            "--",
            "export TOKEN=secret-91c2; echo out-7f3a",
        ],
    )
    .ok();
    remora(
        &sshd,
        &[
            "invoke",
            host,
            "--name",
            "s",
            "--disconnected",
            "--",
            "echo $TOKEN-again",
        ],
    )
    .ok();
    assert_eq!(
        remora(&sshd, &["receive", host, "--name", "s"]).ok(),
        "secret-91c2-again\n"
    );
    let log = sshd.daemon_log();
    assert!(log.contains("session created"), "the log is written: {log}");
    for secret in ["secret-91c2", "out-7f3a", "TOKEN"] {
        assert!(!log.contains(secret), "{secret} leaked into the daemon log:\n{log}");
        assert!(!sshd.log().contains(secret), "{secret} leaked into sshd's log");
    }
    let file = sshd.state_dir().join("log").join("daemon.log");
    assert_eq!(std::fs::metadata(file).unwrap().permissions().mode() & 0o777, 0o600);
}

/// The `oom_score_adj` of `pid`.
fn oom_score_adj(pid: &str) -> i32 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap();
    text.trim().parse().unwrap()
}

#[test]
fn the_oom_killer_picks_a_command_or_a_terminals_shell_before_the_daemon() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    let command = remora(
        &sshd,
        &["invoke", host, "--name", "o", "--", "cat /proc/self/oom_score_adj"],
    )
    .ok();
    let daemon = oom_score_adj(&sshd.daemon_pid().unwrap().to_string());
    let command: i32 = command.trim().parse().unwrap();
    assert!(
        command > daemon,
        "a command ranks before the daemon ({command} vs {daemon})"
    );

    let mut pty = remora_testkit::PtyProgram::spawn(
        {
            let mut shell = sshd.remora();
            shell.args(["shell", host, "--name", "t"]).env("TERM", "xterm");
            shell
        },
        24,
        80,
    )
    .unwrap();
    pty.send(b"echo adj-$(cat /proc/self/oom_score_adj)-$((40+2))\r")
        .unwrap();
    let screen = pty.wait_for_text(std::time::Duration::from_secs(20), "-42").unwrap();
    let shown = screen
        .split("adj-")
        .filter_map(|rest| rest.split('-').next()?.parse::<i32>().ok())
        .last()
        .unwrap_or_else(|| panic!("no oom_score_adj on the screen: {screen}"));
    assert!(
        shown > daemon,
        "a terminal's programs rank before the daemon ({shown} vs {daemon})"
    );
    pty.send(b"\r~.").unwrap();
    pty.wait_exit(std::time::Duration::from_secs(20)).unwrap();
}
