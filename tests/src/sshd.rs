//! `Sshd`: a real OpenSSH server for one test, on a loopback port, with throw-away keys and the
//! built agent as its `remora` subsystem under a private state dir.
//!
//! Invariant: dropping an `Sshd` ends every process it led to — sshd and its per-connection
//! children, the subsystem processes, the agent's daemon and its sessions, and the clients built
//! by [`Sshd::remora`] and [`Sshd::ssh`]. sshd tags every session with a marker variable
//! (`SetEnv`), so even processes that detached (the daemon calls `setsid`) are found.

mod files;

use std::{
    fs,
    io::Read,
    net::{SocketAddr, TcpListener, TcpStream},
    os::unix::fs::{DirBuilderExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::Duration,
};

use anyhow::{bail, Context};
pub use files::generate_key;
use files::{ServerSettings, ALIAS, MARKER_VAR, REMOTE_HOME};

use crate::{
    account::Account,
    binaries::{binaries, Binaries},
    pids::{self, process_alive, terminate},
    wait::wait_for,
};

/// How long sshd gets to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connected sshd gets to send its banner.
const BANNER_TIMEOUT: Duration = Duration::from_secs(2);
/// Ports tried before giving up when another process keeps taking the chosen one.
const BIND_ATTEMPTS: usize = 5;
/// How long each process gets between SIGTERM and SIGKILL at teardown.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Log lines quoted in errors and after a failed test.
const LOG_TAIL: usize = 30;

/// What the `Subsystem remora` line runs.
enum Serving {
    /// The built agent, with the test's private state dir.
    Agent,
    /// No such line.
    Nothing,
    /// The hostile agent of [`crate::hostile_agent`].
    Hostile,
}

impl Serving {
    fn command(&self, binaries: &Binaries, dir: &Path) -> anyhow::Result<Option<String>> {
        Ok(match self {
            Serving::Agent => Some(format!(
                "{} subsystem --state-dir {}/state",
                binaries.agent.display(),
                dir.display()
            )),
            Serving::Nothing => None,
            Serving::Hostile => {
                let program = binaries.hostile_agent()?;
                files::check_plain(&program)?;
                Some(format!("{} --dir {}", program.display(), dir.display()))
            }
        })
    }
}

/// One running sshd and the files around it; see the module docs for what dropping it ends.
pub struct Sshd {
    dir: tempfile::TempDir,
    /// sshd's listener, in the foreground (`-D`) so we own its pid.
    child: Child,
    port: u16,
    user: String,
    host_public_key: String,
    /// Value of [`MARKER_VAR`] in every process this sshd and its clients start.
    marker: String,
    binaries: Binaries,
}

impl Sshd {
    /// Starts sshd and returns once it has greeted on its port.
    pub fn start() -> anyhow::Result<Sshd> {
        Sshd::start_with("")
    }

    /// Like [`Sshd::start`], with `extra` sshd_config lines placed first: sshd keeps the first
    /// value it reads for most keywords, so they override the harness's. No `Match` blocks (they
    /// would swallow the lines after them), and `Subsystem remora` cannot be redefined.
    pub fn start_with(extra: &str) -> anyhow::Result<Sshd> {
        Sshd::launch(extra, Serving::Agent, &[], None, |_| Ok(String::new()))
    }

    /// Like [`Sshd::start`], after `prepare` ran on the test's directory once the host key
    /// (`host_key`, `host_key.pub`) exists; the sshd_config lines it returns come first (a
    /// `HostCertificate` made by signing the host key, say).
    pub fn start_prepared(prepare: impl FnOnce(&Path) -> anyhow::Result<String>) -> anyhow::Result<Sshd> {
        Sshd::launch("", Serving::Agent, &[], None, prepare)
    }

    /// An sshd without the `Subsystem remora` line, like a host whose admin has not added it:
    /// remora must find the agent itself (exec request), after `remora install` put it there.
    pub fn start_without_subsystem() -> anyhow::Result<Sshd> {
        Sshd::launch("", Serving::Nothing, &[], None, |_| Ok(String::new()))
    }

    /// An sshd whose `remora` subsystem is the hostile agent (`hostile-agent --dir DIR`, see
    /// [`crate::hostile_agent`]): a compromised host speaking the real protocol.
    pub fn start_hostile() -> anyhow::Result<Sshd> {
        Sshd::launch("", Serving::Hostile, &[], None, |_| Ok(String::new()))
    }

    /// Like [`Sshd::start_without_subsystem`], logging clients in as `account` (another local
    /// user, with its own login shell) instead of the user running the test. Needs root: sshd
    /// then runs as root, and the files the account reads are made its own.
    pub fn start_as(account: &Account) -> anyhow::Result<Sshd> {
        Sshd::launch("", Serving::Nothing, &[], Some(account), |_| Ok(String::new()))
    }

    /// Like [`Sshd::start_without_subsystem`], with `env` added to every session's environment
    /// on the host (a `PATH` with fake commands first, an `XDG_RUNTIME_DIR`). Values cannot hold
    /// spaces or quotes.
    pub fn start_without_subsystem_env(env: &[(&str, &str)]) -> anyhow::Result<Sshd> {
        Sshd::launch("", Serving::Nothing, env, None, |_| Ok(String::new()))
    }

    fn launch(
        extra: &str,
        serving: Serving,
        env: &[(&str, &str)],
        account: Option<&Account>,
        prepare: impl FnOnce(&Path) -> anyhow::Result<String>,
    ) -> anyhow::Result<Sshd> {
        let binaries = binaries()?;
        let program = files::sshd_program()?;
        let user = match account {
            Some(account) => account.name().to_string(),
            None => current_user()?,
        };
        let dir = tempfile::Builder::new()
            .prefix("remora-e2e-")
            .tempdir()
            .context("cannot create the test's temp dir")?;
        files::check_plain(dir.path())?;
        files::check_plain(&binaries.agent)?;
        files::generate_key(&dir.path().join("host_key"), "")?;
        files::generate_key(&dir.path().join("user_key"), "")?;
        let user_public_key = fs::read_to_string(dir.path().join("user_key.pub"))?;
        files::write_private(&dir.path().join("authorized_keys"), &user_public_key)?;
        let host_public_key = fs::read_to_string(dir.path().join("host_key.pub"))?;
        fs::create_dir(dir.path().join("home"))?;
        fs::create_dir(dir.path().join(REMOTE_HOME))?;
        if let Some(account) = account {
            hand_over(dir.path(), account)?;
        }
        ensure_privsep_dir()?;
        let extra = prepare(dir.path())? + extra;
        let marker = uuid::Uuid::new_v4().simple().to_string();
        let subsystem = serving.command(&binaries, dir.path())?;
        let host_env = host_env(env)?;
        let settings = ServerSettings {
            dir: dir.path(),
            port: 0,
            marker: &marker,
            has_penalties: files::has_penalties(&program),
            extra: &extra,
            subsystem,
            host_env: &host_env,
        };
        let (child, port) = launch(&program, settings)?;
        // From here on, Drop ends sshd if anything else fails.
        let sshd = Sshd {
            dir,
            child,
            port,
            user,
            host_public_key,
            marker,
            binaries,
        };
        sshd.write_client_files()?;
        Ok(sshd)
    }

    fn write_client_files(&self) -> anyhow::Result<()> {
        files::write_private(
            &self.known_hosts(),
            &files::known_hosts_line(self.port, &self.host_public_key),
        )?;
        files::write_private(&self.ssh_config(), &self.host_block(ALIAS))
    }

    /// Adds `Host alias` to the ssh_config, reaching this sshd through 127.0.0.1:`port` (a
    /// [`crate::FaultyLink`] in front of it), and trusts this host key on that port.
    pub fn add_alias(&self, alias: &str, port: u16) -> anyhow::Result<()> {
        let block = self.host_block_via(alias, port)?;
        let config = fs::read_to_string(self.ssh_config())? + &block;
        files::write_private(&self.ssh_config(), &config)
    }

    /// An ssh_config `Host alias` block reaching this sshd directly, for configs that name
    /// several servers (the host key is trusted on its own port already).
    pub fn host_block(&self, alias: &str) -> String {
        files::host_block(alias, self.port, &self.user, &self.user_key(), &self.known_hosts())
    }

    /// An ssh_config `Host alias` block reaching this sshd through 127.0.0.1:`port` (a proxy in
    /// front of it), after trusting this host key on that port too.
    pub fn host_block_via(&self, alias: &str, port: u16) -> anyhow::Result<String> {
        let known_hosts =
            fs::read_to_string(self.known_hosts())? + &files::known_hosts_line(port, &self.host_public_key);
        files::write_private(&self.known_hosts(), &known_hosts)?;
        Ok(files::host_block(
            alias,
            port,
            &self.user,
            &self.user_key(),
            &self.known_hosts(),
        ))
    }

    /// The loopback port sshd listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// 127.0.0.1:[`Sshd::port`], e.g. the target of a [`crate::FaultyLink`].
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The pid of sshd's listener.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The ssh_config alias that reaches this sshd (`testhost`).
    pub fn alias(&self) -> &'static str {
        ALIAS
    }

    /// The user clients log in as: whoever runs the test.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The test's private directory, holding everything below.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The client's ssh_config (pass with `-F`).
    pub fn ssh_config(&self) -> PathBuf {
        self.dir().join("ssh_config")
    }

    /// The client's known_hosts, trusting this sshd's host key.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir().join("known_hosts")
    }

    /// The client's private key (ed25519, no passphrase); `.pub` beside it.
    pub fn user_key(&self) -> PathBuf {
        self.dir().join("user_key")
    }

    /// The host key's public line (`ssh-ed25519 AAAA… remora-test`).
    pub fn host_public_key(&self) -> &str {
        &self.host_public_key
    }

    /// The agent's `--state-dir`; it appears when the first subsystem runs.
    pub fn state_dir(&self) -> PathBuf {
        self.dir().join("state")
    }

    /// Writes the agent's `agent.toml` (session configurations) for this sshd's state dir, before
    /// or while the daemon runs; its directories are created private, as the agent insists.
    pub fn write_agent_config(&self, text: &str) -> anyhow::Result<()> {
        let dir = self.state_dir().join("config");
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
        fs::write(dir.join("agent.toml"), text).context("cannot write agent.toml")
    }

    /// The empty HOME of client processes, so the developer's `~/.ssh` is never read.
    pub fn home(&self) -> PathBuf {
        self.dir().join("home")
    }

    /// The HOME of everything run on the "host" (sessions, the agent), apart from the client's.
    pub fn remote_home(&self) -> PathBuf {
        self.dir().join(REMOTE_HOME)
    }

    /// sshd's log so far (`LogLevel VERBOSE`).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir().join("sshd.log")).unwrap_or_default()
    }

    /// The agent daemon's log so far (empty before the daemon started).
    pub fn daemon_log(&self) -> String {
        fs::read_to_string(self.state_dir().join("log").join("daemon.log")).unwrap_or_default()
    }

    /// The pid of the agent's daemon if it runs: the pid in `<state_dir>/run/daemon.pid`, when
    /// that process is alive and is a daemon of this state dir (a stale file may name a stranger).
    pub fn daemon_pid(&self) -> Option<i32> {
        let text = fs::read_to_string(self.state_dir().join("run").join("daemon.pid")).ok()?;
        let pid = text.trim().parse().ok()?;
        let state_dir = self.state_dir().to_string_lossy().into_owned();
        let ours = pids::command_line(pid)?.contains(&state_dir);
        (ours && process_alive(pid)).then_some(pid)
    }

    /// Live processes started on behalf of this sshd: sessions, subsystems, the daemon and what it
    /// runs, and the clients built by [`Sshd::remora`] and [`Sshd::ssh`].
    pub fn processes(&self) -> Vec<i32> {
        pids::with_env(MARKER_VAR, &self.marker)
    }

    /// The built `remora` with `-F <ssh_config>` as its first arguments, the private HOME, no
    /// ssh-agent and stdin from /dev/null.
    pub fn remora(&self) -> Command {
        let mut command = Command::new(&self.binaries.remora);
        command.arg("-F").arg(self.ssh_config());
        self.client_environment(&mut command);
        command
    }

    /// The built `remora` with `-F config` instead of the harness's ssh_config (a test's own
    /// config, naming this and other servers), otherwise like [`Sshd::remora`].
    pub fn remora_with_config(&self, config: &Path) -> Command {
        let mut command = Command::new(&self.binaries.remora);
        command.arg("-F").arg(config);
        self.client_environment(&mut command);
        command
    }

    /// The built `remora-agent`, run directly (not through sshd) but tagged like everything this
    /// sshd leads to, so whatever it starts — a daemon, say — ends with the sshd too.
    pub fn agent(&self) -> Command {
        let mut command = Command::new(&self.binaries.agent);
        self.client_environment(&mut command);
        command
    }

    /// Another `remora-agent` binary (a copy standing for a newer version), tagged like
    /// [`Sshd::agent`].
    pub fn agent_at(&self, binary: &Path) -> Command {
        let mut command = Command::new(binary);
        self.client_environment(&mut command);
        command
    }

    /// The built `remora` reading the private HOME's `~/.ssh/config`, as a user runs it.
    pub fn remora_as_user(&self) -> Command {
        let mut command = Command::new(&self.binaries.remora);
        self.client_environment(&mut command);
        command
    }

    /// OpenSSH's client the same way (`-F <ssh_config>`, batch mode), e.g. for comparisons or
    /// raw bytes to the subsystem with `ssh -s testhost remora`.
    pub fn ssh(&self) -> Command {
        let mut command = Command::new("ssh");
        command.arg("-F").arg(self.ssh_config()).args(["-o", "BatchMode=yes"]);
        self.client_environment(&mut command);
        command
    }

    /// Another OpenSSH client program (`scp`, `sftp`) set up like [`Sshd::ssh`], reading
    /// `config` (the harness's ssh_config or a test's own).
    pub fn openssh_tool(&self, program: &str, config: &Path) -> Command {
        let mut command = Command::new(program);
        command.arg("-F").arg(config).args(["-o", "BatchMode=yes"]);
        self.client_environment(&mut command);
        command
    }

    /// Another program run on the client side (`ansible-playbook`, say) with the same private
    /// HOME, no ssh-agent, stdin from /dev/null and the tag that ends it with this sshd.
    pub fn client_program(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        self.client_environment(&mut command);
        command
    }

    fn client_environment(&self, command: &mut Command) {
        command
            .env("HOME", self.home())
            // The connection holder lives under HOME then, private to this test.
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("SSH_AUTH_SOCK")
            .env(MARKER_VAR, &self.marker)
            .stdin(Stdio::null());
    }

    fn print_logs(&self) {
        eprintln!(
            "--- sshd log ({}):\n{}",
            self.dir().display(),
            tail(&self.log(), LOG_TAIL)
        );
        let daemon_log = self.daemon_log();
        if !daemon_log.is_empty() {
            eprintln!("--- daemon log:\n{}", tail(&daemon_log, LOG_TAIL));
        }
    }
}

