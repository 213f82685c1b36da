//! OpenSSH known_hosts files: reading what they record for a host and appending new keys.
//! Understands plain and hashed (`|1|salt|hash`) names, `[host]:port` for other ports, comma
//! lists, wildcards and negation, and `@revoked`. russh's own helpers fail on the first line they
//! cannot parse and know no markers, hence this module.
//!
//! `@cert-authority` lines name the CAs whose host certificates are trusted for the hosts they
//! match.
//!
//! Invariant: a line remora cannot use (an unknown marker, garbage) is skipped with a warning
//! naming file and line, never misread. The trust policy built on this lives in `host_key.rs`.

use std::{
    fs,
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::Path,
};

use data_encoding::BASE64;
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::{parse_public_key_base64, ssh_key::PublicKey, Algorithm};
use sha1::Sha1;
use wildmatch::WildMatch;

/// What the known_hosts files say about a host's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyStatus {
    /// The key is recorded for the host.
    Known,
    /// Nothing is recorded for the host.
    Unknown,
    /// Other keys are recorded for the host: of the same type (the key changed), or only of other types.
    Changed {
        file: String,
        line: usize,
        recorded: Algorithm,
    },
    /// The key is marked `@revoked`.
    Revoked { file: String, line: usize },
}

/// The name a host is recorded under: `host`, or `[host]:port` for ports other than 22.
pub fn host_pattern(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// The key type as ssh shows it: `ED25519`, `ECDSA`, `RSA`.
pub fn key_type(algorithm: &Algorithm) -> &'static str {
    match algorithm {
        Algorithm::Dsa => "DSA",
        Algorithm::Ecdsa { .. } => "ECDSA",
        Algorithm::Ed25519 => "ED25519",
        Algorithm::Rsa { .. } => "RSA",
        Algorithm::SkEcdsaSha2NistP256 => "ECDSA-SK",
        Algorithm::SkEd25519 => "ED25519-SK",
        _ => "UNKNOWN-TYPE",
    }
}

/// Checks `key` for `host:port` against every file. A revoked mark wins over everything, a
/// recorded key over other keys, and a different key of the same type over other types.
pub fn check(files: &[impl AsRef<Path>], host: &str, port: u16, key: &PublicKey) -> HostKeyStatus {
    let mut known = false;
    let mut same_type = None;
    let mut other_type = None;
    for found in recorded(files, host, port).into_iter().filter(|f| !f.authority) {
        let same_key = found.key.key_data() == key.key_data();
        match (found.revoked, same_key) {
            (true, true) => {
                return HostKeyStatus::Revoked {
                    file: found.file,
                    line: found.line,
                }
            }
            (true, false) => {}
            (false, true) => known = true,
            (false, false) if found.key.algorithm() == key.algorithm() => {
                same_type.get_or_insert(found);
            }
            (false, false) => {
                other_type.get_or_insert(found);
            }
        }
    }
    match (known, same_type.or(other_type)) {
        (true, _) => HostKeyStatus::Known,
        (false, Some(found)) => HostKeyStatus::Changed {
            recorded: found.key.algorithm(),
            file: found.file,
            line: found.line,
        },
        (false, None) => HostKeyStatus::Unknown,
    }
}

/// The certificate authorities `@cert-authority` lines trust for `host:port`.
pub fn authorities(files: &[impl AsRef<Path>], host: &str, port: u16) -> Vec<PublicKey> {
    recorded(files, host, port)
        .into_iter()
        .filter(|f| f.authority)
        .map(|f| f.key)
        .collect()
}

/// Where `key` is marked `@revoked` for `host:port`, if it is.
pub fn revoked(files: &[impl AsRef<Path>], host: &str, port: u16, key: &PublicKey) -> Option<(String, usize)> {
    recorded(files, host, port)
        .into_iter()
        .find(|f| f.revoked && f.key.key_data() == key.key_data())
        .map(|f| (f.file, f.line))
}

/// The algorithms of the (not revoked) keys recorded for `host:port`, first recorded first.
pub fn recorded_algorithms(files: &[impl AsRef<Path>], host: &str, port: u16) -> Vec<Algorithm> {
    let mut algorithms = Vec::new();
    for found in recorded(files, host, port)
        .into_iter()
        .filter(|f| !f.revoked && !f.authority)
    {
        if !algorithms.contains(&found.key.algorithm()) {
            algorithms.push(found.key.algorithm());
        }
    }
    algorithms
}

