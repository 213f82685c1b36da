//! Workload 9 (terminals): `remora shell` against `ssh -tt` (and tmux), each driven on a real
//! pseudo-terminal by the bench as a user's terminal would be:
//! - keystroke echo: type one byte at the shell's prompt, time until its echo arrives;
//! - throughput: `cat` of a 200 MB text file inside the shell, until a marker after it arrives;
//! - reattach: a new process until a full-screen program (`less`) is drawn again, against
//!   `ssh -t HOST tmux attach` (when tmux is installed) and `ssh HOST true`;
//! - memory: the daemon's RSS per idle terminal whose 10,000-line scrollback is full.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use anyhow::Context;
use remora_testkit::{rss_kib, PtyProgram};

use super::roundtrip::millis;
use crate::{
    measure::{Row, Stats},
    setup::{Bench, WAIT},
    Args,
};

/// How long one screen event may take.
const SCREEN: Duration = Duration::from_secs(60);
/// Keystrokes timed per client.
const KEYS: usize = 200;
/// Idle terminals measured for memory.
const IDLE_TERMINALS: usize = 4;

pub fn run(bench: &Bench, args: &Args) -> anyhow::Result<Vec<Row>> {
    let mut rows = echo(bench)?;
    rows.extend(throughput(bench, args)?);
    rows.extend(reattach(bench, args)?);
    rows.push(memory(bench)?);
    Ok(rows)
}

/// `remora shell HOST --name NAME` on a 24x80 terminal.
fn remora_shell(bench: &Bench, name: &str, parse: bool) -> anyhow::Result<PtyProgram> {
    let mut command = bench.remora(&["shell", bench.sshd.alias(), "--name", name]);
    command.env("TERM", "xterm-256color");
    spawn(command, parse)
}

/// `ssh -tt HOST` (a login shell on a remote pty) on a 24x80 terminal.
fn ssh_shell(bench: &Bench, parse: bool) -> anyhow::Result<PtyProgram> {
    let mut command = bench.ssh(&["-tt", bench.sshd.alias()]);
    command.env("TERM", "xterm-256color");
    spawn(command, parse)
}

fn spawn(command: Command, parse: bool) -> anyhow::Result<PtyProgram> {
    match parse {
        true => PtyProgram::spawn(command, 24, 80),
        false => PtyProgram::spawn_unparsed(command, 24, 80),
    }
}

/// Waits until the shell answers a computed marker.
fn ready(pty: &mut PtyProgram) -> anyhow::Result<()> {
    let since = pty.total();
    pty.send(b"echo rea''dy-$((40+2))\r")?;
    pty.wait_for_bytes(SCREEN, b"ready-42", since)?;
    Ok(())
}

/// Milliseconds from typing one byte to seeing its echo, [`KEYS`] times (each erased again).
fn key_echo(pty: &mut PtyProgram) -> anyhow::Result<Vec<f64>> {
    ready(pty)?;
    let mut samples = Vec::with_capacity(KEYS);
    for i in 0..KEYS {
        let key = b'a' + (i % 26) as u8;
        let since = pty.total();
        let start = Instant::now();
        pty.send(&[key])?;
        pty.wait_for_bytes(SCREEN, &[key], since)?;
        samples.push(start.elapsed().as_secs_f64() * 1e3);
        let since = pty.total();
        pty.send(b"\x7f")?;
        pty.wait_for_bytes(SCREEN, b"\x08", since)?;
    }
    Ok(samples)
}

fn echo(bench: &Bench) -> anyhow::Result<Vec<Row>> {
    let mut remora = remora_shell(bench, "bench-echo", false)?;
    let mut ssh = ssh_shell(bench, false)?;
    let (mut r, mut s) = (Vec::new(), Vec::new());
    // Alternate halves so both see the same machine load.
    for _ in 0..2 {
        r.extend(key_echo(&mut remora)?);
        s.extend(key_echo(&mut ssh)?);
    }
    let row = Row::new("9 terminal", "keystroke echo round trip", "ms", Stats::of(&r)).against(Stats::of(&s));
    let met = row.ratio.unwrap_or(f64::MAX) <= 1.2;
    Ok(vec![row.target("<= 1.2x ssh -tt", met)])
}

