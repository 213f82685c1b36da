//! `remora conn ls [--json]` and `remora conn stop [HOST]`: the warm connections the connection
//! holder keeps (see [`remora_client::holder`]); and the hidden `remora __hold`, the holder itself.

use remora_client::holder::Holder;

use crate::{
    args::{Cli, ConnAction, ConnArgs, HoldArgs},
    output,
};

pub async fn run(cli: &Cli, args: &ConnArgs) -> anyhow::Result<u8> {
    let holder = Holder::new(std::env::current_exe()?);
    match &args.action {
        ConnAction::Ls { json } => {
            let held = holder.list().await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&output::held_json(&held))?);
            } else if held.is_empty() {
                eprintln!("no held connections; the next call to a host keeps one (unless --no-reuse)");
            } else {
                print!("{}", output::held_table(&held));
            }
        }
        ConnAction::Stop { host } => {
            let count = holder.stop(host.as_deref()).await?;
            let _ = cli;
            eprintln!("closed {count} held connection{}", if count == 1 { "" } else { "s" });
        }
    }
    Ok(0)
}

/// `remora __hold`: the connection holder, until nothing is held; the first destination to
/// warm is a frame on stdin.
pub async fn hold(_args: &HoldArgs) -> anyhow::Result<u8> {
    let holder = Holder::new(std::env::current_exe()?);
    // Run by hand from a terminal, it warms nothing rather than wait for a frame.
    let stdin = std::io::stdin();
    let warm = (!std::io::IsTerminal::is_terminal(&stdin))
        .then(|| remora_client::holder::read_warm_request(stdin.lock()))
        .flatten();
    remora_client::holder::serve(holder.dir().to_path_buf(), warm).await?;
    Ok(0)
}
