//! What a terminal starts: the user's login shell with the client's TERM and size, in the
//! runspace's directory and environment when the session has a runspace (the environment it
//! started with plus the configuration's, not variables exported by later commands).
//!
//! The choice is a pure function ([`build`]) of what the system says; the system's side
//! (passwd, the daemon's environment, whether a directory exists) sits behind [`Lookups`], and
//! the runspace's side is read by the session's runspace handle, so tests give both by hand.

use std::{
    collections::BTreeMap,
    ffi::OsString,
    path::{Path, PathBuf},
};

use crate::session::Session;

/// What a terminal starts.
#[derive(Debug, Clone)]
pub struct TermSpec {
    /// The login shell (from passwd).
    pub program: PathBuf,
    /// `-bash`: a leading dash makes it a login shell, so profiles load.
    pub argv0: String,
    pub cwd: PathBuf,
    /// The whole environment (TERM included).
    pub env: Vec<(OsString, OsString)>,
    pub rows: u16,
    pub cols: u16,
}

/// Why no spec could be made.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("uid {0} has no passwd entry, so there is no login shell to start; add one, or use `remora invoke`")]
    NoPasswd(u32),
}

/// The user as passwd has it.
#[derive(Debug, Clone)]
pub struct LoginUser {
    pub name: String,
    pub home: PathBuf,
    /// Empty when passwd names none (then `/bin/sh`).
    pub shell: PathBuf,
}

/// The system's answers a spec depends on.
pub trait Lookups {
    fn login_user(&self) -> Result<LoginUser, SpecError>;
    /// The daemon's own environment (used when there is no runspace to copy).
    fn daemon_env(&self) -> Vec<(OsString, OsString)>;
    fn is_dir(&self, path: &Path) -> bool;
}

/// The real system.
pub struct System;

impl Lookups for System {
    fn login_user(&self) -> Result<LoginUser, SpecError> {
        let uid = nix::unistd::getuid();
        let user = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .ok_or(SpecError::NoPasswd(uid.as_raw()))?;
        Ok(LoginUser {
            name: user.name,
            home: user.dir,
            shell: user.shell,
        })
    }

    fn daemon_env(&self) -> Vec<(OsString, OsString)> {
        std::env::vars_os().collect()
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }
}

/// What the client and the configuration ask for.
#[derive(Debug, Clone)]
pub struct Wanted<'a> {
    /// The client's TERM (empty: `xterm-256color`).
    pub term: &'a str,
    pub rows: u16,
    pub cols: u16,
    pub session: &'a str,
    pub config_env: &'a BTreeMap<String, String>,
    pub config_cwd: Option<PathBuf>,
}

/// The runspace's environment and directory, while it runs.
#[derive(Debug, Clone, Default)]
pub struct RunspaceView {
    pub env: Option<Vec<(OsString, OsString)>>,
    pub cwd: Option<PathBuf>,
}

impl TermSpec {
    /// The spec for a terminal of `session`, from the real system.
    pub fn for_session(session: &Session, wanted: &Wanted) -> Result<Self, SpecError> {
        let runspace = RunspaceView {
            env: session.runspace.environ(),
            cwd: session.runspace.cwd(),
        };
        build(wanted, runspace, &System)
    }
}

