//! Hostile or broken input on the subsystem never takes the daemon down.

use std::{io::Write, process::Stdio};

use crate::support::{remora, session, Sshd, TIMEOUT};

/// Bytes that are not a remora frame, the same on every run.
fn garbage(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Pipes `input` into `ssh -s HOST remora` and returns what came back.
fn raw_subsystem(sshd: &Sshd, input: &[u8]) -> std::process::Output {
    let mut child = sshd
        .ssh()
        .args(["-s", sshd.alias(), "remora"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(input);
    drop(stdin);
    crate::support::run_child(child, TIMEOUT).expect("the channel closed instead of hanging")
}

#[test]
fn garbage_on_the_subsystem_is_refused_and_other_sessions_keep_working() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    remora(&sshd, &["invoke", host, "--name", "keep", "--", "export KEPT=yes"]).ok();
    let daemon = sshd.daemon_pid().expect("the daemon is running");

    let answer = raw_subsystem(&sshd, &garbage(256 * 1024));
    let reply: remora_wire::AgentFrame = remora_wire::decode(&answer.stdout[4..]).expect("an error frame came back");
    assert!(
        matches!(&reply.body, remora_wire::AgentBody::Error(e) if e.code == remora_wire::ErrorCode::BadFrame),
        "{reply:?}"
    );

    let hello_then_garbage = {
        let mut bytes = Vec::new();
        let hello = remora_wire::ClientFrame {
            id: 1,
            body: remora_wire::ClientBody::Hello(remora_wire::Hello {
                protocol: remora_wire::PROTOCOL_VERSION,
                min_protocol: 1,
                software: "test".into(),
                capabilities: vec![],
                client: Default::default(),
            }),
        };
        remora_wire::encode(&hello, &mut bytes).unwrap();
        bytes.extend_from_slice(&[0, 0, 0, 5, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1]);
        bytes.extend_from_slice(&garbage(1000));
        bytes
    };
    raw_subsystem(&sshd, &hello_then_garbage);

    assert_eq!(sshd.daemon_pid(), Some(daemon), "the same daemon still runs");
    assert_eq!(
        remora(&sshd, &["invoke", host, "--name", "keep", "--", "echo $KEPT"]).ok(),
        "yes\n"
    );
    assert_eq!(session(&sshd, "keep")["state"], "Disconnected");
}

#[test]
fn a_newer_client_gets_a_version_message_not_a_hang() {
    let sshd = Sshd::start().unwrap();
    let mut bytes = Vec::new();
    let hello = remora_wire::ClientFrame {
        id: 1,
        body: remora_wire::ClientBody::Hello(remora_wire::Hello {
            protocol: 99,
            min_protocol: 90,
            software: "remora 9.0".into(),
            capabilities: vec![],
            client: Default::default(),
        }),
    };
    remora_wire::encode(&hello, &mut bytes).unwrap();
    let answer = raw_subsystem(&sshd, &bytes);
    let reply: remora_wire::AgentFrame = remora_wire::decode(&answer.stdout[4..]).unwrap();
    let remora_wire::AgentBody::Error(error) = reply.body else {
        panic!("{reply:?}")
    };
    assert_eq!(error.code, remora_wire::ErrorCode::VersionMismatch);
    assert!(error.message.contains("upgrade remora-agent"), "{}", error.message);
}