impl Sshd {
    /// Ends sshd and everything it led to (sessions, subsystems, the agent's daemon and what it
    /// runs, the clients built for it), by pid; for a process that must clean up without
    /// dropping its `Sshd` (a signal handler). Dropping does the same.
    pub fn stop_everything(&self) {
        // Trees first: once a parent is gone its orphans are re-parented out of them.
        let listener = self.pid();
        let mut leftovers = pids::descendants(listener);
        let mut first = vec![listener];
        if let Some(daemon) = self.daemon_pid() {
            leftovers.extend(pids::descendants(daemon));
            first.push(daemon);
        }
        // The daemon ends its sessions itself on SIGTERM; what survives that is swept below.
        stop_all(&first);
        leftovers.extend(self.processes());
        leftovers.sort_unstable();
        leftovers.dedup();
        stop_all(&leftovers);
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if thread::panicking() {
            self.print_logs();
        }
        self.stop_everything();
        let _ = self.child.wait();
    }
}

/// Lets `account` reach what it reads in the test's directory (its authorized_keys, its HOME)
/// and own what it writes, with that HOME as its home directory; the rest stays the test's.
fn hand_over(dir: &Path, account: &Account) -> anyhow::Result<()> {
    let uid = Some(account.uid()?);
    fs::set_permissions(dir, fs::Permissions::from_mode(0o711))?;
    for name in ["authorized_keys", REMOTE_HOME] {
        nix::unistd::chown(&dir.join(name), uid, None)
            .with_context(|| format!("cannot give {name} to {}", account.name()))?;
    }
    account.set_home(&dir.join(REMOTE_HOME))
}