/// The spec, from what the system says.
pub fn build(wanted: &Wanted, runspace: RunspaceView, os: &impl Lookups) -> Result<TermSpec, SpecError> {
    let user = os.login_user()?;
    let program = match user.shell.as_os_str().is_empty() {
        true => PathBuf::from("/bin/sh"),
        false => user.shell.clone(),
    };
    let base = program
        .file_name()
        .map_or("sh".into(), |n| n.to_string_lossy().into_owned());
    let mut env = runspace.env.unwrap_or_else(|| os.daemon_env());
    let has_home = env.iter().any(|(k, _)| k == "HOME");
    let mut set = |key: &str, value: OsString| {
        env.retain(|(k, _)| k != key);
        env.push((key.into(), value));
    };
    for (key, value) in wanted.config_env {
        set(key, value.into());
    }
    let term = match wanted.term.is_empty() {
        true => "xterm-256color",
        false => wanted.term,
    };
    set("TERM", term.into());
    // HOME as the runspace (or the daemon) has it, else from passwd.
    if !has_home {
        set("HOME", user.home.clone().into());
    }
    set("USER", user.name.clone().into());
    set("LOGNAME", user.name.clone().into());
    set("SHELL", program.clone().into());
    set("REMORA_SESSION", wanted.session.into());
    let cwd = runspace
        .cwd
        .or_else(|| wanted.config_cwd.clone())
        .filter(|p| os.is_dir(p))
        .or_else(|| env.iter().find(|(k, _)| k == "HOME").map(|(_, v)| PathBuf::from(v)))
        .unwrap_or_else(|| user.home.clone());
    Ok(TermSpec {
        program,
        argv0: format!("-{base}"),
        cwd,
        env,
        rows: wanted.rows,
        cols: wanted.cols,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        shell: &'static str,
        dirs: Vec<&'static str>,
    }

    impl Lookups for Fake {
        fn login_user(&self) -> Result<LoginUser, SpecError> {
            Ok(LoginUser {
                name: "ann".into(),
                home: "/home/ann".into(),
                shell: self.shell.into(),
            })
        }
        fn daemon_env(&self) -> Vec<(OsString, OsString)> {
            vec![("DAEMON".into(), "1".into()), ("HOME".into(), "/daemon/home".into())]
        }
        fn is_dir(&self, path: &Path) -> bool {
            self.dirs.iter().any(|d| Path::new(d) == path)
        }
    }

    fn get<'a>(spec: &'a TermSpec, key: &str) -> Option<&'a OsString> {
        spec.env.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn wanted(config_env: &BTreeMap<String, String>) -> Wanted<'_> {
        Wanted {
            term: "",
            rows: 24,
            cols: 80,
            session: "s1",
            config_env,
            config_cwd: Some("/srv/config".into()),
        }
    }

    #[test]
    fn a_runspace_gives_its_environment_and_directory_and_the_configuration_and_client_win() {
        let config_env = BTreeMap::from([("EDITOR".to_string(), "vi".to_string())]);
        let runspace = RunspaceView {
            env: Some(vec![
                ("FROM_RUNSPACE".into(), "yes".into()),
                ("EDITOR".into(), "ed".into()),
            ]),
            cwd: Some("/tmp/work".into()),
        };
        let os = Fake {
            shell: "/bin/zsh",
            dirs: vec!["/tmp/work"],
        };
        let spec = build(&wanted(&config_env), runspace, &os).unwrap();
        assert_eq!((spec.program.to_str(), spec.argv0.as_str()), (Some("/bin/zsh"), "-zsh"));
        assert_eq!(spec.cwd, Path::new("/tmp/work"));
        assert_eq!(get(&spec, "FROM_RUNSPACE").unwrap(), "yes");
        assert_eq!(get(&spec, "EDITOR").unwrap(), "vi", "the configuration's env wins");
        assert_eq!(get(&spec, "TERM").unwrap(), "xterm-256color");
        assert_eq!(
            get(&spec, "HOME").unwrap(),
            "/home/ann",
            "passwd's HOME when none is set"
        );
        assert_eq!(get(&spec, "REMORA_SESSION").unwrap(), "s1");
        assert!(
            get(&spec, "DAEMON").is_none(),
            "the daemon's env only without a runspace"
        );
    }

    #[test]
    fn without_a_runspace_the_daemon_env_and_a_missing_directory_falls_back_to_home() {
        let config_env = BTreeMap::new();
        let os = Fake {
            shell: "",
            dirs: vec![],
        };
        let spec = build(&wanted(&config_env), RunspaceView::default(), &os).unwrap();
        assert_eq!((spec.program.to_str(), spec.argv0.as_str()), (Some("/bin/sh"), "-sh"));
        assert_eq!(get(&spec, "DAEMON").unwrap(), "1");
        assert_eq!(spec.cwd, Path::new("/daemon/home"), "the config cwd is not a directory");
    }
}
