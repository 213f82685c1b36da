//! The job workflow: `--after`/`--after-ok` (Skipped, refused ids and cycles), `--retry`, labels
//! and their filters, the `on_job_end` notice, failed-job views and `--notify`.

use serde_json::Value;

use crate::support::{remora, session, wait_until, write_agent_config, Sshd};

fn invoke_job(sshd: &Sshd, name: &str, flags: &[&str], command: &str) -> crate::support::Run {
    let mut args = vec!["invoke", sshd.alias(), "--name", name, "--job"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["--", command]);
    remora(sshd, &args)
}

fn jobs(sshd: &Sshd, name: &str, filter: &[&str]) -> Vec<Value> {
    let mut args = vec!["jobs", sshd.alias(), "--name", name, "--json"];
    args.extend_from_slice(filter);
    serde_json::from_str(&remora(sshd, &args).ok()).unwrap()
}

fn job(sshd: &Sshd, name: &str, id: u64) -> Value {
    jobs(sshd, name, &[])
        .into_iter()
        .find(|j| j["id"] == id)
        .expect("listed")
}

fn wait_all(sshd: &Sshd, name: &str) -> i32 {
    remora(sshd, &["wait", sshd.alias(), "--name", name]).status
}

#[test]
fn after_ok_skips_a_job_whose_dependency_failed_and_bad_dependencies_are_refused() {
    let sshd = Sshd::start().unwrap();
    invoke_job(&sshd, "d", &[], "echo first; (exit 1)").ok();
    invoke_job(&sshd, "d", &["--after-ok", "1"], "echo must-not-run").ok();
    invoke_job(&sshd, "d", &["--after", "1"], "echo ran-after").ok();
    assert_eq!(wait_all(&sshd, "d"), 0, "the last job to end succeeded");

    let skipped = job(&sshd, "d", 2);
    assert_eq!(skipped["state"], "Skipped", "{skipped}");
    assert!(
        skipped["reason"].as_str().unwrap().contains("job 1 did not succeed"),
        "{skipped}"
    );
    assert_eq!(job(&sshd, "d", 3)["state"], "Completed");
    let table = remora(&sshd, &["jobs", sshd.alias(), "--name", "d"]).ok();
    assert!(table.contains("Skipped: job 1 did not succeed"), "{table}");
    let received = remora(&sshd, &["receive", sshd.alias(), "--name", "d", "--job", "2"]);
    assert!(!received.stdout.contains("must-not-run"), "{received:?}");
    assert!(
        received.stderr.contains("job 2 skipped: job 1 did not succeed"),
        "{received:?}"
    );

    let unknown = invoke_job(&sshd, "d", &["--after-ok", "99"], "true");
    assert!(
        unknown.status != 0 && unknown.stderr.contains("no job 99"),
        "{unknown:?}"
    );
    let cycle = invoke_job(&sshd, "d", &["--after", "4"], "true");
    assert!(cycle.status != 0 && cycle.stderr.contains("cycle"), "{cycle:?}");
    assert_eq!(jobs(&sshd, "d", &[]).len(), 3, "refused jobs are not queued");
}

#[test]
fn a_retried_job_succeeds_on_its_third_attempt_with_markers_between_attempts() {
    let sshd = Sshd::start().unwrap();
    let counter = sshd.dir().join("count");
    let flaky = format!(
        "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; echo attempt $n; [ $n -ge 3 ]",
        c = counter.display()
    );
    invoke_job(&sshd, "r", &["--retry", "5", "--retry-delay", "100ms"], &flaky).ok();
    assert_eq!(wait_all(&sshd, "r"), 0);
    let done = job(&sshd, "r", 1);
    assert_eq!(
        (
            done["state"].as_str(),
            done["exit_code"].as_i64(),
            done["attempts"].as_u64()
        ),
        (Some("Completed"), Some(0), Some(3))
    );
    let received = remora(&sshd, &["receive", sshd.alias(), "--name", "r"]);
    assert_eq!(received.stdout, "attempt 1\nattempt 2\nattempt 3\n", "{received:?}");
    assert_eq!(received.stderr.matches("remora: attempt").count(), 2, "{received:?}");
    assert!(
        received.stderr.contains("attempt 2 of 6 exited with status 1"),
        "{received:?}"
    );

    invoke_job(&sshd, "r", &["--retry", "1"], "(exit 7)").ok();
    assert_eq!(wait_all(&sshd, "r"), 7, "the final status is the last attempt's");
    assert_eq!(job(&sshd, "r", 2)["attempts"], 2);
}