/// ` NAME=VALUE` words for sshd's `SetEnv` line.
fn host_env(env: &[(&str, &str)]) -> anyhow::Result<String> {
    let mut words = String::new();
    for (name, value) in env {
        if value.chars().any(|c| c.is_whitespace() || matches!(c, '"' | '\'')) || name.contains('=') {
            bail!("{name}={value} cannot go on sshd_config's SetEnv line unquoted");
        }
        words.push_str(&format!(" {name}={value}"));
    }
    Ok(words)
}

/// Ends `pids` (see [`terminate`]), reporting any that had to be killed: a process that ignores
/// SIGTERM is worth knowing about.
fn stop_all(pids: &[i32]) {
    let lines: Vec<(i32, String)> = pids
        .iter()
        .map(|&pid| (pid, pids::command_line(pid).unwrap_or_default().join(" ")))
        .collect();
    for pid in terminate(pids, STOP_GRACE) {
        let line = lines
            .iter()
            .find(|(p, _)| *p == pid)
            .map_or("", |(_, line)| line.as_str());
        eprintln!("remora-testkit: pid {pid} ({line}) ignored SIGTERM for {STOP_GRACE:?}; killed it");
    }
}

/// Starts sshd on a free port, trying other ports if one is taken in the meantime.
fn launch(program: &Path, mut settings: ServerSettings) -> anyhow::Result<(Child, u16)> {
    let dir = settings.dir;
    let log = dir.join("sshd.log");
    let mut attempt = 1;
    loop {
        settings.port = free_port()?;
        fs::write(dir.join("sshd_config"), files::sshd_config(&settings))?;
        let _ = fs::remove_file(&log);
        let _ = fs::remove_file(dir.join("sshd.pid"));
        let mut child = Command::new(program)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(dir.join("sshd_config"))
            .arg("-E")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let Err(err) = wait_until_listening(&mut child, settings.port, dir) else {
            return Ok((child, settings.port));
        };
        terminate(&[child.id() as i32], STOP_GRACE);
        let _ = child.wait();
        let text = fs::read_to_string(&log).unwrap_or_default();
        if text.contains("Address already in use") && attempt < BIND_ATTEMPTS {
            attempt += 1;
            continue;
        }
        return Err(err.context(format!(
            "sshd did not start on 127.0.0.1:{}; the end of its log:\n{}",
            settings.port,
            tail(&text, LOG_TAIL)
        )));
    }
}

