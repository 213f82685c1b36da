//! Jobs: `invoke --job`, `jobs`, `receive --job [--keep]`, `stop`.

use serde_json::Value;

use crate::support::{remora, wait_until, Sshd};

fn jobs(sshd: &Sshd, name: &str) -> Vec<Value> {
    let stdout = remora(sshd, &["jobs", sshd.alias(), "--name", name, "--json"]).ok();
    serde_json::from_str(&stdout).unwrap()
}

fn job_state(sshd: &Sshd, name: &str, id: u64) -> (String, Value) {
    let all = jobs(sshd, name);
    let job = all
        .iter()
        .find(|j| j["id"] == id)
        .unwrap_or_else(|| panic!("no job {id}: {all:?}"));
    (job["state"].as_str().unwrap().to_string(), job["exit_code"].clone())
}

fn start_job(sshd: &Sshd, name: &str, command: &str) -> u64 {
    let out = remora(sshd, &["invoke", sshd.alias(), "--name", name, "--job", "--", command]).ok();
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("invoke --job prints the job id, not {out:?}"))
}

#[test]
fn jobs_queue_in_order_and_are_received_one_by_one() {
    let sshd = Sshd::start().unwrap();
    let gate = sshd.dir().join("gate");
    let wait_gate = format!("while [ ! -e {} ]; do sleep 0.05; done; echo two", gate.display());
    assert_eq!(start_job(&sshd, "w", "echo one; (exit 2)"), 1);
    assert_eq!(start_job(&sshd, "w", &wait_gate), 2);
    assert_eq!(start_job(&sshd, "w", "echo three"), 3);

    wait_until("job 2 to run", || job_state(&sshd, "w", 2).0 == "Running").unwrap();
    assert_eq!(job_state(&sshd, "w", 1), ("Completed".into(), Value::from(2)));
    assert_eq!(job_state(&sshd, "w", 3).0, "Queued");
    let table = remora(&sshd, &["jobs", sshd.alias(), "--name", "w"]).ok();
    assert!(table.contains("Queued") && table.contains("echo three"), "{table}");

    std::fs::write(&gate, "").unwrap();
    let third = remora(&sshd, &["receive", sshd.alias(), "--name", "w", "--job", "3"]);
    assert_eq!((third.status, third.stdout.as_str()), (0, "three\n"), "{third:?}");
    let rest = remora(&sshd, &["receive", sshd.alias(), "--name", "w"]);
    assert_eq!(rest.stdout, "one\ntwo\n", "the other jobs' output, once: {rest:?}");
    let again = remora(&sshd, &["receive", sshd.alias(), "--name", "w", "--job", "3"]);
    assert_eq!((again.status, again.stdout.as_str()), (0, ""), "{again:?}");
}

#[test]
fn receive_keep_leaves_output_to_be_received_again() {
    let sshd = Sshd::start().unwrap();
    let job = start_job(&sshd, "k", "echo kept; (exit 5)");
    let job = job.to_string();
    for _ in 0..2 {
        let kept = remora(
            &sshd,
            &["receive", sshd.alias(), "--name", "k", "--job", &job, "--keep"],
        );
        assert_eq!((kept.status, kept.stdout.as_str()), (5, "kept\n"), "{kept:?}");
    }
    assert_eq!(
        remora(&sshd, &["receive", sshd.alias(), "--name", "k", "--job", &job]).stdout,
        "kept\n"
    );
    assert_eq!(
        remora(&sshd, &["receive", sshd.alias(), "--name", "k", "--job", &job]).stdout,
        ""
    );
    let missing = remora(&sshd, &["receive", sshd.alias(), "--name", "k", "--job", "9"]);
    assert_eq!(missing.status, 1);
    assert!(missing.stderr.contains("no job 9"), "{missing:?}");
}

#[test]
fn stop_interrupts_a_job_and_keeps_the_shell_and_its_state() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    remora(&sshd, &["invoke", host, "--name", "s", "--", "export KEEP=yes"]).ok();
    let looping = start_job(&sshd, "s", "for i in 1 2 3; do sleep 100; done; echo not-reached");
    let queued = start_job(&sshd, "s", "echo never-runs");
    wait_until("the loop to run", || job_state(&sshd, "s", looping).0 == "Running").unwrap();

    let stopped = remora(&sshd, &["stop", host, "--name", "s", "--job", &queued.to_string()]).ok();
    assert!(stopped.contains(&format!("stopping job {queued}")), "{stopped}");
    assert_eq!(
        job_state(&sshd, "s", queued).0,
        "Stopped",
        "a queued job is cancelled at once"
    );

    remora(&sshd, &["stop", host, "--name", "s"]).ok();
    wait_until("the loop to stop", || job_state(&sshd, "s", looping).0 == "Stopped").unwrap();
    assert_eq!(job_state(&sshd, "s", looping).1, 130, "interrupted like Ctrl-C");

    assert_eq!(
        remora(&sshd, &["invoke", host, "--name", "s", "--", "echo $KEEP"]).ok(),
        "yes\n"
    );
    let late = remora(&sshd, &["stop", host, "--name", "s", "--job", &looping.to_string()]);
    assert_eq!(late.status, 1);
    assert!(late.stderr.contains("already ended"), "{late:?}");
    let idle = remora(&sshd, &["stop", host, "--name", "s"]);
    assert!(idle.stderr.contains("no job is running"), "{idle:?}");
}

#[test]
fn stop_kills_a_job_that_ignores_the_interrupt() {
    let sshd = Sshd::start().unwrap();
    let stubborn = start_job(&sshd, "t", "(trap '' INT; sleep 300)");
    wait_until("the job to run", || job_state(&sshd, "t", stubborn).0 == "Running").unwrap();
    remora(&sshd, &["stop", sshd.alias(), "--name", "t"]).ok();
    crate::support::wait_until_within(std::time::Duration::from_secs(30), "the grace period to end it", || {
        job_state(&sshd, "t", stubborn).0 == "Stopped"
    })
    .unwrap();
    assert_eq!(
        remora(&sshd, &["invoke", sshd.alias(), "--name", "t", "--", "echo alive"]).ok(),
        "alive\n"
    );
}
