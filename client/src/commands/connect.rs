//! `remora connect HOST --name N [--force] [--idle-timeout D]`: attach and follow live output
//! (Connect-PSSession). Ctrl-C detaches; the remote commands keep running.

use remora_wire::Receive;

use super::{connect, exit_status, new::parse_idle_timeout, receive::session_ref};
use crate::{
    cli::{Cli, ConnectArgs},
    output::StdSink,
};

pub async fn run(cli: &Cli, args: &ConnectArgs) -> anyhow::Result<u8> {
    let request = Receive {
        force: args.force,
        idle_timeout_secs: args.idle_timeout.as_deref().map(parse_idle_timeout).transpose()?,
        ..Receive::follow_all(session_ref(&args.name, args.id))
    };
    let mut client = connect(cli, &args.host).await?;
    let mut sink = StdSink::default();
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| args.id.map(|id| id.to_string()).unwrap_or_default());
    eprintln!(
        "remora: attached to {name} on {}; Ctrl-C detaches, commands keep running",
        args.host
    );
    let outcome = tokio::select! {
        outcome = client.receive(request, &mut sink) => outcome?,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("\nremora: detached from {name}; reattach with `remora connect {} --name {name}`", args.host);
            return Ok(0);
        }
    };
    client.close().await?;
    let (_, end) = outcome;
    if let Some(reason) = &end.released_by {
        eprintln!("remora: session {name} was {reason}; its commands keep running there");
        return Ok(1);
    }
    Ok(exit_status(sink.last_exit.or(end.last_exit_code)))
}
