//! The bench's world: one sshd from the test harness, its agent's configuration, and the client
//! commands for remora and OpenSSH with the same cipher.

use std::{path::PathBuf, process::Command, sync::Arc, time::Duration};

use anyhow::Context;
use remora_client::{ssh::SshOptions, Client};
use remora_testkit::Sshd;

/// How long a polled condition may take before the bench gives up.
pub const WAIT: Duration = Duration::from_secs(600);

/// Room for the replay workload: everything it streams fits the spill quota, and the `memory`
/// configuration holds it all in memory (replay from memory rather than the spill file).
const AGENT_CONFIG: &str = "[configurations.default]\nspill_quota = \"64GiB\"\nmax_sessions = 100000\n\
                            [configurations.memory]\nbuffering = \"block\"\nbuffer_limit = \"64GiB\"\n";

/// The remote account the warm, fleet and Ansible rows run on: sshd's login shell runs the
/// account's `~/.bashrc` for every session it starts, including the agent's subsystem.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Account {
    /// An empty HOME: a session costs sshd and a bare shell.
    Plain,
    /// A `~/.bashrc` that costs about 100 ms, as pyenv, conda or nvm init do on many hosts.
    SlowRc,
}

impl Account {
    pub const BOTH: [Account; 2] = [Account::Plain, Account::SlowRc];

    /// What the heavy `~/.bashrc` does: sleep for the 100 ms a version manager's init costs,
    /// without taking the two cores the whole bench shares.
    const SLOW_BASHRC: &'static str = "sleep 0.1\n";

    pub fn label(self) -> &'static str {
        match self {
            Account::Plain => "plain account",
            Account::SlowRc => "~/.bashrc of 100 ms",
        }
    }

    /// Makes the bench's remote HOME this account: writes or removes its `~/.bashrc`.
    pub fn prepare(self, sshd: &Sshd) -> std::io::Result<()> {
        let bashrc = sshd.remote_home().join(".bashrc");
        match self {
            Account::Plain => match std::fs::remove_file(&bashrc) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
                _ => Ok(()),
            },
            Account::SlowRc => std::fs::write(&bashrc, Self::SLOW_BASHRC),
        }
    }
}

pub struct Bench {
    /// Shared with the thread that ends everything on SIGTERM or SIGINT ([`Bench::start`]).
    pub sshd: Arc<Sshd>,
    /// The cipher both clients use: the one remora prefers here, asked of ssh with `-c`.
    pub cipher: String,
}

impl Bench {
    pub fn start() -> anyhow::Result<Bench> {
        // sftp (and scp, which speaks SFTP by default) are compared in the transfer workload.
        let sshd = Arc::new(Sshd::start_with("Subsystem sftp internal-sftp\n")?);
        sshd.write_agent_config(AGENT_CONFIG)?;
        end_on_signal(Arc::downgrade(&sshd))?;
        Ok(Bench {
            sshd,
            cipher: remora_client::ssh::preferred_cipher(),
        })
    }

