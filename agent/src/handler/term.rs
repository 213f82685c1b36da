//! The terminal's small requests: keystrokes (`TermInput`, acknowledged), window size
//! (`TermResize`), output acks (`TermAck`) and the transcript (`TermTranscript`). Only the
//! interactive client's connection may type or resize; keystrokes are never logged.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use remora_unix::LockRecover;
use remora_wire::{
    AgentBody, AgentFrame, ErrorCode, RequestId, SessionRef, TermAck, TermInput, TermInputAck, TermResize,
    TermTranscript, Transcript, MAX_TERM_INPUT,
};

use super::{Ctx, Refusal};
use crate::session::terminal::{self, Terminal};
use uuid::Uuid;

fn live_terminal(ctx: &Ctx, session: uuid::Uuid) -> Result<Arc<Terminal>, Refusal> {
    let session = ctx.find_session(&SessionRef::Id(session))?;
    session.terminal.live().ok_or_else(|| {
        Refusal::new(
            ErrorCode::InvalidRequest,
            format!("session {:?} has no running terminal", session.name),
        )
    })
}

fn not_interactive() -> Refusal {
    Refusal::new(
        ErrorCode::SessionBusy,
        "this connection is not the terminal's interactive client (watching, or taken over); nothing was typed",
    )
}

pub(crate) async fn input(ctx: &Ctx, id: RequestId, request: TermInput) -> Result<(), Refusal> {
    if request.data.len() > MAX_TERM_INPUT {
        let message = format!(
            "{} bytes of input in one frame; the limit is {MAX_TERM_INPUT}",
            request.data.len()
        );
        return Err(Refusal::new(ErrorCode::InvalidRequest, message));
    }
    let terminal = live_terminal(ctx, request.session)?;
    if terminal.generation != request.generation || !terminal.is_interactive(ctx.conn) {
        return Err(not_interactive());
    }
    let seq = terminal
        .input(request.seq, &request.data)
        .await
        .map_err(|e| Refusal::new(ErrorCode::Internal, format!("cannot write to the terminal: {e}")))?;
    ctx.input_acks.owe(ctx, id, request.session, seq);
    Ok(())
}

/// How long keystroke acknowledgements wait to be sent together. A keystroke's echo follows it
/// within a fraction of a millisecond; acking at once put a frame in front of every echo, on
/// sshd's loop and the client's. The client only uses the ack to forget what it would resend.
const INPUT_ACK_DELAY: std::time::Duration = std::time::Duration::from_millis(5);

/// The keystroke acknowledgements a connection owes: the highest seq taken per terminal
/// session, sent [`INPUT_ACK_DELAY`] after the first of them (or dropped with the connection:
/// a client that reconnects learns the seq from `TerminalOpened`).
#[derive(Debug, Default)]
pub(crate) struct InputAcks {
    owed: Mutex<Option<HashMap<Uuid, (RequestId, u64)>>>,
}

impl InputAcks {
    fn owe(self: &Arc<Self>, ctx: &Ctx, id: RequestId, session: Uuid, seq: u64) {
        let mut owed = self.owed.lock_or_recover();
        let first = owed.is_none();
        owed.get_or_insert_with(HashMap::new).insert(session, (id, seq));
        if first {
            let (tx, closed) = (ctx.tx.clone(), ctx.closed.clone());
            let acks = self.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(INPUT_ACK_DELAY) => {}
                    _ = closed.cancelled() => return,
                }
                let owed = acks.owed.lock_or_recover().take().unwrap_or_default();
                for (session, (id, seq)) in owed {
                    let ack = AgentFrame {
                        id,
                        body: AgentBody::TermInputAck(TermInputAck { session, seq }),
                    };
                    if tx.send(ack.into()).await.is_err() {
                        return;
                    }
                }
            });
        }
    }
}

pub(crate) fn resize(ctx: &Ctx, request: TermResize) -> Result<(), Refusal> {
    terminal::check_size(request.rows, request.cols).map_err(|m| Refusal::new(ErrorCode::InvalidRequest, m))?;
    let terminal = live_terminal(ctx, request.session)?;
    if !terminal.is_interactive(ctx.conn) {
        return Err(not_interactive());
    }
    terminal
        .resize(request.rows, request.cols)
        .map_err(|e| Refusal::new(ErrorCode::Internal, format!("cannot resize the terminal: {e}")))
}

pub(crate) fn ack(ctx: &Ctx, request: TermAck) {
    if let Some(session) = ctx.daemon.registry.find(&SessionRef::Id(request.session)) {
        if let Some(terminal) = session.terminal.get() {
            terminal.ack(ctx.conn, request.seq);
        }
    }
}

pub(crate) async fn transcript(ctx: &Ctx, id: RequestId, request: TermTranscript) -> Result<(), Refusal> {
    let session = ctx.find_session(&request.session)?;
    let terminal = session.terminal.get().ok_or_else(|| {
        Refusal::new(
            ErrorCode::InvalidRequest,
            format!(
                "session {:?} has never had a terminal; open one with `remora shell`",
                session.name
            ),
        )
    })?;
    let (text, lines_lost) = terminal
        .transcript()
        .await
        .map_err(|e| Refusal::new(ErrorCode::Internal, format!("cannot read the transcript: {e}")))?;
    ctx.send(id, AgentBody::Transcript(Transcript { text, lines_lost }))
        .await?;
    Ok(())
}
