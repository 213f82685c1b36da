//! A real older host: Debian 11 (glibc 2.31, OpenSSH 8.4) in a root built by
//! `scripts/debian11-root`, its own sshd chrooted there (`remora_testkit::ChrootSshd`). From a
//! clean host: `remora install` refuses the native build and picks the portable agent, then
//! invoke, a disconnected job and receive, a shell on a pty, and cp both ways. A host lying
//! about its glibc shows the loader's complaint.
//!
//! Needs root, the root (`scripts/debian11-root`) and the portable agent (`scripts/dist`);
//! `scripts/test` provides all three. In CI (`CI` set) a missing one fails the test; elsewhere
//! the test says what is missing and passes without running.

use std::{fs, path::PathBuf, process::Command, time::Duration};

use remora_testkit::{ChrootSshd, PtyProgram};

use crate::support::{binaries, run, TIMEOUT};

const SCREEN: Duration = Duration::from_secs(20);

/// The cached Debian 11 root, or `None` (having said why) when this run cannot use one.
fn debian11_root() -> Option<PathBuf> {
    let target = binaries().portable_agent.parent()?.parent()?.to_path_buf();
    let root = target.join("debian11-root");
    let missing = if !nix::unistd::geteuid().is_root() {
        Some("this test needs root (chroot and a mount namespace)".to_string())
    } else if !root.join(".remora-complete").exists() {
        Some(format!(
            "no Debian 11 root at {}: build it with scripts/debian11-root",
            root.display()
        ))
    } else if !binaries().portable_agent.is_file() {
        Some(format!(
            "no portable agent at {}: build it with scripts/dist",
            binaries().portable_agent.display()
        ))
    } else {
        None
    };
    match missing {
        None => Some(root),
        Some(why) if std::env::var_os("CI").is_some() => panic!("{why} (CI runs scripts/test, which builds it)"),
        Some(why) => {
            eprintln!("skipped: {why}");
            None
        }
    }
}

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

fn outcome(command: &mut Command) -> Outcome {
    let output = run(command, TIMEOUT).unwrap();
    Outcome {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn ok(host: &ChrootSshd, args: &[&str]) -> String {
    let run = outcome(host.remora().args(args));
    assert_eq!(
        run.code, 0,
        "remora {args:?}\nstdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    run.stdout
}

#[test]
fn a_debian_11_host_gets_the_portable_agent_and_runs_sessions_shells_and_copies() {
    let Some(root) = debian11_root() else { return };
    let host = ChrootSshd::start(&root).unwrap();
    let alias = host.alias();

    // The agent built here needs a newer glibc than 2.31: refused, with nothing copied.
    let native = binaries().agent.display().to_string();
    let refused = outcome(host.remora().args(["install", alias, "--agent", &native]));
    assert_eq!(refused.code, 1, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("Linux x86_64 with glibc 2.31"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("scripts/dist"), "{}", refused.stderr);
    assert!(!host.remote_home().join(".local").exists());

    // A host that claims a newer glibc gets the native build; the copy's own `--version` fails
    // there, and the loader's words come back. Nothing is left installed.
    let source = host.dir().join("getconf");
    fs::write(&source, "#!/bin/sh\necho glibc 2.99\n").unwrap();
    remora_testkit::copy_executable(&source, &host.fake_bin().join("getconf")).unwrap();
    let failed = outcome(host.remora().args(["install", alias, "--agent", &native]));
    assert_eq!(failed.code, 1, "{}", failed.stdout);
    assert!(failed.stderr.contains("does not run on the host"), "{}", failed.stderr);
    assert!(failed.stderr.contains("version `GLIBC_2.3"), "{}", failed.stderr);
    assert!(failed.stderr.contains("not found"), "{}", failed.stderr);
    let bin = host.remote_home().join(".local/bin");
    assert_eq!(fs::read_dir(&bin).unwrap().count(), 0, "the failed copy is removed");
    fs::remove_file(host.fake_bin().join("getconf")).unwrap();

    let printed = ok(&host, &["install", alias]);
    let portable = binaries().portable_agent.display().to_string();
    assert!(printed.contains(&format!("copied from {portable}")), "{printed}");
    let installed = host.remote_home().join(".local/bin/remora-agent");
    assert_eq!(
        fs::read(&installed).unwrap(),
        fs::read(&binaries().portable_agent).unwrap()
    );

    let said = ok(
        &host,
        &[
            "invoke",
            alias,
            "--",
            "cat /etc/debian_version; echo \"bash $BASH_VERSION\"",
        ],
    );
    assert!(said.starts_with("11."), "{said}");
    assert!(said.contains("bash 5.1"), "{said}");

    ok(
        &host,
        &[
            "invoke",
            alias,
            "--name",
            "job",
            "--disconnected",
            "--",
            "echo one; echo two >&2; exit 3",
        ],
    );
    let received = outcome(host.remora().args(["receive", alias, "--name", "job"]));
    assert_eq!(received.code, 3, "{}", received.stderr);
    assert_eq!(received.stdout, "one\n");
    assert!(received.stderr.contains("two"), "{}", received.stderr);

    let mut shell = host.remora();
    shell
        .args(["shell", alias, "--name", "t"])
        .env("TERM", "xterm-256color");
    let mut pty = PtyProgram::spawn(shell, 24, 80).unwrap();
    pty.send(b"echo rea''dy-$((40+2)) $(tty)\r").unwrap();
    let screen = pty.wait_for_text(SCREEN, "ready-42 /dev/pts/").unwrap();
    assert!(screen.contains("ready-42 /dev/pts/"), "{screen}");
    pty.send(b"exit 5\r").unwrap();
    assert_eq!(
        pty.wait_exit(SCREEN).unwrap().code(),
        Some(5),
        "the shell's exit status"
    );

    let local = host.dir().join("data.bin");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(&local, &data).unwrap();
    let remote = format!("{alias}:{}/data.bin", host.remote_home_inside());
    let local_text = local.display().to_string();
    ok(&host, &["cp", &local_text, &remote]);
    assert_eq!(fs::read(host.remote_home().join("data.bin")).unwrap(), data);
    let back = host.dir().join("back.bin").display().to_string();
    ok(&host, &["cp", &remote, &back]);
    assert_eq!(fs::read(&back).unwrap(), data);
}
