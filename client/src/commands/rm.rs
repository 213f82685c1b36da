//! `remora rm HOST (--name GLOB | --id UUID)… [--dry-run]`: remove sessions (Remove-PSSession).

use remora_wire::RemoveSessions;

use super::connect;
use crate::{
    cli::{Cli, RmArgs},
    output,
};

pub async fn run(cli: &Cli, args: &RmArgs) -> anyhow::Result<u8> {
    let request = RemoveSessions {
        names: args.name.clone(),
        ids: args.id.clone(),
        dry_run: args.dry_run,
    };
    let mut client = connect(cli, &args.host).await?;
    let removed = client.remove(request).await?;
    client.close().await?;
    if args.json {
        let objects: Vec<_> = removed.iter().map(output::session_json).collect();
        println!("{}", serde_json::to_string_pretty(&objects)?);
        return Ok(0);
    }
    let verb = if args.dry_run { "would remove" } else { "removed" };
    for session in &removed {
        let running = session.commands_running + session.commands_queued;
        let note = if running > 0 {
            format!(", stopping {running} command(s)")
        } else {
            String::new()
        };
        println!(
            "{verb} {} ({}) on {}{note}",
            session.name, session.instance_id, session.host
        );
    }
    Ok(0)
}
