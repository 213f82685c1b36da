//! `invoke --disconnected` and `receive`: the point of remora.

use crate::support::{remora, session, Sshd};

#[test]
fn disconnected_invoke_returns_at_once_and_receive_gets_every_line_exactly_once() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    let gate = sshd.dir().join("gate");
    let command = format!(
        "echo first; while [ ! -e {} ]; do sleep 0.05; done; for i in $(seq 1 500); do echo line $i; done; echo complaint >&2; (exit 4)",
        gate.display()
    );
    let started = remora(
        &sshd,
        &["invoke", host, "--name", "job", "--disconnected", "--", &command],
    );
    assert_eq!(started.status, 0, "{started:?}");
    assert_eq!(started.stdout, "job\n");
    assert!(
        started.stderr.contains("remora receive"),
        "says how to collect: {started:?}"
    );

    let running = session(&sshd, "job");
    assert_eq!(
        running["commands_running"], 1,
        "the command is still running: {running}"
    );
    assert_eq!(running["state"], "Disconnected");

    std::fs::write(&gate, "").unwrap();
    let received = remora(&sshd, &["receive", host, "--name", "job"]);
    let expected: String = std::iter::once("first\n".to_string())
        .chain((1..=500).map(|i| format!("line {i}\n")))
        .collect();
    assert_eq!(received.stdout, expected);
    assert_eq!(received.stderr, "complaint\n");
    assert_eq!(received.status, 4);

    let again = remora(&sshd, &["receive", host, "--name", "job"]);
    assert_eq!(again.stdout, "", "nothing is delivered twice");
    assert_eq!(again.stderr, "");
    assert_eq!(again.status, 4, "the last command's status is still reported");
}

#[test]
fn receive_by_instance_id() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    remora(&sshd, &["new", host, "--name", "by-id"]).ok();
    remora(
        &sshd,
        &[
            "invoke",
            host,
            "--name",
            "by-id",
            "--disconnected",
            "--",
            "echo found by id",
        ],
    )
    .ok();
    let id = session(&sshd, "by-id")["instance_id"].as_str().unwrap().to_string();
    let out = remora(&sshd, &["receive", host, "--id", &id]).ok();
    assert_eq!(out, "found by id\n");
}

#[test]
fn unnamed_disconnected_invoke_names_a_session_to_receive_from() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    let name = remora(&sshd, &["invoke", host, "--disconnected", "--", "echo from a job"]).ok();
    let name = name.trim();
    assert!(name.starts_with("job-"), "{name}");
    assert_eq!(remora(&sshd, &["receive", host, "--name", name]).ok(), "from a job\n");
}

#[test]
fn queued_commands_run_in_order_and_receive_follows_them_all() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    for i in 1..=3 {
        let command = format!("echo command {i}; (exit {i})");
        remora(
            &sshd,
            &["invoke", host, "--name", "q", "--disconnected", "--", &command],
        )
        .ok();
    }
    let received = remora(&sshd, &["receive", host, "--name", "q"]);
    assert_eq!(received.stdout, "command 1\ncommand 2\ncommand 3\n");
    assert_eq!(received.status, 3, "exit status of the last command");
}
