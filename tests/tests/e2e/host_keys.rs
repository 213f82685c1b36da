//! Host-key checking: strict by default, accept-new on request, a changed key refused loudly.

use crate::support::{remora, Sshd};

#[test]
fn unknown_host_is_refused_until_accept_new_records_it() {
    let sshd = Sshd::start().unwrap();
    let known = sshd.dir().join("empty_known_hosts");
    std::fs::write(&known, "").unwrap();
    let known_opt = format!("UserKnownHostsFile={}", known.display());

    let refused = remora(&sshd, &["-o", &known_opt, "ls", sshd.alias()]);
    assert_eq!(refused.status, 255, "{refused:?}");
    assert!(
        refused.stderr.contains("accept-new"),
        "says how to proceed: {refused:?}"
    );

    remora(
        &sshd,
        &[
            "-o",
            &known_opt,
            "-o",
            "StrictHostKeyChecking=accept-new",
            "ls",
            sshd.alias(),
        ],
    )
    .ok();
    let recorded = std::fs::read_to_string(&known).unwrap();
    let host_key = sshd.host_public_key();
    let key_field = host_key.split_whitespace().nth(1).unwrap();
    assert!(
        recorded.contains(key_field),
        "known_hosts now holds the key: {recorded}"
    );

    remora(&sshd, &["-o", &known_opt, "ls", sshd.alias()]).ok();
}

#[test]
fn changed_host_key_is_refused_with_exit_255() {
    let sshd = Sshd::start().unwrap();
    let other = Sshd::start().unwrap();
    let known = sshd.dir().join("wrong_known_hosts");
    let wrong = other.host_public_key();
    std::fs::write(&known, format!("[127.0.0.1]:{} {}\n", sshd.port(), wrong.trim())).unwrap();
    let known_opt = format!("UserKnownHostsFile={}", known.display());

    let refused = remora(&sshd, &["-o", &known_opt, "ls", sshd.alias()]);
    assert_eq!(refused.status, 255, "{refused:?}");
    assert!(refused.stderr.contains("CHANGED"), "{refused:?}");
    assert!(
        refused.stderr.contains(&format!("{}:1", known.display())),
        "names file and line: {refused:?}"
    );
}
