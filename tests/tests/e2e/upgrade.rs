//! Agent upgrades: a new `remora-agent` binary takes the running daemon over, and running
//! commands, their shells' state, unreceived output and attached clients carry on.

use std::{io::Write, path::PathBuf};

use crate::support::{binaries, ls_json, remora, run, session, wait_until, Background, Sshd, TIMEOUT};

/// A copy of the built agent under another path: the "new version" a handover goes to.
fn new_binary(sshd: &Sshd) -> PathBuf {
    let copy = sshd.dir().join("remora-agent-new");
    remora_testkit::copy_executable(&binaries().agent, &copy).unwrap();
    copy
}

fn upgrade_with(sshd: &Sshd, binary: &std::path::Path) -> std::process::Output {
    let mut command = sshd.agent_at(binary);
    command.arg("upgrade").arg("--state-dir").arg(sshd.state_dir());
    run(&mut command, TIMEOUT).unwrap()
}

#[test]
fn an_upgrade_carries_running_commands_shell_state_and_attached_clients_over() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    let (started, gate) = (sshd.dir().join("started"), sshd.dir().join("gate"));
    remora(
        &sshd,
        &["invoke", host, "--name", "work", "--", "export KEPT=yes; cd /tmp"],
    )
    .ok();
    let command = format!(
        "for i in 1 2 3 4 5; do echo line-$i; done; touch {}; while [ ! -e {} ]; do sleep 0.05; done; echo after-gate; echo err-after >&2; (exit 7)",
        started.display(),
        gate.display()
    );
    remora(
        &sshd,
        &["invoke", host, "--name", "work", "--disconnected", "--", &command],
    )
    .ok();
    remora(
        &sshd,
        &[
            "invoke",
            host,
            "--name",
            "queued",
            "--disconnected",
            "--",
            "echo queued-ran",
        ],
    )
    .ok();
    wait_until("the command to start", || started.exists()).unwrap();
    let mut attached = Background::start(&sshd, &["receive", host, "--name", "work"]);
    attached.wait_for_line("line-5");
    let daemon = sshd.daemon_pid().unwrap();

    let new = new_binary(&sshd);
    let upgraded = upgrade_with(&sshd, &new);
    let said = String::from_utf8_lossy(&upgraded.stdout);
    assert!(
        upgraded.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&upgraded.stderr)
    );
    assert!(said.contains(&format!("pid {daemon}")), "{said}");
    assert_eq!(sshd.daemon_pid(), Some(daemon), "the same process serves on");
    assert_eq!(
        std::fs::read_link(format!("/proc/{daemon}/exe")).unwrap(),
        new,
        "running the new binary"
    );

    std::fs::write(&gate, "").unwrap();
    let (status, stderr, seen) = attached.finish_with_lines();
    let expected: Vec<String> = (1..=5)
        .map(|i| format!("line-{i}"))
        .chain(["after-gate".into()])
        .collect();
    assert_eq!(
        seen, expected,
        "every line exactly once, across the handover; stderr: {stderr}"
    );
    assert_eq!((status, stderr.contains("err-after")), (7, true), "{stderr}");
    assert!(stderr.contains("resumed"), "the attached client reconnected: {stderr}");
    assert_eq!(
        remora(&sshd, &["receive", host, "--name", "work"]).stdout,
        "",
        "nothing is delivered twice"
    );
    assert_eq!(
        remora(&sshd, &["invoke", host, "--name", "work", "--", "echo $KEPT; pwd"]).ok(),
        "yes\n/tmp\n",
        "the shell's state survived"
    );
    assert_eq!(
        remora(&sshd, &["receive", host, "--name", "queued"]).ok(),
        "queued-ran\n"
    );
    let listed = session(&sshd, "work");
    assert_eq!(listed["agent_version"], env!("CARGO_PKG_VERSION"), "{listed}");
    assert!(
        sshd.daemon_log().contains("took over from remora-agent"),
        "{}",
        sshd.daemon_log()
    );
}

