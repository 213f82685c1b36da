//! Workload 11 (ansible): a 10-task playbook (command, shell, copy, template, fetch, file,
//! stat, lineinfile; no become) on 20 ssh_config aliases of the bench's sshd, through the
//! repository's remora connection plugin and through Ansible's `ssh` plugin with
//! `ControlPersist=60s` and pipelining, on a plain account and on one whose `~/.bashrc` costs
//! about 100 ms (as pyenv, conda or nvm do), alternating within each repetition. Also remora's
//! own CPU per task: every `remora` the plugin runs (timed by a wrapper) and the connection
//! holder. Without ansible-core it says so and compares nothing.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::Context;

use crate::{
    measure::{secs, timed, Row, Stats},
    setup::{Account, Bench},
    Args,
};

/// Hosts in the play: aliases of one sshd.
const HOSTS: usize = 20;
/// Tasks in the playbook.
const TASKS: usize = 10;

pub fn run(args: &Args) -> anyhow::Result<Vec<Row>> {
    let Some(bin) = ansible_bin_dir() else {
        return Ok(vec![Row::new(
            "11 ansible",
            "ansible-playbook not installed: not compared",
            "s",
            Stats::single(0.0),
        )]);
    };
    let mut rows = Vec::new();
    for account in Account::BOTH {
        let target = if account == Account::Plain { 1.0 } else { 0.7 };
        // Its own sshd and daemon per account: nothing left by other workloads is measured.
        let bench = Bench::start()?;
        account.prepare(&bench.sshd)?;
        let play = Play::new(&bench, &bin)?;
        let login = Stats::single(secs(timed(&mut bench.ssh(&[bench.sshd.alias(), "true"]))?.elapsed) * 1e3);
        play.run("ssh")?;
        play.run("remora")?;
        let (mut remora, mut ssh, mut cpu) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..args.reps.clamp(1, 3) {
            let holder_before = holder_cpu_secs(&bench);
            play.clear_cpu_log()?;
            remora.push(play.run("remora")?);
            let own = play.cpu_log_secs()? + holder_cpu_secs(&bench) - holder_before;
            cpu.push(own / (HOSTS * TASKS) as f64 * 1e3);
            ssh.push(play.run("ssh")?);
        }
        let (remora, ssh) = (Stats::of(&remora), Stats::of(&ssh));
        let ratio = remora.median / ssh.median;
        rows.push(
            Row::new(
                "11 ansible",
                &format!("{TASKS} tasks on {HOSTS} hosts, {}", account.label()),
                "s",
                remora,
            )
            .against(ssh)
            .target(&format!("<= {target:.1}x ssh plugin"), ratio <= target),
        );
        rows.push(Row::new(
            "11 ansible",
            "  remora's own CPU per task (client + holder)",
            "ms",
            Stats::of(&cpu),
        ));
        rows.push(Row::new("11 ansible", "  ssh HOST true on this account", "ms", login));
        timed(&mut bench.remora_warm(&["conn", "stop"]))?;
    }
    Ok(rows)
}

/// ansible-core's programs: the pinned venv `scripts/test` makes, else `PATH` (`scripts/bench`
/// puts its own venv there).
fn ansible_bin_dir() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ansible-venv/bin");
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::iter::once(venv)
        .chain(std::env::split_paths(&path))
        .find(|dir| dir.join("ansible-playbook").is_file())
}

/// The playbook, its inventories and the wrapper that times remora, in one bench's directory.
struct Play<'a> {
    bench: &'a Bench,
    bin: PathBuf,
    dir: PathBuf,
}

