//! `remora invoke HOST [--name N] [--disconnected] -- CMD…`: run a command (Invoke-Command).

use remora_wire::{Invoke, SessionRef, DEFAULT_WINDOW};

use super::{connect, exit_status};
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
        follow: !args.disconnected,
        window: DEFAULT_WINDOW,
    };
    let mut client = connect(cli, &args.host).await?;
    let mut sink = StdSink::default();
    let outcome = client.invoke(request, &mut sink).await?;
    client.close().await?;
    match outcome.end {
        Some(end) => Ok(exit_status(sink.last_exit.or(end.last_exit_code))),
        None => {
            report_started(&args.host, &outcome, args.json)?;
            Ok(0)
        }
    }
}

/// Tells the user where a disconnected command runs and how to collect it.
fn report_started(host: &str, outcome: &InvokeOutcome, json: bool) -> anyhow::Result<()> {
    let session = &outcome.invoked.session;
    let command = &outcome.invoked.command;
    if json {
        let mut object = output::session_json(session);
        object["command_id"] = command.id.into();
        println!("{}", serde_json::to_string_pretty(&object)?);
    } else {
        println!("{}", session.name);
        eprintln!(
            "started command {} in session {} (instance {}) on {host}; collect its output with `remora receive {host} --name {}`",
            command.id, session.name, session.instance_id, session.name
        );
    }
    Ok(())
}