#[test]
fn a_refused_handover_leaves_the_old_daemon_serving_and_says_why() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    let gate = sshd.dir().join("gate");
    let command = format!(
        "echo before; while [ ! -e {} ]; do sleep 0.05; done; echo after",
        gate.display()
    );
    remora(
        &sshd,
        &["invoke", host, "--name", "s", "--disconnected", "--", &command],
    )
    .ok();
    let daemon = sshd.daemon_pid().unwrap();

    let answer = ask_for_handover(&sshd, "/bin/true");
    assert!(answer.starts_with("refused: "), "{answer}");
    assert!(
        answer.contains("/bin/true") && answer.contains("not a remora-agent"),
        "{answer}"
    );

    assert_eq!(sshd.daemon_pid(), Some(daemon));
    std::fs::write(&gate, "").unwrap();
    assert_eq!(remora(&sshd, &["receive", host, "--name", "s"]).ok(), "before\nafter\n");
    assert_eq!(ls_json(&sshd).len(), 1);
    assert!(sshd.daemon_log().contains("keeps serving"), "{}", sshd.daemon_log());
}

/// Sends the daemon the upgrade request `remora-agent upgrade` sends, naming `binary`.
fn ask_for_handover(sshd: &Sshd, binary: &str) -> String {
    use std::io::Read;
    let socket = sshd.state_dir().join("run/agent.sock");
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut request = vec![b'U'];
    request.extend((binary.len() as u16).to_be_bytes());
    request.extend(binary.as_bytes());
    stream.write_all(&request).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn upgrade_without_a_running_daemon_says_so() {
    let sshd = Sshd::start().unwrap();
    let upgraded = upgrade_with(&sshd, &binaries().agent);
    assert!(upgraded.status.success());
    assert!(String::from_utf8_lossy(&upgraded.stdout).contains("no remora daemon is running"));
}

#[test]
fn an_upgrade_keeps_a_running_commands_stdin_and_the_stored_input_of_queued_jobs() {
    use crate::stdin::{noise, sha256_hex, with_stdin};
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    let gate = sshd.dir().join("gate");
    let (first, second) = (noise(3 * 1024 * 1024, 20), noise(100_000, 21));
    let waiting = format!("while [ ! -e {} ]; do sleep 0.05; done; sha256sum", gate.display());
    for (command, input) in [(waiting.as_str(), &first), ("sha256sum", &second)] {
        let (status, _, stderr) = with_stdin(
            sshd.remora(),
            &["invoke", host, "--name", "q", "--job", "--", command],
            input.clone(),
        );
        assert_eq!(status, 0, "{stderr}");
    }
    let live_input = noise(6 * 1024 * 1024, 22);
    let mut live = sshd
        .remora()
        .args(["invoke", host, "--name", "live", "--", "sha256sum"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = live.stdin.take().unwrap();
    stdin.write_all(&live_input[..3 * 1024 * 1024]).unwrap();
    wait_until("the live command to run", || {
        session(&sshd, "live")["commands_running"] == 1
    })
    .unwrap();

    let upgraded = upgrade_with(&sshd, &new_binary(&sshd));
    assert!(
        upgraded.status.success(),
        "{}",
        String::from_utf8_lossy(&upgraded.stderr)
    );

    stdin.write_all(&live_input[3 * 1024 * 1024..]).unwrap();
    drop(stdin);
    let output = crate::support::run_child(live, TIMEOUT).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains(&sha256_hex(&live_input)),
        "the running command read all its input once, across the handover: {stderr}"
    );
    std::fs::write(&gate, "").unwrap();
    let received = remora(&sshd, &["receive", host, "--name", "q"]).ok();
    let expected = format!("{}  -\n{}  -\n", sha256_hex(&first), sha256_hex(&second));
    assert_eq!(received, expected, "stored input survived the handover, in order");
}
