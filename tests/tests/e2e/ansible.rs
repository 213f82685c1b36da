//! Ansible over remora: real `ansible-playbook` runs (ansible-core from the venv `scripts/test`
//! installs under `target/`) with the collection in `ansible/` as their connection plugin,
//! against the test sshd. The assertions are on the host's files, not only Ansible's status.
//!
//! Without ansible-core these tests say so loudly and pass, except in CI (`CI=true`), where a
//! missing ansible is a failure.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use remora_testkit::{command_line, descendants};

use crate::support::{binaries, process_alive, remora, run, wait_until, wait_until_within, FaultyLink, Sshd};

/// Upper bound for one playbook run (the longest task below takes 15 s).
const PLAY_TIMEOUT: Duration = Duration::from_secs(180);
/// The connection plugin's fully qualified name.
const PLUGIN: &str = "remora.remora.remora";

/// Where ansible-core's programs are: the venv `scripts/test` makes, else `PATH`. `None` (after a
/// loud message) when there is none outside CI; in CI a missing ansible fails the test.
fn ansible_bin_dir() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ansible-venv/bin");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::iter::once(venv)
        .chain(std::env::split_paths(&path))
        .find(|dir| dir.join("ansible-playbook").is_file());
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "ansible-playbook not found in target/ansible-venv or on PATH: scripts/test installs ansible-core there"
        );
        eprintln!(
            "\n*** SKIPPED: ansible-playbook not found in target/ansible-venv/bin or on PATH; run scripts/test \
             (it installs ansible-core) to run the Ansible tests ***\n"
        );
    }
    found
}

/// The collection tree, used in place through ANSIBLE_COLLECTIONS_PATH.
fn collections_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ansible")
}

/// One test's Ansible: programs, a work directory on the "host" and the controller's files.
/// Dropping it waits for the plugin's reapers (see [`reapers_done`]) before the sshd goes.
struct Ansible<'a> {
    sshd: &'a Sshd,
    bin: PathBuf,
    /// Where the plays write on the host (the test sshd runs on this machine).
    work: PathBuf,
    /// The controller's side: inventory, playbooks, fetched files.
    controller: PathBuf,
}

impl<'a> Ansible<'a> {
    fn new(sshd: &'a Sshd) -> Option<Ansible<'a>> {
        let bin = ansible_bin_dir()?;
        let work = sshd.dir().join("work");
        let controller = sshd.dir().join("controller");
        fs::create_dir_all(&work).unwrap();
        fs::create_dir_all(&controller).unwrap();
        Some(Ansible {
            sshd,
            bin,
            work,
            controller,
        })
    }

    /// Writes an inventory of one host `alias` reached with `connection` and returns its path.
    fn inventory(&self, name: &str, alias: &str, connection: &str, extra: &str) -> PathBuf {
        let path = self.controller.join(name);
        let text = format!(
            "[targets]\n{alias} ansible_connection={connection} ansible_python_interpreter=/usr/bin/python3 {extra}\n"
        );
        fs::write(&path, text).unwrap();
        path
    }

    /// Writes a playbook for host group `targets` with these tasks (YAML, indented 4).
    fn playbook(&self, name: &str, tasks: &str) -> PathBuf {
        let path = self.controller.join(name);
        fs::write(
            &path,
            format!("- hosts: targets\n  gather_facts: false\n  tasks:\n{tasks}"),
        )
        .unwrap();
        path
    }

    /// `ansible-playbook -i INVENTORY PLAYBOOK` set up for this sshd: the plugin from the
    /// repository, the built remora, the harness's ssh_config (`ssh_config` for both plugins).
    fn command(&self, sshd: &Sshd, inventory: &Path, playbook: &Path, ssh_config: &Path) -> Command {
        let mut command = sshd.client_program(self.bin.join("ansible-playbook"));
        let path = std::env::var_os("PATH").unwrap_or_default();
        let path = std::env::join_paths(std::iter::once(self.bin.clone()).chain(std::env::split_paths(&path))).unwrap();
        let control = sshd.dir().join("cm-%C");
        command
            .arg("-i")
            .arg(inventory)
            .arg(playbook)
            .current_dir(&self.controller)
            .env("PATH", path)
            .env("ANSIBLE_COLLECTIONS_PATH", collections_path())
            .env("ANSIBLE_REMORA_EXECUTABLE", &binaries().remora)
            .env("ANSIBLE_REMORA_CONFIG", ssh_config)
            .env("ANSIBLE_PIPELINING", "True")
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_LOCAL_TEMP", self.controller.join("tmp"))
            .env("ANSIBLE_HOST_KEY_CHECKING", "True")
            .env(
                "ANSIBLE_SSH_ARGS",
                format!(
                    "-F {} -o BatchMode=yes -o ControlMaster=auto -o ControlPersist=60s -o ControlPath={}",
                    ssh_config.display(),
                    control.display()
                ),
            );
        command
    }

    fn work(&self, name: &str) -> PathBuf {
        self.work.join(name)
    }
}

/// Waits until the plugin's reapers for this sshd's plays have finished: each removes its run's
/// sessions after the controller exits, so a test that ends sooner would race its teardown.
fn reapers_done(sshd: &Sshd) -> anyhow::Result<()> {
    let reaping = || {
        sshd.processes()
            .into_iter()
            .any(|pid| command_line(pid).unwrap_or_default().iter().any(|arg| arg == "--reap"))
    };
    wait_until_within(PLAY_TIMEOUT, "the plugin's reapers to finish", || !reaping())
}

/// Runs `command` (bounded by [`PLAY_TIMEOUT`]) on a thread; join it for its output.
fn in_background(mut command: Command) -> std::thread::JoinHandle<Output> {
    std::thread::spawn(move || run(&mut command, PLAY_TIMEOUT).expect("ansible-playbook ran"))
}

impl Drop for Ansible<'_> {
    fn drop(&mut self) {
        if let Err(err) = reapers_done(self.sshd) {
            eprintln!("{err:#}");
        }
    }
}

