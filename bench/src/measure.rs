//! Timing commands, sampling the daemon's memory, and the rows of the results table.

use std::{
    io::Read,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
pub use remora_testkit::rss_kib;
use serde::Serialize;

/// Median, minimum and maximum of repeated measurements.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
}

impl Stats {
    pub fn of(samples: &[f64]) -> Stats {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let middle = sorted.len() / 2;
        let median = match sorted.len() {
            0 => f64::NAN,
            n if n % 2 == 0 => (sorted[middle - 1] + sorted[middle]) / 2.0,
            _ => sorted[middle],
        };
        Stats {
            median,
            min: sorted.first().copied().unwrap_or(f64::NAN),
            max: sorted.last().copied().unwrap_or(f64::NAN),
            runs: sorted.len(),
        }
    }

    pub fn single(value: f64) -> Stats {
        Stats::of(&[value])
    }
}

/// One line of the results: a metric for remora, OpenSSH's figure where there is one to compare
/// with, the ratio the target is about, and whether it is met.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub workload: String,
    pub metric: String,
    pub unit: String,
    pub remora: Stats,
    pub openssh: Option<Stats>,
    pub ratio: Option<f64>,
    pub target: String,
    pub met: Option<bool>,
}

impl Row {
    pub fn new(workload: &str, metric: &str, unit: &str, remora: Stats) -> Row {
        Row {
            workload: workload.into(),
            metric: metric.into(),
            unit: unit.into(),
            remora,
            openssh: None,
            ratio: None,
            target: String::new(),
            met: None,
        }
    }

    /// Compared with OpenSSH's figure; `ratio` is remora / OpenSSH on medians.
    pub fn against(mut self, openssh: Stats) -> Row {
        self.ratio = Some(self.remora.median / openssh.median);
        self.openssh = Some(openssh);
        self
    }

    /// A target on the ratio (or, without a comparison, on remora's median).
    pub fn target(mut self, text: &str, met: bool) -> Row {
        self.target = text.into();
        self.met = Some(met);
        self
    }

    /// Sets the ratio when the comparison is not with OpenSSH (e.g. with another workload).
    pub fn ratio(mut self, ratio: f64) -> Row {
        self.ratio = Some(ratio);
        self
    }
}

/// Stdout bytes kept of a timed run.
const KEEP: usize = 64 << 20;

/// What one timed run of a command did.
pub struct Timed {
    pub elapsed: Duration,
    pub stdout_bytes: u64,
    pub stdout: Vec<u8>,
}

/// Runs `command` to its end, timing it and counting its stdout (the first [`KEEP`] bytes are
/// kept, enough for any `--json` listing).
/// Fails if it exits unsuccessfully.
pub fn timed(command: &mut Command) -> anyhow::Result<Timed> {
    timed_with_input(command, Stdio::null())
}

/// [`timed`] with `stdin` as the command's standard input (a file, for input workloads).
pub fn timed_with_input(command: &mut Command, stdin: Stdio) -> anyhow::Result<Timed> {
    let start = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(stdin)
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))?;
    let mut stdout = child.stdout.take().context("piped")?;
    let mut stderr = child.stderr.take().context("piped")?;
    let errors = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut kept = Vec::new();
    let mut total = 0u64;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = stdout.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        if kept.len() < KEEP {
            kept.extend_from_slice(&buffer[..n.min(KEEP - kept.len())]);
        }
        total += n as u64;
    }
    let status = child.wait()?;
    let elapsed = start.elapsed();
    let errors = errors.join().unwrap_or_default();
    if !status.success() {
        bail!("{command:?} failed ({status}): {errors}");
    }
    Ok(Timed {
        elapsed,
        stdout_bytes: total,
        stdout: kept,
    })
}

/// CPU seconds (user + system) used so far by this process's finished, reaped children.
pub fn children_cpu_secs() -> f64 {
    let mut usage = std::mem::MaybeUninit::<nix::libc::rusage>::zeroed();
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        nix::libc::getrusage(nix::libc::RUSAGE_CHILDREN, usage.as_mut_ptr());
        usage.assume_init()
    };
    let secs = |t: nix::libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Seconds of a duration, for the table.
pub fn secs(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

/// Samples a process's RSS every 20 ms on a thread, keeping the maximum, until stopped.
pub struct RssSampler {
    peak: Arc<AtomicU64>,
    running: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(pid: i32) -> RssSampler {
        let peak = Arc::new(AtomicU64::new(rss_kib(pid).unwrap_or(0)));
        let running = Arc::new(AtomicBool::new(true));
        let (seen, on) = (peak.clone(), running.clone());
        let thread = thread::spawn(move || {
            while on.load(Ordering::SeqCst) {
                if let Some(rss) = rss_kib(pid) {
                    seen.fetch_max(rss, Ordering::SeqCst);
                }
                thread::sleep(Duration::from_millis(20));
            }
        });
        RssSampler {
            peak,
            running,
            thread: Some(thread),
        }
    }

    /// Stops sampling; returns the peak in KiB.
    pub fn stop(mut self) -> u64 {
        self.running.store(false, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.peak.load(Ordering::SeqCst)
    }
}
