//! The terminal's small requests: keystrokes (`TermInput`, acknowledged), window size
//! (`TermResize`), output acks (`TermAck`) and the transcript (`TermTranscript`). Only the
//! interactive client's connection may type or resize; keystrokes are never logged.

use std::sync::Arc;

use remora_wire::{
    AgentBody, ErrorCode, RequestId, SessionRef, TermAck, TermInput, TermInputAck, TermResize, TermTranscript,
    Transcript, MAX_TERM_INPUT,
};

use super::{Ctx, Refusal};
use crate::session::terminal::{self, Terminal};

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
    let ack = TermInputAck {
        session: request.session,
        seq,
    };
    ctx.send(id, AgentBody::TermInputAck(ack)).await?;
    Ok(())
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
