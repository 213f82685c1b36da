//! Fleets: a bounded number of hosts at once, host lists from files and Ansible inventories,
//! per-host output files and grouped output.

use std::path::PathBuf;

use crate::support::{remora, Sshd};

/// `count` ssh_config aliases of this sshd, written one per line to a `-H` file.
fn aliases(sshd: &Sshd, count: usize) -> (Vec<String>, PathBuf) {
    let names: Vec<String> = (1..=count).map(|n| format!("node{n}")).collect();
    for name in &names {
        sshd.add_alias(name, sshd.port()).unwrap();
    }
    let file = sshd.dir().join("fleet.txt");
    std::fs::write(&file, format!("# the fleet\n{}\n", names.join("\n"))).unwrap();
    (names, file)
}

#[test]
fn the_throttle_bounds_how_many_hosts_are_contacted_at_once() {
    let sshd = Sshd::start().unwrap();
    let (names, file) = aliases(&sshd, 6);
    let running = sshd.dir().join("running");
    std::fs::create_dir(&running).unwrap();
    // Each host's command notes how many hosts' commands run beside it.
    let command = format!("touch {0}/$$; ls {0} | wc -l; sleep 0.3; rm {0}/$$", running.display());
    let file_arg = file.display().to_string();
    let run = remora(
        &sshd,
        &[
            "--no-reuse",
            "--throttle",
            "2",
            "-H",
            &file_arg,
            "invoke",
            "-n",
            "--",
            &command,
        ],
    );
    assert_eq!(run.status, 0, "{run:?}");
    let counts: Vec<usize> = run
        .stdout
        .lines()
        .map(|line| line.rsplit(' ').next().unwrap().trim().parse().unwrap())
        .collect();
    assert_eq!(counts.len(), names.len(), "{run:?}");
    assert!(counts.iter().all(|n| *n <= 2), "at most 2 at once: {counts:?}");
}

#[test]
fn host_files_and_inventories_are_read_and_bad_lines_named() {
    let sshd = Sshd::start().unwrap();
    let (_, file) = aliases(&sshd, 2);
    let file_arg = file.display().to_string();
    let listed = remora(&sshd, &["-H", &file_arg, "ls"]);
    assert_eq!(listed.status, 0, "{listed:?}");

    let bad = sshd.dir().join("bad.txt");
    std::fs::write(&bad, "node1\nnode 2\n").unwrap();
    let refused = remora(&sshd, &["-H", bad.to_str().unwrap(), "ls"]);
    assert_eq!(refused.status, 1, "{refused:?}");
    assert!(
        refused
            .stderr
            .contains(&format!("{}:2: \"node 2\" is not one host", bad.display())),
        "{refused:?}"
    );

    // An INI inventory: a group by alias, and a host by ansible_host/port/user.
    let config = sshd.ssh_config();
    let extra = sshd.host_block("127.0.0.1");
    std::fs::write(&config, std::fs::read_to_string(&config).unwrap() + &extra).unwrap();
    let inventory = sshd.dir().join("inventory.ini");
    std::fs::write(
        &inventory,
        format!(
            "[web]\nnode1\nw2 ansible_host=127.0.0.1 ansible_port={} ansible_user={}\n[db]\nnode2\n",
            sshd.port(),
            sshd.user()
        ),
    )
    .unwrap();
    let inv = inventory.display().to_string();
    let ran = remora(
        &sshd,
        &["--inventory", &inv, "--limit", "web", "invoke", "--", "echo hi"],
    );
    assert_eq!(ran.status, 0, "{ran:?}");
    let mut lines: Vec<&str> = ran.stdout.lines().collect();
    lines.sort();
    let target = format!("{}@127.0.0.1:{}: hi", sshd.user(), sshd.port());
    assert_eq!(lines, ["node1: hi", target.as_str()], "{ran:?}");

    std::fs::write(&inventory, "[web]\nnode1 ansible_port=twenty\n").unwrap();
    let refused = remora(&sshd, &["--inventory", &inv, "ls"]);
    assert!(
        refused
            .stderr
            .contains("inventory.ini:2: ansible_port \"twenty\" is not a port number"),
        "{refused:?}"
    );
    let yaml = sshd.dir().join("inventory.yml");
    std::fs::write(&yaml, "all:\n  children:\n    db:\n      hosts:\n        node2:\n").unwrap();
    let listed = remora(
        &sshd,
        &["--inventory", yaml.to_str().unwrap(), "--limit", "db", "ls", "--json"],
    );
    assert_eq!(listed.status, 0, "{listed:?}");
    let missing = remora(&sshd, &["--inventory", yaml.to_str().unwrap(), "--limit", "web", "ls"]);
    assert!(missing.stderr.contains("no group or host named \"web\""), "{missing:?}");
}

