//! `remora receive HOST[,HOST…] (--name N | --id UUID) [--job ID] [--keep]`: print output not
//! yet received (Receive-PSSession, Receive-Job).

use std::io::Write;

use remora_wire::Receive;

use super::{combined_status, exit_status, with_client};
use crate::{
    args::{Cli, ReceiveArgs},
    fanout::fan_out,
    fleet,
    output::StdSink,
    values::HostList,
};

pub async fn run(cli: &Cli, args: &ReceiveArgs) -> anyhow::Result<u8> {
    if args.transcript.terminal {
        return transcript_on_hosts(cli, args).await;
    }
    let request = Receive {
        command: args.job,
        keep: args.keep,
        ..Receive::follow_all(args.session.reference())
    };
    receive_on_hosts(cli, &cli.fleet.resolve(&args.host)?, request).await
}

/// Receives on every host at once, prefixing lines when there are several; used by `connect` too.
pub async fn receive_on_hosts(cli: &Cli, hosts: &HostList, request: Receive) -> anyhow::Result<u8> {
    let prefixed = hosts.is_many();
    let mode = cli.fleet.output();
    let gathered = fan_out(cli, hosts, |host| {
        let (request, mode) = (request.clone(), &mode);
        async move {
            let mut sink = StdSink::for_mode(mode, &host, prefixed)?;
            let (receiving, end) =
                with_client(cli, &host, async |client| client.receive(request, &mut sink).await).await?;
            let name = &receiving.session.name;
            if let Some(reason) = &end.released_by {
                eprintln!("remora: {host}: session {name} was {reason}; its commands keep running there");
                return Ok((sink, 1));
            }
            if let Some(reason) = &receiving.session.broken_reason {
                eprintln!("remora: {host}: session {name} is broken: {reason}");
            }
            let status = exit_status(sink.last_exit.or(end.last_exit_code));
            Ok((sink, status))
        }
    })
    .await;
    let statuses: Vec<u8> = gathered.answers.iter().map(|(_, (_, status))| *status).collect();
    let finished = gathered
        .answers
        .into_iter()
        .map(|(host, (sink, status))| (host, sink, status))
        .collect();
    fleet::deliver(&mode, finished)?;
    Ok(combined_status(gathered.status, &statuses))
}

/// `receive --terminal`: each host's terminal transcript since the last one, as plain text.
async fn transcript_on_hosts(cli: &Cli, args: &ReceiveArgs) -> anyhow::Result<u8> {
    let reference = args.session.reference();
    let hosts = cli.fleet.resolve(&args.host)?;
    let prefixed = hosts.is_many();
    let gathered = fan_out(cli, &hosts, |host| {
        let reference = reference.clone();
        async move {
            let transcript = with_client(cli, &host, async |client| client.transcript(reference).await).await?;
            let mut out = std::io::stdout().lock();
            for line in transcript.text.lines() {
                match prefixed {
                    true => writeln!(out, "{host}: {line}")?,
                    false => writeln!(out, "{line}")?,
                }
            }
            if transcript.lines_lost > 0 {
                eprintln!(
                    "remora: {host}: {} older lines were past the scrollback and are not in this transcript",
                    transcript.lines_lost
                );
            }
            Ok(0)
        }
    })
    .await;
    let statuses: Vec<u8> = gathered.answers.into_iter().map(|(_, status)| status).collect();
    Ok(combined_status(gathered.status, &statuses))
}
