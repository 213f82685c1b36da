//! Host-key verification: what the user's and the global known_hosts files say, combined with
//! StrictHostKeyChecking, decided inside russh's `check_server_key` callback.
//!
//! russh turns a refusal into a bare `UnknownKey` error, so the [`Verifier`] keeps the precise
//! reason in a [`Rejection`] for `connect` to return instead. Changed and revoked keys are refused
//! whatever the policy; `accept-new` records unknown keys in the first user known_hosts file;
//! `ask` asks on the terminal as ssh does (fingerprint, then yes / no / the fingerprint typed
//! back) and refuses without one. A host certificate is trusted when an `@cert-authority` line
//! for the host names its signing CA, one of its principals (a pattern) matches HostName — or
//! HostKeyAlias when set, never the ssh_config alias — it is valid now, and neither the CA nor
//! the host key is `@revoked`; a certificate with no principals is refused, as OpenSSH refuses
//! it. remora offers certificate algorithms only to hosts that have such a line.
//!
//! HostKeyAlias, when set, is the name every lookup and record uses (verbatim, without a port),
//! as in OpenSSH.

use std::{
    io::{BufRead, Write},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use russh::{
    client,
    keys::{
        ssh_key::{certificate::CertType, Certificate, PublicKey},
        Algorithm, HashAlg, PublicKeyOrCertificate,
    },
    Preferred,
};
use wildmatch::WildMatch;

use super::{
    known_hosts::{self, HostKeyStatus},
    route, terminal, HostSettings, SshError, StrictHostKeyChecking,
};

/// Where a [`Verifier`] leaves the reason it refused a key.
#[derive(Clone, Default)]
pub struct Rejection(Arc<Mutex<Option<SshError>>>);

impl Rejection {
    /// The refusal, if the key was refused.
    pub fn take(&self) -> Option<SshError> {
        self.0
            .lock()
            .expect("never poisoned: no code panics while holding it")
            .take()
    }

    fn set(&self, error: SshError) {
        *self.0.lock().expect("never poisoned: no code panics while holding it") = Some(error);
    }
}

/// The host key, or host certificate, a connection's handshake accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifiedKey {
    Key(PublicKey),
    Certificate(Box<Certificate>),
}

impl VerifiedKey {
    /// The OpenSSH one-line form (`ssh-ed25519 AAAA…`, `ssh-ed25519-cert-v01@openssh.com AAAA…`).
    pub fn to_openssh(&self) -> Option<String> {
        match self {
            VerifiedKey::Key(key) => key.to_openssh().ok(),
            VerifiedKey::Certificate(cert) => cert.to_openssh().ok(),
        }
    }

    /// Parses the OpenSSH one-line form of a key or certificate; `None` if it is neither.
    pub fn from_openssh(text: &str) -> Option<VerifiedKey> {
        match PublicKey::from_openssh(text) {
            Ok(key) => Some(VerifiedKey::Key(key)),
            Err(_) => Certificate::from_openssh(text)
                .ok()
                .map(|cert| VerifiedKey::Certificate(Box::new(cert))),
        }
    }
}

/// Where a [`Verifier`] leaves the key it accepted.
#[derive(Clone, Default)]
pub struct Accepted(Arc<Mutex<Option<VerifiedKey>>>);

impl Accepted {
    /// The accepted key, once the handshake accepted one.
    pub fn get(&self) -> Option<VerifiedKey> {
        self.0
            .lock()
            .expect("never poisoned: no code panics while holding it")
            .clone()
    }

    fn set(&self, key: VerifiedKey) {
        *self.0.lock().expect("never poisoned: no code panics while holding it") = Some(key);
    }
}

/// russh's callback object for one connection: verifies the host key.
pub struct Verifier {
    settings: HostSettings,
    rejection: Rejection,
    accepted: Accepted,
}

impl Verifier {
    /// A verifier for `settings`, where it will leave a refusal, and where the accepted key.
    pub fn new(settings: &HostSettings) -> (Self, Rejection, Accepted) {
        let (rejection, accepted) = (Rejection::default(), Accepted::default());
        let verifier = Verifier {
            settings: settings.clone(),
            rejection: rejection.clone(),
            accepted: accepted.clone(),
        };
        (verifier, rejection, accepted)
    }
}

