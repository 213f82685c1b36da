//! A real OpenSSH sshd for one test: loopback port, throw-away keys, the built agent as its
//! `remora` subsystem with a private state dir. Dropping it ends sshd and the agent's daemon.

use std::{
    fs,
    io::Read,
    net::{TcpListener, TcpStream},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

use super::{binaries, process::stop_process};

/// Host alias the generated ssh_config defines.
const ALIAS: &str = "testhost";

/// One running sshd and the files around it.
pub struct Sshd {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
}

impl Sshd {
    /// Starts sshd and waits until it greets on its port.
    pub fn start() -> anyhow::Result<Sshd> {
        let dir = tempfile::Builder::new().prefix("remora-e2e-").tempdir()?;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
        keygen(&dir.path().join("host_key"))?;
        keygen(&dir.path().join("user_key"))?;
        fs::copy(dir.path().join("user_key.pub"), dir.path().join("authorized_keys"))?;
        fs::set_permissions(dir.path().join("authorized_keys"), fs::Permissions::from_mode(0o600))?;
        fs::create_dir(dir.path().join("home"))?;
        ensure_privsep_dir()?;
        let mut last_error = None;
        for _ in 0..5 {
            let port = free_port()?;
            write_sshd_config(dir.path(), port)?;
            let mut child = spawn_sshd(dir.path())?;
            match wait_for_banner(port, &mut child) {
                Ok(()) => {
                    let sshd = Sshd { dir, child, port };
                    sshd.write_client_files()?;
                    return Ok(sshd);
                }
                Err(err) => {
                    stop_process(child.id() as i32);
                    let _ = child.wait();
                    last_error = Some(err.context(log_tail(dir.path())));
                }
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    fn write_client_files(&self) -> anyhow::Result<()> {
        let host_key = fs::read_to_string(self.dir().join("host_key.pub"))?;
        let key_fields: Vec<&str> = host_key.split_whitespace().take(2).collect();
        fs::write(
            self.known_hosts(),
            format!("[127.0.0.1]:{} {}\n", self.port, key_fields.join(" ")),
        )?;
        fs::write(self.ssh_config(), self.host_block(ALIAS))?;
        Ok(())
    }

    /// An ssh_config `Host` block reaching this sshd under `alias` through `port` (a proxy in
    /// front of it), with the host key trusted on that port too and fast keepalives.
    pub fn host_block_via(&self, alias: &str, port: u16) -> String {
        let host_key = self.host_public_key();
        let key: Vec<&str> = host_key.split_whitespace().take(2).collect();
        let mut known = fs::read_to_string(self.known_hosts()).unwrap_or_default();
        known.push_str(&format!("[127.0.0.1]:{port} {}\n", key.join(" ")));
        fs::write(self.known_hosts(), known).expect("known_hosts is writable");
        let block = self
            .host_block(alias)
            .replace(&format!("Port {}\n", self.port), &format!("Port {port}\n"));
        block + "  ServerAliveInterval 1\n  ServerAliveCountMax 3\n  ConnectTimeout 3\n"
    }

    /// An ssh_config `Host` block reaching this sshd under `alias`.
    pub fn host_block(&self, alias: &str) -> String {
        format!(
            "Host {alias}\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n",
            self.port,
            self.user(),
            self.user_key().display(),
            self.known_hosts().display()
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The ssh_config alias that reaches this sshd.
    pub fn alias(&self) -> &'static str {
        ALIAS
    }

    /// The test's private directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn ssh_config(&self) -> PathBuf {
        self.dir().join("ssh_config")
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.dir().join("known_hosts")
    }

    pub fn user_key(&self) -> PathBuf {
        self.dir().join("user_key")
    }

    /// The host key's public line (`ssh-ed25519 AAAA… comment`).
    pub fn host_public_key(&self) -> String {
        fs::read_to_string(self.dir().join("host_key.pub")).expect("host key written at start")
    }

    /// The agent's `--state-dir`.
    pub fn state_dir(&self) -> PathBuf {
        self.dir().join("state")
    }

    pub fn user(&self) -> String {
        nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| "root".into())
    }

    /// The built `remora` with this sshd's ssh_config, a private HOME and no ssh-agent.
    pub fn remora(&self) -> Command {
        let mut command = Command::new(&binaries().remora);
        command
            .arg("-F")
            .arg(self.ssh_config())
            .env("HOME", self.dir().join("home"))
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null());
        command
    }

    /// OpenSSH's client with this sshd's ssh_config.
    pub fn ssh(&self) -> Command {
        let mut command = Command::new("ssh");
        command
            .arg("-F")
            .arg(self.ssh_config())
            .args(["-o", "BatchMode=yes"])
            .env_remove("SSH_AUTH_SOCK");
        command
    }

    /// The pid of the agent daemon this sshd's subsystem started, if it runs.
    pub fn daemon_pid(&self) -> Option<i32> {
        let pid = fs::read_to_string(self.state_dir().join("run").join("daemon.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        super::process_alive(pid).then_some(pid)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        stop_process(self.child.id() as i32);
        let _ = self.child.wait();
        if let Some(pid) = self.daemon_pid() {
            stop_process(pid);
        }
    }
}

fn keygen(path: &Path) -> anyhow::Result<()> {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "remora-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .context("ssh-keygen not found: install openssh-client (scripts/test does it)")?;
    if !status.success() {
        bail!("ssh-keygen failed for {}", path.display());
    }
    Ok(())
}

fn sshd_binary() -> anyhow::Result<PathBuf> {
    let candidates = [PathBuf::from("/usr/sbin/sshd"), PathBuf::from("/usr/local/sbin/sshd")];
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .context("sshd not found: install openssh-server (scripts/test does it)")
}

/// sshd started by root needs its privilege-separation directory.
fn ensure_privsep_dir() -> anyhow::Result<()> {
    if nix::unistd::getuid().is_root() && !Path::new("/run/sshd").exists() {
        fs::create_dir_all("/run/sshd")?;
        fs::set_permissions("/run/sshd", fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn write_sshd_config(dir: &Path, port: u16) -> anyhow::Result<()> {
    let config = format!(
        "ListenAddress 127.0.0.1\nPort {port}\nHostKey {dir}/host_key\nPidFile {dir}/sshd.pid\n\
         AuthorizedKeysFile {dir}/authorized_keys\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
         KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\n\
         AllowTcpForwarding yes\nLogLevel VERBOSE\nSubsystem remora {agent} subsystem --state-dir {dir}/state\n",
        dir = dir.display(),
        agent = binaries().agent.display(),
    );
    fs::write(dir.join("sshd_config"), config)?;
    Ok(())
}

fn spawn_sshd(dir: &Path) -> anyhow::Result<Child> {
    Command::new(sshd_binary()?)
        .arg("-D")
        .arg("-f")
        .arg(dir.join("sshd_config"))
        .arg("-E")
        .arg(dir.join("sshd.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start sshd")
}

/// Waits for sshd's `SSH-2.0` banner on `port`, or for sshd to die.
fn wait_for_banner(port: u16, child: &mut Child) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut backoff = Duration::from_millis(5);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            bail!("sshd exited with {status}");
        }
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut banner = [0u8; 7];
            if stream.read_exact(&mut banner).is_ok() && &banner == b"SSH-2.0" {
                return Ok(());
            }
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_millis(100));
    }
    bail!("sshd did not greet on port {port} within 10 s")
}

fn log_tail(dir: &Path) -> String {
    let log = fs::read_to_string(dir.join("sshd.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().rev().take(15).collect();
    format!("sshd log:\n{}", lines.into_iter().rev().collect::<Vec<_>>().join("\n"))
}
