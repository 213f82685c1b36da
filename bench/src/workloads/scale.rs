//! Workload 6 (scale): many idle sessions on one agent — `ls` of all of them, and the daemon's
//! own memory per session (the shells are separate processes) — then many completed commands'
//! metadata kept, and `ls` again.

use std::time::Instant;

use remora_client::Client;
use remora_wire::{Invoke, NewSession, RemoveSessions, SessionRef};

use super::roundtrip::Discard;
use crate::{
    measure::{rss_kib, secs, timed, Row, Stats},
    setup::{Bench, WAIT},
    Args,
};

/// Sessions that get the completed commands.
const BUSY_SESSIONS: usize = 10;

/// Runs on an sshd and daemon of its own, so the memory baseline is not what earlier workloads
/// left in the allocator.
pub fn run(_: &Bench, args: &Args) -> anyhow::Result<Vec<Row>> {
    let bench = &Bench::start()?;
    let runtime = Bench::runtime()?;
    let mut client = runtime.block_on(bench.client())?;
    runtime.block_on(client.list(None))?;
    let daemon = bench.daemon_pid()?;
    let before = rss_kib(daemon).unwrap_or(0);
    runtime.block_on(create_sessions(&mut client, args.sessions))?;
    let after = rss_kib(daemon).unwrap_or(0);
    let per_session = after.saturating_sub(before) as f64 / args.sessions as f64;
    let ls_idle = runtime.block_on(list_times(&mut client, args.reps.max(5)))?;
    let cli_ls = cli_list_times(bench, args.reps.max(3))?;
    runtime.block_on(complete_commands(&mut client, args.commands))?;
    wait_until_quiet(bench)?;
    let ls_busy = runtime.block_on(list_times(&mut client, args.reps.max(5)))?;
    runtime.block_on(client.remove(RemoveSessions {
        names: vec!["scale-*".into()],
        ..RemoveSessions::default()
    }))?;
    runtime.block_on(client.close())?;
    let sessions = args.sessions;
    let slowdown = ls_busy.median / ls_idle.median;
    Ok(vec![
        Row::new(
            "6 scale",
            &format!("ls of {sessions} sessions, one connection"),
            "ms",
            ls_idle,
        )
        .target("< 100 ms", ls_idle.median < 100.0),
        Row::new(
            "6 scale",
            &format!("remora ls HOST of {sessions} sessions, new process"),
            "ms",
            cli_ls,
        ),
        Row::new(
            "6 scale",
            "daemon memory per idle session",
            "KiB",
            Stats::single(per_session),
        )
        .target("<= 64 KiB", per_session <= 64.0),
        Row::new(
            "6 scale",
            &format!("ls with {} completed commands kept", args.commands),
            "ms",
            ls_busy,
        )
        .ratio(slowdown)
        .target("not slower (< 2x)", slowdown < 2.0),
    ])
}

async fn create_sessions(client: &mut Client, count: usize) -> anyhow::Result<()> {
    for n in 0..count {
        let request = NewSession {
            name: format!("scale-{n}"),
            ..NewSession::default()
        };
        client.new_session(request).await?;
    }
    Ok(())
}

async fn list_times(client: &mut Client, reps: usize) -> anyhow::Result<Stats> {
    let mut samples = Vec::new();
    for _ in 0..reps {
        let start = Instant::now();
        client.list(None).await?;
        samples.push(secs(start.elapsed()) * 1e3);
    }
    Ok(Stats::of(&samples))
}

fn cli_list_times(bench: &Bench, reps: usize) -> anyhow::Result<Stats> {
    let mut samples = Vec::new();
    for _ in 0..reps {
        let run = timed(&mut bench.remora(&["ls", bench.sshd.alias(), "--json"]))?;
        samples.push(secs(run.elapsed) * 1e3);
    }
    Ok(Stats::of(&samples))
}

/// Queues `count` `true` commands round-robin over the first sessions, disconnected.
async fn complete_commands(client: &mut Client, count: usize) -> anyhow::Result<()> {
    for n in 0..count {
        let request = Invoke {
            session: Some(SessionRef::Name(format!("scale-{}", n % BUSY_SESSIONS))),
            command: "true".into(),
            create: false,
            follow: false,
            window: remora_wire::DEFAULT_WINDOW,
            idle_timeout_secs: None,
            configuration: None,
            buffering: None,
            job: Default::default(),
            stdin: remora_wire::InputMode::Null,
        };
        client.invoke(request, &mut Discard).await?;
    }
    Ok(())
}

/// Waits until no command is queued or running anywhere.
fn wait_until_quiet(bench: &Bench) -> anyhow::Result<()> {
    remora_testkit::wait_for(WAIT, "every queued command to complete", || {
        let run = timed(&mut bench.remora(&["ls", bench.sshd.alias(), "--json"]))?;
        let sessions: serde_json::Value = serde_json::from_slice(&run.stdout)?;
        let busy = sessions.as_array().is_none_or(|all| {
            all.iter()
                .any(|s| s["commands_running"] != 0 || s["commands_queued"] != 0)
        });
        Ok((!busy).then_some(()))
    })
}
