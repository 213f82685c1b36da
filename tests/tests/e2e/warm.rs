//! Warm connections: the connection holder keeps a host's SSH connection between calls, and is
//! an optimisation only — killed, refused, switched off or expired, calls still work.

use std::{os::unix::fs::PermissionsExt, path::PathBuf, process::Command, time::Duration};

use crate::support::{binaries, remora, session, wait_until, wait_until_within, Background, Sshd};

/// SSH logins sshd has accepted so far.
pub(crate) fn logins(sshd: &Sshd) -> usize {
    sshd.log().matches("Accepted publickey").count()
}

/// The connection holder processes this test's clients started.
pub(crate) fn holders(sshd: &Sshd) -> Vec<i32> {
    sshd.processes()
        .into_iter()
        .filter(|pid| remora_testkit::command_line(*pid).is_some_and(|args| args.iter().any(|a| a == "__hold")))
        .collect()
}

/// Waits until `remora conn ls --json` lists `host` as held, with its connection made.
pub(crate) fn wait_held(sshd: &Sshd, host: &str) -> serde_json::Value {
    let mut held = serde_json::Value::Null;
    wait_until("the holder to hold the host", || {
        let listed = remora(sshd, &["conn", "ls", "--json"]).stdout;
        held = serde_json::from_str::<serde_json::Value>(&listed)
            .ok()
            .and_then(|all| all.as_array()?.iter().find(|h| h["host"] == host).cloned())
            .unwrap_or_default();
        held["connections"].as_u64().is_some_and(|n| n >= 1)
    })
    .unwrap();
    held
}

fn holder_socket(sshd: &Sshd) -> PathBuf {
    sshd.home()
        .join(".cache/remora/holder")
        .join(format!("holder-{}.sock", env!("CARGO_PKG_VERSION")))
}

#[test]
fn later_calls_reuse_the_held_connection_from_new_processes() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    remora(&sshd, &["new", host, "--name", "s"]).ok();
    wait_held(&sshd, host);
    let before = logins(&sshd);
    remora(&sshd, &["invoke", host, "--name", "s", "--", "echo warm"]).ok();
    assert_eq!(remora(&sshd, &["ls", host]).status, 0);
    remora(
        &sshd,
        &["invoke", host, "--name", "s", "--disconnected", "--", "echo later"],
    )
    .ok();
    assert_eq!(remora(&sshd, &["receive", host, "--name", "s"]).ok(), "later\n");
    assert_eq!(logins(&sshd), before, "no new SSH connection for four calls");
    let held = wait_held(&sshd, host);
    assert!(held["requests"].as_u64().unwrap() >= 4, "{held}");
    let mode = std::fs::metadata(holder_socket(&sshd)).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let dir_mode = std::fs::metadata(holder_socket(&sshd).parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    let listed = remora(&sshd, &["conn", "ls"]).ok();
    assert!(listed.contains(host) && listed.contains("Calls"), "{listed}");
    remora(&sshd, &["conn", "stop"]).ok();
    wait_until("the holder to exit when nothing is held", || holders(&sshd).is_empty()).unwrap();
}

#[test]
fn a_killed_holder_is_replaced_without_a_word() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    remora(&sshd, &["ls", host]).ok();
    wait_held(&sshd, host);
    for pid in holders(&sshd) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    }
    wait_until("the holder to die", || holders(&sshd).is_empty()).unwrap();
    assert!(holder_socket(&sshd).exists(), "a stale socket is left behind");
    let after = remora(&sshd, &["ls", host]);
    assert_eq!(
        (after.status, after.stderr.as_str()),
        (0, "no sessions\n"),
        "nothing alarming: {after:?}"
    );
    wait_held(&sshd, host);
    assert_eq!(holders(&sshd).len(), 1, "a new holder took the stale socket's place");
}

#[test]
fn concurrent_first_calls_leave_one_holder() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    std::thread::scope(|scope| {
        let runs: Vec<_> = (0..4).map(|_| scope.spawn(|| remora(&sshd, &["ls", host]))).collect();
        for run in runs {
            assert_eq!(run.join().unwrap().status, 0);
        }
    });
    wait_held(&sshd, host);
    wait_until("the extra holders to give way", || holders(&sshd).len() == 1).unwrap();
}

#[test]
fn control_persist_no_and_no_reuse_connect_every_time() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    let before = logins(&sshd);
    remora(&sshd, &["-o", "ControlPersist=no", "ls", host]).ok();
    remora(&sshd, &["--no-reuse", "ls", host]).ok();
    remora(&sshd, &["-o", "ControlPersist=no", "ls", host]).ok();
    assert_eq!(logins(&sshd), before + 3);
    assert!(holders(&sshd).is_empty(), "no holder was started");
    assert_eq!(
        remora(&sshd, &["config", host, "-o", "ControlPersist=no"])
            .ok()
            .lines()
            .find(|l| l.starts_with("controlpersist")),
        Some("controlpersist no")
    );
}

#[test]
fn a_held_connection_closes_after_its_control_persist_and_the_holder_exits() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    remora(&sshd, &["-o", "ControlPersist=2s", "ls", host]).ok();
    let held = wait_held(&sshd, host);
    assert_eq!(held["persist"], "2", "{held}");
    wait_until_within(Duration::from_secs(30), "the idle connection to close", || {
        holders(&sshd).is_empty()
    })
    .unwrap();
    assert_eq!(remora(&sshd, &["conn", "ls", "--json"]).ok().trim(), "[]");
}

