//! Spare agent channels: when a call through the holder ends, its channel is put on standby
//! (the agent releases everything of that caller, as if the connection had closed, and waits
//! for the next hello) and kept, so the next call opens no SSH channel, starts no subsystem
//! process and runs no login shell on the host: a local socket hop and an agent round trip.
//!
//! Invariants:
//! - Nothing of one caller reaches another: a channel is kept only when the caller's bytes
//!   ended exactly between frames and the agent answered the standby with `StandingBy`, its
//!   last frame for that caller; whatever the agent sent before it is read and dropped here.
//! - While a caller is served, its bytes are copied, not parsed: the holder follows only the
//!   frame lengths ([`FrameBoundary`]), in both directions.
//! - An agent that does not know standby (an older one) answers it with an error: that channel
//!   is closed, and the host's channels are no longer kept.

use std::{pin::Pin, task::Poll, time::Duration};

use remora_wire::{AgentBody, AgentFrame, ClientBody, ClientFrame, FrameBoundary, MAX_FRAME_LEN};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf},
    net::UnixStream,
};

use crate::ssh::SubsystemStream;

/// The request id of the holder's standby (the caller is gone; its ids end with it).
const STANDBY_ID: u64 = u64::MAX;
/// How long the agent may take to finish the old caller's streams and answer the standby.
pub(super) const STANDBY_REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes copied per read, each way.
const COPY_CHUNK: usize = 64 * 1024;

/// Why a channel is not kept.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum NotKept {
    /// The caller or the agent stopped inside a frame, the channel closed, or the standby's
    /// answer did not come.
    Unclean,
    /// The agent does not know standby: keep none of this host's channels.
    Unsupported,
}

/// A channel whose caller is done, before the agent confirmed the standby.
pub(super) struct Draining {
    agent_read: ReadHalf<SubsystemStream>,
    agent_write: WriteHalf<SubsystemStream>,
    /// Where the agent's bytes stand: the caller may have left inside a frame.
    to_caller: FrameBoundary,
}

/// Carries bytes between `caller` and `channel` until the caller is done (its side ends); then
/// `done` runs and the caller's side is closed. `Ok` when both directions stopped between
/// frames.
pub(super) async fn serve_caller(
    caller: UnixStream,
    channel: SubsystemStream,
    done: impl FnOnce(),
) -> Result<Draining, NotKept> {
    let (mut caller_read, mut caller_write) = caller.into_split();
    let (mut agent_read, mut agent_write) = tokio::io::split(channel);
    let mut to_agent = FrameBoundary::default();
    let mut to_caller = FrameBoundary::default();
    let caller_done = {
        let up = copy_following(&mut caller_read, &mut agent_write, &mut to_agent);
        let down = copy_following(&mut agent_read, &mut caller_write, &mut to_caller);
        tokio::select! {
            ended = up => ended,
            // The agent closed (or failed): nothing to keep.
            _ = down => Err(NotKept::Unclean),
        }
    };
    // Before the caller can see its side end (and a next call come).
    done();
    // The caller reads nothing more: its side ends now, whatever happens to the channel.
    let _ = caller_write.shutdown().await;
    caller_done?;
    if !to_agent.between_frames() {
        return Err(NotKept::Unclean);
    }
    Ok(Draining {
        agent_read,
        agent_write,
        to_caller,
    })
}

impl Draining {
    /// Puts the channel on standby: the agent ends the old caller's streams and answers; what
    /// it sent the old caller in between is dropped. `Ok` with the channel, ready for a hello.
    pub(super) async fn stand_by(mut self) -> Result<SubsystemStream, NotKept> {
        send_standby(&mut self.agent_write).await?;
        let answered = tokio::time::timeout(STANDBY_REPLY_TIMEOUT, async {
            skip_to_boundary(&mut self.agent_read, &mut self.to_caller).await?;
            await_standing_by(&mut self.agent_read, Greeted::Yes).await
        });
        answered.await.map_err(|_| NotKept::Unclean)??;
        Ok(self.agent_read.unsplit(self.agent_write))
    }
}

