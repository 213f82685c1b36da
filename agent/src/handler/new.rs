//! `NewSession`: create a named session and start its runspace.

use std::sync::Arc;

use remora_wire::{AgentBody, Buffering, ErrorCode, NewSession, RequestId};

use super::{Ctx, Refusal};
use crate::{
    config::Configuration,
    session::{runspace::RunspaceSpec, validate_name, Session, SessionSettings},
};

pub async fn handle(ctx: &Ctx, id: RequestId, request: NewSession) -> Result<(), Refusal> {
    let session = create_session(ctx, &request.name, false, &request)?;
    ctx.send(id, AgentBody::Session(session.info(ctx.conn, &ctx.daemon.host)))
        .await?;
    Ok(())
}

/// Validates, registers and starts a session.
pub fn create_session(ctx: &Ctx, name: &str, temporary: bool, options: &NewSession) -> Result<Arc<Session>, Refusal> {
    validate_name(name).map_err(|err| Refusal::new(ErrorCode::InvalidName, err.to_string()))?;
    let config = ctx.daemon.config.current();
    let configuration = config
        .get(options.configuration.as_deref())
        .map_err(|err| invalid(err.to_string()))?;
    check_session_limit(ctx, configuration)?;
    let settings = SessionSettings {
        store_root: ctx.daemon.store_root.clone(),
        ..settings_for(configuration, options, &ctx.daemon.spill_dir)?
    };
    let session = Arc::new(Session::new(name.to_string(), temporary, settings));
    ctx.daemon.adopt(session.clone()).map_err(|existing| {
        let message = format!(
            "a session named {name:?} already exists on {} (instance {}); pick another name or remove it with `remora rm HOST --name {name}`",
            ctx.daemon.host, existing.id
        );
        Refusal::new(ErrorCode::SessionExists, message)
    })?;
    let spec = RunspaceSpec {
        shell: configuration.shell.clone(),
        env: configuration.env.clone(),
        cwd: configuration.cwd.clone(),
    };
    session.save_description();
    if let Err(err) = ctx.daemon.start_runspace(&session, &spec) {
        ctx.daemon.remove_session(session.id, "its runspace could not start");
        return Err(Refusal::new(
            ErrorCode::Internal,
            format!("cannot start the session's shell: {err}"),
        ));
    }
    tracing::info!(session = %session.name, instance_id = %session.id, by = %ctx.from, "session created");
    Ok(session)
}

fn invalid(message: String) -> Refusal {
    Refusal::new(ErrorCode::InvalidRequest, message)
}

/// Refuses a new session past the configuration's `max_sessions`.
fn check_session_limit(ctx: &Ctx, configuration: &Configuration) -> Result<(), Refusal> {
    let sessions = ctx.daemon.registry.list(None);
    let in_use = sessions
        .iter()
        .filter(|s| s.settings().configuration == configuration.name)
        .count();
    if in_use >= configuration.max_sessions {
        let message = format!(
            "configuration {:?} allows {} sessions and has {in_use}; remove one with `remora rm` first",
            configuration.name, configuration.max_sessions
        );
        return Err(Refusal::new(ErrorCode::LimitReached, message));
    }
    Ok(())
}

/// Accepts an idle timeout within 1 s ..= `max` (the configuration's maximum).
pub fn check_idle_timeout(max: u64, secs: u64) -> Result<u64, Refusal> {
    if secs == 0 || secs > max {
        return Err(invalid(format!(
            "idle timeout of {secs} s is outside 1 s ..= {max} s (the configuration's maximum)"
        )));
    }
    Ok(secs)
}

/// Accepts every buffering mode a client may name (newer peers may send ones we do not know).
pub fn check_buffering(mode: Buffering) -> Result<Buffering, Refusal> {
    match mode {
        Buffering::Unknown => Err(invalid("unknown buffering mode; use block, drop or spill".into())),
        known => Ok(known),
    }
}

/// A request's options resolved against its configuration.
fn settings_for(
    configuration: &Configuration,
    options: &NewSession,
    spill_dir: &std::path::Path,
) -> Result<SessionSettings, Refusal> {
    let idle = options.idle_timeout_secs.unwrap_or(configuration.idle_timeout_secs);
    Ok(SessionSettings {
        configuration: configuration.name.clone(),
        idle_timeout_secs: check_idle_timeout(configuration.max_idle_timeout_secs, idle)?,
        max_idle_timeout_secs: configuration.max_idle_timeout_secs,
        buffering: check_buffering(options.buffering.unwrap_or(configuration.buffering))?,
        memory_limit: configuration.buffer_limit,
        spill_quota: configuration.spill_quota,
        max_queued: configuration.max_queued,
        spill_dir: spill_dir.to_path_buf(),
        store_root: None,
        on_job_end: configuration.on_job_end.clone(),
    })
}
