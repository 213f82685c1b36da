//! The runspace's shell process: spawning it, quieting it (its first line opens the status fifo
//! as fd 3), and running one command to its end.
//!
//! The shell is spawned with nothing to run between `fork` and `exec`, so the standard library
//! starts it with `posix_spawn` (a `vfork`-like clone) rather than `fork`: copying the page
//! tables of a daemon holding hundreds of sessions cost more than starting the shell itself.

use std::{
    io,
    os::{
        fd::{AsRawFd, OwnedFd, RawFd},
        unix::fs::{DirBuilderExt, OpenOptionsExt},
    },
    process::Stdio,
    time::Duration,
};

use nix::{
    fcntl::{fcntl, FcntlArg, OFlag},
    sys::signal::{killpg, Signal},
    unistd::Pid,
};
use remora_wire::Stream;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::unix::pipe,
    process::Command,
};
use tokio_util::sync::CancellationToken;

use super::{
    input_pipe::{self, InputPipe},
    pipes::{chunk_len, discard_fd, drain_fd, journal_read, read_some, top_up, widen_on_bulk, READ_CHUNK},
    process::ShellProcess,
    stop::Stopper,
    RunspaceSpec,
};
use crate::{
    error::{AgentError, Result},
    fdpass::set_nonblocking,
    pipe_width::PipeWidth,
    session::Session,
};

/// Sent once to a new shell, after the line that opens the status fifo as fd 3: no job control,
/// history or history expansion, empty prompts, then a ready line on the status pipe.
///
/// Every line must run in any POSIX shell without an error: an interactive dash that meets an
/// unknown option of `set` (a special builtin) drops the rest of its buffered input, `ready`
/// line included, so the bash-only settings only run under bash.
const INIT_SCRIPT: &str = "set +m\nif [ -n \"${BASH_VERSION-}\" ]; then set +H; set +o history; fi\n\
    PS1=''; PS2=''; PS0=''\nprintf 'ready\\n' >&3\n";
/// How long a new shell has to become ready.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// How one command ended, as seen by the runspace.
pub enum Outcome {
    Exited(i32),
    /// Ended after a stop request.
    Stopped(i32),
    ShellGone(i32),
    Closed,
    /// The daemon is handing over to a new binary; the command keeps running.
    HandOver,
}

/// The shell process and its pipes.
pub struct Shell {
    pub(super) process: ShellProcess,
    pgid: Pid,
    stdin: pipe::Sender,
    stdout: Option<pipe::Receiver>,
    stderr: Option<pipe::Receiver>,
    status: pipe::Receiver,
    status_buf: Vec<u8>,
    /// Until the shell is ready: the status fifo's name and a write end of our own, so the
    /// status pipe reads nothing (rather than its end) before the shell has opened it.
    status_fifo: Option<(std::path::PathBuf, OwnedFd)>,
    /// The running command's stdin fifo, when it reads input from the client.
    input: Option<InputPipe>,
    /// Whether stdout and stderr are widened for the running command's bulk output.
    widths: [PipeWidth; 2],
}

/// A shell's process and descriptors as numbers, for a handover by `exec`: the new program
/// adopts them with [`Shell::adopt`]. `-1` stands for a pipe already closed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShellFds {
    pub pid: i32,
    pub stdin: RawFd,
    pub stdout: RawFd,
    pub stderr: RawFd,
    pub status: RawFd,
    /// Status-pipe bytes read but not yet parsed.
    pub status_buf: Vec<u8>,
    /// The running command's stdin fifo (`-1`: none) and its path.
    #[serde(default = "no_fd")]
    pub input: RawFd,
    #[serde(default)]
    pub input_path: Option<std::path::PathBuf>,
    /// All input was written to the fifo.
    #[serde(default)]
    pub input_eof: bool,
    /// The shell has opened the fifo.
    #[serde(default)]
    pub input_opened: bool,
}

fn no_fd() -> RawFd {
    -1
}

