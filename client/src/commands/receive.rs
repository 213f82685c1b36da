//! `remora receive HOST (--name N | --id UUID)`: print output not yet received (Receive-PSSession).

use remora_wire::{Receive, SessionRef, DEFAULT_WINDOW};

use super::{connect, exit_status};
use crate::{
    cli::{Cli, ReceiveArgs},
    output::StdSink,
};

pub async fn run(cli: &Cli, args: &ReceiveArgs) -> anyhow::Result<u8> {
    let session = match (&args.name, args.id) {
        (_, Some(id)) => SessionRef::Id(id),
        (Some(name), None) => SessionRef::Name(name.clone()),
        (None, None) => unreachable!("clap requires --name or --id"),
    };
    let request = Receive {
        session,
        follow: true,
        window: DEFAULT_WINDOW,
    };
    let mut client = connect(cli, &args.host).await?;
    let mut sink = StdSink::default();
    let (receiving, end) = client.receive(request, &mut sink).await?;
    client.close().await?;
    if let Some(reason) = &receiving.session.broken_reason {
        eprintln!(
            "remora: session {} is broken: {reason}",
            receiving.session.name
        );
    }
    Ok(exit_status(sink.last_exit.or(end.last_exit_code)))
}
