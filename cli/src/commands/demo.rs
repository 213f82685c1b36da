//! `remora demo`: a guided tour against a private agent on loopback, needing no sshd.
//!
//! It starts `remora-agent serve` on 127.0.0.1 with throw-away keys and a throw-away state dir,
//! writes an ssh_config and known_hosts for it, then walks new → invoke --disconnected → ls →
//! receive → invoke → rm → ls through the same library calls the CLI makes, printing each step.
//! Everything it starts is ended by pid before it returns, and its files are deleted.

use std::{
    fs,
    io::{BufRead, BufReader},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use anyhow::{bail, Context};
use nix::{sys::signal::Signal, unistd::Pid};
use remora_wire::{Invoke, NewSession, Receive, RemoveSessions, SessionRef, DEFAULT_WINDOW};
use russh::keys::{ssh_key::LineEnding, Algorithm, PrivateKey};

use remora_client::{ssh::SshOptions, Client};

use crate::{args::DemoArgs, output, output::StdSink};

const HOST: &str = "demo-host";
const SESSION: &str = "build";
const LONG_JOB: &str =
    r#"for i in 1 2 3; do echo "step $i of 3"; sleep 1; done; echo "warning: finished with a complaint" >&2; (exit 3)"#;
const FOLLOW_UP: &str = r#"echo "same shell: i=$i, cwd=$PWD""#;

pub async fn run(args: &DemoArgs) -> anyhow::Result<u8> {
    let agent = agent_binary(args.agent.as_deref())?;
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let keys = write_client_key(dir.path())?;
    let mut server = DemoServer::start(&agent, dir.path(), &keys.authorized_keys)?;
    let config = write_ssh_config(dir.path(), &server, &keys.identity)?;
    let options = SshOptions {
        config_file: Some(config),
        ..SshOptions::default()
    };
    println!(
        "remora demo: a private agent listens on {} (state in {})\n",
        server.addr,
        dir.path().display()
    );
    let result = tour(&options).await;
    server.stop();
    result
}

async fn tour(options: &SshOptions) -> anyhow::Result<u8> {
    step(&format!("remora new {HOST} --name {SESSION}"));
    let mut client = Client::connect(HOST, options).await?;
    let session = client
        .new_session(NewSession {
            name: SESSION.into(),
            ..NewSession::default()
        })
        .await?;
    print!("{}", output::session_table(&as_typed(vec![session])));

    step(&format!(
        "remora invoke {HOST} --name {SESSION} --disconnected -- '{LONG_JOB}'"
    ));
    let started = client.invoke(invoke(LONG_JOB, false), &mut StdSink::default()).await?;
    println!(
        "started command {} and returned at once; nobody is attached now",
        started.invoked.command.id
    );
    client.close().await?;

    step(&format!(
        "remora ls {HOST}    # from a new connection, while the command runs"
    ));
    let mut client = Client::connect(HOST, options).await?;
    print!("{}", output::session_table(&as_typed(client.list(None).await?)));

    step(&format!(
        "remora receive {HOST} --name {SESSION}    # everything so far, then live to the end"
    ));
    let mut sink = StdSink::default();
    let receive = Receive::follow_all(SessionRef::Name(SESSION.into()));
    let (_, end) = client.receive(receive, &mut sink).await?;
    println!("(exit status {})", sink.last_exit.or(end.last_exit_code).unwrap_or(-1));

    step(&format!(
        "remora receive {HOST} --name {SESSION}    # again: nothing is delivered twice"
    ));
    let mut again = StdSink::default();
    let receive = Receive::follow_all(SessionRef::Name(SESSION.into()));
    client.receive(receive, &mut again).await?;
    println!("({} bytes)", again.bytes);

    step(&format!(
        "remora invoke {HOST} --name {SESSION} -- '{FOLLOW_UP}'    # the runspace kept its state"
    ));
    client.invoke(invoke(FOLLOW_UP, true), &mut StdSink::default()).await?;

    step(&format!("remora rm {HOST} --name 'b*'"));
    let removed = client
        .remove(RemoveSessions {
            names: vec!["b*".into()],
            ..RemoveSessions::default()
        })
        .await?;
    for session in removed {
        println!("removed {} ({})", session.name, session.instance_id);
    }

    step(&format!("remora ls {HOST}"));
    let left = client.list(None).await?;
    println!("{} sessions", left.len());
    client.close().await?;
    println!("\ndemo finished: try the same verbs against your own hosts (see README.md)");
    Ok(0)
}

/// Sessions shown under the host name the user typed, as the CLI shows them.
fn as_typed(sessions: Vec<remora_wire::SessionInfo>) -> Vec<remora_wire::SessionInfo> {
    sessions
        .into_iter()
        .map(|s| remora_wire::SessionInfo { host: HOST.into(), ..s })
        .collect()
}

fn step(command: &str) {
    println!("\n$ {command}");
}

fn invoke(command: &str, follow: bool) -> Invoke {
    Invoke {
        session: Some(SessionRef::Name(SESSION.into())),
        command: command.into(),
        create: false,
        follow,
        window: DEFAULT_WINDOW,
        idle_timeout_secs: None,
        configuration: None,
        buffering: None,
        job: Default::default(),
        stdin: remora_wire::InputMode::Null,
    }
}

/// `--agent`, else `remora-agent` next to this executable.
fn agent_binary(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(path) => path.to_path_buf(),
        None => std::env::current_exe()?.with_file_name("remora-agent"),
    };
    if !path.is_file() {
        bail!(
            "cannot find remora-agent at {}; build it with `cargo build --release --workspace` or pass --agent PATH",
            path.display()
        );
    }
    Ok(path)
}

