//! Workload 10 (fleet): `invoke -- true` on 200 hosts (ssh_config aliases of the test sshd) at
//! the default throttle of 32 — cold, then warm through the connection holder — against
//! `parallel-ssh` (Debian's pssh) and `ansible all -m command -a true` at the same concurrency,
//! and remora's own CPU per host, on a plain account and on one whose `~/.bashrc` costs 100 ms.
//! Tools that are not installed are reported, not faked.

use std::process::Command;

use crate::{
    measure::{children_cpu_secs, secs, timed, Row, Stats},
    setup::{Account, Bench, WAIT},
    Args,
};

/// Hosts in the fleet.
const HOSTS: usize = 200;
/// Hosts contacted at once, by every tool.
const THROTTLE: usize = 32;

pub fn run(_shared: &Bench, args: &Args) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for account in Account::BOTH {
        rows.extend(on_account(args, account)?);
    }
    Ok(rows)
}

/// Every row on one account; pssh and Ansible log in through the same rc file.
fn on_account(args: &Args, account: Account) -> anyhow::Result<Vec<Row>> {
    // Its own sshd and daemon: the workloads before it leave a thousand sessions behind, and 200
    // more handshakes at once beside them measure the leftovers, not the fleet.
    let bench = &Bench::start()?;
    account.prepare(&bench.sshd)?;
    let aliases: Vec<String> = (1..=HOSTS).map(|n| format!("fleet{n}")).collect();
    for alias in &aliases {
        bench.sshd.add_alias(alias, bench.sshd.port())?;
    }
    let list = bench.sshd.dir().join("fleet.txt");
    std::fs::write(&list, aliases.join("\n") + "\n")?;
    let list_arg = list.display().to_string();
    let throttle = THROTTLE.to_string();
    let invoke = ["--throttle", &throttle, "-H", &list_arg, "invoke", "--", "true"];
    let (mut cold, mut cpu) = (Vec::new(), Vec::new());
    for _ in 0..args.reps.clamp(1, 3) {
        let before = children_cpu_secs();
        cold.push(secs(timed(&mut bench.remora(&invoke))?.elapsed));
        cpu.push((children_cpu_secs() - before) / HOSTS as f64 * 1e3);
    }
    let warm = warm_runs(bench, &invoke, args)?;
    let cold = Stats::of(&cold);
    let mut rows = vec![
        Row::new(
            "10 fleet",
            &format!(
                "invoke on {HOSTS} hosts, throttle {THROTTLE}, cold, {}",
                account.label()
            ),
            "s",
            cold,
        ),
        Row::new("10 fleet", "  remora's own CPU per host", "ms", Stats::of(&cpu)),
    ];
    let warm_ratio = warm.median / cold.median;
    rows.push(
        Row::new("10 fleet", "  same, warm (connections held)", "s", warm)
            .ratio(warm_ratio)
            .target("<= 0.25x cold", warm_ratio <= 0.25),
    );
    rows.push(match pssh(bench, &list)? {
        Some(pssh) => Row::new("10 fleet", "  cold vs parallel-ssh -p 32", "s", cold)
            .against(pssh)
            .target("<= 0.7x pssh", cold.median / pssh.median <= 0.7),
        None => Row::new("10 fleet", "  parallel-ssh not installed: not compared", "s", cold),
    });
    rows.push(match ansible(bench, &aliases)? {
        Some(ansible) => {
            let speedup = ansible.median / cold.median;
            Row::new("10 fleet", "  ansible all -m command -a true -f 32", "s", ansible)
                .ratio(speedup)
                .target("ansible / remora >= 10", speedup >= 10.0)
        }
        None => Row::new("10 fleet", "  ansible not installed: not compared", "s", cold),
    });
    timed(&mut bench.remora_warm(&["conn", "stop"]))?;
    Ok(rows)
}

/// The same invoke once the holder holds every host: a first run warms it up.
fn warm_runs(bench: &Bench, invoke: &[&str], args: &Args) -> anyhow::Result<Stats> {
    timed(&mut bench.remora_warm(invoke))?;
    remora_testkit::wait_until(WAIT, "the holder to hold the fleet", || {
        timed(&mut bench.remora_warm(&["conn", "ls", "--json"])).is_ok_and(|run| {
            String::from_utf8_lossy(&run.stdout)
                .matches("\"connections\": 1")
                .count()
                >= HOSTS
        })
    })?;
    let mut warm = Vec::new();
    for _ in 0..args.reps.clamp(1, 3) {
        warm.push(secs(timed(&mut bench.remora_warm(invoke))?.elapsed));
    }
    Ok(Stats::of(&warm))
}

/// `parallel-ssh -p 32 -h FILE true` with the harness's ssh_config, or `None` without pssh.
fn pssh(bench: &Bench, list: &std::path::Path) -> anyhow::Result<Option<Stats>> {
    let Some(program) = ["parallel-ssh", "pssh"].into_iter().find(|p| installed(p)) else {
        return Ok(None);
    };
    let mut command = Command::new(program);
    command
        .args(["-p", &THROTTLE.to_string(), "-t", "0", "-h"])
        .arg(list)
        .args([
            "-x",
            &format!("-F {} -o BatchMode=yes", bench.sshd.ssh_config().display()),
        ])
        .arg("true")
        .env("HOME", bench.sshd.home())
        .env_remove("SSH_AUTH_SOCK");
    Ok(Some(Stats::single(secs(timed(&mut command)?.elapsed))))
}

/// `ansible all -m command -a true -f 32` over the same aliases, or `None` without ansible.
fn ansible(bench: &Bench, aliases: &[String]) -> anyhow::Result<Option<Stats>> {
    if !installed("ansible") {
        return Ok(None);
    }
    let inventory = bench.sshd.dir().join("fleet.ini");
    std::fs::write(&inventory, format!("[fleet]\n{}\n", aliases.join("\n")))?;
    let mut command = Command::new("ansible");
    command
        .args(["all", "-i"])
        .arg(&inventory)
        .args(["-m", "command", "-a", "true", "-f", &THROTTLE.to_string()])
        .env("HOME", bench.sshd.home())
        .env(
            "ANSIBLE_SSH_ARGS",
            format!("-F {} -o BatchMode=yes", bench.sshd.ssh_config().display()),
        )
        .env("ANSIBLE_HOST_KEY_CHECKING", "False")
        .env("ANSIBLE_PYTHON_INTERPRETER", "auto_silent")
        .env_remove("SSH_AUTH_SOCK");
    Ok(Some(Stats::single(secs(timed(&mut command)?.elapsed))))
}

fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}