    /// What the run is measured on.
    pub fn describe(&self) -> String {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                let line = text.lines().find(|l| l.starts_with("model name"))?.to_string();
                Some(line.split(':').nth(1)?.trim().to_string())
            })
            .unwrap_or_default();
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let openssh = Command::new("ssh")
            .arg("-V")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
            .unwrap_or_default();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        format!(
            "machine: {cores} cores, {cpu}, Linux {}; {openssh}; cipher {}",
            kernel.trim(),
            self.cipher
        )
    }

    /// The built `remora` for this sshd, connecting on its own each time (`--no-reuse`): the
    /// cold path every workload but `warm` measures.
    pub fn remora(&self, args: &[&str]) -> Command {
        let mut command = self.sshd.remora();
        command.arg("--no-reuse").args(args);
        command
    }

    /// The built `remora` for this sshd, through the connection holder when it holds one.
    pub fn remora_warm(&self, args: &[&str]) -> Command {
        let mut command = self.sshd.remora();
        command.args(args);
        command
    }

    /// OpenSSH's `ssh` for this sshd, with the same cipher as remora negotiates.
    pub fn ssh(&self, args: &[&str]) -> Command {
        let mut command = self.sshd.ssh();
        command.args(["-c", &self.cipher]).args(args);
        command
    }

    /// An OpenSSH ControlMaster to the bench's host, for the multiplexed comparison rows; its
    /// first connection is made here, so timed runs only open a channel.
    pub fn ssh_master(&self) -> anyhow::Result<Master<'_>> {
        let master = Master {
            bench: self,
            path: self.sshd.dir().join("cm.sock"),
        };
        crate::measure::timed(&mut master.ssh(&[self.sshd.alias(), "true"]))?;
        Ok(master)
    }

    /// The agent's daemon (started by the first remora run).
    pub fn daemon_pid(&self) -> anyhow::Result<i32> {
        self.sshd.daemon_pid().context("the agent's daemon is not running")
    }

    /// A library client on one connection.
    pub async fn client(&self) -> anyhow::Result<Client> {
        let options = SshOptions {
            config_file: Some(self.sshd.ssh_config()),
            ..SshOptions::default()
        };
        Ok(Client::connect(self.sshd.alias(), &options).await?)
    }

    /// A runtime for library calls.
    pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
        Ok(tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?)
    }
}

/// A running `ssh` ControlMaster (ControlPersist), ended with `ssh -O exit` when dropped.
pub struct Master<'a> {
    bench: &'a Bench,
    /// The ControlPath socket, in the bench's temp dir.
    path: PathBuf,
}

impl Master<'_> {
    /// `ssh` multiplexed over the master (which it starts if it is not there).
    pub fn ssh(&self, args: &[&str]) -> Command {
        let mut command = self.bench.ssh(&[]);
        command.args(self.options()).args(args);
        command
    }

    fn options(&self) -> [String; 6] {
        [
            "-o".into(),
            "ControlMaster=auto".into(),
            "-o".into(),
            format!("ControlPath={}", self.path.display()),
            "-o".into(),
            "ControlPersist=60".into(),
        ]
    }
}

impl Drop for Master<'_> {
    fn drop(&mut self) {
        let mut exit = self.bench.sshd.ssh();
        exit.args(["-O", "exit", "-o"])
            .arg(format!("ControlPath={}", self.path.display()))
            .arg(self.bench.sshd.alias());
        if let Err(err) = crate::measure::timed(&mut exit) {
            eprintln!("remora-bench: could not end the ssh ControlMaster: {err:#}");
        }
    }
}

/// Set once a signal asked the bench to stop: a workload failing from then on is the cleanup's
/// doing, and the signal thread decides how the process ends.
static STOPPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether a signal is ending the bench.
pub fn stopping() -> bool {
    STOPPING.load(std::sync::atomic::Ordering::SeqCst)
}

/// On SIGTERM or SIGINT, ends the sshd and everything it led to (sessions, the agent's daemon,
/// the connection holder, the clients), then exits with 128 + the signal, as a shell reports it.
/// A thread of its own with a small runtime: the workloads run synchronously on the main one.
/// It holds the sshd weakly: at a normal end the bench's own handle is the last, and dropping it
/// ends everything (a strong handle here kept the sshd and daemon running past the bench).
fn end_on_signal(sshd: std::sync::Weak<Sshd>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    let (mut terminate, mut interrupt) =
        runtime.block_on(async { anyhow::Ok((signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?)) })?;
    std::thread::spawn(move || {
        let number = runtime.block_on(async {
            tokio::select! {
                _ = terminate.recv() => nix::libc::SIGTERM,
                _ = interrupt.recv() => nix::libc::SIGINT,
            }
        });
        STOPPING.store(true, std::sync::atomic::Ordering::SeqCst);
        eprintln!("remora-bench: stopped by signal {number}; ending its sshd, daemon and clients");
        if let Some(sshd) = sshd.upgrade() {
            sshd.stop_everything();
            // exit skips destructors: the test directory goes here.
            let _ = std::fs::remove_dir_all(sshd.dir());
        }
        std::process::exit(128 + number);
    });
    Ok(())
}