#[test]
fn labels_filter_jobs_wait_receive_and_stop() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    let gate = sshd.dir().join("gate");
    invoke_job(&sshd, "l", &["--label", "build-a"], "echo a").ok();
    invoke_job(&sshd, "l", &["--label", "build-b"], "echo b; (exit 5)").ok();
    invoke_job(&sshd, "l", &["--label", "test"], "echo t").ok();
    let hold = format!("while [ ! -e {} ]; do sleep 0.05; done", gate.display());
    invoke_job(&sshd, "l", &["--label", "slow"], &hold).ok();
    invoke_job(&sshd, "l", &["--label", "slow"], "echo never").ok();

    let builds = jobs(&sshd, "l", &["--label", "build-*"]);
    assert_eq!(
        builds.iter().map(|j| j["id"].as_u64().unwrap()).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(builds[0]["label"], "build-a");
    let waited = remora(&sshd, &["wait", host, "--name", "l", "--label", "build-*"]);
    assert_eq!(waited.status, 5, "{waited:?}");
    let test_only = remora(&sshd, &["receive", host, "--name", "l", "--label", "test"]);
    assert_eq!(
        (test_only.status, test_only.stdout.as_str()),
        (0, "t\n"),
        "{test_only:?}"
    );

    wait_until("the slow job to run", || job(&sshd, "l", 4)["state"] == "Running").unwrap();
    let stopped = remora(&sshd, &["stop", host, "--name", "l", "--label", "slow"]).ok();
    assert!(
        stopped.contains("stopping job 4") && stopped.contains("stopping job 5"),
        "{stopped}"
    );
    let slow = remora(&sshd, &["wait", host, "--name", "l", "--label", "slow"]);
    assert_ne!(slow.status, 0, "stopped jobs are no success: {slow:?}");
    assert_eq!(
        (
            job(&sshd, "l", 4)["state"].as_str(),
            job(&sshd, "l", 4)["exit_code"].as_i64()
        ),
        (Some("Stopped"), Some(130))
    );
    assert_eq!(job(&sshd, "l", 5)["state"], "Stopped");
    let rest = remora(&sshd, &["receive", host, "--name", "l"]);
    assert!(
        rest.stdout.starts_with("a\nb\n"),
        "the other jobs' output stayed: {rest:?}"
    );
}

#[test]
fn failed_jobs_are_counted_listed_and_received_apart() {
    let sshd = Sshd::start().unwrap();
    invoke_job(&sshd, "f", &[], "echo good").ok();
    invoke_job(&sshd, "f", &[], "echo bad; (exit 3)").ok();
    invoke_job(&sshd, "f", &[], "echo fine").ok();
    wait_all(&sshd, "f");
    assert_eq!(session(&sshd, "f")["commands_failed"], 1);
    let failed = jobs(&sshd, "f", &["--state", "failed"]);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["id"], 2);
    let received = remora(&sshd, &["receive", sshd.alias(), "--name", "f", "--failed", "--notify"]);
    assert_eq!(
        (received.status, received.stdout.as_str()),
        (3, "bad\n"),
        "{received:?}"
    );
    assert!(
        received
            .stderr
            .contains("\u{7}remora: testhost: job 2 ended Completed (exit 3)"),
        "{received:?}"
    );
}