/// Appends `key` for `host:port` to `file`, creating it (0600) and its directory (0700).
pub fn learn(file: &Path, host: &str, port: u16, key: &PublicKey) -> std::io::Result<()> {
    if let Some(dir) = file.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let openssh = key.to_openssh().map_err(std::io::Error::other)?;
    let key_fields: Vec<&str> = openssh.split_whitespace().take(2).collect();
    let needs_newline = fs::read(file).is_ok_and(|bytes| bytes.last().is_some_and(|b| *b != b'\n'));
    let mut out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(file)?;
    let prefix = if needs_newline { "\n" } else { "" };
    writeln!(out, "{prefix}{} {}", host_pattern(host, port), key_fields.join(" "))
}

/// A line recorded for the host being checked.
struct Found {
    file: String,
    line: usize,
    key: PublicKey,
    revoked: bool,
    /// An `@cert-authority` line: `key` is a CA.
    authority: bool,
}

/// Every usable line of `files` that names `host:port`, in order.
fn recorded(files: &[impl AsRef<Path>], host: &str, port: u16) -> Vec<Found> {
    let name = host_pattern(host, port);
    let mut found = Vec::new();
    for file in files {
        let file = file.as_ref();
        let text = match fs::read_to_string(file) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => {
                tracing::warn!("cannot read known_hosts file {}: {err}; skipping it", file.display());
                continue;
            }
        };
        for (index, line) in text.lines().enumerate() {
            let Some(entry) = parse_line(line, file, index + 1) else {
                continue;
            };
            if entry.matches(&name) {
                found.push(Found {
                    file: file.display().to_string(),
                    line: index + 1,
                    key: entry.key,
                    revoked: entry.revoked,
                    authority: entry.authority,
                });
            }
        }
    }
    found
}

/// One usable known_hosts line.
struct KnownHost {
    hosts: String,
    key: PublicKey,
    revoked: bool,
    authority: bool,
}

fn parse_line(line: &str, file: &Path, number: usize) -> Option<KnownHost> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut fields = line.split_whitespace();
    let mut hosts = fields.next()?;
    let (revoked, authority) = match hosts {
        "@revoked" => (true, false),
        "@cert-authority" => (false, true),
        _ if hosts.starts_with('@') => {
            tracing::warn!("{}:{number}: unknown marker {hosts}; skipping the line", file.display());
            return None;
        }
        _ => (false, false),
    };
    if revoked || authority {
        hosts = fields.next().unwrap_or_default();
    }
    let (_algorithm, blob) = (fields.next(), fields.next());
    match blob.map(parse_public_key_base64) {
        Some(Ok(key)) => Some(KnownHost {
            hosts: hosts.to_string(),
            key,
            revoked,
            authority,
        }),
        _ => {
            tracing::warn!(
                "{}:{number}: not a known_hosts entry remora understands; skipping it",
                file.display()
            );
            None
        }
    }
}

impl KnownHost {
    /// OpenSSH semantics: a negated match vetoes; otherwise any positive match counts.
    fn matches(&self, name: &str) -> bool {
        let mut matched = false;
        for pattern in self.hosts.split(',') {
            if let Some(hashed) = pattern.strip_prefix("|1|") {
                matched |= hashed_matches(hashed, name);
            } else if let Some(negated) = pattern.strip_prefix('!') {
                if WildMatch::new_case_insensitive(negated).matches(name) {
                    return false;
                }
            } else {
                matched |= WildMatch::new_case_insensitive(pattern).matches(name);
            }
        }
        matched
    }
}

