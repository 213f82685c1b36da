//! Jobs as a workflow: dependencies, retries and labels, as part of the session's state machine.
//!
//! - Dependencies name jobs of the same session that exist when the job is submitted, so a job
//!   can only wait for jobs submitted before it. The only cycle that can be asked for is a job
//!   naming itself (the id it is about to get); it is refused, like an unknown id.
//! - The runspace takes the oldest queued job whose dependencies have all ended. As dependencies
//!   point backwards and the runspace runs one job at a time, that is always the oldest queued
//!   job: the queue stays first-in first-out, and a dependency decides whether a job runs or is
//!   Skipped, never that a later job overtakes it.
//! - A job whose `--after-ok` dependency did not succeed ends Skipped, without running, with the
//!   reason in its `reason` and as a line on its stderr.
//! - Retries rerun a job that exited non-zero in the same runspace. Between attempts the job stays
//!   Running and holds the runspace (so nothing runs in between); a marker line on its stderr
//!   separates the attempts' output. Its final state and exit code are the last attempt's.
//!
//! Like `state.rs`: no locks, no I/O; changes return their [`Effects`].

use bytes::Bytes;
use remora_wire::{CommandState, DependencyKind, JobOptions, Stream, UnixMillis};

use super::{
    command::CommandRecord,
    journal::Data,
    state::{Effects, SessionState},
    SessionRefusal,
};

/// Longest label accepted.
const MAX_LABEL_LEN: usize = 256;
/// Most dependencies one job may name.
const MAX_DEPENDENCIES: usize = 64;
/// Most retries one job may ask for.
pub const MAX_RETRIES: u32 = 100;
/// Longest pause between attempts (a day).
const MAX_RETRY_DELAY_MS: u64 = 24 * 3600 * 1000;

/// What the runspace should do next.
#[derive(Debug, Default)]
pub struct NextJob {
    /// Run this job (id and text): its first attempt or a retry.
    pub start: Option<(u64, String)>,
    /// Nothing to run before this time (a retry's delay); ask again then.
    pub wake_at: Option<UnixMillis>,
    /// Jobs were skipped or started: waiters should hear of it.
    pub changed: bool,
    pub effects: Effects,
}

/// Whether a job ended successfully: Completed with exit code 0.
pub fn succeeded(record: &CommandRecord) -> bool {
    record.state == CommandState::Completed && record.exit_code == Some(0)
}

/// Whether a job failed: Completed with a non-zero exit code, or Failed.
pub fn failed(record: &CommandRecord) -> bool {
    match record.state {
        CommandState::Completed => record.exit_code != Some(0),
        CommandState::Failed => true,
        _ => false,
    }
}

impl SessionState {
    /// Queues a job with its workflow options, refusing unknown or circular dependencies and
    /// out-of-range values before anything changes.
    pub(super) fn enqueue_job(
        &mut self,
        text: String,
        options: JobOptions,
    ) -> Result<remora_wire::CommandInfo, SessionRefusal> {
        self.check_options(&options).map_err(SessionRefusal::Workflow)?;
        let info = self.enqueue(text)?;
        let record = self.commands.get_mut(&info.id).expect("just queued");
        record.workflow.options = options;
        Ok(record.info())
    }

    fn check_options(&self, options: &JobOptions) -> Result<(), String> {
        if let Some(label) = &options.label {
            if label.len() > MAX_LABEL_LEN || label.chars().any(char::is_control) {
                return Err(format!(
                    "a label is at most {MAX_LABEL_LEN} bytes without control characters"
                ));
            }
        }
        if options.after.len() > MAX_DEPENDENCIES {
            return Err(format!("a job may wait for at most {MAX_DEPENDENCIES} jobs"));
        }
        if options.retries > MAX_RETRIES {
            return Err(format!("--retry is at most {MAX_RETRIES}"));
        }
        if options.retry_delay_ms > MAX_RETRY_DELAY_MS {
            return Err("--retry-delay is at most 1d".into());
        }
        let own_id = self.next_command;
        for dependency in &options.after {
            if dependency.kind == DependencyKind::Unknown {
                return Err(format!("unknown kind of dependency on job {}", dependency.job));
            }
            if dependency.job == own_id {
                return Err(format!(
                    "job {own_id} cannot wait for itself: that dependency would form a cycle"
                ));
            }
            if self.would_cycle(dependency.job, own_id) {
                return Err(format!(
                    "waiting for job {} would form a cycle through job {own_id}",
                    dependency.job
                ));
            }
            if !self.commands.contains_key(&dependency.job) {
                return Err(format!(
                    "session has no job {}; a job can wait only for jobs of its own session that already exist (list them with `remora jobs`)",
                    dependency.job
                ));
            }
        }
        Ok(())
    }

