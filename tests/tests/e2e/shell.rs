//! `remora shell`: the real `remora` on a real pseudo-terminal (its screen parsed with `vt100`)
//! against the harness sshd. Every wait is for screen content or a process event, bounded.

use std::{path::PathBuf, process::Command, time::Duration};

use nix::sys::signal::Signal;
use remora_testkit::PtyProgram;

use crate::support::{remora, session, wait_until, Sshd};

/// Longest a screen may take to show what a test waits for.
const SCREEN: Duration = Duration::from_secs(20);

/// `remora shell ARGS` on a fresh 24x80 terminal, with this client's HOME.
fn shell_in(command: Command, args: &[&str]) -> PtyProgram {
    shell_sized(command, args, 24, 80)
}

fn shell_sized(mut command: Command, args: &[&str], rows: u16, cols: u16) -> PtyProgram {
    command.arg("shell").args(args).env("TERM", "xterm-256color");
    PtyProgram::spawn(command, rows, cols).unwrap()
}

fn shell(sshd: &Sshd, args: &[&str]) -> PtyProgram {
    let mut all = vec![sshd.alias()];
    all.extend_from_slice(args);
    shell_in(sshd.remora(), &all)
}

/// Another client machine: a HOME of its own.
fn second_home(sshd: &Sshd) -> Command {
    let home = sshd.dir().join("second-home");
    std::fs::create_dir_all(&home).unwrap();
    let mut command = sshd.remora();
    command.env("HOME", home);
    command
}

/// Types a command line and waits for a marker it prints (computed, so the echo never matches).
fn run_line(pty: &mut PtyProgram, line: &str, expect: &str) -> String {
    pty.send(format!("{line}\r").as_bytes()).unwrap();
    pty.wait_for_text(SCREEN, expect).unwrap()
}

/// A shell is ready once a computed marker comes back.
fn ready(pty: &mut PtyProgram) {
    run_line(pty, "echo rea''dy-$((40+2))", "ready-42");
}

fn detach(pty: &mut PtyProgram) -> i32 {
    pty.send(b"\r~.").unwrap();
    pty.wait_exit(SCREEN).unwrap().code().unwrap_or(-1)
}

/// Runs `cat` and waits until it is the terminal's foreground program.
fn start_cat(sshd: &Sshd, pty: &mut PtyProgram, name: &str) {
    pty.send(b"cat\r").unwrap();
    wait_until("cat in the foreground", || {
        terminal_of(sshd, name)["foreground"] == "cat"
    })
    .unwrap();
}

fn terminal_of(sshd: &Sshd, name: &str) -> serde_json::Value {
    session(sshd, name)["terminal"].clone()
}

#[test]
fn type_see_detach_and_reattach_from_a_second_home_then_exit() {
    let sshd = Sshd::start().unwrap();
    let mut first = shell(&sshd, &["--name", "t"]);
    ready(&mut first);
    run_line(
        &mut first,
        "cd /tmp && export FOO=bar && echo state-$((1+1))",
        "state-2",
    );
    run_line(&mut first, "echo pty-mode-$(stat -c %a $(tty))", "pty-mode-");
    let screen = first.wait_for_text(SCREEN, "pty-mode-600").unwrap();
    assert!(screen.contains("pty-mode-600"), "{screen}");
    assert_eq!(detach(&mut first), 0, "detach exits 0");
    let terminal = terminal_of(&sshd, "t");
    assert_eq!(terminal["running"], true, "the shell keeps running: {terminal}");
    assert!(!session(&sshd, "t")["expires_at"].is_null(), "idle once detached");
    let log = sshd.daemon_log();
    assert!(log.contains("terminal attached"), "{log}");
    assert!(
        !log.contains("sw0rdfish"),
        "keystrokes and screens stay out of the log: {log}"
    );

    let mut second = shell_in(second_home(&sshd), &[sshd.alias(), "--name", "t"]);
    // The screen as it stood comes back before anything is typed.
    second.wait_for_text(SCREEN, "state-2").unwrap();
    run_line(&mut second, "echo $FOO-$PWD-$((2+3))", "bar-/tmp-5");
    second.send(b"exit 7\r").unwrap();
    let status = second.wait_exit(SCREEN).unwrap();
    assert_eq!(status.code(), Some(7), "the shell's exit status");
    let terminal = terminal_of(&sshd, "t");
    assert_eq!(terminal["exit_code"], 7, "ls says the terminal ended: {terminal}");
    assert_eq!(terminal["running"], false);
    let table = remora(&sshd, &["ls", sshd.alias()]).ok();
    assert!(table.contains("ended (7)"), "{table}");
}

