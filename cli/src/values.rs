//! The typed values of `remora`'s arguments, parsed by clap (`value_parser`) so that a verb gets
//! a host list, a duration or a buffering mode, never a string to parse again.

use std::{fmt, time::Duration};

use clap::ValueEnum;
use remora_wire::Buffering;

/// Why an argument value was refused; clap shows the message after the flag's name.
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    /// A host list with an empty entry (`web1,,web2`).
    #[error("empty host in \"{0}\"; separate hosts with commas, like web1,web2")]
    EmptyHost(String),
    /// Not a duration humantime reads.
    #[error("invalid duration \"{text}\" ({cause}); use a number with a unit, like 90s, 15m, 2h or 1d")]
    Duration {
        text: String,
        cause: humantime::DurationError,
    },
    /// `--throttle` must let at least one host through.
    #[error("\"{0}\" is not a number of hosts; give 1 or more")]
    Throttle(String),
    /// An idle timeout of less than a second would remove the session at once.
    #[error("idle timeout \"{0}\" is too short; give at least 1s")]
    IdleTooShort(String),
    /// An escape character that is not one character, `^X` or `none`.
    #[error("escape character \"{0}\" must be one character, ^X or none")]
    Escape(String),
}

#[cfg(test)]
mod cp_path_tests {
    use super::*;

    #[test]
    fn cp_operands_are_remote_only_with_a_colon_before_any_slash() {
        use std::{ffi::OsStr, os::unix::ffi::OsStrExt};
        let remote = CpPath::parse(OsStr::new("web1,web2:/tmp/")).unwrap();
        assert_eq!(
            remote,
            CpPath::Remote {
                hosts: HostList(vec!["web1".into(), "web2".into()]),
                path: b"/tmp/".to_vec()
            }
        );
        assert!(matches!(CpPath::parse(OsStr::new("./a:b")).unwrap(), CpPath::Local(_)));
        assert!(matches!(CpPath::parse(OsStr::new("/x/a:b")).unwrap(), CpPath::Local(_)));
        let odd = CpPath::parse(OsStr::from_bytes(b"h:n\xffame")).unwrap();
        assert_eq!(
            odd,
            CpPath::Remote {
                hosts: HostList(vec!["h".into()]),
                path: b"n\xffame".to_vec()
            }
        );
        assert!(matches!(CpPath::parse(OsStr::new("h:")).unwrap(), CpPath::Remote { path, .. } if path == b"."));
    }
}

/// `web1,web2,db1`: the hosts of one argument, trimmed, in order, without repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostList(pub Vec<String>);

impl HostList {
    /// Parses a comma-separated host list, refusing empty entries; an empty argument is an
    /// empty list (the hosts then come from `-H` or `--inventory`).
    pub fn parse(spec: &str) -> Result<HostList, ValueError> {
        let mut hosts: Vec<String> = Vec::new();
        if spec.trim().is_empty() {
            return Ok(HostList(hosts));
        }
        for host in spec.split(',').map(str::trim) {
            if host.is_empty() {
                return Err(ValueError::EmptyHost(spec.to_string()));
            }
            if !hosts.iter().any(|h| h == host) {
                hosts.push(host.to_string());
            }
        }
        Ok(HostList(hosts))
    }

    /// The hosts of several lists, in order, without repeats.
    pub fn merge(lists: &[HostList]) -> HostList {
        let mut hosts: Vec<String> = Vec::new();
        for host in lists.iter().flat_map(|list| &list.0) {
            if !hosts.contains(host) {
                hosts.push(host.clone());
            }
        }
        HostList(hosts)
    }

    /// More than one host: output lines get a `host: ` prefix.
    pub fn is_many(&self) -> bool {
        self.0.len() > 1
    }
}

impl fmt::Display for HostList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

/// `90s`, `15m`, `2h`, `1d`, `1h30m`; `0` is zero.
pub fn duration(text: &str) -> Result<Duration, ValueError> {
    humantime::parse_duration(text).map_err(|cause| ValueError::Duration {
        text: text.to_string(),
        cause,
    })
}

