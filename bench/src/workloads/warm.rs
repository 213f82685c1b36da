//! Workload 13 (warm): calls from new processes once the connection holder keeps the host's
//! connection — `invoke --name S -- true`, `ls HOST` and `receive` of a finished command —
//! against `ssh` over a warm ControlMaster and `ssh HOST true`, on a plain account and on one
//! whose `~/.bashrc` costs 100 ms; and the holder's memory.

use anyhow::{ensure, Context};

use super::roundtrip::millis;
use crate::{
    measure::{secs, timed, Row, Stats},
    setup::{Account, Bench, WAIT},
    Args,
};

pub fn run(bench: &Bench, args: &Args) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for account in Account::BOTH {
        account.prepare(&bench.sshd)?;
        rows.extend(on_account(bench, args, account)?);
    }
    Account::Plain.prepare(&bench.sshd)?;
    timed(&mut bench.remora_warm(&["new", bench.sshd.alias(), "--name", "warm-memory"]))?;
    wait_held(bench)?;
    let memory = holder_mib_per_connection(bench)?;
    timed(&mut bench.remora_warm(&["conn", "stop"]))?;
    rows.push(
        Row::new(
            "13 warm",
            "connection holder memory per held connection",
            "MiB",
            Stats::of(&[memory]),
        )
        .target("<= 2 MiB", memory <= 2.0),
    );
    Ok(rows)
}

/// The warm calls and their anchors on one account, with a holder started for it (so every
/// channel it keeps was opened through this account's login shell).
fn on_account(bench: &Bench, args: &Args, account: Account) -> anyhow::Result<Vec<Row>> {
    let host = bench.sshd.alias();
    let name = match account {
        Account::Plain => "warm",
        Account::SlowRc => "warm-rc",
    };
    timed(&mut bench.remora_warm(&["new", host, "--name", name]))?;
    wait_held(bench)?;
    let master = bench.ssh_master()?;
    let mut samples = Samples::default();
    for _ in 0..args.reps.max(5) {
        samples.invoke.push(millis(
            &mut bench.remora_warm(&["invoke", host, "--name", name, "--", "true"]),
        )?);
        samples.ls.push(millis(&mut bench.remora_warm(&["ls", host]))?);
        timed(&mut bench.remora_warm(&["invoke", host, "--name", name, "--disconnected", "--", "echo done"]))?;
        let run = timed(&mut bench.remora_warm(&["receive", host, "--name", name]))?;
        ensure!(
            run.stdout == b"done\n",
            "receive printed {:?}",
            String::from_utf8_lossy(&run.stdout)
        );
        samples.receive.push(secs(run.elapsed) * 1e3);
        samples.muxed.push(millis(&mut master.ssh(&[host, "true"]))?);
        samples.ssh.push(millis(&mut bench.ssh(&[host, "true"]))?);
    }
    drop(master);
    timed(&mut bench.remora_warm(&["conn", "stop"]))?;
    let mut rows = Vec::new();
    for (what, stats) in [
        ("invoke --name S -- true, new process", &samples.invoke),
        ("ls HOST, new process", &samples.ls),
        ("receive of a finished command, new process", &samples.receive),
    ] {
        rows.extend(versus(
            &format!("{what}, {}", account.label()),
            Stats::of(stats),
            &samples,
            account,
        ));
    }
    rows.push(Row::new(
        "13 warm",
        &format!("  ssh HOST true, {}", account.label()),
        "ms",
        Stats::of(&samples.ssh),
    ));
    Ok(rows)
}

#[derive(Default)]
struct Samples {
    invoke: Vec<f64>,
    ls: Vec<f64>,
    receive: Vec<f64>,
    muxed: Vec<f64>,
    ssh: Vec<f64>,
}

/// A warm call against a ControlMaster on the same account: <= 0.5x on a plain one, <= 0.1x
/// where the login shell's rc file costs 100 ms (which remora's kept channels no longer pay).
fn versus(what: &str, remora: Stats, samples: &Samples, account: Account) -> [Row; 2] {
    let target = match account {
        Account::Plain => 0.5,
        Account::SlowRc => 0.1,
    };
    let muxed = Row::new("13 warm", what, "ms", remora).against(Stats::of(&samples.muxed));
    let muxed_met = muxed.ratio.unwrap_or(f64::MAX) <= target;
    let fresh = Row::new("13 warm", "  same, vs a new ssh HOST true", "ms", remora).against(Stats::of(&samples.ssh));
    let fresh_met = fresh.ratio.unwrap_or(f64::MAX) <= 0.1;
    [
        muxed.target(&format!("<= {target}x ssh via ControlMaster"), muxed_met),
        fresh.target("<= 0.1x ssh host true", fresh_met),
    ]
}

/// Waits until the holder has made its connection to the host (the first call started it and
/// asked it to connect).
fn wait_held(bench: &Bench) -> anyhow::Result<()> {
    wait_connections(bench, 1)
}

fn wait_connections(bench: &Bench, count: usize) -> anyhow::Result<()> {
    remora_testkit::wait_until(WAIT, "the connection holder's connections", || {
        timed(&mut bench.remora_warm(&["conn", "ls", "--json"])).is_ok_and(|run| {
            String::from_utf8_lossy(&run.stdout)
                .matches("\"connections\": 1")
                .count()
                >= count
        })
    })
}

/// Hosts the holder is made to hold for its memory figure.
const MORE_HOSTS: usize = 20;

/// What each further held connection costs the holder: its memory holding one connection, then
/// holding [`MORE_HOSTS`] more (ssh_config aliases of the same sshd), divided out.
fn holder_mib_per_connection(bench: &Bench) -> anyhow::Result<f64> {
    let one = holder_rss_mib(bench)?;
    for n in 1..=MORE_HOSTS {
        let alias = format!("held{n}");
        bench.sshd.add_alias(&alias, bench.sshd.port())?;
        timed(&mut bench.remora_warm(&["ls", &alias]))?;
    }
    wait_connections(bench, MORE_HOSTS + 1)?;
    let many = holder_rss_mib(bench)?;
    Ok(((many - one) / MORE_HOSTS as f64).max(0.0))
}

/// The holder's resident memory.
fn holder_rss_mib(bench: &Bench) -> anyhow::Result<f64> {
    let pid = bench
        .sshd
        .processes()
        .into_iter()
        .find(|pid| remora_testkit::command_line(*pid).is_some_and(|args| args.iter().any(|a| a == "__hold")))
        .context("the connection holder is not running")?;
    let kib = remora_testkit::rss_kib(pid).context("cannot read the holder's memory")?;
    Ok(kib as f64 / 1024.0)
}