#[test]
fn without_a_name_a_shell_session_is_created_and_named_on_stderr() {
    let sshd = Sshd::start().unwrap();
    let mut pty = shell(&sshd, &[]);
    let screen = pty.wait_for_text(SCREEN, "opened session shell-").unwrap();
    ready(&mut pty);
    let name = screen
        .split("opened session ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .to_string();
    assert_eq!(detach(&mut pty), 0);
    assert!(!terminal_of(&sshd, &name).is_null(), "{name} holds the terminal");
}

#[test]
fn a_full_screen_program_is_redrawn_identically_after_a_same_size_reattach() {
    let sshd = Sshd::start().unwrap();
    let file = sshd.dir().join("lines.txt");
    let text: String = (1..=300).map(|i| format!("line {i} \x1b[1mbold\x1b[m\n")).collect();
    std::fs::write(&file, text).unwrap();
    let mut first = shell(&sshd, &["--name", "full"]);
    ready(&mut first);
    first.send(format!("less -R {}\r", file.display()).as_bytes()).unwrap();
    first
        .wait_for(SCREEN, "less showing the file", |s| {
            s.alternate_screen() && s.contents().contains("line 1 bold") && s.contents().contains("line 23 bold")
        })
        .unwrap();
    first.send(b"5G").unwrap(); // move within the file so the screen is not the first one
    first
        .wait_for(SCREEN, "less at line 5, drawn to its prompt", less_drawn_from_line_5)
        .unwrap();
    let before = first.screen(|s| (s.contents_formatted(), s.cursor_position(), s.alternate_screen()));
    assert_eq!(
        terminal_of(&sshd, "full")["foreground"],
        "less",
        "ls shows the foreground program"
    );
    // Any key would move less; the client detaches on SIGTERM as on `~.`.
    first.signal(Signal::SIGTERM);
    assert_eq!(first.wait_exit(SCREEN).unwrap().code(), Some(0));

    let second = shell_in(second_home(&sshd), &[sshd.alias(), "--name", "full"]);
    second
        .wait_for(SCREEN, "the same screen", |s| {
            (s.contents_formatted(), s.cursor_position(), s.alternate_screen()) == before
        })
        .unwrap();
}

/// less has redrawn from line 5 down to its `:` prompt and parked the cursor after it (less
/// paints line by line, so the first line alone says the redraw has only begun).
fn less_drawn_from_line_5(screen: &vt100::Screen) -> bool {
    let (rows, _) = screen.size();
    let contents = screen.contents();
    contents.starts_with("line 5 bold")
        && contents.lines().last() == Some(":")
        && screen.cursor_position() == (rows.get() - 1, 1)
}

#[test]
fn output_made_while_detached_arrives_in_order_and_lands_in_the_scrollback() {
    let sshd = Sshd::start().unwrap();
    let gate = sshd.dir().join("gate");
    let done = sshd.dir().join("done");
    let mut first = shell(&sshd, &["--name", "bulk"]);
    ready(&mut first);
    let line = format!(
        "while [ ! -e {} ]; do sleep 0.05; done; seq 1 50000; echo fin''ished; touch {}",
        gate.display(),
        done.display()
    );
    first.send(format!("{line}\r").as_bytes()).unwrap();
    assert_eq!(detach(&mut first), 0);
    std::fs::write(&gate, "").unwrap();
    crate::support::wait_until_within(
        Duration::from_secs(120),
        "the shell to print 50,000 lines while detached",
        || done.exists(),
    )
    .unwrap();

    let second = shell_sized(second_home(&sshd), &[sshd.alias(), "--name", "bulk"], 24, 80);
    second.wait_for_text(SCREEN, "finished").unwrap();
    let numbers: Vec<u64> = second
        .history()
        .iter()
        .filter_map(|line| line.trim().parse().ok())
        .collect();
    let last = *numbers.last().expect("numbers in the history");
    assert_eq!(last, 50000, "the newest line is there");
    assert!(
        numbers.len() >= 9_000,
        "the scrollback holds the newest lines: {}",
        numbers.len()
    );
    for pair in numbers.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "in order, nothing missing or twice");
    }
}