/// A session's idle timeout: a duration of at least one second, in whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleTimeout(u64);

impl IdleTimeout {
    /// Parses an idle timeout, refusing zero and sub-second values.
    pub fn parse(text: &str) -> Result<IdleTimeout, ValueError> {
        match duration(text)?.as_secs() {
            0 => Err(ValueError::IdleTooShort(text.to_string())),
            secs => Ok(IdleTimeout(secs)),
        }
    }

    /// The timeout in seconds, as the wire carries it.
    pub fn secs(self) -> u64 {
        self.0
    }
}

/// `--buffering`: how a session holds output nobody has received yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BufferingArg {
    /// Stop reading the command's output until a client receives.
    Block,
    /// Discard the oldest unreceived output, and say so.
    Drop,
    /// Write output past the memory limit to disk, up to a quota, then block.
    Spill,
}

impl From<BufferingArg> for Buffering {
    fn from(arg: BufferingArg) -> Buffering {
        match arg {
            BufferingArg::Block => Buffering::Block,
            BufferingArg::Drop => Buffering::Drop,
            BufferingArg::Spill => Buffering::Spill,
        }
    }
}

/// `jobs --state`: which jobs to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JobStateArg {
    Queued,
    Running,
    /// Ended with an exit code, zero or not.
    Completed,
    /// Completed with exit code 0.
    Succeeded,
    /// Completed with a non-zero exit code, or Failed (the runspace died under it).
    Failed,
    Stopped,
    Skipped,
    /// Every job that has ended, however.
    Ended,
}

impl JobStateArg {
    /// Whether `job` is in this state.
    pub fn matches(self, job: &remora_wire::CommandInfo) -> bool {
        use remora_wire::CommandState as S;
        match self {
            JobStateArg::Queued => job.state == S::Queued,
            JobStateArg::Running => job.state == S::Running,
            JobStateArg::Completed => job.state == S::Completed,
            JobStateArg::Succeeded => job.state == S::Completed && job.exit_code == Some(0),
            JobStateArg::Failed => job_failed(job),
            JobStateArg::Stopped => job.state == S::Stopped,
            JobStateArg::Skipped => job.state == S::Skipped,
            JobStateArg::Ended => job.ended_at.is_some(),
        }
    }
}

