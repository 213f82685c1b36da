//! Workload 2 (replay): a command's N bytes buffered while no client is attached (memory, then
//! the spill file), received by a fresh `remora receive`; compared with workload 1's throughput.
//! Also workload 8's second half: the daemon's memory while it spills.

use anyhow::ensure;

use super::stream::mb_per_s;
use crate::{
    measure::{rss_kib, secs, timed, Row, RssSampler, Stats},
    setup::{Bench, WAIT},
    Args,
};

/// The default configuration's memory limit per session (buffer_limit)…
const BUFFER_LIMIT_MIB: f64 = 64.0;
/// …plus the journal's bookkeeping and the allocator's slack.
const OVERHEAD_MIB: f64 = 8.0;

pub fn run(bench: &Bench, args: &Args, stream_throughput: Option<f64>) -> anyhow::Result<Vec<Row>> {
    let host = bench.sshd.alias();
    let command = format!("head -c {} /dev/zero", args.bytes);
    timed(&mut bench.remora(&["new", host, "--name", "replay"]))?;
    let daemon = bench.daemon_pid()?;
    let (mut replay, mut peak_growth) = (Vec::new(), 0.0f64);
    for _ in 0..args.reps {
        let baseline = rss_kib(daemon).unwrap_or(0);
        let sampler = RssSampler::start(daemon);
        timed(&mut bench.remora(&["invoke", host, "--name", "replay", "--disconnected", "--", &command]))?;
        wait_until_done(bench)?;
        let growth = sampler.stop().saturating_sub(baseline) as f64 / 1024.0;
        peak_growth = peak_growth.max(growth);
        let run = timed(&mut bench.remora(&["receive", host, "--name", "replay"]))?;
        ensure!(
            run.stdout_bytes == args.bytes,
            "receive delivered {} bytes",
            run.stdout_bytes
        );
        replay.push(mb_per_s(args.bytes, secs(run.elapsed)));
    }
    timed(&mut bench.remora(&["rm", host, "--name", "replay", "--yes"]))?;
    let replay = Stats::of(&replay);
    let mut row = Row::new("2 replay", "receive of output buffered while away", "MB/s", replay);
    row = match stream_throughput {
        Some(stream) => {
            let ratio = replay.median / stream;
            row.ratio(ratio).target(">= 0.9x workload 1", ratio >= 0.9)
        }
        None => row,
    };
    let memory = Row::new(
        "8 memory",
        "daemon RSS growth while spilling",
        "MiB",
        Stats::single(peak_growth),
    )
    .target("< 64 MiB limit + 8 MiB", peak_growth < BUFFER_LIMIT_MIB + OVERHEAD_MIB);
    Ok(vec![row, memory])
}

/// Waits until the session's command has finished (all its output is buffered).
fn wait_until_done(bench: &Bench) -> anyhow::Result<()> {
    let host = bench.sshd.alias();
    remora_testkit::wait_for(WAIT, "the disconnected command to finish", || {
        let run = timed(&mut bench.remora(&["jobs", host, "--name", "replay", "--json"]))?;
        let jobs: serde_json::Value = serde_json::from_slice(&run.stdout)?;
        let pending = jobs.as_array().map_or(1, |all| {
            all.iter()
                .filter(|c| c["state"] == "Running" || c["state"] == "Queued")
                .count()
        });
        Ok((pending == 0).then_some(()))
    })
}