/// What a playbook run printed, for assertions and failure messages.
fn text(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The PLAY RECAP counters of `host` (`ok`, `changed`, `unreachable`, `failed`, `ignored`, …).
fn recap(output: &Output, host: &str) -> std::collections::HashMap<String, u32> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .skip_while(|line| !line.starts_with("PLAY RECAP"))
        .find(|line| line.starts_with(host))
        .unwrap_or_else(|| panic!("no recap line for {host}:\n{}", text(output)));
    line.split_whitespace()
        .filter_map(|field| field.split_once('='))
        .map(|(key, value)| (key.to_string(), value.parse().unwrap()))
        .collect()
}

/// Names of the sessions `remora ls HOST` shows that the plugin made.
fn play_sessions(sshd: &Sshd) -> Vec<String> {
    let stdout = remora(sshd, &["ls", sshd.alias(), "--json"]).ok();
    let sessions: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    sessions
        .iter()
        .filter_map(|s| s["name"].as_str())
        .filter(|name| name.starts_with("ansible-"))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_playbook_of_the_common_modules_runs_through_remora_and_its_session_goes_at_the_end() {
    let sshd = Sshd::start().unwrap();
    let Some(ansible) = Ansible::new(&sshd) else {
        return;
    };
    let big: Vec<u8> = (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(ansible.controller.join("big.bin"), &big).unwrap();
    fs::write(
        ansible.controller.join("motd.j2"),
        "Hello {{ greeting }} from {{ inventory_hostname }}\n",
    )
    .unwrap();
    let w = |name: &str| ansible.work(name).display().to_string();
    let fetched = ansible.controller.join("fetched");
    let tasks = format!(
        r#"    - command: cp /etc/hostname {command}
    - shell: echo "$((6 * 7))" > {shell}
    - copy: {{ src: big.bin, dest: {big}, mode: "0640" }}
    - template: {{ src: motd.j2, dest: {motd} }}
      vars: {{ greeting: remora }}
    - fetch: {{ src: {shell}, dest: {fetched}/, flat: true }}
    - file: {{ path: {dir}, state: directory, mode: "0750" }}
    - stat: {{ path: {big}, checksum_algorithm: sha256 }}
      register: big_stat
    - copy: {{ content: "{{{{ big_stat.stat.size }}}} {{{{ big_stat.stat.checksum }}}}\n", dest: {stat} }}
    - lineinfile: {{ path: {conf}, line: answer=42, create: true }}
    - lineinfile: {{ path: {conf}, line: answer=42 }}
      register: again
    - copy: {{ content: "changed={{{{ again.changed }}}}\n", dest: {again} }}
    - command: "false"
      ignore_errors: true
    - shell: touch {waiting}; timeout 60 sh -c 'until [ -e {go} ]; do sleep 0.1; done'
    - shell: echo after the failure > {after}
"#,
        command = w("command.txt"),
        shell = w("shell.txt"),
        big = w("big.bin"),
        motd = w("motd"),
        fetched = fetched.display(),
        dir = w("dir"),
        stat = w("stat.txt"),
        conf = w("app.conf"),
        again = w("again.txt"),
        waiting = w("waiting"),
        go = w("go"),
        after = w("after.txt"),
    );
    let inventory = ansible.inventory("hosts.ini", sshd.alias(), PLUGIN, "");
    let playbook = ansible.playbook("site.yml", &tasks);
    let play = in_background(ansible.command(&sshd, &inventory, &playbook, &sshd.ssh_config()));

    wait_until_within(PLAY_TIMEOUT, "the play to reach its waiting task", || {
        ansible.work("waiting").exists()
    })
    .unwrap();
    let sessions = play_sessions(&sshd);
    assert_eq!(
        sessions.len(),
        1,
        "one session for the play while it runs: {sessions:?}"
    );
    fs::write(ansible.work("go"), "").unwrap();
    let output = play.join().unwrap();

    let counts = recap(&output, sshd.alias());
    assert_eq!(
        (counts["failed"], counts["unreachable"], counts["ignored"]),
        (0, 0, 1),
        "{}",
        text(&output)
    );
    let hostname = fs::read_to_string("/etc/hostname").unwrap();
    assert_eq!(fs::read_to_string(ansible.work("command.txt")).unwrap(), hostname);
    assert_eq!(fs::read_to_string(ansible.work("shell.txt")).unwrap(), "42\n");
    assert!(
        fs::read(ansible.work("big.bin")).unwrap() == big,
        "the 5 MB copy differs"
    );
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&fs::metadata(ansible.work("big.bin")).unwrap().permissions()) & 0o777,
        0o640
    );
    assert_eq!(
        fs::read_to_string(ansible.work("motd")).unwrap(),
        format!("Hello remora from {}\n", sshd.alias())
    );
    assert_eq!(fs::read_to_string(fetched.join("shell.txt")).unwrap(), "42\n");
    let dir = fs::metadata(ansible.work("dir")).unwrap();
    assert!(dir.is_dir());
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&dir.permissions()) & 0o777,
        0o750
    );
    let sha = data_encoding::HEXLOWER.encode(&<sha2::Sha256 as sha2::Digest>::digest(&big));
    assert_eq!(
        fs::read_to_string(ansible.work("stat.txt")).unwrap(),
        format!("{} {sha}\n", big.len())
    );
    assert_eq!(fs::read_to_string(ansible.work("app.conf")).unwrap(), "answer=42\n");
    assert_eq!(
        fs::read_to_string(ansible.work("again.txt")).unwrap(),
        "changed=False\n",
        "the second lineinfile changed nothing"
    );
    assert_eq!(
        fs::read_to_string(ansible.work("after.txt")).unwrap(),
        "after the failure\n",
        "the play went on after the ignored failure"
    );
    wait_until("the play's session to be removed after the run", || {
        play_sessions(&sshd).is_empty()
    })
    .unwrap();
}

