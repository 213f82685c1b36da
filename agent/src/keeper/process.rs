//! The keeper's own side: `remora-agent keeper --socket PATH`, a `poll` loop with one buffer.

use std::{
    io::{self, ErrorKind, Read},
    os::{
        fd::{AsFd, FromRawFd, OwnedFd},
        unix::net::{UnixListener, UnixStream},
    },
    path::Path,
    time::{Duration, Instant},
};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::{
    encode_records, recv_with_fds, send_with_fds, Handed, Hold, Source, HELD_FDS, HOLD_LEN, RECORD_MOST, RELEASE,
};

/// Runs a keeper whose control socket is its stdin, until it is released or gives up waiting
/// for a daemon; `socket` is where it listens while orphaned.
pub fn run(socket: &Path) -> io::Result<()> {
    // SAFETY: fd 0 is the control socket the daemon started this process with; nothing else in
    // this process uses it.
    let mut control = unsafe { UnixStream::from_raw_fd(0) };
    let (message, fds) = recv_with_fds::<HOLD_LEN>(&mut control)?;
    let hold = Hold::decode(&message)?;
    let fds: [OwnedFd; HELD_FDS] = fds
        .try_into()
        .map_err(|_| io::Error::new(ErrorKind::InvalidData, "a keeper needs the shell's four descriptors"))?;
    let mut keeper = Keeper {
        hold,
        fds,
        buffer: Vec::new(),
        ended: [false; 3],
    };
    loop {
        if keeper.holding(&control)? == Holding::Released {
            return Ok(());
        }
        match keeper.orphaned(socket)? {
            Some(adopter) => control = adopter,
            None => return Ok(()),
        }
    }
}

enum Listened {
    Adopted(UnixStream),
    Expired,
    Failed,
}

#[derive(Debug, PartialEq, Eq)]
enum Holding {
    Released,
    /// The daemon is gone without a word.
    Lost,
}

struct Keeper {
    hold: Hold,
    /// stdin, stdout, stderr, status.
    fds: [OwnedFd; HELD_FDS],
    /// Records read while orphaned, not yet handed to a daemon.
    buffer: Vec<u8>,
    /// stdout, stderr and status have reached their end.
    ended: [bool; 3],
}

const SOURCES: [Source; 3] = [Source::Stdout, Source::Stderr, Source::Status];

impl Keeper {
    /// Waits on the control socket only: no CPU and no reads while a daemon holds the session.
    fn holding(&self, control: &UnixStream) -> io::Result<Holding> {
        loop {
            let mut fds = [PollFd::new(control.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(err) => return Err(err.into()),
                Ok(_) => {}
            }
            let mut byte = [0u8; 1];
            return Ok(match (&*control).read(&mut byte) {
                Ok(1) if byte[0] == RELEASE => Holding::Released,
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                _ => Holding::Lost,
            });
        }
    }

    /// Drains the shell's pipes and waits for a daemon of this uid; `None` once the wait for
    /// one ran out (the session would have expired).
    fn orphaned(&mut self, socket: &Path) -> io::Result<Option<UnixStream>> {
        let deadline = Instant::now() + Duration::from_secs(self.hold.wait_secs);
        loop {
            let (listener, _) = remora_unix::bind_private_socket(socket)?;
            match self.listen(&listener, socket, deadline)? {
                Listened::Adopted(adopter) => return Ok(Some(adopter)),
                Listened::Expired => return Ok(None),
                // The name went with the failed adopter: bind it again.
                Listened::Failed => continue,
            }
        }
    }

    /// Serves `listener` until a daemon adopts the keeper or the deadline passes.
    fn listen(&mut self, listener: &UnixListener, socket: &Path, deadline: Instant) -> io::Result<Listened> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let _ = std::fs::remove_file(socket);
                return Ok(Listened::Expired);
            }
            let reading = self.buffer.len() < self.hold.limit as usize;
            let mut polled = vec![PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
            let mut which = Vec::new();
            for (index, source) in SOURCES.iter().enumerate() {
                if reading && !self.ended[index] {
                    polled.push(PollFd::new(self.fds[index + 1].as_fd(), PollFlags::POLLIN));
                    which.push(*source);
                }
            }
            let timeout = PollTimeout::try_from(left.min(Duration::from_secs(60))).unwrap_or(PollTimeout::MAX);
            match poll(&mut polled, timeout) {
                Err(nix::errno::Errno::EINTR) | Ok(0) => continue,
                Err(err) => return Err(err.into()),
                Ok(_) => {}
            }
            let ready: Vec<bool> = polled.iter().map(|fd| fd.any().unwrap_or(false)).collect();
            for (source, _) in which.iter().zip(&ready[1..]).filter(|(_, ready)| **ready) {
                self.take(*source);
            }
            if ready[0] {
                if let Some(listened) = self.adopter(listener, socket)? {
                    return Ok(listened);
                }
            }
        }
    }

    /// Reads what `source` holds now; a status line only after both output pipes are drained,
    /// so it follows everything the command wrote before it.
    fn take(&mut self, source: Source) {
        if source == Source::Status {
            self.drain(Source::Stdout);
            self.drain(Source::Stderr);
        }
        self.drain(source);
    }

    /// Reads `source` until it would block or ends.
    fn drain(&mut self, source: Source) {
        let index = SOURCES.iter().position(|s| *s == source).expect("a known source");
        let mut chunk = vec![0u8; RECORD_MOST];
        while !self.ended[index] {
            match nix::unistd::read(&self.fds[index + 1], &mut chunk) {
                Ok(0) => self.ended[index] = true,
                Ok(n) => encode_records(&mut self.buffer, source, &chunk[..n]),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return,
            }
        }
    }

    /// Accepts one connection and hands everything to it when it runs as this uid. The name
    /// goes first, so once the adopter has it all no other daemon can find this keeper.
    fn adopter(&mut self, listener: &UnixListener, socket: &Path) -> io::Result<Option<Listened>> {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(err) if err.kind() == ErrorKind::WouldBlock => return Ok(None),
            Err(err) => return Err(err),
        };
        if !matches!(remora_unix::foreign_peer(&stream), Ok(None)) {
            return Ok(None);
        }
        stream.set_nonblocking(false)?;
        let _ = std::fs::remove_file(socket);
        match self.hand_to(&stream) {
            Ok(()) => {
                self.buffer.clear();
                Ok(Some(Listened::Adopted(stream)))
            }
            // The would-be adopter went away: keep everything for the next one.
            Err(_) => Ok(Some(Listened::Failed)),
        }
    }

    fn hand_to(&self, stream: &UnixStream) -> io::Result<()> {
        use std::{io::Write, os::fd::AsRawFd};
        let handed = Handed {
            session: self.hold.session,
            pid: self.hold.pid,
            records_len: self.buffer.len() as u64,
        };
        let fds = self.fds.each_ref().map(|fd| fd.as_raw_fd());
        send_with_fds(stream, &handed.encode(), &fds)?;
        (&*stream).write_all(&self.buffer)
    }
}
