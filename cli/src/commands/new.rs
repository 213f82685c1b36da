//! `remora new HOST[,HOST…] --name N [--config C] [--idle-timeout D] [--buffering M]`: create a
//! session (New-PSSession).

use remora_client::registry;
use remora_wire::{NewSession, SessionInfo};

use super::with_client;
use crate::{
    args::{Cli, NewArgs},
    fanout::fan_out,
    output,
    values::IdleTimeout,
};

pub async fn run(cli: &Cli, args: &NewArgs) -> anyhow::Result<u8> {
    let request = NewSession {
        name: args.name.clone(),
        configuration: args.configuration.clone(),
        idle_timeout_secs: args.idle_timeout.map(IdleTimeout::secs),
        buffering: args.buffering.map(Into::into),
    };
    let hosts = cli.fleet.resolve(&args.host)?;
    let gathered = fan_out(cli, &hosts, |host| {
        let request = request.clone();
        async move { with_client(cli, &host, async move |client| client.new_session(request).await).await }
    })
    .await;
    if gathered.all_failed() {
        return Ok(gathered.status);
    }
    let sessions: Vec<SessionInfo> = gathered
        .answers
        .into_iter()
        .map(|(host, session)| {
            registry::remember(&host, std::slice::from_ref(&session));
            SessionInfo { host, ..session }
        })
        .collect();
    output::print_sessions(&sessions, args.json)?;
    Ok(gathered.status)
}
