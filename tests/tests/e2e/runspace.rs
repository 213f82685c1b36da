//! The runspace: one persistent shell per session.

use crate::support::{ls_json, remora, session, Sshd};

#[test]
fn shell_state_persists_between_commands() {
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
            "export X=1; cd /tmp; greet() { echo hi-$1; }",
        ],
    )
    .ok();
    let out = remora(
        &sshd,
        &["invoke", host, "--name", "s", "--", "echo $X $PWD; greet there"],
    )
    .ok();
    assert_eq!(out, "1 /tmp\nhi-there\n");
}

#[test]
fn stdout_and_stderr_stay_apart() {
    let sshd = Sshd::start().unwrap();
    let run = remora(
        &sshd,
        &[
            "invoke",
            sshd.alias(),
            "--",
            "echo to-out; echo to-err >&2; echo more-out",
        ],
    );
    assert_eq!(run.status, 0, "{run:?}");
    assert_eq!(run.stdout, "to-out\nmore-out\n");
    assert_eq!(run.stderr, "to-err\n");
}

#[test]
fn exit_codes_pass_through_and_the_runspace_lives_on() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    let failed = remora(&sshd, &["invoke", host, "--name", "s", "--", "echo before; (exit 7)"]);
    assert_eq!(failed.status, 7, "{failed:?}");
    assert_eq!(failed.stdout, "before\n");
    let out = remora(&sshd, &["invoke", host, "--name", "s", "--", "echo alive"]).ok();
    assert_eq!(out, "alive\n");
    assert_eq!(session(&sshd, "s")["commands_completed"], 2);
}

#[test]
fn exiting_the_shell_reports_the_code_and_breaks_the_session() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    let run = remora(&sshd, &["invoke", host, "--name", "s", "--", "echo bye; exit 3"]);
    assert_eq!(run.status, 3, "{run:?}");
    assert_eq!(run.stdout, "bye\n");

    let broken = session(&sshd, "s");
    assert_eq!(broken["state"], "Broken", "{broken}");
    assert!(
        broken["broken_reason"]
            .as_str()
            .unwrap()
            .contains("exited with status 3"),
        "{broken}"
    );

    let refused = remora(&sshd, &["invoke", host, "--name", "s", "--", "echo again"]);
    assert_eq!(refused.status, 1, "{refused:?}");
    assert!(
        refused.stderr.contains("broken") && refused.stderr.contains("remora rm"),
        "{refused:?}"
    );
}

#[test]
fn commands_read_dev_null_and_do_not_hang() {
    let sshd = Sshd::start().unwrap();
    let out = remora(
        &sshd,
        &["invoke", sshd.alias(), "--", "cat; read line; echo read-rc=$?"],
    )
    .ok();
    assert_eq!(out, "read-rc=1\n");
}

#[test]
fn invoke_without_a_name_leaves_no_session_behind() {
    let sshd = Sshd::start().unwrap();
    let out = remora(&sshd, &["invoke", sshd.alias(), "--", "echo temporary"]).ok();
    assert_eq!(out, "temporary\n");
    crate::support::wait_until("the temporary session to go", || ls_json(&sshd).is_empty()).unwrap();
}

#[test]
fn quotes_and_multiline_commands_survive_the_trip() {
    let sshd = Sshd::start().unwrap();
    let command = "printf '%s|' \"a b\" 'c'\"'\"'d' $'e\\tf'\necho\necho \"line two\"";
    let out = remora(&sshd, &["invoke", sshd.alias(), "--", command]).ok();
    assert_eq!(out, "a b|c'd|e\tf|\nline two\n");
}