#[test]
fn output_dir_keeps_each_host_apart_and_group_prints_identical_output_once() {
    let sshd = Sshd::start().unwrap();
    let (names, file) = aliases(&sshd, 3);
    let file_arg = file.display().to_string();
    let out = sshd.dir().join("out");
    let run = remora(
        &sshd,
        &[
            "-H",
            &file_arg,
            "--output-dir",
            out.to_str().unwrap(),
            "invoke",
            "--",
            "echo same; echo oops >&2; (exit 3)",
        ],
    );
    assert_eq!(run.status, 1, "several hosts, none 0: {run:?}");
    assert_eq!(run.stdout, "", "nothing on the terminal");
    for name in &names {
        let read = |ext: &str| std::fs::read_to_string(out.join(format!("{name}.{ext}"))).unwrap();
        assert_eq!(
            (read("stdout"), read("stderr"), read("exit")),
            ("same\n".into(), "oops\n".into(), "3\n".into())
        );
    }

    let first = sshd.dir().join("first");
    let command = format!(
        "if mkdir {} 2>/dev/null; then echo first; else echo later; fi",
        first.display()
    );
    let grouped = remora(&sshd, &["-H", &file_arg, "--group", "invoke", "-n", "--", &command]);
    assert_eq!(grouped.status, 0, "{grouped:?}");
    assert_eq!(
        grouped.stdout.matches("later\n").count(),
        1,
        "printed once: {grouped:?}"
    );
    assert_eq!(grouped.stdout.matches("first\n").count(), 1, "{grouped:?}");
    let header = grouped
        .stdout
        .lines()
        .find(|line| line.contains("(exit 0)") && line.contains(','))
        .unwrap_or_else(|| panic!("a header naming two hosts: {grouped:?}"));
    assert_eq!(header.split(',').count(), 2, "{header}");
}

#[test]
fn on_a_terminal_a_progress_line_runs_and_failures_come_as_a_summary() {
    let sshd = Sshd::start().unwrap();
    let (_, file) = aliases(&sshd, 3);
    let config = sshd.ssh_config();
    let dead = "Host dead\n  HostName 127.0.0.1\n  Port 1\n  ConnectTimeout 3\n";
    std::fs::write(&config, std::fs::read_to_string(&config).unwrap() + dead).unwrap();
    // `script` gives remora a real terminal for stderr.
    let line = format!(
        "{} -F {} --no-reuse -H {} invoke dead -- true",
        crate::support::binaries().remora.display(),
        config.display(),
        file.display()
    );
    let mut command = sshd.agent_at(std::path::Path::new("script"));
    command.args(["-qec", &line, "/dev/null"]);
    let output = crate::support::run(&mut command, crate::support::TIMEOUT).unwrap();
    let shown = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(255), "{shown}");
    assert!(shown.contains("hosts done"), "the progress line: {shown}");
    let summary = shown
        .split("remora: 1 of 4 hosts failed:")
        .nth(1)
        .unwrap_or_else(|| panic!("{shown}"));
    assert!(
        summary.contains("dead") && summary.contains("127.0.0.1"),
        "with the reason: {shown}"
    );
}

#[test]
fn stdin_reaches_every_host_even_past_the_throttle() {
    let sshd = Sshd::start().unwrap();
    let (names, file) = aliases(&sshd, 5);
    let mut command = sshd.remora();
    command
        .args(["--no-reuse", "--throttle", "2", "-H"])
        .arg(&file)
        .args(["invoke", "--", "cat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"same input\n").unwrap();
    let output = crate::support::run_child(child, crate::support::TIMEOUT).unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    for name in &names {
        assert!(stdout.contains(&format!("{name}: same input\n")), "{name}: {stdout}");
    }
}
