//! Session configurations: named sets of session defaults and limits, from `agent.toml` in the
//! config dir (PowerShell's session configurations).
//!
//! ```toml
//! default = "default"            # used when `new` names none
//!
//! [configurations.default]
//! idle_timeout = "2h"
//! max_idle_timeout = "12h"
//! buffering = "spill"            # block | drop | spill
//! buffer_limit = "64MiB"         # unreceived output held in memory per session
//! spill_quota = "1GiB"           # and on disk, in spill mode
//!
//! [configurations.build]
//! shell = "/bin/bash"
//! cwd = "/srv/build"
//! env = { CARGO_TERM_COLOR = "never" }
//! max_sessions = 4
//! max_queued = 100               # commands waiting in one session
//! scrollback = 10000             # terminal lines kept for reattach (`remora shell`), at most 100000
//! on_job_end = "notify-send \"job $REMORA_JOB_ID ended: $REMORA_EXIT_CODE\""  # see session/notice.rs
//! ```
//!
//! Invariant: the daemon always has a valid configuration. The file is re-read when it changes;
//! a file that does not parse or validate is reported (logged, and shown by
//! `remora-agent config check`) and the last good configuration stays in force.

use remora_unix::LockRecover;
use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::SystemTime,
};

use remora_wire::Buffering;
use serde::Deserialize;

/// What is wrong with `agent.toml` or a configuration name. Messages name the key and say what
/// is expected.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Syntax(#[from] toml::de::Error),
    #[error("configurations.{configuration}: {problem}")]
    Invalid { configuration: String, problem: String },
    #[error("default = {0:?} names no configuration")]
    NoDefault(String),
    #[error("no configuration named {name:?}; this agent has: {known}")]
    Unknown { name: String, known: String },
    #[error("{0}")]
    Value(String),
    #[error("invalid agent config {path}: {problem}")]
    File { path: PathBuf, problem: Box<ConfigError> },
    #[error("cannot read agent config {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::sync::Arc<std::io::Error>,
    },
}

/// Which shell a runspace runs.
#[derive(Debug, Clone)]
pub struct ShellSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Found by [`ShellSpec::detect`] rather than named by a configuration's `shell`.
    pub detected: bool,
}

/// Where [`ShellSpec::detect`] looks for bash.
pub(crate) const BASH_PATHS: [&str; 3] = ["/bin/bash", "/usr/bin/bash", "/usr/local/bin/bash"];

impl ShellSpec {
    /// bash without startup files. On a host without bash the spec names the first place
    /// looked, and creating a session says so and names the `shell` setting (never a silent
    /// switch to another shell, whose `stop` and quoting behave differently).
    pub fn detect() -> Self {
        let bash = BASH_PATHS.into_iter().map(PathBuf::from).find(|p| p.exists());
        let program = bash.unwrap_or_else(|| PathBuf::from(BASH_PATHS[0]));
        Self {
            detected: true,
            ..Self::for_program(program)
        }
    }

    /// `program` as an interactive shell reading commands from stdin, without startup files.
    pub fn for_program(program: PathBuf) -> Self {
        let is_bash = program
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains("bash"));
        let args = if is_bash {
            vec!["--noprofile", "--norc", "--noediting", "-i"]
        } else {
            vec!["-i"]
        };
        Self {
            program,
            args: args.into_iter().map(String::from).collect(),
            detected: false,
        }
    }
}

/// The name of the built-in configuration.
pub(crate) const DEFAULT_NAME: &str = "default";

/// One configuration, resolved and validated.
#[derive(Debug, Clone)]
pub struct Configuration {
    pub name: String,
    pub shell: ShellSpec,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    pub idle_timeout_secs: u64,
    pub max_idle_timeout_secs: u64,
    pub buffering: Buffering,
    pub buffer_limit: usize,
    pub spill_quota: u64,
    pub max_sessions: usize,
    /// Commands that may wait in one session's queue.
    pub max_queued: usize,
    /// Lines of a terminal's history kept for a reattach and the transcript.
    pub scrollback: usize,
    /// Shell command run (detached, by `/bin/sh -c`) when a job ends.
    pub on_job_end: Option<String>,
}

