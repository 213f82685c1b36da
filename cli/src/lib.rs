//! The `remora` command: argument definitions, one module per verb, and the printing only the
//! command does. Everything it does to hosts goes through the `remora-client` library.
//!
//! Exit codes: a remote command's status for `invoke`/`receive`; 255 when the host cannot be
//! reached or authentication fails (like ssh); 1 for every other error, 2 for usage errors.

mod args;
mod commands;
mod fanout;
mod fleet;
mod inventory;
mod keyboard;
mod notify;
mod output;
mod terminal;
pub mod values;

use std::process::ExitCode;

pub use args::*;
use remora_client::ClientError;

/// Exit status for connection and authentication failures, as ssh uses.
pub const EXIT_CONNECTION: u8 = 255;

/// Runs one invocation of `remora`.
pub fn run(cli: Cli) -> ExitCode {
    init_tracing(cli.verbose);
    // One thread, like ssh: the SSH session's task and the caller's hand every packet to each
    // other, and on one thread that costs a queue push instead of a cross-thread wakeup (a
    // third of the client's time in a bulk stream). Hosts of a fleet still run concurrently.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("remora: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(&cli)) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("remora: {}", remora_client::visible_lines(&format!("{err:#}")));
            ExitCode::from(exit_code_for(&err))
        }
    }
}

/// `remora completions SHELL`: the completion script, generated from the CLI definition.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<u8> {
    let mut command = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut command, "remora", &mut std::io::stdout());
    Ok(0)
}

/// `remora man`: the man page in roff, generated from the CLI definition.
pub fn man_page() -> anyhow::Result<u8> {
    let command = <Cli as clap::CommandFactory>::command();
    clap_mangen::Man::new(command).render(&mut std::io::stdout())?;
    Ok(0)
}

fn exit_code_for(err: &anyhow::Error) -> u8 {
    match err.downcast_ref::<ClientError>() {
        Some(client) if client.is_connection_failure() => EXIT_CONNECTION,
        _ => 1,
    }
}

fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info,russh=warn",
        2 => "debug,russh=info",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("REMORA_LOG").unwrap_or_else(|_| level.into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // Without -v, warnings are messages for people: level and text, no timestamps or modules.
    let _ = if verbose == 0 {
        builder.without_time().with_target(false).try_init()
    } else {
        builder.try_init()
    };
}
