//! Handing a subsystem's stdin/stdout to the daemon over its unix socket (SCM_RIGHTS), so the
//! daemon reads and writes sshd's pipes directly and no relay process copies a byte.
//!
//! The first byte on a daemon connection is a mode tag, sent with `sendmsg`:
//! - [`MODE_PROTOCOL`]: remora frames follow on the socket itself.
//! - [`MODE_HANDOFF`]: two descriptors (read side, write side) ride along with the tag, then a
//!   `u16` big-endian length and that many bytes describing where the SSH client connects from.
//!   Frames then flow on the passed descriptors; the socket stays open only so the subsystem
//!   process lives exactly as long as the session connection.

use std::{
    io::{self, IoSlice, IoSliceMut},
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
};

use nix::{
    fcntl::{fcntl, FcntlArg, OFlag},
    sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, Interest},
    net::{unix::pipe, UnixStream},
};

/// Tag: the socket itself carries protocol frames.
pub(crate) const MODE_PROTOCOL: u8 = b'P';
/// Tag: descriptors for the protocol stream accompany this byte.
pub(crate) const MODE_HANDOFF: u8 = b'F';
/// Tag: hand the daemon over to the binary whose path follows (as a length-prefixed text); the
/// daemon answers with one line, then (on success) re-executes and the socket closes.
pub(crate) const MODE_UPGRADE: u8 = b'U';
/// Longest origin description accepted.
const MAX_ORIGIN: usize = 512;

/// The mode tag and any descriptors that came with it.
pub(crate) struct Tag {
    pub mode: u8,
    pub fds: Vec<OwnedFd>,
}

/// Sends the handoff tag with `read_fd`/`write_fd`, then the origin description.
pub(crate) async fn send_handoff(
    stream: &mut UnixStream,
    read_fd: RawFd,
    write_fd: RawFd,
    origin: &str,
) -> io::Result<()> {
    let fds = [read_fd, write_fd];
    let rights = [ControlMessage::ScmRights(&fds)];
    let tag = [MODE_HANDOFF];
    let iov = [IoSlice::new(&tag)];
    stream
        .async_io(Interest::WRITABLE, || {
            sendmsg::<()>(stream.as_raw_fd(), &iov, &rights, MsgFlags::empty(), None).map_err(io::Error::from)
        })
        .await?;
    let origin = &origin.as_bytes()[..origin.len().min(MAX_ORIGIN)];
    stream.write_all(&(origin.len() as u16).to_be_bytes()).await?;
    stream.write_all(origin).await
}

/// Receives the mode tag (and descriptors) without reading past it.
pub(crate) async fn recv_tag(stream: &UnixStream) -> io::Result<Tag> {
    stream
        .async_io(Interest::READABLE, || recv_tag_now(stream.as_raw_fd()))
        .await
}

fn recv_tag_now(fd: RawFd) -> io::Result<Tag> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 2]);
    let msg = recvmsg::<()>(fd, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
    let received = msg.bytes;
    let mut fds = Vec::new();
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            // SAFETY: the kernel just installed these descriptors in our table; we own them.
            fds.extend(raw.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
        }
    }
    if received == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "peer closed before sending a mode tag",
        ));
    }
    Ok(Tag { mode: byte[0], fds })
}

/// Sends the upgrade tag and the path of the binary to hand over to.
pub(crate) async fn send_upgrade(stream: &mut UnixStream, binary: &str) -> io::Result<()> {
    if binary.len() > MAX_ORIGIN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the path {binary} is longer than {MAX_ORIGIN} bytes"),
        ));
    }
    stream.write_all(&[MODE_UPGRADE]).await?;
    let binary = binary.as_bytes();
    stream.write_all(&(binary.len() as u16).to_be_bytes()).await?;
    stream.write_all(binary).await
}

/// Reads the origin description that follows a handoff tag (or the path after an upgrade tag).
pub(crate) async fn recv_origin(stream: &mut UnixStream) -> io::Result<String> {
    let len = stream.read_u16().await? as usize;
    if len > MAX_ORIGIN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "origin description too long",
        ));
    }
    let mut origin = vec![0u8; len];
    stream.read_exact(&mut origin).await?;
    Ok(String::from_utf8_lossy(&origin).into_owned())
}

/// Wraps passed descriptors as async read and write halves.
pub(crate) fn into_halves(read_fd: OwnedFd, write_fd: OwnedFd) -> io::Result<(pipe::Receiver, pipe::Sender)> {
    set_nonblocking(&read_fd)?;
    set_nonblocking(&write_fd)?;
    Ok((
        pipe::Receiver::from_owned_fd_unchecked(read_fd)?,
        pipe::Sender::from_owned_fd_unchecked(write_fd)?,
    ))
}

/// Puts a descriptor in non-blocking mode, as tokio's pipe types need.
pub(crate) fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn handoff_passes_working_descriptors_and_origin() {
        let (mut sender, receiver) = UnixStream::pair().unwrap();
        let (pipe_read, pipe_write) = nix::unistd::pipe().unwrap();
        send_handoff(
            &mut sender,
            pipe_read.as_raw_fd(),
            pipe_write.as_raw_fd(),
            "ssh from 10.0.0.1 5000",
        )
        .await
        .unwrap();
        let tag = recv_tag(&receiver).await.unwrap();
        assert_eq!(tag.mode, MODE_HANDOFF);
        let mut receiver = receiver;
        assert_eq!(recv_origin(&mut receiver).await.unwrap(), "ssh from 10.0.0.1 5000");
        let mut fds = tag.fds.into_iter();
        let (mut read_half, mut write_half) = into_halves(fds.next().unwrap(), fds.next().unwrap()).unwrap();
        write_half.write_all(b"through the passed pipe").await.unwrap();
        let mut buf = [0u8; 23];
        read_half.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"through the passed pipe");
    }
}