/// Most terminal history lines a configuration may keep.
pub(crate) const MAX_SCROLLBACK: usize = 100_000;

impl Configuration {
    fn builtin(name: &str) -> Self {
        Self {
            name: name.to_string(),
            shell: ShellSpec::detect(),
            env: BTreeMap::new(),
            cwd: None,
            idle_timeout_secs: 2 * 3600,
            max_idle_timeout_secs: 12 * 3600,
            buffering: Buffering::Spill,
            buffer_limit: 64 << 20,
            spill_quota: 1 << 30,
            max_sessions: 1000,
            max_queued: 1000,
            scrollback: 10_000,
            on_job_end: None,
        }
    }
}

/// Every configuration and which one is the default.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub default: String,
    pub configurations: BTreeMap<String, Configuration>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        let default = Configuration::builtin(DEFAULT_NAME);
        Self {
            default: DEFAULT_NAME.into(),
            configurations: [(DEFAULT_NAME.into(), default)].into(),
        }
    }
}

impl AgentConfig {
    /// Parses and validates `agent.toml` text. Errors name the key and say what is expected.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let file: FileConfig = toml::from_str(text)?;
        let mut configurations = BTreeMap::new();
        configurations.insert(DEFAULT_NAME.to_string(), Configuration::builtin(DEFAULT_NAME));
        for (name, raw) in file.configurations {
            let resolved = raw.resolve(&name).map_err(|problem| ConfigError::Invalid {
                configuration: name.clone(),
                problem: problem.to_string(),
            })?;
            configurations.insert(name, resolved);
        }
        let default = file.default.unwrap_or_else(|| DEFAULT_NAME.into());
        if !configurations.contains_key(&default) {
            return Err(ConfigError::NoDefault(default));
        }
        Ok(Self {
            default,
            configurations,
        })
    }

    /// The configuration called `name`, or the default one.
    pub fn get(&self, name: Option<&str>) -> Result<&Configuration, ConfigError> {
        let name = name.unwrap_or(&self.default);
        self.configurations.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.configurations.keys().map(String::as_str).collect();
            ConfigError::Unknown {
                name: name.to_string(),
                known: known.join(", "),
            }
        })
    }

    /// The effective values, for `remora-agent config check`.
    pub fn describe(&self) -> String {
        let mut out = format!("default = {:?}\n", self.default);
        for c in self.configurations.values() {
            out.push_str(&format!(
                "\n[configurations.{}]\nshell = {:?}\ncwd = {:?}\nenv = {:?}\nidle_timeout = {:?}\nmax_idle_timeout = {:?}\nbuffering = {:?}\nbuffer_limit = {}\nspill_quota = {}\nmax_sessions = {}\nmax_queued = {}\non_job_end = {:?}\n",
                c.name,
                c.shell.program.display().to_string(),
                c.cwd.as_ref().map_or_else(|| "~".into(), |p| p.display().to_string()),
                c.env,
                humantime::format_duration(std::time::Duration::from_secs(c.idle_timeout_secs)).to_string(),
                humantime::format_duration(std::time::Duration::from_secs(c.max_idle_timeout_secs)).to_string(),
                c.buffering.to_string(),
                c.buffer_limit,
                c.spill_quota,
                c.max_sessions,
                c.max_queued,
                c.on_job_end.as_deref().unwrap_or(""),
            ));
        }
        out
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    default: Option<String>,
    #[serde(default)]
    configurations: BTreeMap<String, FileConfiguration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfiguration {
    shell: Option<PathBuf>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
    idle_timeout: Option<String>,
    max_idle_timeout: Option<String>,
    buffering: Option<String>,
    buffer_limit: Option<String>,
    spill_quota: Option<String>,
    max_sessions: Option<usize>,
    max_queued: Option<usize>,
    scrollback: Option<usize>,
    on_job_end: Option<String>,
}

impl FileConfiguration {
    fn resolve(self, name: &str) -> Result<Configuration, ConfigError> {
        let base = Configuration::builtin(name);
        let shell = match self.shell {
            Some(path) if !path.is_absolute() => {
                return Err(ConfigError::Value(format!("shell {path:?} must be an absolute path")))
            }
            Some(path) => ShellSpec::for_program(path),
            None => base.shell,
        };
        let idle_timeout_secs = self
            .idle_timeout
            .as_deref()
            .map(duration)
            .transpose()?
            .unwrap_or(base.idle_timeout_secs);
        let max_idle_timeout_secs = self
            .max_idle_timeout
            .as_deref()
            .map(duration)
            .transpose()?
            .unwrap_or(base.max_idle_timeout_secs);
        if idle_timeout_secs > max_idle_timeout_secs {
            return Err(ConfigError::Value(
                "idle_timeout is longer than max_idle_timeout".into(),
            ));
        }
        Ok(Configuration {
            name: name.into(),
            shell,
            env: self.env,
            cwd: self.cwd,
            idle_timeout_secs,
            max_idle_timeout_secs,
            buffering: self
                .buffering
                .as_deref()
                .map(buffering)
                .transpose()?
                .unwrap_or(base.buffering),
            buffer_limit: self
                .buffer_limit
                .as_deref()
                .map(size)
                .transpose()?
                .map_or(base.buffer_limit, |s| s as usize),
            spill_quota: self
                .spill_quota
                .as_deref()
                .map(size)
                .transpose()?
                .unwrap_or(base.spill_quota),
            max_sessions: self.max_sessions.unwrap_or(base.max_sessions),
            max_queued: match self.max_queued {
                Some(0) => return Err(ConfigError::Value("max_queued must be at least 1".into())),
                other => other.unwrap_or(base.max_queued),
            },
            scrollback: match self.scrollback {
                Some(n) if n > MAX_SCROLLBACK => {
                    return Err(ConfigError::Value(format!(
                        "scrollback must be at most {MAX_SCROLLBACK} lines"
                    )))
                }
                other => other.unwrap_or(base.scrollback),
            },
            on_job_end: match self.on_job_end {
                Some(hook) if hook.trim().is_empty() || hook.contains('\0') => {
                    return Err(ConfigError::Value(
                        "on_job_end must be a shell command (not empty, no NUL)".into(),
                    ))
                }
                hook => hook,
            },
        })
    }
}

fn duration(text: &str) -> Result<u64, ConfigError> {
    match humantime::parse_duration(text) {
        Ok(d) if d.as_secs() > 0 => Ok(d.as_secs()),
        _ => Err(ConfigError::Value(format!(
            "{text:?} is not a duration like 90s, 15m, 2h or 1d"
        ))),
    }
}

fn buffering(text: &str) -> Result<Buffering, ConfigError> {
    match text {
        "block" => Ok(Buffering::Block),
        "drop" => Ok(Buffering::Drop),
        "spill" => Ok(Buffering::Spill),
        _ => Err(ConfigError::Value(format!(
            "buffering {text:?} is not one of block, drop, spill"
        ))),
    }
}

/// `65536`, `64KiB`, `64MiB`, `1GiB` (also KB/MB/GB as powers of two, like most admins mean).
pub(crate) fn size(text: &str) -> Result<u64, ConfigError> {
    let text = text.trim();
    let bad = |why: String| ConfigError::Value(why);
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| bad(format!("{text:?} is not a size like 64MiB")))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(bad(format!("{text:?} has an unknown unit; use KiB, MiB or GiB"))),
    };
    number
        .checked_shl(shift)
        .filter(|n| n >> shift == number)
        .ok_or_else(|| bad(format!("{text:?} is too large")))
}

