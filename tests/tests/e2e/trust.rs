//! Host trust the way OpenSSH does it for fleets: global known-hosts files, host certificates
//! through `@cert-authority`, and StrictHostKeyChecking=ask on a terminal.

use std::{path::Path, process::Command};

use crate::support::{remora, run, Sshd, TIMEOUT};

/// A file of known_hosts `text`, and the `-o` options that make it the only one read.
fn only_known_hosts(sshd: &Sshd, name: &str, text: &str) -> [String; 2] {
    let path = sshd.dir().join(name);
    std::fs::write(&path, text).unwrap();
    [
        format!("UserKnownHostsFile={}", path.display()),
        "GlobalKnownHostsFile=none".into(),
    ]
}

fn ls_with(sshd: &Sshd, options: &[String]) -> crate::support::Run {
    let mut args: Vec<&str> = Vec::new();
    for option in options {
        args.extend(["-o", option]);
    }
    args.extend(["--no-reuse", "ls", sshd.alias()]);
    remora(sshd, &args)
}

#[test]
fn a_host_known_only_through_a_global_known_hosts_file_is_trusted() {
    let sshd = Sshd::start().unwrap();
    let empty = sshd.dir().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let global = sshd.dir().join("ssh_known_hosts");
    std::fs::copy(sshd.known_hosts(), &global).unwrap();
    let user = format!("UserKnownHostsFile={}", empty.display());
    let refused = ls_with(&sshd, &[user.clone(), "GlobalKnownHostsFile=none".into()]);
    assert_eq!(refused.status, 255, "{refused:?}");
    let trusted = ls_with(&sshd, &[user, format!("GlobalKnownHostsFile={}", global.display())]);
    assert_eq!(trusted.status, 0, "{trusted:?}");
    assert_eq!(
        std::fs::read_to_string(&empty).unwrap(),
        "",
        "nothing is learned into the user file"
    );
}

/// A CA key pair in `dir`.
fn certificate_authority(dir: &Path) -> (std::path::PathBuf, String) {
    let ca = dir.join("host_ca");
    remora_testkit::generate_key(&ca, "").unwrap();
    let public = std::fs::read_to_string(ca.with_extension("pub")).unwrap();
    (ca, public.trim().to_string())
}

/// An sshd whose host key is certified by `ca` for `principals` (none when empty), valid over
/// `validity`.
fn certified_sshd(ca: &Path, principals: &str, validity: &str) -> Sshd {
    let (ca, principals, validity) = (ca.to_path_buf(), principals.to_string(), validity.to_string());
    Sshd::start_prepared(move |dir| {
        let mut keygen = Command::new("ssh-keygen");
        keygen.args(["-q", "-s"]).arg(&ca).args(["-I", "test host", "-h"]);
        if !principals.is_empty() {
            keygen.args(["-n", &principals]);
        }
        let signed = run(keygen.args(["-V", &validity]).arg(dir.join("host_key.pub")), TIMEOUT)?;
        anyhow::ensure!(
            signed.status.success(),
            "ssh-keygen: {}",
            String::from_utf8_lossy(&signed.stderr)
        );
        Ok(format!("HostCertificate {}\n", dir.join("host_key-cert.pub").display()))
    })
    .unwrap()
}

