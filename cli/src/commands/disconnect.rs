//! `remora disconnect HOST[,HOST…] --name N [--idle-timeout D] [--buffering M]`: detach whoever
//! is attached (Disconnect-PSSession); the session keeps running.

use remora_wire::{Disconnect, SessionInfo};

use super::with_client;
use crate::{
    args::{Cli, DisconnectArgs},
    fanout::fan_out,
    output,
    values::IdleTimeout,
};

pub async fn run(cli: &Cli, args: &DisconnectArgs) -> anyhow::Result<u8> {
    let request = Disconnect {
        session: args.session.reference(),
        idle_timeout_secs: args.idle_timeout.map(IdleTimeout::secs),
        buffering: args.buffering.map(Into::into),
    };
    let hosts = cli.fleet.resolve(&args.host)?;
    let gathered = fan_out(cli, &hosts, |host| {
        let request = request.clone();
        async move { with_client(cli, &host, async move |client| client.disconnect(request).await).await }
    })
    .await;
    if gathered.all_failed() {
        return Ok(gathered.status);
    }
    let sessions: Vec<SessionInfo> = gathered
        .answers
        .into_iter()
        .map(|(host, session)| SessionInfo { host, ..session })
        .collect();
    output::print_sessions(&sessions, args.json)?;
    Ok(gathered.status)
}
