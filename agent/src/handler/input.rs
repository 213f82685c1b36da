//! `Input`: a command's stdin bytes from the client. Acknowledgements go back as the agent
//! takes bytes in (here) and as the command reads them (from the command's stream, see
//! [`send_ack_due`]), so a client blocked on a full window learns when it may go on.

use remora_wire::{AgentBody, ErrorCode, Input, InputAck, SessionRef};

use super::{Closed, Ctx};
use crate::session::{
    input::{InputAckState, InputError},
    Scope, Session,
};

/// Acknowledgement progress a stream waits for before telling the client (unless caught up).
const ACK_STEP: u64 = 512 * 1024;

/// Takes the bytes; answers with the acknowledgement, or an error the client reports.
pub(crate) async fn handle(ctx: &Ctx, input: Input) {
    let Some(session) = ctx.daemon.registry.find(&SessionRef::Id(input.session)) else {
        let message = format!(
            "no session with instance id {} for this input; it was removed",
            input.session
        );
        return ctx.send_error(0, ErrorCode::SessionNotFound, message).await;
    };
    match session
        .inputs
        .push(input.command, input.offset, input.data, input.eof)
        .await
    {
        Ok(ack) => {
            let _ = ctx.send(0, ack_body(&session, input.command, ack)).await;
        }
        Err(err) => {
            // A flood is logged once, when it overruns, not once per frame.
            if !matches!(err, InputError::Overrun { again: true, .. }) {
                tracing::warn!(session = %session.name, "input refused: {err}");
            }
            let code = match err {
                InputError::Store { ref source, .. } if source.raw_os_error() == Some(nix::libc::ENOSPC) => {
                    ErrorCode::NoSpace
                }
                InputError::Store { .. } => ErrorCode::IoFailed,
                InputError::Overrun { .. } => ErrorCode::LimitReached,
                _ => ErrorCode::InvalidRequest,
            };
            let message = format!("{} on {}: {err}", session.name, ctx.daemon.host);
            ctx.send_error(0, code, message).await;
        }
    }
}

/// Sends the followed command's input acknowledgement when it moved on enough since `sent`.
pub(crate) async fn send_ack_due(
    ctx: &Ctx,
    session: &Session,
    scope: Scope,
    sent: &mut Option<u64>,
) -> Result<(), Closed> {
    let Scope::Command(command) = scope else {
        return Ok(());
    };
    let Some(ack) = session.inputs.ack(command) else {
        return Ok(());
    };
    let due = match *sent {
        None => true,
        Some(before) => ack.offset >= before + ACK_STEP || (ack.caught_up && ack.offset > before),
    };
    if due {
        *sent = Some(ack.offset);
        ctx.send(0, ack_body(session, command, ack)).await?;
    }
    Ok(())
}

fn ack_body(session: &Session, command: u64, ack: InputAckState) -> AgentBody {
    AgentBody::InputAck(InputAck {
        session: session.id,
        command,
        offset: ack.offset,
        eof: ack.eof,
    })
}