/// A second route to `sshd` through its own faulty link, as ssh_config alias `alias` in its own
/// file, with keepalives that notice a dead link within seconds (like `support::flaky`).
fn faulty_route(sshd: &Sshd, alias: &str) -> (FaultyLink, PathBuf) {
    let link = FaultyLink::start(sshd.addr()).unwrap();
    let config = sshd.dir().join(format!("{alias}_config"));
    let block = sshd.host_block_via(alias, link.addr().port()).unwrap();
    fs::write(
        &config,
        block + "  ServerAliveInterval 1\n  ServerAliveCountMax 3\n  ConnectTimeout 3\n",
    )
    .unwrap();
    (link, config)
}

/// The JSON result a module printed (what `remora receive` collects for a task).
fn module_result(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not a module's JSON result ({e}): {stdout}"))
}

/// Lines in a file on the host, 0 when it does not exist yet.
fn lines_in(path: &Path) -> usize {
    fs::read_to_string(path).map_or(0, |text| text.lines().count())
}

#[test]
fn a_task_running_through_a_cut_link_completes_once_with_remora_and_is_unreachable_with_ssh() {
    let sshd = Sshd::start().unwrap();
    let Some(ansible) = Ansible::new(&sshd) else {
        return;
    };
    let mut plays = Vec::new();
    let mut links = Vec::new();
    for connection in [PLUGIN, "ssh"] {
        let name = if connection == "ssh" { "viassh" } else { "viaremora" };
        let (link, config) = faulty_route(&sshd, name);
        let runs = ansible.work(&format!("{name}.runs"));
        let result = ansible.work(&format!("{name}.result"));
        let tasks = format!(
            "    - shell: echo ran >> {runs}; sleep 15; echo finished after 15s\n      register: long\n    \
             - copy: {{ content: \"{{{{ long.stdout }}}}\\n\", dest: {result} }}\n",
            runs = runs.display(),
            result = result.display()
        );
        let inventory = ansible.inventory(&format!("{name}.ini"), name, connection, "");
        let playbook = ansible.playbook(&format!("{name}.yml"), &tasks);
        plays.push((
            name,
            runs.clone(),
            result,
            in_background(ansible.command(&sshd, &inventory, &playbook, &config)),
        ));
        links.push((link, runs));
    }
    for (_, runs) in &links {
        wait_until_within(PLAY_TIMEOUT, "both long tasks to start", || lines_in(runs) == 1).unwrap();
    }
    // The outage: both links cut, and nothing answers for 3 s.
    for (link, _) in &links {
        link.refuse();
        link.cut();
    }
    std::thread::sleep(Duration::from_secs(3));
    for (link, _) in &links {
        link.restore();
    }
    let mut outputs = Vec::new();
    for (name, runs, result, play) in plays {
        outputs.push((name, runs, result, play.join().unwrap()));
    }
    let (_, runs, result, remora_play) = &outputs[0];
    let counts = recap(remora_play, "viaremora");
    assert_eq!(
        (counts["ok"], counts["failed"], counts["unreachable"]),
        (2, 0, 0),
        "remora: {}",
        text(remora_play)
    );
    assert_eq!(lines_in(runs), 1, "the task ran exactly once");
    assert_eq!(
        fs::read_to_string(result).unwrap(),
        "finished after 15s\n",
        "the task's real result came back"
    );
    let (_, runs, result, ssh_play) = &outputs[1];
    let counts = recap(ssh_play, "viassh");
    assert_eq!(counts["unreachable"], 1, "ssh: {}", text(ssh_play));
    assert!(
        String::from_utf8_lossy(&ssh_play.stdout).contains("UNREACHABLE!"),
        "{}",
        text(ssh_play)
    );
    assert_eq!(lines_in(runs), 1);
    assert!(!result.exists(), "the ssh play stopped at the cut");
}

