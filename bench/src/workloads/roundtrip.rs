//! Workload 3 (command round trip): `remora invoke HOST --name S -- true` from a fresh process
//! against `ssh HOST true` (and `ssh` over a ControlMaster), and, inside one connection (the
//! library), an attached `true`.

use std::time::Instant;

use remora_client::OutputSink;
use remora_wire::{CommandEnded, Invoke, NewSession, Output, OutputDropped, SessionRef};

use crate::{
    measure::{secs, timed, Row, Stats},
    setup::Bench,
    Args,
};

/// Round trips timed inside one connection.
const IN_CONNECTION: usize = 300;

pub fn run(bench: &Bench, args: &Args) -> anyhow::Result<Vec<Row>> {
    let host = bench.sshd.alias();
    timed(&mut bench.remora(&["new", host, "--name", "rt"]))?;
    let master = bench.ssh_master()?;
    let (mut remora, mut ssh, mut muxed) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.reps.max(5) {
        remora.push(millis(
            &mut bench.remora(&["invoke", host, "--name", "rt", "--", "true"]),
        )?);
        ssh.push(millis(&mut bench.ssh(&[host, "true"]))?);
        muxed.push(millis(&mut master.ssh(&[host, "true"]))?);
    }
    drop(master);
    let remora = Stats::of(&remora);
    let fresh = Row::new("3 command", "invoke --name S -- true, new process", "ms", remora).against(Stats::of(&ssh));
    let met = fresh.ratio.unwrap_or(f64::MAX) <= 0.3;
    let inside = in_connection(bench)?;
    let inside_met = inside.median <= 2.0;
    Ok(vec![
        fresh.target("<= 0.3x ssh host true", met),
        Row::new("3 command", "  same, vs ssh over a ControlMaster", "ms", remora).against(Stats::of(&muxed)),
        Row::new("3 command", "invoke -- true inside one connection", "ms", inside).target("<= 2 ms", inside_met),
    ])
}

/// Runs `command` to its end; its wall time in milliseconds.
pub fn millis(command: &mut std::process::Command) -> anyhow::Result<f64> {
    Ok(secs(timed(command)?.elapsed) * 1e3)
}

/// Attached `true` in a session over one library connection, [`IN_CONNECTION`] times.
fn in_connection(bench: &Bench) -> anyhow::Result<Stats> {
    Bench::runtime()?.block_on(async {
        let mut client = bench.client().await?;
        client
            .new_session(NewSession {
                name: "rt-lib".into(),
                ..NewSession::default()
            })
            .await?;
        let mut samples = Vec::new();
        for _ in 0..IN_CONNECTION {
            let start = Instant::now();
            let request = Invoke {
                session: Some(SessionRef::Name("rt-lib".into())),
                command: "true".into(),
                create: false,
                follow: true,
                window: remora_wire::DEFAULT_WINDOW,
                idle_timeout_secs: None,
                configuration: None,
                buffering: None,
                job: Default::default(),
                stdin: remora_wire::InputMode::Null,
            };
            client.invoke(request, &mut Discard).await?;
            samples.push(secs(start.elapsed()) * 1e3);
        }
        client.close().await?;
        Ok(Stats::of(&samples))
    })
}

/// Output nobody looks at.
pub struct Discard;

impl OutputSink for Discard {
    fn output(&mut self, _: &Output) -> std::io::Result<()> {
        Ok(())
    }
    fn dropped(&mut self, _: &OutputDropped) -> std::io::Result<()> {
        Ok(())
    }
    fn ended(&mut self, _: &CommandEnded) -> std::io::Result<()> {
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
