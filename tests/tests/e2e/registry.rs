//! The client's local registry (`remora ls` without a host): concurrent writers keep each
//! other's entries, and its files are private so an agent sharing the directory accepts it.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Stdio},
};

use serde_json::Value;

use crate::support::{run, run_child, Sshd, TIMEOUT};

/// `sshd.remora()` with `home` as HOME and no XDG_DATA_HOME, so the registry lands in
/// `home/.local/share/remora`.
fn remora_at(sshd: &Sshd, home: &Path) -> Command {
    let mut command = sshd.remora();
    command.env("HOME", home).env_remove("XDG_DATA_HOME");
    command
}

fn ok(command: &mut Command) -> String {
    let output = run(command, TIMEOUT).unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(
        output.status.success(),
        "remora failed: {}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

fn listed_names(stdout: &str) -> Vec<String> {
    let sessions: Vec<Value> = serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let mut names: Vec<String> = sessions
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn concurrent_clients_keep_every_session_in_the_registry() {
    let sshd = Sshd::start().unwrap();
    let home = sshd.home();
    let children: Vec<_> = (0..12)
        .map(|i| {
            remora_at(&sshd, &home)
                .args(["new", sshd.alias(), "--name", &format!("s{i:02}")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = run_child(child, TIMEOUT).unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    let listed = ok(remora_at(&sshd, &home).args(["ls", "--json"]));
    let expected: Vec<String> = (0..12).map(|i| format!("s{i:02}")).collect();
    assert_eq!(listed_names(&listed), expected);
}

#[test]
fn the_registry_is_private_and_an_agent_sharing_its_directory_accepts_it() {
    // `local` is this machine as a host: its agent (found without a subsystem, so without
    // --state-dir) keeps its data in the default ~/.local/share/remora of the remote HOME, which
    // is also the client's HOME here. `other` is another host the client used first.
    let local = Sshd::start_without_subsystem().unwrap();
    let other = Sshd::start().unwrap();
    let home = local.remote_home();
    ok(remora_at(&other, &home).args(["new", other.alias(), "--name", "elsewhere"]));

    let dir = home.join(".local/share/remora");
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700, "registry directory");
    assert_eq!(mode(&dir.join("sessions.json")), 0o600, "registry file");
    assert_eq!(mode(&dir.join("sessions.lock")), 0o600, "lock file");

    ok(local.remora().args(["install", local.alias()]));
    ok(remora_at(&local, &home).args(["new", local.alias(), "--name", "here"]));
    assert!(
        dir.join("sessions").is_dir(),
        "the agent keeps its sessions beside the registry"
    );
    assert_eq!(mode(&dir), 0o700, "still private after the agent used it");
    let listed = ok(remora_at(&local, &home).args(["ls", local.alias(), "--json"]));
    assert_eq!(listed_names(&listed), ["here"]);
}
