//! `remora invoke HOST[,HOST…] [--name N] [--disconnected | --job] -- CMD…`: run a command
//! (Invoke-Command, -InDisconnectedSession, -AsJob). With several hosts the command runs on all
//! at once and output lines are prefixed with the host.

use remora_wire::{Invoke, SessionRef, DEFAULT_WINDOW};

use super::{
    combined_status, exit_status,
    fanout::{on_each, report_failures, split_hosts, successes},
    new::parse_idle_timeout,
    with_client,
};
use remora_client::{registry, InvokeOutcome};

use crate::{
    args::{Cli, InvokeArgs},
    output::{self, StdSink},
};

pub async fn run(cli: &Cli, args: &InvokeArgs) -> anyhow::Result<u8> {
    let request = Invoke {
        session: args.name.clone().map(SessionRef::Name),
        command: args.command.join(" "),
        create: true,
        follow: !(args.disconnected || args.job),
        window: DEFAULT_WINDOW,
        idle_timeout_secs: args.idle_timeout.as_deref().map(parse_idle_timeout).transpose()?,
    };
    let hosts = split_hosts(&args.host)?;
    let prefixed = hosts.len() > 1;
    let results = on_each(&hosts, |host| {
        let request = request.clone();
        async move {
            let mut sink = StdSink::for_host(&host, prefixed);
            let outcome = with_client(cli, &host, async |client| client.invoke(request, &mut sink).await).await?;
            Ok((outcome, sink.last_exit))
        }
    })
    .await;
    let failures = report_failures(&results);
    let mut statuses = Vec::new();
    let mut started = Vec::new();
    for (host, (outcome, last_exit)) in successes(results) {
        registry::remember(&host, std::slice::from_ref(&outcome.invoked.session));
        match &outcome.end {
            Some(end) => statuses.push(exit_status(last_exit.or(end.last_exit_code))),
            None => started.push((host, outcome)),
        }
    }
    report_started(&started, args, prefixed)?;
    statuses.extend(started.iter().map(|_| 0));
    Ok(combined_status(failures, &statuses))
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
        let (printed, collect) = if args.job {
            (
                command.id.to_string(),
                format!("remora receive {host} --name {} --job {}", session.name, command.id),
            )
        } else {
            (
                session.name.clone(),
                format!("remora receive {host} --name {}", session.name),
            )
        };
        let prefix = if prefixed { format!("{host}: ") } else { String::new() };
        println!("{prefix}{printed}");
        eprintln!(
            "{prefix}started job {} in session {} (instance {}) on {host}; collect its output with `{collect}`",
            command.id, session.name, session.instance_id
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
