//! The daemon's side of a keeper: starting one for a shell, releasing it, adopting an orphan.
//! Blocking calls: run them on a blocking thread.

use std::{
    io::{self, ErrorKind, Read, Write},
    os::{
        fd::{AsRawFd, BorrowedFd, OwnedFd},
        unix::{net::UnixStream, process::CommandExt},
    },
    path::Path,
    process::{Child, Command, Stdio},
};

use super::{decode_records, recv_with_fds, send_with_fds, Handed, Hold, Record, HANDED_LEN, HELD_FDS, RELEASE};

/// Most bytes of records a daemon takes from one keeper.
const MOST_RECORDS: u64 = 4 << 30;

/// The daemon's end of a keeper's control socket. Dropped without [`KeeperLink::release`] (or
/// with the daemon) it leaves the keeper orphaned, holding the shell for the next daemon.
#[derive(Debug)]
pub struct KeeperLink {
    control: UnixStream,
    /// The keeper, when this process started it (and so reaps it).
    child: Option<Child>,
}

impl KeeperLink {
    /// Ends the keeper: the session is over and its shell may see its pipes close.
    pub fn release(mut self) {
        let _ = self.control.write_all(&[RELEASE]);
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }

    /// The control socket, so a handover can keep it open across `exec`.
    pub fn control_fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.control.as_fd()
    }
}

/// Starts `binary`'s keeper for a shell whose stdin, stdout, stderr and status pipe are `fds`;
/// it listens on `socket` once orphaned.
pub fn spawn(binary: &Path, socket: &Path, hold: Hold, fds: [BorrowedFd<'_>; HELD_FDS]) -> io::Result<KeeperLink> {
    let (ours, theirs) = UnixStream::pair()?;
    let child = Command::new(binary)
        .arg("keeper")
        .arg("--socket")
        .arg(socket)
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own group: a signal to the daemon's group never reaches the sessions' keepers.
        .process_group(0)
        .spawn()?;
    let raw = fds.map(|fd| fd.as_raw_fd());
    send_with_fds(&ours, &hold.encode(), &raw)?;
    Ok(KeeperLink {
        control: ours,
        child: Some(child),
    })
}

/// A keeper taken over by this daemon: the shell's descriptors and what it read meanwhile.
#[derive(Debug)]
pub struct Adopted {
    pub handed: Handed,
    /// stdin, stdout, stderr, status.
    pub fds: [OwnedFd; HELD_FDS],
    pub records: Vec<Record>,
    pub link: KeeperLink,
}

/// Adopts the orphaned keeper listening on `socket`.
pub fn adopt(socket: &Path) -> io::Result<Adopted> {
    let mut stream = UnixStream::connect(socket)?;
    if let Some((peer, own)) = remora_unix::foreign_peer(&stream)? {
        let message = format!("{} is served by uid {peer}, not {own}", socket.display());
        return Err(io::Error::new(ErrorKind::PermissionDenied, message));
    }
    let (message, fds) = recv_with_fds::<HANDED_LEN>(&mut stream)?;
    let handed = Handed::decode(&message)?;
    let fds: [OwnedFd; HELD_FDS] = fds
        .try_into()
        .map_err(|_| io::Error::new(ErrorKind::InvalidData, "the keeper did not hand over four descriptors"))?;
    if handed.records_len > MOST_RECORDS {
        let message = format!(
            "the keeper offers {} bytes of output, past the most taken",
            handed.records_len
        );
        return Err(io::Error::new(ErrorKind::InvalidData, message));
    }
    let mut bytes = Vec::new();
    (&mut stream).take(handed.records_len).read_to_end(&mut bytes)?;
    if bytes.len() as u64 != handed.records_len {
        return Err(io::Error::new(
            ErrorKind::UnexpectedEof,
            "the keeper's output was cut short",
        ));
    }
    Ok(Adopted {
        handed,
        fds,
        records: decode_records(&bytes)?,
        link: KeeperLink {
            control: stream,
            child: None,
        },
    })
}
