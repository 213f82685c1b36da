//! `NewSession`: create a named session and start its runspace (`Daemon::create_session`).

use remora_wire::{AgentBody, NewSession, RequestId};

use super::{Ctx, Refusal};

pub(crate) async fn handle(ctx: &Ctx, id: RequestId, request: NewSession) -> Result<(), Refusal> {
    let session = ctx
        .daemon
        .create_session(&request.name, false, &request, &ctx.from)
        .await?;
    ctx.send(id, AgentBody::Session(session.info(ctx.conn, &ctx.daemon.host)))
        .await?;
    Ok(())
}
