//! Older OpenSSH servers: RHEL/CentOS 7 runs OpenSSH 7.4. No such sshd installs here, so the
//! harness's sshd is limited to what 7.4 offers by default (its `myproposal.h`), with an RSA
//! host key, and to each older family alone (NIST ECDH and finite-field key exchange, CTR
//! ciphers with separate MACs, RSA with SHA-2 signatures). A server older than 7.2 signs with
//! SHA-1 `ssh-rsa` only, which is refused unless ssh_config allows it, as OpenSSH 8.8+ does.
//! Real 8.x servers are covered by the Debian 11 test (OpenSSH 8.4).

use std::{path::Path, process::Command};

use crate::support::{remora, Sshd};

/// OpenSSH 7.4's default offer, less what a current sshd no longer has (it still has all of it).
const OPENSSH_7_4: &str = "KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,\
ecdh-sha2-nistp384,ecdh-sha2-nistp521,diffie-hellman-group-exchange-sha256,diffie-hellman-group16-sha512,\
diffie-hellman-group18-sha512,diffie-hellman-group14-sha256,diffie-hellman-group14-sha1\n\
Ciphers chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com\n\
MACs umac-64-etm@openssh.com,umac-128-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,\
hmac-sha1-etm@openssh.com,umac-64@openssh.com,umac-128@openssh.com,hmac-sha2-256,hmac-sha2-512,hmac-sha1\n";

/// An sshd whose only host key is RSA, signing with `signatures`, offering `lines` first.
fn rsa_host(signatures: &str, lines: &str) -> Sshd {
    let (signatures, lines) = (signatures.to_string(), lines.to_string());
    let sshd = Sshd::start_prepared(move |dir| {
        keygen_rsa(&dir.join("rsa_host_key"));
        Ok(format!(
            "HostKey {}\nHostKeyAlgorithms {signatures}\n{lines}",
            dir.join("rsa_host_key").display()
        ))
    })
    .unwrap();
    let public = std::fs::read_to_string(sshd.dir().join("rsa_host_key.pub")).unwrap();
    let known =
        std::fs::read_to_string(sshd.known_hosts()).unwrap() + &format!("[127.0.0.1]:{} {}", sshd.port(), public);
    std::fs::write(sshd.known_hosts(), known).unwrap();
    sshd
}

fn keygen_rsa(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "rsa", "-b", "2048", "-N", "", "-f"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn an_openssh_7_4_offer_and_each_older_family_alone_negotiate() {
    let cases = [
        ("rsa-sha2-512,rsa-sha2-256,ssh-rsa", OPENSSH_7_4.to_string()),
        ("rsa-sha2-256", "KexAlgorithms ecdh-sha2-nistp256\n".to_string()),
        (
            "rsa-sha2-512",
            "KexAlgorithms diffie-hellman-group14-sha256\n".to_string(),
        ),
        (
            "rsa-sha2-512",
            "KexAlgorithms diffie-hellman-group-exchange-sha256\nCiphers aes128-ctr\nMACs hmac-sha2-256\n".to_string(),
        ),
    ];
    for (signatures, lines) in cases {
        let sshd = rsa_host(signatures, &lines);
        let out = remora(&sshd, &["invoke", sshd.alias(), "--", "echo ok-$((6*7))"]);
        assert_eq!(
            (out.status, out.stdout.as_str()),
            (0, "ok-42\n"),
            "{signatures} with {lines}: {out:?}"
        );
    }
}

#[test]
fn a_server_with_only_sha1_ssh_rsa_is_refused_until_ssh_config_allows_it() {
    let sshd = rsa_host("ssh-rsa", "");
    let refused = remora(&sshd, &["invoke", sshd.alias(), "--", "echo ok"]);
    assert_eq!(refused.status, 255, "{refused:?}");
    assert!(
        refused.stderr.contains("only the SHA-1 `ssh-rsa`") && refused.stderr.contains("HostKeyAlgorithms +ssh-rsa"),
        "{refused:?}"
    );
    let allowed = remora(
        &sshd,
        &[
            "-o",
            "HostKeyAlgorithms=+ssh-rsa",
            "invoke",
            sshd.alias(),
            "--",
            "echo ok-$((6*7))",
        ],
    );
    assert_eq!((allowed.status, allowed.stdout.as_str()), (0, "ok-42\n"), "{allowed:?}");
}
