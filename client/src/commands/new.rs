//! `remora new HOST --name N`: create a session (New-PSSession).

use anyhow::anyhow;
use remora_wire::{Buffering, NewSession};

use super::connect;
use crate::{
    cli::{BufferingArg, Cli, NewArgs},
    output,
};

pub async fn run(cli: &Cli, args: &NewArgs) -> anyhow::Result<u8> {
    let request = NewSession {
        name: args.name.clone(),
        configuration: args.configuration.clone(),
        idle_timeout_secs: args.idle_timeout.as_deref().map(parse_idle_timeout).transpose()?,
        buffering: args.buffering.map(buffering),
    };
    let mut client = connect(cli, &args.host).await?;
    let session = client.new_session(request).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&output::session_json(&session))?);
    } else {
        print!("{}", output::session_table(std::slice::from_ref(&session)));
    }
    client.close().await?;
    Ok(0)
}

/// Parses an idle timeout, refusing zero and sub-second values.
pub fn parse_idle_timeout(text: &str) -> anyhow::Result<u64> {
    let duration = output::parse_duration(text).map_err(|e| anyhow!(e))?;
    match duration.as_secs() {
        0 => Err(anyhow!("idle timeout {text:?} is too short; give at least 1s")),
        secs => Ok(secs),
    }
}

pub fn buffering(arg: BufferingArg) -> Buffering {
    match arg {
        BufferingArg::Block => Buffering::Block,
        BufferingArg::Drop => Buffering::Drop,
        BufferingArg::Spill => Buffering::Spill,
    }
}
