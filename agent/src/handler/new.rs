//! `NewSession`: create a named session and start its runspace.

use std::sync::Arc;

use remora_wire::{AgentBody, Buffering, ErrorCode, NewSession, RequestId};

use super::{Ctx, Refusal};
use crate::session::{runspace, validate_name, Session, SessionSettings};

pub async fn handle(ctx: &Ctx, id: RequestId, request: NewSession) -> Result<(), Refusal> {
    let session = create_session(ctx, &request.name, false, &request)?;
    ctx.send(id, AgentBody::Session(session.info(ctx.conn, &ctx.daemon.host)))
        .await?;
    Ok(())
}

/// Validates, registers and starts a session.
pub fn create_session(ctx: &Ctx, name: &str, temporary: bool, options: &NewSession) -> Result<Arc<Session>, Refusal> {
    validate_name(name).map_err(|message| Refusal::new(ErrorCode::InvalidName, message))?;
    let settings = settings_for(ctx, options)?;
    let session = Arc::new(Session::new(name.to_string(), temporary, settings));
    ctx.daemon.registry.insert(session.clone()).map_err(|existing| {
        let message = format!(
            "a session named {name:?} already exists on {} (instance {}); pick another name or remove it with `remora rm HOST --name {name}`",
            ctx.daemon.host, existing.id
        );
        Refusal::new(ErrorCode::SessionExists, message)
    })?;
    if let Err(err) = runspace::start(session.clone(), &ctx.daemon.defaults.shell) {
        ctx.daemon.remove_session(session.id, "its runspace could not start");
        return Err(Refusal::new(
            ErrorCode::Internal,
            format!("cannot start the session's shell: {err}"),
        ));
    }
    tracing::info!(session = %session.name, instance_id = %session.id, by = %ctx.from, "session created");
    Ok(session)
}

/// Accepts an idle timeout within 1 s ..= the configuration's maximum.
pub fn check_idle_timeout(ctx: &Ctx, secs: u64) -> Result<u64, Refusal> {
    let max = ctx.daemon.defaults.max_idle_timeout_secs;
    if secs == 0 || secs > max {
        let message = format!("idle timeout of {secs} s is outside 1 s ..= {max} s (the configuration's maximum)");
        return Err(Refusal::new(ErrorCode::InvalidRequest, message));
    }
    Ok(secs)
}

/// Accepts the buffering modes this agent implements.
pub fn check_buffering(mode: Buffering) -> Result<Buffering, Refusal> {
    if mode != Buffering::Block {
        let message = format!("buffering mode {mode:?} is not available in this agent yet; use block");
        return Err(Refusal::new(ErrorCode::InvalidRequest, message));
    }
    Ok(mode)
}

/// Resolves a request's options against the default configuration.
fn settings_for(ctx: &Ctx, options: &NewSession) -> Result<SessionSettings, Refusal> {
    let defaults = &ctx.daemon.defaults;
    let invalid = |message: String| Refusal::new(ErrorCode::InvalidRequest, message);
    if let Some(name) = options
        .configuration
        .as_deref()
        .filter(|c| *c != defaults.configuration)
    {
        return Err(invalid(format!(
            "no configuration named {name:?}; this agent has: {}",
            defaults.configuration
        )));
    }
    let idle_timeout_secs = check_idle_timeout(ctx, options.idle_timeout_secs.unwrap_or(defaults.idle_timeout_secs))?;
    let buffering = check_buffering(options.buffering.unwrap_or(defaults.buffering))?;
    Ok(SessionSettings {
        configuration: defaults.configuration.clone(),
        idle_timeout_secs,
        buffering,
        memory_limit: defaults.memory_limit,
    })
}
