//! `remora ls [HOST[,HOST…]…] [--name GLOB] [--json]`: list sessions (Get-PSSession). Without a
//! host, the sessions this machine's client created, wherever they are.

use std::collections::BTreeSet;

use remora_wire::SessionInfo;
use uuid::Uuid;

use super::{
    fanout::{on_each, report_failures, split_hosts, successes},
    new::print_sessions,
    with_client,
};
use remora_client::registry::LocalRegistry;

use crate::args::{Cli, LsArgs};

pub async fn run(cli: &Cli, args: &LsArgs) -> anyhow::Result<u8> {
    let (hosts, only) = targets(args)?;
    if hosts.is_empty() {
        eprintln!("no sessions created from this machine yet; to ask a host: remora ls HOST");
        return Ok(0);
    }
    let results = on_each(&hosts, |host| {
        let glob = args.name.clone();
        async move { with_client(cli, &host, async move |client| client.list(glob).await).await }
    })
    .await;
    let status = report_failures(&results);
    let answered: Vec<(String, Vec<SessionInfo>)> = successes(results);
    if let Some(only) = &only {
        forget_vanished(&answered, only);
    }
    let sessions: Vec<SessionInfo> = answered
        .into_iter()
        .flat_map(|(host, sessions)| {
            sessions.into_iter().map(move |s| SessionInfo {
                host: host.clone(),
                ..s
            })
        })
        .filter(|s| only.as_ref().is_none_or(|ids| ids.contains(&s.instance_id)))
        .collect();
    if sessions.is_empty() && !args.json {
        eprintln!("no sessions");
    }
    print_sessions(&sessions, args.json)?;
    Ok(status)
}

/// The hosts to ask, and (without hosts on the command line) the sessions to show.
fn targets(args: &LsArgs) -> anyhow::Result<(Vec<String>, Option<BTreeSet<Uuid>>)> {
    if !args.hosts.is_empty() {
        let mut hosts = Vec::new();
        for spec in &args.hosts {
            hosts.extend(
                split_hosts(spec)?
                    .into_iter()
                    .filter(|h| !hosts.contains(h))
                    .collect::<Vec<_>>(),
            );
        }
        return Ok((hosts, None));
    }
    let known = LocalRegistry::open().map(|r| r.entries()).unwrap_or_default();
    let hosts = known
        .iter()
        .map(|k| k.host.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    Ok((hosts, Some(known.iter().map(|k| k.instance_id).collect())))
}

/// Drops registry entries for sessions that hosts which answered no longer have.
fn forget_vanished(answered: &[(String, Vec<SessionInfo>)], only: &BTreeSet<Uuid>) {
    let Some(registry) = LocalRegistry::open() else { return };
    let alive: BTreeSet<Uuid> = answered
        .iter()
        .flat_map(|(_, s)| s.iter().map(|s| s.instance_id))
        .collect();
    let asked: BTreeSet<&str> = answered.iter().map(|(h, _)| h.as_str()).collect();
    let _ = registry.retain(|k| {
        !asked.contains(k.host.as_str()) || alive.contains(&k.instance_id) || !only.contains(&k.instance_id)
    });
}
