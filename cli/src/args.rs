//! Every flag and verb of `remora`, PowerShell verbs with Linux spelling.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};
use remora_client::ssh::SshOptions;
use uuid::Uuid;

use crate::values::{self, BufferingArg, CpPath, HostList, IdleTimeout};

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
}

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
    /// The agent binary to copy; by default the remora-agent next to this remora, else on PATH.
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
    #[arg(value_parser = HostList::parse)]
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
    #[arg(value_parser = HostList::parse)]
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
    /// Keep the command's stdin at /dev/null instead of forwarding this stdin (like ssh -n).
    #[arg(short = 'n')]
    pub no_stdin: bool,
    /// The command line, run by the session's shell.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ReceiveArgs {
    /// The host, or comma-separated hosts.
    #[arg(value_parser = HostList::parse)]
    pub host: HostList,
    #[command(flatten)]
    pub session: SessionSelect,
    /// Only this job (command id, from `invoke --job` or `jobs`), followed to its end.
    #[arg(long, value_name = "ID")]
    pub job: Option<u64>,
    /// Leave the output to be received again (like Receive-Job -Keep).
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The host, or comma-separated hosts.
    #[arg(value_parser = HostList::parse)]
    pub host: HostList,
    #[command(flatten)]
    pub session: SessionSelect,
    /// Take the session over from the client attached to it (that client is told).
    #[arg(long)]
    pub force: bool,
    /// Change the session's idle timeout (e.g. 90s, 15m, 2h, 1d).
    #[arg(long, value_name = "DURATION", value_parser = IdleTimeout::parse)]
    pub idle_timeout: Option<IdleTimeout>,
}

#[derive(Debug, Args)]
pub struct DisconnectArgs {
    /// The host, or comma-separated hosts.
    #[arg(value_parser = HostList::parse)]
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
    #[arg(value_parser = HostList::parse)]
    pub host: HostList,
    #[command(flatten)]
    pub session: SessionSelect,
    /// Print a JSON array.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// The host, or comma-separated hosts.
    #[arg(value_parser = HostList::parse)]
    pub host: HostList,
    #[command(flatten)]
    pub session: SessionSelect,
    /// The job to stop (default: the running one).
    #[arg(long, value_name = "ID")]
    pub job: Option<u64>,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("which").required(true).multiple(true))]
pub struct RmArgs {
    /// The host, or comma-separated hosts.
    #[arg(value_parser = HostList::parse)]
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
