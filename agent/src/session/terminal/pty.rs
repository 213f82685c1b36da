//! Starting the terminal's shell: a pseudo-terminal pair, the user's login shell on its slave as
//! the leader of a new session with the slave as its controlling terminal.

use std::{
    ffi::OsString,
    io,
    os::{
        fd::{AsRawFd, OwnedFd},
        unix::process::CommandExt,
    },
    path::PathBuf,
    process::{Child, Command, Stdio},
};

use nix::{
    fcntl::{fcntl, FcntlArg, OFlag},
    pty::{openpty, Winsize},
    sys::stat::{fchmod, Mode},
};

/// What a terminal starts.
#[derive(Debug, Clone)]
pub struct TermSpec {
    /// The login shell (from passwd).
    pub program: PathBuf,
    /// `-bash`: a leading dash makes it a login shell, so profiles load.
    pub argv0: String,
    pub cwd: PathBuf,
    /// The whole environment (TERM included).
    pub env: Vec<(OsString, OsString)>,
    pub rows: u16,
    pub cols: u16,
}

/// A started shell and the master side of its terminal (non-blocking, close-on-exec).
pub struct Spawned {
    pub master: OwnedFd,
    pub child: Child,
}

/// The window size as the kernel takes it.
pub fn winsize(rows: u16, cols: u16) -> Winsize {
    Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// Opens a pty pair (slave mode 0600) and starts `spec` on it.
pub fn spawn(spec: &TermSpec) -> io::Result<Spawned> {
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
    drop(pair.slave);
    Ok(Spawned {
        master: pair.master,
        child,
    })
}

/// Sets the terminal's window size (the kernel sends SIGWINCH to its foreground group).
pub fn resize(master: &impl AsRawFd, rows: u16, cols: u16) -> io::Result<()> {
    let size = winsize(rows, cols);
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer.
    let result = unsafe { nix::libc::ioctl(master.as_raw_fd(), nix::libc::TIOCSWINSZ, &size) };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The process group in the terminal's foreground.
pub fn foreground_group(master: &impl AsRawFd) -> Option<i32> {
    // SAFETY: TIOCGPGRP writes one pid_t.
    let mut pgid: nix::libc::pid_t = 0;
    let result = unsafe { nix::libc::ioctl(master.as_raw_fd(), nix::libc::TIOCGPGRP, &mut pgid) };
    (result == 0 && pgid > 0).then_some(pgid)
}

/// The short name of a process (`/proc/PID/comm`).
pub fn process_name(pid: i32) -> Option<String> {
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(name.trim_end().to_string())
}

/// Every process whose session is `sid` (the shell's pid): the shell and all it started on
/// the terminal, whatever process group job control put them in.
pub fn session_members(sid: i32) -> Vec<i32> {
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