impl client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let settings = self.settings.clone();
        // Reading files, and maybe asking on the terminal, off the async workers.
        let check = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                let key = key.clone();
                tokio::task::spawn_blocking(move || verify(&settings, &key))
            }
            PublicKeyOrCertificate::Certificate(cert) => {
                let cert = cert.clone();
                tokio::task::spawn_blocking(move || verify_certificate(&settings, &cert, SystemTime::now()))
            }
        };
        let verdict = check.await.unwrap_or_else(|err| {
            Err(SshError::HostCertificateRefused {
                host: self.settings.alias.clone(),
                reason: format!("the check failed: {err}"),
            })
        });
        match verdict {
            Ok(()) => {
                self.accepted.set(match key {
                    PublicKeyOrCertificate::PublicKey { key, .. } => VerifiedKey::Key(key.clone()),
                    PublicKeyOrCertificate::Certificate(cert) => VerifiedKey::Certificate(Box::new(cert.clone())),
                });
                Ok(true)
            }
            Err(refusal) => {
                self.rejection.set(refusal);
                Ok(false)
            }
        }
    }
}

/// The name and port host keys are looked up and recorded under: HostKeyAlias (verbatim: port
/// 22 adds no brackets), else HostName and Port.
fn recorded_as(settings: &HostSettings) -> (String, u16) {
    match &settings.host_key_alias {
        Some(alias) => (alias.clone(), 22),
        None => (settings.hostname.clone(), settings.port),
    }
}

/// Every known_hosts file to read: the user's, then the global ones.
fn all_files(settings: &HostSettings) -> Vec<PathBuf> {
    let user = settings.known_hosts_files.iter();
    user.chain(&settings.global_known_hosts_files).cloned().collect()
}

/// Decides whether `key` may be trusted for the host of `settings`, recording it under `accept-new`
/// (or a `yes` to `ask`).
pub fn verify(settings: &HostSettings, key: &PublicKey) -> Result<(), SshError> {
    let (host, port) = recorded_as(settings);
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    let algorithm = known_hosts::key_type(&key.algorithm());
    match known_hosts::check(&all_files(settings), &host, port, key) {
        HostKeyStatus::Known => Ok(()),
        HostKeyStatus::Changed { file, line, recorded } => Err(SshError::HostKeyChanged {
            host,
            port,
            algorithm,
            fingerprint,
            recorded: known_hosts::key_type(&recorded),
            file,
            line,
        }),
        HostKeyStatus::Revoked { file, line } => Err(SshError::HostKeyRevoked { host, port, file, line }),
        HostKeyStatus::Unknown => unknown(settings, key, algorithm, fingerprint),
    }
}

/// Whether the keys another process's handshakes accepted (the connection holder's: the host's,
/// then its jump hosts', nearest first) would be accepted by `settings` now, without asking or
/// recording anything: `true` when each is known (or StrictHostKeyChecking is `no`); `false` for
/// anything a fresh connection would refuse, ask about or learn, which the caller then leaves
/// to a fresh connection.
pub fn trusts_held(settings: &HostSettings, key: &VerifiedKey, jump_keys: &[VerifiedKey]) -> bool {
    let Ok(chain) = route::jump_chain(settings) else {
        return false;
    };
    trusts_key(settings, key)
        && chain.len() == jump_keys.len()
        && chain.iter().zip(jump_keys).all(|(hop, key)| trusts_key(hop, key))
}

/// [`trusts_held`] for one host's key.
fn trusts_key(settings: &HostSettings, key: &VerifiedKey) -> bool {
    match key {
        VerifiedKey::Certificate(cert) => verify_certificate(settings, cert, SystemTime::now()).is_ok(),
        VerifiedKey::Key(key) => {
            let (host, port) = recorded_as(settings);
            match known_hosts::check(&all_files(settings), &host, port, key) {
                HostKeyStatus::Known => true,
                HostKeyStatus::Unknown => settings.strict_host_key_checking == StrictHostKeyChecking::No,
                HostKeyStatus::Changed { .. } | HostKeyStatus::Revoked { .. } => false,
            }
        }
    }
}

