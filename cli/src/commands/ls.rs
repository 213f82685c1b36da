//! `remora ls [HOST[,HOST…]…] [--name GLOB] [--json]`: list sessions (Get-PSSession). Without a
//! host, the sessions this machine's client created, wherever they are.
//!
//! A host that could not be asked is an error on stderr, never an empty listing: when no host
//! answered, stdout stays empty (no table, no `[]`) and no "no sessions" line is printed.

use std::collections::BTreeSet;

use remora_client::registry::LocalRegistry;
use remora_wire::SessionInfo;
use uuid::Uuid;

use super::with_client;
use crate::{
    args::{Cli, LsArgs},
    fanout::fan_out,
    output,
    values::HostList,
};

pub async fn run(cli: &Cli, args: &LsArgs) -> anyhow::Result<u8> {
    let (hosts, only) = targets(cli, args)?;
    if hosts.0.is_empty() {
        eprintln!("no sessions created from this machine yet; to ask a host: remora ls HOST");
        return Ok(0);
    }
    let gathered = fan_out(cli, &hosts, |host| {
        let glob = args.name.clone();
        async move { with_client(cli, &host, async move |client| client.list(glob).await).await }
    })
    .await;
    if gathered.all_failed() {
        return Ok(gathered.status);
    }
    if let Some(only) = &only {
        forget_vanished(&gathered.answers, only);
    }
    let sessions: Vec<SessionInfo> = gathered
        .answers
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
    output::print_sessions(&sessions, args.json)?;
    Ok(gathered.status)
}

/// The hosts to ask, and (without hosts on the command line or in host files) the sessions to
/// show.
fn targets(cli: &Cli, args: &LsArgs) -> anyhow::Result<(HostList, Option<BTreeSet<Uuid>>)> {
    let named = HostList::merge(&args.hosts);
    if !named.0.is_empty() || cli.fleet.names_files() {
        return Ok((cli.fleet.resolve(&named)?, None));
    }
    let known = LocalRegistry::open().map(|r| r.entries()).unwrap_or_default();
    let hosts: BTreeSet<String> = known.iter().map(|k| k.host.clone()).collect();
    Ok((
        HostList(hosts.into_iter().collect()),
        Some(known.iter().map(|k| k.instance_id).collect()),
    ))
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
