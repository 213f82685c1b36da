//! `remora jobs HOST[,HOST…] --name N [--json]`: a session's commands (Get-Job).

use super::{
    fanout::{on_each, report_failures, split_hosts, successes},
    with_client,
};
use crate::{
    args::{Cli, JobsArgs},
    output,
};

pub async fn run(cli: &Cli, args: &JobsArgs) -> anyhow::Result<u8> {
    let session = args.session.reference();
    let hosts = split_hosts(&args.host)?;
    let results = on_each(&hosts, |host| {
        let session = session.clone();
        async move { with_client(cli, &host, async move |client| client.commands(session).await).await }
    })
    .await;
    let status = report_failures(&results);
    let lists = successes(results);
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
        if hosts.len() > 1 {
            println!("{host}:");
        }
        match list.commands.is_empty() {
            true => eprintln!("no jobs in session {} on {host}", list.session.name),
            false => print!("{}", output::command_table(&list.commands)),
        }
    }
    Ok(status)
}
