//! What a per-user daemon process needs to start and to be the only one: a lifetime lock, a
//! socket only its user can reach, and a detached start with a log. The agent's daemon and the
//! client's connection holder both stand on these.

use std::{
    fs, io,
    os::unix::{
        fs::{OpenOptionsExt, PermissionsExt},
        net::UnixListener,
        process::CommandExt,
    },
    path::Path,
    process::{Command, Stdio},
};

use nix::fcntl::{Flock, FlockArg};

/// Opens (creating it 0600) a file used only for its lock; its content is left as it is. A
/// link planted under its name is refused, never followed.
pub fn open_lock_file(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

/// Waits for an exclusive lock on `path` (created 0600); released when the guard drops.
pub fn lock_exclusive(path: &Path) -> io::Result<Flock<fs::File>> {
    Flock::lock(open_lock_file(path)?, FlockArg::LockExclusive).map_err(|(_, errno)| io::Error::from(errno))
}

/// Takes an exclusive lock on `path` (created 0600) if nobody holds it: `None` when another
/// process does. A daemon holds its lifetime lock this way, so a second one knows to leave.
pub fn try_lock_exclusive(path: &Path) -> io::Result<Option<Flock<fs::File>>> {
    match Flock::lock(open_lock_file(path)?, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, errno)) => Err(errno.into()),
    }
}

/// Binds a listening socket at `path`, mode 0600 and non-blocking, replacing a stale one.
/// Only the holder of the lifetime lock may call it: nobody else can be serving that socket.
/// Returns whether a stale socket was removed, for the log.
pub fn bind_private_socket(path: &Path) -> io::Result<(UnixListener, bool)> {
    let replaced = match fs::remove_file(path) {
        Ok(()) => true,
        Err(err) if err.kind() == io::ErrorKind::NotFound => false,
        Err(err) => return Err(err),
    };
    let listener = UnixListener::bind(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    Ok((listener, replaced))
}

/// Opens a daemon's log for appending, creating it 0600; a link planted under its name is
/// refused, never followed.
pub fn open_log(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

/// Whose child a detached process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parent {
    /// The caller's: it can watch the child (`try_wait`) while waiting for it to be ready, and
    /// must reap it, or leave the reaping to its own exit.
    Caller,
    /// Init's (or a subreaper's): the child forks the process and exits at once, so a process
    /// that ends before its caller leaves no zombie in it.
    Init,
}

/// Makes `command` start detached from the caller: in its own session (no controlling
/// terminal, out of the caller's process group), stdout on /dev/null, stderr appended to `log`
/// (0600). Stdin is the caller's choice. Spawn it as usual afterwards.
pub fn detach(command: &mut Command, log: &Path, parent: Parent) -> io::Result<()> {
    command.stdout(Stdio::null()).stderr(open_log(log)?);
    match parent {
        // SAFETY: setsid is async-signal-safe, the only call between fork and exec.
        Parent::Caller => unsafe { command.pre_exec(new_session) },
        // SAFETY: fork, _exit and setsid are async-signal-safe, the only calls between fork and
        // exec (see `new_session_as_grandchild`).
        Parent::Init => unsafe { command.pre_exec(new_session_as_grandchild) },
    };
    Ok(())
}

fn new_session() -> io::Result<()> {
    nix::unistd::setsid().map(drop).map_err(io::Error::from)
}

/// Between fork and exec: fork again; the first child exits at once (the caller reaps it), the
/// second leaves the caller's session and goes on to exec. The exec result still reaches
/// `spawn`, through the descriptor std closes on exec, which both share.
fn new_session_as_grandchild() -> io::Result<()> {
    // SAFETY: fork in a single-threaded child between fork and exec; nothing but async-signal-
    // safe calls follow in either process.
    match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
        // SAFETY: _exit ends the intermediate without running anything of the parent's.
        nix::unistd::ForkResult::Parent { .. } => unsafe { nix::libc::_exit(0) },
        nix::unistd::ForkResult::Child => new_session(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lifetime_lock_is_held_once() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("daemon.lock");
        let first = try_lock_exclusive(&path).unwrap();
        assert!(first.is_some());
        assert!(try_lock_exclusive(&path).unwrap().is_none(), "a second holder");
        drop(first);
        assert!(try_lock_exclusive(&path).unwrap().is_some(), "free again once dropped");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_link_planted_as_the_lock_or_the_log_is_refused() {
        let scratch = tempfile::tempdir().unwrap();
        let target = scratch.path().join("elsewhere");
        fs::write(&target, "untouched").unwrap();
        for name in ["daemon.lock", "daemon.log"] {
            std::os::unix::fs::symlink(&target, scratch.path().join(name)).unwrap();
        }
        assert!(try_lock_exclusive(&scratch.path().join("daemon.lock")).is_err());
        assert!(open_log(&scratch.path().join("daemon.log")).is_err());
        assert_eq!(fs::read_to_string(&target).unwrap(), "untouched");
    }

    #[test]
    fn a_stale_socket_is_replaced_and_the_new_one_is_private() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("d.sock");
        let (first, replaced) = bind_private_socket(&path).unwrap();
        assert!(!replaced);
        drop(first);
        let (_second, replaced) = bind_private_socket(&path).unwrap();
        assert!(replaced, "the stale socket file was removed");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        std::os::unix::net::UnixStream::connect(&path).unwrap();
    }

    #[test]
    fn a_detached_grandchild_runs_in_its_own_session_and_logs() {
        let scratch = tempfile::tempdir().unwrap();
        let log = scratch.path().join("log");
        let mut command = Command::new("sh");
        command
            .args(["-c", "cut -d' ' -f6 /proc/$$/stat >&2; echo $$ >&2"])
            .stdin(Stdio::null());
        detach(&mut command, &log, Parent::Init).unwrap();
        let status = command.spawn().unwrap().wait().unwrap();
        assert!(status.success(), "the intermediate exits 0");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let text = loop {
            let text = fs::read_to_string(&log).unwrap();
            if text.lines().count() >= 2 || std::time::Instant::now() > deadline {
                break text;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        assert_eq!(lines.len(), 2, "{text:?}");
        assert_eq!(lines[0], lines[1], "session leader of its own session: {text:?}");
        assert_eq!(fs::metadata(&log).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
