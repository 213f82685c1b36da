//! `remora new HOST[,HOST…] --name N [--config C] [--idle-timeout D] [--buffering M]`: create a
//! session (New-PSSession).

use anyhow::anyhow;
use remora_wire::{Buffering, NewSession, SessionInfo};

use super::{
    fanout::{on_each, report_failures, split_hosts, successes},
    with_client,
};
use remora_client::registry;

use crate::{
    args::{BufferingArg, Cli, NewArgs},
    output,
};

pub async fn run(cli: &Cli, args: &NewArgs) -> anyhow::Result<u8> {
    let request = NewSession {
        name: args.name.clone(),
        configuration: args.configuration.clone(),
        idle_timeout_secs: args.idle_timeout.as_deref().map(parse_idle_timeout).transpose()?,
        buffering: args.buffering.map(buffering),
    };
    let hosts = split_hosts(&args.host)?;
    let results = on_each(&hosts, |host| {
        let request = request.clone();
        async move { with_client(cli, &host, async move |client| client.new_session(request).await).await }
    })
    .await;
    let status = report_failures(&results);
    let sessions: Vec<SessionInfo> = successes(results)
        .into_iter()
        .map(|(host, session)| {
            registry::remember(&host, std::slice::from_ref(&session));
            SessionInfo { host, ..session }
        })
        .collect();
    print_sessions(&sessions, args.json)?;
    Ok(status)
}

/// The session table, or a JSON array with `--json`.
pub fn print_sessions(sessions: &[SessionInfo], json: bool) -> anyhow::Result<()> {
    if json {
        let objects: Vec<_> = sessions.iter().map(output::session_json).collect();
        println!("{}", serde_json::to_string_pretty(&objects)?);
    } else if !sessions.is_empty() {
        print!("{}", output::session_table(sessions));
    }
    Ok(())
}

/// Parses an idle timeout, refusing zero and sub-second values.
pub fn parse_idle_timeout(text: &str) -> anyhow::Result<u64> {
    let duration = output::parse_duration(text).map_err(|e| anyhow!(e))?;
    match duration.as_secs() {
        0 => Err(anyhow!("idle timeout {text:?} is too short; give at least 1s")),
        secs => Ok(secs),
    }
}

/// The wire form of `--buffering`.
pub fn buffering(arg: BufferingArg) -> Buffering {
    match arg {
        BufferingArg::Block => Buffering::Block,
        BufferingArg::Drop => Buffering::Drop,
        BufferingArg::Spill => Buffering::Spill,
    }
}
