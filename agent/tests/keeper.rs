//! The keeper process as the daemon sees it: the real `remora-agent keeper`, real pipes, a
//! control socket whose end stands for the daemon's death.

use std::{
    io::{Read, Write},
    os::fd::{AsFd, OwnedFd},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use remora_agent::keeper::{self, Hold, KeeperLink, Record, Source};

/// The test's stand-in for a shell: the far ends of the pipes a keeper holds.
struct Shell {
    /// What the shell reads (the keeper holds the write end).
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
    status: OwnedFd,
}

fn nonblocking(fd: &OwnedFd) {
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL).unwrap());
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).unwrap();
}

/// Starts a keeper for fresh pipes; returns its link, the shell's ends, and its socket path.
fn keeper(dir: &Path, limit: u64) -> (KeeperLink, Shell, PathBuf) {
    let (stdin_r, stdin_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
    let (stdout_r, stdout_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
    let (stderr_r, stderr_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
    let (status_r, status_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
    for read_end in [&stdout_r, &stderr_r, &status_r] {
        nonblocking(read_end);
    }
    let socket = dir.join("keeper.sock");
    let hold = Hold {
        session: uuid::Uuid::new_v4(),
        pid: std::process::id() as i32,
        limit,
        wait_secs: 60,
    };
    let held = [stdin_w.as_fd(), stdout_r.as_fd(), stderr_r.as_fd(), status_r.as_fd()];
    let binary = Path::new(env!("CARGO_BIN_EXE_remora-agent"));
    let link = keeper::spawn(binary, &socket, hold, held).unwrap();
    let shell = Shell {
        stdin: stdin_r,
        stdout: stdout_w,
        stderr: stderr_w,
        status: status_w,
    };
    (link, shell, socket)
}

/// Adopts the keeper once it listens (it binds its socket when it notices the daemon gone).
fn adopt_when_orphaned(socket: &Path) -> keeper::Adopted {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match keeper::adopt(socket) {
            Ok(adopted) => return adopted,
            Err(err) if Instant::now() < deadline => {
                assert!(
                    matches!(
                        err.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                    ),
                    "{err}"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(err) => panic!("the keeper never listened: {err}"),
        }
    }
}

fn joined(records: &[Record], source: Source) -> Vec<u8> {
    records
        .iter()
        .filter(|r| r.source == source)
        .flat_map(|r| r.data.clone())
        .collect()
}

#[test]
fn an_orphaned_keeper_hands_what_the_shell_wrote_and_its_pipes_to_the_next_daemon_once() {
    let dir = tempfile::tempdir().unwrap();
    let (link, shell, socket) = keeper(dir.path(), 1 << 20);
    assert!(!socket.exists(), "a held keeper does not listen");
    drop(link); // the daemon dies
    nix::unistd::write(&shell.stdout, b"line 1\n").unwrap();
    nix::unistd::write(&shell.stderr, b"warning\n").unwrap();
    nix::unistd::write(&shell.stdout, b"line 2\n").unwrap();
    nix::unistd::write(&shell.status, b"0\n").unwrap();

    let adopted = adopt_when_orphaned(&socket);
    assert!(!socket.exists(), "an adopted keeper stops listening");
    assert_eq!(joined(&adopted.records, Source::Stdout), b"line 1\nline 2\n");
    assert_eq!(joined(&adopted.records, Source::Stderr), b"warning\n");
    assert_eq!(joined(&adopted.records, Source::Status), b"0\n");
    let status_at = adopted.records.iter().position(|r| r.source == Source::Status).unwrap();
    assert_eq!(
        status_at,
        adopted.records.len() - 1,
        "the status comes after the output it ends"
    );

    // The handed descriptors are the shell's own pipes.
    let [stdin, stdout, _stderr, _status] = adopted.fds;
    nix::unistd::write(&stdin, b"echo hi\n").unwrap();
    let mut typed = [0u8; 8];
    std::fs::File::from(shell.stdin.try_clone().unwrap())
        .read_exact(&mut typed)
        .unwrap();
    assert_eq!(&typed, b"echo hi\n");
    nix::unistd::write(&shell.stdout, b"after\n").unwrap();
    let mut after = [0u8; 6];
    wait_read(&stdout, &mut after);
    assert_eq!(&after, b"after\n");

    // Held again: a second death and adoption repeat nothing.
    drop(adopted.link);
    let again = adopt_when_orphaned(&socket);
    assert!(again.records.is_empty(), "{:?}", again.records);
    again.link.release();
}

#[test]
fn past_its_limit_an_orphaned_keeper_stops_reading_so_the_rest_waits_in_the_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let (link, shell, socket) = keeper(dir.path(), 16);
    drop(link);
    let written: Vec<u8> = (0..200u8).collect();
    std::fs::File::from(shell.stdout.try_clone().unwrap())
        .write_all(&written)
        .unwrap();
    let adopted = adopt_when_orphaned(&socket);
    let mut taken = joined(&adopted.records, Source::Stdout);
    assert!(taken.len() <= written.len());
    let mut rest = vec![0u8; written.len() - taken.len()];
    wait_read(&adopted.fds[1], &mut rest);
    taken.extend(rest);
    assert_eq!(
        taken, written,
        "every byte once, in order, between the keeper and the pipe"
    );
    adopted.link.release();
}

#[test]
fn a_released_keeper_ends_and_lets_the_shell_see_its_stdin_close() {
    let dir = tempfile::tempdir().unwrap();
    let (link, shell, socket) = keeper(dir.path(), 1 << 20);
    link.release(); // returns once the keeper is reaped
    assert!(!socket.exists(), "a released keeper never listens");
    let mut rest = Vec::new();
    std::fs::File::from(shell.stdin).read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

/// Reads exactly `buf.len()` bytes from a non-blocking pipe, waiting for them with `poll`.
fn wait_read(fd: &OwnedFd, buf: &mut [u8]) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut got = 0;
    while got < buf.len() {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        assert!(
            poll(&mut fds, PollTimeout::from(10_000u16)).unwrap() > 0,
            "nothing to read"
        );
        match nix::unistd::read(fd, &mut buf[got..]) {
            Ok(0) => panic!("the pipe ended after {got} bytes"),
            Ok(n) => got += n,
            Err(nix::errno::Errno::EAGAIN) => {}
            Err(err) => panic!("{err}"),
        }
    }
}
