//! Session configurations from the agent's agent.toml.

use crate::support::{remora, run, session, write_agent_config, Sshd, TIMEOUT};

const CONFIG: &str = r#"
[configurations.build]
cwd = "/tmp"
env = { REMORA_ROLE = "builder" }
idle_timeout = "15m"
max_idle_timeout = "1h"
max_sessions = 1

[configurations.tiny]
buffering = "drop"
buffer_limit = "64KiB"

[configurations.short]
max_queued = 2
"#;

fn config_check(sshd: &Sshd) -> (i32, String) {
    let mut check = sshd.agent();
    check.args(["config", "check", "--state-dir"]).arg(sshd.state_dir());
    let output = run(&mut check, TIMEOUT).unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    (output.status.code().unwrap_or(-1), text)
}

#[test]
fn new_uses_a_named_configuration_and_its_limits() {
    let sshd = Sshd::start().unwrap();
    write_agent_config(&sshd, CONFIG);
    let host = sshd.alias();
    remora(&sshd, &["new", host, "--name", "b", "--config", "build"]).ok();
    let listed = session(&sshd, "b");
    assert_eq!(
        (listed["configuration"].as_str(), listed["idle_timeout_secs"].as_u64()),
        (Some("build"), Some(900))
    );
    assert_eq!(
        remora(&sshd, &["invoke", host, "--name", "b", "--", "echo $REMORA_ROLE $PWD"]).ok(),
        "builder /tmp\n"
    );

    let full = remora(&sshd, &["new", host, "--name", "b2", "--config", "build"]);
    assert!(
        full.status == 1 && full.stderr.contains("allows 1 sessions"),
        "{full:?}"
    );
    let unknown = remora(&sshd, &["new", host, "--name", "x", "--config", "nope"]);
    assert!(
        unknown
            .stderr
            .contains("no configuration named \"nope\"; this agent has: build, default, short, tiny"),
        "{unknown:?}"
    );
    let too_long = remora(
        &sshd,
        &["invoke", host, "--name", "b", "--idle-timeout", "2h", "--", "true"],
    );
    assert!(
        too_long.status == 1 && too_long.stderr.contains("3600 s"),
        "{too_long:?}"
    );
    assert_eq!(
        session(&sshd, "b")["idle_timeout_secs"],
        900,
        "a refused change changes nothing"
    );
}

#[test]
fn a_full_queue_refuses_more_commands_and_leaves_other_sessions_alone() {
    let sshd = Sshd::start().unwrap();
    write_agent_config(&sshd, CONFIG);
    let host = sshd.alias();
    remora(&sshd, &["new", host, "--name", "q", "--config", "short"]).ok();
    remora(&sshd, &["new", host, "--name", "other", "--config", "short"]).ok();
    let gate = sshd.dir().join("gate");
    let wait = format!("while [ ! -e {} ]; do sleep 0.05; done; echo ran", gate.display());
    for _ in 0..3 {
        remora(&sshd, &["invoke", host, "--name", "q", "--disconnected", "--", &wait]).ok();
    }
    let refused = remora(
        &sshd,
        &["invoke", host, "--name", "q", "--disconnected", "--", "echo too many"],
    );
    assert_eq!(refused.status, 1, "{refused:?}");
    assert!(refused.stderr.contains("already has 2 commands queued"), "{refused:?}");
    assert_eq!(
        remora(&sshd, &["invoke", host, "--name", "other", "--", "echo fine"]).ok(),
        "fine\n"
    );
    std::fs::write(&gate, "").unwrap();
    let received = remora(&sshd, &["receive", host, "--name", "q"]).ok();
    assert_eq!(
        received, "ran\nran\nran\n",
        "the accepted ones all ran; the refused one never did"
    );
}

#[test]
fn config_check_validates_and_a_bad_file_keeps_the_last_good_one() {
    let sshd = Sshd::start().unwrap();
    write_agent_config(&sshd, CONFIG);
    let (status, shown) = config_check(&sshd);
    assert_eq!(status, 0, "{shown}");
    assert!(
        shown.contains("[configurations.build]") && shown.contains("buffering = \"drop\""),
        "{shown}"
    );
    remora(&sshd, &["new", sshd.alias(), "--name", "first"]).ok();

    write_agent_config(&sshd, "[configurations.tiny]\nbufering = \"drop\"\n");
    let (status, shown) = config_check(&sshd);
    assert_eq!(status, 1);
    assert!(
        shown.contains("unknown field") && shown.contains("bufering"),
        "names the mistake: {shown}"
    );
    remora(&sshd, &["new", sshd.alias(), "--name", "still", "--config", "tiny"]).ok();
    let log = std::fs::read_to_string(sshd.state_dir().join("log/daemon.log")).unwrap();
    assert!(
        log.contains("keeping the last good configuration"),
        "the daemon reports it"
    );
}

#[test]
fn invoke_creates_its_session_with_the_configuration_and_buffering_given() {
    let sshd = Sshd::start().unwrap();
    write_agent_config(&sshd, CONFIG);
    let host = sshd.alias();
    let create = [
        "invoke",
        host,
        "--name",
        "x",
        "--config",
        "build",
        "--buffering",
        "drop",
    ];
    remora(&sshd, &[&create[..], &["--", "true"]].concat()).ok();
    let listed = session(&sshd, "x");
    assert_eq!(
        (listed["configuration"].as_str(), listed["buffering"].as_str()),
        (Some("build"), Some("drop"))
    );
    assert_eq!(
        remora(&sshd, &[&create[..], &["--", "echo same"]].concat()).ok(),
        "same\n"
    );

    let other = remora(
        &sshd,
        &["invoke", host, "--name", "x", "--config", "tiny", "--", "echo ran"],
    );
    assert_eq!(other.status, 1, "{other:?}");
    assert!(
        other
            .stderr
            .contains("session x already exists with configuration build and buffering drop"),
        "{other:?}"
    );
    assert_eq!(other.stdout, "", "nothing ran: {other:?}");
    let other = remora(
        &sshd,
        &["invoke", host, "--name", "x", "--buffering", "spill", "--", "true"],
    );
    assert_eq!(other.status, 1, "{other:?}");
}

#[test]
fn a_runspace_shell_that_is_not_there_is_named_with_the_setting_to_change() {
    let sshd = Sshd::start().unwrap();
    let config =
        "[configurations.gone]\nshell = \"/nonexistent/bash\"\n\n[configurations.posix]\nshell = \"/bin/sh\"\n";
    write_agent_config(&sshd, config);
    let host = sshd.alias();
    let run = remora(
        &sshd,
        &["invoke", host, "--name", "g", "--config", "gone", "--", "echo hi"],
    );
    assert_eq!(run.status, 1, "{run:?}");
    assert!(
        run.stderr.contains("/nonexistent/bash") && run.stderr.contains("set `shell =` under [configurations.gone]"),
        "{run:?}"
    );
    assert!(
        !crate::support::ls_json(&sshd).iter().any(|s| s["name"] == "g"),
        "no session is left behind"
    );

    // The setting it names works: a POSIX sh runspace keeps its state between commands.
    let first = remora(
        &sshd,
        &[
            "invoke",
            host,
            "--name",
            "p",
            "--config",
            "posix",
            "--",
            "cd /tmp; X=kept",
        ],
    );
    assert_eq!(first.status, 0, "{first:?}");
    let second = remora(&sshd, &["invoke", host, "--name", "p", "--", "echo \"$(pwd) $X\""]).ok();
    assert_eq!(second, "/tmp kept\n");
}
