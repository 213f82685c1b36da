//! `remora receive HOST (--name N | --id UUID) [--job ID] [--keep]`: print output not yet
//! received (Receive-PSSession, Receive-Job).

use remora_wire::{Receive, SessionRef};

use super::{connect, exit_status};
use crate::{
    cli::{Cli, ReceiveArgs},
    output::StdSink,
};

pub async fn run(cli: &Cli, args: &ReceiveArgs) -> anyhow::Result<u8> {
    let request = Receive {
        command: args.job,
        keep: args.keep,
        ..Receive::follow_all(session_ref(&args.name, args.id))
    };
    let mut client = connect(cli, &args.host).await?;
    let mut sink = StdSink::default();
    let (receiving, end) = client.receive(request, &mut sink).await?;
    client.close().await?;
    if let Some(reason) = &end.released_by {
        eprintln!("remora: session {} was {reason}", receiving.session.name);
        return Ok(1);
    }
    if let Some(reason) = &receiving.session.broken_reason {
        eprintln!("remora: session {} is broken: {reason}", receiving.session.name);
    }
    Ok(exit_status(sink.last_exit.or(end.last_exit_code)))
}

/// `--id` wins over `--name` (clap lets only one through).
pub fn session_ref(name: &Option<String>, id: Option<uuid::Uuid>) -> SessionRef {
    match (name, id) {
        (_, Some(id)) => SessionRef::Id(id),
        (Some(name), None) => SessionRef::Name(name.clone()),
        (None, None) => unreachable!("clap requires --name or --id"),
    }
}
