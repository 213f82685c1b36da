//! `remora disconnect HOST --name N [--idle-timeout D] [--buffering M]`: detach whoever is
//! attached (Disconnect-PSSession); the session keeps running.

use remora_wire::Disconnect;

use super::{
    connect,
    new::{buffering, parse_idle_timeout},
    receive::session_ref,
};
use crate::{
    cli::{Cli, DisconnectArgs},
    output,
};

pub async fn run(cli: &Cli, args: &DisconnectArgs) -> anyhow::Result<u8> {
    let request = Disconnect {
        session: session_ref(&args.name, args.id),
        idle_timeout_secs: args.idle_timeout.as_deref().map(parse_idle_timeout).transpose()?,
        buffering: args.buffering.map(buffering),
    };
    let mut client = connect(cli, &args.host).await?;
    let session = client.disconnect(request).await?;
    client.close().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&output::session_json(&session))?);
    } else {
        print!("{}", output::session_table(std::slice::from_ref(&session)));
    }
    Ok(0)
}
