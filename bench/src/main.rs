//! `remora-bench`: remora and OpenSSH measured side by side, in one run, on the same loopback
//! sshd (a real OpenSSH server with the built agent as its subsystem, as in the tests). Each
//! workload alternates remora and `ssh` runs over several repetitions, then prints median, min,
//! max and the ratio its target is about; the whole table also goes to a JSON file.
//!
//! Run it with `scripts/bench` (release build). `--quick` is a short smoke run.

mod measure;
mod setup;
mod workloads;

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;

use crate::{measure::Row, setup::Bench};

/// The workloads `--only` can name, in the order they run.
const WORKLOADS: [&str; 12] = [
    "stream",
    "replay",
    "roundtrip",
    "warm",
    "reattach",
    "reconnect",
    "scale",
    "fanout",
    "fleet",
    "ansible",
    "terminal",
    "transfer",
];

/// remora vs OpenSSH on a loopback sshd.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Args {
    /// Repetitions of each timed workload.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Bytes streamed, replayed and transferred (workloads 1, 2, 8, 9): a number, or with a decimal suffix
    /// (`100M`, `1G`).
    #[arg(long, default_value = "1G", value_parser = parse_bytes)]
    bytes: u64,
    /// Sessions in the scale workload.
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Completed commands kept in the scale workload.
    #[arg(long, default_value_t = 10_000)]
    commands: usize,
    /// Hosts (aliases) in the fan-out workload.
    #[arg(long, default_value_t = 50)]
    hosts: usize,
    /// A short smoke run: small sizes, two repetitions.
    #[arg(long)]
    quick: bool,
    /// Only these workloads, comma-separated.
    #[arg(long, value_delimiter = ',', value_parser = WORKLOADS)]
    only: Vec<String>,
    /// Where to write the results as JSON.
    #[arg(long, default_value = "target/bench.json")]
    json: PathBuf,
}

impl Args {
    fn sized(mut self) -> Args {
        if self.quick {
            self.reps = 2;
            self.bytes = 100_000_000;
            self.sessions = 100;
            self.commands = 1000;
            self.hosts = 10;
        }
        self
    }

    fn wants(&self, workload: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|w| w == workload)
    }
}

/// `1000`, `100M`, `1G`: decimal multiples, so `1G` is the "1 GB".
fn parse_bytes(text: &str) -> Result<u64, String> {
    let (digits, multiplier) = match text.char_indices().last() {
        Some((at, 'K' | 'k')) => (&text[..at], 1_000),
        Some((at, 'M' | 'm')) => (&text[..at], 1_000_000),
        Some((at, 'G' | 'g')) => (&text[..at], 1_000_000_000),
        _ => (text, 1),
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("not a size: {text:?} (e.g. 100M, 1G)"))?;
    number
        .checked_mul(multiplier)
        .filter(|&bytes| bytes > 0)
        .ok_or_else(|| format!("size out of range: {text:?}"))
}

fn main() -> ExitCode {
    let args = Args::parse().sized();
    match run(&args) {
        Ok((machine, rows)) => {
            println!("\n{machine}");
            print_table(&rows);
            let missed = rows.iter().filter(|row| row.met == Some(false)).count();
            if let Err(err) = write_json(&args.json, &machine, &rows) {
                eprintln!("remora-bench: cannot write {}: {err:#}", args.json.display());
                return ExitCode::FAILURE;
            }
            println!("\n{missed} target(s) missed; results in {}", args.json.display());
            ExitCode::SUCCESS
        }
        Err(_) if setup::stopping() => loop {
            // The signal thread is ending everything and exits with 128 + the signal.
            std::thread::park();
        },
        Err(err) => {
            eprintln!("remora-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the chosen workloads; returns the machine's description and the rows.
fn run(args: &Args) -> anyhow::Result<(String, Vec<Row>)> {
    let bench = Bench::start()?;
    let machine = bench.describe();
    let mut rows = Vec::new();
    let mut stream_throughput = None;
    if args.wants("stream") {
        progress("stream");
        let (stream_rows, throughput) = workloads::stream::run(&bench, args)?;
        stream_throughput = Some(throughput);
        rows.extend(stream_rows);
    }
    if args.wants("replay") {
        progress("replay");
        rows.extend(workloads::replay::run(&bench, args, stream_throughput)?);
    }
    if args.wants("roundtrip") {
        progress("roundtrip");
        rows.extend(workloads::roundtrip::run(&bench, args)?);
    }
    if args.wants("warm") {
        progress("warm");
        rows.extend(workloads::warm::run(&bench, args)?);
    }
    if args.wants("reattach") {
        progress("reattach");
        rows.extend(workloads::reattach::run(&bench, args)?);
    }
    if args.wants("reconnect") {
        progress("reconnect");
        rows.extend(workloads::reconnect::run(&bench, args)?);
    }
    if args.wants("scale") {
        progress("scale");
        rows.extend(workloads::scale::run(&bench, args)?);
    }
    if args.wants("fanout") {
        progress("fanout");
        rows.extend(workloads::fanout::run(&bench, args)?);
    }
    if args.wants("fleet") {
        progress("fleet");
        rows.extend(workloads::fleet::run(&bench, args)?);
    }
    if args.wants("ansible") {
        progress("ansible");
        rows.extend(workloads::ansible::run(args)?);
    }
    if args.wants("terminal") {
        progress("terminal");
        rows.extend(workloads::terminal::run(&bench, args)?);
    }
    if args.wants("transfer") {
        progress("transfer");
        rows.extend(workloads::transfer::run(&bench, args)?);
    }
    Ok((machine, rows))
}

/// Says on stderr which workload runs now; the full run takes minutes.
fn progress(workload: &str) {
    eprintln!("remora-bench: {workload}…");
}

fn print_table(rows: &[Row]) {
    println!(
        "\n{:<11} {:<52} {:>9} {:>9} {:>9} {:>9} {:>7}  {:<22} met",
        "workload", "metric", "median", "min", "max", "openssh", "ratio", "target"
    );
    for row in rows {
        let openssh = row.openssh.map_or("-".to_string(), |s| format!("{:.3}", s.median));
        let ratio = row.ratio.map_or("-".to_string(), |r| format!("{r:.2}"));
        let met = match row.met {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "",
        };
        println!(
            "{:<11} {:<52} {:>9.3} {:>9.3} {:>9.3} {:>9} {:>7}  {:<22} {met}",
            row.workload,
            format!("{} ({})", row.metric, row.unit),
            row.remora.median,
            row.remora.min,
            row.remora.max,
            openssh,
            ratio,
            row.target
        );
    }
}

fn write_json(path: &std::path::Path, machine: &str, rows: &[Row]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let results = serde_json::json!({ "machine": machine, "rows": rows });
    std::fs::write(path, serde_json::to_string_pretty(&results)?)?;
    Ok(())
}
