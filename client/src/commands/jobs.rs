//! `remora jobs HOST --name N [--json]`: a session's commands (Get-Job).

use super::{connect, receive::session_ref};
use crate::{
    cli::{Cli, JobsArgs},
    output,
};

pub async fn run(cli: &Cli, args: &JobsArgs) -> anyhow::Result<u8> {
    let mut client = connect(cli, &args.host).await?;
    let list = client.commands(session_ref(&args.name, args.id)).await?;
    client.close().await?;
    if args.json {
        let objects: Vec<_> = list.commands.iter().map(output::command_json).collect();
        println!("{}", serde_json::to_string_pretty(&objects)?);
    } else if list.commands.is_empty() {
        eprintln!("no jobs in session {}", list.session.name);
    } else {
        print!("{}", output::command_table(&list.commands));
    }
    Ok(0)
}
