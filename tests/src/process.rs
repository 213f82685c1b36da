//! Running a command to completion under a deadline, its output captured: a hung client fails
//! its test instead of hanging the whole run.

use remora_unix::LockRecover;
use std::{
    io::{self, Read},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{mpsc, Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

/// How much of a timed-out command's output goes into the error.
const OUTPUT_EXCERPT: usize = 2000;

/// What the threads watching a child report.
enum Event {
    Exited(io::Result<ExitStatus>),
    /// One of stdout and stderr reached end of file.
    Closed,
}

/// Runs `command` to completion with stdout and stderr captured. Past `timeout` the process is
/// killed (SIGKILL) and the error carries what it printed so far. Stdin is whatever `command`
/// says (the harness's own commands use null).
pub fn run(command: &mut Command, timeout: Duration) -> anyhow::Result<Output> {
    let name = describe(command);
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{name}`"))?;
    finish(child, &name, timeout)
}

/// [`run`] for a child the test spawned itself (with piped stdout and stderr) and perhaps read
/// from or signalled first: collects the rest of its output and its status, under `timeout`.
pub fn run_child(child: Child, timeout: Duration) -> anyhow::Result<Output> {
    let name = format!("process {}", child.id());
    finish(child, &name, timeout)
}

fn finish(mut child: Child, name: &str, timeout: Duration) -> anyhow::Result<Output> {
    let pid = Pid::from_raw(child.id() as i32);
    let (events, received) = mpsc::channel();
    let stdout = Capture::start(child.stdout.take(), events.clone());
    let stderr = Capture::start(child.stderr.take(), events.clone());
    // The waiter owns the child, so its pid stays reserved (unreaped) until it has exited:
    // killing it by pid below cannot hit a stranger.
    thread::spawn(move || {
        let _ = events.send(Event::Exited(child.wait()));
    });
    let deadline = Instant::now() + timeout;
    let mut status = None;
    let mut open_pipes = 2;
    loop {
        if let (Some(status), 0) = (status, open_pipes) {
            return Ok(Output {
                status,
                stdout: stdout.take(),
                stderr: stderr.take(),
            });
        }
        match received.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Event::Exited(result)) => status = Some(result.with_context(|| format!("cannot wait for `{name}`"))?),
            Ok(Event::Closed) => open_pipes -= 1,
            Err(_) => {
                let what = match status {
                    None => {
                        let _ = kill(pid, Signal::SIGKILL);
                        format!("did not finish within {timeout:?} (killed it)")
                    }
                    Some(status) => format!(
                        "exited ({status}) but its output stayed open for {timeout:?}: a process it started holds it"
                    ),
                };
                bail!(
                    "`{name}` {what}\n--- stdout so far:\n{}\n--- stderr so far:\n{}",
                    excerpt(&stdout.take()),
                    excerpt(&stderr.take())
                );
            }
        }
    }
}

/// [`run`] for async tests (`tokio::process::Command::from(sshd.remora())`). Not for tests under
/// `tokio::time::pause()`: an idle runtime's clock jumps ahead and would fire the timeout.
pub async fn run_async(command: &mut tokio::process::Command, timeout: Duration) -> anyhow::Result<Output> {
    let name = describe(command.as_std());
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start `{name}`"))?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(output) => output.with_context(|| format!("cannot wait for `{name}`")),
        // Dropping the timed-out future dropped the child, which kill_on_drop kills.
        Err(_) => bail!("`{name}` did not finish within {timeout:?} (killed it)"),
    }
}

/// A pipe read to its end on its own thread, readable at any time (also after a timeout).
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    fn start(pipe: Option<impl Read + Send + 'static>, events: mpsc::Sender<Event>) -> Capture {
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let sink = bytes.clone();
        thread::spawn(move || {
            if let Some(mut pipe) = pipe {
                let mut buf = [0u8; 8192];
                while let Ok(n @ 1..) = pipe.read(&mut buf) {
                    sink.lock_or_recover().extend_from_slice(&buf[..n]);
                }
            }
            let _ = events.send(Event::Closed);
        });
        Capture(bytes)
    }

    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock_or_recover())
    }
}

fn describe(command: &Command) -> String {
    let program = command.get_program().to_string_lossy().into_owned();
    command
        .get_args()
        .fold(program, |line, arg| format!("{line} {}", arg.to_string_lossy()))
}

/// The last [`OUTPUT_EXCERPT`] bytes of `bytes`, as text.
fn excerpt(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(OUTPUT_EXCERPT);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}
