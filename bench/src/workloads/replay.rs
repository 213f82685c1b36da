//! Workload 2 (replay): a command's N bytes buffered while no client is attached, received by a
//! fresh `remora receive`; compared with workload 1's throughput. Twice: from the spill file (the
//! default configuration: 64 MiB in memory, the rest on disk) and from memory (a configuration
//! whose memory limit holds it all). Also workload 8's second half: the daemon's memory while it
//! spills.

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

/// Where a replayed session keeps what nobody received yet.
struct Mode {
    session: &'static str,
    /// The agent.toml configuration (see `setup.rs`).
    config: &'static str,
    metric: &'static str,
}

const SPILL: Mode = Mode {
    session: "replay",
    config: "default",
    metric: "receive of output buffered while away, spill",
};
const MEMORY: Mode = Mode {
    session: "replay-mem",
    config: "memory",
    metric: "  same, all of it in memory",
};

pub fn run(bench: &Bench, args: &Args, stream_throughput: Option<f64>) -> anyhow::Result<Vec<Row>> {
    let (spill, peak_growth) = replay(bench, args, &SPILL)?;
    let (memory, _) = replay(bench, args, &MEMORY)?;
    let mut rows = Vec::new();
    for (mode, stats) in [(&SPILL, spill), (&MEMORY, memory)] {
        let row = Row::new("2 replay", mode.metric, "MB/s", stats);
        rows.push(match stream_throughput {
            Some(stream) => {
                let ratio = stats.median / stream;
                row.ratio(ratio).target(">= 0.9x workload 1", ratio >= 0.9)
            }
            None => row,
        });
    }
    rows.push(
        Row::new(
            "8 memory",
            "daemon RSS growth while spilling",
            "MiB",
            Stats::single(peak_growth),
        )
        .target("< 64 MiB limit + 8 MiB", peak_growth < BUFFER_LIMIT_MIB + OVERHEAD_MIB),
    );
    Ok(rows)
}

/// Replays `args.reps` times in a session of `mode`; the throughput and the daemon's peak RSS
/// growth (MiB) while the output was buffered.
fn replay(bench: &Bench, args: &Args, mode: &Mode) -> anyhow::Result<(Stats, f64)> {
    let host = bench.sshd.alias();
    let command = format!("head -c {} /dev/zero", args.bytes);
    timed(&mut bench.remora(&["new", host, "--name", mode.session, "--config", mode.config]))?;
    let daemon = bench.daemon_pid()?;
    let (mut replay, mut peak_growth) = (Vec::new(), 0.0f64);
    for _ in 0..args.reps {
        let baseline = rss_kib(daemon).unwrap_or(0);
        let sampler = RssSampler::start(daemon);
        timed(&mut bench.remora(&["invoke", host, "--name", mode.session, "--disconnected", "--", &command]))?;
        wait_until_done(bench, mode.session)?;
        let growth = sampler.stop().saturating_sub(baseline) as f64 / 1024.0;
        peak_growth = peak_growth.max(growth);
        let run = timed(&mut bench.remora(&["receive", host, "--name", mode.session]))?;
        ensure!(
            run.stdout_bytes == args.bytes,
            "receive delivered {} bytes",
            run.stdout_bytes
        );
        replay.push(mb_per_s(args.bytes, secs(run.elapsed)));
    }
    timed(&mut bench.remora(&["rm", host, "--name", mode.session, "--yes"]))?;
    Ok((Stats::of(&replay), peak_growth))
}

/// Waits until the session's command has finished (all its output is buffered).
fn wait_until_done(bench: &Bench, session: &str) -> anyhow::Result<()> {
    let host = bench.sshd.alias();
    remora_testkit::wait_for(WAIT, "the disconnected command to finish", || {
        let run = timed(&mut bench.remora(&["jobs", host, "--name", session, "--json"]))?;
        let jobs: serde_json::Value = serde_json::from_slice(&run.stdout)?;
        let pending = jobs.as_array().map_or(1, |all| {
            all.iter()
                .filter(|c| c["state"] == "Running" || c["state"] == "Queued")
                .count()
        });
        Ok((pending == 0).then_some(()))
    })
}
