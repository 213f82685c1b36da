//! A client killed mid-stream loses nothing: the next `receive`, from any process, starts at the
//! first byte the dead client had not acknowledged.

use std::{
    io::Read,
    process::{Child, Stdio},
};

use nix::{sys::signal::Signal, unistd::Pid};

use crate::support::{remora, run_child, session, wait_until, Sshd, TIMEOUT};

fn seq_output(from: u32, to: u32) -> Vec<u8> {
    (from..=to).flat_map(|i| format!("{i}\n").into_bytes()).collect()
}

fn spawn_receive(sshd: &Sshd, name: &str) -> Child {
    sshd.remora()
        .args(["receive", sshd.alias(), "--name", name])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// SIGKILLs the client and returns everything it had written to its stdout.
fn kill_and_collect(mut child: Child, mut already: Vec<u8>) -> Vec<u8> {
    nix::sys::signal::kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    child.stdout.as_mut().unwrap().read_to_end(&mut already).unwrap();
    let _ = run_child(child, TIMEOUT);
    already
}

#[test]
fn a_client_killed_while_the_command_runs_leaves_exactly_the_rest() {
    let sshd = Sshd::start().unwrap();
    let gate = sshd.dir().join("gate");
    let command = format!(
        "seq 1 20000; while [ ! -e {} ]; do sleep 0.05; done; seq 20001 40000",
        gate.display()
    );
    remora(
        &sshd,
        &["invoke", sshd.alias(), "--name", "k", "--disconnected", "--", &command],
    )
    .ok();
    let mut client = spawn_receive(&sshd, "k");
    let first = seq_output(1, 20000);
    let mut printed = vec![0u8; first.len()];
    client.stdout.as_mut().unwrap().read_exact(&mut printed).unwrap();
    wait_until("the client to acknowledge what it printed", || {
        session(&sshd, "k")["unacked_bytes"] == 0
    })
    .unwrap();
    let printed = kill_and_collect(client, printed);

    std::fs::write(&gate, "").unwrap();
    let rest = remora(&sshd, &["receive", sshd.alias(), "--name", "k"]).ok();
    let mut whole = printed.clone();
    whole.extend_from_slice(rest.as_bytes());
    assert!(
        whole == seq_output(1, 40000),
        "dead client + receive = everything, once, in order"
    );
}

#[test]
fn a_client_killed_in_full_flow_loses_nothing_and_repeats_only_the_last_stretch() {
    let sshd = Sshd::start().unwrap();
    remora(
        &sshd,
        &[
            "invoke",
            sshd.alias(),
            "--name",
            "f",
            "--disconnected",
            "--",
            "seq 1 300000",
        ],
    )
    .ok();
    wait_until("the output to be complete", || {
        session(&sshd, "f")["commands_completed"] == 1
    })
    .unwrap();
    let mut client = spawn_receive(&sshd, "f");
    let mut printed = vec![0u8; 300_000];
    client.stdout.as_mut().unwrap().read_exact(&mut printed).unwrap();
    let printed = kill_and_collect(client, printed);

    let rest = remora(&sshd, &["receive", sshd.alias(), "--name", "f"])
        .ok()
        .into_bytes();
    let whole = seq_output(1, 300000);
    let resumed_at = whole.len() - rest.len();
    assert!(whole.ends_with(&rest), "receive continues the output without a gap");
    assert!(
        printed.len() >= resumed_at,
        "nothing between what was printed and what receive sent is lost"
    );
    assert!(
        whole.starts_with(&printed),
        "the dead client printed a prefix, in order"
    );
    let repeated = printed.len() - resumed_at;
    // Acks leave every 256 KiB; the last one or two may still be on their way when the client
    // dies, so what is shown again is bounded by a few intervals, never the whole stream.
    let bound = 4 * remora_client::connection::ACK_BYTES as usize;
    assert!(
        repeated <= bound,
        "only the last unacknowledged stretch is sent again: {repeated} bytes"
    );
}
