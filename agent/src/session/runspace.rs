//! The runspace: one persistent shell per session, fed one command at a time.
//!
//! Each command is sent to the shell's stdin as `eval '<text>' </dev/null 3>&-` followed by a
//! `printf` of `$?` to fd 3, a private status pipe. So `cd`, variables and functions persist
//! between commands, commands read /dev/null, and they cannot see or disturb the status pipe.
//!
//! Output ordering: the status line is written after the command's last write to stdout/stderr,
//! so when it arrives everything the command wrote is already in the pipes; the loop drains both
//! before recording the end. Output written while no command runs (a background job) stays in
//! the pipe and is attributed to the next command.
//!
//! A shell that exits (`exit 3`) ends the running command with the shell's status and marks the
//! session Broken: the state the user built up is gone, and pretending otherwise would be worse.

use std::{
    io,
    os::fd::{AsFd, AsRawFd, OwnedFd},
    path::PathBuf,
    process::{ExitStatus, Stdio},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use nix::{
    errno::Errno,
    fcntl::OFlag,
    sys::signal::{killpg, Signal},
    unistd::Pid,
};
use remora_wire::{CommandState, Stream};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::unix::pipe,
    process::{Child, ChildStderr, ChildStdin, ChildStdout, Command},
    sync::watch,
    time::Instant,
};

use super::Session;
use crate::error::{AgentError, Result};

const READ_CHUNK: usize = 64 * 1024;
/// Sent once to a new shell: no job control, history or history expansion, empty prompts, then
/// a ready line on the status pipe.
const INIT_SCRIPT: &str =
    "set +m; set +H 2>/dev/null; set +o history 2>/dev/null; PS1=''; PS2=''; PS0=''\nprintf 'ready\\n' >&3\n";
/// How long a new shell has to become ready.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Reads in one drain, so a background writer cannot keep a drain going forever.
const MAX_DRAIN_READS: usize = 64;

/// Which shell a runspace runs.
#[derive(Debug, Clone)]
pub struct ShellSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
}

impl ShellSpec {
    /// bash without startup files when installed, otherwise POSIX sh.
    pub fn detect() -> Self {
        let bash = ["/bin/bash", "/usr/bin/bash", "/usr/local/bin/bash"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists());
        Self::for_program(bash.unwrap_or_else(|| PathBuf::from("/bin/sh")))
    }

    /// `program` as an interactive shell reading commands from stdin, without startup files.
    pub fn for_program(program: PathBuf) -> Self {
        let is_bash = program
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains("bash"));
        let args = if is_bash {
            vec!["--noprofile", "--norc", "--noediting", "-i"]
        } else {
            vec!["-i"]
        };
        Self {
            program,
            args: args.into_iter().map(String::from).collect(),
        }
    }
}

/// What a runspace starts: its shell, extra environment and working directory.
#[derive(Debug, Clone)]
pub struct RunspaceSpec {
    pub shell: ShellSpec,
    pub env: std::collections::BTreeMap<String, String>,
    /// Default: the user's home directory.
    pub cwd: Option<PathBuf>,
}

/// How one command ended, as seen by the runspace.
enum Outcome {
    Exited(i32),
    /// Ended after a stop request.
    Stopped(i32),
    ShellGone(i32),
    Closed,
}

/// The shell process and its pipes.
struct Shell {
    child: Child,
    pgid: Pid,
    stdin: ChildStdin,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    status: pipe::Receiver,
    status_buf: Vec<u8>,
}

/// Starts the session's shell and the task that feeds it commands until the session closes.
pub fn start(session: Arc<Session>, spec: &RunspaceSpec) -> Result<tokio::task::JoinHandle<()>> {
    let shell = Shell::spawn(spec)?;
    Ok(tokio::spawn(run(session, shell)))
}

async fn run(session: Arc<Session>, mut shell: Shell) {
    if let Err(reason) = shell.init().await {
        session.mark_broken(reason);
        shell.kill().await;
        return;
    }
    while let Some((id, text)) = next_command(&session, &mut shell).await {
        match shell.execute(&session, id, &text).await {
            Outcome::Exited(code) => session.finish(id, CommandState::Completed, Some(code)),
            Outcome::Stopped(code) => session.finish(id, CommandState::Stopped, Some(code)),
            Outcome::ShellGone(code) => {
                session.finish(id, CommandState::Completed, Some(code));
                session.mark_broken(format!(
                    "the runspace shell exited with status {code} during command {id}"
                ));
                return;
            }
            Outcome::Closed => break,
        }
    }
    shell.kill().await;
    session.stop_all();
}