#[test]
fn a_reconnect_window_that_runs_out_is_unreachable_with_the_command_that_collects_the_output() {
    let sshd = Sshd::start().unwrap();
    let Some(ansible) = Ansible::new(&sshd) else {
        return;
    };
    let (link, config) = faulty_route(&sshd, "flaky");
    let started = ansible.work("started");
    let go = ansible.work("go");
    let tasks = format!(
        "    - shell: touch {started}; timeout 60 sh -c 'until [ -e {go} ]; do sleep 0.1; done'; echo collected later\n",
        started = started.display(),
        go = go.display()
    );
    let inventory = ansible.inventory("flaky.ini", "flaky", PLUGIN, "ansible_remora_reconnect_for=2s");
    let playbook = ansible.playbook("window.yml", &tasks);
    let play = in_background(ansible.command(&sshd, &inventory, &playbook, &config));
    wait_until_within(PLAY_TIMEOUT, "the task to start", || started.exists()).unwrap();
    link.refuse();
    link.cut();
    let output = play.join().unwrap();
    link.restore();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(recap(&output, "flaky")["unreachable"], 1, "{}", text(&output));
    // The command as the plugin spells it: this play's remora, with its -F, ready to paste.
    let spelled = format!(
        "{} -F {} receive flaky --id ",
        binaries().remora.display(),
        config.display()
    );
    let collect = stdout
        .split('`')
        .find(|part| part.starts_with(&spelled))
        .unwrap_or_else(|| panic!("no `{spelled}…` in the message:\n{}", text(&output)))
        .to_string();
    assert!(stdout.contains("the link broke and reconnecting failed"), "{stdout}");
    fs::write(&go, "").unwrap();
    let words: Vec<&str> = collect.split_whitespace().collect();
    let mut receive = sshd.client_program(words[0]);
    let received = run(receive.args(&words[1..]), PLAY_TIMEOUT).unwrap();
    assert!(received.status.success(), "{received:?}");
    let result = module_result(&String::from_utf8_lossy(&received.stdout));
    assert_eq!(
        result["stdout"], "collected later",
        "the module's own result is collected"
    );
}

