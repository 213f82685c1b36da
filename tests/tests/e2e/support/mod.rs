//! Shortcuts for the end-to-end tests on top of the `remora_testkit` harness: running `remora`
//! against a test's sshd, reading `ls --json`, a client in the background.

use std::{sync::OnceLock, time::Duration};

pub use remora_testkit::{live_command_lines, process_alive, run, run_child, Binaries, FaultyLink, Sshd};
use serde_json::Value;

/// The built `remora` and `remora-agent` (see `remora_testkit::binaries`).
pub fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Binaries> = OnceLock::new();
    BINARIES.get_or_init(|| remora_testkit::binaries().unwrap_or_else(|err| panic!("{err:#}")))
}

/// Upper bound for an event a test polls for (a file appears, a process exits).
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Polls an observable condition until it holds, up to 10 s.
pub fn wait_until(what: &str, condition: impl FnMut() -> bool) -> anyhow::Result<()> {
    remora_testkit::wait_until(EVENT_TIMEOUT, what, condition)
}

/// [`wait_until`] with another limit, for conditions that take long by design (timeouts).
pub fn wait_until_within(limit: Duration, what: &str, condition: impl FnMut() -> bool) -> anyhow::Result<()> {
    remora_testkit::wait_until(limit, what, condition)
}

/// Upper bound for any single CLI run; hitting it fails the test instead of hanging it.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// What one `remora` run did.
#[derive(Debug)]
pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts success and returns stdout.
    pub fn ok(self) -> String {
        assert_eq!(self.status, 0, "remora failed: {self:#?}");
        self.stdout
    }
}

/// Runs the built `remora` against this test's sshd (`-F` its ssh_config).
pub fn remora(sshd: &Sshd, args: &[&str]) -> Run {
    let output = run(sshd.remora().args(args), TIMEOUT).expect("remora ran");
    Run {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `remora ls HOST --json`, parsed.
pub fn ls_json(sshd: &Sshd) -> Vec<Value> {
    let stdout = remora(sshd, &["ls", sshd.alias(), "--json"]).ok();
    serde_json::from_str::<Vec<Value>>(&stdout)
        .unwrap_or_else(|e| panic!("ls --json is not a JSON array ({e}): {stdout}"))
}

/// The `ls --json` object of one session.
pub fn session(sshd: &Sshd, name: &str) -> Value {
    ls_json(sshd)
        .into_iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("session {name} not listed"))
}

/// A `remora` running in the background, its stdout readable line by line as it arrives.
pub struct Background {
    pub child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Background {
    /// Starts `remora ARGS` against this sshd.
    pub fn start(sshd: &Sshd, args: &[&str]) -> Background {
        let mut command = sshd.remora();
        command.args(args);
        Background::spawn(command)
    }

    /// Starts `command` (a `remora` made by the harness) with its stdout read line by line.
    pub fn spawn(mut command: std::process::Command) -> Background {
        let mut child = command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("remora starts");
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Background {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (bounded) for a stdout line equal to `line`.
    pub fn wait_for_line(&mut self, line: &str) {
        let deadline = std::time::Instant::now() + TIMEOUT;
        while !self.seen.iter().any(|l| l == line) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(got) => self.seen.push(got),
                Err(_) => panic!("no line {line:?} from remora; saw {:?}", self.seen),
            }
        }
    }

    /// Waits (bounded) for the process to end; returns its status and stderr.
    pub fn finish(self) -> (i32, String) {
        let (status, stderr, _) = self.finish_with_lines();
        (status, stderr)
    }

    /// Like [`Background::finish`], with every stdout line the process printed.
    pub fn finish_with_lines(mut self) -> (i32, String, Vec<String>) {
        let stderr = self.child.stderr.take();
        let output = run_child(self.child, TIMEOUT).expect("remora ended");
        let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
        if let Some(mut stderr) = stderr {
            use std::io::Read;
            let _ = stderr.read_to_string(&mut text);
        }
        self.seen.extend(self.lines.try_iter());
        (output.status.code().unwrap_or(-1), text, self.seen)
    }
}

/// Writes the agent's `agent.toml` for this sshd's state dir (before or while the daemon runs).
pub fn write_agent_config(sshd: &Sshd, text: &str) {
    sshd.write_agent_config(text).unwrap();
}

/// A route to `sshd` through a faulty link: an ssh_config naming it `flaky`, with keepalives
/// that notice a dead link within seconds. Returns the link and the config's path.
pub fn flaky(sshd: &Sshd) -> (FaultyLink, std::path::PathBuf) {
    let link = FaultyLink::start(sshd.addr()).unwrap();
    let config = sshd.dir().join("flaky_config");
    let block = sshd.host_block_via("flaky", link.addr().port()).unwrap();
    std::fs::write(
        &config,
        block + "  ServerAliveInterval 1\n  ServerAliveCountMax 3\n  ConnectTimeout 3\n",
    )
    .unwrap();
    (link, config)
}