/// The configuration in force, re-read from its file when the file changes.
#[derive(Debug)]
pub struct ConfigStore {
    path: Option<PathBuf>,
    state: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    config: Arc<AgentConfig>,
    stamp: Option<SystemTime>,
    error: Option<ConfigError>,
}

impl ConfigStore {
    /// Built-in defaults only (tests).
    pub fn builtin() -> Self {
        Self {
            path: None,
            state: Mutex::new(Loaded {
                config: Arc::default(),
                stamp: None,
                error: None,
            }),
        }
    }

    /// Reads `path` now; a missing file means the built-in defaults.
    pub fn open(path: &Path) -> Self {
        let store = Self {
            path: Some(path.to_path_buf()),
            ..Self::builtin()
        };
        store.current();
        store
    }

    /// The configuration in force, after re-reading the file if it changed.
    pub fn current(&self) -> Arc<AgentConfig> {
        let mut state = self.state.lock_or_recover();
        let Some(path) = &self.path else {
            return state.config.clone();
        };
        let stamp = fs::metadata(path).and_then(|m| m.modified()).ok();
        if stamp != state.stamp {
            state.stamp = stamp;
            match load(path) {
                Ok(config) => {
                    state.config = Arc::new(config);
                    state.error = None;
                }
                Err(err) => {
                    tracing::error!("{err}; keeping the last good configuration");
                    state.error = Some(err);
                }
            }
        }
        state.config.clone()
    }

