//! `remora wait` (Wait-Job) and `jobs --follow`: all, `--any`, `--timeout` (exit 124), across
//! two hosts, and a live table that ends when the jobs end. Jobs are held by gate files, so every
//! step waits on an event.

use std::{path::Path, process::Command};

use crate::support::{binaries, remora, run, wait_until, Background, Sshd, TIMEOUT};

/// A job that waits for `gate` to exist, then exits with `code`.
fn gated(gate: &Path, code: i32) -> String {
    format!("while [ ! -e {} ]; do sleep 0.05; done; (exit {code})", gate.display())
}

fn start_job(sshd: &Sshd, name: &str, command: &str) -> String {
    remora(sshd, &["invoke", sshd.alias(), "--name", name, "--job", "--", command])
        .ok()
        .trim()
        .to_string()
}

fn state(sshd: &Sshd, name: &str, job: &str) -> String {
    let out = remora(sshd, &["jobs", sshd.alias(), "--name", name, "--json"]).ok();
    let jobs: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let job = jobs
        .iter()
        .find(|j| j["id"].as_u64() == job.parse().ok())
        .expect("the job is listed");
    job["state"].as_str().unwrap().to_string()
}

#[test]
fn wait_returns_when_all_or_any_end_and_times_out_with_124() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    let gate = sshd.dir().join("gate");
    let first = start_job(&sshd, "w", &gated(&gate, 3));
    let second = start_job(&sshd, "w", "echo two; (exit 4)");

    let timed_out = remora(&sshd, &["wait", host, "--name", "w", "--timeout", "300ms"]);
    assert_eq!(timed_out.status, 124, "{timed_out:?}");
    assert_eq!(timed_out.stdout, "", "nothing on stdout");

    let mut any = Background::start(&sshd, &["wait", host, "--name", "w", "--any"]);
    let all = Background::start(&sshd, &["wait", host, "--name", "w", "--job", &first, "--job", &second]);
    wait_until("the job to run", || state(&sshd, "w", &first) == "Running").unwrap();
    assert!(any.child.try_wait().unwrap().is_none(), "no job has ended yet");
    std::fs::write(&gate, "").unwrap();

    let (status, _, lines) = any.finish_with_lines();
    assert_eq!((status, lines.len()), (3, 0), "--any: the first job's status, silently");
    let (status, _) = all.finish();
    assert_eq!(status, 4, "all: the status of the job that ended last");

    let waited = remora(&sshd, &["wait", host, "--name", "w", "--json"]);
    assert_eq!(waited.status, 4, "{waited:?}");
    let json = waited.stdout;
    let jobs: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(jobs.len(), 2, "{json}");
    assert!(jobs.iter().all(|j| j["state"] == "Completed"), "{json}");
    let unknown = remora(&sshd, &["wait", host, "--name", "w", "--job", "9"]);
    assert!(
        unknown.status != 0 && unknown.stderr.contains("no job 9"),
        "{unknown:?}"
    );
}

#[test]
fn wait_across_two_hosts_waits_for_every_host() {
    let hosts = [Sshd::start().unwrap(), Sshd::start().unwrap()];
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config");
    std::fs::write(
        &config,
        format!("{}{}", hosts[0].host_block("h1"), hosts[1].host_block("h2")),
    )
    .unwrap();
    let remora_at = |args: &[&str]| {
        let mut command = Command::new(&binaries().remora);
        command.arg("-F").arg(&config).args(args).env("HOME", home.path());
        command
    };
    let gates: Vec<_> = hosts.iter().map(|h| h.dir().join("gate")).collect();
    for (i, alias) in ["h1", "h2"].iter().enumerate() {
        let job = gated(&gates[i], 10 + i as i32);
        let out = run(
            &mut remora_at(&["invoke", alias, "--name", "x", "--job", "--", &job]),
            TIMEOUT,
        )
        .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let mut waiting = Background::spawn(remora_at(&["wait", "h1,h2", "--name", "x"]));
    std::fs::write(&gates[0], "").unwrap();
    wait_until("h1's job to end", || {
        let out = run(
            &mut remora_at(&["jobs", "h1", "--name", "x", "--state", "ended", "--json"]),
            TIMEOUT,
        )
        .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("Completed")
    })
    .unwrap();
    assert!(
        waiting.child.try_wait().unwrap().is_none(),
        "h2's job still runs, so the wait goes on"
    );
    std::fs::write(&gates[1], "").unwrap();
    let (status, stderr) = waiting.finish();
    assert_eq!(status, 11, "the status of the job that ended last, on h2: {stderr}");
}

#[test]
fn jobs_follow_ends_when_every_job_has_ended() {
    let sshd = Sshd::start().unwrap();
    let gate = sshd.dir().join("gate");
    start_job(&sshd, "f", &gated(&gate, 0));
    start_job(&sshd, "f", "(exit 2)");
    let mut follow = Background::start(&sshd, &["jobs", sshd.alias(), "--name", "f", "--follow"]);
    follow.wait_for_line("Id    State      Exit  Tries Label        Started              Ended                Command");
    wait_until("job 1 to run", || state(&sshd, "f", "1") == "Running").unwrap();
    std::fs::write(&gate, "").unwrap();
    let (status, stderr, lines) = follow.finish_with_lines();
    assert_eq!(status, 0, "{stderr}");
    assert!(lines.iter().any(|l| l == "job 1 Completed exit 0"), "{lines:?}");
    assert!(lines.iter().any(|l| l == "job 2 Completed exit 2"), "{lines:?}");
}
