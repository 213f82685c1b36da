//! Every flag and verb of `remora`, PowerShell verbs with Linux spelling.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};
use remora_client::ssh::SshOptions;
use uuid::Uuid;

use crate::values::{self, BufferingArg, CpPath, HostList, IdleTimeout, JobStateArg};

/// Disconnected sessions over SSH: start work on a host, drop the link, reattach from anywhere.
#[derive(Debug, Parser)]
#[command(name = "remora", version, about, propagate_version = true)]
pub struct Cli {
    /// ssh_config file to read instead of ~/.ssh/config (`none` for no file).
    #[arg(short = 'F', global = true, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// Identity (private key) file; may be repeated.
    #[arg(short = 'i', global = true, value_name = "FILE")]
    pub identity: Vec<PathBuf>,
    /// Port to connect to on the host.
    #[arg(short = 'p', global = true, value_name = "PORT")]
    pub port: Option<u16>,
    /// User to log in as.
    #[arg(short = 'l', global = true, value_name = "USER")]
    pub login: Option<String>,
    /// Jump hosts to reach the host through, comma-separated `[user@]host[:port]` (ProxyJump).
    #[arg(short = 'J', global = true, value_name = "HOSTS")]
    pub jump: Option<String>,
    /// ssh_config option, like `-o StrictHostKeyChecking=accept-new`; may be repeated.
    #[arg(short = 'o', global = true, value_name = "KEY=VALUE")]
    pub options: Vec<String>,
    /// When the link breaks during invoke, receive or connect, keep reconnecting this long
    /// (every second) and resume; `0` disables.
    #[arg(long, global = true, value_name = "DURATION", default_value = "4m", value_parser = values::duration)]
    pub reconnect_for: Duration,
    /// Connect on its own, without the connection holder that keeps connections warm between
    /// calls (like `-o ControlPersist=no`).
    #[arg(long, global = true)]
    pub no_reuse: bool,
    #[command(flatten)]
    pub fleet: crate::fleet::FleetArgs,
    /// More diagnostics on stderr (-v, -vv, -vvv).
    #[arg(short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub verb: Verb,
}

impl Cli {
    /// The SSH settings given on the command line.
    pub fn ssh_options(&self) -> SshOptions {
        SshOptions {
            config_file: self.config_file.clone(),
            identity_files: self.identity.clone(),
            port: self.port,
            user: self.login.clone(),
            options: self.options.clone(),
            jump: self.jump.clone(),
        }
    }
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Create a named session with its own persistent shell (New-PSSession).
    New(NewArgs),
    /// List sessions on hosts (Get-PSSession).
    Ls(LsArgs),
    /// Run a command in a session (Invoke-Command).
    Invoke(InvokeArgs),
    /// Print output not yet received, following running commands (Receive-PSSession).
    Receive(ReceiveArgs),
    /// Remove sessions, stopping their commands and shells (Remove-PSSession).
    Rm(RmArgs),
    /// Attach to a session and follow its running commands live; Ctrl-C detaches (Connect-PSSession).
    Connect(ConnectArgs),
    /// Detach whoever is attached to a session, optionally changing its settings (Disconnect-PSSession).
    Disconnect(DisconnectArgs),
    /// List a session's commands (jobs) with their state and exit code (Get-Job).
    Jobs(JobsArgs),
    /// Interrupt a running job without ending the session's shell (Stop-Job).
    Stop(StopArgs),
    /// An interactive shell on a terminal the host keeps: detach with `~.`, reattach from anywhere.
    Shell(ShellArgs),
    /// Wait until jobs end; exit with the last one's status, 124 on --timeout (Wait-Job).
    Wait(WaitArgs),
    /// Walk through new, invoke --disconnected, ls, receive and rm against a private local agent.
    Demo(DemoArgs),
    /// Print the SSH settings remora would use for a host, like `ssh -G` (connects nowhere).
    Config(ConfigArgs),
    /// Copy files and directories to or from hosts, resuming after a broken link (Copy-Item -ToSession/-FromSession).
    Cp(CpArgs),
    /// Copy remora-agent to ~/.local/bin on a host whose sshd has no remora subsystem (no root needed).
    Install(InstallArgs),
    /// Print a shell completion script: `remora completions bash > /etc/bash_completion.d/remora`.
    Completions(CompletionsArgs),
    /// Print the man page (roff): `remora man | man -l -`.
    Man,
    /// The warm connections the connection holder keeps (`ls`), or close them (`stop`).
    Conn(ConnArgs),
    /// Run the connection holder (started by remora itself; not for people).
    #[command(name = "__hold", hide = true)]
    Hold(HoldArgs),
}

