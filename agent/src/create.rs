//! Session creation and the limits on session settings: daemon operations that the handlers
//! (`new`, `invoke`, `shell`, `receive`, `disconnect`) call, so no handler calls another.
//!
//! At the level of `daemon.rs` (it knows the daemon, sessions and configurations, never a
//! connection or a handler); refusals are values of [`CreateError`], which the handlers turn
//! into error replies.

use std::sync::Arc;

use remora_wire::{Buffering, NewSession};

use crate::{
    config::Configuration,
    daemon::Daemon,
    error::AgentError,
    session::{runspace::RunspaceSpec, validate_name, Session, SessionSettings},
};

/// Why a session was not created, or a setting was refused.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("{0}")]
    InvalidName(String),
    #[error("{0}")]
    Configuration(String),
    #[error(
        "configuration {configuration:?} allows {max} sessions and has {in_use}; remove one with `remora rm` first"
    )]
    SessionLimit {
        configuration: String,
        max: usize,
        in_use: usize,
    },
    #[error("idle timeout of {secs} s is outside 1 s ..= {max} s (the configuration's maximum)")]
    IdleTimeout { secs: u64, max: u64 },
    #[error("unknown buffering mode; use block, drop or spill")]
    Buffering,
    #[error("a session named {name:?} already exists on {host} (instance {existing}); pick another name or remove it with `remora rm HOST --name {name}`")]
    Exists {
        name: String,
        host: String,
        existing: uuid::Uuid,
    },
    #[error("cannot start the session's shell: {0}")]
    Runspace(AgentError),
    #[error("this host has no bash for the session's runspace (looked for {}); set `shell = \"/bin/sh\"` (or another shell's absolute path) under [configurations.{configuration}] in the agent's agent.toml (~/.config/remora/), then check it with `remora-agent config check`", crate::config::BASH_PATHS.join(", "))]
    NoBash { configuration: String },
    #[error("the runspace shell {} of configuration {configuration:?} is not on this host; set `shell =` under [configurations.{configuration}] in the agent's agent.toml (~/.config/remora/) to one that is, such as \"/bin/sh\", then check it with `remora-agent config check`", program.display())]
    NoShell {
        configuration: String,
        program: std::path::PathBuf,
    },
}

/// Refuses a configuration whose runspace shell is not on this host, naming the setting.
fn check_shell(configuration: &Configuration) -> Result<(), CreateError> {
    let shell = &configuration.shell;
    if shell.program.exists() {
        return Ok(());
    }
    let configuration = configuration.name.clone();
    Err(match shell.detected {
        true => CreateError::NoBash { configuration },
        false => CreateError::NoShell {
            configuration,
            program: shell.program.clone(),
        },
    })
}

/// Accepts an idle timeout within 1 s ..= `max` (the configuration's maximum).
pub(crate) fn check_idle_timeout(max: u64, secs: u64) -> Result<u64, CreateError> {
    if secs == 0 || secs > max {
        return Err(CreateError::IdleTimeout { secs, max });
    }
    Ok(secs)
}

/// Accepts every buffering mode a client may name (newer peers may send ones we do not know).
pub(crate) fn check_buffering(mode: Buffering) -> Result<Buffering, CreateError> {
    match mode {
        Buffering::Unknown => Err(CreateError::Buffering),
        known => Ok(known),
    }
}

impl Daemon {
    /// Validates, registers and starts a session (its description saved, its runspace
    /// running); `by` names the client for the log.
    pub async fn create_session(
        &self,
        name: &str,
        temporary: bool,
        options: &NewSession,
        by: &str,
    ) -> Result<Arc<Session>, CreateError> {
        validate_name(name).map_err(|err| CreateError::InvalidName(err.to_string()))?;
        let config = self.config.current();
        let configuration = config
            .get(options.configuration.as_deref())
            .map_err(|err| CreateError::Configuration(err.to_string()))?;
        self.check_session_limit(configuration)?;
        check_shell(configuration)?;
        let settings = SessionSettings {
            store_root: self.store_root.clone(),
            ..settings_for(configuration, options, &self.spill_dir)?
        };
        let session = Arc::new(Session::new(name.to_string(), temporary, settings));
        self.adopt(session.clone()).map_err(|existing| CreateError::Exists {
            name: name.to_string(),
            host: self.host.clone(),
            existing: existing.id,
        })?;
        let spec = RunspaceSpec {
            shell: configuration.shell.clone(),
            env: configuration.env.clone(),
            cwd: configuration.cwd.clone(),
            status_fifo: self.spill_dir.join(format!("{}-status", session.id)),
        };
        session.save_description();
        if let Err(err) = self.start_runspace(&session, spec).await {
            self.remove_session(session.id, "its runspace could not start");
            return Err(CreateError::Runspace(err));
        }
        tracing::info!(session = %session.name, instance_id = %session.id, by = %by, "session created");
        Ok(session)
    }

    /// Refuses a new session past the configuration's `max_sessions`.
    fn check_session_limit(&self, configuration: &Configuration) -> Result<(), CreateError> {
        let in_use = self
            .registry
            .list(None)
            .iter()
            .filter(|s| s.settings().configuration == configuration.name)
            .count();
        if in_use >= configuration.max_sessions {
            return Err(CreateError::SessionLimit {
                configuration: configuration.name.clone(),
                max: configuration.max_sessions,
                in_use,
            });
        }
        Ok(())
    }
}

/// A request's options resolved against its configuration.
fn settings_for(
    configuration: &Configuration,
    options: &NewSession,
    spill_dir: &std::path::Path,
) -> Result<SessionSettings, CreateError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigStore, ShellSpec};

    #[test]
    fn idle_timeouts_and_buffering_modes_outside_the_limits_are_refused() {
        assert_eq!(check_idle_timeout(60, 60).unwrap(), 60);
        for secs in [0, 61] {
            let err = check_idle_timeout(60, secs).unwrap_err();
            assert!(err.to_string().contains("1 s ..= 60 s"), "{err}");
        }
        assert!(matches!(
            check_buffering(Buffering::Unknown),
            Err(CreateError::Buffering)
        ));
        assert_eq!(check_buffering(Buffering::Drop).unwrap(), Buffering::Drop);
    }

    fn configuration_with(shell: ShellSpec) -> Configuration {
        let mut configuration = ConfigStore::builtin().current().get(None).unwrap().clone();
        configuration.shell = shell;
        configuration
    }

    #[test]
    fn a_host_without_bash_is_told_so_and_shown_the_shell_setting() {
        let missing = ShellSpec {
            program: "/nonexistent/bash".into(),
            detected: true,
            ..ShellSpec::for_program("/nonexistent/bash".into())
        };
        let err = check_shell(&configuration_with(missing)).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, CreateError::NoBash { .. }), "{text}");
        assert!(text.contains("no bash") && text.contains("/usr/bin/bash"), "{text}");
        assert!(text.contains("set `shell = \"/bin/sh\"`"), "{text}");
        assert!(text.contains("under [configurations.default]"), "{text}");
    }

    #[test]
    fn a_shell_that_is_there_is_accepted() {
        assert!(check_shell(&configuration_with(ShellSpec::for_program("/bin/sh".into()))).is_ok());
    }
}
