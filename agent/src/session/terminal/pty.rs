//! The operating system under a terminal, kept thin: starting the shell (a pseudo-terminal
//! pair, the user's login shell on its slave as the leader of a new session with the slave as
//! its controlling terminal), the [`Master`] this process holds, signals to the terminal's
//! processes and the `/proc` look-ups about them. Nothing here decides anything: the terminal's
//! logic is in `core.rs`. Who holds the master is decided here alone (today the daemon does;
//! a process that keeps it while no daemon runs would hand it in through [`Master::register`]).

use std::{
    io,
    os::{
        fd::{AsRawFd, OwnedFd},
        unix::process::CommandExt,
    },
    process::{Child, Command, Stdio},
};

use nix::{
    fcntl::{fcntl, FcntlArg, OFlag},
    pty::{openpty, Winsize},
    sys::{
        signal::{kill, killpg, Signal},
        stat::{fchmod, Mode},
    },
    unistd::Pid,
};
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};

use super::spec::TermSpec;

/// The master side of a terminal, held by this process (non-blocking, close-on-exec).
pub(super) struct Master(AsyncFd<OwnedFd>);

impl Master {
    /// Takes the master into the runtime's readiness polling.
    pub(super) fn register(fd: OwnedFd) -> io::Result<Self> {
        // SAFETY: the master is ours alone and stays open as long as the AsyncFd.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(|err| err.into_parts().1)?;
        Ok(Self(fd))
    }

    /// Waits until output can be read (use the guard's `try_io` to read).
    pub(super) async fn readable(&self) -> io::Result<AsyncFdReadyGuard<'_, OwnedFd>> {
        self.0.readable().await
    }

    /// Reads what is there without waiting (`EAGAIN` when nothing is).
    pub(super) fn read_now(&self, buf: &mut [u8]) -> nix::Result<usize> {
        nix::unistd::read(self.0.get_ref(), buf)
    }

    /// Writes all of `data` (keystrokes), waiting while the terminal's input queue is full.
    pub(super) async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.0.writable().await?;
            match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(io::Error::from)) {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(err)) => return Err(err),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    /// Sets the window size (the kernel sends SIGWINCH to the foreground group).
    pub(super) fn resize(&self, rows: u16, cols: u16) -> io::Result<()> {
        resize(self.0.get_ref(), rows, cols)
    }

    /// The process group in the terminal's foreground.
    pub(super) fn foreground_group(&self) -> Option<i32> {
        foreground_group(self.0.get_ref())
    }

    /// SIGHUP to the shell's (`shell`) and the foreground process groups, like a terminal
    /// closing.
    pub(super) fn hang_up(&self, shell: i32) {
        let _ = killpg(Pid::from_raw(shell), Signal::SIGHUP);
        if let Some(group) = self.foreground_group() {
            let _ = killpg(Pid::from_raw(group), Signal::SIGHUP);
        }
    }

    /// The raw descriptor, for logs and a handover.
    pub(super) fn raw_fd(&self) -> i32 {
        self.0.get_ref().as_raw_fd()
    }
}

/// SIGKILL to every process of the terminal's session (`sid`, the shell's pid).
pub(super) fn kill_session(sid: i32) {
    for pid in session_members(sid) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// A started shell and the master side of its terminal (non-blocking, close-on-exec).
pub(super) struct Spawned {
    pub master: OwnedFd,
    pub child: Child,
}

/// The window size as the kernel takes it.
pub(super) fn winsize(rows: u16, cols: u16) -> Winsize {
    Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// Opens a pty pair (slave mode 0600) and starts `spec` on it.
pub(super) fn spawn(spec: &TermSpec) -> io::Result<Spawned> {
    let pair = openpty(Some(&winsize(spec.rows, spec.cols)), None)?;
    // devpts creates the slave 0620 group tty; nobody but the user may write to it.
    fchmod(&pair.slave, Mode::from_bits_truncate(0o600))?;
    for fd in [&pair.master, &pair.slave] {
        fcntl(fd, FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))?;
    }
    fcntl(&pair.master, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    let mut command = Command::new(&spec.program);
    command
        .arg0(&spec.argv0)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.cwd)
        .stdin(Stdio::from(pair.slave.try_clone()?))
        .stdout(Stdio::from(pair.slave.try_clone()?))
        .stderr(Stdio::from(pair.slave.try_clone()?));
    // SAFETY: only async-signal-safe calls (setsid, ioctl) run between fork and exec; stdio is
    // already the slave when pre_exec runs.
    unsafe {
        command.pre_exec(|| {
            if nix::libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if nix::libc::ioctl(0, nix::libc::TIOCSCTTY as _, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn()?;
    crate::session::oom::rank_before_daemon(Some(child.id()));
    drop(pair.slave);
    Ok(Spawned {
        master: pair.master,
        child,
    })
}

/// Sets the terminal's window size (the kernel sends SIGWINCH to its foreground group).
fn resize(master: &impl AsRawFd, rows: u16, cols: u16) -> io::Result<()> {
    let size = winsize(rows, cols);
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer.
    let result = unsafe { nix::libc::ioctl(master.as_raw_fd(), nix::libc::TIOCSWINSZ, &size) };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The process group in the terminal's foreground.
fn foreground_group(master: &impl AsRawFd) -> Option<i32> {
    let mut pgid: nix::libc::pid_t = 0;
    // SAFETY: TIOCGPGRP writes one pid_t.
    let result = unsafe { nix::libc::ioctl(master.as_raw_fd(), nix::libc::TIOCGPGRP, &mut pgid) };
    (result == 0 && pgid > 0).then_some(pgid)
}

/// The short name of a process (`/proc/PID/comm`).
pub(super) fn process_name(pid: i32) -> Option<String> {
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(name.trim_end().to_string())
}

/// Every process whose session is `sid` (the shell's pid): the shell and all it started on
/// the terminal, whatever process group job control put them in.
fn session_members(sid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| session_of(*pid) == Some(sid))
        .collect()
}

fn session_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid pgrp session …; comm may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(3)?.parse().ok()
}