#[test]
fn a_host_certificate_signed_by_a_trusted_ca_is_accepted_and_bad_ones_are_refused() {
    let ca_dir = tempfile::tempdir().unwrap();
    let (ca, ca_public) = certificate_authority(ca_dir.path());
    let authority = format!("@cert-authority * {ca_public}\n");

    let good = certified_sshd(&ca, "127.0.0.1", "-5m:+1h");
    let trusted = ls_with(&good, &only_known_hosts(&good, "ca_known_hosts", &authority));
    assert_eq!(trusted.status, 0, "{trusted:?}");
    let untrusted = ls_with(&good, &only_known_hosts(&good, "no_ca", ""));
    assert_eq!(untrusted.status, 255, "no CA line, no plain key: unknown as before");
    let revoked = format!("{authority}@revoked * {ca_public}\n");
    let refused = ls_with(&good, &only_known_hosts(&good, "revoked_ca", &revoked));
    assert_eq!(refused.status, 255);
    assert!(refused.stderr.contains("its CA is marked @revoked"), "{refused:?}");

    let elsewhere = certified_sshd(&ca, "db.example.com", "-5m:+1h");
    let refused = ls_with(&elsewhere, &only_known_hosts(&elsewhere, "ca", &authority));
    assert_eq!(refused.status, 255);
    assert!(
        refused.stderr.contains("it names db.example.com, not 127.0.0.1"),
        "{refused:?}"
    );

    let expired = certified_sshd(&ca, "127.0.0.1", "20200101:20200102");
    let refused = ls_with(&expired, &only_known_hosts(&expired, "ca", &authority));
    assert_eq!(refused.status, 255);
    assert!(refused.stderr.contains("it expired at 2020-01-02"), "{refused:?}");
}

/// `remora ls ALIAS` with a config of one `Host ALIAS` block reaching `sshd` (plus `extra`
/// lines), trusting only the known_hosts `text`.
fn ls_alias(sshd: &Sshd, alias: &str, extra: &str, text: &str) -> crate::support::Run {
    let config = sshd.dir().join(format!("config-{alias}"));
    std::fs::write(&config, format!("{}{extra}", sshd.host_block(alias))).unwrap();
    let mut command = sshd.remora_with_config(&config);
    for option in only_known_hosts(sshd, &format!("known-{alias}"), text) {
        command.args(["-o", &option]);
    }
    let output = run(command.args(["--no-reuse", "ls", alias]), TIMEOUT).unwrap();
    crate::support::Run {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[test]
fn certificate_principals_name_the_host_name_or_host_key_alias_never_the_config_alias() {
    let ca_dir = tempfile::tempdir().unwrap();
    let (ca, ca_public) = certificate_authority(ca_dir.path());
    let authority = format!("@cert-authority * {ca_public}\n");
    let sshd = certified_sshd(&ca, "db.example.com", "-5m:+1h");

    // The alias is the principal, but HostName (127.0.0.1) is where remora connects.
    let refused = ls_alias(&sshd, "db.example.com", "", &authority);
    assert_eq!(refused.status, 255, "{refused:?}");
    assert!(
        refused.stderr.contains("it names db.example.com, not 127.0.0.1"),
        "{refused:?}"
    );
    let aliased = ls_alias(&sshd, "db", "  HostKeyAlias db.example.com\n", &authority);
    assert_eq!(aliased.status, 0, "{aliased:?}");
    // The CA line must cover the HostKeyAlias name, not 127.0.0.1.
    let elsewhere = format!("@cert-authority 127.0.0.1,[127.0.0.1]:* {ca_public}\n");
    let refused = ls_alias(&sshd, "db", "  HostKeyAlias db.example.com\n", &elsewhere);
    assert_eq!(refused.status, 255, "{refused:?}");

    let anonymous = certified_sshd(&ca, "", "-5m:+1h");
    let refused = ls_alias(&anonymous, "db", "", &authority);
    assert_eq!(refused.status, 255, "{refused:?}");
    assert!(refused.stderr.contains("it lists no principals"), "{refused:?}");
}

#[test]
fn ask_asks_on_a_terminal_and_refuses_without_one() {
    let sshd = Sshd::start().unwrap();
    let known = sshd.dir().join("asked_known_hosts");
    std::fs::write(&known, "").unwrap();
    let options = format!(
        "-o UserKnownHostsFile={} -o GlobalKnownHostsFile=none -o StrictHostKeyChecking=ask",
        known.display()
    );
    let mut headless = sshd.remora();
    // No controlling terminal, as under cron or CI.
    // SAFETY: setsid is async-signal-safe, the only call between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut headless, || {
            nix::unistd::setsid().map(drop).map_err(std::io::Error::from)
        });
    }
    headless
        .args(options.split(' '))
        .args(["--no-reuse", "ls", sshd.alias()]);
    let refused = run(&mut headless, TIMEOUT).unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(255), "{stderr}");
    assert!(stderr.contains("no terminal to ask on"), "{stderr}");

    // `script` gives remora a real terminal; `yes` is typed on it.
    let line = format!(
        "{} -F {} {options} --no-reuse ls {}",
        crate::support::binaries().remora.display(),
        sshd.ssh_config().display(),
        sshd.alias()
    );
    let mut command = sshd.agent_at(Path::new("script"));
    command
        .args(["-qec", &line, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"yes\n").unwrap();
    let output = crate::support::run_child(child, TIMEOUT).unwrap();
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{shown}");
    assert!(
        shown.contains("Are you sure you want to continue connecting (yes/no/[fingerprint])?"),
        "{shown}"
    );
    assert!(shown.contains("key fingerprint is SHA256:"), "{shown}");
    let recorded = std::fs::read_to_string(&known).unwrap();
    assert!(
        recorded.contains(sshd.host_public_key().split_whitespace().nth(1).unwrap()),
        "{recorded}"
    );
}

