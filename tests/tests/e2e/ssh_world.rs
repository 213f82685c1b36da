//! remora in the SSH setups admins already have: ~/.ssh/config with Include and aliases,
//! ssh-agent, IdentityAgent, passphrase-protected keys, bastions (ProxyJump, -J, several hops),
//! ProxyCommand, and hosts whose sshd has no `remora` subsystem line (exec fallback and
//! `remora install`).

use std::{
    fs,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use crate::support::{binaries, run, Sshd, TIMEOUT};

/// What one client run did.
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn ok(self) -> String {
        assert_eq!(self.code, 0, "stdout: {}\nstderr: {}", self.stdout, self.stderr);
        self.stdout
    }

    fn failed_to_connect(self) -> String {
        assert_eq!(self.code, 255, "stdout: {}\nstderr: {}", self.stdout, self.stderr);
        self.stderr
    }
}

fn outcome(command: &mut Command) -> Outcome {
    let output = run(command, TIMEOUT).unwrap();
    Outcome {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Writes `text` as an ssh_config in `sshd`'s dir and returns its path.
fn config_file(sshd: &Sshd, name: &str, text: &str) -> PathBuf {
    let path = sshd.dir().join(name);
    fs::write(&path, text).unwrap();
    path
}

/// Starts a disconnected command through `remora` (built by `client`), then receives it, as a
/// session that survives its client would be used.
fn round_trip(client: impl Fn() -> Command, host: &str) {
    outcome(client().args([
        "invoke",
        host,
        "--name",
        "s",
        "--disconnected",
        "--",
        "echo one; echo two",
    ]))
    .ok();
    let received = outcome(client().args(["receive", host, "--name", "s"])).ok();
    assert_eq!(received, "one\ntwo\n");
}

#[test]
fn a_host_without_the_subsystem_line_gets_the_agent_by_install_and_exec() {
    let sshd = Sshd::start_without_subsystem().unwrap();
    let stderr = outcome(sshd.remora().args(["ls", "testhost"])).failed_to_connect();
    assert!(stderr.contains("run `remora install testhost`"), "{stderr}");

    let agent = sshd.remote_home().join(".local/bin/remora-agent");
    let printed = outcome(sshd.remora().args(["install", "testhost"])).ok();
    let line = format!("Subsystem remora {} subsystem", agent.display());
    assert!(printed.contains(&line), "{printed}");
    // The portable agent when scripts/dist built it, else the one built beside remora.
    let portable = &binaries().portable_agent;
    let source = if portable.is_file() {
        portable
    } else {
        &binaries().agent
    };
    assert!(
        printed.contains(&format!("copied from {}", source.display())),
        "{printed}"
    );
    assert_eq!(fs::read(&agent).unwrap(), fs::read(source).unwrap(), "copied whole");
    assert_eq!(fs::metadata(&agent).unwrap().permissions().mode() & 0o777, 0o755);

    round_trip(|| sshd.remora(), "testhost");

    // Installing again replaces the binary under the running daemon: it hands over.
    let gate = sshd.dir().join("gate");
    let waiting = format!(
        "echo before; while [ ! -e {} ]; do sleep 0.05; done; echo after",
        gate.display()
    );
    outcome(
        sshd.remora()
            .args(["invoke", "testhost", "--name", "up", "--disconnected", "--", &waiting]),
    )
    .ok();
    let daemon = remote_daemon_pid(&sshd);
    let again = outcome(sshd.remora().args(["install", "testhost", "--json"])).ok();
    let report: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(report["path"], agent.display().to_string());
    assert!(report["daemon"].as_str().unwrap().contains("handed over"), "{report}");
    assert_eq!(remote_daemon_pid(&sshd), daemon, "the same daemon process");
    let exe = fs::read_link(format!("/proc/{daemon}/exe")).unwrap();
    assert_eq!(exe, agent, "it runs the installed binary, not the replaced one");
    fs::write(&gate, "").unwrap();
    let received = outcome(sshd.remora().args(["receive", "testhost", "--name", "up"])).ok();
    assert_eq!(received, "before\nafter\n", "the running command carried on");
}

/// The pid of the daemon the exec-started agent runs under the remote home's default paths.
fn remote_daemon_pid(sshd: &Sshd) -> i32 {
    let pids: Vec<i32> = sshd
        .processes()
        .into_iter()
        .filter(|pid| remora_testkit::command_line(*pid).is_some_and(|args| args.get(1).is_some_and(|a| a == "daemon")))
        .collect();
    assert_eq!(pids.len(), 1, "one daemon: {pids:?}");
    pids[0]
}

#[test]
fn install_refuses_a_binary_that_cannot_run_on_the_host() {
    let sshd = Sshd::start_without_subsystem().unwrap();
    let script = sshd.dir().join("not-an-agent");
    fs::write(&script, "#!/bin/sh\n").unwrap();
    let refused = outcome(sshd.remora().args(["install", "testhost", "--agent"]).arg(&script));
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("is not a Linux (ELF) executable"),
        "{}",
        refused.stderr
    );
    assert!(!sshd.remote_home().join(".local/bin/remora-agent").exists());
}

/// A target sshd and a bastion sshd, with one config naming both: `inner` is the target
/// through `bastion`, `direct` the target without a jump.
struct Bastion {
    target: Sshd,
    bastion: Sshd,
    config: PathBuf,
}

impl Bastion {
    fn start(bastion_extra: &str) -> Bastion {
        let target = Sshd::start().unwrap();
        let bastion = Sshd::start_with(bastion_extra).unwrap();
        let text = format!(
            "{}  ProxyJump bastion\n{}{}",
            target.host_block("inner"),
            target.host_block("direct"),
            bastion.host_block("bastion")
        );
        let config = config_file(&target, "bastion_config", &text);
        Bastion {
            target,
            bastion,
            config,
        }
    }

    fn remora(&self) -> Command {
        self.target.remora_with_config(&self.config)
    }

    /// How many TCP channels the bastion's sshd opened to the target.
    fn forwards(&self) -> usize {
        let to_target = format!(
            "server_request_direct_tcpip: originator 127.0.0.1 port 0, target 127.0.0.1 port {}",
            self.target.port()
        );
        self.bastion
            .log()
            .lines()
            .filter(|line| line.ends_with(&to_target))
            .count()
    }
}

#[test]
fn sessions_live_behind_a_bastion_reached_by_proxyjump_and_dash_j() {
    let hops = Bastion::start("LogLevel DEBUG1");
    round_trip(|| hops.remora(), "inner");
    assert!(hops.forwards() >= 2, "through the bastion:\n{}", hops.bastion.log());

    let before = hops.forwards();
    let listed = outcome(hops.remora().args(["-J", "bastion,bastion", "ls", "direct", "--json"])).ok();
    assert!(listed.contains("\"s\""), "{listed}");
    let hop_to_hop = format!("target 127.0.0.1 port {}", hops.bastion.port());
    assert!(hops.bastion.log().contains(&hop_to_hop), "two hops");
    assert_eq!(hops.forwards(), before + 1);
}

#[test]
fn a_bastion_that_refuses_to_forward_is_named_in_the_error() {
    let hops = Bastion::start("AllowTcpForwarding no");
    let stderr = outcome(hops.remora().args(["ls", "inner"])).failed_to_connect();
    assert!(
        stderr.contains("jump host bastion could not connect to 127.0.0.1"),
        "{stderr}"
    );
    let config = config_file(
        &hops.target,
        "bad_hop",
        "Host unknown-hop\n  ProxyJump nobody@127.0.0.1:1\n",
    );
    let stderr = outcome(hops.target.remora_with_config(&config).args(["ls", "unknown-hop"])).failed_to_connect();
    assert!(
        stderr.contains("jump host nobody@127.0.0.1:1: cannot connect"),
        "{stderr}"
    );
}

#[test]
fn a_proxy_command_carries_the_connection() {
    let sshd = Sshd::start().unwrap();
    let via_ssh = format!(
        "{}  ProxyCommand ssh -F {} -o BatchMode=yes -W %h:%p testhost\n",
        sshd.host_block("viacmd"),
        sshd.ssh_config().display()
    );
    let config = config_file(&sshd, "proxy_config", &(via_ssh + &sshd.host_block("testhost")));
    round_trip(|| sshd.remora_with_config(&config), "viacmd");

    let broken = format!("{}  ProxyCommand sh -c \"exit 3\"\n", sshd.host_block("broken"));
    let config = config_file(&sshd, "broken_config", &broken);
    let stderr = outcome(sshd.remora_with_config(&config).args(["ls", "broken"])).failed_to_connect();
    assert!(stderr.contains("ProxyCommand `sh -c \"exit 3\"` ended"), "{stderr}");
}

/// A real `ssh-agent` on a socket in the test dir, ended by pid when dropped.
struct SshAgent {
    child: Child,
    socket: PathBuf,
}

impl SshAgent {
    fn start(dir: &Path) -> SshAgent {
        let socket = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        remora_testkit::wait_until(std::time::Duration::from_secs(10), "ssh-agent's socket", || {
            socket.exists()
        })
        .unwrap();
        SshAgent { child, socket }
    }

    fn add(&self, key: &Path) {
        let added = run(
            Command::new("ssh-add").arg(key).env("SSH_AUTH_SOCK", &self.socket),
            TIMEOUT,
        )
        .unwrap();
        assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    }
}

impl Drop for SshAgent {
    fn drop(&mut self) {
        remora_testkit::terminate(&[self.child.id() as i32], std::time::Duration::from_secs(5));
        let _ = self.child.wait();
    }
}

/// A `Host` block for `sshd` without IdentityFile: authentication must come from elsewhere.
fn keyless_block(sshd: &Sshd, alias: &str, extra: &str) -> String {
    format!(
        "Host {alias}\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  UserKnownHostsFile {}\n{extra}",
        sshd.port(),
        sshd.user(),
        sshd.known_hosts().display()
    )
}

#[test]
fn ssh_agent_keys_authenticate_from_the_environment_or_identityagent() {
    let sshd = Sshd::start().unwrap();
    let agent = SshAgent::start(sshd.dir());
    agent.add(&sshd.user_key());
    let text = keyless_block(&sshd, "env", "")
        + &keyless_block(&sshd, "named", &format!("  IdentityAgent {}\n", agent.socket.display()))
        + &keyless_block(&sshd, "off", "  IdentityAgent none\n");
    let config = config_file(&sshd, "agent_config", &text);
    let with_agent_env = || {
        let mut command = sshd.remora_with_config(&config);
        command.env("SSH_AUTH_SOCK", &agent.socket);
        command
    };
    round_trip(with_agent_env, "env");
    outcome(sshd.remora_with_config(&config).args(["ls", "named"])).ok();
    let stderr = outcome(with_agent_env().args(["ls", "off"])).failed_to_connect();
    assert!(stderr.contains("permission denied"), "{stderr}");
}

#[test]
fn a_passphrase_protected_key_without_a_terminal_fails_cleanly() {
    let sshd = Sshd::start().unwrap();
    let key = sshd.dir().join("locked_key");
    keygen(&key, "secret words");
    let mut authorized = fs::read_to_string(sshd.dir().join("authorized_keys")).unwrap();
    authorized.push_str(&fs::read_to_string(key.with_extension("pub")).unwrap());
    fs::write(sshd.dir().join("authorized_keys"), authorized).unwrap();
    let text = keyless_block(&sshd, "locked", &format!("  IdentityFile {}\n", key.display()));
    let config = config_file(&sshd, "locked_config", &text);
    let mut command = sshd.remora_with_config(&config);
    // No controlling terminal, as under cron or CI.
    // SAFETY: setsid is async-signal-safe, the only call between fork and exec.
    unsafe {
        command.pre_exec(|| nix::unistd::setsid().map(drop).map_err(std::io::Error::from));
    }
    let stderr = outcome(command.args(["ls", "locked"])).failed_to_connect();
    assert!(stderr.contains("no terminal to ask for its passphrase"), "{stderr}");
    assert!(stderr.contains("ssh-add"), "says what to do: {stderr}");
    let mut batch = sshd.remora_with_config(&config);
    let stderr = outcome(batch.args(["-o", "BatchMode=yes", "ls", "locked"])).failed_to_connect();
    assert!(
        stderr.contains("BatchMode forbids asking for its passphrase"),
        "{stderr}"
    );
}

#[test]
fn the_users_own_ssh_config_with_include_aliases_and_identity_files_is_honoured() {
    let sshd = Sshd::start().unwrap();
    let ssh_dir = sshd.home().join(".ssh");
    fs::create_dir_all(ssh_dir.join("conf.d")).unwrap();
    fs::copy(sshd.user_key(), ssh_dir.join("lab_key")).unwrap();
    fs::copy(sshd.known_hosts(), ssh_dir.join("known_hosts")).unwrap();
    fs::write(
        ssh_dir.join("config"),
        "Include conf.d/*.conf\n\nMatch user nobody\n  Port 1\n",
    )
    .unwrap();
    let lab = format!(
        "Host lab-* !lab-off\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile ~/.ssh/lab_key\n",
        sshd.port(),
        sshd.user()
    );
    fs::write(ssh_dir.join("conf.d/lab.conf"), lab).unwrap();

    round_trip(|| sshd.remora_as_user(), "lab-1");
    let shown = outcome(sshd.remora_as_user().args(["config", "lab-1"]));
    let settings = shown.stdout.clone();
    assert!(settings.contains(&format!("port {}\n", sshd.port())), "{settings}");
    let key = ssh_dir.join("lab_key");
    assert!(
        settings.contains(&format!("identityfile {}\n", key.display())),
        "{settings}"
    );
    assert!(
        shown.stderr.contains("config:3: `Match` blocks are not supported"),
        "Match is warned about: {}",
        shown.stderr
    );
    let off = outcome(sshd.remora_as_user().args(["config", "lab-off", "--json"])).ok();
    let off: serde_json::Value = serde_json::from_str(&off).unwrap();
    assert_eq!(off["port"], "22", "the negated alias gets nothing from the lab block");
}

fn keygen(path: &Path, passphrase: &str) {
    remora_testkit::generate_key(path, passphrase).unwrap();
}

#[test]
fn a_user_certificate_next_to_the_key_logs_in_where_the_plain_key_is_unknown() {
    let ca_dir = tempfile::tempdir().unwrap();
    let ca = ca_dir.path().join("user_ca");
    keygen(&ca, "");
    let sshd = Sshd::start_with(&format!("TrustedUserCAKeys {}.pub", ca.display())).unwrap();
    let key = sshd.dir().join("certified_key");
    keygen(&key, "");
    let config = config_file(
        &sshd,
        "cert_config",
        &keyless_block(&sshd, "certified", &format!("  IdentityFile {}\n", key.display())),
    );
    let stderr = outcome(sshd.remora_with_config(&config).args(["ls", "certified"])).failed_to_connect();
    assert!(stderr.contains("permission denied"), "not in authorized_keys: {stderr}");

    let signed = run(
        Command::new("ssh-keygen")
            .args(["-q", "-s"])
            .arg(&ca)
            .args(["-I", "remora-test", "-n", sshd.user(), "-V", "-5m:+1h"])
            .arg(key.with_extension("pub")),
        TIMEOUT,
    )
    .unwrap();
    assert!(signed.status.success(), "{}", String::from_utf8_lossy(&signed.stderr));
    outcome(sshd.remora_with_config(&config).args(["ls", "certified"])).ok();
}

/// Host and user names from the command line, `-H` files and inventories reach ProxyCommand's
/// `%h` and `%r`, which a shell runs: a name holding shell code is refused before anything runs,
/// naming where it came from, while ordinary names still travel through the same ProxyCommand.
#[test]
fn shell_code_in_a_host_or_user_name_never_reaches_a_proxy_command() {
    let sshd = Sshd::start().unwrap();
    let proxy = format!(
        "  ProxyCommand sh -c ': %r %n; exec ssh -F {} -o BatchMode=yes -W %h:%p testhost'\n",
        sshd.ssh_config().display()
    );
    let via = format!("{}{proxy}", sshd.host_block("via"));
    let catch_all = format!("Host *\n  Port {}\n{proxy}", sshd.port());
    let config = config_file(
        &sshd,
        "tokens_config",
        &(via + &sshd.host_block("testhost") + &catch_all),
    );
    round_trip(|| sshd.remora_with_config(&config), "via");

    let marker = |name: &str| sshd.dir().join(format!("ran-{name}"));
    let code = |name: &str| format!("$(id>{})", marker(name).display());
    let hosts_file = config_file(&sshd, "hosts", &format!("via\nh{}\n", code("hosts-file")));
    let inventory = config_file(
        &sshd,
        "inventory.ini",
        &format!("[web]\nvia\nweb2 ansible_host='h{}'\n", code("inventory")),
    );
    let user_inventory = config_file(
        &sshd,
        "users.ini",
        &format!("[web]\nweb3 ansible_user='u{}'\n", code("inventory-user")),
    );
    let cases: [(&str, Vec<String>, String); 6] = [
        (
            "argument",
            vec!["ls".into(), format!("h{}", code("argument"))],
            "holds '$'".into(),
        ),
        (
            "user",
            vec!["ls".into(), format!("u{}@via", code("user"))],
            "the user name holds".into(),
        ),
        (
            "login",
            vec!["-l".into(), format!("u{}", code("login")), "ls".into(), "via".into()],
            "-l".into(),
        ),
        (
            "hosts-file",
            vec!["ls".into(), "-H".into(), hosts_file.display().to_string()],
            format!("{}:2", hosts_file.display()),
        ),
        (
            "inventory",
            vec!["ls".into(), "--inventory".into(), inventory.display().to_string()],
            format!("{}:3", inventory.display()),
        ),
        (
            "inventory-user",
            vec!["ls".into(), "--inventory".into(), user_inventory.display().to_string()],
            format!("{}:2", user_inventory.display()),
        ),
    ];
    for (name, args, names_source) in cases {
        let run = outcome(sshd.remora_with_config(&config).args(&args));
        assert_ne!(run.code, 0, "{name}: {}", run.stdout);
        assert!(run.stderr.contains(&names_source), "{name}: {}", run.stderr);
        assert!(!marker(name).exists(), "{name}: the name's shell code ran");
    }
}

/// A host that answers `install`'s own commands with endless output is cut off after a bound,
/// with an error naming the host and the command, instead of filling the client's memory.
#[test]
fn install_stops_reading_a_host_that_prints_without_end() {
    let sshd = Sshd::start_with("ForceCommand cat /dev/zero\n").unwrap();
    let run = outcome(sshd.remora().args(["install", "testhost"]));
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stderr
            .contains("testhost printed more than 65536 bytes in reply to `sh -c 'uname -sm;"),
        "{}",
        run.stderr
    );
}

/// A host that answers install's probe and then refuses the copy without reading it (a login
/// shell that cannot parse the script did this) fails install at once with its words, instead
/// of leaving the send waiting for window space that never comes.
#[test]
fn install_fails_at_once_when_the_host_stops_reading_the_agent() {
    let answer = r#"ForceCommand sh -c 'case "$SSH_ORIGINAL_COMMAND" in *uname*) echo Linux x86_64; echo glibc 2.36;; *) echo no copies here >&2; exit 3;; esac'"#;
    let sshd = Sshd::start_with(answer).unwrap();
    let started = std::time::Instant::now();
    let run = outcome(sshd.remora().args(["install", "testhost"]));
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stderr.contains("the install script failed: no copies here"),
        "{}",
        run.stderr
    );
    assert!(started.elapsed() < TIMEOUT / 2, "took {:?}", started.elapsed());
}
