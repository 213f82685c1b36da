//! Processes by pid: whether one is alive, which ones belong to a test, and ending them.
//!
//! Linux only (`/proc`), like remora's agent. Invariant: nothing here ever signals pid 0 or a
//! negative pid (those mean whole process groups), nor the test process itself.

use std::{fs, time::Duration};

use nix::{
    errno::Errno,
    sys::signal::{kill, Signal},
    unistd::Pid,
};

use crate::wait::wait_until;

/// How long SIGKILLed processes get to disappear before we stop watching them.
const KILL_WAIT: Duration = Duration::from_secs(2);

/// Whether `pid` is a live process. A zombie counts as gone: it has exited, and only its parent
/// (possibly an init that never reaps) still has to collect it.
pub fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // EPERM: it exists but belongs to another user.
    let exists = matches!(kill(Pid::from_raw(pid), None), Ok(()) | Err(Errno::EPERM));
    exists && !matches!(state(pid), Some('Z' | 'X'))
}

/// Ends `pids`: SIGTERM, up to `grace` for them to exit, then SIGKILL. Returns the pids that
/// needed SIGKILL, so a caller can report a process that ignores SIGTERM.
pub fn terminate(pids: &[i32], grace: Duration) -> Vec<i32> {
    let own = std::process::id() as i32;
    let targets: Vec<i32> = pids
        .iter()
        .copied()
        .filter(|&pid| pid != own && process_alive(pid))
        .collect();
    for &pid in &targets {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let all_gone = |pids: &[i32]| pids.iter().all(|&pid| !process_alive(pid));
    if wait_until(grace, "processes to exit after SIGTERM", || all_gone(&targets)).is_ok() {
        return Vec::new();
    }
    let stubborn: Vec<i32> = targets.into_iter().filter(|&pid| process_alive(pid)).collect();
    for &pid in &stubborn {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let _ = wait_until(KILL_WAIT, "processes to exit after SIGKILL", || all_gone(&stubborn));
    stubborn
}

/// Every live process below `root` right now (children, grandchildren, …), not `root` itself.
/// Take it before ending `root`: orphans are re-parented and drop out of the tree.
pub fn descendants(root: i32) -> Vec<i32> {
    let parents: Vec<(i32, i32)> = all_pids().filter_map(|pid| Some((pid, parent(pid)?))).collect();
    let mut found = vec![root];
    let mut next = 0;
    while next < found.len() {
        let current = found[next];
        found.extend(parents.iter().filter(|(_, ppid)| *ppid == current).map(|(pid, _)| *pid));
        next += 1;
    }
    found.remove(0);
    found
}

/// Live processes whose environment (as they were started) holds `name=value`. Only processes
/// we may inspect are seen, which includes all of our own user's.
pub(crate) fn with_env(name: &str, value: &str) -> Vec<i32> {
    let entry = format!("{name}={value}").into_bytes();
    all_pids()
        .filter(|&pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|environ| environ.split(|&b| b == 0).any(|var| var == entry.as_slice()))
        })
        .filter(|&pid| process_alive(pid))
        .collect()
}

/// The arguments `pid` was started with, if it is still there.
pub fn command_line(pid: i32) -> Option<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter(|arg| !arg.is_empty())
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect(),
    )
}

/// The resident memory of `pid` in KiB (`VmRSS`), if it is still there.
pub fn rss_kib(pid: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|line| line.strip_prefix("VmRSS:"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// The command lines of every live process, arguments joined by spaces: to check that nothing
/// of a test's outlived it.
pub fn live_command_lines() -> Vec<String> {
    all_pids()
        .filter(|&pid| process_alive(pid))
        .filter_map(command_line)
        .map(|args| args.join(" "))
        .collect()
}

fn all_pids() -> impl Iterator<Item = i32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
}

/// The fields of `/proc/PID/stat` after the command name, which may itself hold spaces and `)`.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

fn state(pid: i32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

fn parent(pid: i32) -> Option<i32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}
