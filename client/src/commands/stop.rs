//! `remora stop HOST --name N [--job ID]`: interrupt a job, keeping the shell (Stop-Job).

use super::{connect, receive::session_ref};
use crate::cli::{Cli, StopArgs};

pub async fn run(cli: &Cli, args: &StopArgs) -> anyhow::Result<u8> {
    let mut client = connect(cli, &args.host).await?;
    let list = client.stop(session_ref(&args.name, args.id), args.job).await?;
    client.close().await?;
    for command in &list.commands {
        println!(
            "stopping job {} in session {}: {}",
            command.id, list.session.name, command.command
        );
    }
    Ok(0)
}
