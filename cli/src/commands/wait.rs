//! `remora wait HOST[,HOST…] --name N [--job ID…] [--label GLOB] [--any] [--timeout D] [--json]`:
//! wait until jobs end (Wait-Job). Silent unless `--json`; exits with the status of the job that
//! ended last (with `--any`, first) across every host, or 124 when `--timeout` passes first.

use remora_wire::{CommandInfo, WaitJobs, Waited};

use super::{exit_status, with_client};
use crate::{
    args::{Cli, WaitArgs},
    fanout::fan_out,
    notify, output,
};

/// Exit status when `--timeout` passes, like timeout(1).
pub const TIMED_OUT: u8 = 124;

pub async fn run(cli: &Cli, args: &WaitArgs) -> anyhow::Result<u8> {
    let request = WaitJobs {
        session: args.session.reference(),
        commands: args.job.clone(),
        label_glob: args.label.clone(),
        any: args.any,
        updates: false,
    };
    let hosts = cli.fleet.resolve(&args.host)?;
    let waiting = fan_out(cli, &hosts, |host| {
        let request = request.clone();
        async move { with_client(cli, &host, async |client| client.wait(request, &mut |_| {}).await).await }
    });
    let gathered = match args.timeout {
        Some(limit) => match tokio::time::timeout(limit, waiting).await {
            Ok(gathered) => gathered,
            Err(_) => {
                eprintln!("remora: wait: timed out after {}", humantime::format_duration(limit));
                return Ok(TIMED_OUT);
            }
        },
        None => waiting.await,
    };
    if args.notify {
        for (host, waited) in &gathered.answers {
            ended(waited).for_each(|job| notify::announce_job(host, job));
        }
    }
    if args.json {
        let objects: Vec<_> = gathered
            .answers
            .iter()
            .flat_map(|(host, waited)| {
                waited.commands.iter().map(move |c| {
                    let mut object = output::command_json(c);
                    object["host"] = host.as_str().into();
                    object["session"] = waited.session.name.as_str().into();
                    object
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&objects)?);
    }
    if gathered.status != 0 {
        return Ok(gathered.status);
    }
    Ok(last_status(&gathered.answers, args.any))
}

fn ended(waited: &Waited) -> impl Iterator<Item = &CommandInfo> {
    waited.commands.iter().filter(|c| c.ended_at.is_some())
}

/// The status of the job that decided the wait: across hosts, the one that ended last (with
/// `any`, first). No job at all is success.
fn last_status(answers: &[(String, Waited)], any: bool) -> u8 {
    let deciding = answers
        .iter()
        .filter_map(|(_, w)| w.last.and_then(|id| w.commands.iter().find(|c| c.id == id)));
    let order = |c: &&CommandInfo| (c.ended_at, c.id);
    let job = match any {
        true => deciding.min_by_key(order),
        false => deciding.max_by_key(order),
    };
    job.map_or(0, |job| exit_status(job.exit_code))
}
