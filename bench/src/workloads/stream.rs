//! Workload 1 (streaming output): `remora invoke HOST -- head -c N /dev/zero` against
//! `ssh HOST head -c N /dev/zero`, same cipher, alternating; and workload 8's first half: the
//! daemon's memory while the stream passes.

use anyhow::ensure;

use crate::{
    measure::{secs, timed, Row, RssSampler, Stats},
    setup::Bench,
    Args,
};

/// Returns the rows and remora's median throughput (MB/s), which the replay is compared with.
pub fn run(bench: &Bench, args: &Args) -> anyhow::Result<(Vec<Row>, f64)> {
    let command = format!("head -c {} /dev/zero", args.bytes);
    let host = bench.sshd.alias();
    // The first remora run starts the daemon; it is not measured.
    timed(&mut bench.remora(&["invoke", host, "--", "true"]))?;
    let daemon = bench.daemon_pid()?;
    let baseline = crate::measure::rss_kib(daemon).unwrap_or(0);
    let (mut remora, mut ssh, mut peak) = (Vec::new(), Vec::new(), 0);
    for _ in 0..args.reps {
        let sampler = RssSampler::start(daemon);
        let run = timed(&mut bench.remora(&["invoke", host, "--", &command]))?;
        peak = peak.max(sampler.stop());
        ensure!(
            run.stdout_bytes == args.bytes,
            "remora delivered {} bytes",
            run.stdout_bytes
        );
        remora.push(mb_per_s(args.bytes, secs(run.elapsed)));
        let run = timed(&mut bench.ssh(&[host, &command]))?;
        ensure!(
            run.stdout_bytes == args.bytes,
            "ssh delivered {} bytes",
            run.stdout_bytes
        );
        ssh.push(mb_per_s(args.bytes, secs(run.elapsed)));
    }
    let remora = Stats::of(&remora);
    let throughput = remora.median;
    let stream = Row::new(
        "1 stream",
        &format!("{} MB through invoke", args.bytes / 1_000_000),
        "MB/s",
        remora,
    )
    .against(Stats::of(&ssh));
    let met = stream.ratio.unwrap_or(0.0) >= 0.95;
    let growth = peak.saturating_sub(baseline) as f64 / 1024.0;
    let memory = Row::new(
        "8 memory",
        "daemon RSS growth during the stream",
        "MiB",
        Stats::single(growth),
    )
    .target("flat: < 64 MiB limit", growth < 64.0);
    let other = other_cipher(bench, args, &command)?;
    Ok((vec![stream.target(">= 0.95x ssh", met), other, memory], throughput))
}

/// The same stream with the other of AES-256-GCM and ChaCha20-Poly1305, both sides.
fn other_cipher(bench: &Bench, args: &Args, command: &str) -> anyhow::Result<Row> {
    let cipher = match bench.cipher.as_str() {
        "chacha20-poly1305@openssh.com" => "aes256-gcm@openssh.com",
        _ => "chacha20-poly1305@openssh.com",
    };
    let host = bench.sshd.alias();
    let ciphers = format!("Ciphers={cipher}");
    let (mut remora, mut ssh) = (Vec::new(), Vec::new());
    for _ in 0..args.reps {
        let run = timed(&mut bench.remora(&["-o", &ciphers, "invoke", host, "--", command]))?;
        ensure!(
            run.stdout_bytes == args.bytes,
            "remora delivered {} bytes",
            run.stdout_bytes
        );
        remora.push(mb_per_s(args.bytes, secs(run.elapsed)));
        let run = timed(bench.sshd.ssh().args(["-c", cipher, host, command]))?;
        ensure!(
            run.stdout_bytes == args.bytes,
            "ssh delivered {} bytes",
            run.stdout_bytes
        );
        ssh.push(mb_per_s(args.bytes, secs(run.elapsed)));
    }
    let row = Row::new("1 stream", &format!("  same, {cipher}"), "MB/s", Stats::of(&remora)).against(Stats::of(&ssh));
    let met = row.ratio.unwrap_or(0.0) >= 0.95;
    Ok(row.target(">= 0.95x ssh", met))
}

pub fn mb_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}
