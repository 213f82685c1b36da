//! A session's hold on its runspace shell from outside the runspace task: the shell's one pid,
//! the one reader of its working directory and environment, and the shell while it is parked.
//!
//! Invariants:
//! - One pid per session: set when a runspace task starts driving the shell (spawned, resumed
//!   or adopted after a handover) and cleared when the session breaks or the shell is gone, so
//!   [`RunspaceHandle::pid`] names a live runspace shell or nothing.
//! - `/proc/PID/cwd` and `/proc/PID/environ` are read here and nowhere else.
//! - The parked shell is here only between a handover's park and its resume or hand-off.

use remora_unix::LockRecover;
use std::{
    ffi::OsString,
    path::PathBuf,
    sync::{
        atomic::{AtomicI32, Ordering},
        Mutex,
    },
};

use super::runspace::Parked;

/// See the module docs.
#[derive(Debug, Default)]
pub struct RunspaceHandle {
    /// The runspace shell's pid; 0 while there is none.
    pid: AtomicI32,
    /// The shell, parked by its runspace for a handover.
    parked: Mutex<Option<Parked>>,
}

impl RunspaceHandle {
    /// A runspace task drives the shell with this pid.
    pub fn set_pid(&self, pid: i32) {
        self.pid.store(pid, Ordering::Relaxed);
    }

    /// The shell is gone (the session broke or closed).
    pub fn clear(&self) {
        self.pid.store(0, Ordering::Relaxed);
    }

    /// The runspace shell's pid, while it runs.
    pub fn pid(&self) -> Option<i32> {
        let pid = self.pid.load(Ordering::Relaxed);
        (pid > 0).then_some(pid)
    }

    /// The runspace shell's current directory, while it runs.
    pub fn cwd(&self) -> Option<PathBuf> {
        std::fs::read_link(format!("/proc/{}/cwd", self.pid()?)).ok()
    }

    /// The environment the runspace shell started with, while it runs (not what later commands
    /// exported: the kernel keeps the exec-time block).
    pub fn environ(&self) -> Option<Vec<(OsString, OsString)>> {
        let raw = std::fs::read(format!("/proc/{}/environ", self.pid()?)).ok()?;
        Some(parse_environ(&raw))
    }

    /// Keeps the runspace's shell while the daemon hands over.
    pub fn park(&self, parked: Parked) {
        *self.lock() = Some(parked);
    }

    /// The parked shell, once.
    pub fn take_parked(&self) -> Option<Parked> {
        self.lock().take()
    }

    /// Reads the parked shell, if there is one.
    pub fn with_parked<T>(&self, read: impl FnOnce(&Parked) -> T) -> Option<T> {
        self.lock().as_ref().map(read)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Parked>> {
        self.parked.lock_or_recover()
    }
}

/// `KEY=VALUE` entries separated by NUL; entries without `=` are skipped.
fn parse_environ(raw: &[u8]) -> Vec<(OsString, OsString)> {
    use std::os::unix::ffi::OsStrExt;
    raw.split(|b| *b == 0)
        .filter_map(|entry| {
            let eq = entry.iter().position(|b| *b == b'=')?;
            let key = std::ffi::OsStr::from_bytes(&entry[..eq]).to_os_string();
            let value = std::ffi::OsStr::from_bytes(&entry[eq + 1..]).to_os_string();
            Some((key, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pid_gives_directory_and_environment_until_cleared() {
        let handle = RunspaceHandle::default();
        assert_eq!((handle.pid(), handle.cwd()), (None, None));
        handle.set_pid(std::process::id() as i32);
        assert_eq!(handle.cwd(), std::env::current_dir().ok());
        assert!(handle.environ().is_some_and(|env| !env.is_empty()));
        handle.clear();
        assert!(handle.pid().is_none() && handle.environ().is_none());
    }

    #[test]
    fn environ_entries_without_an_equals_sign_are_skipped() {
        let env = parse_environ(b"A=1\0junk\0B=x=y\0");
        assert_eq!(env, vec![("A".into(), "1".into()), ("B".into(), "x=y".into())]);
    }
}
