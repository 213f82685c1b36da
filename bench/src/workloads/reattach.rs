//! Workload 4 (reattach): `remora receive` of a finished small command from a fresh process,
//! against `ssh HOST true`, alternating, and against `ssh` over a ControlMaster.

use anyhow::ensure;

use super::roundtrip::millis;
use crate::{
    measure::{secs, timed, Row, Stats},
    setup::Bench,
    Args,
};

pub fn run(bench: &Bench, args: &Args) -> anyhow::Result<Vec<Row>> {
    let host = bench.sshd.alias();
    timed(&mut bench.remora(&["new", host, "--name", "again"]))?;
    let master = bench.ssh_master()?;
    let (mut remora, mut ssh, mut muxed) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.reps.max(5) {
        timed(&mut bench.remora(&["invoke", host, "--name", "again", "--disconnected", "--", "echo done"]))?;
        // `receive --keep` would leave it for the next round; a plain receive takes it away, so
        // each round reattaches to one finished command, as after a day away.
        let run = timed(&mut bench.remora(&["receive", host, "--name", "again"]))?;
        ensure!(
            run.stdout == b"done\n",
            "receive printed {:?}",
            String::from_utf8_lossy(&run.stdout)
        );
        remora.push(secs(run.elapsed) * 1e3);
        ssh.push(millis(&mut bench.ssh(&[host, "true"]))?);
        muxed.push(millis(&mut master.ssh(&[host, "true"]))?);
    }
    drop(master);
    let remora = Stats::of(&remora);
    let row =
        Row::new("4 reattach", "receive of a finished command, new process", "ms", remora).against(Stats::of(&ssh));
    let met = row.ratio.unwrap_or(f64::MAX) <= 1.2;
    Ok(vec![
        row.target("<= 1.2x ssh host true", met),
        Row::new("4 reattach", "  same, vs ssh over a ControlMaster", "ms", remora).against(Stats::of(&muxed)),
    ])
}