impl<'a> Play<'a> {
    fn new(bench: &'a Bench, bin: &Path) -> anyhow::Result<Play<'a>> {
        let dir = bench.sshd.dir().join("ansible");
        fs::create_dir_all(dir.join("work"))?;
        let aliases: Vec<String> = (1..=HOSTS).map(|n| format!("node{n}")).collect();
        for alias in &aliases {
            bench.sshd.add_alias(alias, bench.sshd.port())?;
        }
        for connection in ["remora", "ssh"] {
            let plugin = if connection == "remora" {
                "remora.remora.remora"
            } else {
                "ssh"
            };
            fs::write(
                dir.join(format!("{connection}.ini")),
                format!(
                    "[nodes]\n{}\n[nodes:vars]\nansible_connection={plugin}\nansible_python_interpreter=/usr/bin/python3\n",
                    aliases.join("\n")
                ),
            )?;
        }
        let payload: Vec<u8> = (0..1024 * 1024u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect();
        fs::write(dir.join("payload.bin"), payload)?;
        fs::write(dir.join("motd.j2"), "{{ inventory_hostname }} is managed by Ansible\n")?;
        let work = dir.join("work").display().to_string();
        fs::write(dir.join("play.yml"), playbook(&work))?;
        let wrapper = dir.join("remora-timed");
        fs::write(
            &wrapper,
            format!(
                "#!/bin/bash\n# remora, with its CPU time appended to a log for the bench\n\"{}\" \"$@\"\n\
                 status=$?\ntimes | tail -n 1 >> \"{}\"\nexit $status\n",
                bench.sshd.remora().get_program().to_string_lossy(),
                dir.join("cpu.log").display()
            ),
        )?;
        fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        Ok(Play {
            bench,
            bin: bin.to_path_buf(),
            dir,
        })
    }

    /// One run of the playbook through `connection` (`remora` or `ssh`); its wall time.
    fn run(&self, connection: &str) -> anyhow::Result<f64> {
        let sshd = &self.bench.sshd;
        let mut command = sshd.client_program(self.bin.join("ansible-playbook"));
        let path = std::env::var_os("PATH").unwrap_or_default();
        let path = std::env::join_paths(std::iter::once(self.bin.clone()).chain(std::env::split_paths(&path)))?;
        command
            .arg("-i")
            .arg(self.dir.join(format!("{connection}.ini")))
            .arg(self.dir.join("play.yml"))
            .args(["-f", &HOSTS.to_string()])
            .current_dir(&self.dir)
            .env("PATH", path)
            .env(
                "ANSIBLE_COLLECTIONS_PATH",
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../ansible"),
            )
            .env("ANSIBLE_REMORA_EXECUTABLE", self.dir.join("remora-timed"))
            .env("ANSIBLE_REMORA_CONFIG", sshd.ssh_config())
            .env("ANSIBLE_PIPELINING", "True")
            .env("ANSIBLE_HOST_KEY_CHECKING", "True")
            .env("ANSIBLE_LOCAL_TEMP", self.dir.join("tmp"))
            .env(
                "ANSIBLE_SSH_ARGS",
                format!(
                    "-F {} -o BatchMode=yes -c {} -o ControlMaster=auto -o ControlPersist=60s",
                    sshd.ssh_config().display(),
                    self.bench.cipher
                ),
            );
        let run = timed(&mut command).with_context(|| format!("the playbook through the {connection} plugin"))?;
        Ok(secs(run.elapsed))
    }

    fn clear_cpu_log(&self) -> anyhow::Result<()> {
        fs::write(self.dir.join("cpu.log"), "")?;
        Ok(())
    }

    /// CPU seconds of every remora the wrapper ran since [`Play::clear_cpu_log`] (bash's
    /// `times`: children's user and system time, `0m0.012s 0m0.004s`).
    fn cpu_log_secs(&self) -> anyhow::Result<f64> {
        let text = fs::read_to_string(self.dir.join("cpu.log"))?;
        Ok(text.split_whitespace().filter_map(bash_time).sum())
    }
}

/// `0m0.012s` → 0.012.
fn bash_time(text: &str) -> Option<f64> {
    let (minutes, seconds) = text.strip_suffix('s')?.split_once('m')?;
    Some(minutes.parse::<f64>().ok()? * 60.0 + seconds.parse::<f64>().ok()?)
}

/// CPU seconds the connection holder of this bench has used (0 when none runs).
fn holder_cpu_secs(bench: &Bench) -> f64 {
    let ticks = 100.0; // USER_HZ, which Linux fixes at 100 for /proc
    bench
        .sshd
        .processes()
        .into_iter()
        .filter(|&pid| remora_testkit::command_line(pid).is_some_and(|line| line.iter().any(|a| a == "__hold")))
        .filter_map(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            Some((fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?) / ticks)
        })
        .sum()
}

/// The ten tasks, each host in its own directory under `work`.
fn playbook(work: &str) -> String {
    format!(
        r#"- hosts: nodes
  gather_facts: false
  vars:
    dir: "{work}/{{{{ inventory_hostname }}}}"
  tasks:
    - file: {{ path: "{{{{ dir }}}}", state: directory, mode: "0755" }}
    - command: cp /etc/hostname "{{{{ dir }}}}/hostname"
    - shell: echo "$((6 * 7))" > "{{{{ dir }}}}/answer"
    - copy: {{ src: payload.bin, dest: "{{{{ dir }}}}/payload.bin" }}
    - template: {{ src: motd.j2, dest: "{{{{ dir }}}}/motd" }}
    - stat: {{ path: "{{{{ dir }}}}/payload.bin" }}
      register: payload
    - lineinfile: {{ path: "{{{{ dir }}}}/app.conf", line: "size={{{{ payload.stat.size }}}}", create: true }}
    - fetch: {{ src: "{{{{ dir }}}}/answer", dest: "fetched/{{{{ inventory_hostname }}}}/", flat: true }}
    - command: cat "{{{{ dir }}}}/app.conf"
      changed_when: false
    - file: {{ path: "{{{{ dir }}}}/hostname", state: absent }}
"#
    )
}
