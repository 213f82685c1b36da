//! `remora-agent`: parses arguments and hands over to the library.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use remora_agent::{entry, StatePaths};

/// remora's per-user agent. sshd runs `remora-agent subsystem`; it starts the daemon on demand.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve one SSH channel: what sshd runs for `Subsystem remora`.
    Subsystem {
        /// Keep socket, data, config and logs under DIR instead of the per-user directories.
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
    /// Run the per-user session daemon in the foreground (normally started by `subsystem`).
    Daemon {
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// Carry on from a handover snapshot (the previous binary of this process passes it).
        #[arg(long, value_name = "SNAPSHOT", hide = true)]
        resume: Option<PathBuf>,
    },
    /// Hand the running daemon over to this binary: sessions, running commands and unreceived
    /// output carry on (run after replacing remora-agent; `remora install` runs it).
    Upgrade {
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
    /// Print which handover formats this binary reads (a daemon handing over asks).
    #[command(hide = true)]
    HandoverCheck,
    /// Validate agent.toml and print the effective session configurations.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Hold one session's shell for the daemon, and for the next one if it dies (the daemon
    /// starts it; its stdin is the control socket).
    #[command(hide = true)]
    Keeper {
        /// Where to listen for the next daemon once orphaned.
        #[arg(long, value_name = "PATH")]
        socket: PathBuf,
    },
    /// An embedded SSH server serving only the remora subsystem (for hosts without sshd).
    Serve {
        /// Address to listen on, e.g. 127.0.0.1:2222 (port 0 picks a free port).
        #[arg(long, value_name = "ADDR")]
        listen: SocketAddr,
        /// Public keys allowed to log in (OpenSSH authorized_keys format).
        #[arg(long, value_name = "FILE", default_value = "~/.ssh/authorized_keys")]
        authorized_keys: String,
        /// Host key to use; generated and kept under the config dir when absent.
        #[arg(long, value_name = "FILE")]
        host_key: Option<PathBuf>,
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Check the configuration file; exits 1 and says what is wrong if it does not validate.
    Check {
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Command::Subsystem { state_dir } => paths(state_dir).and_then(entry::subsystem),
        Command::Daemon { state_dir, resume } => paths(state_dir).and_then(|paths| entry::daemon(paths, resume)),
        Command::Upgrade { state_dir } => paths(state_dir).and_then(entry::upgrade),
        Command::HandoverCheck => entry::handover_check(),
        Command::Keeper { socket } => entry::keeper(&socket),
        Command::Config {
            action: ConfigAction::Check { state_dir },
        } => paths(state_dir).and_then(entry::config_check),
        Command::Serve {
            listen,
            authorized_keys,
            host_key,
            state_dir,
        } => paths(state_dir).and_then(|paths| entry::serve(paths, listen, &authorized_keys, host_key)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("remora-agent: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn paths(state_dir: Option<PathBuf>) -> anyhow::Result<StatePaths> {
    Ok(StatePaths::from_option(state_dir.as_deref())?)
}