/// Waits until sshd has bound its port (it writes its pid file right after) and greets there.
fn wait_until_listening(child: &mut Child, port: u16, dir: &Path) -> anyhow::Result<()> {
    let pid = child.id().to_string();
    let pid_file = dir.join("sshd.pid");
    wait_for(START_TIMEOUT, "sshd to greet on its port", || {
        if let Some(status) = child.try_wait()? {
            bail!("sshd exited ({status}) before listening");
        }
        // Only after our sshd has bound can a banner on the port be its own.
        let bound = fs::read_to_string(&pid_file).is_ok_and(|text| text.trim() == pid);
        Ok((bound && greets(port)).then_some(()))
    })
}

/// Whether something on `port` sends an SSH-2.0 banner.
pub(crate) fn greets(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, BANNER_TIMEOUT) else {
        return false;
    };
    let mut banner = [0u8; 8];
    stream.set_read_timeout(Some(BANNER_TIMEOUT)).is_ok()
        && stream.read_exact(&mut banner).is_ok()
        && &banner == b"SSH-2.0-"
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot find a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

fn current_user() -> anyhow::Result<String> {
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => Ok(user.name),
        _ => bail!("uid {uid} has no passwd entry, so sshd cannot log it in"),
    }
}

/// sshd started by root needs its privilege-separation directory (Debian's is /run/sshd, which
/// a container or a fresh boot may lack). Other users' sshd does not chroot and needs none.
fn ensure_privsep_dir() -> anyhow::Result<()> {
    let dir = Path::new("/run/sshd");
    if !nix::unistd::geteuid().is_root() || dir.exists() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .with_context(|| format!("cannot create sshd's privilege-separation dir {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// The last `lines` lines of `text`.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