#[test]
fn a_controller_killed_mid_task_leaves_the_output_receivable() {
    let sshd = Sshd::start().unwrap();
    let Some(ansible) = Ansible::new(&sshd) else {
        return;
    };
    let started = ansible.work("started");
    let go = ansible.work("go");
    let tasks = format!(
        "    - shell: echo early; touch {started}; timeout 60 sh -c 'until [ -e {go} ]; do sleep 0.1; done'; echo the output\n",
        started = started.display(),
        go = go.display()
    );
    let inventory = ansible.inventory("hosts.ini", sshd.alias(), PLUGIN, "");
    let playbook = ansible.playbook("killed.yml", &tasks);
    let mut command = ansible.command(&sshd, &inventory, &playbook, &sshd.ssh_config());
    let mut controller = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until_within(PLAY_TIMEOUT, "the task to start", || started.exists()).unwrap();
    // The controller machine dies: ansible-playbook, its workers and their remora calls. The
    // plugin's reaper (it removes the run's sessions once the controller is gone) stays, to show
    // that it keeps a session whose command still runs.
    let pid = controller.id() as i32;
    let is_reaper = |p: &i32| command_line(*p).unwrap_or_default().iter().any(|arg| arg == "--reap");
    let (reapers, mut doomed): (Vec<i32>, Vec<i32>) = descendants(pid).into_iter().partition(is_reaper);
    assert_eq!(reapers.len(), 1, "the plugin started one reaper for the run");
    doomed.push(pid);
    for &p in &doomed {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
    }
    controller.wait().unwrap();
    wait_until("the controller's processes to be gone", || {
        doomed.iter().all(|&p| !process_alive(p))
    })
    .unwrap();
    wait_until_within(PLAY_TIMEOUT, "the reaper to finish its pass", || {
        !process_alive(reapers[0])
    })
    .unwrap();
    let sessions = play_sessions(&sshd);
    assert_eq!(
        sessions.len(),
        1,
        "the reaper kept the session of a running task: {sessions:?}"
    );
    fs::write(&go, "").unwrap();
    let received = remora(&sshd, &["receive", sshd.alias(), "--name", &sessions[0]]);
    assert_eq!(received.status, 0, "{received:#?}");
    let result = module_result(&received.stdout);
    assert_eq!(
        result["stdout"], "early\nthe output",
        "the module's result, finished after the controller died, is received"
    );
}

/// Runs a one-task play on `alias` through the plugin with `config`; returns its output.
fn one_task_play(sshd: &Sshd, ansible: &Ansible<'_>, alias: &str, config: &Path, env: &[(&str, &str)]) -> Output {
    let inventory = ansible.inventory(&format!("{alias}.ini"), alias, PLUGIN, "");
    let playbook = ansible.playbook(&format!("{alias}.yml"), "    - command: \"true\"\n");
    let mut command = ansible.command(sshd, &inventory, &playbook, config);
    for (key, value) in env {
        command.env(key, value);
    }
    run(&mut command, PLAY_TIMEOUT).unwrap()
}

/// The last line remora itself prints on stderr for `invoke ALIAS -- true` with `config`.
fn remora_says(sshd: &Sshd, config: &Path, alias: &str) -> String {
    let mut command = sshd.remora_with_config(config);
    let output = run(command.args(["invoke", alias, "--", "true"]), PLAY_TIMEOUT).unwrap();
    assert_eq!(output.status.code(), Some(255));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    stderr.lines().last().unwrap_or_default().to_string()
}

