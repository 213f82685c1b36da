//! Buffering modes at the memory limit: block stalls, drop discards and says so, spill goes to
//! disk. Each test gives the default configuration a 64 KiB limit.

use crate::support::{remora, session, wait_until, write_agent_config, Sshd};

/// `seq 1 N` as the command prints it, to compare what arrives.
fn seq_output(n: u32) -> String {
    (1..=n).map(|i| format!("{i}\n")).collect()
}

fn start(sshd: &Sshd, mode: &str, extra: &str, command: &str) {
    write_agent_config(
        sshd,
        &format!("[configurations.default]\nbuffering = \"{mode}\"\nbuffer_limit = \"64KiB\"\n{extra}"),
    );
    remora(
        sshd,
        &["invoke", sshd.alias(), "--name", "big", "--disconnected", "--", command],
    )
    .ok();
}

#[test]
fn block_mode_stalls_the_command_until_a_client_drains_it() {
    let sshd = Sshd::start().unwrap();
    // 6.9 MB: more than the limit, a read chunk and a pipe widened for bulk output hold.
    start(&sshd, "block", "", "seq 1 1000000");
    wait_until("the command to stall", || {
        session(&sshd, "big")["blocked_reason"]
            .as_str()
            .is_some_and(|r| r.contains("output buffer full"))
    })
    .unwrap();
    assert_eq!(session(&sshd, "big")["commands_running"], 1);
    let received = remora(&sshd, &["receive", sshd.alias(), "--name", "big"]);
    assert_eq!(received.status, 0);
    assert!(received.stdout == seq_output(1000000), "every byte arrives, in order");
}

#[test]
fn drop_mode_discards_the_oldest_output_and_reports_exactly_what() {
    let sshd = Sshd::start().unwrap();
    start(&sshd, "drop", "", "seq 1 200000; echo end");
    wait_until("the command to finish", || {
        session(&sshd, "big")["commands_completed"] == 1
    })
    .unwrap();
    let dropped = session(&sshd, "big")["dropped_bytes"].as_u64().unwrap();
    let total = seq_output(200000).len() as u64 + 4;
    assert!(dropped > 0 && dropped < total, "{dropped}");

    let received = remora(&sshd, &["receive", sshd.alias(), "--name", "big"]);
    assert_eq!(received.status, 0);
    assert!(received.stdout.ends_with("200000\nend\n"), "the newest output is kept");
    assert_eq!(
        received.stdout.len() as u64 + dropped,
        total,
        "kept + dropped = everything"
    );
    let reported: u64 = received
        .stderr
        .lines()
        .filter_map(|l| {
            l.strip_prefix("remora: ")?
                .split(" bytes of job 1's output were dropped")
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert_eq!(
        reported, dropped,
        "the client is told exactly how much was lost: {}",
        received.stderr
    );
    assert!(
        seq_output(200000).ends_with(received.stdout.trim_end_matches("end\n")),
        "the rest is intact"
    );
}

#[test]
fn spill_mode_keeps_everything_on_disk_without_stalling() {
    let sshd = Sshd::start().unwrap();
    start(&sshd, "spill", "spill_quota = \"64MiB\"\n", "seq 1 300000");
    wait_until("the command to finish", || {
        session(&sshd, "big")["commands_completed"] == 1
    })
    .unwrap();
    let spilled = session(&sshd, "big")["spilled_bytes"].as_u64().unwrap();
    assert!(
        spilled > 1_000_000,
        "past the 64 KiB limit output went to disk: {spilled}"
    );
    let spill_dir = sshd.state_dir().join("data/spill");
    let file = std::fs::read_dir(&spill_dir).unwrap().next().unwrap().unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(file.metadata().unwrap().permissions().mode() & 0o777, 0o600);

    let received = remora(&sshd, &["receive", sshd.alias(), "--name", "big"]);
    assert!(received.stdout == seq_output(300000), "every byte arrives, in order");
    assert_eq!(session(&sshd, "big")["spilled_bytes"], 0);
    remora(&sshd, &["rm", sshd.alias(), "--name", "big"]).ok();
    assert_eq!(
        std::fs::read_dir(&spill_dir).unwrap().count(),
        0,
        "the spill file goes with the session"
    );
}

#[test]
fn spill_mode_blocks_at_the_quota() {
    let sshd = Sshd::start().unwrap();
    start(&sshd, "spill", "spill_quota = \"256KiB\"\n", "seq 1 300000");
    wait_until("the quota to stall the command", || {
        session(&sshd, "big")["blocked_reason"]
            .as_str()
            .is_some_and(|r| r.contains("spill quota reached"))
    })
    .unwrap();
    let received = remora(&sshd, &["receive", sshd.alias(), "--name", "big"]);
    assert!(received.stdout == seq_output(300000));
}

/// A 512 KiB tmpfs mounted as the agent's spill directory, unmounted when dropped.
struct FullDisk {
    dir: std::path::PathBuf,
}

impl FullDisk {
    /// `None` where this process may not mount (not root, or an unprivileged container).
    fn mount(dir: std::path::PathBuf) -> Option<FullDisk> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .unwrap();
        let mounted = crate::support::run(
            std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs"])
                .arg(&dir),
            crate::support::TIMEOUT,
        )
        .ok()?;
        mounted.status.success().then_some(FullDisk { dir })
    }
}

impl Drop for FullDisk {
    fn drop(&mut self) {
        let _ = crate::support::run(
            std::process::Command::new("umount").arg("-l").arg(&self.dir),
            crate::support::TIMEOUT,
        );
    }
}

#[test]
fn a_full_disk_while_spilling_blocks_the_command_says_why_and_loses_nothing() {
    let sshd = Sshd::start().unwrap();
    let Some(_disk) = FullDisk::mount(sshd.state_dir().join("data/spill")) else {
        eprintln!("skipped: mounting a small tmpfs needs root in a privileged container (CI has it)");
        return;
    };
    start(&sshd, "spill", "", "seq 1 400000; echo end");
    wait_until("the full disk to stall the command", || {
        session(&sshd, "big")["blocked_reason"]
            .as_str()
            .is_some_and(|r| r.contains("No space left on device"))
    })
    .unwrap();
    assert_eq!(session(&sshd, "big")["commands_running"], 1, "blocked, not failed");
    let received = remora(&sshd, &["receive", sshd.alias(), "--name", "big"]);
    assert_eq!(received.status, 0, "{}", received.stderr);
    assert!(
        received.stdout == seq_output(400000) + "end\n",
        "every byte arrives, in order"
    );
}
