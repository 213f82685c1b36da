//! `remora disconnect HOST[,HOST…] --name N [--idle-timeout D] [--buffering M]`: detach whoever
//! is attached (Disconnect-PSSession); the session keeps running.

use remora_wire::{Disconnect, SessionInfo};

use super::{
    fanout::{on_each, report_failures, split_hosts, successes},
    new::{buffering, parse_idle_timeout, print_sessions},
    with_client,
};
use crate::args::{Cli, DisconnectArgs};

pub async fn run(cli: &Cli, args: &DisconnectArgs) -> anyhow::Result<u8> {
    let request = Disconnect {
        session: args.session.reference(),
        idle_timeout_secs: args.idle_timeout.as_deref().map(parse_idle_timeout).transpose()?,
        buffering: args.buffering.map(buffering),
    };
    let hosts = split_hosts(&args.host)?;
    let results = on_each(&hosts, |host| {
        let request = request.clone();
        async move { with_client(cli, &host, async move |client| client.disconnect(request).await).await }
    })
    .await;
    let status = report_failures(&results);
    let sessions: Vec<SessionInfo> = successes(results)
        .into_iter()
        .map(|(host, session)| SessionInfo { host, ..session })
        .collect();
    print_sessions(&sessions, args.json)?;
    Ok(status)
}