/// Applies StrictHostKeyChecking to a key nothing is recorded for.
fn unknown(
    settings: &HostSettings,
    key: &PublicKey,
    algorithm: &'static str,
    fingerprint: String,
) -> Result<(), SshError> {
    let (host, port) = recorded_as(settings);
    let shown = known_hosts::host_pattern(&host, port);
    let first_file = settings.known_hosts_files.first();
    let learn = |file: &PathBuf| -> Result<(), SshError> {
        known_hosts::learn(file, &host, port, key).map_err(|source| SshError::KnownHostsWrite {
            host: shown.clone(),
            path: file.clone(),
            cause: source,
        })?;
        // ssh's own wording; the user should see which key was trusted on first use.
        eprintln!("Warning: Permanently added '{shown}' ({algorithm}) to the list of known hosts.");
        Ok(())
    };
    match (settings.strict_host_key_checking, first_file) {
        (StrictHostKeyChecking::AcceptNew, Some(file)) => {
            // The notice is a whole line of its own, never inside another host's question.
            let _turn = terminal::blocking_turn();
            learn(file)
        }
        (StrictHostKeyChecking::Ask, Some(file)) if !settings.batch_mode => {
            tracing::debug!("{shown} presents an unknown {algorithm} key; waiting to ask on the terminal");
            // Asked, answered and recorded (with its notice) before another host may ask.
            let _turn = terminal::blocking_turn();
            match ask_on_terminal(&shown, algorithm, &fingerprint) {
                Some(true) => learn(file),
                Some(false) => Err(SshError::HostKeyDeclined { host: shown }),
                None => Err(unknown_error(settings, algorithm, fingerprint, true)),
            }
        }
        (StrictHostKeyChecking::No, _) => {
            tracing::warn!(
                "accepting unknown {algorithm} host key {fingerprint} for {shown} (StrictHostKeyChecking=no)"
            );
            Ok(())
        }
        (strictness, _) => Err(unknown_error(
            settings,
            algorithm,
            fingerprint,
            strictness == StrictHostKeyChecking::Ask,
        )),
    }
}

fn unknown_error(settings: &HostSettings, algorithm: &'static str, fingerprint: String, asked: bool) -> SshError {
    let (host, port) = recorded_as(settings);
    SshError::HostKeyUnknown {
        host,
        port,
        algorithm,
        fingerprint,
        known_hosts: settings.known_hosts_files.first().map_or_else(
            || "any known_hosts file (UserKnownHostsFile is none)".into(),
            |f| f.display().to_string(),
        ),
        asked,
    }
}

/// Asks on the controlling terminal, as ssh does: `Some(true)` for yes (or the fingerprint typed
/// back), `Some(false)` for no, `None` when there is no terminal.
fn ask_on_terminal(shown: &str, algorithm: &str, fingerprint: &str) -> Option<bool> {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .ok()?;
    let mut out = tty.try_clone().ok()?;
    let mut input = std::io::BufReader::new(tty);
    write!(
        out,
        "The authenticity of host '{shown}' can't be established.\r\n{algorithm} key fingerprint is {fingerprint}.\r\nAre you sure you want to continue connecting (yes/no/[fingerprint])? "
    )
    .ok()?;
    loop {
        out.flush().ok()?;
        let mut answer = String::new();
        if input.read_line(&mut answer).ok()? == 0 {
            return None;
        }
        match answer.trim() {
            "yes" => return Some(true),
            "no" => return Some(false),
            typed if typed == fingerprint => return Some(true),
            _ => write!(out, "Please type 'yes', 'no' or the fingerprint: ").ok()?,
        }
    }
}