/// A text file of `bytes` bytes of 80-column lines, on the "host".
fn text_file(bench: &Bench, bytes: u64) -> anyhow::Result<std::path::PathBuf> {
    let path = bench.sshd.dir().join("terminal-cat.txt");
    let line = b"the quick brown fox jumps over the lazy dog 0123456789 ABCDEFGHIJKLMNOPQRSTUVW\n";
    let mut text = Vec::with_capacity(bytes as usize);
    while (text.len() as u64) < bytes {
        text.extend_from_slice(line);
    }
    text.truncate(bytes as usize);
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Seconds for `cat FILE` in the shell until the marker printed after it arrives.
fn cat_secs(pty: &mut PtyProgram, file: &std::path::Path) -> anyhow::Result<f64> {
    let since = pty.total();
    let start = Instant::now();
    pty.send(format!("cat {}; echo cat-do''ne-$((1+1))\r", file.display()).as_bytes())?;
    pty.wait_for_bytes(WAIT, b"cat-done-2", since)?;
    Ok(start.elapsed().as_secs_f64())
}

fn throughput(bench: &Bench, args: &Args) -> anyhow::Result<Vec<Row>> {
    let bytes = if args.quick { 20_000_000 } else { 200_000_000 };
    let file = text_file(bench, bytes)?;
    let mut remora = remora_shell(bench, "bench-cat", false)?;
    let mut ssh = ssh_shell(bench, false)?;
    ready(&mut remora)?;
    ready(&mut ssh)?;
    let (mut r, mut s) = (Vec::new(), Vec::new());
    let mb = bytes as f64 / 1e6;
    for _ in 0..args.reps.clamp(1, 3) {
        r.push(mb / cat_secs(&mut remora, &file)?);
        s.push(mb / cat_secs(&mut ssh, &file)?);
    }
    let metric = format!("cat of {} MB inside the shell", bytes / 1_000_000);
    let row = Row::new("9 terminal", &metric, "MB/s", Stats::of(&r)).against(Stats::of(&s));
    let met = row.ratio.unwrap_or(0.0) >= 0.9;
    let _ = std::fs::remove_file(&file);
    Ok(vec![row.target(">= 0.9x ssh -tt", met)])
}

/// A file for `less` to show.
fn pager_file(bench: &Bench) -> anyhow::Result<std::path::PathBuf> {
    let path = bench.sshd.dir().join("terminal-less.txt");
    let text: String = (1..=500)
        .map(|i| format!("line {i} \x1b[1mbold\x1b[m and more text\n"))
        .collect();
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Milliseconds from starting `command` until `less` is drawn on its screen; then it is ended
/// (a detach for remora, a dropped link for ssh + tmux).
fn until_drawn(command: Command) -> anyhow::Result<f64> {
    let start = Instant::now();
    let pty = PtyProgram::spawn(command, 24, 80)?;
    pty.wait_for(SCREEN, "the pager redrawn", |s| s.contents().contains("line 20 bold"))?;
    let elapsed = start.elapsed().as_secs_f64() * 1e3;
    pty.signal(nix::sys::signal::Signal::SIGTERM);
    drop(pty);
    Ok(elapsed)
}

fn reattach(bench: &Bench, args: &Args) -> anyhow::Result<Vec<Row>> {
    let host = bench.sshd.alias();
    let file = pager_file(bench)?;
    let mut first = remora_shell(bench, "bench-full", true)?;
    ready(&mut first)?;
    first.send(format!("less -R {}\r", file.display()).as_bytes())?;
    first.wait_for(SCREEN, "less", |s| s.contents().contains("line 20 bold"))?;
    first.signal(nix::sys::signal::Signal::SIGTERM);
    drop(first);
    let socket = format!("remora-bench-{}", std::process::id());
    let tmux = tmux_installed();
    if tmux {
        let start = format!(
            "tmux -L {socket} new-session -d -x 80 -y 24 'less -R {}'",
            file.display()
        );
        millis(&mut bench.ssh(&[host, &start])).context("starting tmux on the host")?;
    }
    let (mut remora, mut plain, mut attach) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.reps.max(5) {
        let mut command = bench.remora(&["shell", host, "--name", "bench-full"]);
        command.env("TERM", "xterm-256color");
        remora.push(until_drawn(command)?);
        plain.push(millis(&mut bench.ssh(&[host, "true"]))?);
        if tmux {
            let mut command = bench.ssh(&["-tt", host, &format!("tmux -L {socket} attach")]);
            command.env("TERM", "xterm-256color");
            attach.push(until_drawn(command)?);
        }
    }
    if tmux {
        let _ = millis(&mut bench.ssh(&[host, &format!("tmux -L {socket} kill-server")]));
    }
    let remora = Stats::of(&remora);
    let mut rows = Vec::new();
    let vs_true = Row::new(
        "9 terminal",
        "reattach to a redrawn full screen, new process",
        "ms",
        remora,
    )
    .against(Stats::of(&plain));
    let met = vs_true.ratio.unwrap_or(f64::MAX) <= 1.2;
    rows.push(vs_true.target("<= 1.2x ssh host true", met));
    if tmux {
        let row =
            Row::new("9 terminal", "  same, vs ssh -t host tmux attach", "ms", remora).against(Stats::of(&attach));
        let met = row.ratio.unwrap_or(f64::MAX) <= 1.2;
        rows.push(row.target("<= 1.2x tmux attach", met));
    }
    Ok(rows)
}

fn tmux_installed() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// KiB of daemon memory per idle terminal whose scrollback holds 10,000 lines of 80 columns.
fn memory(bench: &Bench) -> anyhow::Result<Row> {
    let daemon = bench.daemon_pid()?;
    let before = rss_kib(daemon).context("daemon RSS")?;
    for i in 0..IDLE_TERMINALS {
        let mut pty = remora_shell(bench, &format!("bench-idle-{i}"), false)?;
        ready(&mut pty)?;
        let since = pty.total();
        pty.send(b"yes 'the quick brown fox jumps over the lazy dog 0123456789 ABCDEFGHIJKLMNOPQRSTUV' | head -n 12000; echo fil''led-$((2+2))\r")?;
        pty.wait_for_bytes(SCREEN, b"filled-4", since)?;
        pty.send(b"\r~.")?;
        pty.signal(nix::sys::signal::Signal::SIGTERM);
    }
    let after = rss_kib(daemon).context("daemon RSS")?;
    let per = after.saturating_sub(before) as f64 / IDLE_TERMINALS as f64 / 1024.0;
    Ok(Row::new(
        "9 terminal",
        "agent memory per idle terminal, full scrollback",
        "MiB",
        Stats::single(per),
    )
    .target("<= 4 MiB", per <= 4.0))
}
