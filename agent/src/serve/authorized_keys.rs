//! OpenSSH authorized_keys for the embedded server. Key options the server cannot honour
//! (`command=`, `from=`, `permitopen=`, …) make it refuse that key, loudly: silently ignoring a
//! restriction would grant more than the file says.

use std::{fs, path::Path};

use russh::keys::{parse_public_key_base64, ssh_key::PublicKey};
use tracing::warn;

use crate::error::{AgentError, Result};

/// Options that only take away what this server never offers anyway.
const HARMLESS_OPTIONS: &[&str] = &[
    "restrict",
    "no-pty",
    "no-port-forwarding",
    "no-agent-forwarding",
    "no-x11-forwarding",
    "no-user-rc",
];

/// One usable key line.
#[derive(Debug, Clone)]
pub(crate) struct AuthorizedKey {
    pub key: PublicKey,
    pub line: usize,
}

/// The keys that may log in.
#[derive(Debug, Default)]
pub(crate) struct AuthorizedKeys {
    pub keys: Vec<AuthorizedKey>,
}

impl AuthorizedKeys {
    /// Reads and parses a file; unusable lines are skipped with a warning naming the line.
    pub(crate) fn read(path: &Path) -> Result<Self> {
        let text = fs::read_to_string(path).map_err(AgentError::io("cannot read authorized keys", path))?;
        Ok(Self::parse(&text, &path.display().to_string()))
    }

    /// Parses authorized_keys text; `origin` names it in warnings.
    pub(crate) fn parse(text: &str, origin: &str) -> Self {
        let keys = text
            .lines()
            .enumerate()
            .filter_map(|(index, line)| match parse_line(line) {
                Ok(None) => None,
                Ok(Some(key)) => Some(AuthorizedKey { key, line: index + 1 }),
                Err(reason) => {
                    warn!("refusing line {} of {origin}: {reason}", index + 1);
                    None
                }
            })
            .collect();
        Self { keys }
    }

    /// The line that lets `key` log in, if one does (like sshd, the log names it).
    pub(crate) fn allowing_line(&self, key: &PublicKey) -> Option<usize> {
        self.keys
            .iter()
            .find(|k| k.key.key_data() == key.key_data())
            .map(|k| k.line)
    }
}

/// Why a line of authorized_keys is not used.
#[derive(Debug, thiserror::Error)]
enum BadLine {
    #[error("not a `type base64-key [comment]` line")]
    Shape,
    #[error("the key does not parse ({0})")]
    Key(String),
    #[error("option {0} is not supported by remora-agent serve, so this key is refused")]
    Option(String),
}

fn parse_line(line: &str) -> Result<Option<PublicKey>, BadLine> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (options, rest) = split_options(line);
    if let Some(options) = options {
        check_options(options)?;
    }
    let mut fields = rest.split_whitespace();
    let (Some(_algorithm), Some(blob)) = (fields.next(), fields.next()) else {
        return Err(BadLine::Shape);
    };
    parse_public_key_base64(blob)
        .map(Some)
        .map_err(|err| BadLine::Key(err.to_string()))
}

/// Splits leading options (anything not starting like a key type) from the key.
fn split_options(line: &str) -> (Option<&str>, &str) {
    let looks_like_key = |s: &str| s.starts_with("ssh-") || s.starts_with("ecdsa-") || s.starts_with("sk-");
    if looks_like_key(line) {
        return (None, line);
    }
    let mut quoted = false;
    for (index, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return (Some(&line[..index]), line[index..].trim_start()),
            _ => {}
        }
    }
    (Some(line), "")
}

fn check_options(options: &str) -> Result<(), BadLine> {
    for option in split_commas(options) {
        let name = option.split('=').next().unwrap_or_default().to_ascii_lowercase();
        if !HARMLESS_OPTIONS.contains(&name.as_str()) {
            return Err(BadLine::Option(option.to_string()));
        }
    }
    Ok(())
}

/// Splits on commas outside double quotes.
fn split_commas(options: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (index, c) in options.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&options[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&options[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use russh::keys::{Algorithm, PrivateKey};

    use super::*;

    fn public() -> String {
        let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
        key.public_key().to_openssh().unwrap()
    }

    #[test]
    fn plain_commented_and_harmless_option_lines_are_accepted() {
        let text = format!("# admins\n\n{} ada@laptop\nrestrict,no-pty {}\n", public(), public());
        assert_eq!(AuthorizedKeys::parse(&text, "t").keys.len(), 2);
    }

    #[test]
    fn restricting_options_refuse_the_key() {
        let text = format!(
            "from=\"10.0.0.0/8\" {}\ncommand=\"echo hi, there\",no-pty {}\nno-pty,permitopen=\"h:1\" {}\n",
            public(),
            public(),
            public()
        );
        assert!(AuthorizedKeys::parse(&text, "t").keys.is_empty());
    }

    #[test]
    fn malformed_lines_are_skipped_and_the_rest_kept() {
        let good = public();
        let text = format!("ssh-ed25519 not-base64!\nnonsense\n{good}\n");
        let keys = AuthorizedKeys::parse(&text, "t");
        assert_eq!(keys.keys.len(), 1);
        assert_eq!(keys.keys[0].line, 3);
        let key = parse_public_key_base64(good.split_whitespace().nth(1).unwrap()).unwrap();
        assert_eq!(keys.allowing_line(&key), Some(3));
    }
}