/// Decides whether a host certificate may be trusted for the host of `settings` at `now`.
pub fn verify_certificate(settings: &HostSettings, cert: &Certificate, now: SystemTime) -> Result<(), SshError> {
    let (host, port) = recorded_as(settings);
    let (host, port) = (host.as_str(), port);
    let refuse = |reason: String| SshError::HostCertificateRefused {
        host: known_hosts::host_pattern(host, port),
        reason,
    };
    let files = all_files(settings);
    if cert.cert_type() != CertType::Host {
        return Err(refuse("it is a user certificate, not a host certificate".into()));
    }
    let ca = PublicKey::from(cert.signature_key().clone());
    let ca_fingerprint = ca.fingerprint(HashAlg::Sha256);
    if !known_hosts::authorities(&files, host, port)
        .iter()
        .any(|trusted| trusted.key_data() == ca.key_data())
    {
        return Err(refuse(format!(
            "it is signed by the CA {ca_fingerprint}, which no @cert-authority line for this host trusts"
        )));
    }
    for (what, key) in [
        ("its CA", &ca),
        ("the host key", &PublicKey::from(cert.public_key().clone())),
    ] {
        if let Some((file, line)) = known_hosts::revoked(&files, host, port, key) {
            return Err(refuse(format!("{what} is marked @revoked in {file}:{line}")));
        }
    }
    let unix = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let when = |secs: u64| humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string();
    if unix < cert.valid_after() {
        return Err(refuse(format!("it is not valid before {}", when(cert.valid_after()))));
    }
    if unix >= cert.valid_before() {
        return Err(refuse(format!("it expired at {}", when(cert.valid_before()))));
    }
    check_principals(cert.valid_principals(), host).map_err(refuse)?;
    if !cert.critical_options().is_empty() {
        return Err(refuse(
            "it carries critical options, which host certificates must not".into(),
        ));
    }
    cert.validate_at(unix, [&ca_fingerprint])
        .map_err(|_| refuse("its signature does not verify".into()))
}

/// OpenSSH's rule (`sshkey_cert_check_host`): some principal, as a pattern, matches `name`
/// (HostName, or HostKeyAlias); a certificate listing no principals is refused.
fn check_principals(principals: &[String], name: &str) -> Result<(), String> {
    if principals.is_empty() {
        return Err("it lists no principals (OpenSSH refuses such host certificates too)".into());
    }
    if !principals.iter().any(|p| WildMatch::new(p).matches(name)) {
        return Err(format!("it names {}, not {name}", principals.join(", ")));
    }
    Ok(())
}

/// Host-key algorithms to ask certificates for: those of the plain-key preference, for hosts that
/// an `@cert-authority` line covers; none otherwise (a certificate nobody can check is no use).
pub fn host_certificate_preference(settings: &HostSettings) -> Vec<Algorithm> {
    let (host, port) = recorded_as(settings);
    if known_hosts::authorities(&all_files(settings), &host, port).is_empty() {
        return Vec::new();
    }
    host_key_preference(settings)
}

/// The host-key algorithms asked for, with those known_hosts records for the host first, so a
/// host with a recorded key presents that one (OpenSSH does the same).
pub fn host_key_preference(settings: &HostSettings) -> Vec<Algorithm> {
    let (host, port) = recorded_as(settings);
    let recorded = known_hosts::recorded_algorithms(&all_files(settings), &host, port);
    let is_rsa = |a: &Algorithm| matches!(a, Algorithm::Rsa { .. });
    let same_family = |a: &Algorithm, b: &Algorithm| a == b || (is_rsa(a) && is_rsa(b));
    let (first, rest): (Vec<Algorithm>, Vec<Algorithm>) = configured_algorithms(settings)
        .into_iter()
        .partition(|algorithm| recorded.iter().any(|r| same_family(r, algorithm)));
    first.into_iter().chain(rest).collect()
}

/// SHA-1 `ssh-rsa` signatures: only for a server that offers nothing newer (OpenSSH before
/// 7.2), and only when ssh_config's HostKeyAlgorithms names it.
const SHA1_RSA: Algorithm = Algorithm::Rsa { hash: None };

