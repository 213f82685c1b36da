//! Running processes with a deadline and ending them by pid.

use std::{
    io::Read,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::bail;
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

/// Runs `command` to completion, capturing output; kills it and fails past `timeout`.
pub fn run(command: &mut Command, timeout: Duration) -> anyhow::Result<Output> {
    let child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    run_child(child, timeout)
}

/// Collects a spawned child's output; kills it and fails past `timeout`.
pub fn run_child(mut child: Child, timeout: Duration) -> anyhow::Result<Output> {
    let stdout = child.stdout.take().map(drain_in_background);
    let stderr = child.stderr.take().map(drain_in_background);
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("process {} did not finish within {timeout:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let collect = |handle: Option<std::thread::JoinHandle<Vec<u8>>>| {
        handle.map(|h| h.join().unwrap_or_default()).unwrap_or_default()
    };
    Ok(Output {
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
    })
}

fn drain_in_background<R: Read + Send + 'static>(mut reader: R) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = reader.read_to_end(&mut bytes);
        bytes
    })
}

/// Whether `pid` is a live process (zombies count as dead: they have exited).
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

/// SIGTERM, wait up to 5 s for the process to go, then SIGKILL.
pub fn stop_process(pid: i32) {
    let pid_t = Pid::from_raw(pid);
    let _ = kill(pid_t, Signal::SIGTERM);
    if wait_until("process exit", || !process_alive(pid)).is_err() {
        let _ = kill(pid_t, Signal::SIGKILL);
    }
}

/// Polls an observable condition (a file appears, a process exits) until it holds, up to 10 s.
pub fn wait_until(what: &str, condition: impl FnMut() -> bool) -> anyhow::Result<()> {
    wait_until_within(Duration::from_secs(10), what, condition)
}

/// [`wait_until`] with another limit, for conditions that take long by design (timeouts).
pub fn wait_until_within(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    let mut backoff = Duration::from_millis(2);
    while Instant::now() < deadline {
        if condition() {
            return Ok(());
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_millis(100));
    }
    bail!("gave up waiting for {what} after {limit:?}")
}

/// The command lines of every live process, arguments joined by spaces.
pub fn live_command_lines() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| process_alive(*pid))
        .filter_map(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).ok())
        .map(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " "))
        .collect()
}
