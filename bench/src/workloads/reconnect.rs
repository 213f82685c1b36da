//! Workload 5 (reconnect): a `remora receive` follows a command printing a line every 10 ms
//! through a proxy; the proxy goes down (connections cut, new ones refused) for 1.5 s, then comes
//! back. Measured: from the moment the link is back to the next line arriving.

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::Context;
use remora_testkit::FaultyLink;

use crate::{
    measure::{secs, timed, Row, Stats},
    setup::Bench,
    Args,
};

/// How long the link stays down each time.
const OUTAGE: Duration = Duration::from_millis(1500);
/// The longest a line may take once the link is back before the run counts as failed.
const GIVE_UP: Duration = Duration::from_secs(30);

pub fn run(bench: &Bench, args: &Args) -> anyhow::Result<Vec<Row>> {
    let host = bench.sshd.alias();
    let link = FaultyLink::start(bench.sshd.addr())?;
    bench.sshd.add_alias("flaky", link.addr().port())?;
    let ticker = "while :; do echo tick; sleep 0.01; done";
    timed(&mut bench.remora(&["invoke", host, "--name", "rc", "--disconnected", "--", ticker]))?;
    let mut receive = bench
        .remora(&["--reconnect-for", "60s", "receive", "flaky", "--name", "rc"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = receive.stdout.take().context("piped")?;
    let (lines, arrivals) = mpsc::channel();
    thread::spawn(move || {
        for _ in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(Instant::now()).is_err() {
                return;
            }
        }
    });
    arrivals
        .recv_timeout(GIVE_UP)
        .context("no output before the first outage")?;
    let mut samples = Vec::new();
    for _ in 0..args.reps.max(5) {
        link.refuse();
        link.cut();
        thread::sleep(OUTAGE);
        while arrivals.try_recv().is_ok() {}
        let back = Instant::now();
        link.restore();
        let next = arrivals.recv_timeout(GIVE_UP).context("output did not resume")?;
        samples.push(secs(next.saturating_duration_since(back)));
    }
    let _ = receive.kill();
    let _ = receive.wait();
    timed(&mut bench.remora(&["rm", host, "--name", "rc", "--yes"]))?;
    let stats = Stats::of(&samples);
    let met = stats.median <= 1.0;
    Ok(vec![Row::new(
        "5 reconnect",
        "link back -> output flowing again",
        "s",
        stats,
    )
    .target("<= 1 s median", met)])
}
