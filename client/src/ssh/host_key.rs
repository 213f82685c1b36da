//! Host-key verification: what known_hosts says, combined with StrictHostKeyChecking, decided
//! inside russh's `check_server_key` callback.
//!
//! russh turns a refusal into a bare `UnknownKey` error, so the [`Verifier`] keeps the precise
//! reason in a [`Rejection`] for `connect` to return instead. Changed and revoked keys are refused
//! whatever the policy; `accept-new` records unknown keys in the first known_hosts file.

use std::sync::{Arc, Mutex};

use russh::{
    client,
    keys::{ssh_key::PublicKey, Algorithm, HashAlg, PublicKeyOrCertificate},
    Preferred,
};

use super::{
    known_hosts::{self, HostKeyStatus},
    HostSettings, SshError, StrictHostKeyChecking,
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

/// russh's callback object for one connection: verifies the host key.
pub struct Verifier {
    settings: HostSettings,
    rejection: Rejection,
}

impl Verifier {
    /// A verifier for `settings`, and where it will leave a refusal.
    pub fn new(settings: &HostSettings) -> (Self, Rejection) {
        let rejection = Rejection::default();
        let verifier = Verifier {
            settings: settings.clone(),
            rejection: rejection.clone(),
        };
        (verifier, rejection)
    }
}

impl client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let verdict = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => verify(&self.settings, key),
            PublicKeyOrCertificate::Certificate(_) => Err(SshError::HostCertificate {
                host: self.settings.alias.clone(),
            }),
        };
        match verdict {
            Ok(()) => Ok(true),
            Err(refusal) => {
                self.rejection.set(refusal);
                Ok(false)
            }
        }
    }
}

/// Decides whether `key` may be trusted for the host of `settings`, recording it under `accept-new`.
pub fn verify(settings: &HostSettings, key: &PublicKey) -> Result<(), SshError> {
    let (host, port) = (settings.hostname.clone(), settings.port);
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    let algorithm = known_hosts::key_type(&key.algorithm());
    match known_hosts::check(&settings.known_hosts_files, &host, port, key) {
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

/// Applies StrictHostKeyChecking to a key nothing is recorded for.
fn unknown(
    settings: &HostSettings,
    key: &PublicKey,
    algorithm: &'static str,
    fingerprint: String,
) -> Result<(), SshError> {
    let (host, port) = (settings.hostname.clone(), settings.port);
    let shown = known_hosts::host_pattern(&host, port);
    let first_file = settings.known_hosts_files.first();
    match (settings.strict_host_key_checking, first_file) {
        (StrictHostKeyChecking::AcceptNew, Some(file)) => {
            known_hosts::learn(file, &host, port, key).map_err(|source| SshError::KnownHostsWrite {
                host: shown.clone(),
                path: file.clone(),
                cause: source,
            })?;
            // ssh's own wording; the user should see which key was trusted on first use.
            eprintln!("Warning: Permanently added '{shown}' ({algorithm}) to the list of known hosts.");
            Ok(())
        }
        (StrictHostKeyChecking::No, _) => {
            tracing::warn!(
                "accepting unknown {algorithm} host key {fingerprint} for {shown} (StrictHostKeyChecking=no)"
            );
            Ok(())
        }
        (strictness, _) => Err(SshError::HostKeyUnknown {
            host,
            port,
            algorithm,
            fingerprint,
            known_hosts: first_file.map_or_else(
                || "any known_hosts file (UserKnownHostsFile is none)".into(),
                |f| f.display().to_string(),
            ),
            asked: strictness == StrictHostKeyChecking::Ask,
        }),
    }
}

/// russh's host-key algorithms with those known_hosts records for the host first, so a host with a
/// recorded key presents that one (OpenSSH does the same).
pub fn host_key_preference(settings: &HostSettings) -> Vec<Algorithm> {
    let recorded = known_hosts::recorded_algorithms(&settings.known_hosts_files, &settings.hostname, settings.port);
    let is_rsa = |a: &Algorithm| matches!(a, Algorithm::Rsa { .. });
    let same_family = |a: &Algorithm, b: &Algorithm| a == b || (is_rsa(a) && is_rsa(b));
    let (first, rest): (Vec<Algorithm>, Vec<Algorithm>) = Preferred::DEFAULT
        .key
        .iter()
        .cloned()
        .partition(|algorithm| recorded.iter().any(|r| same_family(r, algorithm)));
    first.into_iter().chain(rest).collect()
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
        assert_eq!(host_key_preference(&settings), Preferred::DEFAULT.key.to_vec());
        let ecdsa = key_of(Algorithm::Ecdsa {
            curve: russh::keys::EcdsaCurve::NistP384,
        });
        std::fs::write(&file, format!("[127.0.0.1]:2222 {}\n", ecdsa.to_openssh().unwrap())).unwrap();
        let order = host_key_preference(&settings);
        assert_eq!(order[0], ecdsa.algorithm(), "{order:?}");
        assert_eq!(order.len(), Preferred::DEFAULT.key.len());
    }
}