/// Waits for the next queued command; `None` when the session closed or the shell died idle.
async fn next_command(session: &Session, shell: &mut Shell) -> Option<(u64, String)> {
    loop {
        let mut changed = session.subscribe();
        if session.closed.is_cancelled() {
            return None;
        }
        if let Some(next) = session.start_next() {
            return Some(next);
        }
        tokio::select! {
            _ = changed.changed() => {}
            _ = session.closed.cancelled() => return None,
            status = shell.child.wait() => {
                let code = status.map_or(-1, exit_code);
                session.mark_broken(format!("the runspace shell exited with status {code} while idle"));
                return None;
            }
        }
    }
}

impl Shell {
    fn spawn(spec: &RunspaceSpec) -> Result<Self> {
        let (status_read, status_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(AgentError::from)?;
        let mut child = shell_command(spec, &status_write)
            .spawn()
            .map_err(AgentError::io("cannot start the runspace shell", &spec.shell.program))?;
        drop(status_write);
        let pgid = Pid::from_raw(child.id().map_or(0, |id| id as i32));
        let status = pipe::Receiver::from_owned_fd(status_read).map_err(AgentError::io(
            "cannot watch the runspace status pipe",
            &spec.shell.program,
        ))?;
        Ok(Self {
            pgid,
            stdin: child.stdin.take().expect("stdin is piped"),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            child,
            status,
            status_buf: Vec::new(),
        })
    }

    /// Quiets the interactive shell (no prompts, job control or history expansion) and waits
    /// until it is ready, discarding whatever it printed while starting.
    async fn init(&mut self) -> std::result::Result<(), String> {
        if self.stdin.write_all(INIT_SCRIPT.as_bytes()).await.is_err() {
            return Err("the runspace shell exited while starting".into());
        }
        let mut chunk = [0u8; 64];
        let (mut out_noise, mut err_noise) = (vec![0u8; READ_CHUNK], vec![0u8; READ_CHUNK]);
        let deadline = tokio::time::sleep(INIT_TIMEOUT);
        tokio::pin!(deadline);
        while self.take_status_line().is_none() {
            tokio::select! {
                read = self.status.read(&mut chunk) => match read {
                    Ok(n) if n > 0 => self.status_buf.extend_from_slice(&chunk[..n]),
                    _ => return Err("the runspace shell exited while starting".into()),
                },
                _ = read_some(self.stdout.as_mut(), &mut out_noise), if self.stdout.is_some() => {}
                _ = read_some(self.stderr.as_mut(), &mut err_noise), if self.stderr.is_some() => {}
                _ = &mut deadline => return Err(format!("the runspace shell did not start within {INIT_TIMEOUT:?}")),
            }
        }
        self.discard_pending();
        Ok(())
    }

    fn discard_pending(&self) {
        let fds = [
            self.stdout.as_ref().map(AsFd::as_fd),
            self.stderr.as_ref().map(AsFd::as_fd),
        ];
        let mut buf = vec![0u8; READ_CHUNK];
        for fd in fds.into_iter().flatten() {
            for _ in 0..MAX_DRAIN_READS {
                match nix::unistd::read(fd, &mut buf) {
                    Ok(n) if n > 0 => continue,
                    Err(Errno::EINTR) => continue,
                    _ => break,
                }
            }
        }
    }

    /// Runs one command to its end, journaling its output into the session.
    async fn execute(&mut self, session: &Session, id: u64, text: &str) -> Outcome {
        if self.stdin.write_all(command_script(text).as_bytes()).await.is_err() {
            return Outcome::ShellGone(self.wait_exit().await);
        }
        let mut out_buf = vec![0u8; READ_CHUNK];
        let mut err_buf = vec![0u8; READ_CHUNK];
        let mut status_chunk = [0u8; 64];
        let mut stopper = Stopper::new(session, id);
        loop {
            if let Some(code) = self.take_status_line() {
                self.drain(session, id);
                session.clear_stop(id);
                return if stopper.requested() {
                    Outcome::Stopped(code)
                } else {
                    Outcome::Exited(code)
                };
            }
            let paused = session.pause_reason().is_some();
            let mut acks = session.subscribe();
            tokio::select! {
                biased;
                _ = session.closed.cancelled() => return Outcome::Closed,
                read = self.status.read(&mut status_chunk) => match read {
                    Ok(n) if n > 0 => self.status_buf.extend_from_slice(&status_chunk[..n]),
                    _ => {
                        self.drain(session, id);
                        return Outcome::ShellGone(self.wait_exit().await);
                    }
                },
                read = read_some(self.stdout.as_mut(), &mut out_buf), if !paused && self.stdout.is_some() => {
                    let read = top_up(read, self.stdout.as_ref(), &mut out_buf);
                    journal_read(session, id, Stream::Stdout, read, &out_buf, &mut self.stdout);
                }
                read = read_some(self.stderr.as_mut(), &mut err_buf), if !paused && self.stderr.is_some() => {
                    let read = top_up(read, self.stderr.as_ref(), &mut err_buf);
                    journal_read(session, id, Stream::Stderr, read, &err_buf, &mut self.stderr);
                }
                _ = acks.changed(), if paused => {}
                action = stopper.next(), if !stopper.done() => self.apply(action),
            }
        }
    }

    /// Interrupts the running command, or kills what outlived the interrupt.
    fn apply(&self, action: StopAction) {
        if self.pgid.as_raw() <= 0 {
            return;
        }
        match action {
            StopAction::Interrupt => {
                let _ = killpg(self.pgid, Signal::SIGINT);
            }
            StopAction::Kill => kill_group_except(self.pgid, self.pgid),
        }
    }

    /// Parses a complete `<status>\n` line from the status pipe, if one has arrived.
    fn take_status_line(&mut self) -> Option<i32> {
        let end = self.status_buf.iter().position(|&b| b == b'\n')?;
        let line: Vec<u8> = self.status_buf.drain(..=end).collect();
        let code = std::str::from_utf8(&line).ok().and_then(|s| s.trim().parse().ok());
        Some(code.unwrap_or(-1))
    }

    /// Moves whatever the pipes hold right now into the journal, without waiting.
    fn drain(&mut self, session: &Session, id: u64) {
        if let Some(stdout) = &self.stdout {
            drain_fd(stdout, session, id, Stream::Stdout);
        }
        if let Some(stderr) = &self.stderr {
            drain_fd(stderr, session, id, Stream::Stderr);
        }
    }

    async fn wait_exit(&mut self) -> i32 {
        self.child.wait().await.map_or(-1, exit_code)
    }

    /// Kills the shell and everything in its process group, and reaps it.
    async fn kill(&mut self) {
        if self.pgid.as_raw() > 0 {
            let _ = killpg(self.pgid, Signal::SIGKILL);
        }
        let _ = self.child.wait().await;
    }
}

fn shell_command(spec: &RunspaceSpec, status_write: &OwnedFd) -> Command {
    let status_fd = status_write.as_raw_fd();
    let mut command = Command::new(&spec.shell.program);
    command
        .args(&spec.shell.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("BASH_ENV")
        .env_remove("ENV")
        .env_remove("PROMPT_COMMAND")
        .env("PS1", "")
        .env("PS2", "")
        .process_group(0)
        .envs(&spec.env)
        .kill_on_drop(true);
    match (&spec.cwd, std::env::var_os("HOME")) {
        (Some(cwd), _) => command.current_dir(cwd),
        (None, Some(home)) => command.current_dir(home),
        (None, None) => &mut command,
    };
    // SAFETY: only async-signal-safe calls (dup2/fcntl) run between fork and exec.
    unsafe {
        command.pre_exec(move || install_status_fd(status_fd));
    }
    command
}

/// Makes the status pipe the child's fd 3, inheritable across exec.
fn install_status_fd(fd: i32) -> io::Result<()> {
    let result = if fd == 3 {
        unsafe { nix::libc::fcntl(3, nix::libc::F_SETFD, 0) }
    } else {
        unsafe { nix::libc::dup2(fd, 3) }
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The text sent to the shell for one command.
fn command_script(text: &str) -> String {
    format!(
        "eval '{}' </dev/null 3>&-\nprintf '%s\\n' \"$?\" >&3\n",
        text.replace('\'', "'\\''")
    )
}

async fn read_some<R: tokio::io::AsyncRead + Unpin>(reader: Option<&mut R>, buf: &mut [u8]) -> io::Result<usize> {
    match reader {
        Some(reader) => reader.read(buf).await,
        None => std::future::pending().await,
    }
}

/// After a read of some bytes, takes whatever else the pipe holds right now, without waiting:
/// a command that writes in small pieces is journaled in chunks of up to [`READ_CHUNK`] — fewer
/// entries, frames and writes for the same bytes — and nothing waits longer than before.
fn top_up(read: io::Result<usize>, pipe: Option<&impl AsFd>, buf: &mut [u8]) -> io::Result<usize> {
    let (Ok(first), Some(pipe)) = (&read, pipe) else {
        return read;
    };
    let mut filled = *first;
    while filled > 0 && filled < buf.len() {
        match nix::unistd::read(pipe.as_fd(), &mut buf[filled..]) {
            Ok(0) => break, // end of file: the next read reports it
            Ok(more) => filled += more,
            Err(Errno::EINTR) => continue,
            Err(_) => break, // EAGAIN: nothing more right now
        }
    }
    Ok(filled)
}

/// Journals one read; a closed or failed pipe stops being read.
fn journal_read<R>(
    session: &Session,
    id: u64,
    stream: Stream,
    read: io::Result<usize>,
    buf: &[u8],
    pipe: &mut Option<R>,
) {
    match read {
        Ok(n) if n > 0 => session.append_output(id, stream, Bytes::copy_from_slice(&buf[..n])),
        _ => *pipe = None,
    }
}

fn drain_fd(fd: &impl AsFd, session: &Session, id: u64, stream: Stream) {
    let mut buf = vec![0u8; READ_CHUNK];
    for _ in 0..MAX_DRAIN_READS {
        match nix::unistd::read(fd.as_fd(), &mut buf) {
            Ok(n) if n > 0 => session.append_output(id, stream, Bytes::copy_from_slice(&buf[..n])),
            Err(Errno::EINTR) => continue,
            _ => return,
        }
    }
}

/// A shell's exit status as a number: its code, or 128 + signal like shells report it.
fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(-1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_quotes_single_quotes() {
        let script = command_script("echo 'a b'");
        assert!(
            script.starts_with("eval 'echo '\\''a b'\\''' </dev/null 3>&-\n"),
            "{script}"
        );
    }
}

/// How long an interrupted command has before everything but the shell is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What to do to the running command.
enum StopAction {
    Interrupt,
    Kill,
}

/// Interrupting the running command on request. SIGINT goes to the runspace's process group:
/// the command gets it, and the interactive shell abandons the rest of the command line and
/// reports 130, keeping its state. What is still running after [`STOP_GRACE`] is killed, except
/// the shell itself.
struct Stopper {
    requests: watch::Receiver<Option<u64>>,
    command: u64,
    state: StopState,
}

#[derive(PartialEq)]
enum StopState {
    NotRequested,
    InterruptDue,
    Grace(Instant),
    Done,
}

impl Stopper {
    fn new(session: &Session, command: u64) -> Self {
        let mut requests = session.stop_requests();
        let already = *requests.borrow_and_update() == Some(command);
        let state = if already {
            StopState::InterruptDue
        } else {
            StopState::NotRequested
        };
        Self {
            requests,
            command,
            state,
        }
    }

    fn requested(&self) -> bool {
        self.state != StopState::NotRequested
    }

    fn done(&self) -> bool {
        self.state == StopState::Done
    }

    /// Resolves when there is something to do; cancel-safe.
    async fn next(&mut self) -> StopAction {
        loop {
            match self.state {
                StopState::InterruptDue => {
                    self.state = StopState::Grace(Instant::now() + STOP_GRACE);
                    return StopAction::Interrupt;
                }
                StopState::Grace(deadline) => {
                    tokio::time::sleep_until(deadline).await;
                    self.state = StopState::Done;
                    return StopAction::Kill;
                }
                StopState::Done => std::future::pending::<()>().await,
                StopState::NotRequested => {
                    if self.requests.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                    if *self.requests.borrow_and_update() == Some(self.command) {
                        self.state = StopState::InterruptDue;
                    }
                }
            }
        }
    }
}

/// SIGKILLs every process in `pgid` except `keep` (the shell), found through /proc.
fn kill_group_except(pgid: Pid, keep: Pid) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
        if pid != keep.as_raw() && process_group_of(pid) == Some(pgid.as_raw()) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// The process group of `pid`, from /proc/PID/stat (the field after state and ppid).
fn process_group_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(2)?.parse().ok()
}
