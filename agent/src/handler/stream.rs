//! Delivering journals to a client: in command order, from the first unacknowledged entry,
//! with at most `window` bytes of output in flight (sent but not acknowledged).
//!
//! Each pass takes one consistent batch from the session (`Session::next_batch`), loads spilled
//! bytes and sends, all without the session's lock. The loop wakes on session changes (new
//! output, command ends, acks), never on a timer. A followed command's stdin is acknowledged
//! here as the runspace writes it (`input.rs`).

use remora_wire::{AgentBody, CommandEnded, Output, OutputDropped, RequestId, StreamEnd};

use super::{Closed, Ctx};
use crate::session::{
    batch::{Progress, MAX_WINDOW, MIN_WINDOW},
    journal::Data,
    Attachment, Cursors, Entry, EntryKind, Scope, Session,
};

/// Streams until the scope is delivered, the session is removed or the client goes. Returns
/// `None` when the connection is closing (the client went, the daemon stops or hands over): no
/// end is reported then, so a client still there sees its link drop, reconnects and resumes.
///
/// `window: None` is keep mode: the client will not acknowledge, so nothing is discarded and
/// only the connection's own backpressure paces the stream.
///
/// `attachment` is the client's hold on the session: when another client takes the session over
/// (or it is disconnected by force) the stream ends and says so.
pub(super) async fn run(
    ctx: &Ctx,
    id: RequestId,
    session: &Session,
    scope: Scope,
    window: Option<u64>,
    attachment: &Attachment,
) -> Option<StreamEnd> {
    let window = window.map(|w| w.clamp(MIN_WINDOW, MAX_WINDOW));
    let lost = attachment.lost();
    let mut cursors = Cursors::default();
    let mut input_acked = None;
    loop {
        let mut changed = session.subscribe();
        if super::input::send_ack_due(ctx, session, scope, &mut input_acked)
            .await
            .is_err()
        {
            break;
        }
        let batch = session.next_batch(scope, &mut cursors, window);
        if send(ctx, id, session, batch.entries).await.is_err() || batch.finished {
            break;
        }
        if batch.progress == Progress::Sent {
            continue;
        }
        tokio::select! {
            _ = changed.changed() => {}
            _ = session.closed.cancelled() => break,
            _ = ctx.closed.cancelled() => return None,
            _ = lost.cancelled() => break,
        }
    }
    if ctx.closed.is_cancelled() {
        return None;
    }
    let (fallback, commands_pending) = session.stream_end_facts(scope);
    Some(StreamEnd {
        last_exit_code: cursors.last_exit.or(fallback),
        commands_pending,
        released_by: if lost.is_cancelled() {
            session.released_by()
        } else {
            None
        },
    })
}

/// Sends a batch; spilled chunks are read back here, outside the session's lock.
async fn send(ctx: &Ctx, id: RequestId, session: &Session, entries: Vec<(u64, Entry)>) -> Result<(), Closed> {
    for (command, entry) in entries {
        // A chunk released meanwhile was acknowledged by someone: nobody needs it sent.
        let Some(entry) = session.load(entry) else { continue };
        match entry.kind {
            EntryKind::Output {
                stream,
                data: Data::Memory(bytes),
            } => {
                let header = Output {
                    session: session.id,
                    command,
                    seq: entry.seq,
                    stream,
                    data: Vec::new(),
                };
                ctx.send_output(id, header, bytes).await?
            }
            _ => ctx.send(id, entry_body(session, command, entry)).await?,
        }
    }
    Ok(())
}

fn entry_body(session: &Session, command: u64, entry: Entry) -> AgentBody {
    let (id, seq) = (session.id, entry.seq);
    match entry.kind {
        EntryKind::Output {
            stream,
            data: Data::Memory(bytes),
        } => AgentBody::Output(Output {
            session: id,
            command,
            seq,
            stream,
            data: bytes.to_vec(),
        }),
        // `Session::load` reads spilled bytes back or reports them dropped.
        EntryKind::Output {
            data: Data::Spilled(chunk),
            ..
        } => AgentBody::OutputDropped(OutputDropped {
            session: id,
            command,
            seq,
            first_seq: seq,
            bytes: chunk.len as u64,
        }),
        EntryKind::Dropped { first_seq, bytes } => AgentBody::OutputDropped(OutputDropped {
            session: id,
            command,
            seq,
            first_seq,
            bytes,
        }),
        EntryKind::Ended {
            state,
            exit_code,
            ended_at,
        } => AgentBody::CommandEnded(CommandEnded {
            session: id,
            command,
            seq,
            state,
            exit_code,
            ended_at,
        }),
    }
}