#[test]
fn a_link_cut_while_typing_reconnects_and_typing_goes_on() {
    let sshd = Sshd::start().unwrap();
    let (link, config) = crate::support::flaky(&sshd);
    let mut pty = shell_in(sshd.remora_with_config(&config), &["flaky", "--name", "cut"]);
    ready(&mut pty);
    pty.send(b"echo one-$((0+1))").unwrap();
    pty.wait_for_text(SCREEN, "echo one-").unwrap();
    let connections = link.connections();
    link.cut();
    // Typed while the link is down: sent once, in order, after the reconnect.
    pty.send(b" two-$((1+1))\r").unwrap();
    pty.wait_for_text(SCREEN, "one-1 two-2").unwrap();
    pty.wait_for_text(SCREEN, "resumed after").unwrap();
    assert!(link.connections() > connections);
    run_line(&mut pty, "echo three-$((1+2))", "three-3");
    let screen = pty.screen(|s| s.contents());
    assert_eq!(screen.matches("one-1 two-2").count(), 1, "nothing twice: {screen}");
    assert_eq!(detach(&mut pty), 0);
}

#[test]
fn a_second_client_is_busy_force_takes_over_and_watch_only_watches() {
    let sshd = Sshd::start().unwrap();
    let mut first = shell(&sshd, &["--name", "two"]);
    ready(&mut first);

    let mut busy = shell(&sshd, &["--name", "two"]);
    busy.wait_for_text(SCREEN, "attached to").unwrap();
    assert_ne!(busy.wait_exit(SCREEN).unwrap().code(), Some(0));

    let mut watcher = shell_in(second_home(&sshd), &[sshd.alias(), "--name", "two", "--watch"]);
    watcher.wait_for_text(SCREEN, "ready-42").unwrap();
    run_line(&mut first, "echo typed-by-first-$((3*3))", "typed-by-first-9");
    watcher.wait_for_text(SCREEN, "typed-by-first-9").unwrap();
    watcher.send(b"echo from-watcher\r").unwrap();
    run_line(&mut first, "echo check-$((4*4))", "check-16");
    let screen = first.screen(|s| s.contents());
    assert!(!screen.contains("from-watcher"), "a watcher never types: {screen}");

    let mut third = shell_in(second_home(&sshd), &[sshd.alias(), "--name", "two", "--force"]);
    third.wait_for_text(SCREEN, "check-16").unwrap();
    first.wait_for_text(SCREEN, "taken over").unwrap();
    assert_eq!(
        first.wait_exit(SCREEN).unwrap().code(),
        Some(1),
        "the first client exits 1"
    );
    run_line(&mut third, "echo took-$((5*5))", "took-25");
    watcher.wait_for_text(SCREEN, "took-25").unwrap();
    assert_eq!(detach(&mut third), 0);
    watcher.signal(Signal::SIGTERM);
    assert_eq!(
        watcher.wait_exit(SCREEN).unwrap().code(),
        Some(0),
        "SIGTERM only detaches"
    );
}

