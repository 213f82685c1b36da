//! The end-to-end harness: a real sshd per test ([`Sshd`]), the built binaries, process helpers,
//! and shortcuts for running `remora`.

mod process;
mod proxy;
mod sshd;

use std::{path::PathBuf, sync::OnceLock, time::Duration};

pub use process::{live_command_lines, process_alive, run, run_child, wait_until, wait_until_within};
pub use proxy::FaultyLink;
use serde_json::Value;
pub use sshd::Sshd;

/// The built executables under test.
pub struct Binaries {
    pub remora: PathBuf,
    pub agent: PathBuf,
}

/// Finds `remora` and `remora-agent` beside this test binary's `deps/` directory (or in
/// `REMORA_BIN_DIR`).
pub fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Binaries> = OnceLock::new();
    BINARIES.get_or_init(|| {
        let dir = std::env::var_os("REMORA_BIN_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let exe = std::env::current_exe().expect("test executable path");
                exe.parent()
                    .and_then(|deps| deps.parent())
                    .expect("target/<profile>/deps")
                    .to_path_buf()
            });
        let binaries = Binaries {
            remora: dir.join("remora"),
            agent: dir.join("remora-agent"),
        };
        for path in [&binaries.remora, &binaries.agent] {
            assert!(
                path.is_file(),
                "{} is missing: build it first with `cargo build --workspace --bins` (scripts/test does)",
                path.display()
            );
        }
        binaries
    })
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
        let mut child = sshd
            .remora()
            .args(args)
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
    pub fn finish(mut self) -> (i32, String) {
        let stderr = self.child.stderr.take();
        let output = run_child(self.child, TIMEOUT).expect("remora ended");
        let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
        if let Some(mut stderr) = stderr {
            use std::io::Read;
            let _ = stderr.read_to_string(&mut text);
        }
        self.seen.extend(self.lines.try_iter());
        (output.status.code().unwrap_or(-1), text)
    }
}

/// Writes the agent's `agent.toml` for this sshd's state dir (before or while the daemon runs).
pub fn write_agent_config(sshd: &Sshd, text: &str) {
    use std::os::unix::fs::DirBuilderExt;
    let dir = sshd.state_dir().join("config");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .unwrap();
    std::fs::write(dir.join("agent.toml"), text).unwrap();
}
