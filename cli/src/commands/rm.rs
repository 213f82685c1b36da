//! `remora rm HOST[,HOST…] (--name GLOB | --id UUID)… [--dry-run] [--yes]`: remove sessions
//! (Remove-PSSession, -WhatIf). Removing a session that is running commands asks first.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::bail;
use remora_client::visible;
use remora_wire::{RemoveSessions, SessionInfo};

use super::with_client;
use crate::{
    args::{Cli, RmArgs},
    fanout::fan_out,
    output,
    values::HostList,
};

pub async fn run(cli: &Cli, args: &RmArgs) -> anyhow::Result<u8> {
    let hosts = &cli.fleet.resolve(&args.host)?;
    let dry_run = RemoveSessions {
        names: args.name.clone(),
        ids: args.id.clone(),
        dry_run: true,
    };
    if !args.dry_run && !args.yes {
        let (matched, status) = remove_on(cli, hosts, &dry_run).await;
        confirm_running(&matched.unwrap_or_default())?;
        if status != 0 {
            return Ok(status);
        }
    }
    let request = RemoveSessions {
        dry_run: args.dry_run,
        ..dry_run
    };
    let (removed, status) = remove_on(cli, hosts, &request).await;
    if let Some(removed) = removed {
        print_removed(&removed, args)?;
    }
    Ok(status)
}

/// The sessions removed (or matched, on a dry run) on every host that answered, `None` when no
/// host did; and the exit status of the failures.
async fn remove_on(cli: &Cli, hosts: &HostList, request: &RemoveSessions) -> (Option<Vec<SessionInfo>>, u8) {
    let gathered = fan_out(cli, hosts, |host| {
        let request = request.clone();
        async move { with_client(cli, &host, async move |client| client.remove(request).await).await }
    })
    .await;
    if gathered.all_failed() {
        return (None, gathered.status);
    }
    let sessions = gathered
        .answers
        .into_iter()
        .flat_map(|(host, sessions)| {
            sessions.into_iter().map(move |s| SessionInfo {
                host: host.clone(),
                ..s
            })
        })
        .collect();
    (Some(sessions), gathered.status)
}

/// Asks on the terminal before removing sessions with running or queued commands; without a
/// terminal, refuses and points at `--yes`.
fn confirm_running(sessions: &[SessionInfo]) -> anyhow::Result<()> {
    let busy: Vec<String> = sessions
        .iter()
        .filter(|s| s.commands_running + s.commands_queued > 0)
        .map(|s| {
            format!(
                "{} on {} ({} running or queued)",
                visible(&s.name),
                visible(&s.host),
                s.commands_running + s.commands_queued
            )
        })
        .collect();
    if busy.is_empty() {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "not removing sessions that are running commands: {}; pass --yes to stop them and remove",
            busy.join(", ")
        );
    }
    eprint!("remove sessions that are running commands: {}? [y/N] ", busy.join(", "));
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        bail!("nothing removed");
    }
    Ok(())
}

fn print_removed(removed: &[SessionInfo], args: &RmArgs) -> anyhow::Result<()> {
    if args.json {
        let objects: Vec<_> = removed.iter().map(output::session_json).collect();
        println!("{}", serde_json::to_string_pretty(&objects)?);
        return Ok(());
    }
    let verb = if args.dry_run { "would remove" } else { "removed" };
    for session in removed {
        let running = session.commands_running + session.commands_queued;
        let note = if running > 0 {
            format!(", stopping {running} command(s)")
        } else {
            String::new()
        };
        println!(
            "{verb} {} ({}) on {}{note}",
            visible(&session.name),
            session.instance_id,
            visible(&session.host)
        );
    }
    Ok(())
}
