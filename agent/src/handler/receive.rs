//! `Receive`: deliver every unacknowledged journal entry of a session (or of one job),
//! following running commands when asked. `connect` is a receive that may take the session over
//! (`force`) and change its idle timeout.

use std::sync::Arc;

use remora_wire::{AgentBody, ErrorCode, Receive, Receiving, RequestId};

use super::{refusal_for, stream, Ctx, Refusal};
use crate::create::check_idle_timeout;
use crate::session::Scope;

pub(crate) async fn handle(ctx: Arc<Ctx>, id: RequestId, request: Receive) -> Result<(), Refusal> {
    let session = ctx.find_session(&request.session)?;
    let scope = match request.command {
        Some(command) if session.command_info(command).is_none() => {
            let message = format!(
                "session {:?} has no job {command}; list its jobs with `remora jobs`",
                session.name
            );
            return Err(Refusal::new(ErrorCode::InvalidRequest, message));
        }
        Some(command) => Scope::Command(command),
        None => Scope::Pending { follow: request.follow },
    };
    let idle_timeout = request
        .idle_timeout_secs
        .map(|secs| check_idle_timeout(session.settings().max_idle_timeout_secs, secs))
        .transpose()?;
    let attachment = session
        .attach(ctx.conn, &ctx.from, ctx.client_id, request.force)
        .map_err(|r| refusal_for(&session, r))?;
    session.update_settings(idle_timeout, None);
    let receiving = Receiving {
        session: session.info(ctx.conn, &ctx.daemon.host),
    };
    ctx.send(id, AgentBody::Receiving(receiving)).await?;
    let window = (!request.keep).then_some(request.window);
    let end = stream::run(&ctx, id, &session, scope, window, &attachment).await;
    drop(attachment);
    ctx.daemon.idle_clocks_changed();
    if let Some(end) = end {
        ctx.send(id, AgentBody::StreamEnd(end)).await?;
    }
    Ok(())
}