/// HostKeyAlgorithms applied to russh's list: by default without `ssh-rsa`, `+list` after the
/// defaults, a plain list in its own order.
fn configured_algorithms(settings: &HostSettings) -> Vec<Algorithm> {
    let defaults = Preferred::DEFAULT.key.iter().filter(|a| **a != SHA1_RSA).cloned();
    let parse = |list: &str| -> Vec<Algorithm> { list.split(',').filter_map(|n| n.trim().parse().ok()).collect() };
    match settings.host_key_algorithms.as_deref() {
        None => defaults.collect(),
        Some(value) => match value.strip_prefix('+') {
            Some(added) => {
                let mut all: Vec<Algorithm> = defaults.collect();
                for algorithm in parse(added) {
                    if !all.contains(&algorithm) {
                        all.push(algorithm);
                    }
                }
                all
            }
            None => parse(value),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::{path::PathBuf, time::Duration};

    use super::*;
    use crate::ssh::known_hosts::tests::key_of;

    fn settings(known_hosts: PathBuf, strictness: StrictHostKeyChecking) -> HostSettings {
        HostSettings {
            alias: "box".into(),
            identities_only: false,
            strict_host_key_checking: strictness,
            server_alive_interval: Some(Duration::from_secs(1)),
            ..HostSettings::for_tests(2222, known_hosts)
        }
    }

    #[test]
    fn sha1_ssh_rsa_is_asked_for_only_when_host_key_algorithms_adds_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = settings(dir.path().join("known_hosts"), StrictHostKeyChecking::Yes);
        assert!(!host_key_preference(&settings).contains(&SHA1_RSA));
        assert!(host_key_preference(&settings).contains(&Algorithm::Rsa {
            hash: Some(russh::keys::HashAlg::Sha512)
        }));
        settings.host_key_algorithms = Some("+ssh-rsa".into());
        assert_eq!(
            host_key_preference(&settings).last(),
            Some(&SHA1_RSA),
            "after every default"
        );
        settings.host_key_algorithms = Some("rsa-sha2-256,ssh-ed25519".into());
        assert_eq!(
            host_key_preference(&settings),
            [
                Algorithm::Rsa {
                    hash: Some(russh::keys::HashAlg::Sha256)
                },
                Algorithm::Ed25519
            ]
        );
    }

    #[test]
    fn unknown_keys_follow_the_policy() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ssh").join("known_hosts");
        let key = key_of(Algorithm::Ed25519);
        for strictness in [StrictHostKeyChecking::Yes, StrictHostKeyChecking::Ask] {
            let err = verify(&settings(file.clone(), strictness), &key).unwrap_err();
            assert!(
                err.to_string().starts_with("no host key for [127.0.0.1]:2222 in "),
                "{err}"
            );
            assert_eq!(
                err.to_string().contains("ask"),
                strictness == StrictHostKeyChecking::Ask
            );
        }
        verify(&settings(file.clone(), StrictHostKeyChecking::No), &key).unwrap();
        assert!(!file.exists(), "`no` records nothing");
        verify(&settings(file.clone(), StrictHostKeyChecking::AcceptNew), &key).unwrap();
        verify(&settings(file.clone(), StrictHostKeyChecking::Yes), &key).unwrap();
    }

    #[test]
    fn changed_keys_are_refused_whatever_the_policy() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_hosts");
        let old = key_of(Algorithm::Ed25519);
        std::fs::write(&file, format!("[127.0.0.1]:2222 {}\n", old.to_openssh().unwrap())).unwrap();
        let new = key_of(Algorithm::Ed25519);
        for strictness in [StrictHostKeyChecking::No, StrictHostKeyChecking::AcceptNew] {
            let err = verify(&settings(file.clone(), strictness), &new).unwrap_err();
            assert!(matches!(err, SshError::HostKeyChanged { line: 1, .. }), "{err}");
            assert!(err.to_string().contains(&format!("{}:1", file.display())), "{err}");
        }
    }

    #[test]
    fn recorded_host_key_types_are_preferred() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_hosts");
        let settings = settings(file.clone(), StrictHostKeyChecking::Yes);
        let defaults: Vec<Algorithm> = Preferred::DEFAULT
            .key
            .iter()
            .filter(|a| **a != SHA1_RSA)
            .cloned()
            .collect();
        assert_eq!(host_key_preference(&settings), defaults);
        let ecdsa = key_of(Algorithm::Ecdsa {
            curve: russh::keys::EcdsaCurve::NistP384,
        });
        std::fs::write(&file, format!("[127.0.0.1]:2222 {}\n", ecdsa.to_openssh().unwrap())).unwrap();
        let order = host_key_preference(&settings);
        assert_eq!(order[0], ecdsa.algorithm(), "{order:?}");
        assert_eq!(order.len(), defaults.len());
    }

    #[test]
    fn principals_are_patterns_for_one_name_and_none_is_refused() {
        let names = |list: &[&str]| list.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        check_principals(&names(&["db.example.com", "10.0.0.1"]), "10.0.0.1").unwrap();
        check_principals(&names(&["*.example.com"]), "db.example.com").unwrap();
        let err = check_principals(&names(&["db.example.com"]), "127.0.0.1").unwrap_err();
        assert_eq!(err, "it names db.example.com, not 127.0.0.1");
        assert!(check_principals(&[], "127.0.0.1")
            .unwrap_err()
            .contains("no principals"));
    }

    #[test]
    fn host_key_alias_is_the_name_keys_are_known_and_learned_under() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_hosts");
        let key = key_of(Algorithm::Ed25519);
        std::fs::write(&file, format!("db-alias {}\n", key.to_openssh().unwrap())).unwrap();
        let plain = settings(file.clone(), StrictHostKeyChecking::Yes);
        assert!(verify(&plain, &key).is_err(), "[127.0.0.1]:2222 is not recorded");
        let aliased = HostSettings {
            host_key_alias: Some("db-alias".into()),
            ..plain
        };
        verify(&aliased, &key).unwrap();
        let learning = HostSettings {
            host_key_alias: Some("other-alias".into()),
            strict_host_key_checking: StrictHostKeyChecking::AcceptNew,
            ..aliased
        };
        verify(&learning, &key_of(Algorithm::Ed25519)).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.lines().last().unwrap().starts_with("other-alias ssh-ed25519 "),
            "{text}"
        );
    }

    #[test]
    fn a_held_key_is_trusted_as_a_fresh_connection_would_trust_it_without_asking_or_learning() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_hosts");
        let key = key_of(Algorithm::Ed25519);
        let held = VerifiedKey::Key(key.clone());
        let asking = HostSettings {
            batch_mode: false,
            ..settings(file.clone(), StrictHostKeyChecking::Ask)
        };
        for strictness in [StrictHostKeyChecking::Ask, StrictHostKeyChecking::AcceptNew] {
            let settings = HostSettings {
                strict_host_key_checking: strictness,
                ..asking.clone()
            };
            assert!(
                !trusts_held(&settings, &held, &[]),
                "unknown: left to a fresh connection"
            );
        }
        assert!(!file.exists(), "nothing was learned");
        assert!(trusts_held(
            &settings(file.clone(), StrictHostKeyChecking::No),
            &held,
            &[]
        ));
        let recorded = format!("[127.0.0.1]:2222 {}\n", key.to_openssh().unwrap());
        std::fs::write(&file, &recorded).unwrap();
        assert!(trusts_held(&asking, &held, &[]));
        assert!(
            !trusts_held(&asking, &held, std::slice::from_ref(&held)),
            "no jump host was configured"
        );
        let other = VerifiedKey::Key(key_of(Algorithm::Ed25519));
        assert!(!trusts_held(&asking, &other, &[]), "changed");
        std::fs::write(&file, format!("{recorded}@revoked * {}\n", key.to_openssh().unwrap())).unwrap();
        assert!(!trusts_held(&asking, &held, &[]), "revoked");
        let text = held.to_openssh().unwrap();
        assert_eq!(VerifiedKey::from_openssh(&text), Some(held));
        assert_eq!(VerifiedKey::from_openssh("not a key"), None);
    }
}
