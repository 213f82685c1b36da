//! `remora invoke HOST [--name N] [--disconnected | --job] -- CMD…`: run a command
//! (Invoke-Command, -InDisconnectedSession, -AsJob).

use remora_wire::{Invoke, SessionRef, DEFAULT_WINDOW};

use super::{connect, exit_status, new::parse_idle_timeout};
use crate::{
    cli::{Cli, InvokeArgs},
    output::{self, StdSink},
    InvokeOutcome,
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
    let mut client = connect(cli, &args.host).await?;
    let mut sink = StdSink::default();
    let outcome = client.invoke(request, &mut sink).await?;
    client.close().await?;
    match outcome.end {
        Some(end) => Ok(exit_status(sink.last_exit.or(end.last_exit_code))),
        None => {
            report_started(&args.host, &outcome, args)?;
            Ok(0)
        }
    }
}

/// Tells the user where a disconnected command runs and how to collect it. stdout gets the
/// session name (`--disconnected`) or the job id (`--job`), for scripts.
fn report_started(host: &str, outcome: &InvokeOutcome, args: &InvokeArgs) -> anyhow::Result<()> {
    let session = &outcome.invoked.session;
    let command = &outcome.invoked.command;
    if args.json {
        let mut object = output::session_json(session);
        object["command"] = output::command_json(command);
        println!("{}", serde_json::to_string_pretty(&object)?);
        return Ok(());
    }
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
    println!("{printed}");
    eprintln!(
        "started job {} in session {} (instance {}) on {host}; collect its output with `{collect}`",
        command.id, session.name, session.instance_id
    );
    Ok(())
}