#[test]
fn host_key_and_authentication_failures_are_unreachable_with_remoras_message() {
    let sshd = Sshd::start().unwrap();
    let Some(ansible) = Ansible::new(&sshd) else {
        return;
    };
    let stranger = sshd.dir().join("stranger_key");
    remora_testkit::generate_key(&stranger, "").unwrap();
    fs::write(sshd.dir().join("empty_known_hosts"), "").unwrap();
    let base = sshd.host_block("x");
    let cases = [
        (
            "unknownkey",
            base.replace("Host x", "Host unknownkey").replace(
                &sshd.known_hosts().display().to_string(),
                &sshd.dir().join("empty_known_hosts").display().to_string(),
            ),
        ),
        (
            "badauth",
            base.replace("Host x", "Host badauth")
                .replace(&sshd.user_key().display().to_string(), &stranger.display().to_string()),
        ),
    ];
    for (alias, block) in cases {
        let config = sshd.dir().join(format!("{alias}_config"));
        fs::write(&config, block).unwrap();
        let said = remora_says(&sshd, &config, alias);
        assert!(said.starts_with("remora: "), "{said}");
        let output = one_task_play(&sshd, &ansible, alias, &config, &[]);
        assert_eq!(recap(&output, alias)["unreachable"], 1, "{alias}: {}", text(&output));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("UNREACHABLE!"), "{}", text(&output));
        assert!(
            stdout.contains(&said.replace('"', "\\\"")),
            "{alias}: Ansible shows remora's own message {said:?}:\n{}",
            text(&output)
        );
    }
}

#[test]
fn a_missing_remora_or_agent_says_how_to_install_it() {
    let sshd = Sshd::start_without_subsystem().unwrap();
    let Some(ansible) = Ansible::new(&sshd) else {
        return;
    };
    let alias = sshd.alias();
    let output = one_task_play(&sshd, &ansible, alias, &sshd.ssh_config(), &[]);
    assert_eq!(recap(&output, alias)["unreachable"], 1, "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(&format!("remora install {alias}")), "{}", text(&output));

    let missing = sshd.dir().join("no/such/remora");
    let missing = missing.to_str().unwrap();
    let output = one_task_play(
        &sshd,
        &ansible,
        alias,
        &sshd.ssh_config(),
        &[("ANSIBLE_REMORA_EXECUTABLE", missing)],
    );
    let counts = recap(&output, alias);
    assert_eq!(counts["failed"] + counts["unreachable"], 1, "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("cannot run {missing}")) && stdout.contains("remora install"),
        "{}",
        text(&output)
    );
}

/// The second account `become` is tested on: it logs in over SSH and escalates to root with sudo.
const BECOMER: &str = "remora-e2e-become";
/// Its password, which sudo asks for when the rule requires one.
const BECOMER_PASSWORD: &str = "correct horse 24";
/// The sudoers file the test writes and removes.
const SUDOERS: &str = "/etc/sudoers.d/remora-e2e-become";

/// A throw-away account with a login shell and a password, deleted when dropped.
struct Account {
    name: &'static str,
    uid: u32,
}

impl Account {
    fn create(name: &'static str, password: &str) -> Account {
        let _ = run(Command::new("userdel").arg(name), PLAY_TIMEOUT);
        let made = run(
            Command::new("useradd").args(["--system", "--no-create-home", "--shell", "/bin/sh", name]),
            PLAY_TIMEOUT,
        )
        .unwrap();
        assert!(made.status.success(), "useradd: {}", text(&made));
        let mut chpasswd = Command::new("chpasswd");
        chpasswd.stdin(std::process::Stdio::piped());
        let mut child = chpasswd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(
            &mut child.stdin.take().unwrap(),
            format!("{name}:{password}\n").as_bytes(),
        )
        .unwrap();
        let set = remora_testkit::run_child(child, PLAY_TIMEOUT).unwrap();
        assert!(set.status.success(), "chpasswd: {}", text(&set));
        let uid = nix::unistd::User::from_name(name)
            .unwrap()
            .expect("just created")
            .uid
            .as_raw();
        Account { name, uid }
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        let _ = run(Command::new("userdel").arg(self.name), PLAY_TIMEOUT);
    }
}

/// A sudoers rule in [`SUDOERS`], checked by visudo; removed when dropped.
struct SudoRule;

impl SudoRule {
    fn set(rule: &str) -> SudoRule {
        let staged = format!("{SUDOERS}.staged");
        fs::write(&staged, format!("{rule}\n")).unwrap();
        let checked = run(Command::new("visudo").args(["-c", "-q", "-f", &staged]), PLAY_TIMEOUT).unwrap();
        assert!(checked.status.success(), "visudo: {}", text(&checked));
        std::os::unix::fs::chown(&staged, Some(0), Some(0)).unwrap();
        fs::set_permissions(&staged, std::os::unix::fs::PermissionsExt::from_mode(0o440)).unwrap();
        fs::rename(&staged, SUDOERS).unwrap();
        SudoRule
    }
}

impl Drop for SudoRule {
    fn drop(&mut self) {
        let _ = fs::remove_file(SUDOERS);
        let _ = fs::remove_file(format!("{SUDOERS}.staged"));
    }
}

/// Whether sudo is there; in CI it must be (scripts/test installs it).
fn have_sudo() -> bool {
    let found = Path::new("/usr/bin/sudo").exists() && Path::new("/usr/sbin/visudo").exists();
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "sudo is not installed: scripts/test installs it"
        );
        eprintln!("\n*** SKIPPED: become needs sudo; install it (scripts/test does) ***\n");
    }
    found
}

