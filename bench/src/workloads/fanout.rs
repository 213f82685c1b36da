//! Workload 7 (fan-out): one command on many hosts through the comma list (aliases of the test
//! sshd), against one host, and against `ssh` to each host in a shell loop.

use crate::{
    measure::{children_cpu_secs, secs, timed, Row, Stats},
    setup::Bench,
    Args,
};

pub fn run(bench: &Bench, args: &Args) -> anyhow::Result<Vec<Row>> {
    let aliases: Vec<String> = (1..=args.hosts).map(|n| format!("fan{n}")).collect();
    for alias in &aliases {
        bench.sshd.add_alias(alias, bench.sshd.port())?;
    }
    let all = aliases.join(",");
    let (mut many, mut one, mut client_cpu) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.reps.max(3) {
        let cpu_before = children_cpu_secs();
        many.push(secs(timed(&mut bench.remora(&["invoke", &all, "--", "true"]))?.elapsed));
        client_cpu.push(children_cpu_secs() - cpu_before);
        let single = timed(&mut bench.remora(&["invoke", &aliases[0], "--", "true"]))?;
        one.push(secs(single.elapsed));
    }
    let loop_secs = ssh_loop(bench, &aliases)?;
    let many = Stats::of(&many);
    let vs_one = Row::new("7 fan-out", &format!("invoke on {} hosts", args.hosts), "s", many)
        .ratio(many.median / Stats::of(&one).median);
    let met = vs_one.ratio.unwrap_or(f64::MAX) <= 2.0;
    let speedup = loop_secs / many.median;
    Ok(vec![
        vs_one.target("<= 2x one host", met),
        Row::new("7 fan-out", "remora's own CPU time for it", "s", Stats::of(&client_cpu)),
        Row::new(
            "7 fan-out",
            "ssh to each host in a shell loop",
            "s",
            Stats::single(loop_secs),
        )
        .ratio(speedup)
        .target("loop / fan-out >= 10", speedup >= 10.0),
    ])
}

fn ssh_loop(bench: &Bench, aliases: &[String]) -> anyhow::Result<f64> {
    let config = bench.sshd.ssh_config();
    let script = format!(
        "for h in {}; do ssh -F {} -o BatchMode=yes -c {} \"$h\" true || exit 1; done",
        aliases.join(" "),
        config.display(),
        bench.cipher
    );
    // The loop runs locally, with the harness clients' private HOME and no ssh-agent.
    let mut command = std::process::Command::new("sh");
    command
        .arg("-c")
        .arg(script)
        .env("HOME", bench.sshd.home())
        .env_remove("SSH_AUTH_SOCK");
    Ok(secs(timed(&mut command)?.elapsed))
}
