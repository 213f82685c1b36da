//! `StopCommand`: interrupt a running job (SIGINT, then SIGKILL after a grace period) or cancel a
//! queued one; the runspace and its state stay.

use remora_wire::{AgentBody, CommandList, ErrorCode, RequestId, StopCommand};

use super::{Ctx, Refusal};
use crate::session::StopRefusal;

pub(crate) async fn handle(ctx: &Ctx, id: RequestId, request: StopCommand) -> Result<(), Refusal> {
    let session = ctx.find_session(&request.session)?;
    let stopping = session.request_stop(request.command).map_err(|refusal| {
        let message = match refusal {
            StopRefusal::NothingRunning => format!("no job is running in session {:?}", session.name),
            StopRefusal::NoSuchCommand(job) => {
                format!(
                    "session {:?} has no job {job}; list its jobs with `remora jobs`",
                    session.name
                )
            }
            StopRefusal::AlreadyEnded(job, state) => format!("job {job} already ended ({state})"),
        };
        Refusal::new(ErrorCode::InvalidRequest, message)
    })?;
    tracing::info!(session = %session.name, job = stopping.id, by = %ctx.from, "stopping job");
    let list = CommandList {
        session: session.info(ctx.conn, &ctx.daemon.host),
        commands: vec![stopping],
    };
    ctx.send(id, AgentBody::Commands(list)).await?;
    Ok(())
}
