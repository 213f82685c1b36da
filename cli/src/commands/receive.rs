//! `remora receive HOST[,HOST…] (--name N | --id UUID) [--job ID | --label GLOB | --failed]
//! [--keep] [--notify]`: print output not yet received (Receive-PSSession, Receive-Job).
//! `--label` and `--failed` choose jobs first and receive each of them to its end, in order,
//! leaving every other job's output to be received later.

use std::io::Write;

use remora_client::{visible, Client};
use remora_wire::{ListCommands, Receive, StreamEnd};

use super::{combined_status, exit_status, with_client};
use crate::{
    args::{Cli, ReceiveArgs},
    fanout::fan_out,
    fleet,
    notify::NotifySink,
    values::{job_failed, HostList},
};

/// Which jobs a selective receive takes.
#[derive(Debug, Clone, Default)]
struct Selection {
    label: Option<String>,
    failed: bool,
}

pub async fn run(cli: &Cli, args: &ReceiveArgs) -> anyhow::Result<u8> {
    if args.transcript.terminal {
        return transcript_on_hosts(cli, args).await;
    }
    let request = Receive {
        command: args.job,
        keep: args.keep,
        ..Receive::follow_all(args.session.reference())
    };
    let selection = (args.label.is_some() || args.failed).then(|| Selection {
        label: args.label.clone(),
        failed: args.failed,
    });
    let hosts = cli.fleet.resolve(&args.host)?;
    receive_selected(cli, &hosts, request, selection, args.notify).await
}

/// Receives on every host at once, prefixing lines when there are several; used by `connect` too.
pub async fn receive_on_hosts(cli: &Cli, hosts: &HostList, request: Receive, notify: bool) -> anyhow::Result<u8> {
    receive_selected(cli, hosts, request, None, notify).await
}

async fn receive_selected(
    cli: &Cli,
    hosts: &HostList,
    request: Receive,
    selection: Option<Selection>,
    notify: bool,
) -> anyhow::Result<u8> {
    let prefixed = hosts.is_many();
    let mode = cli.fleet.output();
    let gathered = fan_out(cli, hosts, |host| {
        let (request, mode) = (request.clone(), &mode);
        let selection = selection.clone();
        async move {
            let mut out = crate::fleet::sink(mode, &host, prefixed)?;
            let mut sink = NotifySink {
                inner: &mut out,
                host: host.clone(),
                enabled: notify,
            };
            let (name, broken, end) = with_client(cli, &host, async |client| match &selection {
                None => {
                    let (receiving, end) = client.receive(request, &mut sink).await?;
                    Ok((receiving.session.name, receiving.session.broken_reason, Some(end)))
                }
                Some(selection) => receive_each(client, request, selection, &mut sink).await,
            })
            .await?;
            if let Some(reason) = end.as_ref().and_then(|e| e.released_by.as_ref()) {
                let (name, reason) = (visible(&name), visible(reason));
                eprintln!("remora: {host}: session {name} was {reason}; its commands keep running there");
                return Ok((out, 1));
            }
            if let Some(reason) = &broken {
                let (name, reason) = (visible(&name), visible(reason));
                eprintln!("remora: {host}: session {name} is broken: {reason}");
            }
            let status = exit_status(out.last_exit.or(end.and_then(|e| e.last_exit_code)));
            Ok((out, status))
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

/// Receives each chosen job to its end, oldest first. With `failed`, only jobs that have already
/// ended failed are chosen (a running job may still succeed).
async fn receive_each(
    client: &mut Client,
    request: Receive,
    selection: &Selection,
    sink: &mut NotifySink<'_>,
) -> remora_client::Result<(String, Option<String>, Option<StreamEnd>)> {
    let list = client
        .jobs(ListCommands {
            session: request.session.clone(),
            label_glob: selection.label.clone(),
        })
        .await?;
    let chosen = list
        .commands
        .iter()
        .filter(|c| !selection.failed || job_failed(c))
        .map(|c| c.id);
    let mut last = None;
    for job in chosen {
        let one = Receive {
            session: remora_wire::SessionRef::Id(list.session.instance_id),
            command: Some(job),
            ..request.clone()
        };
        let (_, end) = client.receive(one, sink).await?;
        if end.released_by.is_some() {
            return Ok((list.session.name, list.session.broken_reason, Some(end)));
        }
        last = Some(end);
    }
    Ok((list.session.name, list.session.broken_reason, last))
}
