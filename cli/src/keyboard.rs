//! The keyboard of `remora shell`, read in the terminal stream's own loop: stdin's readiness is
//! one more branch of the stream's select, so a keystroke becomes a frame on the thread that
//! sends it, with no thread or task in between. Window changes arrive the same way.
//!
//! stdin is never switched to non-blocking: it usually shares its open file with stdout and
//! stderr, which would then fail writes with `EAGAIN`. A read takes at most what `FIONREAD`
//! says is there, so it cannot wait. Input that cannot be polled (a regular file, `/dev/null`)
//! is read on a thread of its own instead.

use std::{
    io::Write,
    os::fd::{AsRawFd, RawFd},
};

use remora_client::terminal::{TermCommand, TermCommands};
use tokio::{
    io::{unix::AsyncFd, Interest},
    signal::unix::{signal, Signal, SignalKind},
    sync::mpsc,
};

use crate::terminal::{window_size, Escapes, Key};

/// Most bytes taken from stdin at once (a paste arrives in pieces of this).
const READ_MOST: usize = 64 * 1024;

/// Keystrokes (escapes taken out) and window changes, as the stream's commands; `~.` and the end
/// of input are told on `detach`.
pub struct Keyboard {
    stdin: Stdin,
    escapes: Escapes,
    watch: bool,
    winch: Signal,
    /// Commands read but not returned yet (one read may hold several).
    ready: std::collections::VecDeque<TermCommand>,
    detach: Option<mpsc::UnboundedSender<()>>,
}

impl Keyboard {
    /// Reads fd 0. A watcher's keystrokes are dropped (escapes still work) and its window
    /// changes are not sent.
    pub fn open(escapes: Escapes, watch: bool, detach: mpsc::UnboundedSender<()>) -> std::io::Result<Self> {
        Ok(Self {
            stdin: Stdin::open(),
            escapes,
            watch,
            winch: signal(SignalKind::window_change())?,
            ready: Default::default(),
            detach: Some(detach),
        })
    }

    fn take(&mut self, typed: &[u8]) {
        for key in self.escapes.feed(typed) {
            match key {
                Key::Send(_) if self.watch => {}
                Key::Send(bytes) => self.ready.push_back(TermCommand::Input(bytes)),
                Key::Help => {
                    let mut stdout = std::io::stdout().lock();
                    let _ = stdout
                        .write_all(self.escapes.help().as_bytes())
                        .and_then(|()| stdout.flush());
                }
                Key::Detach => self.end(),
            }
        }
    }

    /// `~.` or the end of input: no more reading; what was typed before still goes.
    fn end(&mut self) {
        if let Some(detach) = self.detach.take() {
            let _ = detach.send(());
        }
    }
}

impl TermCommands for Keyboard {
    async fn next_command(&mut self) -> Option<TermCommand> {
        loop {
            if let Some(command) = self.ready.pop_front() {
                return Some(command);
            }
            if self.detach.is_none() {
                return std::future::pending().await;
            }
            tokio::select! {
                typed = self.stdin.read() => match typed {
                    Some(bytes) => self.take(&bytes),
                    None => self.end(),
                },
                Some(()) = self.winch.recv() => {
                    if let (Some((rows, cols)), false) = (window_size(), self.watch) {
                        return Some(TermCommand::Resize { rows, cols });
                    }
                }
            }
        }
    }

    fn waiting_command(&mut self) -> Option<TermCommand> {
        self.ready.pop_front()
    }
}

/// fd 0, polled when it can be, else read on a thread.
enum Stdin {
    Polled(AsyncFd<Fd0>),
    Thread(mpsc::UnboundedReceiver<Vec<u8>>),
}

/// fd 0, for [`AsyncFd`]: never closed here.
struct Fd0;

impl AsRawFd for Fd0 {
    fn as_raw_fd(&self) -> RawFd {
        0
    }
}

impl Stdin {
    fn open() -> Self {
        // SAFETY: fd 0 stays open, on the same file, for the life of the process: nothing in
        // remora closes or replaces it.
        match unsafe { AsyncFd::register_with_interest(Fd0, Interest::READABLE) } {
            Ok(fd) if bytes_available().is_some() => Self::Polled(fd),
            _ => Self::Thread(read_on_a_thread()),
        }
    }

    /// What was typed; `None` at the end of input. Cancel-safe: bytes are taken only once
    /// they can be returned.
    async fn read(&mut self) -> Option<Vec<u8>> {
        match self {
            Self::Polled(fd) => read_polled(fd).await,
            Self::Thread(rx) => rx.recv().await,
        }
    }
}

async fn read_polled(fd: &AsyncFd<Fd0>) -> Option<Vec<u8>> {
    loop {
        let mut guard = fd.readable().await.ok()?;
        let available = bytes_available().unwrap_or(0);
        let closed = guard.ready().is_read_closed();
        if available == 0 && !closed {
            guard.clear_ready(); // a wakeup with nothing to read
            continue;
        }
        // At most what is there, so the read returns at once; once closed it returns at once too.
        let mut buf = vec![0u8; available.clamp(1, READ_MOST)];
        // SAFETY: reads into a buffer we own from fd 0.
        let n = unsafe { nix::libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        if n <= 0 {
            return None;
        }
        if n as usize >= available {
            // All that was there is read; anything typed since is a new wakeup.
            guard.clear_ready();
        }
        buf.truncate(n as usize);
        return Some(buf);
    }
}

/// Bytes waiting on fd 0 (`FIONREAD`).
fn bytes_available() -> Option<usize> {
    let mut count: nix::libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    let ok = unsafe { nix::libc::ioctl(0, nix::libc::FIONREAD, &mut count) } == 0;
    ok.then_some(count.max(0) as usize)
}

/// Input that cannot be polled, read on a thread of its own (a read cannot be cancelled; the
/// thread ends with the process).
fn read_on_a_thread() -> mpsc::UnboundedReceiver<Vec<u8>> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; READ_MOST];
        loop {
            // SAFETY: reads into a buffer we own from fd 0.
            let n = unsafe { nix::libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            if n <= 0 || tx.send(buf[..n as usize].to_vec()).is_err() {
                break;
            }
        }
    });
    rx
}
