//! `OpenTerminal`: open or attach to a session's terminal and stream it: a redraw (or, for a
//! client resuming within the ring, nothing), then live output, until the client goes, loses
//! the session to `--force`, or the shell ends.

use std::sync::Arc;

use remora_wire::{
    AgentBody, AgentFrame, ErrorCode, NewSession, OpenTerminal, RequestId, SessionRef, StreamEnd, TermEnded,
    TermOutput, TerminalOpened,
};

use super::{refusal_for, Ctx, Refusal};
use crate::create::{check_idle_timeout, CreateError};
use crate::session::{
    terminal::{self, spec::Wanted, Next, TermSpec, Terminal},
    Session, SessionRefusal,
};

pub(crate) async fn handle(ctx: Arc<Ctx>, id: RequestId, request: OpenTerminal) -> Result<(), Refusal> {
    terminal::check_size(request.rows, request.cols).map_err(|m| Refusal::new(ErrorCode::InvalidRequest, m))?;
    let (session, created) = resolve_session(&ctx, &request).await?;
    if let Some(secs) = request.idle_timeout_secs {
        let secs = check_idle_timeout(session.settings().max_idle_timeout_secs, secs)?;
        session.update_settings(Some(secs), None);
    }
    let attachment = match request.watch {
        true => None,
        false => Some(
            session
                .attach(ctx.conn, &ctx.from, ctx.client_id, request.force)
                .map_err(|r| busy_terminal(&session, r))?,
        ),
    };
    let (terminal, started) = terminal_for(&ctx, &session, &request).await?;
    if !request.watch {
        terminal
            .resize(request.rows, request.cols)
            .map_err(|e| Refusal::new(ErrorCode::Internal, format!("cannot size the terminal: {e}")))?;
    }
    let resume = request
        .resume
        .filter(|r| r.generation == terminal.generation && terminal.can_resume_after(r.seq));
    let viewer = terminal.join(ctx.conn, !request.watch, resume.map_or(0, |r| r.seq));
    let opened = TerminalOpened {
        session: session.info(ctx.conn, &ctx.daemon.host),
        generation: terminal.generation,
        started,
        created,
        input_seq: terminal.input_seq().await,
    };
    tracing::info!(session = %session.name, conn = ctx.conn, watch = request.watch, started, "terminal attached");
    ctx.send(id, AgentBody::TerminalOpened(opened)).await?;
    let cursor = match resume {
        Some(r) => r.seq + 1,
        None => {
            let redraw = terminal.redraw(session.id).await.map_err(model_failed)?;
            let next = redraw.seq + 1;
            ctx.send(id, AgentBody::TermRedraw(redraw)).await?;
            next
        }
    };
    let lost = attachment.as_ref().map(|a| a.lost().clone());
    let end = stream(&ctx, id, &session, &terminal, cursor, request.window, lost).await?;
    drop(viewer);
    drop(attachment);
    ctx.daemon.idle_clocks_changed();
    if let Some(end) = end {
        ctx.send(id, AgentBody::StreamEnd(end)).await?;
    }
    Ok(())
}

/// Sends output from `cursor` on; `None` when the connection closed (nothing more to say). An
/// interactive stream lends the pump its place while it waits, so an echo goes out from there.
async fn stream(
    ctx: &Ctx,
    id: RequestId,
    session: &Session,
    terminal: &Arc<Terminal>,
    mut cursor: u64,
    window: u64,
    lost: Option<tokio_util::sync::CancellationToken>,
) -> Result<Option<StreamEnd>, Refusal> {
    let window = window.clamp(16 * 1024, terminal::RING_BYTES as u64 / 2);
    let interactive = lost.is_some();
    let lost = lost.unwrap_or_default();
    let mut changes = terminal.subscribe();
    loop {
        changes.borrow_and_update();
        match terminal.next(ctx.conn, cursor, window) {
            Next::Output(seq, data) => {
                cursor = seq + 1;
                let output = TermOutput {
                    session: session.id,
                    seq,
                    data: data.to_vec(),
                };
                ctx.send(id, AgentBody::TermOutput(output)).await?;
                continue;
            }
            Next::Redraw => {
                let redraw = terminal.redraw(session.id).await.map_err(model_failed)?;
                cursor = redraw.seq + 1;
                ctx.send(id, AgentBody::TermRedraw(redraw)).await?;
                continue;
            }
            Next::Ended(exit_code) => {
                let ended = TermEnded {
                    session: session.id,
                    exit_code,
                };
                ctx.send(id, AgentBody::TermEnded(ended)).await?;
                return Ok(Some(StreamEnd {
                    last_exit_code: exit_code,
                    ..StreamEnd::default()
                }));
            }
            Next::Wait => {}
        }
        let lent = interactive.then(|| Lent::new(ctx, id, session.id, terminal, cursor, window));
        tokio::select! {
            _ = changes.changed() => {}
            _ = lost.cancelled() => {
                return Ok(Some(StreamEnd { released_by: session.released_by(), ..StreamEnd::default() }));
            }
            _ = ctx.closed.cancelled() => return Ok(None),
        }
        if let Some(reached) = lent.and_then(Lent::reclaim) {
            cursor = reached;
        }
    }
}