/// The SHA-256 fingerprint of `sshd`'s host key, as a host-key question shows it.
fn fingerprint(sshd: &Sshd) -> String {
    let listed = run(
        Command::new("ssh-keygen")
            .arg("-lf")
            .arg(sshd.dir().join("host_key.pub")),
        TIMEOUT,
    )
    .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    listed.split_whitespace().nth(1).unwrap().to_string()
}

/// The known_hosts line `sshd`'s host key is saved as.
fn saved_line(sshd: &Sshd) -> String {
    let key: Vec<&str> = sshd.host_public_key().split_whitespace().take(2).collect();
    format!("[127.0.0.1]:{} {}", sshd.port(), key.join(" "))
}

/// `remora ls h1,h2` on a real terminal, two unknown hosts (two servers) and
/// StrictHostKeyChecking=ask: each question must come alone, name its host and fingerprint,
/// and its answer (`no` for the server `decline`, `yes` otherwise) must decide for that host.
/// With `sync`, the first answer waits until both connections have a question (the client says
/// so at debug level); without, stderr carries nothing but what a user sees.
fn ask_about_two_hosts(decline: Option<usize>, sync: bool) {
    let servers = [Sshd::start().unwrap(), Sshd::start().unwrap()];
    let known = servers[0].dir().join("asked_known_hosts");
    std::fs::write(&known, "").unwrap();
    let config = servers[0].dir().join("two_hosts_config");
    let blocks = format!("{}{}", servers[0].host_block("h1"), servers[1].host_block("h2"));
    std::fs::write(&config, blocks).unwrap();
    let mut command = servers[0].remora_with_config(&config);
    command
        .args(["-o", &format!("UserKnownHostsFile={}", known.display())])
        .args(["-o", "GlobalKnownHostsFile=none", "-o", "StrictHostKeyChecking=ask"])
        .args(["ls", "h1,h2"]);
    if sync {
        // Says when each connection reaches its question, before it waits for the terminal.
        command.env("REMORA_LOG", "remora_client::ssh::host_key=debug");
    }
    let mut terminal = remora_testkit::PtyProgram::spawn(command, 50, 200).unwrap();
    let mut asked = Vec::new();
    let mut seen = 0;
    for _ in 0..2 {
        seen = terminal
            .wait_for_bytes(TIMEOUT, b"(yes/no/[fingerprint])? ", seen)
            .unwrap();
        if sync && asked.is_empty() {
            // Both hosts have a question by now: the second must wait for the first's answer.
            for sshd in &servers {
                let waiting = format!("[127.0.0.1]:{} presents an unknown", sshd.port());
                seen = seen.max(terminal.wait_for_bytes(TIMEOUT, waiting.as_bytes(), 0).unwrap());
            }
        }
        let shown = String::from_utf8_lossy(&terminal.raw()).into_owned();
        let questions = shown.matches("The authenticity of host").count();
        assert_eq!(questions, asked.len() + 1, "one question at a time:\n{shown}");
        let question = &shown[shown.rfind("The authenticity of host").unwrap()..];
        let named = |sshd: &Sshd| question.contains(&format!("'[127.0.0.1]:{}'", sshd.port()));
        let host = servers.iter().position(named).expect("the question names its host");
        assert!(!asked.contains(&host), "each host is asked about once:\n{shown}");
        assert!(question.contains(&fingerprint(&servers[host])), "{question}");
        let answer = if decline == Some(host) { "no\n" } else { "yes\n" };
        terminal.send(answer.as_bytes()).unwrap();
        asked.push(host);
    }
    let status = terminal.wait_exit(TIMEOUT).unwrap();
    let shown = String::from_utf8_lossy(&terminal.raw()).into_owned();
    assert_eq!(status.success(), decline.is_none(), "{shown}");
    // What the user saw: each question whole on lines of its own (no progress line drawn into it).
    let seen = terminal.history();
    for start in [
        "The authenticity of host '[127.0.0.1]:",
        "Are you sure you want to continue connecting (yes/no/[fingerprint])? ",
    ] {
        let whole = seen.iter().filter(|line| line.starts_with(start)).count();
        assert_eq!(whole, 2, "{start:?} begins two lines:\n{}", seen.join("\n"));
    }
    let saved = std::fs::read_to_string(&known).unwrap();
    let expected: Vec<String> = (0..2)
        .filter(|i| decline != Some(*i))
        .map(|i| saved_line(&servers[i]))
        .collect();
    let lines: Vec<&str> = saved.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{saved}");
    for line in expected {
        assert!(lines.contains(&line.as_str()), "{line} missing from:\n{saved}");
    }
}