#[derive(Debug, Args)]
pub struct ConnArgs {
    #[command(subcommand)]
    pub action: ConnAction,
}

#[derive(Debug, Subcommand)]
pub enum ConnAction {
    /// List held connections: host, since, idle, calls served.
    Ls {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Close held connections: one host's (as you typed it), or all.
    Stop {
        /// The host whose connection to close.
        host: Option<String>,
    },
}

/// No arguments: what to warm first comes on stdin, so `ps` shows nothing of it.
#[derive(Debug, Args)]
pub struct HoldArgs {}

#[derive(Debug, Args)]
pub struct CpArgs {
    /// Copy directories and everything in them.
    #[arg(short = 'r')]
    pub recursive: bool,
    /// Keep modes and modification times (`-p`, as with scp; the port is then `-P PORT`).
    #[arg(long)]
    pub preserve: bool,
    /// Resolve relative remote paths against this session's runspace directory (else home).
    #[arg(long)]
    pub name: Option<String>,
    /// Print a JSON summary of what was written where.
    #[arg(long)]
    pub json: bool,
    /// SRC… DEST: local paths and HOST:PATH (HOST may be a comma list for uploads), with the
    /// host on exactly one side.
    #[arg(required = true, num_args = 2.., value_name = "PATH", value_parser = CpPath::parser())]
    pub paths: Vec<CpPath>,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The host, as you would type it for any verb.
    pub host: String,
    /// Print a JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The host to install on.
    pub host: String,
    /// The agent binary to copy (checked to run on the host); by default the first that runs
    /// there of the portable agent (`remora-agent-<cpu>-linux-gnu`, built by scripts/dist) next
    /// to this remora or in ../dist from it, the remora-agent next to it, or on PATH.
    #[arg(long, value_name = "PATH")]
    pub agent: Option<PathBuf>,
    /// Print a JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    pub shell: clap_complete::Shell,
}

/// Which session: by name or by instance id.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct SessionSelect {
    /// Session name.
    #[arg(long)]
    pub name: Option<String>,
    /// Session instance id.
    #[arg(long)]
    pub id: Option<Uuid>,
}

impl SessionSelect {
    /// The wire reference (`--id` wins; clap lets only one through).
    pub fn reference(&self) -> remora_wire::SessionRef {
        match (&self.name, self.id) {
            (_, Some(id)) => remora_wire::SessionRef::Id(id),
            (Some(name), None) => remora_wire::SessionRef::Name(name.clone()),
            (None, None) => unreachable!("clap requires --name or --id"),
        }
    }

