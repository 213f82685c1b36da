//! `Wait`: answer when a session's chosen jobs have ended, all of them or (`any`) the first
//! (Wait-Job). With `updates` the chosen jobs' table is sent at once and again whenever one of
//! them changes state or attempt, which is what `jobs --follow` shows.
//!
//! The jobs are chosen once, when the request arrives: the ids asked for (every job of the session
//! when none), narrowed by the label glob. The loop wakes on the session's changes, never on a
//! timer; a client that wants a time limit stops waiting on its side.

use std::sync::Arc;

use remora_wire::{AgentBody, CommandInfo, CommandList, CommandState, ErrorCode, RequestId, WaitJobs, Waited};

use super::{Ctx, Refusal};
use crate::session::Session;

pub(crate) async fn handle(ctx: Arc<Ctx>, id: RequestId, request: WaitJobs) -> Result<(), Refusal> {
    let session = ctx.find_session(&request.session)?;
    let chosen = choose(&session, &request)?;
    let mut shown: Option<Vec<(u64, CommandState, u32)>> = None;
    loop {
        let mut changed = session.subscribe();
        let jobs = session.commands_among(&chosen);
        if request.updates {
            let view: Vec<_> = jobs.iter().map(|c| (c.id, c.state, c.attempts)).collect();
            if shown.as_ref() != Some(&view) {
                let list = CommandList {
                    session: session.info(ctx.conn, &ctx.daemon.host),
                    commands: jobs.clone(),
                };
                ctx.send(id, AgentBody::Commands(list)).await?;
                shown = Some(view);
            }
        }
        if let Some(last) = decided(&jobs, request.any) {
            let waited = Waited {
                session: session.info(ctx.conn, &ctx.daemon.host),
                commands: jobs,
                last,
            };
            ctx.send(id, AgentBody::Waited(waited)).await?;
            return Ok(());
        }
        tokio::select! {
            _ = changed.changed() => {}
            // Removal stops every job, so the next pass decides.
            _ = session.closed.cancelled() => {}
            _ = ctx.closed.cancelled() => return Ok(()),
        }
    }
}

/// The ids to wait for.
fn choose(session: &Session, request: &WaitJobs) -> Result<Vec<u64>, Refusal> {
    let labelled = session.commands_labelled(request.label_glob.as_deref());
    if request.commands.is_empty() {
        return Ok(labelled.iter().map(|c| c.id).collect());
    }
    let known = session.commands_among(&request.commands);
    if let Some(missing) = request.commands.iter().find(|id| !known.iter().any(|c| c.id == **id)) {
        let message = format!(
            "session {:?} has no job {missing}; list its jobs with `remora jobs`",
            session.name
        );
        return Err(Refusal::new(ErrorCode::InvalidRequest, message));
    }
    Ok(request
        .commands
        .iter()
        .copied()
        .filter(|id| labelled.iter().any(|c| c.id == *id))
        .collect())
}

/// `Some(last)` once the wait is over: the job whose end decides it (the last to end, or with
/// `any` the first), `None` inside when there is nothing to wait for.
fn decided(jobs: &[CommandInfo], any: bool) -> Option<Option<u64>> {
    let ended = jobs.iter().filter(|c| c.ended_at.is_some());
    let order = |c: &&CommandInfo| (c.ended_at, c.id);
    let all_ended = jobs.iter().all(|c| c.ended_at.is_some());
    match (any, jobs.is_empty()) {
        (_, true) => Some(None),
        (true, false) => ended.min_by_key(order).map(|c| Some(c.id)),
        (false, false) if all_ended => Some(ended.max_by_key(order).map(|c| c.id)),
        (false, false) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: u64, ended_at: Option<u64>) -> CommandInfo {
        CommandInfo {
            id,
            command: String::new(),
            state: if ended_at.is_some() {
                CommandState::Completed
            } else {
                CommandState::Running
            },
            exit_code: None,
            queued_at: 0,
            started_at: None,
            ended_at,
            dropped_bytes: 0,
            options: Default::default(),
            attempts: 0,
            reason: None,
        }
    }

    #[test]
    fn all_waits_for_every_job_and_reports_the_last_to_end() {
        assert_eq!(decided(&[job(1, Some(5)), job(2, None)], false), None);
        assert_eq!(decided(&[job(1, Some(9)), job(2, Some(5))], false), Some(Some(1)));
        assert_eq!(decided(&[], false), Some(None), "nothing to wait for");
    }

    #[test]
    fn any_reports_the_first_to_end() {
        assert_eq!(decided(&[job(1, None), job(2, None)], true), None);
        assert_eq!(
            decided(&[job(1, Some(9)), job(2, Some(5)), job(3, None)], true),
            Some(Some(2))
        );
    }
}
