//! `remora-bench` stopped by SIGTERM or SIGINT ends everything it started: its sshd, the
//! agent's daemon and the sessions' shells, and its test directory.

use std::{path::PathBuf, process::Stdio, time::Duration};

use nix::sys::signal::{kill, Signal};
use remora_testkit::{binaries, command_line, descendants, process_alive, run_child, wait_until};

/// Long enough for a debug build to start its sshd and first session.
const START: Duration = Duration::from_secs(60);

/// Every live process whose command line mentions `text`.
fn processes_mentioning(text: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| command_line(pid).is_some_and(|line| line.join(" ").contains(text)) && process_alive(pid))
        .collect()
}

fn ends_everything_on(signal: Signal) {
    let bench = binaries().unwrap().agent.with_file_name("remora-bench");
    let json = tempfile::tempdir().unwrap();
    let child = std::process::Command::new(&bench)
        .args(["--only", "stream", "--reps", "50", "--bytes", "50M", "--json"])
        .arg(json.path().join("bench.json"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    // The bench's sshd: `sshd -D -f DIR/sshd_config`; DIR is everything it made.
    let mut dir = PathBuf::new();
    wait_until(START, "the bench's sshd", || {
        let found = descendants(pid).into_iter().find_map(|p| {
            let line = command_line(p)?;
            let config = line.iter().position(|a| a == "-f").and_then(|i| line.get(i + 1))?;
            Some(PathBuf::from(config).parent()?.to_path_buf())
        });
        found.inspect(|found| dir = found.clone()).is_some()
    })
    .unwrap();
    let state = dir.join("state").display().to_string();
    wait_until(START, "the bench's agent daemon", || {
        processes_mentioning(&format!("daemon --state-dir {state}")).len() == 1
    })
    .unwrap();
    let mut started = descendants(pid);
    started.extend(processes_mentioning(&state));

    kill(nix::unistd::Pid::from_raw(pid), signal).unwrap();
    let output = run_child(child, START).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(128 + signal as i32), "{stderr}");
    let left: Vec<i32> = started.into_iter().filter(|&p| process_alive(p)).collect();
    assert!(left.is_empty(), "still running after the bench ended: {left:?}");
    assert!(processes_mentioning(&state).is_empty(), "a process of {state} is left");
    assert!(!dir.exists(), "{} is left", dir.display());
}

#[test]
fn sigterm_of_the_bench_ends_its_sshd_daemon_and_sessions() {
    ends_everything_on(Signal::SIGTERM);
}

#[test]
fn sigint_of_the_bench_ends_its_sshd_daemon_and_sessions() {
    ends_everything_on(Signal::SIGINT);
}