#[test]
fn the_holder_refuses_another_user() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: creating a second Unix user needs root (CI runs as root)");
        return;
    }
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    remora(&sshd, &["ls", host]).ok();
    wait_held(&sshd, host);
    let other = crate::isolation::OtherUser::create_named("remora-warm-other");
    // Take the directory walls away: the holder's own peer check must still refuse.
    let socket = holder_socket(&sshd);
    let mut dir = socket.parent().unwrap().to_path_buf();
    while dir.starts_with(sshd.dir()) {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711)).unwrap();
        dir.pop();
    }
    std::fs::set_permissions(sshd.dir(), std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert_eq!(other.connect(&socket), Ok(true), "the holder hangs up on a stranger");
    assert_eq!(remora(&sshd, &["ls", host]).status, 0, "and serves its own user on");
}

#[test]
fn a_cut_under_the_held_connection_loses_nothing() {
    let sshd = Sshd::start().unwrap();
    let (link, config) = crate::support::flaky(&sshd);
    let flaky = |args: &[&str]| -> Command {
        let mut command = sshd.remora_with_config(&config);
        command.args(args);
        command
    };
    let run = |args: &[&str]| crate::support::run(&mut flaky(args), crate::support::TIMEOUT).unwrap();
    assert!(run(&["new", "flaky", "--name", "cut"]).status.success());
    wait_until("the holder to hold flaky", || {
        String::from_utf8_lossy(&run(&["conn", "ls", "--json"]).stdout).contains("\"connections\": 1")
    })
    .unwrap();
    let gate = sshd.dir().join("gate");
    let command = format!(
        "seq 1 200; while [ ! -e {} ]; do sleep 0.05; done; seq 201 400",
        gate.display()
    );
    assert!(
        run(&["invoke", "flaky", "--name", "cut", "--disconnected", "--", &command])
            .status
            .success()
    );
    let mut receiving = Background::spawn(flaky(&["receive", "flaky", "--name", "cut"]));
    receiving.wait_for_line("200");
    link.cut();
    std::fs::write(&gate, "").unwrap();
    let (status, stderr, lines) = receiving.finish_with_lines();
    let expected: Vec<String> = (1..=400).map(|i| i.to_string()).collect();
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(lines, expected, "every line once, in order: {stderr}");
    assert_eq!(session(&sshd, "cut")["commands_running"], 0);
}

#[test]
fn the_first_call_still_shows_the_host_key_notice() {
    let sshd = Sshd::start().unwrap();
    let known = sshd.dir().join("fresh_known_hosts");
    std::fs::write(&known, "").unwrap();
    let known_opt = format!("UserKnownHostsFile={}", known.display());
    let first = remora(
        &sshd,
        &[
            "-o",
            &known_opt,
            "-o",
            "StrictHostKeyChecking=accept-new",
            "ls",
            sshd.alias(),
        ],
    );
    assert_eq!(first.status, 0, "{first:?}");
    assert!(
        first.stderr.contains("Permanently added"),
        "the foreground call says it: {first:?}"
    );
    let second = remora(&sshd, &["-o", &known_opt, "ls", sshd.alias()]);
    assert_eq!(
        (second.status, second.stderr.as_str()),
        (0, "no sessions\n"),
        "{second:?}"
    );
}

#[test]
fn a_passphrase_prompt_still_reaches_the_user_on_a_terminal() {
    let sshd = Sshd::start().unwrap();
    let key = sshd.dir().join("locked_key");
    remora_testkit::generate_key(&key, "secret words").unwrap();
    let mut authorized = std::fs::read_to_string(sshd.dir().join("authorized_keys")).unwrap();
    authorized.push_str(&std::fs::read_to_string(key.with_extension("pub")).unwrap());
    std::fs::write(sshd.dir().join("authorized_keys"), authorized).unwrap();
    let config = sshd.dir().join("locked_config");
    let block = format!(
        "Host locked\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  UserKnownHostsFile {}\n  IdentityFile {}\n  IdentitiesOnly yes\n",
        sshd.port(),
        sshd.user(),
        sshd.known_hosts().display(),
        key.display()
    );
    std::fs::write(&config, block).unwrap();
    // `script` gives remora a real terminal; the passphrase is typed on it.
    let program = binaries().remora.display().to_string();
    let line = format!("{program} -F {} ls locked", config.display());
    for _ in 0..2 {
        let mut command = sshd.agent_at(std::path::Path::new("script"));
        command
            .args(["-qec", &line, "/dev/null"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = command.spawn().unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"secret words\n").unwrap();
        let output = crate::support::run_child(child, crate::support::TIMEOUT).unwrap();
        let shown = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{shown}");
        assert!(
            shown.contains("Enter passphrase for key"),
            "the prompt reached the terminal: {shown}"
        );
    }
    // The holder could not use the key without asking, so each call asked; it holds nothing.
    wait_until("the holder to give the host up", || {
        remora(&sshd, &["conn", "ls", "--json"]).stdout.trim() == "[]"
    })
    .unwrap();
}

#[test]
fn a_stopped_holder_leaves_no_zombie_while_the_call_that_started_it_runs() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    let gate = sshd.dir().join("gate");
    let hold = format!("echo started; while [ ! -e {} ]; do sleep 0.05; done", gate.display());
    let mut first = Background::start(&sshd, &["invoke", host, "--name", "z", "--", &hold]);
    first.wait_for_line("started");
    wait_held(&sshd, host);
    let holder = holders(&sshd);
    assert_eq!(holder.len(), 1, "{holder:?}");
    let holder = holder[0];
    remora(&sshd, &["conn", "stop"]).ok();
    let proc_entry = PathBuf::from(format!("/proc/{holder}"));
    wait_until("the stopped holder to be gone, not a zombie of the call", || {
        !proc_entry.exists()
    })
    .unwrap();
    std::fs::write(&gate, "").unwrap();
    let (status, stderr) = first.finish();
    assert_eq!(status, 0, "{stderr}");
}
