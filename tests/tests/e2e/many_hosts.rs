//! Many hosts at once: comma lists on every verb, host-prefixed output, failures isolated, and
//! `ls` without a host from the client's local registry.

use std::process::Command;

use crate::support::{binaries, run, Sshd, TIMEOUT};

/// Three real sshds under aliases h1..h3 plus an alias for a port nobody listens on.
struct Fleet {
    hosts: Vec<Sshd>,
    config: std::path::PathBuf,
    home: tempfile::TempDir,
}

impl Fleet {
    fn start() -> Fleet {
        let hosts: Vec<Sshd> = (0..3).map(|_| Sshd::start().unwrap()).collect();
        let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut config: String = hosts
            .iter()
            .enumerate()
            .map(|(i, s)| s.host_block(&format!("h{}", i + 1)))
            .collect();
        config.push_str(&format!(
            "Host dead\n  HostName 127.0.0.1\n  Port {dead_port}\n  ConnectTimeout 5\n"
        ));
        let home = tempfile::tempdir().unwrap();
        let path = home.path().join("fleet_config");
        std::fs::write(&path, config).unwrap();
        Fleet {
            hosts,
            config: path,
            home,
        }
    }

    fn remora(&self, args: &[&str]) -> (i32, String, String) {
        let mut command = Command::new(&binaries().remora);
        command
            .arg("-F")
            .arg(&self.config)
            .args(args)
            .env("HOME", self.home.path())
            .env_remove("XDG_DATA_HOME");
        let output = run(&mut command, TIMEOUT).unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (
            output.status.code().unwrap_or(-1),
            text(&output.stdout),
            text(&output.stderr),
        )
    }
}

fn sorted_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    lines
}

#[test]
fn verbs_fan_out_prefix_output_and_isolate_failures() {
    let fleet = Fleet::start();
    let (status, table, _) = fleet.remora(&["new", "h1,h2,h3", "--name", "deploy"]);
    assert_eq!(status, 0);
    assert_eq!(table.lines().filter(|l| l.contains("deploy")).count(), 3, "{table}");

    let (status, out, _) = fleet.remora(&["invoke", "h1,h2", "--name", "deploy", "--", "echo hello; echo oops >&2"]);
    assert_eq!(status, 0);
    assert_eq!(sorted_lines(&out), ["h1: hello", "h2: hello"]);

    let (status, out, err) = fleet.remora(&[
        "invoke",
        "h1,dead,h2",
        "--name",
        "deploy",
        "--disconnected",
        "--",
        "echo later",
    ]);
    assert_eq!(status, 255, "an unreachable host is reported in the exit status: {err}");
    assert!(err.contains("remora: dead:"), "{err}");
    assert_eq!(
        sorted_lines(&out),
        ["h1: deploy", "h2: deploy"],
        "the other hosts still ran it"
    );

    let (status, out, _) = fleet.remora(&["receive", "h1,h2", "--name", "deploy"]);
    assert_eq!(status, 0);
    assert_eq!(sorted_lines(&out), ["h1: later", "h2: later"]);

    let (status, _, _) = fleet.remora(&[
        "invoke",
        "h1,h2",
        "--name",
        "deploy",
        "--",
        "[ $(hostname) = never ] || (exit 3)",
    ]);
    assert_eq!(status, 1, "a failing command on any host fails the run");

    let (status, json, _) = fleet.remora(&["ls", "h1,h2", "h3", "--json"]);
    assert_eq!(status, 0);
    let sessions: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    let mut hosts: Vec<&str> = sessions.iter().map(|s| s["host"].as_str().unwrap()).collect();
    hosts.sort();
    assert_eq!(
        hosts,
        ["h1", "h2", "h3"],
        "each session names the host it was reached as"
    );
    drop(fleet.hosts);
}

#[test]
fn ls_without_a_host_lists_the_sessions_this_client_created() {
    let fleet = Fleet::start();
    let (status, _, err) = fleet.remora(&["ls"]);
    assert_eq!(status, 0);
    assert!(err.contains("no sessions created from this machine"), "{err}");

    fleet.remora(&["new", "h1,h2", "--name", "mine"]);
    fleet.remora(&["invoke", "h3", "--name", "job3", "--job", "--", "true"]);
    let (status, table, _) = fleet.remora(&["ls"]);
    assert_eq!(status, 0);
    for expected in ["mine", "job3", "h1", "h2", "h3"] {
        assert!(table.contains(expected), "missing {expected}: {table}");
    }
    fleet.remora(&["rm", "h2", "--name", "mine"]);
    let (_, json, _) = fleet.remora(&["ls", "--json"]);
    let sessions: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(sessions.len(), 2, "the removed session is gone: {json}");
}
