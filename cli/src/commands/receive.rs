//! `remora receive HOST[,HOST…] (--name N | --id UUID) [--job ID | --label GLOB | --failed]
//! [--keep] [--notify]`: print output not yet received (Receive-PSSession, Receive-Job).
//! `--label` and `--failed` choose jobs first and receive each of them to its end, in order,
//! leaving every other job's output to be received later.

use remora_client::Client;
use remora_wire::{ListCommands, Receive, StreamEnd};

use super::{combined_status, exit_status, with_client};
use crate::{
    args::{Cli, ReceiveArgs},
    fanout::fan_out,
    notify::NotifySink,
    output::StdSink,
    values::{job_failed, HostList},
};

/// Which jobs a selective receive takes.
#[derive(Debug, Clone, Default)]
struct Selection {
    label: Option<String>,
    failed: bool,
}

pub async fn run(cli: &Cli, args: &ReceiveArgs) -> anyhow::Result<u8> {
    let request = Receive {
        command: args.job,
        keep: args.keep,
        ..Receive::follow_all(args.session.reference())
    };
    let selection = (args.label.is_some() || args.failed).then(|| Selection {
        label: args.label.clone(),
        failed: args.failed,
    });
    receive_selected(cli, &args.host, request, selection, args.notify).await
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
    let gathered = fan_out(hosts, |host| {
        let request = request.clone();
        let selection = selection.clone();
        async move {
            let mut out = StdSink::for_host(&host, prefixed);
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
                eprintln!("remora: {host}: session {name} was {reason}; its commands keep running there");
                return Ok(1);
            }
            if let Some(reason) = &broken {
                eprintln!("remora: {host}: session {name} is broken: {reason}");
            }
            Ok(exit_status(out.last_exit.or(end.and_then(|e| e.last_exit_code))))
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
