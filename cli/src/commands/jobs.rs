//! `remora jobs HOST[,HOST…] --name N [--json]`: a session's commands (Get-Job).

use super::with_client;
use crate::{
    args::{Cli, JobsArgs},
    fanout::fan_out,
    output,
};

pub async fn run(cli: &Cli, args: &JobsArgs) -> anyhow::Result<u8> {
    let session = args.session.reference();
    let hosts = cli.fleet.resolve(&args.host)?;
    let gathered = fan_out(cli, &hosts, |host| {
        let session = session.clone();
        async move { with_client(cli, &host, async move |client| client.commands(session).await).await }
    })
    .await;
    if gathered.all_failed() {
        return Ok(gathered.status);
    }
    let (lists, status) = (gathered.answers, gathered.status);
    if args.json {
        let mut objects = Vec::new();
        for (host, list) in &lists {
            objects.extend(list.commands.iter().map(|c| {
                let mut object = output::command_json(c);
                object["host"] = host.as_str().into();
                object["session"] = list.session.name.as_str().into();
                object
            }));
        }
        println!("{}", serde_json::to_string_pretty(&objects)?);
        return Ok(status);
    }
    for (host, list) in &lists {
        if hosts.is_many() {
            println!("{host}:");
        }
        match list.commands.is_empty() {
            true => eprintln!("no jobs in session {} on {host}", list.session.name),
            false => print!("{}", output::command_table(&list.commands)),
        }
    }
    Ok(status)
}
