//! Host-key verification against OpenSSH known_hosts files: plain and hashed (`|1|salt|hash`)
//! names, `[host]:port` for other ports, comma lists, wildcards and negation, `@revoked`.
//! Lines remora cannot use are skipped with a warning naming file and line, never misread.

use std::{
    fs,
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::Path,
};

use data_encoding::BASE64;
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::{parse_public_key_base64, ssh_key::PublicKey};
use sha1::Sha1;
use wildmatch::WildMatch;

/// What the known_hosts files say about a host's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyStatus {
    Known,
    /// Nothing recorded for this key type; `other_types` says whether other key types are.
    Unknown {
        other_types: bool,
    },
    Changed {
        file: String,
        line: usize,
    },
    Revoked {
        file: String,
        line: usize,
    },
}

/// The name a host is recorded under: `host`, or `[host]:port` for ports other than 22.
pub fn host_pattern(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Checks `key` for `host:port` against every file, in order.
pub fn check(files: &[impl AsRef<Path>], host: &str, port: u16, key: &PublicKey) -> HostKeyStatus {
    let name = host_pattern(host, port);
    let mut other_types = false;
    let mut changed = None;
    for file in files {
        let file = file.as_ref();
        let Ok(text) = fs::read_to_string(file) else {
            continue;
        };
        for (index, line) in text.lines().enumerate() {
            let Some(entry) = parse_line(line, file, index + 1) else {
                continue;
            };
            if !entry.matches(&name) {
                continue;
            }
            let location = (file.display().to_string(), index + 1);
            if entry.revoked {
                if entry.key == *key {
                    return HostKeyStatus::Revoked {
                        file: location.0,
                        line: location.1,
                    };
                }
                continue;
            }
            if entry.key == *key {
                return HostKeyStatus::Known;
            }
            if entry.key.algorithm() == key.algorithm() {
                changed.get_or_insert(location);
            } else {
                other_types = true;
            }
        }
    }
    match changed {
        Some((file, line)) => HostKeyStatus::Changed { file, line },
        None => HostKeyStatus::Unknown { other_types },
    }
}

/// Appends `key` for `host:port` to `file`, creating it (0600) and its directory (0700).
pub fn learn(file: &Path, host: &str, port: u16, key: &PublicKey) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let openssh = key.to_openssh().map_err(std::io::Error::other)?;
    let key_fields: Vec<&str> = openssh.split_whitespace().take(2).collect();
    let mut out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(file)?;
    let needs_newline = fs::read(file).is_ok_and(|bytes| bytes.last().is_some_and(|b| *b != b'\n'));
    let prefix = if needs_newline { "\n" } else { "" };
    writeln!(out, "{prefix}{} {}", host_pattern(host, port), key_fields.join(" "))
}

/// One usable known_hosts line.
struct KnownHost {
    hosts: String,
    key: PublicKey,
    revoked: bool,
}

fn parse_line(line: &str, file: &Path, number: usize) -> Option<KnownHost> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut fields = line.split_whitespace();
    let mut first = fields.next()?;
    let mut revoked = false;
    if let Some(marker) = first.strip_prefix('@') {
        match marker {
            "revoked" => revoked = true,
            _ => {
                tracing::warn!(
                    "{}:{number}: @{marker} lines are not supported; skipping",
                    file.display()
                );
                return None;
            }
        }
        first = fields.next()?;
    }
    let (_algorithm, blob) = (fields.next(), fields.next());
    match blob.map(parse_public_key_base64) {
        Some(Ok(key)) => Some(KnownHost {
            hosts: first.to_string(),
            key,
            revoked,
        }),
        _ => {
            tracing::warn!(
                "{}:{number}: not a known_hosts entry remora understands; skipping",
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
                if WildMatch::new(negated).matches(name) {
                    return false;
                }
            } else {
                matched |= WildMatch::new(pattern).matches(name);
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
mod tests {
    use russh::keys::{Algorithm, PrivateKey};

    use super::*;

    fn key() -> PublicKey {
        PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
            .unwrap()
            .public_key()
            .clone()
    }

    fn line(hosts: &str, key: &PublicKey) -> String {
        format!("{hosts} {}\n", key.to_openssh().unwrap())
    }

    fn hashed(name: &str) -> String {
        let salt = [7u8; 20];
        let mac = <Hmac<Sha1> as KeyInit>::new_from_slice(&salt)
            .unwrap()
            .chain_update(name.as_bytes());
        format!(
            "|1|{}|{}",
            BASE64.encode(&salt),
            BASE64.encode(&mac.finalize().into_bytes())
        )
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
        assert_eq!(
            check_text(&line("web01,10.0.0.1", &k), "10.0.0.1", 22, &k),
            HostKeyStatus::Known
        );
        assert_eq!(
            check_text(&line("[web01]:2222", &k), "web01", 2222, &k),
            HostKeyStatus::Known
        );
        assert_eq!(
            check_text(&line("*.example.com,!bad.example.com", &k), "a.example.com", 22, &k),
            HostKeyStatus::Known
        );
        assert!(matches!(
            check_text(&line("*.example.com,!bad.example.com", &k), "bad.example.com", 22, &k),
            HostKeyStatus::Unknown { .. }
        ));
        assert_eq!(
            check_text(&line(&hashed("[h]:2200"), &k), "h", 2200, &k),
            HostKeyStatus::Known
        );
        assert!(matches!(
            check_text(&line("web01", &k), "web01", 2222, &k),
            HostKeyStatus::Unknown { .. }
        ));
    }

    #[test]
    fn a_different_key_is_a_change_with_its_line() {
        let (old, new) = (key(), key());
        let text = format!("# comment\ngarbage line\n{}", line("web01", &old));
        let status = check_text(&text, "web01", 22, &new);
        assert!(matches!(status, HostKeyStatus::Changed { line: 3, .. }), "{status:?}");
    }

    #[test]
    fn revoked_keys_are_refused() {
        let k = key();
        let status = check_text(&format!("@revoked {}", line("web01", &k)), "web01", 22, &k);
        assert!(matches!(status, HostKeyStatus::Revoked { line: 1, .. }), "{status:?}");
    }

    #[test]
    fn learned_keys_are_known_afterwards() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("known_hosts");
        let k = key();
        assert!(matches!(
            check(&[&path], "h", 2222, &k),
            HostKeyStatus::Unknown { other_types: false }
        ));
        learn(&path, "h", 2222, &k).unwrap();
        assert_eq!(check(&[&path], "h", 2222, &k), HostKeyStatus::Known);
        assert!(fs::read_to_string(&path).unwrap().starts_with("[h]:2222 ssh-ed25519 "));
    }
}