    /// The session as the user named it, for messages.
    pub fn label(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| self.id.map(|id| id.to_string()).unwrap_or_default())
    }
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// `[user@]host[:port]` or an ssh_config alias; comma-separated for several hosts.
    #[arg(value_parser = HostList::parse, default_value = "", hide_default_value = true)]
    pub host: HostList,
    /// Session name: letters, digits, '.', '_' and '-'.
    #[arg(long)]
    pub name: String,
    /// Configuration on the host to take defaults from.
    #[arg(long = "config", value_name = "NAME")]
    pub configuration: Option<String>,
    /// Remove the session this long after its last client detaches (e.g. 90s, 15m, 2h, 1d).
    #[arg(long, value_name = "DURATION", value_parser = IdleTimeout::parse)]
    pub idle_timeout: Option<IdleTimeout>,
    /// What to do when unreceived output reaches the memory limit.
    #[arg(long, value_enum)]
    pub buffering: Option<BufferingArg>,
    /// Print the session as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Hosts to ask (each may be comma-separated); none: the hosts of sessions created here.
    #[arg(value_parser = HostList::parse)]
    pub hosts: Vec<HostList>,
    /// Only sessions whose name matches this glob.
    #[arg(long, value_name = "GLOB")]
    pub name: Option<String>,
    /// Print a JSON array.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// The host, or comma-separated hosts to run on all at once.
    #[arg(value_parser = HostList::parse, default_value = "", hide_default_value = true)]
    pub host: HostList,
    /// Run in this session, creating it if missing; without it a temporary session is used.
    #[arg(long)]
    pub name: Option<String>,
    /// Start the command and return at once; collect its output later with `receive`.
    #[arg(long)]
    pub disconnected: bool,
    /// Set the session's idle timeout (e.g. 90s, 15m, 2h, 1d).
    #[arg(long, value_name = "DURATION", value_parser = IdleTimeout::parse)]
    pub idle_timeout: Option<IdleTimeout>,
    /// Configuration on the host to take defaults from, when invoke creates the session; an
    /// existing session with another configuration is refused.
    #[arg(long = "config", value_name = "NAME")]
    pub configuration: Option<String>,
    /// Buffering mode, when invoke creates the session; an existing session with another mode is
    /// refused.
    #[arg(long, value_enum)]
    pub buffering: Option<BufferingArg>,
    /// Start as a job and return at once with its id (like -AsJob); collect with `receive --job ID`.
    #[arg(long, conflicts_with = "disconnected")]
    pub job: bool,
    /// With --disconnected or --job: print the session and command as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub workflow: WorkflowArgs,
    /// Keep the command's stdin at /dev/null instead of forwarding this stdin (like ssh -n).
    #[arg(short = 'n')]
    pub no_stdin: bool,
    /// The command line, run by the session's shell.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// A job's place in its session's workflow (`invoke`).
#[derive(Debug, Args)]
pub struct WorkflowArgs {
    /// Label the job; `jobs`, `wait`, `receive` and `stop` filter by it with `--label GLOB`.
    #[arg(long, value_name = "TEXT")]
    pub label: Option<String>,
    /// Run after job ID of the same session has ended, however it ended; may be repeated.
    #[arg(long, value_name = "ID")]
    pub after: Vec<u64>,
    /// Run only if job ID of the same session succeeded (exit 0); otherwise end Skipped. May be
    /// repeated.
    #[arg(long, value_name = "ID")]
    pub after_ok: Vec<u64>,
    /// Rerun the command up to N more times while it exits non-zero, in the same shell.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub retry: u32,
    /// Pause between attempts (e.g. 500ms, 10s).
    #[arg(long, value_name = "DURATION", value_parser = values::duration, requires = "retry")]
    pub retry_delay: Option<Duration>,
}

impl WorkflowArgs {
    /// The wire form.
    pub fn options(&self) -> remora_wire::JobOptions {
        use remora_wire::{Dependency, DependencyKind};
        let ended = self.after.iter().map(|&job| Dependency {
            job,
            kind: DependencyKind::Ended,
        });
        let ok = self.after_ok.iter().map(|&job| Dependency {
            job,
            kind: DependencyKind::Succeeded,
        });
        remora_wire::JobOptions {
            label: self.label.clone(),
            after: ended.chain(ok).collect(),
            retries: self.retry,
            retry_delay_ms: self.retry_delay.map_or(0, |d| d.as_millis() as u64),
        }
    }

    /// Whether any workflow option was given.
    pub fn any(&self) -> bool {
        self.label.is_some() || !self.after.is_empty() || !self.after_ok.is_empty() || self.retry > 0
    }
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// The host, or comma-separated hosts (waits for every host).
    #[arg(value_parser = HostList::parse, default_value = "", hide_default_value = true)]
    pub host: HostList,
    #[command(flatten)]
    pub session: SessionSelect,
    /// The job to wait for; may be repeated (default: every job of the session).
    #[arg(long, value_name = "ID")]
    pub job: Vec<u64>,
    /// Only jobs whose label matches this glob.
    #[arg(long, value_name = "GLOB")]
    pub label: Option<String>,
    /// Return when the first job ends, not all of them (Wait-Job -Any).
    #[arg(long)]
    pub any: bool,
    /// Give up after this long and exit 124, like timeout(1) (e.g. 30s, 5m).
    #[arg(long, value_name = "DURATION", value_parser = values::duration)]
    pub timeout: Option<Duration>,
    /// Print the jobs waited for as a JSON array.
    #[arg(long)]
    pub json: bool,
    /// Ring the terminal bell and print a one-line summary when the jobs end.
    #[arg(long)]
    pub notify: bool,
}