struct ClientKey {
    identity: PathBuf,
    authorized_keys: PathBuf,
}

fn write_client_key(dir: &Path) -> anyhow::Result<ClientKey> {
    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).context("cannot generate a key")?;
    let identity = dir.join("id_ed25519");
    key.write_openssh_file(&identity, LineEnding::LF)
        .context("cannot write the demo key")?;
    fs::set_permissions(&identity, fs::Permissions::from_mode(0o600))?;
    let authorized_keys = dir.join("authorized_keys");
    fs::write(&authorized_keys, key.public_key().to_openssh()? + "\n")?;
    Ok(ClientKey {
        identity,
        authorized_keys,
    })
}

fn write_ssh_config(dir: &Path, server: &DemoServer, identity: &Path) -> anyhow::Result<PathBuf> {
    let host_key = PrivateKey::read_openssh_file(server.host_key_path()).context("cannot read the agent's host key")?;
    let known_hosts = dir.join("known_hosts");
    let line = format!(
        "[127.0.0.1]:{} {}\n",
        server.addr.port(),
        host_key.public_key().to_openssh()?
    );
    fs::write(&known_hosts, line)?;
    let user = remora_client::ssh::local_user();
    let config = format!(
        "Host {HOST}\n  HostName 127.0.0.1\n  Port {}\n  User {user}\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n",
        server.addr.port(),
        identity.display(),
        known_hosts.display()
    );
    let path = dir.join("ssh_config");
    fs::write(&path, config)?;
    Ok(path)
}

/// `remora-agent serve` and the daemon it starts, ended by pid on drop.
struct DemoServer {
    child: Child,
    /// Kept open so the server's later status lines never meet a closed pipe.
    _stdout: BufReader<std::process::ChildStdout>,
    addr: std::net::SocketAddr,
    state_dir: PathBuf,
}

impl DemoServer {
    fn start(agent: &Path, dir: &Path, authorized_keys: &Path) -> anyhow::Result<Self> {
        let state_dir = dir.join("state");
        let mut child = Command::new(agent)
            .args(["serve", "--listen", "127.0.0.1:0", "--authorized-keys"])
            .arg(authorized_keys)
            .arg("--state-dir")
            .arg(&state_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", agent.display()))?;
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut first = String::new();
        stdout.read_line(&mut first)?;
        let addr = first.trim().strip_prefix("listening on ").and_then(|a| a.parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            bail!("remora-agent serve did not report its address (said {first:?})");
        };
        Ok(Self {
            child,
            _stdout: stdout,
            addr,
            state_dir,
        })
    }

    fn host_key_path(&self) -> PathBuf {
        self.state_dir.join("config").join("ssh_host_ed25519_key")
    }

    fn stop(&mut self) {
        let _ = nix::sys::signal::kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let _ = self.child.wait();
        let pid_file = self.state_dir.join("run").join("daemon.pid");
        if let Some(pid) = fs::read_to_string(pid_file).ok().and_then(|p| p.trim().parse().ok()) {
            stop_process(Pid::from_raw(pid));
        }
    }
}

impl Drop for DemoServer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}

/// SIGTERM, then wait (bounded) for the process to go, then SIGKILL.
fn stop_process(pid: Pid) {
    let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
    for _ in 0..100 {
        if nix::sys::signal::kill(pid, None).is_err() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
}
