//! The host-side notice when a job ends: the configuration's `on_job_end` command.
//!
//! The session's persister starts it once the job's end is saved (it queues behind the save), as
//! its own process: `/bin/sh -c <on_job_end>` in its own process group, stdin, stdout and stderr
//! on /dev/null, never in the runspace. It learns about the job from its environment
//! (`REMORA_JOB_ID`, `REMORA_SESSION`, `REMORA_SESSION_ID`, `REMORA_LABEL`, `REMORA_STATE`,
//! `REMORA_EXIT_CODE`, `REMORA_ATTEMPTS`, `REMORA_DURATION_MS`). A hook that fails or cannot start
//! is logged and changes nothing else; one that runs past [`TIME_LIMIT`] is killed with its
//! process group, so a hung hook can never hold anything up.

use std::{process::Stdio, time::Duration};

use nix::{
    sys::signal::{killpg, Signal},
    unistd::Pid,
};
use remora_wire::CommandInfo;
use uuid::Uuid;

/// How long a hook may run before it is killed.
pub const TIME_LIMIT: Duration = Duration::from_secs(60);

/// One hook to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The shell text from agent.toml.
    pub hook: String,
    pub env: Vec<(&'static str, String)>,
}

impl Notice {
    /// The hook for a job that ended.
    pub fn new(hook: &str, session: &str, session_id: Uuid, job: &CommandInfo) -> Self {
        let duration = match (job.started_at, job.ended_at) {
            (Some(start), Some(end)) => end.saturating_sub(start),
            _ => 0,
        };
        let env = vec![
            ("REMORA_JOB_ID", job.id.to_string()),
            ("REMORA_SESSION", session.to_string()),
            ("REMORA_SESSION_ID", session_id.to_string()),
            ("REMORA_LABEL", job.options.label.clone().unwrap_or_default()),
            ("REMORA_STATE", job.state.to_string()),
            (
                "REMORA_EXIT_CODE",
                job.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            ),
            ("REMORA_ATTEMPTS", job.attempts.to_string()),
            ("REMORA_DURATION_MS", duration.to_string()),
        ];
        Self {
            hook: hook.to_string(),
            env,
        }
    }

    /// Starts the hook on the runtime and returns at once; the hook's end is only logged.
    pub fn spawn(self, session: String) {
        tokio::spawn(self.run(session, TIME_LIMIT));
    }

    async fn run(self, session: String, limit: Duration) {
        let mut command = tokio::process::Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(&self.hook)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(home) = std::env::var_os("HOME") {
            command.current_dir(home);
        }
        let job = self.env[0].1.as_str();
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(err) => {
                tracing::warn!(session = %session, job, "on_job_end could not start: {err}");
                return;
            }
        };
        let pgid = child.id().map(|id| Pid::from_raw(id as i32));
        match tokio::time::timeout(limit, child.wait()).await {
            Ok(Ok(status)) if status.success() => tracing::debug!(session = %session, job, "on_job_end ran"),
            Ok(Ok(status)) => tracing::warn!(session = %session, job, "on_job_end failed: {status}"),
            Ok(Err(err)) => tracing::warn!(session = %session, job, "on_job_end: {err}"),
            Err(_) => {
                tracing::warn!(session = %session, job, "on_job_end ran longer than {limit:?}; killed");
                if let Some(pgid) = pgid {
                    let _ = killpg(pgid, Signal::SIGKILL);
                }
                let _ = child.wait().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(hook: &str) -> Notice {
        let job = CommandInfo {
            id: 3,
            command: "true".into(),
            state: remora_wire::CommandState::Completed,
            exit_code: Some(4),
            queued_at: 0,
            started_at: Some(1_000),
            ended_at: Some(1_250),
            dropped_bytes: 0,
            options: remora_wire::JobOptions {
                label: Some("nightly".into()),
                ..Default::default()
            },
            attempts: 1,
            reason: None,
        };
        Notice::new(hook, "s", Uuid::nil(), &job)
    }

    #[test]
    fn the_environment_describes_the_job() {
        let env = notice("true").env;
        let get = |k: &str| env.iter().find(|(key, _)| *key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("REMORA_JOB_ID"), Some("3"));
        assert_eq!(get("REMORA_LABEL"), Some("nightly"));
        assert_eq!(get("REMORA_EXIT_CODE"), Some("4"));
        assert_eq!(get("REMORA_DURATION_MS"), Some("250"));
        assert_eq!(get("REMORA_STATE"), Some("Completed"));
    }

    #[tokio::test]
    async fn a_hook_past_its_time_limit_is_killed_with_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let hook = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        let started = std::time::Instant::now();
        notice(&hook).run("s".into(), Duration::from_secs(2)).await;
        assert!(started.elapsed() < Duration::from_secs(30));
        let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        let alive = || {
            nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok()
                && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
        };
        // SIGKILL was sent to the group; the child is gone once the kernel has delivered it.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while alive() && std::time::Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
        assert!(!alive(), "the hook's background child was killed too");
    }
}
