//! Held connections are as safe as fresh ones: the holder keys them by the caller's resolved
//! destination (never shared across configs, renewed after an edit), every call checks the held
//! connection's host key against its own known_hosts, and the holder's argv shows nothing.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::{
    support::{remora, run, wait_until, Run, Sshd, TIMEOUT},
    warm::{holders, logins, wait_held},
};

fn run_command(command: &mut Command) -> Run {
    let output = run(command, TIMEOUT).expect("remora ran");
    Run {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A directory `name` under `sshd`'s, holding an `ssh_config` of `text`.
fn project(sshd: &Sshd, name: &str, text: &str) -> PathBuf {
    let dir = sshd.dir().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ssh_config"), text).unwrap();
    dir
}

/// `remora -F ssh_config ARGS` run in `dir` (a relative `-F`, as typed in a project), with
/// `sshd`'s HOME and so its connection holder.
fn remora_in(sshd: &Sshd, dir: &Path, args: &[&str]) -> Run {
    let mut command = sshd.remora_with_config(Path::new("ssh_config"));
    run_command(command.current_dir(dir).args(args))
}

/// `remora -F config ARGS` with `sshd`'s HOME and holder.
fn remora_with(sshd: &Sshd, config: &Path, args: &[&str]) -> Run {
    run_command(sshd.remora_with_config(config).args(args))
}

/// Waits until the holder holds `count` live connections for `host`.
fn wait_held_times(sshd: &Sshd, host: &str, count: usize) {
    wait_until("the holder to hold the connections", || {
        let listed = remora(sshd, &["conn", "ls", "--json"]).stdout;
        let all: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap_or_default();
        let live = |h: &&serde_json::Value| h["host"] == host && h["connections"].as_u64() >= Some(1);
        all.iter().filter(live).count() == count
    })
    .unwrap();
}

#[test]
fn two_configs_giving_one_alias_two_servers_never_share_a_connection() {
    let (a, b) = (Sshd::start().unwrap(), Sshd::start().unwrap());
    let here = project(&a, "project-a", &a.host_block("shared"));
    let there = project(&a, "project-b", &b.host_block("shared"));
    remora_in(&a, &here, &["new", "shared", "--name", "on-a"]).ok();
    wait_held(&a, "shared");
    let before = logins(&b);
    let listed = remora_in(&a, &there, &["ls", "shared"]).ok();
    assert!(!listed.contains("on-a"), "the call reached the other server: {listed}");
    assert_eq!(logins(&b), before + 1, "the second config's server was connected to");
    wait_held_times(&a, "shared", 2);
    let listed = remora_in(&a, &here, &["ls", "shared"]).ok();
    assert!(listed.contains("on-a"), "{listed}");

    // What the holder was told travelled over its socket, not in argv for `ps` to show.
    let pids = holders(&a);
    assert_eq!(pids.len(), 1);
    let argv = remora_testkit::command_line(pids[0]).unwrap();
    assert_eq!(argv[1..], ["__hold"], "{argv:?}");
}

#[test]
fn an_edited_config_takes_effect_on_the_next_call() {
    let (a, b) = (Sshd::start().unwrap(), Sshd::start().unwrap());
    let config = a.dir().join("edited_config");
    std::fs::write(&config, a.host_block("edited")).unwrap();
    remora_with(&a, &config, &["new", "edited", "--name", "on-a"]).ok();
    wait_held(&a, "edited");
    // Same alias, same -F path: HostName and Port now name the other server.
    std::fs::write(&config, b.host_block("edited")).unwrap();
    let before = logins(&b);
    let listed = remora_with(&a, &config, &["ls", "edited"]).ok();
    assert!(!listed.contains("on-a"), "the held connection was reused: {listed}");
    assert_eq!(logins(&b), before + 1);
}

#[test]
fn a_key_replaced_or_revoked_while_held_is_refused_on_the_next_call_like_a_fresh_one() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    let known = sshd.dir().join("held_known_hosts");
    let trusted = std::fs::read_to_string(sshd.known_hosts()).unwrap();
    std::fs::write(&known, &trusted).unwrap();
    let only_known = format!("UserKnownHostsFile={}", known.display());
    let call = |extra: &[&str]| {
        let mut args = vec!["-o", &only_known, "-o", "GlobalKnownHostsFile=none"];
        args.extend(extra);
        args.extend(["ls", host]);
        remora(&sshd, &args)
    };
    call(&[]).ok();
    wait_held(&sshd, host);

    let other = sshd.dir().join("other_host_key");
    remora_testkit::generate_key(&other, "").unwrap();
    let other_key = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let other_key: Vec<&str> = other_key.split_whitespace().take(2).collect();
    std::fs::write(&known, format!("[127.0.0.1]:{} {}\n", sshd.port(), other_key.join(" "))).unwrap();
    let (warm, fresh) = (call(&[]), call(&["--no-reuse"]));
    assert_eq!(fresh.status, 255, "{fresh:?}");
    assert!(fresh.stderr.contains("changed"), "{fresh:?}");
    assert_eq!((warm.status, &warm.stderr), (255, &fresh.stderr), "{warm:?}");

    std::fs::write(&known, &trusted).unwrap();
    call(&[]).ok();
    wait_held(&sshd, host);
    let host_key = sshd.host_public_key().split_whitespace().take(2).collect::<Vec<_>>();
    std::fs::write(&known, format!("{trusted}@revoked * {}\n", host_key.join(" "))).unwrap();
    let (warm, fresh) = (call(&[]), call(&["--no-reuse"]));
    assert_eq!(fresh.status, 255, "{fresh:?}");
    assert!(fresh.stderr.contains("revoked"), "{fresh:?}");
    assert_eq!((warm.status, &warm.stderr), (255, &fresh.stderr), "{warm:?}");
}

#[test]
fn a_jump_hosts_key_revoked_while_held_is_refused_on_the_next_call_like_a_fresh_one() {
    let (target, bastion) = (Sshd::start().unwrap(), Sshd::start().unwrap());
    let config = target.dir().join("jump_config");
    let text = format!(
        "{}  ProxyJump bastion\n{}",
        target.host_block("inner"),
        bastion.host_block("bastion")
    );
    std::fs::write(&config, text).unwrap();
    remora_with(&target, &config, &["ls", "inner"]).ok();
    wait_held(&target, "inner");
    let before = (logins(&target), logins(&bastion));
    remora_with(&target, &config, &["ls", "inner"]).ok();
    assert_eq!(
        (logins(&target), logins(&bastion)),
        before,
        "trusted hops: the call was warm"
    );
    // Only the bastion's own known_hosts changes: the destination's settings stay the same.
    let bastion_key: Vec<&str> = bastion.host_public_key().split_whitespace().take(2).collect();
    let known = std::fs::read_to_string(bastion.known_hosts()).unwrap();
    let revoked = format!("{known}@revoked * {}\n", bastion_key.join(" "));
    std::fs::write(bastion.known_hosts(), revoked).unwrap();
    let warm = remora_with(&target, &config, &["ls", "inner"]);
    let fresh = remora_with(&target, &config, &["--no-reuse", "ls", "inner"]);
    assert_eq!(fresh.status, 255, "{fresh:?}");
    assert!(fresh.stderr.contains("revoked"), "{fresh:?}");
    assert_eq!((warm.status, &warm.stderr), (255, &fresh.stderr), "{warm:?}");
}
