//! `Ack`: the client has written output up to a seq; the journal may let it go.

use remora_wire::{Ack, SessionRef};

use super::Ctx;

/// Applies an ack; a temporary session whose output is all delivered is removed.
pub(crate) fn handle(ctx: &Ctx, ack: Ack) {
    let Some(session) = ctx.daemon.registry.find(&SessionRef::Id(ack.session)) else {
        return;
    };
    session.ack(ack.command, ack.seq);
    if session.temporary && session.drained() {
        ctx.daemon
            .remove_session(session.id, "temporary session delivered all its output");
    }
}
