//! `remora stop HOST[,HOST…] --name N [--job ID | --label GLOB]`: interrupt a job, keeping the
//! shell (Stop-Job). `--label` stops every queued or running job whose label matches.

use remora_client::{visible, Client};
use remora_wire::{CommandList, ListCommands, SessionRef};

use super::with_client;
use crate::{
    args::{Cli, StopArgs},
    fanout::fan_out,
};

pub async fn run(cli: &Cli, args: &StopArgs) -> anyhow::Result<u8> {
    let session = args.session.reference();
    let hosts = cli.fleet.resolve(&args.host)?;
    let gathered = fan_out(cli, &hosts, |host| {
        let session = session.clone();
        async move {
            with_client(cli, &host, async move |client| match &args.label {
                None => client.stop(session, args.job).await,
                Some(glob) => stop_labelled(client, session, glob).await,
            })
            .await
        }
    })
    .await;
    for (host, list) in gathered.answers {
        if args.label.is_some() && list.commands.is_empty() {
            eprintln!("no job to stop in session {} on {host}", visible(&list.session.name));
        }
        for command in &list.commands {
            println!(
                "stopping job {} in session {} on {host}: {}",
                command.id,
                visible(&list.session.name),
                visible(&command.command)
            );
        }
    }
    Ok(gathered.status)
}

/// Stops every job with a matching label that has not ended; returns those being stopped.
async fn stop_labelled(client: &mut Client, session: SessionRef, glob: &str) -> remora_client::Result<CommandList> {
    let mut list = client
        .jobs(ListCommands {
            session,
            label_glob: Some(glob.to_string()),
        })
        .await?;
    let session = SessionRef::Id(list.session.instance_id);
    let mut stopping = Vec::new();
    // Newest first: the runspace only ever starts the oldest queued job, so a queued job is
    // stopped before the running one it waits behind is interrupted, and cannot start (and end
    // with its own status) in between.
    for job in list.commands.iter().rev().filter(|c| c.ended_at.is_none()) {
        match client.stop(session.clone(), Some(job.id)).await {
            Ok(stopped) => stopping.extend(stopped.commands),
            // It ended between the listing and the stop: nothing left to do.
            Err(remora_client::ClientError::Refused { message, .. }) if message.contains("already ended") => {}
            Err(err) => return Err(err),
        }
    }
    stopping.reverse();
    list.commands = stopping;
    Ok(list)
}
