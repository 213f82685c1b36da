//! `remora ls HOST… [--name GLOB] [--json]`: list sessions (Get-PSSession).

use anyhow::bail;

use super::connect;
use crate::{
    cli::{Cli, LsArgs},
    output,
};

pub async fn run(cli: &Cli, args: &LsArgs) -> anyhow::Result<u8> {
    if args.hosts.is_empty() {
        bail!("name the host(s) to ask: `remora ls HOST [HOST…]`");
    }
    let mut sessions = Vec::new();
    for host in &args.hosts {
        let mut client = connect(cli, host).await?;
        sessions.extend(client.list(args.name.clone()).await?);
        client.close().await?;
    }
    if args.json {
        let objects: Vec<_> = sessions.iter().map(output::session_json).collect();
        println!("{}", serde_json::to_string_pretty(&objects)?);
    } else if sessions.is_empty() {
        eprintln!("no sessions");
    } else {
        print!("{}", output::session_table(&sessions));
    }
    Ok(0)
}
