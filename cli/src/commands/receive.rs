//! `remora receive HOST[,HOST…] (--name N | --id UUID) [--job ID] [--keep]`: print output not
//! yet received (Receive-PSSession, Receive-Job).

use remora_wire::Receive;

use super::{
    combined_status, exit_status,
    fanout::{on_each, report_failures, split_hosts, successes},
    with_client,
};
use crate::{
    args::{Cli, ReceiveArgs},
    output::StdSink,
};

pub async fn run(cli: &Cli, args: &ReceiveArgs) -> anyhow::Result<u8> {
    let request = Receive {
        command: args.job,
        keep: args.keep,
        ..Receive::follow_all(args.session.reference())
    };
    receive_on_hosts(cli, &args.host, request).await
}

/// Receives on every host at once, prefixing lines when there are several; used by `connect` too.
pub async fn receive_on_hosts(cli: &Cli, host_spec: &str, request: Receive) -> anyhow::Result<u8> {
    let hosts = split_hosts(host_spec)?;
    let prefixed = hosts.len() > 1;
    let results = on_each(&hosts, |host| {
        let request = request.clone();
        async move {
            let mut sink = StdSink::for_host(&host, prefixed);
            let (receiving, end) =
                with_client(cli, &host, async |client| client.receive(request, &mut sink).await).await?;
            let name = &receiving.session.name;
            if let Some(reason) = &end.released_by {
                eprintln!("remora: {host}: session {name} was {reason}; its commands keep running there");
                return Ok(1);
            }
            if let Some(reason) = &receiving.session.broken_reason {
                eprintln!("remora: {host}: session {name} is broken: {reason}");
            }
            Ok(exit_status(sink.last_exit.or(end.last_exit_code)))
        }
    })
    .await;
    let failures = report_failures(&results);
    let statuses: Vec<u8> = successes(results).into_iter().map(|(_, status)| status).collect();
    Ok(combined_status(failures, &statuses))
}
