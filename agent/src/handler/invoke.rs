//! `Invoke`: queue a command in a session and, unless disconnected, stream it to its end.

use std::sync::Arc;

use remora_wire::{AgentBody, ErrorCode, InputMode, Invoke, Invoked, NewSession, RequestId, SessionRef};

use super::{refusal_for, stream, Ctx, Refusal};
use crate::{
    create::{check_idle_timeout, CreateError},
    session::{Scope, Session},
};

/// Longest command text accepted.
const MAX_COMMAND_LEN: usize = 1024 * 1024;

pub(crate) async fn handle(ctx: Arc<Ctx>, id: RequestId, request: Invoke) -> Result<(), Refusal> {
    validate_command(&request.command)?;
    validate_input(&request)?;
    let session = resolve_session(&ctx, &request).await?;
    let max_idle = session.settings().max_idle_timeout_secs;
    let idle_timeout = request
        .idle_timeout_secs
        .map(|secs| check_idle_timeout(max_idle, secs))
        .transpose()?;
    session.update_settings(idle_timeout, None);
    let attachment = match request.follow {
        true => Some(
            session
                .attach(ctx.conn, &ctx.from, ctx.client_id, false)
                .map_err(|r| refusal_for(&session, r))?,
        ),
        false => None,
    };
    let command = session
        .enqueue_job(request.command, request.job, request.stdin)
        .map_err(|refusal| refusal_for(&session, refusal))?;
    let command_id = command.id;
    let invoked = Invoked {
        session: session.info(ctx.conn, &ctx.daemon.host),
        command,
    };
    ctx.send(id, AgentBody::Invoked(invoked)).await?;
    if let Some(attachment) = attachment {
        let end = stream::run(
            &ctx,
            id,
            &session,
            Scope::Command(command_id),
            Some(request.window),
            &attachment,
        )
        .await;
        drop(attachment);
        ctx.daemon.idle_clocks_changed();
        if let Some(end) = end {
            ctx.send(id, AgentBody::StreamEnd(end)).await?;
        }
    }
    Ok(())
}

fn validate_command(command: &str) -> Result<(), Refusal> {
    let invalid = |message: String| Refusal::new(ErrorCode::InvalidRequest, message);
    if command.trim().is_empty() {
        return Err(invalid("the command is empty; give it after `--`".into()));
    }
    if command.len() > MAX_COMMAND_LEN {
        return Err(invalid(format!(
            "the command is {} bytes; the limit is {MAX_COMMAND_LEN}",
            command.len()
        )));
    }
    if command.contains('\0') {
        return Err(invalid(
            "the command contains a NUL byte, which no shell can run".into(),
        ));
    }
    Ok(())
}

/// Streamed input needs a client following the command; stored input one that is not.
fn validate_input(request: &Invoke) -> Result<(), Refusal> {
    let message = match (request.stdin, request.follow) {
        (InputMode::Stream, false) => {
            "streamed stdin needs an attached invoke; a disconnected one stores its stdin (`stored`)"
        }
        (InputMode::Stored, true) => "stored stdin is for disconnected invokes; an attached one streams it (`stream`)",
        (InputMode::Unknown, _) => "unknown stdin mode; upgrade remora-agent",
        _ => return Ok(()),
    };
    Err(Refusal::new(ErrorCode::InvalidRequest, message))
}

/// The session to run in: named (created when asked), or a new one when unnamed. `configuration`
/// and `buffering` shape a session this creates; an existing session they do not describe is
/// refused rather than used as if they had been honoured.
async fn resolve_session(ctx: &Ctx, request: &Invoke) -> Result<Arc<Session>, Refusal> {
    let options = NewSession {
        configuration: request.configuration.clone(),
        buffering: request.buffering,
        ..NewSession::default()
    };
    let Some(reference) = &request.session else {
        let name = generated_name(request.follow);
        return Ok(ctx
            .daemon
            .create_session(&name, request.follow, &options, &ctx.from)
            .await?);
    };
    let session = match ctx.daemon.registry.find(reference) {
        Some(session) => session,
        None => {
            if let (SessionRef::Name(name), true) = (reference, request.create) {
                match ctx.daemon.create_session(name, false, &options, &ctx.from).await {
                    Err(CreateError::Exists { .. }) => {}
                    created => return Ok(created?),
                }
            }
            ctx.find_session(reference)?
        }
    };
    let settings = session.settings();
    let other_configuration = request
        .configuration
        .as_ref()
        .is_some_and(|c| *c != settings.configuration);
    let other_buffering = request.buffering.is_some_and(|b| b != settings.buffering);
    if other_configuration || other_buffering {
        let message = format!(
            "session {} already exists with configuration {} and buffering {}; --config and --buffering \
             apply only when invoke creates the session: leave them out, or pick another --name",
            session.name,
            settings.configuration,
            settings.buffering.as_str()
        );
        return Err(Refusal::new(ErrorCode::InvalidRequest, message));
    }
    Ok(session)
}

/// `tmp-…` for temporary sessions of attached invokes, `job-…` for disconnected ones.
fn generated_name(temporary: bool) -> String {
    let prefix = if temporary { "tmp" } else { "job" };
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..8])
}