impl Shell {
    /// Starts the shell in its own process group, with the status pipe as its fd 3.
    pub fn spawn(spec: &RunspaceSpec) -> Result<Self> {
        let fifo = StatusFifo::create(&spec.status_fifo)
            .map_err(AgentError::io("cannot make the status fifo", &spec.status_fifo))?;
        let mut child = shell_command(spec)
            .spawn()
            .map_err(AgentError::io("cannot start the runspace shell", &spec.shell.program))?;
        crate::session::oom::rank_before_daemon(child.id());
        let pgid = Pid::from_raw(child.id().map_or(0, |id| id as i32));
        let io = |action| AgentError::io(action, &spec.shell.program);
        let status = pipe::Receiver::from_owned_fd(fifo.reader).map_err(io("cannot watch the status pipe of"))?;
        let stdin = child.stdin.take().expect("stdin is piped").into_owned_fd();
        let stdout = child.stdout.take().expect("stdout is piped").into_owned_fd();
        let stderr = child.stderr.take().expect("stderr is piped").into_owned_fd();
        let pipes = (|| Ok::<_, io::Error>((sender(stdin?)?, receiver(stdout?)?, receiver(stderr?)?)))();
        let (stdin, stdout, stderr) = pipes.map_err(io("cannot use the pipes of"))?;
        Ok(Self {
            pgid,
            stdin,
            stdout: Some(stdout),
            stderr: Some(stderr),
            process: ShellProcess::Spawned(child),
            status,
            status_buf: Vec::new(),
            status_fifo: Some((spec.status_fifo.clone(), fifo.writer)),
            input: None,
            widths: Default::default(),
        })
    }

    /// The process and descriptors to hand to a new program; they must survive `exec` (see
    /// [`Shell::inherit`]).
    pub fn fds(&self) -> ShellFds {
        let raw = |pipe: &Option<pipe::Receiver>| pipe.as_ref().map_or(-1, AsRawFd::as_raw_fd);
        ShellFds {
            pid: self.process.pid(),
            stdin: self.stdin.as_raw_fd(),
            stdout: raw(&self.stdout),
            stderr: raw(&self.stderr),
            status: self.status.as_raw_fd(),
            status_buf: self.status_buf.clone(),
            input: self.input.as_ref().map_or(-1, InputPipe::raw_fd),
            input_path: self.input.as_ref().map(|pipe| pipe.path().to_path_buf()),
            input_eof: self.input.as_ref().is_some_and(|pipe| pipe.eof),
            input_opened: self.input.as_ref().is_some_and(|pipe| pipe.opened),
        }
    }

    /// Lets the descriptors survive `exec` (`inherit`), or closes them on `exec` again after a
    /// handover that did not happen.
    pub fn inherit(&self, inherit: bool) -> io::Result<()> {
        let fds = self.fds();
        for fd in [fds.stdin, fds.stdout, fds.stderr, fds.status]
            .into_iter()
            .filter(|fd| *fd >= 0)
        {
            let flags = if inherit {
                nix::fcntl::FdFlag::empty()
            } else {
                nix::fcntl::FdFlag::FD_CLOEXEC
            };
            fcntl(
                // SAFETY: the shell's descriptors stay open while `self` holds them.
                unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
                FcntlArg::F_SETFD(flags),
            )?;
        }
        if let Some(input) = &self.input {
            input.inherit(inherit)?;
        }
        Ok(())
    }

