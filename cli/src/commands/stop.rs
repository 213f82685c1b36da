//! `remora stop HOST[,HOST…] --name N [--job ID]`: interrupt a job, keeping the shell (Stop-Job).

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
        async move { with_client(cli, &host, async move |client| client.stop(session, args.job).await).await }
    })
    .await;
    for (host, list) in gathered.answers {
        for command in &list.commands {
            println!(
                "stopping job {} in session {} on {host}: {}",
                command.id, list.session.name, command.command
            );
        }
    }
    Ok(gathered.status)
}
