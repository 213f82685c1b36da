//! `Disconnect`: detach whoever holds a session, optionally changing its idle timeout and
//! buffering (Disconnect-PSSession). The session and its commands keep running.

use remora_wire::{AgentBody, Disconnect, RequestId};

use super::{Ctx, Refusal};
use crate::create::{check_buffering, check_idle_timeout};

pub(crate) async fn handle(ctx: &Ctx, id: RequestId, request: Disconnect) -> Result<(), Refusal> {
    let session = ctx.find_session(&request.session)?;
    let idle_timeout = request
        .idle_timeout_secs
        .map(|secs| check_idle_timeout(session.settings().max_idle_timeout_secs, secs))
        .transpose()?;
    let buffering = request.buffering.map(check_buffering).transpose()?;
    session.release(&ctx.from);
    session.update_settings(idle_timeout, buffering);
    ctx.daemon.idle_clocks_changed();
    tracing::info!(session = %session.name, by = %ctx.from, "session disconnected");
    ctx.send(id, AgentBody::Session(session.info(ctx.conn, &ctx.daemon.host)))
        .await?;
    Ok(())
}
