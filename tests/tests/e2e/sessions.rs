//! Creating, listing and removing sessions.

use uuid::Uuid;

use crate::support::{ls_json, remora, session, Sshd};

#[test]
fn new_session_is_listed_with_a_uuid_and_its_facts() {
    let sshd = Sshd::start().unwrap();
    let table = remora(&sshd, &["new", sshd.alias(), "--name", "build"]).ok();
    assert!(table.contains("build") && table.contains("Disconnected"), "{table}");

    let listed = session(&sshd, "build");
    let id: Uuid = listed["instance_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(id.get_version_num(), 4);
    assert_eq!(listed["state"], "Disconnected");
    assert_eq!(listed["availability"], "None");
    assert_eq!(listed["configuration"], "default");
    assert_eq!(listed["idle_timeout_secs"], 7200);
    assert_eq!(listed["buffering"], "spill");
    assert_eq!(listed["commands_running"], 0);
    assert_eq!(listed["commands_completed"], 0);
    assert!(listed["expires_at"].is_string(), "{listed}");
    assert!(!listed["host"].as_str().unwrap().is_empty());

    let table = remora(&sshd, &["ls", sshd.alias()]).ok();
    assert!(table.contains(&id.to_string()), "{table}");
}

#[test]
fn unknown_session_name_is_a_clear_error() {
    let sshd = Sshd::start().unwrap();
    let run = remora(&sshd, &["receive", sshd.alias(), "--name", "nope"]);
    assert_eq!(run.status, 1, "{run:?}");
    assert!(run.stderr.contains("no session named \"nope\""), "{run:?}");
    assert!(
        run.stderr.contains("remora ls"),
        "the error says what to do next: {run:?}"
    );
}

#[test]
fn bad_and_duplicate_names_are_refused() {
    let sshd = Sshd::start().unwrap();
    for bad in ["a/b", "..", "-rf", "x y"] {
        let run = remora(&sshd, &["new", sshd.alias(), &format!("--name={bad}")]);
        assert_eq!(run.status, 1, "{bad}: {run:?}");
        assert!(run.stderr.contains("session name"), "{bad}: {run:?}");
    }
    remora(&sshd, &["new", sshd.alias(), "--name", "once"]).ok();
    let again = remora(&sshd, &["new", sshd.alias(), "--name", "once"]);
    assert_eq!(again.status, 1);
    assert!(again.stderr.contains("already exists"), "{again:?}");
    assert_eq!(ls_json(&sshd).len(), 1);
}

#[test]
fn rm_with_a_glob_removes_only_the_matches() {
    let sshd = Sshd::start().unwrap();
    for name in ["build-1", "build-2", "other"] {
        remora(&sshd, &["new", sshd.alias(), "--name", name]).ok();
    }
    let dry = remora(&sshd, &["rm", sshd.alias(), "--name", "build-*", "--dry-run"]).ok();
    assert_eq!(dry.matches("would remove").count(), 2, "{dry}");
    assert_eq!(ls_json(&sshd).len(), 3, "--dry-run removes nothing");

    let removed = remora(&sshd, &["rm", sshd.alias(), "--name", "build-*"]).ok();
    assert_eq!(removed.matches("removed").count(), 2, "{removed}");
    let names: Vec<_> = ls_json(&sshd)
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["other"]);

    remora(&sshd, &["new", sshd.alias(), "--name", "third"]).ok();
    let both = remora(&sshd, &["rm", sshd.alias(), "--name", "other", "--name", "third"]).ok();
    assert_eq!(both.matches("removed").count(), 2, "several names at once: {both}");
    assert!(ls_json(&sshd).is_empty());

    let none = remora(&sshd, &["rm", sshd.alias(), "--name", "build-*"]);
    assert_eq!(none.status, 1, "removing nothing is an error: {none:?}");
}

#[test]
fn rm_by_id_stops_the_running_command() {
    let sshd = Sshd::start().unwrap();
    let pid_file = sshd.dir().join("sleeper.pid");
    let command = format!("sleep 600 & echo $! > {}; wait", pid_file.display());
    remora(
        &sshd,
        &[
            "invoke",
            sshd.alias(),
            "--name",
            "long",
            "--disconnected",
            "--",
            &command,
        ],
    )
    .ok();
    crate::support::wait_until("the sleeper's pid file", || {
        pid_file.exists() && std::fs::read_to_string(&pid_file).is_ok_and(|p| p.ends_with('\n'))
    })
    .unwrap();
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();

    let id = session(&sshd, "long")["instance_id"].as_str().unwrap().to_string();
    let asked = remora(&sshd, &["rm", sshd.alias(), "--id", &id]);
    assert_eq!(
        asked.status, 1,
        "a running session needs --yes without a terminal: {asked:?}"
    );
    assert!(asked.stderr.contains("--yes"), "{asked:?}");
    remora(&sshd, &["rm", sshd.alias(), "--id", &id, "--yes"]).ok();
    crate::support::wait_until("the removed session's command to die", || {
        !crate::support::process_alive(pid)
    })
    .unwrap();
    assert!(ls_json(&sshd).is_empty());
}

#[test]
fn ls_on_hosts_that_all_failed_prints_no_listing() {
    let sshd = Sshd::start().unwrap();
    for args in [
        &["ls", "nosuchhost.invalid"][..],
        &["ls", "nosuchhost.invalid", "--json"],
    ] {
        let failed = remora(&sshd, args);
        assert_eq!(failed.status, 255, "{failed:?}");
        assert_eq!(failed.stdout, "", "a failed listing is not an empty one: {failed:?}");
        assert!(!failed.stderr.contains("no sessions"), "{failed:?}");
        // The cause is named once, between what failed and what to do next.
        let (_, after) = failed
            .stderr
            .split_once("cannot connect to nosuchhost.invalid port 22: ")
            .unwrap_or_else(|| panic!("{failed:?}"));
        let (cause, _) = after.split_once("; check the host name").unwrap();
        assert_eq!(failed.stderr.matches(cause).count(), 1, "{failed:?}");
    }

    remora(&sshd, &["new", sshd.alias(), "--name", "kept"]).ok();
    let some = remora(
        &sshd,
        &["ls", &format!("{},nosuchhost.invalid", sshd.alias()), "--json"],
    );
    assert_eq!(some.status, 255, "{some:?}");
    let listed: Vec<serde_json::Value> = serde_json::from_str(&some.stdout).unwrap();
    assert_eq!(listed.len(), 1, "{some:?}");
    assert_eq!(listed[0]["name"], "kept");
}