#[derive(Debug, Args)]
pub struct ReceiveArgs {
    /// The host, or comma-separated hosts.
    #[arg(value_parser = HostList::parse, default_value = "", hide_default_value = true)]
    pub host: HostList,
    #[command(flatten)]
    pub session: SessionSelect,
    /// Only this job (command id, from `invoke --job` or `jobs`), followed to its end.
    #[arg(long, value_name = "ID")]
    pub job: Option<u64>,
    /// Leave the output to be received again (like Receive-Job -Keep).
    #[arg(long)]
    pub keep: bool,
    /// Only jobs whose label matches this glob, each followed to its end.
    #[arg(long, value_name = "GLOB", conflicts_with = "job")]
    pub label: Option<String>,
    /// Only the output of jobs that have failed (non-zero exit, or Failed).
    #[arg(long, conflicts_with = "job")]
    pub failed: bool,
    /// Ring the terminal bell and print a one-line summary when a job ends.
    #[arg(long)]
    pub notify: bool,
    #[command(flatten)]
    pub transcript: ReceiveTerminal,
}

#[derive(Debug, Args)]
pub struct ShellArgs {
    /// The host (one).
    pub host: String,
    /// Session to open the terminal in, created when missing; without it a `shell-…` session
    /// is created and its name printed on stderr.
    #[arg(long, conflicts_with = "id")]
    pub name: Option<String>,
    /// Session instance id (reattach only).
    #[arg(long)]
    pub id: Option<Uuid>,
    /// Take the terminal over from the client attached to it (that client is told, and exits 1).
    #[arg(long, conflicts_with = "watch")]
    pub force: bool,
    /// Watch read-only beside the interactive client: never types or resizes.
    #[arg(long)]
    pub watch: bool,
    /// Escape character (after a newline: `~.` detach, `~?` help, `~~` a literal one), or `none`;
    /// default: ssh_config's EscapeChar, else `~`.
    #[arg(short = 'e', value_name = "CHAR|none", value_parser = values::escape_char)]
    pub escape: Option<values::EscapeChar>,
    /// Idle timeout of a session this creates or attaches to (e.g. 90s, 15m, 2h, 1d).
    #[arg(long, value_name = "DURATION", value_parser = IdleTimeout::parse)]
    pub idle_timeout: Option<IdleTimeout>,
}

#[derive(Debug, Args)]
pub struct ReceiveTerminal {
    /// Print the session's terminal transcript since the last one, as plain text.
    #[arg(long, conflicts_with_all = ["job", "keep"])]
    pub terminal: bool,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The host, or comma-separated hosts.
    #[arg(value_parser = HostList::parse, default_value = "", hide_default_value = true)]
    pub host: HostList,
    #[command(flatten)]
    pub session: SessionSelect,
    /// Take the session over from the client attached to it (that client is told).
    #[arg(long)]
    pub force: bool,
    /// Change the session's idle timeout (e.g. 90s, 15m, 2h, 1d).
    #[arg(long, value_name = "DURATION", value_parser = IdleTimeout::parse)]
    pub idle_timeout: Option<IdleTimeout>,
    /// Ring the terminal bell and print a one-line summary when a job ends.
    #[arg(long)]
    pub notify: bool,
}

