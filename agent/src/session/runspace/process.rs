//! The runspace's shell as a process: one this program spawned, or one a previous program of
//! this process spawned and handed over by `exec` (still our child, but not tokio's).

use std::{
    io,
    os::fd::{FromRawFd, OwnedFd},
};

use nix::{
    sys::wait::{waitpid, WaitStatus},
    unistd::Pid,
};
use tokio::{io::unix::AsyncFd, process::Child};

/// A shell's exit status as a number: its code, or 128 + signal like shells report it.
pub(super) fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(-1)
}

/// The shell process.
pub enum ShellProcess {
    Spawned(Child),
    /// Adopted after a handover: waited for through a pidfd, reaped with `waitpid`.
    Adopted {
        pid: Pid,
        exited: AsyncFd<OwnedFd>,
        code: Option<i32>,
    },
}

impl ShellProcess {
    /// Adopts child `pid` of this process.
    pub fn adopt(pid: i32) -> io::Result<Self> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just gave us this descriptor.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // SAFETY: an OwnedFd keeps its descriptor open and unchanged until the AsyncFd drops it.
        let exited = unsafe { AsyncFd::register(pidfd) }.map_err(|err| err.into_parts().1)?;
        Ok(Self::Adopted {
            pid: Pid::from_raw(pid),
            exited,
            code: None,
        })
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        match self {
            Self::Spawned(child) => child.id().map_or(0, |id| id as i32),
            Self::Adopted { pid, .. } => pid.as_raw(),
        }
    }

    /// Waits for the process to exit and reaps it; its status as a shell reports it (cancel-safe).
    pub async fn wait(&mut self) -> i32 {
        match self {
            Self::Spawned(child) => child.wait().await.map_or(-1, exit_code),
            Self::Adopted { pid, exited, code } => {
                if let Some(code) = code {
                    return *code;
                }
                if exited.readable().await.is_err() {
                    return -1;
                }
                let status = match waitpid(*pid, None) {
                    Ok(WaitStatus::Exited(_, status)) => status,
                    Ok(WaitStatus::Signaled(_, signal, _)) => 128 + signal as i32,
                    _ => -1,
                };
                *code = Some(status);
                status
            }
        }
    }
}
