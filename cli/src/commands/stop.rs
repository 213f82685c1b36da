//! `remora stop HOST[,HOST…] --name N [--job ID]`: interrupt a job, keeping the shell (Stop-Job).

use super::{
    fanout::{on_each, report_failures, split_hosts, successes},
    with_client,
};
use crate::args::{Cli, StopArgs};

pub async fn run(cli: &Cli, args: &StopArgs) -> anyhow::Result<u8> {
    let session = args.session.reference();
    let hosts = split_hosts(&args.host)?;
    let results = on_each(&hosts, |host| {
        let session = session.clone();
        async move { with_client(cli, &host, async move |client| client.stop(session, args.job).await).await }
    })
    .await;
    let status = report_failures(&results);
    for (host, list) in successes(results) {
        for command in &list.commands {
            println!(
                "stopping job {} in session {} on {host}: {}",
                command.id, list.session.name, command.command
            );
        }
    }
    Ok(status)
}
