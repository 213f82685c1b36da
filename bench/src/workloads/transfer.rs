//! Workload 12 (data in and out): a file of `--bytes` uploaded and downloaded by `remora cp`,
//! `scp` and `sftp`; the same bytes on stdin to `remora invoke -- 'cat > /dev/null'` and
//! `ssh HOST 'cat > /dev/null'`; and an upload cut three times through a faulty link, where the
//! bytes on the wire are compared with the file's size, next to what scp does after one cut
//! (it fails; run again, it starts over). Same cipher, alternating, in one run.
//!
//! `remora cp` makes each file durable (`fdatasync`) before it renames it into place; scp and
//! sftp do not. The targets stay against plain scp and sftp, and one more row shows the
//! durable-for-durable comparison: scp followed by `sync --data` of the file it wrote.

use std::{
    fs::File,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{ensure, Context};
use remora_testkit::FaultyLink;

use super::stream::mb_per_s;
use crate::{
    measure::{secs, timed, timed_with_input, Row, Stats},
    setup::Bench,
    Args,
};

/// How long a transfer may take before the cut workload gives up waiting for progress.
const PROGRESS_LIMIT: Duration = Duration::from_secs(300);

pub fn run(bench: &Bench, args: &Args) -> anyhow::Result<Vec<Row>> {
    let dir = bench.sshd.dir().join("transfer");
    let (local, far, back) = (dir.join("local"), dir.join("far"), dir.join("back"));
    for d in [&local, &far, &back] {
        std::fs::create_dir_all(d)?;
    }
    let file = local.join("payload.bin");
    write_payload(&file, args.bytes)?;
    let host = bench.sshd.alias();
    timed(&mut bench.remora(&["invoke", host, "--", "true"]))?;
    let remote = |path: &Path| format!("{host}:{}", path.display());
    let target = far.join("payload.bin");
    let mut samples: [Vec<f64>; 9] = Default::default();
    for _ in 0..args.reps {
        let runs: [Command; 9] = [
            bench.remora(&["cp", file.to_str().unwrap(), &remote(&far)]),
            scp(bench, &[file.to_str().unwrap(), &remote(&far)]),
            sftp(bench, &format!("put {} {}", file.display(), target.display())),
            bench.remora(&["cp", &remote(&target), back.to_str().unwrap()]),
            scp(bench, &[&remote(&target), back.to_str().unwrap()]),
            sftp(bench, &format!("get {} {}", target.display(), back.display())),
            bench.remora(&["invoke", host, "--", "cat > /dev/null"]),
            bench.ssh(&[host, "cat > /dev/null"]),
            then_sync(scp(bench, &[file.to_str().unwrap(), &remote(&far)]), &target),
        ];
        for (slot, mut command) in runs.into_iter().enumerate() {
            let input = match slot {
                6 | 7 => Stdio::from(File::open(&file)?),
                _ => Stdio::null(),
            };
            let elapsed = timed_with_input(&mut command, input)?.elapsed;
            samples[slot].push(mb_per_s(args.bytes, secs(elapsed)));
            let _ = std::fs::remove_file(back.join("payload.bin"));
        }
    }
    let mb = args.bytes / 1_000_000;
    let stats = |slot: usize| Stats::of(&samples[slot]);
    let compare = |metric: String, remora: Stats, openssh: Stats, tool: &str| {
        let row = Row::new("12 transfer", &metric, "MB/s", remora).against(openssh);
        let met = row.ratio.unwrap_or(0.0) >= 0.95;
        row.target(&format!(">= 0.95x {tool}"), met)
    };
    let mut rows = vec![
        compare(format!("{mb} MB upload, cp vs scp"), stats(0), stats(1), "scp"),
        compare(format!("{mb} MB upload, cp vs sftp"), stats(0), stats(2), "sftp"),
        compare(format!("{mb} MB download, cp vs scp"), stats(3), stats(4), "scp"),
        compare(format!("{mb} MB download, cp vs sftp"), stats(3), stats(5), "sftp"),
        compare(
            format!("{mb} MB on stdin to cat > /dev/null"),
            stats(6),
            stats(7),
            "ssh",
        ),
        Row::new(
            "12 transfer",
            &format!("{mb} MB upload, cp vs scp + sync --data (both durable)"),
            "MB/s",
            stats(0),
        )
        .against(stats(8)),
    ];
    rows.push(cut_three_times(bench, &file, &dir, args.bytes)?);
    Ok(rows)
}

fn scp(bench: &Bench, args: &[&str]) -> Command {
    let mut command = bench.sshd.openssh_tool("scp", &bench.sshd.ssh_config());
    command.args(["-q", "-c", &bench.cipher]).args(args);
    command
}

fn sftp(bench: &Bench, batch: &str) -> Command {
    let mut command = bench.sshd.openssh_tool("sftp", &bench.sshd.ssh_config());
    command
        .args(["-q", "-c", &bench.cipher, "-b", "-", bench.sshd.alias()])
        .env("REMORA_BENCH_BATCH", batch);
    // sftp reads its batch from stdin; `timed` gives it /dev/null, so wrap it in sh.
    let mut shell = Command::new("sh");
    shell
        .arg("-c")
        .arg("printf '%s\\n' \"$REMORA_BENCH_BATCH\" | exec \"$0\" \"$@\"");
    shell.arg(command.get_program()).args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => shell.env(key, value),
            None => shell.env_remove(key),
        };
    }
    shell
}

