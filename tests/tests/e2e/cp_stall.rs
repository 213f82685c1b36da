//! `remora cp` does its disk work off the daemon's event loop: while the agent hashes a large
//! partial file to resume an upload, another session's output keeps flowing.
//!
//! The daemon runs one async worker; a hash on it would hold every session's stream for as long
//! as the hash takes. The test measures the largest gap between two lines of a session that
//! prints one line every few milliseconds, while a `cp` makes the agent hash a partial file sized
//! to take a few seconds on this machine.

use std::{
    io::BufRead,
    os::unix::{ffi::OsStrExt, fs::MetadataExt},
    path::Path,
    process::{Child, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use sha2::{Digest, Sha256};

use crate::support::{run, run_child, Sshd, TIMEOUT};

/// The largest gap allowed between two lines of the streaming session. A line comes every
/// 10 ms or so; a hash on the daemon's worker would stop them for seconds.
const MAX_GAP: Duration = Duration::from_millis(500);
/// How long the agent's hash of the partial file should take, measured on this machine.
const HASH_TIME: Duration = Duration::from_secs(2);

/// Bytes SHA-256 hashes in [`HASH_TIME`] here (sha2 is optimised in every profile, as in the
/// agent), rounded to whole MiB, between 256 MiB and 16 GiB.
fn bytes_hashed_in(time: Duration) -> u64 {
    let block = vec![0u8; 1 << 20];
    let mut hasher = Sha256::new();
    let (start, mut hashed) = (Instant::now(), 0u64);
    while hashed < 256 << 20 {
        hasher.update(&block);
        hashed += block.len() as u64;
    }
    std::hint::black_box(hasher.finalize());
    let rate = hashed as f64 / start.elapsed().as_secs_f64();
    let bytes = (rate * time.as_secs_f64()) as u64;
    bytes.clamp(256 << 20, 16 << 30) & !((1 << 20) - 1)
}

/// A `remora` whose stdout lines are timestamped as they arrive.
struct Lines {
    child: Child,
    arrivals: mpsc::Receiver<(Instant, String)>,
    seen: Vec<(Instant, String)>,
}

impl Lines {
    fn spawn(mut command: std::process::Command) -> Lines {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("remora starts");
        let stdout = child.stdout.take().expect("piped");
        let (tx, arrivals) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Lines {
            child,
            arrivals,
            seen: Vec::new(),
        }
    }

    /// Waits (bounded) for `count` lines in all.
    fn wait_for(&mut self, count: usize) {
        let deadline = Instant::now() + TIMEOUT;
        while self.seen.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.arrivals.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("only {} lines from the streaming session", self.seen.len()),
            }
        }
    }

    /// The largest gap between consecutive lines from `start` to `end`, the two ends counting
    /// as lines (so a stream that stopped shows the whole stretch), and the lines in it.
    fn largest_gap(&mut self, start: Instant, end: Instant) -> (Duration, usize) {
        self.seen.extend(self.arrivals.try_iter());
        let inside: Vec<Instant> = self
            .seen
            .iter()
            .map(|(at, _)| *at)
            .filter(|at| (start..=end).contains(at))
            .collect();
        let marks: Vec<Instant> = std::iter::once(start)
            .chain(inside.iter().copied())
            .chain([end])
            .collect();
        let gap = marks.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
        (gap, inside.len())
    }
}

/// A sparse file of `len` zero bytes.
fn sparse(path: &Path, len: u64) {
    std::fs::File::create(path).unwrap().set_len(len).unwrap();
}

#[test]
fn a_resume_hashing_a_large_partial_file_does_not_stall_another_sessions_stream() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    let stop = sshd.dir().join("stop-ticking");
    let ticker = format!(
        "i=0; while [ ! -e '{}' ]; do echo \"tick $i\"; i=$((i+1)); sleep 0.01; done",
        stop.display()
    );
    let mut ticks = Lines::spawn({
        let mut command = sshd.remora();
        command.args(["invoke", host, "--name", "ticker", "--", &ticker]);
        command
    });
    ticks.wait_for(20);

    // A source of `size` zero bytes, and the agent's partial file of its upload holding all but
    // its last MiB: the resume hashes that much before the agent answers.
    let size = bytes_hashed_in(HASH_TIME);
    let (source, far) = (sshd.dir().join("big.bin"), sshd.dir().join("far"));
    std::fs::create_dir(&far).unwrap();
    sparse(&source, size);
    let meta = std::fs::metadata(&source).unwrap();
    let source_key = format!("{}-{}.{}", meta.size(), meta.mtime(), meta.mtime_nsec());
    let target = far.join("big.bin");
    let part = remora_unix::part_name(b"big.bin", &[source_key.as_bytes(), target.as_os_str().as_bytes()]);
    let part = far.join(std::ffi::OsStr::from_bytes(&part));
    sparse(&part, size - (1 << 20));

    let mut remote = format!("{host}:").into_bytes();
    remote.extend_from_slice(far.as_os_str().as_bytes());
    let started = Instant::now();
    let copy = run(
        sshd.remora()
            .args(["cp", "--json"])
            .arg(&source)
            .arg(std::ffi::OsStr::from_bytes(&remote)),
        TIMEOUT,
    )
    .unwrap();
    let ended = Instant::now();
    let summary = String::from_utf8_lossy(&copy.stdout);
    assert!(copy.status.success(), "cp failed: {copy:?}");
    let json: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(
        json[0]["paths"][0]["resumed_from"].as_u64(),
        Some(size - (1 << 20)),
        "the upload resumed the partial file, so the agent hashed it: {summary}"
    );
    assert_eq!(std::fs::metadata(&target).unwrap().len(), size);

    let (gap, lines) = ticks.largest_gap(started, ended);
    std::fs::write(&stop, b"").unwrap();
    let output = run_child(ticks.child, TIMEOUT).unwrap();
    assert!(output.status.success(), "the streaming session failed: {output:?}");
    eprintln!(
        "hashed {} MiB; cp took {:?}; {lines} lines meanwhile, largest gap {gap:?}",
        size >> 20,
        ended - started
    );
    assert!(
        gap < MAX_GAP,
        "the other session's stream stalled for {gap:?} (over {MAX_GAP:?}) while the agent resumed a {} MiB upload",
        size >> 20
    );
}
