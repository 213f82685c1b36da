//! Accounts whose login shell is not bash: the exec fallback (sshd runs remora's commands with
//! `SHELL -c`), `remora install`, `invoke` (the runspace is still bash) and `shell` (the
//! terminal runs the account's own shell) work for dash, zsh, fish and tcsh. Real users made
//! with useradd, so this needs root: CI (`CI` set) fails without it, elsewhere it says so and
//! passes without running.

use std::time::Duration;

use remora_testkit::{Account, PtyProgram};

use crate::support::{binaries, remora, session, wait_until, Sshd};

const SCREEN: Duration = Duration::from_secs(20);

fn check_shell(shell: &str) {
    if !nix::unistd::geteuid().is_root() {
        assert!(std::env::var_os("CI").is_none(), "login shell tests need root");
        eprintln!("skipped: the {shell} account needs root (useradd)");
        return;
    }
    let account = Account::create(shell).unwrap();
    let sshd = Sshd::start_as(&account).unwrap();
    let host = sshd.alias();

    let agent = binaries().agent.display().to_string();
    let printed = remora(&sshd, &["install", host, "--agent", &agent]).ok();
    assert!(printed.contains("Linux x86_64 with glibc"), "{shell}: {printed}");

    // The runspace is bash whatever the login shell; arguments keep their quotes, $, spaces
    // and newlines.
    let said = remora(
        &sshd,
        &[
            "invoke",
            host,
            "--",
            "printf '%s|' \"$BASH_VERSINFO\" 'a  b' \"it's\" '$HOME' \"$((6*7))\" 'two\nlines'; whoami",
        ],
    )
    .ok();
    assert_eq!(
        said,
        format!("5|a  b|it's|$HOME|42|two\nlines|{}\n", account.name()),
        "{shell}"
    );

    // A configured zsh account has a .zshrc; without one zsh starts its set-up wizard.
    std::fs::write(sshd.remote_home().join(".zshrc"), "").unwrap();
    let mut command = sshd.remora();
    command
        .args(["shell", host, "--name", "t"])
        .env("TERM", "xterm-256color");
    let mut pty = PtyProgram::spawn(command, 24, 80).unwrap();
    // Adjacent quotes join in every one of these shells; the marker appears only as output.
    pty.send(b"echo rea''dy-42\r").unwrap();
    pty.wait_for_text(SCREEN, "ready-42").unwrap();
    wait_until("the login shell in the terminal's foreground", || {
        session(&sshd, "t")["terminal"]["foreground"] == shell
    })
    .unwrap_or_else(|err| panic!("{shell}: {err}: {}", session(&sshd, "t")["terminal"]));
    pty.send(b"exit\r").unwrap();
    assert_eq!(pty.wait_exit(SCREEN).unwrap().code(), Some(0), "{shell}");
    assert_eq!(account.shell().file_name().unwrap(), shell);
}

#[test]
fn a_dash_account_gets_install_invoke_and_shell() {
    check_shell("dash");
}

#[test]
fn a_zsh_account_gets_install_invoke_and_shell() {
    check_shell("zsh");
}

#[test]
fn a_fish_account_gets_install_invoke_and_shell() {
    check_shell("fish");
}

#[test]
fn a_tcsh_account_gets_install_invoke_and_shell() {
    check_shell("tcsh");
}