#[test]
fn a_resize_reaches_the_shell() {
    let sshd = Sshd::start().unwrap();
    let mut pty = shell(&sshd, &["--name", "size"]);
    ready(&mut pty);
    run_line(&mut pty, "echo size-$(stty size | tr ' ' x)", "size-24x80");
    pty.resize(30, 100).unwrap();
    // SIGWINCH travels asynchronously to the client; ask until the shell's terminal has the new size.
    for attempt in 0.. {
        pty.send(format!("echo now{attempt}-$(stty size | tr ' ' x)\r").as_bytes())
            .unwrap();
        let seen = pty
            .wait_for(SCREEN, "a size answer", |s| {
                let text = s.contents();
                text.contains(&format!("now{attempt}-2")) || text.contains(&format!("now{attempt}-3"))
            })
            .unwrap();
        if seen.contains(&format!("now{attempt}-30x100")) {
            break;
        }
        assert!(attempt < 50, "the size never changed: {seen}");
    }
    assert_eq!(terminal_of(&sshd, "size")["cols"], 100);
    assert_eq!(detach(&mut pty), 0);
}

#[test]
fn every_escape_and_the_escape_char_settings() {
    let sshd = Sshd::start().unwrap();
    let mut pty = shell(&sshd, &["--name", "esc"]);
    ready(&mut pty);
    pty.send(b"\r~?").unwrap();
    pty.wait_for_text(SCREEN, "Supported escape sequences").unwrap();
    start_cat(&sshd, &mut pty, "esc");
    pty.send(b"~~lit''eral\r").unwrap();
    pty.wait_for(SCREEN, "a literal ~ passed through", |s| {
        s.contents().matches("~lit''eral").count() >= 2
    })
    .unwrap();
    pty.send(b"\x04").unwrap();
    run_line(&mut pty, "echo back-$((1+1))", "back-2");
    assert_eq!(detach(&mut pty), 0);

    // -e none: `~.` is just text; exit ends it.
    let mut none = shell(&sshd, &["--name", "esc", "-e", "none"]);
    run_line(&mut none, "echo none-$((2+2))", "none-4");
    start_cat(&sshd, &mut none, "esc");
    none.send(b"~.x\r").unwrap();
    none.wait_for(SCREEN, "~. passed through", |s| {
        s.contents().matches("~.x").count() >= 2
    })
    .unwrap();
    none.send(b"\x04").unwrap();
    run_line(&mut none, "echo still-$((6+6))", "still-12");

    // -e %, and ssh_config's EscapeChar.
    none.send(b"exit\r").unwrap();
    assert_eq!(none.wait_exit(SCREEN).unwrap().code(), Some(0));
    let mut percent = shell(&sshd, &["--name", "esc", "-e", "%"]);
    ready(&mut percent);
    percent.send(b"\r%.").unwrap();
    assert_eq!(percent.wait_exit(SCREEN).unwrap().code(), Some(0));
    let config: PathBuf = sshd.dir().join("escape_config");
    let text = std::fs::read_to_string(sshd.ssh_config()).unwrap() + "\nHost *\n  EscapeChar ^]\n";
    std::fs::write(&config, text).unwrap();
    let mut configured = shell_in(sshd.remora_with_config(&config), &[sshd.alias(), "--name", "esc"]);
    ready(&mut configured);
    configured.send(b"\r\x1d.").unwrap();
    assert_eq!(configured.wait_exit(SCREEN).unwrap().code(), Some(0));
}

#[test]
fn sigkill_or_sighup_of_the_client_only_detaches() {
    let sshd = Sshd::start().unwrap();
    let mut first = shell(&sshd, &["--name", "kill"]);
    ready(&mut first);
    run_line(&mut first, "echo before-kill-$((7*7))", "before-kill-49");
    first.signal(Signal::SIGKILL);
    first.wait_exit(SCREEN).unwrap();
    wait_until("the agent to notice the client is gone", || {
        session(&sshd, "kill")["attached_from"].is_null()
    })
    .unwrap();
    let mut second = shell(&sshd, &["--name", "kill"]);
    second.wait_for_text(SCREEN, "before-kill-49").unwrap();
    run_line(&mut second, "echo after-kill-$((8*8))", "after-kill-64");
    second.signal(Signal::SIGHUP);
    assert_eq!(
        second.wait_exit(SCREEN).unwrap().code(),
        Some(0),
        "SIGHUP only detaches"
    );
    assert_eq!(terminal_of(&sshd, "kill")["running"], true);
}

