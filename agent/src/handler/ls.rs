//! `ListSessions`: every session of this user, as the asking client sees it.

use remora_wire::{AgentBody, ListSessions, RequestId, SessionList};

use super::{Ctx, Refusal};

pub(crate) async fn handle(ctx: &Ctx, id: RequestId, request: ListSessions) -> Result<(), Refusal> {
    let host = &ctx.daemon.host;
    // Expire at the deadline, whenever the reaper last woke: `ls` never shows an expired session.
    ctx.daemon.remove_expired();
    let sessions = ctx.daemon.registry.list(request.name_glob.as_deref());
    let sessions = sessions.iter().map(|s| s.info(ctx.conn, host)).collect();
    ctx.send(id, AgentBody::Sessions(SessionList { sessions })).await?;
    Ok(())
}
