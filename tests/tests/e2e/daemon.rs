//! The per-user daemon: started on demand exactly once, outliving every SSH connection.

use std::thread;

use crate::support::{live_command_lines, remora, session, Sshd};

/// Daemon processes serving this test's state directory.
fn daemons_for(sshd: &Sshd) -> usize {
    let state = sshd.state_dir().display().to_string();
    live_command_lines()
        .iter()
        .filter(|c| c.contains("remora-agent daemon") && c.contains(&state))
        .count()
}

#[test]
fn concurrent_first_connections_start_exactly_one_daemon() {
    let sshd = Sshd::start().unwrap();
    assert!(sshd.daemon_pid().is_none(), "no daemon before the first connection");
    let runs: Vec<_> = thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let sshd = &sshd;
                scope.spawn(move || remora(sshd, &["new", sshd.alias(), "--name", &format!("s{i}")]))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for run in runs {
        assert_eq!(run.status, 0, "{run:?}");
    }
    assert_eq!(daemons_for(&sshd), 1);
    assert_eq!(
        crate::support::ls_json(&sshd).len(),
        6,
        "every session landed in the one daemon"
    );
}

#[test]
fn the_daemon_and_running_commands_outlive_the_ssh_connection() {
    let sshd = Sshd::start().unwrap();
    let gate = sshd.dir().join("gate");
    let command = format!("while [ ! -e {} ]; do sleep 0.05; done; echo survived", gate.display());
    remora(
        &sshd,
        &["invoke", sshd.alias(), "--name", "bg", "--disconnected", "--", &command],
    )
    .ok();
    let daemon = sshd.daemon_pid().expect("daemon started");

    // No SSH connection exists now; the command is still running in the daemon.
    assert_eq!(session(&sshd, "bg")["commands_running"], 1);
    std::fs::write(&gate, "").unwrap();
    assert_eq!(
        remora(&sshd, &["receive", sshd.alias(), "--name", "bg"]).ok(),
        "survived\n"
    );
    assert_eq!(
        sshd.daemon_pid(),
        Some(daemon),
        "the same daemon served every connection"
    );
}