#[test]
fn rm_ends_the_terminal_and_everything_on_it() {
    let sshd = Sshd::start().unwrap();
    let mut pty = shell(&sshd, &["--name", "gone"]);
    ready(&mut pty);
    let pids = sshd.dir().join("pids");
    run_line(
        &mut pty,
        &format!("sleep 1000 & echo $$ $! > {}; echo started-$((9*9))", pids.display()),
        "started-81",
    );
    assert_eq!(detach(&mut pty), 0);
    let text = std::fs::read_to_string(&pids).unwrap();
    let pids: Vec<i32> = text.split_whitespace().map(|p| p.parse().unwrap()).collect();
    remora(&sshd, &["rm", sshd.alias(), "--name", "gone"]).ok();
    wait_until("the shell and its job to be gone", || {
        pids.iter().all(|pid| !crate::support::process_alive(*pid))
    })
    .unwrap();
}

#[test]
fn invoke_and_the_terminal_live_side_by_side_and_receive_prints_the_transcript() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    remora(
        &sshd,
        &[
            "invoke",
            host,
            "--name",
            "both",
            "--",
            "cd /tmp && export IN_RUNSPACE=yes",
        ],
    )
    .ok();
    let mut pty = shell(&sshd, &["--name", "both"]);
    ready(&mut pty);
    run_line(
        &mut pty,
        "printf '\\033[31mred\\033[m cwd-%s-%s\\n' $PWD $((1+9))",
        "cwd-/tmp-10",
    );
    assert_eq!(detach(&mut pty), 0);
    let out = remora(
        &sshd,
        &["invoke", host, "--name", "both", "--", "echo still-$IN_RUNSPACE-$PWD"],
    )
    .ok();
    assert_eq!(out.trim(), "still-yes-/tmp");
    let transcript = remora(&sshd, &["receive", host, "--name", "both", "--terminal"]).ok();
    assert!(transcript.contains("red cwd-/tmp-10"), "{transcript}");
    assert!(
        !transcript.contains('\x1b'),
        "escape sequences stripped: {transcript:?}"
    );
    assert!(!terminal_of(&sshd, "both").is_null());
    let again = remora(&sshd, &["receive", host, "--name", "both", "--terminal"]).ok();
    assert!(
        !again.contains("red cwd-/tmp-10"),
        "a second receive gives only what came since: {again:?}"
    );

    // A full-screen program holds the alternate screen; the transcript is still the shell's.
    let mut pty = shell(&sshd, &["--name", "both"]);
    run_line(
        &mut pty,
        "echo before-$((2+3)); printf '\\033[?1049h\\033[Hfull-%s' screen; cat",
        "full-screen",
    );
    assert_eq!(detach(&mut pty), 0);
    let transcript = remora(&sshd, &["receive", host, "--name", "both", "--terminal"]).ok();
    assert!(transcript.contains("before-5"), "{transcript:?}");
    assert!(!transcript.contains("full-screen"), "{transcript:?}");
}

#[test]
fn a_terminal_survives_an_agent_upgrade_with_its_screen_and_process() {
    let sshd = Sshd::start().unwrap();
    let mut pty = shell(&sshd, &["--name", "up"]);
    ready(&mut pty);
    let pid_file = sshd.dir().join("shell-pid");
    run_line(
        &mut pty,
        &format!(
            "echo $$ > {}; export KEPT=kept; echo before-upgrade-$((6*7))",
            pid_file.display()
        ),
        "before-upgrade-42",
    );
    let shell_pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();

    let new = sshd.dir().join("remora-agent-new");
    remora_testkit::copy_executable(&crate::support::binaries().agent, &new).unwrap();
    let mut upgrade = sshd.agent_at(&new);
    upgrade.arg("upgrade").arg("--state-dir").arg(sshd.state_dir());
    let upgraded = crate::support::run(&mut upgrade, crate::support::TIMEOUT).unwrap();
    assert!(
        upgraded.status.success(),
        "{}",
        String::from_utf8_lossy(&upgraded.stderr)
    );

    // The attached client lost its link with the handover, reconnects and goes on.
    pty.wait_for_text(SCREEN, "resumed after").unwrap();
    run_line(&mut pty, "echo $KEPT-after-$((7*7))", "kept-after-49");
    let screen = pty.screen(|s| s.contents());
    assert_eq!(screen.matches("kept-after-49").count(), 1, "{screen}");
    assert_eq!(detach(&mut pty), 0);
    assert!(crate::support::process_alive(shell_pid), "the same shell process");

    // A new client gets the screen back from the rebuilt model.
    let mut again = shell_in(second_home(&sshd), &[sshd.alias(), "--name", "up"]);
    again.wait_for_text(SCREEN, "kept-after-49").unwrap();
    run_line(&mut again, "echo $$-$((1+1))", &format!("{shell_pid}-2"));
    assert_eq!(detach(&mut again), 0);
}