    /// Whether `from` (transitively) depends on `target`.
    fn would_cycle(&self, from: u64, target: u64) -> bool {
        let mut stack = vec![from];
        let mut seen = std::collections::BTreeSet::new();
        while let Some(job) = stack.pop() {
            if job == target {
                return true;
            }
            if !seen.insert(job) {
                continue;
            }
            if let Some(record) = self.commands.get(&job) {
                stack.extend(record.workflow.options.after.iter().map(|d| d.job));
            }
        }
        false
    }

    /// Picks what the runspace runs next: a retry whose delay is over, else the oldest queued job
    /// whose dependencies have ended, skipping (ending Skipped) those whose `--after-ok`
    /// dependency did not succeed. Jobs run in order: while the job to start is not `input_ready`
    /// (its stored stdin is still arriving), nothing starts.
    pub(super) fn next_job(&mut self, now: UnixMillis, input_ready: impl Fn(u64) -> bool) -> NextJob {
        let mut next = NextJob::default();
        if let Some(record) = self.commands.values_mut().find(|c| c.workflow.retry_at.is_some()) {
            let at = record.workflow.retry_at.expect("found by it");
            if at > now {
                next.wake_at = Some(at);
                return next;
            }
            record.workflow.retry_at = None;
            record.workflow.attempts += 1;
            next.start = Some((record.id, record.text.clone()));
            next.changed = true;
            return next;
        }
        let queued: Vec<u64> = self
            .commands
            .values()
            .filter(|c| c.state == CommandState::Queued)
            .map(|c| c.id)
            .collect();
        for id in queued {
            match self.readiness(id) {
                Readiness::Waiting => continue,
                Readiness::Skip(reason) => {
                    next.effects.0.extend(self.skip(id, reason).0);
                    next.changed = true;
                }
                Readiness::Ready if !input_ready(id) => return next,
                Readiness::Ready => {
                    let record = self.commands.get_mut(&id).expect("listed");
                    record.state = CommandState::Running;
                    record.started_at = Some(now);
                    record.workflow.attempts = 1;
                    next.start = Some((id, record.text.clone()));
                    next.changed = true;
                    return next;
                }
            }
        }
        next
    }

    fn readiness(&self, id: u64) -> Readiness {
        let record = &self.commands[&id];
        for dependency in &record.workflow.options.after {
            let Some(dep) = self.commands.get(&dependency.job) else {
                continue;
            };
            if !dep.is_ended() {
                return Readiness::Waiting;
            }
            if dependency.kind == DependencyKind::Succeeded && !succeeded(dep) {
                let how = match dep.exit_code {
                    Some(code) => format!("{} with exit code {code}", dep.state),
                    None => dep.state.to_string(),
                };
                return Readiness::Skip(format!("job {} did not succeed ({how})", dep.id));
            }
        }
        Readiness::Ready
    }

    /// Ends a queued job Skipped: the reason goes to its stderr and its `reason`.
    fn skip(&mut self, id: u64, reason: String) -> Effects {
        let line = Bytes::from(format!("remora: job {id} skipped: {reason}\n"));
        let mut effects = self.push_output(id, Stream::Stderr, Data::Memory(line));
        if let Some(record) = self.commands.get_mut(&id) {
            record.workflow.reason = Some(reason);
        }
        effects.0.extend(self.finish(id, CommandState::Skipped, None).0);
        effects
    }

