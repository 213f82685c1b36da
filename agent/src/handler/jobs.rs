//! `ListCommands`: a session's commands (jobs), oldest first.

use remora_wire::{AgentBody, CommandList, ListCommands, RequestId};

use super::{Ctx, Refusal};

pub(crate) async fn handle(ctx: &Ctx, id: RequestId, request: ListCommands) -> Result<(), Refusal> {
    let session = ctx.find_session(&request.session)?;
    let list = CommandList {
        session: session.info(ctx.conn, &ctx.daemon.host),
        commands: session.commands_labelled(request.label_glob.as_deref()),
    };
    ctx.send(id, AgentBody::Commands(list)).await?;
    Ok(())
}