#[test]
fn become_works_with_sudo_nopasswd_and_with_a_password_on_a_second_account() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("\n*** SKIPPED: the become test creates an account and a sudoers rule, which needs root (CI runs as root) ***\n");
        return;
    }
    if !have_sudo() {
        return;
    }
    let account = Account::create(BECOMER, BECOMER_PASSWORD);
    let sshd = Sshd::start().unwrap();
    let Some(ansible) = Ansible::new(&sshd) else {
        return;
    };
    // The host's side of the test directory becomes the account's: its HOME (sshd sets it), the
    // agent's state dir (created under the test dir on first use), authorized_keys and the work dir.
    for path in [
        sshd.dir().to_path_buf(),
        sshd.remote_home(),
        sshd.dir().join("authorized_keys"),
        ansible.work.clone(),
    ] {
        std::os::unix::fs::chown(&path, Some(account.uid), None).unwrap();
    }
    let config = sshd.dir().join("become_config");
    let block = sshd
        .host_block("asbecomer")
        .replace(&format!("User {}\n", sshd.user()), &format!("User {BECOMER}\n"));
    fs::write(&config, block).unwrap();
    let password_file = ansible.controller.join("become_password");
    fs::write(&password_file, format!("{BECOMER_PASSWORD}\n")).unwrap();
    let tasks = |tag: &str| {
        format!(
            "    - shell: id -un > {me}\n    - shell: id -un > {root}\n      become: true\n    \
             - copy: {{ content: \"by root\\n\", dest: {copied}, mode: \"0600\" }}\n      become: true\n",
            me = ansible.work(&format!("{tag}.me")).display(),
            root = ansible.work(&format!("{tag}.root")).display(),
            copied = ansible.work(&format!("{tag}.copied")).display(),
        )
    };
    let inventory = ansible.inventory("become.ini", "asbecomer", PLUGIN, "");
    let play = |tag: &str, password: bool| {
        let playbook = ansible.playbook(&format!("{tag}.yml"), &tasks(tag));
        let mut command = ansible.command(&sshd, &inventory, &playbook, &config);
        if password {
            command.arg("--become-password-file").arg(&password_file);
        }
        run(&mut command, PLAY_TIMEOUT).unwrap()
    };
    let escalated = |tag: &str| {
        let read = |suffix: &str| fs::read_to_string(ansible.work(&format!("{tag}.{suffix}"))).unwrap_or_default();
        let copied = fs::metadata(ansible.work(&format!("{tag}.copied")));
        (
            read("me"),
            read("root"),
            read("copied"),
            copied.map(|m| std::os::unix::fs::MetadataExt::uid(&m)).ok(),
        )
    };
    let done = |me: &str| {
        (
            format!("{me}\n"),
            "root\n".to_string(),
            "by root\n".to_string(),
            Some(0),
        )
    };

    let rule = SudoRule::set(&format!("{BECOMER} ALL=(root) NOPASSWD: ALL"));
    let output = play("nopasswd", false);
    assert_eq!(recap(&output, "asbecomer")["failed"], 0, "{}", text(&output));
    assert_eq!(escalated("nopasswd"), done(BECOMER), "{}", text(&output));
    drop(rule);

    let _rule = SudoRule::set(&format!("{BECOMER} ALL=(root) ALL"));
    let output = play("nopassword", false);
    assert_eq!(
        recap(&output, "asbecomer")["failed"],
        1,
        "sudo wants a password now: {}",
        text(&output)
    );
    assert_eq!(
        escalated("nopassword").1,
        "",
        "nothing ran as root without the password"
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("sudo: a password is required"),
        "sudo refused for want of a password: {}",
        text(&output)
    );
    let output = play("password", true);
    assert_eq!(recap(&output, "asbecomer")["failed"], 0, "{}", text(&output));
    assert_eq!(escalated("password"), done(BECOMER), "{}", text(&output));
}