#[tokio::test]
async fn window_sizes_of_zero_or_over_ten_thousand_are_refused() {
    use remora_client::{ssh::SshOptions, Client, ClientError};
    use remora_wire::{ErrorCode, OpenTerminal, SessionRef, DEFAULT_TERM_WINDOW};
    let sshd = Sshd::start().unwrap();
    let options = SshOptions {
        config_file: Some(sshd.ssh_config().to_path_buf()),
        ..SshOptions::default()
    };
    for (rows, cols) in [(0, 80), (24, 0), (10_001, 80), (24, 10_001)] {
        let client = Client::connect(sshd.alias(), &options).await.unwrap();
        let request = OpenTerminal {
            session: Some(SessionRef::Name("sizes".into())),
            create: true,
            rows,
            cols,
            term: "xterm".into(),
            force: false,
            watch: false,
            resume: None,
            window: DEFAULT_TERM_WINDOW,
            idle_timeout_secs: None,
            configuration: None,
            buffering: None,
        };
        let refused = tokio::time::timeout(SCREEN, client.open_terminal(request))
            .await
            .unwrap();
        match refused {
            Err(ClientError::Refused { code, message, .. }) => {
                assert_eq!(code, ErrorCode::InvalidRequest);
                assert!(message.contains(&format!("{rows}x{cols}")), "{message}");
            }
            Err(other) => panic!("{rows}x{cols}: {other}"),
            Ok(_) => panic!("{rows}x{cols} was accepted"),
        }
    }
}

#[test]
fn hostile_output_keeps_the_agents_memory_bounded() {
    let sshd = Sshd::start().unwrap();
    let mut pty = shell(&sshd, &["--name", "noise"]);
    ready(&mut pty);
    let daemon = sshd.daemon_pid().unwrap();
    let before = remora_testkit::rss_kib(daemon).unwrap();
    let done = sshd.dir().join("noise-done");
    let gate = sshd.dir().join("noise-gate");
    let line = format!(
        "while [ ! -e {} ]; do sleep 0.05; done; head -c 10000000 /dev/urandom; printf '\\033[8;9999;9999t\\033[99999S\\033c'; touch {}",
        gate.display(),
        done.display()
    );
    pty.send(format!("{line}\r").as_bytes()).unwrap();
    pty.wait_for_text(SCREEN, "noise-done").unwrap();
    // Detached, so nobody reads: the agent alone must keep up and stay small.
    pty.send(b"~.").unwrap();
    assert_eq!(pty.wait_exit(SCREEN).unwrap().code(), Some(0));
    std::fs::write(&gate, "").unwrap();
    crate::support::wait_until_within(Duration::from_secs(180), "10 MB of noise through the terminal", || {
        done.exists()
    })
    .unwrap();
    let after = remora_testkit::rss_kib(daemon).unwrap();
    assert!(
        after < before + 64 * 1024,
        "the daemon grew from {before} KiB to {after} KiB for one terminal"
    );
    // The agent is intact and the terminal still there; a new client attaches to it.
    assert_eq!(terminal_of(&sshd, "noise")["running"], true);
    let mut again = shell(&sshd, &["--name", "noise"]);
    wait_until("the new client to attach", || {
        !session(&sshd, "noise")["attached_from"].is_null()
    })
    .unwrap();
    again.send(b"\r~.").unwrap();
    assert_eq!(again.wait_exit(SCREEN).unwrap().code(), Some(0));
}

