//! One module per verb, mirroring the agent's `handler/`.

mod config;
mod conn;
mod connect;
mod cp;
mod demo;
mod disconnect;
mod install;
mod invoke;
mod jobs;
mod ls;
mod new;
mod receive;
mod rm;
mod shell;
mod stop;
mod wait;

use remora_client::{
    holder::Holder,
    resume::{ReconnectEvent, ReconnectPolicy},
    Client,
};

use crate::{
    args::{Cli, Verb},
    output,
};

/// Runs the verb; returns the process exit status.
pub async fn run(cli: &Cli) -> anyhow::Result<u8> {
    match &cli.verb {
        Verb::New(args) => new::run(cli, args).await,
        Verb::Ls(args) => ls::run(cli, args).await,
        Verb::Invoke(args) => invoke::run(cli, args).await,
        Verb::Receive(args) => receive::run(cli, args).await,
        Verb::Rm(args) => rm::run(cli, args).await,
        Verb::Jobs(args) => jobs::run(cli, args).await,
        Verb::Connect(args) => connect::run(cli, args).await,
        Verb::Disconnect(args) => disconnect::run(cli, args).await,
        Verb::Stop(args) => stop::run(cli, args).await,
        Verb::Shell(args) => shell::run(cli, args).await,
        Verb::Wait(args) => wait::run(cli, args).await,
        Verb::Demo(args) => demo::run(args).await,
        Verb::Config(args) => config::run(cli, args),
        Verb::Cp(args) => cp::run(cli, args).await,
        Verb::Install(args) => install::run(cli, args).await,
        Verb::Completions(args) => crate::completions(args.shell),
        Verb::Man => crate::man_page(),
        Verb::Conn(args) => conn::run(cli, args).await,
        Verb::Hold(args) => conn::hold(args).await,
    }
}

/// Connects to one host with the command line's SSH settings and reconnect policy.
pub(crate) async fn connect(cli: &Cli, host: &str) -> anyhow::Result<Client> {
    let options = cli.ssh_options();
    let mut client = match holder(cli) {
        Some(holder) => Client::connect_reusing(host, &options, &holder).await?,
        None => Client::connect(host, &options).await?,
    };
    client.set_reconnect(reconnect_policy(cli, host));
    Ok(client)
}

/// The user's connection holder, started from this program; `None` with `--no-reuse`.
fn holder(cli: &Cli) -> Option<Holder> {
    if cli.no_reuse {
        return None;
    }
    std::env::current_exe().ok().map(Holder::new)
}

/// `--reconnect-for`, reporting each step on stderr.
fn reconnect_policy(cli: &Cli, host: &str) -> ReconnectPolicy {
    reconnect_policy_ending(cli, host, "\n")
}

/// The same status lines, each ended by `line_end` (`\r\n` while the terminal is raw).
fn reconnect_policy_ending(cli: &Cli, host: &str, line_end: &'static str) -> ReconnectPolicy {
    let window = cli.reconnect_for;
    let host = host.to_string();
    let report = move |event: &ReconnectEvent| {
        let line = match event {
            ReconnectEvent::LinkLost { error } => format!(
                "remora: {host}: link lost ({error}); reconnecting for up to {}",
                output::duration(window.as_secs())
            ),
            ReconnectEvent::Retrying { elapsed, .. } => {
                format!("remora: {host}: link lost, retrying ({}s)...", elapsed.as_secs())
            }
            ReconnectEvent::Resumed { after } => format!(
                "remora: {host}: resumed after {:.1}s, from the first byte not yet received",
                after.as_secs_f64()
            ),
            ReconnectEvent::GaveUp { after } => {
                format!("remora: {host}: gave up reconnecting after {}s", after.as_secs())
            }
        };
        eprint!("{}{line_end}", remora_client::visible(&line));
    };
    ReconnectPolicy {
        window,
        on_event: Some(std::sync::Arc::new(report)),
        ..ReconnectPolicy::default()
    }
}

/// Connects to `host`, runs `work`, and closes the connection cleanly.
async fn with_client<T>(
    cli: &Cli,
    host: &str,
    work: impl AsyncFnOnce(&mut Client) -> remora_client::Result<T>,
) -> anyhow::Result<T> {
    let mut client = connect(cli, host).await?;
    let value = work(&mut client).await?;
    client.close().await?;
    Ok(value)
}

/// One exit status for many hosts: a single host's status as is; for several, 0 only when every
/// host succeeded, 255 if one could not be reached, else 1.
fn combined_status(failures: u8, statuses: &[u8]) -> u8 {
    match (failures, statuses) {
        (0, [one]) => *one,
        (0, many) if many.iter().all(|s| *s == 0) => 0,
        (0, _) => 1,
        (failed, _) => failed,
    }
}

/// Exit status for a command that ended without one (failed or stopped).
const NO_EXIT_CODE: u8 = 1;

/// A remote exit code as a process exit status (shells report signals as 128+n already).
fn exit_status(code: Option<i32>) -> u8 {
    code.map_or(NO_EXIT_CODE, |c| u8::try_from(c.clamp(0, 255)).unwrap_or(NO_EXIT_CODE))
}
