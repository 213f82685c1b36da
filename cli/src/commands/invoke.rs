//! `remora invoke HOST[,HOST…] [--name N] [--disconnected | --job] -- CMD…`: run a command
//! (Invoke-Command, -InDisconnectedSession, -AsJob). With several hosts the command runs on all
//! at once and output lines are prefixed with the host. `--config` and `--buffering` apply when
//! invoke creates the session; the agent refuses them for an existing session set otherwise.
//!
//! A stdin that is not a terminal is forwarded to the command (every host gets all of it);
//! `-n` keeps /dev/null. With `--disconnected`/`--job` it is stored on the host to its end
//! before the command starts, and invoke returns once the host has acknowledged it.

use remora_unix::LockRecover;
use std::io::IsTerminal;

use remora_wire::{InputMode, Invoke, SessionRef, DEFAULT_WINDOW};

use remora_client::{
    input::{self, InputFeed, InputSource},
    registry, InvokeOutcome,
};

use super::{combined_status, exit_status, with_client};
use crate::{
    args::{Cli, InvokeArgs},
    fanout::fan_out_at,
    fleet, output,
    values::IdleTimeout,
};

pub async fn run(cli: &Cli, args: &InvokeArgs) -> anyhow::Result<u8> {
    let request = Invoke {
        session: args.name.clone().map(SessionRef::Name),
        command: args.command.join(" "),
        create: true,
        follow: !(args.disconnected || args.job),
        window: DEFAULT_WINDOW,
        idle_timeout_secs: args.idle_timeout.map(IdleTimeout::secs),
        configuration: args.configuration.clone(),
        buffering: args.buffering.map(Into::into),
        job: args.workflow.options(),
        stdin: InputMode::Null,
    };
    let hosts = cli.fleet.resolve(&args.host)?;
    let prefixed = hosts.is_many();
    let mode = cli.fleet.output();
    let sources = stdin_sources(args, hosts.0.len(), cli.fleet.throttle)?;
    let inputs = std::sync::Mutex::new(sources);
    let gathered = fan_out_at(&hosts, cli.fleet.throttle, |host| {
        let (mut request, mode) = (request.clone(), &mode);
        let source = inputs.lock_or_recover().pop();
        async move {
            let mut sink = crate::fleet::sink(mode, &host, prefixed)?;
            let mut feed = source.map(InputFeed::new);
            if feed.is_some() {
                request.stdin = if request.follow {
                    InputMode::Stream
                } else {
                    InputMode::Stored
                };
            }
            let outcome = with_client(cli, &host, async |client| {
                client.invoke_with_input(request, &mut sink, feed.as_mut()).await
            })
            .await?;
            Ok((outcome, sink))
        }
    })
    .await;
    let mut statuses = Vec::new();
    let mut started = Vec::new();
    let mut finished = Vec::new();
    for (host, (outcome, sink)) in gathered.answers {
        registry::remember(&host, std::slice::from_ref(&outcome.invoked.session));
        match &outcome.end {
            Some(end) => {
                let status = exit_status(sink.last_exit.or(end.last_exit_code));
                statuses.push(status);
                finished.push((host, sink, status));
            }
            None => started.push((host, outcome)),
        }
    }
    fleet::deliver(&mode, finished)?;
    if !started.is_empty() {
        report_started(&started, args, prefixed)?;
    }
    statuses.extend(started.iter().map(|_| 0));
    Ok(combined_status(gathered.status, &statuses))
}

/// This process's stdin, once per host, when it is forwarded: not with `-n` and not from a
/// terminal (interactive use is `remora shell`), like ssh.
/// This process's stdin for each host, or nothing (a terminal, or `-n`). Up to the throttle, the
/// hosts read one stream together (the copies are paced by the slowest reader); past it, hosts
/// that start later could never read their copy in time, so the input is first spooled to an
/// unlinked temporary file and each host reads the file (like `pssh -I`, on disk).
fn stdin_sources(args: &InvokeArgs, hosts: usize, throttle: usize) -> anyhow::Result<Vec<InputSource>> {
    if args.no_stdin || std::io::stdin().is_terminal() {
        return Ok(Vec::new());
    }
    if hosts > throttle {
        return spooled_stdin(hosts);
    }
    let stdin: InputSource = Box::new(tokio::io::stdin());
    Ok(match hosts {
        1 => vec![stdin],
        many => input::tee(stdin, many),
    })
}

/// Copies stdin to an unlinked temporary file and opens it once per host.
fn spooled_stdin(hosts: usize) -> anyhow::Result<Vec<InputSource>> {
    let mut spool = tempfile::tempfile()?;
    std::io::copy(&mut std::io::stdin().lock(), &mut spool)?;
    let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&spool));
    (0..hosts)
        .map(|_| {
            let file = std::fs::File::open(&path)?;
            Ok(Box::new(tokio::fs::File::from_std(file)) as InputSource)
        })
        .collect()
}

/// Tells the user where disconnected commands run and how to collect them. stdout gets the
/// session name (`--disconnected`) or the job id (`--job`), for scripts.
fn report_started(started: &[(String, InvokeOutcome)], args: &InvokeArgs, prefixed: bool) -> anyhow::Result<()> {
    if args.json {
        let objects: Vec<_> = started
            .iter()
            .map(|(host, outcome)| started_json(host, outcome))
            .collect();
        let value = if prefixed {
            serde_json::Value::from(objects)
        } else {
            objects.into_iter().next().unwrap_or_default()
        };
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    for (host, outcome) in started {
        let (session, command) = (&outcome.invoked.session, &outcome.invoked.command);
        let name = remora_client::visible(&session.name);
        let (printed, collect) = if args.job {
            (
                command.id.to_string(),
                format!("remora receive {host} --name {name} --job {}", command.id),
            )
        } else {
            (name.to_string(), format!("remora receive {host} --name {name}"))
        };
        let prefix = if prefixed { format!("{host}: ") } else { String::new() };
        println!("{prefix}{printed}");
        eprintln!(
            "{prefix}started job {} in session {} (instance {}) on {host}; collect its output with `{collect}`",
            command.id, name, session.instance_id
        );
    }
    Ok(())
}

fn started_json(host: &str, outcome: &InvokeOutcome) -> serde_json::Value {
    let mut object = output::session_json(&outcome.invoked.session);
    object["host"] = host.into();
    object["command"] = output::command_json(&outcome.invoked.command);
    object
}
