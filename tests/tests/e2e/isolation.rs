//! Other users on the same host: a second Unix user (created here; it needs root) can neither
//! reach the first user's daemon nor read its sessions, journals, spill files or log, and the
//! agent refuses state directories that are symlinks or someone else's.

use std::{
    fs,
    os::unix::{
        fs::{MetadataExt, PermissionsExt},
        process::CommandExt,
    },
    path::Path,
    process::Command,
};

use nix::{
    sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr},
    sys::wait::{waitpid, WaitStatus},
    unistd::{fork, read, setgid, setuid, ForkResult, Gid, Uid},
};

use crate::support::{binaries, remora, run, write_agent_config, Sshd, TIMEOUT};

/// The second user's name; created for the test and removed after it.
const OTHER: &str = "remora-e2e-other";

/// A throw-away Unix account, deleted when dropped.
pub(crate) struct OtherUser {
    pub(crate) uid: u32,
    gid: u32,
    name: String,
}

impl OtherUser {
    fn create() -> OtherUser {
        Self::create_named(OTHER)
    }

    /// A system account `name` (recreated), for tests that need a second uid.
    pub(crate) fn create_named(name: &str) -> OtherUser {
        let _ = run(Command::new("userdel").arg(name), TIMEOUT);
        let made = run(
            Command::new("useradd").args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name]),
            TIMEOUT,
        )
        .unwrap();
        assert!(
            made.status.success(),
            "useradd: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        let user = nix::unistd::User::from_name(name).unwrap().expect("just created");
        OtherUser {
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            name: name.to_string(),
        }
    }

    /// `command` run as this user.
    pub(crate) fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command.uid(self.uid).gid(self.gid).env("HOME", "/nonexistent");
        command
    }

    /// Connects to a Unix socket as this user in a forked child: `Ok(true)` when the peer then
    /// closed the connection at once, `Ok(false)` if it talked, `Err(errno)` if connect failed.
    pub(crate) fn connect(&self, socket_path: &Path) -> Result<bool, i32> {
        let address = UnixAddr::new(socket_path).unwrap();
        let (uid, gid) = (Uid::from_raw(self.uid), Gid::from_raw(self.gid));
        // Safety: the child only makes system calls and exits; it allocates nothing.
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                let code = (|| {
                    setgid(gid).ok()?;
                    setuid(uid).ok()?;
                    let fd = socket(AddressFamily::Unix, SockType::Stream, SockFlag::empty(), None).ok()?;
                    if let Err(errno) = connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &address) {
                        return Some(100 + errno as i32);
                    }
                    let mut byte = [0u8; 1];
                    Some(match read(&fd, &mut byte) {
                        Ok(0) => 0,
                        _ => 1,
                    })
                })()
                .unwrap_or(99);
                // SAFETY: _exit ends the forked child at once, running nothing of the parent's.
                unsafe { nix::libc::_exit(code) }
            }
            ForkResult::Parent { child } => match waitpid(child, None).unwrap() {
                WaitStatus::Exited(_, 0) => Ok(true),
                WaitStatus::Exited(_, 1) => Ok(false),
                WaitStatus::Exited(_, code) if code >= 100 => Err(code - 100),
                other => panic!("the connecting child failed: {other:?}"),
            },
        }
    }
}

impl Drop for OtherUser {
    fn drop(&mut self) {
        let _ = run(Command::new("userdel").arg(&self.name), TIMEOUT);
    }
}

/// Every file under `dir` is the owner's alone: directories 0700, files without group or world
/// bits. Returns how many files were checked.
fn assert_private(dir: &Path) -> usize {
    let mut checked = 0;
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.ends_with("config/agent.toml") {
            continue; // the user's own file, written by this test, in a 0700 directory
        }
        let meta = fs::symlink_metadata(&path).unwrap();
        assert!(!meta.file_type().is_symlink(), "{} is a symlink", path.display());
        assert_eq!(
            meta.mode() & 0o077,
            0,
            "{} is open to others: {:o}",
            path.display(),
            meta.mode()
        );
        checked += 1;
        if meta.is_dir() {
            assert_eq!(meta.mode() & 0o777, 0o700, "{}", path.display());
            checked += assert_private(&path);
        }
    }
    checked
}

#[test]
fn another_user_can_neither_reach_the_daemon_nor_read_its_files() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: creating a second Unix user needs root (CI runs as root)");
        return;
    }
    let sshd = Sshd::start().unwrap();
    write_agent_config(&sshd, "[configurations.default]\nbuffer_limit = \"4KiB\"\n");
    let host = sshd.alias();
    let command = "seq 1 20000; echo secret-output";
    remora(
        &sshd,
        &["invoke", host, "--name", "mine", "--disconnected", "--", command],
    )
    .ok();
    remora(&sshd, &["new", host, "--name", "idle"]).ok();
    let state = sshd.state_dir();
    // Only the state dir's own permissions stand between the other user and the files.
    fs::set_permissions(sshd.dir(), fs::Permissions::from_mode(0o755)).unwrap();
    let other = OtherUser::create();

    assert!(
        assert_private(&state) > 5,
        "sessions, journals, the log and the socket were checked"
    );
    let journal_dir = state.join("data/sessions");
    let session_dir = fs::read_dir(&journal_dir).unwrap().next().unwrap().unwrap().path();
    let read = run(other.command("cat").arg(session_dir.join("session.json")), TIMEOUT).unwrap();
    assert!(!read.status.success(), "the other user read a session file");

    let socket = state.join("run/agent.sock");
    assert_eq!(
        other.connect(&socket),
        Err(nix::libc::EACCES),
        "the 0700 directory is the first wall"
    );
    // Take the first wall away: the daemon's peer check is the second.
    fs::set_permissions(&state, fs::Permissions::from_mode(0o711)).unwrap();
    fs::set_permissions(state.join("run"), fs::Permissions::from_mode(0o711)).unwrap();
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o777)).unwrap();
    assert_eq!(other.connect(&socket), Ok(true), "the daemon hangs up on a stranger");
    let refused = format!("connection from uid {} refused", other.uid);
    assert!(sshd.daemon_log().contains(&refused), "{}", sshd.daemon_log());

    let mut agent = other.command(&binaries().agent);
    agent.args(["subsystem", "--state-dir"]).arg(&state);
    let refused = run(&mut agent, TIMEOUT).unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("owned by uid 0") || stderr.contains("open to other users"),
        "{stderr}"
    );
    fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(state.join("run"), fs::Permissions::from_mode(0o700)).unwrap();

    let listed = remora(&sshd, &["receive", host, "--name", "mine"]).ok();
    assert!(
        listed.ends_with("20000\nsecret-output\n"),
        "the owner still gets everything"
    );
}

#[test]
fn a_state_dir_that_is_a_symlink_is_refused() {
    let sshd = Sshd::start().unwrap();
    let real = sshd.dir().join("elsewhere");
    fs::create_dir(&real).unwrap();
    let link = sshd.dir().join("state-link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let mut agent = sshd.agent();
    agent.args(["subsystem", "--state-dir"]).arg(&link);
    let refused = run(&mut agent, TIMEOUT).unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("is a symbolic link"), "{stderr}");
    assert_eq!(
        fs::read_dir(&real).unwrap().count(),
        0,
        "nothing was written through the link"
    );
}