#[test]
fn questions_for_several_hosts_come_one_at_a_time_and_yes_saves_each_hosts_own_key() {
    ask_about_two_hosts(None, true);
}

#[test]
fn no_to_one_host_and_yes_to_the_other_saves_only_the_other() {
    ask_about_two_hosts(Some(0), true);
    ask_about_two_hosts(Some(1), false);
}

#[test]
fn a_held_certified_connection_is_reused_until_its_ca_is_revoked() {
    let ca_dir = tempfile::tempdir().unwrap();
    let (ca, ca_public) = certificate_authority(ca_dir.path());
    let sshd = certified_sshd(&ca, "127.0.0.1", "-5m:+1h");
    let options = only_known_hosts(&sshd, "ca_known_hosts", &format!("@cert-authority * {ca_public}\n"));
    let call = |extra: &[&str]| {
        let mut args: Vec<&str> = Vec::new();
        for option in &options {
            args.extend(["-o", option]);
        }
        args.extend(extra);
        args.extend(["ls", sshd.alias()]);
        remora(&sshd, &args)
    };
    call(&[]).ok();
    crate::warm::wait_held(&sshd, sshd.alias());
    let before = crate::warm::logins(&sshd);
    call(&[]).ok();
    assert_eq!(
        crate::warm::logins(&sshd),
        before,
        "the certificate was trusted on the warm path"
    );
    let revoked = format!("@cert-authority * {ca_public}\n@revoked * {ca_public}\n");
    std::fs::write(sshd.dir().join("ca_known_hosts"), revoked).unwrap();
    let (warm, fresh) = (call(&[]), call(&["--no-reuse"]));
    assert_eq!(fresh.status, 255, "{fresh:?}");
    assert!(fresh.stderr.contains("its CA is marked @revoked"), "{fresh:?}");
    assert_eq!((warm.status, &warm.stderr), (255, &fresh.stderr), "{warm:?}");
}
