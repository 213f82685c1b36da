//! `RemoveSessions`: stop and forget sessions chosen by name glob or instance id.

use remora_wire::{AgentBody, ErrorCode, RemoveSessions, RequestId, SessionList, SessionState};

use super::{Ctx, Refusal};

pub(crate) async fn handle(ctx: &Ctx, id: RequestId, request: RemoveSessions) -> Result<(), Refusal> {
    if request.names.is_empty() && request.ids.is_empty() {
        return Err(Refusal::new(
            ErrorCode::InvalidRequest,
            "say which sessions to remove: --name GLOB or --id UUID",
        ));
    }
    let chosen = ctx.daemon.registry.matching(&request.names, &request.ids);
    if chosen.is_empty() {
        let mut wanted: Vec<String> = request.names.iter().map(|n| format!("name {n:?}")).collect();
        wanted.extend(request.ids.iter().map(|i| format!("id {i}")));
        let message = format!(
            "no session matches {} on {}; list them with `remora ls`",
            wanted.join(" or "),
            ctx.daemon.host
        );
        return Err(Refusal::new(ErrorCode::SessionNotFound, message));
    }
    let mut sessions = Vec::with_capacity(chosen.len());
    for session in chosen {
        let mut info = session.info(ctx.conn, &ctx.daemon.host);
        if !request.dry_run {
            ctx.daemon
                .remove_session(session.id, &format!("removed by {}", ctx.from));
            // Its files are deleted by its persister; answer once they are gone.
            session.flush().await;
            info.state = SessionState::Closed;
        }
        sessions.push(info);
    }
    ctx.send(id, AgentBody::Removed(SessionList { sessions })).await?;
    Ok(())
}