/// Switches on, from the host, every mode a full-screen program may leave behind: the alternate
/// screen, a hidden cursor, mouse and focus reporting, bracketed paste, application cursor keys
/// and keypad, bold red.
const HOST_MODES: &str =
    r"printf '\033[?1049h\033[?25l\033[?1000h\033[?1006h\033[?1004h\033[?2004h\033[?1h\033=\033[1;31m'";

/// Waits until the host's modes are on the local terminal.
fn enter_host_modes(pty: &mut PtyProgram, then: &str) {
    pty.send(format!("{HOST_MODES}; {then}\r").as_bytes()).unwrap();
    pty.wait_for(SCREEN, "the host's modes", |s| {
        s.alternate_screen() && s.hide_cursor() && s.bracketed_paste() && s.application_keypad()
    })
    .unwrap();
}

/// Asserts the local terminal is back as it was before the attach, once `line` (printed after the
/// reset) is on the screen: the normal screen with what it showed, and every mode off.
fn assert_terminal_restored(pty: &PtyProgram, line: &str, before: &str) {
    let shown = pty.wait_for_text(SCREEN, line).unwrap();
    assert!(shown.contains(before), "the normal screen is back: {shown}");
    pty.screen(|s| {
        let modes = (
            s.alternate_screen(),
            s.hide_cursor(),
            s.mouse_protocol_mode(),
            s.bracketed_paste(),
            s.application_cursor(),
            s.application_keypad(),
        );
        assert_eq!(
            modes,
            (false, false, vt100::MouseProtocolMode::None, false, false, false),
            "alternate screen, hidden cursor, mouse, paste, cursor keys, keypad"
        );
        let (_, cols) = s.size();
        let row_of = |text: &str| s.rows(0, cols.get()).position(|r| r.contains(text)).unwrap();
        assert!(row_of(line) > row_of(before), "the cursor stays below what was there");
        let row = row_of(line) as u16;
        let cell = s.cell(row, 0).unwrap();
        assert_eq!(
            (cell.fgcolor(), cell.bold()),
            (vt100::Color::Default, false),
            "attributes reset"
        );
    });
}

#[test]
fn a_detach_puts_the_local_terminal_back_whatever_the_host_left_it_in() {
    let sshd = Sshd::start().unwrap();
    let mut pty = shell(&sshd, &["--name", "modes"]);
    ready(&mut pty);
    enter_host_modes(&mut pty, "echo in-alt-$((6*7))");
    pty.wait_for_text(SCREEN, "in-alt-42").unwrap();
    assert_eq!(detach(&mut pty), 0);
    assert_terminal_restored(&pty, "remora: detached from session modes", "ready-42");
}

#[test]
fn the_shells_end_puts_the_local_terminal_back_too() {
    let sshd = Sshd::start().unwrap();
    let mut pty = shell(&sshd, &["--name", "ends"]);
    ready(&mut pty);
    enter_host_modes(&mut pty, "read -r _; exit 3");
    pty.send(b"\r").unwrap();
    assert_eq!(pty.wait_exit(SCREEN).unwrap().code(), Some(3));
    assert_terminal_restored(&pty, "remora: the shell of session ends", "ready-42");
}

/// Reads the terminal's events until its output holds `marker`, within [`SCREEN`].
async fn output_until(
    stream: &mut remora_client::terminal::TerminalStream,
    commands: &mut tokio::sync::mpsc::UnboundedReceiver<remora_client::terminal::TermCommand>,
    marker: &str,
) -> String {
    use remora_client::terminal::TermEvent;
    let mut seen = Vec::new();
    let found = tokio::time::timeout(SCREEN, async {
        while !String::from_utf8_lossy(&seen).contains(marker) {
            match stream.next(commands).await.unwrap() {
                TermEvent::Output(bytes) => seen.extend_from_slice(&bytes),
                TermEvent::Redraw(redraw) => seen.extend_from_slice(&redraw.screen),
                other => panic!("the terminal ended before {marker:?}: {other:?}"),
            }
        }
    })
    .await;
    let seen = String::from_utf8_lossy(&seen).into_owned();
    assert!(found.is_ok(), "no {marker:?} within {SCREEN:?}: {seen:?}");
    seen
}

