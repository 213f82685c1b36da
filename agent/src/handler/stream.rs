//! Delivering journals to a client: in command order, from the first unacknowledged entry,
//! with at most `window` bytes of output in flight (sent but not acknowledged).
//!
//! The loop wakes on session changes (new output, command ends, acks), never on a timer.

use std::collections::BTreeMap;

use remora_wire::{AgentBody, CommandEnded, Output, OutputDropped, RequestId, StreamEnd};

use tokio_util::sync::CancellationToken;

use super::{Closed, Ctx};
use crate::session::{journal::Data, Entry, EntryKind, Session};

/// Smallest window honoured, so a confused client cannot make the agent send byte by byte.
const MIN_WINDOW: u64 = 64 * 1024;
/// Output sent per pass in keep mode, where acks do not pace the stream.
const KEEP_BATCH: u64 = 1024 * 1024;
/// Largest window honoured, bounding what one stream can have in flight.
const MAX_WINDOW: u64 = 64 * 1024 * 1024;

/// Which commands a stream delivers.
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    /// One command, to its end (attached invoke).
    Command(u64),
    /// Every command with unacknowledged output; with `follow`, until none is running or queued.
    Pending { follow: bool },
}

/// Where a stream stands in one command's journal.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    seq: u64,
    offset: u64,
    ended: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    Sent,
    Idle,
    WindowFull,
}

/// Streams until the scope is delivered, the session is removed or the client goes.
///
/// `window: None` is keep mode: the client will not acknowledge, so nothing is discarded and
/// only the connection's own backpressure paces the stream.
///
/// `lease` is the client's attachment: when another client takes the session over (or it is
/// disconnected by force) the stream ends and says so.
pub async fn run(
    ctx: &Ctx,
    id: RequestId,
    session: &Session,
    scope: Scope,
    window: Option<u64>,
    lease: &CancellationToken,
) -> StreamEnd {
    let window = window.map(|w| w.clamp(MIN_WINDOW, MAX_WINDOW));
    let mut cursors = BTreeMap::new();
    let mut last_exit = None;
    loop {
        let mut changed = session.subscribe();
        let Ok(progress) = send_available(ctx, id, session, scope, window, &mut cursors, &mut last_exit).await else {
            break;
        };
        if finished(session, scope, &cursors, progress) {
            break;
        }
        if progress == Progress::Sent {
            continue;
        }
        tokio::select! {
            _ = changed.changed() => {}
            _ = session.closed.cancelled() => break,
            _ = ctx.closed.cancelled() => break,
            _ = lease.cancelled() => break,
        }
    }
    let fallback = match scope {
        Scope::Command(command) => session.command_info(command).and_then(|c| c.exit_code),
        Scope::Pending { .. } => session.last_exit_code(),
    };
    StreamEnd {
        last_exit_code: last_exit.or(fallback),
        commands_pending: session.active_commands(),
        released_by: if lease.is_cancelled() {
            session.released_by()
        } else {
            None
        },
    }
}

fn finished(session: &Session, scope: Scope, cursors: &BTreeMap<u64, Cursor>, progress: Progress) -> bool {
    let ended = |command: &u64| cursors.get(command).is_some_and(|c| c.ended);
    match scope {
        Scope::Command(command) => ended(&command),
        Scope::Pending { follow: false } => progress == Progress::Idle,
        Scope::Pending { follow: true } => session.pending_commands().iter().all(ended),
    }
}

/// Sends what is available now, within the window, keeping command order.
async fn send_available(
    ctx: &Ctx,
    id: RequestId,
    session: &Session,
    scope: Scope,
    window: Option<u64>,
    cursors: &mut BTreeMap<u64, Cursor>,
    last_exit: &mut Option<i32>,
) -> Result<Progress, Closed> {
    let commands = match scope {
        Scope::Command(command) => vec![command],
        Scope::Pending { .. } => session.pending_commands(),
    };
    let mut in_flight = if window.is_some() {
        in_flight(session, cursors)
    } else {
        0
    };
    let mut sent_any = false;
    for command in commands {
        let (acked_seq, acked_offset) = session.acked_position(command);
        let cursor = cursors.entry(command).or_insert(Cursor {
            seq: acked_seq,
            offset: acked_offset,
            ended: false,
        });
        if cursor.ended {
            continue;
        }
        if session.command_drained(command) {
            cursor.ended = true;
            continue;
        }
        if cursor.seq < acked_seq {
            *cursor = Cursor {
                seq: acked_seq,
                offset: acked_offset,
                ended: false,
            };
        }
        let budget = window.map_or(KEEP_BATCH, |w| w.saturating_sub(in_flight));
        if budget == 0 {
            return Ok(Progress::WindowFull);
        }
        for entry in session.entries_after(command, cursor.seq, budget) {
            in_flight += entry.end_offset - cursor.offset;
            cursor.seq = entry.seq;
            cursor.offset = entry.end_offset;
            if let EntryKind::Ended { exit_code, .. } = entry.kind {
                cursor.ended = true;
                *last_exit = exit_code;
            }
            ctx.send(id, entry_body(session, command, entry)).await?;
            sent_any = true;
        }
        if !cursor.ended {
            break;
        }
    }
    Ok(if sent_any { Progress::Sent } else { Progress::Idle })
}

/// Output bytes sent on this stream and not yet acknowledged by anyone.
fn in_flight(session: &Session, cursors: &BTreeMap<u64, Cursor>) -> u64 {
    cursors
        .iter()
        .map(|(command, cursor)| cursor.offset.saturating_sub(session.acked_position(*command).1))
        .sum()
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
        EntryKind::Output {
            data: Data::Spilled { len, .. },
            ..
        } => {
            // Session::entries_after loads spilled bytes; reaching here means it could not.
            AgentBody::OutputDropped(OutputDropped {
                session: id,
                command,
                seq,
                first_seq: seq,
                bytes: len as u64,
            })
        }
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