/// Puts a channel nobody has used yet on standby, so that it waits for a hello past the agent's
/// hello timeout.
pub(super) async fn stand_by(mut channel: SubsystemStream) -> Result<SubsystemStream, NotKept> {
    send_standby(&mut channel).await?;
    tokio::time::timeout(STANDBY_REPLY_TIMEOUT, await_standing_by(&mut channel, Greeted::No))
        .await
        .map_err(|_| NotKept::Unclean)??;
    Ok(channel)
}

/// Whether a kept channel is still open: the agent sends nothing on standby, so anything to
/// read (its end, an error) means the channel is gone. Never waits.
pub(super) async fn still_open(channel: &mut SubsystemStream) -> bool {
    let mut probe = [0u8; 1];
    std::future::poll_fn(|context| {
        let mut buf = ReadBuf::new(&mut probe);
        match Pin::new(&mut *channel).poll_read(context, &mut buf) {
            Poll::Pending => Poll::Ready(true),
            Poll::Ready(_) => Poll::Ready(false),
        }
    })
    .await
}

/// Copies `from` to `to` until `from` ends, following frame boundaries. `Ok` at a clean end
/// of `from`; a write that fails stops the writing, not the reading (the bytes still count).
async fn copy_following(
    from: &mut (impl AsyncRead + Unpin),
    to: &mut (impl AsyncWrite + Unpin),
    boundary: &mut FrameBoundary,
) -> Result<(), NotKept> {
    let mut chunk = vec![0u8; COPY_CHUNK];
    let mut writing = true;
    loop {
        let read = from.read(&mut chunk).await.map_err(|_| NotKept::Unclean)?;
        if read == 0 {
            return Ok(());
        }
        boundary.advance(&chunk[..read]);
        if writing && to.write_all(&chunk[..read]).await.is_err() {
            writing = false;
        }
    }
}

/// Reads and drops the rest of the frame the caller did not get whole.
async fn skip_to_boundary(from: &mut (impl AsyncRead + Unpin), boundary: &mut FrameBoundary) -> Result<(), NotKept> {
    let mut chunk = vec![0u8; COPY_CHUNK];
    while !boundary.between_frames() {
        let want = boundary.to_next_boundary().min(chunk.len());
        let read = from.read(&mut chunk[..want]).await.map_err(|_| NotKept::Unclean)?;
        if read == 0 {
            return Err(NotKept::Unclean);
        }
        boundary.advance(&chunk[..read]);
    }
    Ok(())
}

async fn send_standby(to: &mut (impl AsyncWrite + Unpin)) -> Result<(), NotKept> {
    let mut frame = Vec::new();
    let standby = ClientFrame {
        id: STANDBY_ID,
        body: ClientBody::Standby,
    };
    remora_wire::encode(&standby, &mut frame).map_err(|_| NotKept::Unclean)?;
    to.write_all(&frame).await.map_err(|_| NotKept::Unclean)?;
    to.flush().await.map_err(|_| NotKept::Unclean)
}

/// Whether a client's hello went over the channel before the standby.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Greeted {
    Yes,
    No,
}

/// Reads whole frames, one at a time and nothing past them, until the standby's answer. An
/// agent that does not know standby refuses it: with the standby's id after a hello, with id 0
/// (its refusal of a first frame that is no hello) before one.
async fn await_standing_by(from: &mut (impl AsyncRead + Unpin), greeted: Greeted) -> Result<(), NotKept> {
    let refusal_id = match greeted {
        Greeted::Yes => STANDBY_ID,
        Greeted::No => 0,
    };
    loop {
        let frame: AgentFrame = remora_wire::read_single(from, MAX_FRAME_LEN)
            .await
            .map_err(|_| NotKept::Unclean)?;
        match frame.body {
            AgentBody::StandingBy if frame.id == STANDBY_ID => return Ok(()),
            AgentBody::Error(_) if frame.id == refusal_id => return Err(NotKept::Unsupported),
            AgentBody::Error(_) if frame.id == 0 => return Err(NotKept::Unclean),
            _ => {}
        }
    }
}