    /// Takes over a shell that a previous program of this process started and handed over.
    ///
    /// # Safety
    /// The descriptors in `fds` must be open, owned by nobody else in this process, and be the
    /// handed-over shell's pipes; `fds.pid` must be a child of this process.
    pub unsafe fn adopt(fds: ShellFds) -> io::Result<Self> {
        let own = |fd: RawFd| -> io::Result<Option<OwnedFd>> {
            if fd < 0 {
                return Ok(None);
            }
            // SAFETY: the caller vouches that the descriptors are ours alone.
            let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            fcntl(&fd, FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))?;
            Ok(Some(fd))
        };
        let missing = |what: &str| io::Error::other(format!("the runspace's {what} was not handed over"));
        let stdin = own(fds.stdin)?.ok_or_else(|| missing("stdin"))?;
        let status = own(fds.status)?.ok_or_else(|| missing("status pipe"))?;
        let stdout = own(fds.stdout)?.map(receiver).transpose()?;
        let stderr = own(fds.stderr)?.map(receiver).transpose()?;
        let input = match (fds.input, fds.input_path) {
            (fd, Some(path)) if fd >= 0 => {
                // SAFETY: as for the shell's pipes: handed over, open, ours alone.
                Some(unsafe { InputPipe::adopt(fd, path, fds.input_eof, fds.input_opened) }?)
            }
            _ => None,
        };
        Ok(Self {
            input,
            process: ShellProcess::adopt(fds.pid)?,
            pgid: Pid::from_raw(fds.pid),
            stdin: sender(stdin)?,
            stdout,
            stderr,
            status: receiver(status)?,
            status_buf: fds.status_buf,
            status_fifo: None,
            widths: Default::default(),
        })
    }

    /// Quiets the interactive shell (no prompts, job control or history expansion) and waits
    /// until it is ready, discarding whatever it printed while starting.
    pub async fn init(&mut self) -> Result<()> {
        let ready = self.await_ready().await;
        if let Some((path, _writer)) = self.status_fifo.take() {
            let _ = std::fs::remove_file(path);
        }
        ready
    }

    async fn await_ready(&mut self) -> Result<()> {
        let gone = || AgentError::Runspace("exited while starting".into());
        let open_status = match &self.status_fifo {
            Some((path, _)) => format!("exec 3>'{}'\n", quote(&path.to_string_lossy())),
            None => String::new(),
        };
        if self
            .stdin
            .write_all((open_status + INIT_SCRIPT).as_bytes())
            .await
            .is_err()
        {
            return Err(gone());
        }
        let mut chunk = [0u8; 64];
        let (mut out_noise, mut err_noise) = (vec![0u8; READ_CHUNK], vec![0u8; READ_CHUNK]);
        let deadline = tokio::time::sleep(INIT_TIMEOUT);
        tokio::pin!(deadline);
        while self.take_status_line().is_none() {
            tokio::select! {
                read = self.status.read(&mut chunk) => match read {
                    Ok(n) if n > 0 => self.status_buf.extend_from_slice(&chunk[..n]),
                    _ => return Err(gone()),
                },
                _ = read_some(self.stdout.as_mut(), &mut out_noise), if self.stdout.is_some() => {}
                _ = read_some(self.stderr.as_mut(), &mut err_noise), if self.stderr.is_some() => {}
                _ = self.process.wait() => return Err(gone()),
                _ = &mut deadline => return Err(AgentError::Runspace(format!("did not start within {INIT_TIMEOUT:?}"))),
            }
        }
        self.stdout.iter().for_each(discard_fd);
        self.stderr.iter().for_each(discard_fd);
        Ok(())
    }

    /// Runs one command to its end, journaling its output into the session.
    pub async fn execute(&mut self, session: &Session, id: u64, text: &str, handover: &CancellationToken) -> Outcome {
        self.input = match session.inputs.mode(id) {
            remora_wire::InputMode::Null => None,
            _ => match InputPipe::create(&session.settings().spill_dir, session.id, id) {
                Ok(pipe) => Some(pipe),
                Err(err) => {
                    tracing::error!(session = %session.name, command = id, "cannot make the command's stdin fifo: {err}; it reads /dev/null");
                    session.inputs.close(id);
                    None
                }
            },
        };
        let stdin = self.input.as_ref().map(InputPipe::path);
        if self
            .stdin
            .write_all(command_script(text, stdin).as_bytes())
            .await
            .is_err()
        {
            self.input = None;
            return Outcome::ShellGone(self.wait_exit().await);
        }
        self.follow(session, id, handover).await
    }

    /// Journals the running command's output until it ends (or the daemon hands over).
    pub async fn follow(&mut self, session: &Session, id: u64, handover: &CancellationToken) -> Outcome {
        let chunk = chunk_len(session);
        let (mut out_buf, mut err_buf) = (vec![0u8; chunk], vec![0u8; chunk]);
        let mut status_chunk = [0u8; 64];
        let mut stopper = Stopper::new(session, id);
        loop {
            if let Some(code) = self.take_status_line() {
                self.input = None;
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
                _ = handover.cancelled() => return Outcome::HandOver,
                read = self.status.read(&mut status_chunk) => match read {
                    Ok(n) if n > 0 => self.status_buf.extend_from_slice(&status_chunk[..n]),
                    _ => {
                        self.input = None;
                        self.drain(session, id);
                        return Outcome::ShellGone(self.wait_exit().await);
                    }
                },
                open = input_pipe::feed(self.input.as_ref(), session, id), if self.input.is_some() => {
                    if let (false, Some(input)) = (open, self.input.as_mut()) {
                        input.eof = true;
                        self.settle_input();
                    }
                }
                read = read_some(self.stdout.as_mut(), &mut out_buf), if !paused && self.stdout.is_some() => {
                    let read = top_up(read, self.stdout.as_ref(), &mut out_buf);
                    widen_on_bulk(&read, self.stdout.as_ref(), &mut self.widths[0]);
                    journal_read(session, id, Stream::Stdout, read, &out_buf, &mut self.stdout);
                }
                read = read_some(self.stderr.as_mut(), &mut err_buf), if !paused && self.stderr.is_some() => {
                    let read = top_up(read, self.stderr.as_ref(), &mut err_buf);
                    widen_on_bulk(&read, self.stderr.as_ref(), &mut self.widths[1]);
                    journal_read(session, id, Stream::Stderr, read, &err_buf, &mut self.stderr);
                }
                _ = acks.changed(), if paused => {}
                action = stopper.next() => stopper.apply(self.pgid, action),
            }
        }
    }

    /// Closes the command's stdin once all of it is written and the shell holds the fifo.
    fn settle_input(&mut self) {
        if self.input.as_ref().is_some_and(InputPipe::finished) {
            self.input = None;
        }
    }

    /// Parses a complete `<status>\n` line from the status pipe, if one has arrived; an `i`
    /// line (the shell opened the input fifo) is taken on the way.
    fn take_status_line(&mut self) -> Option<i32> {
        let mut end = self.status_buf.iter().position(|&b| b == b'\n')?;
        while self.status_buf.starts_with(b"i\n") {
            self.status_buf.drain(..2);
            if let Some(input) = self.input.as_mut() {
                input.mark_opened();
            }
            self.settle_input();
            end = self.status_buf.iter().position(|&b| b == b'\n')?;
        }
        let line: Vec<u8> = self.status_buf.drain(..=end).collect();
        let code = std::str::from_utf8(&line).ok().and_then(|s| s.trim().parse().ok());
        Some(code.unwrap_or(-1))
    }

    /// Moves whatever the pipes hold right now into the journal, without waiting.
    /// Journals what the command left in the pipes and sets them back to their default size.
    fn drain(&mut self, session: &Session, id: u64) {
        if let Some(stdout) = &self.stdout {
            drain_fd(stdout, session, id, Stream::Stdout);
            self.widths[0].narrow(stdout);
        }
        if let Some(stderr) = &self.stderr {
            drain_fd(stderr, session, id, Stream::Stderr);
            self.widths[1].narrow(stderr);
        }
    }

    /// Waits for the shell to exit; its status as a number.
    pub async fn wait_exit(&mut self) -> i32 {
        self.process.wait().await
    }

    /// Kills the shell and everything in its process group, and reaps it.
    pub async fn kill(&mut self) {
        if self.pgid.as_raw() > 0 {
            let _ = killpg(self.pgid, Signal::SIGKILL);
        }
        self.process.wait().await;
    }
}