/// `salt|hash` (base64) matches when HMAC-SHA1(salt, name) == hash.
fn hashed_matches(salt_and_hash: &str, name: &str) -> bool {
    let Some((salt, hash)) = salt_and_hash.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (BASE64.decode(salt.as_bytes()), BASE64.decode(hash.as_bytes())) else {
        return false;
    };
    let Ok(mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(&salt) else {
        return false;
    };
    mac.chain_update(name.as_bytes()).verify_slice(&hash).is_ok()
}

#[cfg(test)]
pub(super) mod tests {
    use std::os::unix::fs::PermissionsExt;

    use russh::keys::{EcdsaCurve, PrivateKey};

    use super::*;

    /// A fresh public key of `algorithm`.
    pub fn key_of(algorithm: Algorithm) -> PublicKey {
        PrivateKey::random(&mut rand::rng(), algorithm)
            .unwrap()
            .public_key()
            .clone()
    }

    fn key() -> PublicKey {
        key_of(Algorithm::Ed25519)
    }

    fn line(hosts: &str, key: &PublicKey) -> String {
        format!("{hosts} {}\n", key.to_openssh().unwrap())
    }

    fn hashed(name: &str) -> String {
        let salt = [7u8; 20];
        let mac = <Hmac<Sha1> as KeyInit>::new_from_slice(&salt)
            .unwrap()
            .chain_update(name.as_bytes());
        let hash = mac.finalize().into_bytes();
        format!("|1|{}|{}", BASE64.encode(&salt), BASE64.encode(&hash))
    }

    fn check_text(text: &str, host: &str, port: u16, key: &PublicKey) -> HostKeyStatus {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        fs::write(&path, text).unwrap();
        check(&[path], host, port, key)
    }

    #[test]
    fn plain_bracketed_wildcard_and_hashed_entries_match() {
        let k = key();
        let status = |text: &str, host, port| check_text(text, host, port, &k);
        assert_eq!(
            status(&line("web01,10.0.0.1", &k), "10.0.0.1", 22),
            HostKeyStatus::Known
        );
        assert_eq!(status(&line("WEB01", &k), "web01", 22), HostKeyStatus::Known);
        assert_eq!(status(&line("[web01]:2222", &k), "web01", 2222), HostKeyStatus::Known);
        assert_eq!(
            status(&line("*.example.com", &k), "a.example.com", 22),
            HostKeyStatus::Known
        );
        let negated = line("*.example.com,!bad.example.com", &k);
        assert_eq!(status(&negated, "bad.example.com", 22), HostKeyStatus::Unknown);
        assert_eq!(status(&line(&hashed("[h]:2200"), &k), "h", 2200), HostKeyStatus::Known);
        assert_eq!(status(&line(&hashed("web01"), &k), "web01", 22), HostKeyStatus::Known);
        assert_eq!(status(&line(&hashed("web01"), &k), "web02", 22), HostKeyStatus::Unknown);
        assert_eq!(status(&line("web01", &k), "web01", 2222), HostKeyStatus::Unknown);
        assert_eq!(status(&line("[web01]:22", &k), "web01", 22), HostKeyStatus::Unknown);
    }

    #[test]
    fn a_different_key_is_a_change_with_its_line() {
        let (old, new) = (key(), key());
        let authority = format!("@cert-authority * {}\n", old.to_openssh().unwrap());
        let text = format!("# comment\ngarbage line\n{authority}{}", line("web01", &old));
        let status = check_text(&text, "web01", 22, &new);
        assert!(
            matches!(
                status,
                HostKeyStatus::Changed {
                    line: 4,
                    recorded: Algorithm::Ed25519,
                    ..
                }
            ),
            "{status:?}"
        );
    }

    #[test]
    fn another_recorded_key_of_the_same_host_still_counts_as_known() {
        let (old, new) = (key(), key());
        let text = format!("{}{}", line("web01", &old), line("web01", &new));
        assert_eq!(check_text(&text, "web01", 22, &new), HostKeyStatus::Known);
    }

    #[test]
    fn only_other_types_recorded_is_a_change() {
        let ecdsa = key_of(Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256,
        });
        let status = check_text(&line("web01", &ecdsa), "web01", 22, &key());
        assert!(
            matches!(&status, HostKeyStatus::Changed { line: 1, recorded, .. } if *recorded == ecdsa.algorithm()),
            "{status:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        fs::write(&path, line("web01", &ecdsa)).unwrap();
        assert_eq!(recorded_algorithms(&[&path], "web01", 22), [ecdsa.algorithm()]);
    }

    #[test]
    fn revoked_keys_are_refused_even_when_also_recorded() {
        let k = key();
        let text = format!("{}@revoked * {}", line("web01", &k), k.to_openssh().unwrap());
        let status = check_text(&text, "web01", 22, &k);
        assert!(matches!(status, HostKeyStatus::Revoked { line: 2, .. }), "{status:?}");
    }

    #[test]
    fn learned_keys_are_known_afterwards() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("known_hosts");
        let k = key();
        assert_eq!(check(&[&path], "h", 2222, &k), HostKeyStatus::Unknown);
        learn(&path, "h", 2222, &k).unwrap();
        assert_eq!(check(&[&path], "h", 2222, &k), HostKeyStatus::Known);
        assert!(fs::read_to_string(&path).unwrap().starts_with("[h]:2222 ssh-ed25519 "));
        learn(&path, "h", 22, &k).unwrap();
        assert_eq!(check(&[&path], "h", 22, &k), HostKeyStatus::Known);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&path), mode(path.parent().unwrap())), (0o600, 0o700));
    }
}