/// `command`, then `sync --data FILE` (coreutils: fdatasync of the file), timed as one.
fn then_sync(command: Command, file: &Path) -> Command {
    let mut shell = Command::new("sh");
    shell
        .arg("-c")
        .arg("\"$0\" \"$@\" && exec sync --data \"$REMORA_BENCH_SYNC\"")
        .arg(command.get_program())
        .args(command.get_args())
        .env("REMORA_BENCH_SYNC", file);
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => shell.env(key, value),
            None => shell.env_remove(key),
        };
    }
    shell
}

/// Deterministic, incompressible bytes (ciphers do not care, but disks and caches might).
fn write_payload(path: &Path, bytes: u64) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(File::create(path)?);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut block = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        for chunk in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        let n = left.min(block.len() as u64) as usize;
        out.write_all(&block[..n])?;
        left -= n as u64;
    }
    Ok(out.flush()?)
}

/// The upload cut three times (at 1/4, 2/4, 3/4): wire bytes over the file's size; and scp,
/// cut once at half way, then run again to completion.
fn cut_three_times(bench: &Bench, file: &Path, dir: &Path, bytes: u64) -> anyhow::Result<Row> {
    let link = FaultyLink::start(bench.sshd.addr())?;
    let config = dir.join("flaky_config");
    let block = bench.sshd.host_block_via("flaky", link.addr().port())?;
    std::fs::write(&config, block + "  ServerAliveInterval 1\n  ServerAliveCountMax 3\n")?;
    let far = dir.join("far-cut");
    std::fs::create_dir_all(&far)?;

    let before = link.upstream_bytes();
    let mut upload = bench.sshd.remora_with_config(&config);
    upload
        .arg("cp")
        .arg(file)
        .arg(format!("flaky:{}", far.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = upload.spawn()?;
    for quarter in 1..=3u64 {
        let connections = link.connections();
        wait_for(|| partial_bytes(&far) >= bytes * quarter / 4)?;
        link.cut();
        wait_for(|| link.connections() > connections)?;
    }
    ensure!(child.wait()?.success(), "the cut remora cp failed");
    let remora = (link.upstream_bytes() - before) as f64 / bytes as f64;
    std::fs::remove_file(far.join("payload.bin"))?;

    let before = link.upstream_bytes();
    let scp_to = |target: &Path| {
        let mut command = bench.sshd.openssh_tool("scp", &config);
        command
            .args(["-q", "-c", &bench.cipher])
            .arg(file)
            .arg(format!("flaky:{}", target.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    };
    let target = far.join("payload.bin");
    let mut first = scp_to(&target).spawn()?;
    wait_for(|| std::fs::metadata(&target).map_or(0, |m| m.len()) >= bytes / 2)?;
    link.cut();
    let cut_failed = !first.wait()?.success();
    ensure!(
        timed(&mut scp_to(&target))?.elapsed > Duration::ZERO,
        "scp's second run"
    );
    let scp = (link.upstream_bytes() - before) as f64 / bytes as f64;
    let row = Row::new(
        "12 transfer",
        &format!(
            "{} MB upload cut 3x: wire bytes / size (scp: cut once{})",
            bytes / 1_000_000,
            if cut_failed { ", failed, rerun from 0" } else { "" }
        ),
        "x",
        Stats::single(remora),
    );
    let met = remora <= 1.05;
    let mut row = row.target("<= 1.05x size", met);
    row.openssh = Some(Stats::single(scp));
    Ok(row)
}

fn partial_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum()
}

fn wait_for(mut condition: impl FnMut() -> bool) -> anyhow::Result<()> {
    remora_testkit::wait_until(PROGRESS_LIMIT, "transfer progress", &mut condition).context("the transfer stalled")
}
