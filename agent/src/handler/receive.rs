//! `Receive`: deliver every unacknowledged journal entry of a session, following running
//! commands when asked.

use std::sync::Arc;

use remora_wire::{AgentBody, Receive, Receiving, RequestId};

use super::{
    refusal_for,
    stream::{self, Scope},
    Ctx, Refusal,
};

pub async fn handle(ctx: Arc<Ctx>, id: RequestId, request: Receive) -> Result<(), Refusal> {
    let session = ctx.find_session(&request.session)?;
    session
        .attach(ctx.conn, &ctx.from)
        .map_err(|r| refusal_for(&session, r))?;
    let receiving = Receiving {
        session: session.info(ctx.conn, &ctx.daemon.host),
    };
    if let Err(closed) = ctx.send(id, AgentBody::Receiving(receiving)).await {
        session.detach(ctx.conn);
        return Err(closed.into());
    }
    let end = stream::run(
        &ctx,
        id,
        &session,
        Scope::Pending {
            follow: request.follow,
        },
        request.window,
    )
    .await;
    session.detach(ctx.conn);
    ctx.send(id, AgentBody::StreamEnd(end)).await?;
    Ok(())
}