#[test]
fn on_job_end_runs_with_the_jobs_environment_and_a_failing_hook_breaks_nothing() {
    let sshd = Sshd::start().unwrap();
    let notices = sshd.dir().join("notices");
    std::fs::create_dir(&notices).unwrap();
    write_agent_config(
        &sshd,
        &format!(
            "[configurations.hooked]\non_job_end = \"env | grep ^REMORA_ | sort > {}/$REMORA_JOB_ID.tmp && mv {0}/$REMORA_JOB_ID.tmp {0}/$REMORA_JOB_ID\"\n\n[configurations.broken]\non_job_end = \"echo no >&2; exit 9\"\n",
            notices.display()
        ),
    );
    remora(&sshd, &["new", sshd.alias(), "--name", "h", "--config", "hooked"]).ok();
    invoke_job(&sshd, "h", &["--label", "nightly"], "(exit 4)").ok();
    let file = notices.join("1");
    wait_until("the notice to run", || file.exists()).unwrap();
    let env = std::fs::read_to_string(&file).unwrap();
    for line in [
        "REMORA_JOB_ID=1",
        "REMORA_SESSION=h",
        "REMORA_LABEL=nightly",
        "REMORA_EXIT_CODE=4",
        "REMORA_STATE=Completed",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} in {env}");
    }
    assert!(env.lines().any(|l| l.starts_with("REMORA_DURATION_MS=")), "{env}");

    remora(&sshd, &["new", sshd.alias(), "--name", "b", "--config", "broken"]).ok();
    let out = remora(&sshd, &["invoke", sshd.alias(), "--name", "b", "--", "echo still fine"]);
    assert_eq!((out.status, out.stdout.as_str()), (0, "still fine\n"), "{out:?}");
    wait_until("the failed hook to be logged", || {
        sshd.daemon_log().contains("on_job_end failed")
    })
    .unwrap();
    let again = remora(&sshd, &["invoke", sshd.alias(), "--name", "b", "--", "echo again"]);
    assert_eq!((again.status, again.stdout.as_str()), (0, "again\n"), "{again:?}");
    assert_eq!(job(&sshd, "b", 1)["state"], "Completed");
}

#[test]
fn stopping_by_label_never_lets_a_queued_job_start_in_between() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    let gate = sshd.dir().join("gate");
    let hold = format!("while [ ! -e {} ]; do sleep 0.05; done", gate.display());
    invoke_job(&sshd, "q", &["--label", "batch"], &hold).ok();
    for i in 2..=6 {
        invoke_job(&sshd, "q", &["--label", "batch"], &format!("echo ran-{i}")).ok();
    }
    wait_until("the first job to run", || job(&sshd, "q", 1)["state"] == "Running").unwrap();
    let stopped = remora(&sshd, &["stop", host, "--name", "q", "--label", "batch"]).ok();
    for i in 1..=6 {
        assert!(stopped.contains(&format!("stopping job {i} ")), "{stopped}");
    }
    let waited = remora(&sshd, &["wait", host, "--name", "q", "--label", "batch"]);
    assert_ne!(waited.status, 0, "stopped jobs are no success: {waited:?}");
    for i in 2..=6 {
        let queued = job(&sshd, "q", i);
        assert_eq!(
            (queued["state"].as_str(), queued["exit_code"].as_i64()),
            (Some("Stopped"), None),
            "job {i} never started: {queued}"
        );
    }
    let output = remora(&sshd, &["receive", host, "--name", "q"]).stdout;
    assert!(!output.contains("ran-"), "no queued job ran: {output:?}");
}

#[test]
fn stop_ends_a_loop_that_forks_all_the_time() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    // The first SIGINT is lost whenever it reaches a child between fork and exec; this loop is
    // nearly always there. Each stop must still end the job, and the shell must carry on.
    for round in 1..=5u64 {
        invoke_job(&sshd, "f", &[], "while :; do /bin/true; done").ok();
        wait_until("the loop to run", || job(&sshd, "f", round)["state"] == "Running").unwrap();
        remora(&sshd, &["stop", host, "--name", "f"]).ok();
        let waited = remora(
            &sshd,
            &[
                "wait",
                host,
                "--name",
                "f",
                "--job",
                &round.to_string(),
                "--timeout",
                "20s",
            ],
        );
        assert_eq!(waited.status, 130, "round {round}: {waited:?}");
    }
    let after = remora(&sshd, &["invoke", host, "--name", "f", "--", "echo shell-$((40+2))"]).ok();
    assert_eq!(after, "shell-42\n");
}