#[tokio::test]
async fn a_huge_window_on_the_alternate_screen_keeps_the_daemon_small_and_usable() {
    use remora_client::{ssh::SshOptions, terminal::TermCommand, Client};
    use remora_wire::{OpenTerminal, SessionRef, DEFAULT_TERM_WINDOW};
    let sshd = Sshd::start().unwrap();
    let options = SshOptions {
        config_file: Some(sshd.ssh_config().to_path_buf()),
        ..SshOptions::default()
    };
    let client = Client::connect(sshd.alias(), &options).await.unwrap();
    let request = OpenTerminal {
        session: Some(SessionRef::Name("huge".into())),
        create: true,
        rows: 24,
        cols: 80,
        term: "xterm".into(),
        force: false,
        watch: false,
        resume: None,
        window: DEFAULT_TERM_WINDOW,
        idle_timeout_secs: None,
        configuration: None,
        buffering: None,
    };
    let (_, mut stream) = client.open_terminal(request).await.unwrap();
    let (keys, mut commands) = tokio::sync::mpsc::unbounded_channel();
    keys.send(TermCommand::Input(b"echo sm''all-$((6*7))\r".to_vec()))
        .unwrap();
    output_until(&mut stream, &mut commands, "small-42").await;
    let daemon = sshd.daemon_pid().unwrap();
    let before = remora_testkit::rss_kib(daemon).unwrap();

    keys.send(TermCommand::Resize {
        rows: 10_000,
        cols: 10_000,
    })
    .unwrap();
    let full_screen = r"printf '\033[?1049h\033[9999;9999Hx'; echo size-$(stty size | tr ' ' x)-do''ne";
    keys.send(TermCommand::Input(format!("{full_screen}\r").into_bytes()))
        .unwrap();
    let seen = output_until(&mut stream, &mut commands, "-done").await;
    let after = remora_testkit::rss_kib(daemon).unwrap();
    assert!(
        after < before + 200 * 1024,
        "a 10000x10000 window took the daemon from {before} KiB to {after} KiB"
    );
    // The window is clamped, not refused: the shell sees every column, and as many rows as fit.
    assert!(seen.contains("size-50x10000-done"), "{seen:?}");
    // The daemon serves everyone else as before.
    let other = tokio::task::spawn_blocking(move || {
        let out = remora(&sshd, &["invoke", sshd.alias(), "--name", "other", "--", "echo fine"]).ok();
        (out, sshd)
    });
    let (out, _sshd) = other.await.unwrap();
    assert_eq!(out, "fine\n");
}

#[test]
fn keys_from_a_pipe_are_typed_and_the_end_of_a_pipe_or_dev_null_detaches() {
    let sshd = Sshd::start().unwrap();
    // A pipe is read in the stream's loop; what it held is typed before its end detaches.
    let typed = b"echo pip''ed-$((6*7)) > typed.txt\r".to_vec();
    let (status, _, stderr) =
        crate::stdin::with_stdin(sshd.remora(), &["shell", sshd.alias(), "--name", "piped"], typed);
    assert_eq!(status, 0, "{stderr}");
    assert!(stderr.contains("detached from session piped"), "{stderr}");
    let file = sshd.remote_home().join("typed.txt");
    wait_until("the piped line ran", || {
        std::fs::read_to_string(&file).is_ok_and(|text| text == "piped-42\n")
    })
    .unwrap();
    assert_eq!(terminal_of(&sshd, "piped")["running"], true, "the shell keeps running");

    // /dev/null cannot be polled: it is read on a thread, and its end detaches as well.
    let out = sshd
        .remora()
        .args(["shell", sshd.alias(), "--name", "nulled"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("detached from session nulled"), "{stderr}");
}