#[derive(Debug, Args)]
pub struct DisconnectArgs {
    /// The host, or comma-separated hosts.
    #[arg(value_parser = HostList::parse, default_value = "", hide_default_value = true)]
    pub host: HostList,
    #[command(flatten)]
    pub session: SessionSelect,
    /// New idle timeout, counted from now (e.g. 90s, 15m, 2h, 1d).
    #[arg(long, value_name = "DURATION", value_parser = IdleTimeout::parse)]
    pub idle_timeout: Option<IdleTimeout>,
    /// New buffering mode.
    #[arg(long, value_enum)]
    pub buffering: Option<BufferingArg>,
    /// Print the session as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct JobsArgs {
    /// The host, or comma-separated hosts.
    #[arg(value_parser = HostList::parse, default_value = "", hide_default_value = true)]
    pub host: HostList,
    #[command(flatten)]
    pub session: SessionSelect,
    /// Print a JSON array.
    #[arg(long, conflicts_with = "follow")]
    pub json: bool,
    /// Only jobs in this state (`failed`: non-zero exit or Failed).
    #[arg(long, value_enum)]
    pub state: Option<JobStateArg>,
    /// Only jobs whose label matches this glob.
    #[arg(long, value_name = "GLOB")]
    pub label: Option<String>,
    /// Keep the table up to date until every job has ended (redrawn on a terminal, otherwise
    /// one line per change).
    #[arg(long)]
    pub follow: bool,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// The host, or comma-separated hosts.
    #[arg(value_parser = HostList::parse, default_value = "", hide_default_value = true)]
    pub host: HostList,
    #[command(flatten)]
    pub session: SessionSelect,
    /// The job to stop (default: the running one).
    #[arg(long, value_name = "ID")]
    pub job: Option<u64>,
    /// Stop every queued or running job whose label matches this glob.
    #[arg(long, value_name = "GLOB", conflicts_with = "job")]
    pub label: Option<String>,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("which").required(true).multiple(true))]
pub struct RmArgs {
    /// The host, or comma-separated hosts.
    #[arg(value_parser = HostList::parse, default_value = "", hide_default_value = true)]
    pub host: HostList,
    /// Session name or glob (`build-*`); may be repeated.
    #[arg(long, group = "which", value_name = "GLOB")]
    pub name: Vec<String>,
    /// Session instance id; may be repeated.
    #[arg(long, group = "which", value_name = "UUID")]
    pub id: Vec<Uuid>,
    /// Show what would be removed without removing it.
    #[arg(long)]
    pub dry_run: bool,
    /// Remove sessions that are running commands without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print the removed sessions as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The remora-agent binary to run (default: next to this `remora`).
    #[arg(long, value_name = "PATH")]
    pub agent: Option<PathBuf>,
}

/// Short options that take a value: the token after one is never the verb.
const VALUED_SHORTS: &[&str] = &["-F", "-i", "-p", "-l", "-J", "-o"];

/// The command line with scp's spelling for `cp`: after the `cp` verb, `-p` (alone or in a
/// cluster like `-rp`) means `--preserve` and `-P PORT` is the port, as scp has them.
pub fn scp_spelling(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut verb = None;
    for (i, arg) in args.iter().enumerate().skip(1) {
        let text = arg.to_string_lossy();
        let after_value = i > 1 && VALUED_SHORTS.contains(&args[i - 1].to_string_lossy().as_ref());
        if !text.starts_with('-') && !after_value {
            verb = (text == "cp").then_some(i);
            break;
        }
    }
    let Some(verb) = verb else { return args };
    let mut out: Vec<std::ffi::OsString> = args[..=verb].to_vec();
    for arg in &args[verb + 1..] {
        match arg.to_str() {
            Some("-P") => out.push("-p".into()),
            Some(flags)
                if flags.starts_with('-')
                    && !flags.starts_with("--")
                    && flags.len() > 1
                    && flags[1..].chars().all(|c| c == 'r' || c == 'p') =>
            {
                if flags.contains('r') {
                    out.push("-r".into());
                }
                if flags.contains('p') {
                    out.push("--preserve".into());
                }
            }
            _ => out.push(arg.clone()),
        }
    }
    out
}

#[cfg(test)]
mod scp_spelling_tests {
    use super::*;

    fn spelled(args: &[&str]) -> Vec<String> {
        let args = args.iter().map(std::ffi::OsString::from).collect();
        scp_spelling(args)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn cp_takes_scp_flags_and_other_verbs_keep_theirs() {
        assert_eq!(
            spelled(&["remora", "cp", "-rp", "-P", "2222", "a", "h:b"]),
            ["remora", "cp", "-r", "--preserve", "-p", "2222", "a", "h:b"]
        );
        assert_eq!(
            spelled(&["remora", "-p", "cp", "ls", "cp"]),
            ["remora", "-p", "cp", "ls", "cp"]
        );
        assert_eq!(
            spelled(&["remora", "invoke", "-p", "22", "h", "--", "cp", "-p"]),
            ["remora", "invoke", "-p", "22", "h", "--", "cp", "-p"]
        );
    }
}