/// A failed job, as `jobs --state failed`, `receive --failed` and `ls` count it: Completed with a
/// non-zero exit code, or Failed.
pub fn job_failed(job: &remora_wire::CommandInfo) -> bool {
    use remora_wire::CommandState as S;
    match job.state {
        S::Completed => job.exit_code != Some(0),
        S::Failed => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::{Cli, Verb};

    #[test]
    fn host_lists_split_trim_and_dedupe() {
        assert_eq!(HostList::parse("web1, web2,web1").unwrap().0, ["web1", "web2"]);
        assert_eq!(HostList::parse("solo").unwrap().0, ["solo"]);
        let err = HostList::parse("web1,,web2").unwrap_err().to_string();
        assert!(err.contains("empty host in \"web1,,web2\""), "{err}");
        let merged = HostList::merge(&[HostList::parse("a,b").unwrap(), HostList::parse("b,c").unwrap()]);
        assert_eq!(merged.to_string(), "a,b,c");
    }

    #[test]
    fn durations_parse_the_documented_units() {
        assert_eq!(duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(duration("1d").unwrap(), Duration::from_secs(86400));
        assert_eq!(duration("0").unwrap(), Duration::ZERO);
        assert!(duration("soon").unwrap_err().to_string().contains("like 90s"));
    }

    #[test]
    fn idle_timeouts_refuse_zero_and_sub_second_values() {
        assert_eq!(IdleTimeout::parse("1h30m").unwrap().secs(), 5400);
        for short in ["0", "0s", "500ms"] {
            let err = IdleTimeout::parse(short).unwrap_err().to_string();
            assert_eq!(err, format!("idle timeout \"{short}\" is too short; give at least 1s"));
        }
    }

    #[test]
    fn buffering_maps_to_the_wire_modes() {
        assert_eq!(Buffering::from(BufferingArg::Block), Buffering::Block);
        assert_eq!(Buffering::from(BufferingArg::Drop), Buffering::Drop);
        assert_eq!(Buffering::from(BufferingArg::Spill), Buffering::Spill);
    }

    #[test]
    fn clap_hands_the_verbs_typed_values() {
        let cli = Cli::try_parse_from([
            "remora",
            "new",
            "web1,web2",
            "--name",
            "n",
            "--idle-timeout",
            "2h",
            "--buffering",
            "drop",
            "--reconnect-for",
            "0",
        ])
        .unwrap();
        assert_eq!(cli.reconnect_for, Duration::ZERO);
        let Verb::New(args) = cli.verb else { panic!("not new") };
        assert_eq!(args.host.0, ["web1", "web2"]);
        assert_eq!(args.idle_timeout.map(IdleTimeout::secs), Some(7200));
        assert_eq!(args.buffering, Some(BufferingArg::Drop));

        let refused = Cli::try_parse_from(["remora", "disconnect", "h", "--name", "n", "--idle-timeout", "0s"]);
        let err = refused.unwrap_err().to_string();
        assert!(err.contains("idle timeout \"0s\" is too short"), "{err}");
        let refused = Cli::try_parse_from(["remora", "invoke", "h", "--buffering", "lots", "--", "true"]);
        assert!(refused.is_err());
    }
}

/// The escape character of `remora shell`: a byte, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscapeChar {
    Byte(u8),
    None,
}

impl EscapeChar {
    /// `~`, `^]` (a control character), `none`; what `-e` and ssh_config's EscapeChar accept.
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        match text.as_bytes() {
            b"none" => Ok(EscapeChar::None),
            [byte] if byte.is_ascii() => Ok(EscapeChar::Byte(*byte)),
            [b'^', c] if c.is_ascii_alphabetic() || b"[\\]^_".contains(c) => {
                Ok(EscapeChar::Byte(c.to_ascii_uppercase() & 0x1f))
            }
            _ => Err(ValueError::Escape(text.to_string())),
        }
    }
}

/// clap's parser for `-e`.
pub fn escape_char(text: &str) -> Result<EscapeChar, ValueError> {
    EscapeChar::parse(text)
}

/// One `cp` operand: a local path, or `HOST[,HOST…]:PATH` (the path as bytes, any name). An
/// operand is remote when it has a `:` with no `/` before it, as with scp; write `./a:b` for a
/// local file named `a:b`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpPath {
    Local(std::path::PathBuf),
    Remote { hosts: HostList, path: Vec<u8> },
}

impl CpPath {
    /// Splits an operand into its host list and path.
    pub fn parse(operand: &std::ffi::OsStr) -> Result<CpPath, ValueError> {
        use std::os::unix::ffi::OsStrExt;
        let bytes = operand.as_bytes();
        let colon = bytes.iter().position(|&b| b == b':');
        let slash = bytes.iter().position(|&b| b == b'/');
        match colon {
            Some(colon) if colon > 0 && slash.is_none_or(|slash| slash > colon) => {
                let hosts = String::from_utf8_lossy(&bytes[..colon]).into_owned();
                let path = bytes[colon + 1..].to_vec();
                Ok(CpPath::Remote {
                    hosts: HostList::parse(&hosts)?,
                    path: if path.is_empty() { b".".to_vec() } else { path },
                })
            }
            _ => Ok(CpPath::Local(std::path::PathBuf::from(operand))),
        }
    }

    /// The clap value parser for operands given as raw OS strings.
    pub fn parser() -> impl clap::builder::TypedValueParser<Value = CpPath> {
        use clap::builder::TypedValueParser;
        clap::builder::OsStringValueParser::new().try_map(|text: std::ffi::OsString| CpPath::parse(&text))
    }
}