    /// An attempt of a running job exited with `code`. When the job has retries left, a marker
    /// line goes to its stderr, the job stays Running until `retry_at`, and this returns true;
    /// otherwise the caller ends the job with this attempt's result.
    pub(super) fn retry_after_failure(&mut self, id: u64, code: i32, now: UnixMillis) -> bool {
        let Some(record) = self.commands.get(&id) else {
            return false;
        };
        let options = &record.workflow.options;
        let max_attempts = options.retries.saturating_add(1);
        let attempt = record.workflow.attempts.max(1);
        if code == 0 || record.state != CommandState::Running || attempt >= max_attempts {
            return false;
        }
        let delay = options.retry_delay_ms;
        let line = format!(
            "remora: attempt {attempt} of {max_attempts} exited with status {code}; attempt {} starts in {}\n",
            attempt + 1,
            humantime::format_duration(std::time::Duration::from_millis(delay))
        );
        let _ = self.push_output(id, Stream::Stderr, Data::Memory(Bytes::from(line)));
        let record = self.commands.get_mut(&id).expect("looked up");
        record.exit_code = Some(code);
        record.workflow.retry_at = Some(now + delay);
        true
    }

    /// Jobs counted as failed (see [`failed`]).
    pub(super) fn failed_commands(&self) -> u32 {
        self.commands.values().filter(|c| failed(c)).count() as u32
    }
}