/// A stream's place lent to the pump ([`terminal::Express`]), taken back when dropped.
struct Lent<'a> {
    terminal: &'a Terminal,
    conn: crate::session::ConnId,
}

impl<'a> Lent<'a> {
    fn new(ctx: &Ctx, id: RequestId, session: uuid::Uuid, terminal: &'a Terminal, cursor: u64, window: u64) -> Self {
        let tx = ctx.tx.clone();
        let send: terminal::SendNow = Box::new(move |seq, data| {
            let body = AgentBody::TermOutput(TermOutput {
                session,
                seq,
                data: data.to_vec(),
            });
            tx.try_send(AgentFrame { id, body }.into()).is_ok()
        });
        terminal.lend_express(terminal::Express::new(ctx.conn, cursor, window, send));
        Self {
            terminal,
            conn: ctx.conn,
        }
    }

    /// The seq the stream goes on from, as far as the pump sent.
    fn reclaim(self) -> Option<u64> {
        self.terminal.reclaim_express(self.conn)
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        self.terminal.reclaim_express(self.conn);
    }
}

/// The named session (created when missing and asked to), or a new `shell-…` session.
async fn resolve_session(ctx: &Ctx, request: &OpenTerminal) -> Result<(Arc<Session>, bool), Refusal> {
    let options = NewSession {
        configuration: request.configuration.clone(),
        buffering: request.buffering,
        ..NewSession::default()
    };
    let name = match &request.session {
        None => format!("shell-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
        Some(reference) => match ctx.daemon.registry.find(reference) {
            Some(session) => return Ok((session, false)),
            None => match reference {
                SessionRef::Name(name) if request.create && !request.watch => name.clone(),
                _ => return Err(ctx.find_session(reference).err().unwrap_or_else(busy_retry)),
            },
        },
    };
    match ctx.daemon.create_session(&name, false, &options, &ctx.from).await {
        Ok(session) => Ok((session, true)),
        // Created by someone else meanwhile: use it.
        Err(CreateError::Exists { .. }) => Ok((ctx.find_session(&SessionRef::Name(name))?, false)),
        Err(err) => Err(err.into()),
    }
}

/// A refusal with the shell's way out: `--force` or `--watch`.
fn busy_terminal(session: &Session, refusal: SessionRefusal) -> Refusal {
    match refusal {
        SessionRefusal::Busy { from, since } => Refusal::new(
            ErrorCode::SessionBusy,
            format!(
                "session {:?} is attached to {from} since {}; take it over with `remora shell HOST --name {0} --force` (that client is told), or watch with --watch",
                session.name,
                crate::clock::format_millis(since)
            ),
        ),
        other => refusal_for(session, other),
    }
}

fn busy_retry() -> Refusal {
    Refusal::new(
        ErrorCode::Internal,
        "the session appeared while looking it up; try again",
    )
}

/// The session's live terminal, or a new one (not for watchers).
async fn terminal_for(
    ctx: &Ctx,
    session: &Arc<Session>,
    request: &OpenTerminal,
) -> Result<(Arc<Terminal>, bool), Refusal> {
    if let Some(terminal) = session.terminal.live() {
        return Ok((terminal, false));
    }
    if request.watch {
        let message = format!(
            "session {:?} has no running terminal to watch; open one with `remora shell HOST --name {0}`",
            session.name
        );
        return Err(Refusal::new(ErrorCode::InvalidRequest, message));
    }
    let config = ctx.daemon.config.current();
    let configuration = config
        .get(Some(&session.settings().configuration))
        .or_else(|_| config.get(None))
        .map_err(|e| Refusal::new(ErrorCode::Internal, e.to_string()))?;
    let wanted = Wanted {
        term: &request.term,
        rows: request.rows,
        cols: request.cols,
        session: &session.name,
        config_env: &configuration.env,
        config_cwd: configuration.cwd.clone(),
    };
    let spec = TermSpec::for_session(session, &wanted).map_err(|e| Refusal::new(ErrorCode::Internal, e.to_string()))?;
    let program = spec.program.clone();
    match ctx.daemon.start_terminal(session, spec, configuration.scrollback).await {
        Ok(Some(terminal)) => {
            tracing::info!(session = %session.name, pid = terminal.pid, "terminal started");
            Ok((terminal, true))
        }
        Ok(None) => session
            .terminal
            .get()
            .map(|t| (t, false))
            .ok_or_else(|| Refusal::new(ErrorCode::Internal, "the terminal ended while starting")),
        Err(err) => Err(Refusal::new(
            ErrorCode::Internal,
            format!("cannot start a terminal with {}: {err}", program.display()),
        )),
    }
}

fn model_failed(e: std::io::Error) -> Refusal {
    Refusal::new(ErrorCode::Internal, format!("cannot redraw the terminal: {e}"))
}