    /// The last load error, if the file in force is not the file on disk.
    pub fn error(&self) -> Option<ConfigError> {
        self.state.lock_or_recover().error.clone()
    }
}

/// Loads and validates a config file; a missing file is the built-in configuration.
pub(crate) fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
    match fs::read_to_string(path) {
        Ok(text) => AgentConfig::parse(&text).map_err(|problem| ConfigError::File {
            path: path.to_path_buf(),
            problem: Box::new(problem),
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(AgentConfig::default()),
        Err(cause) => Err(ConfigError::Read {
            path: path.to_path_buf(),
            cause: std::sync::Arc::new(cause),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_resolves_with_defaults_filled_in() {
        let config = AgentConfig::parse(
            "default = \"build\"\n[configurations.build]\ncwd = \"/tmp\"\nidle_timeout = \"15m\"\nbuffering = \"drop\"\nbuffer_limit = \"1MiB\"\nmax_sessions = 2\nenv = { A = \"1\" }\n",
        )
        .unwrap();
        let build = config.get(None).unwrap();
        assert_eq!(
            (
                build.name.as_str(),
                build.idle_timeout_secs,
                build.max_idle_timeout_secs
            ),
            ("build", 900, 43200)
        );
        assert_eq!(
            (build.buffering, build.buffer_limit, build.max_sessions),
            (Buffering::Drop, 1 << 20, 2)
        );
        assert_eq!(config.get(Some("default")).unwrap().buffering, Buffering::Spill);
        assert!(config
            .get(Some("nope"))
            .unwrap_err()
            .to_string()
            .contains("build, default"));
    }

    #[test]
    fn mistakes_are_named() {
        for (text, expected) in [
            ("[configurations.a]\nbufering = \"drop\"\n", "unknown field"),
            ("[configurations.a]\nbuffering = \"fast\"\n", "block, drop, spill"),
            (
                "[configurations.a]\nidle_timeout = \"3d\"\n",
                "longer than max_idle_timeout",
            ),
            ("[configurations.a]\nbuffer_limit = \"lots\"\n", "size like 64MiB"),
            ("default = \"x\"\n", "names no configuration"),
            ("[configurations.a]\nshell = \"bash\"\n", "absolute path"),
        ] {
            let err = AgentConfig::parse(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(size("65536").unwrap(), 65536);
        assert_eq!(size("64KiB").unwrap(), 64 << 10);
        assert_eq!(size("2 GiB").unwrap(), 2 << 30);
        assert!(size("1TiB").is_err());
    }

    #[test]
    fn a_broken_file_keeps_the_last_good_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        fs::write(&path, "[configurations.fast]\nbuffering = \"drop\"\n").unwrap();
        let store = ConfigStore::open(&path);
        assert!(store.current().get(Some("fast")).is_ok());
        fs::write(&path, "[configurations.fast\nbroken").unwrap();
        let later = SystemTime::now() + std::time::Duration::from_secs(5);
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert!(store.current().get(Some("fast")).is_ok(), "still the last good one");
        assert!(store.error().unwrap().to_string().contains("invalid agent config"));
    }
}