enum Readiness {
    Ready,
    Waiting,
    Skip(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::test_settings;
    use remora_wire::Dependency;

    fn state() -> SessionState {
        SessionState::new(test_settings(), 0)
    }

    fn after(job: u64, ok: bool) -> Dependency {
        Dependency {
            job,
            kind: if ok {
                DependencyKind::Succeeded
            } else {
                DependencyKind::Ended
            },
        }
    }

    fn job(state: &mut SessionState, text: &str, after: Vec<Dependency>) -> Result<u64, SessionRefusal> {
        let options = JobOptions {
            after,
            ..JobOptions::default()
        };
        state.enqueue_job(text.into(), options).map(|info| info.id)
    }

    fn run_to_end(state: &mut SessionState, code: i32) -> u64 {
        let started = state.next_job(0, |_| true).start.expect("a job to run").0;
        let _ = state.finish(started, CommandState::Completed, Some(code));
        started
    }

    fn stderr_text(state: &SessionState, id: u64) -> String {
        state.commands[&id]
            .journal
            .entries_after(0, u64::MAX)
            .into_iter()
            .filter_map(|e| match e.kind {
                crate::session::EntryKind::Output {
                    stream: Stream::Stderr,
                    data: Data::Memory(bytes),
                } => Some(String::from_utf8_lossy(&bytes).into_owned()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn unknown_ids_and_cycles_are_refused_at_submit_and_change_nothing() {
        let mut state = state();
        job(&mut state, "a", vec![]).unwrap();
        let unknown = job(&mut state, "b", vec![after(7, true)]).unwrap_err();
        assert!(
            matches!(&unknown, SessionRefusal::Workflow(m) if m.contains("no job 7")),
            "{unknown:?}"
        );
        let cycle = job(&mut state, "b", vec![after(2, false)]).unwrap_err();
        assert!(
            matches!(&cycle, SessionRefusal::Workflow(m) if m.contains("cycle")),
            "{cycle:?}"
        );
        assert_eq!(state.commands.len(), 1, "refused jobs are not queued");
        assert_eq!(job(&mut state, "b", vec![after(1, true)]).unwrap(), 2);
    }

    #[test]
    fn after_ok_skips_when_the_dependency_failed_and_after_runs_anyway() {
        let mut state = state();
        job(&mut state, "fails", vec![]).unwrap();
        job(&mut state, "needs success", vec![after(1, true)]).unwrap();
        job(&mut state, "needs an end", vec![after(1, false)]).unwrap();
        job(&mut state, "needs the skipped one", vec![after(2, true)]).unwrap();
        assert_eq!(run_to_end(&mut state, 3), 1);
        let next = state.next_job(1, |_| true);
        assert_eq!(next.start, Some((3, "needs an end".into())), "job 2 skipped, 3 runs");
        assert_eq!(state.commands[&2].state, CommandState::Skipped);
        let reason = state.commands[&2].workflow.reason.clone().unwrap();
        assert!(reason.contains("job 1 did not succeed"), "{reason}");
        assert!(
            stderr_text(&state, 2).contains("skipped: job 1"),
            "the reason is in the journal"
        );
        assert_eq!(next.effects.0.len(), 1, "the skipped job is saved");
        let _ = state.finish(3, CommandState::Completed, Some(0));
        assert_eq!(state.next_job(2, |_| true).start, None, "job 4 is skipped in turn");
        assert_eq!(state.commands[&4].state, CommandState::Skipped);
    }

    #[test]
    fn a_job_waits_for_its_dependency_and_runs_after_its_success() {
        let mut state = state();
        job(&mut state, "a", vec![]).unwrap();
        job(&mut state, "b", vec![after(1, true)]).unwrap();
        let first = state.next_job(0, |_| true);
        assert_eq!(first.start.map(|s| s.0), Some(1));
        assert_eq!(state.next_job(0, |_| true).start, None, "job 2 waits while job 1 runs");
        assert_eq!(state.commands[&2].state, CommandState::Queued);
        let _ = state.finish(1, CommandState::Completed, Some(0));
        assert_eq!(state.next_job(0, |_| true).start.map(|s| s.0), Some(2));
    }

    #[test]
    fn retries_rerun_after_the_delay_with_markers_and_keep_the_last_result() {
        let mut state = state();
        let options = JobOptions {
            retries: 2,
            retry_delay_ms: 100,
            ..JobOptions::default()
        };
        state.enqueue_job("flaky".into(), options).unwrap();
        job(&mut state, "later", vec![]).unwrap();
        assert_eq!(state.next_job(0, |_| true).start.map(|s| s.0), Some(1));
        assert!(state.retry_after_failure(1, 1, 1_000));
        let waiting = state.next_job(1_050, |_| true);
        assert_eq!(
            (waiting.start, waiting.wake_at),
            (None, Some(1_100)),
            "the retry holds the runspace"
        );
        assert_eq!(state.commands[&1].state, CommandState::Running);
        assert_eq!(state.next_job(1_100, |_| true).start.map(|s| s.0), Some(1));
        assert_eq!(state.commands[&1].workflow.attempts, 2);
        assert!(state.retry_after_failure(1, 1, 2_000));
        assert_eq!(state.next_job(2_100, |_| true).start.map(|s| s.0), Some(1));
        assert!(!state.retry_after_failure(1, 4, 3_000), "three attempts in all");
        assert!(!state.retry_after_failure(1, 0, 3_000), "success is never retried");
        let _ = state.finish(1, CommandState::Completed, Some(4));
        assert_eq!(state.commands[&1].info().attempts, 3);
        let markers = stderr_text(&state, 1);
        assert_eq!(markers.matches("remora: attempt").count(), 2, "{markers}");
        assert!(markers.contains("attempt 1 of 3 exited with status 1"), "{markers}");
        assert_eq!(state.failed_commands(), 1);
    }

    #[test]
    fn stopping_a_job_between_attempts_ends_it_at_once() {
        let mut state = state();
        let options = JobOptions {
            retries: 1,
            retry_delay_ms: 60_000,
            ..JobOptions::default()
        };
        state.enqueue_job("flaky".into(), options).unwrap();
        let _ = state.next_job(0, |_| true);
        assert!(state.retry_after_failure(1, 1, 0));
        let stopped = state.request_stop(None).unwrap();
        assert_eq!((stopped.interrupt, stopped.info.state), (None, CommandState::Stopped));
        assert_eq!(state.next_job(0, |_| true).wake_at, None, "nothing left to wait for");
    }
}