fn shell_command(spec: &RunspaceSpec) -> Command {
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
    command
}

/// The status pipe as a fifo in the agent's private directory, which the shell opens as its
/// fd 3 in its first line: no descriptor has to be placed between `fork` and `exec`.
struct StatusFifo {
    reader: OwnedFd,
    writer: OwnedFd,
}

impl StatusFifo {
    fn create(path: &std::path::Path) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        }
        let _ = std::fs::remove_file(path);
        nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))?;
        let open = |write: bool| {
            std::fs::OpenOptions::new()
                .read(!write)
                .write(write)
                .custom_flags((OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).bits())
                .open(path)
        };
        let reader = open(false)?;
        let writer = open(true)?;
        Ok(Self {
            reader: reader.into(),
            writer: writer.into(),
        })
    }
}

fn sender(fd: OwnedFd) -> io::Result<pipe::Sender> {
    set_nonblocking(&fd)?;
    pipe::Sender::from_owned_fd_unchecked(fd)
}

fn receiver(fd: OwnedFd) -> io::Result<pipe::Receiver> {
    set_nonblocking(&fd)?;
    pipe::Receiver::from_owned_fd_unchecked(fd)
}

/// The text sent to the shell for one command: its stdin is `/dev/null`, or its input fifo,
/// opened first as fd 4 and reported with an `i` status line (see `input_pipe.rs`).
fn command_script(text: &str, stdin: Option<&std::path::Path>) -> String {
    match stdin {
        None => format!("eval '{}' </dev/null 3>&-\nprintf '%s\\n' \"$?\" >&3\n", quote(text)),
        Some(fifo) => format!(
            "exec 4<'{}'; printf 'i\\n' >&3\neval '{}' <&4 4<&- 3>&-\nprintf '%s\\n' \"$?\" >&3; exec 4<&-\n",
            quote(&fifo.to_string_lossy()),
            quote(text)
        ),
    }
}

/// `text` for the inside of a single-quoted shell word.
fn quote(text: &str) -> String {
    text.replace('\'', "'\\''")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_quotes_single_quotes() {
        let script = command_script("echo 'a b'", None);
        assert!(
            script.starts_with("eval 'echo '\\''a b'\\''' </dev/null 3>&-\n"),
            "{script}"
        );
    }
}
