//! A reader for the parts of ssh_config that remora honours, with OpenSSH's semantics: `Host`
//! patterns (`*`, `?`, `!negation`), keys case-insensitive, `Key value` or `Key=value`, the first
//! value obtained wins (IdentityFile accumulates), `-o` options before everything.
//!
//! What remora cannot honour yet is never silently misread: `Match` blocks are skipped with a
//! warning, and keys that change how the connection is made (ProxyJump, ProxyCommand, …) are
//! warned about when they apply to the target.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
};

use wildmatch::WildMatch;

use super::SshError;

/// Keys whose absence of support would change where or how we connect.
const UNSUPPORTED_CONNECTION_KEYS: &[&str] = &[
    "proxyjump",
    "proxycommand",
    "identityagent",
    "certificatefile",
    "hostkeyalias",
    "include",
];

/// One `Key value` line.
#[derive(Debug, Clone)]
struct Entry {
    key: String,
    value: String,
    origin: String,
}

/// A `Host` block (or the lines before the first one, which apply to every host).
#[derive(Debug, Clone)]
struct Block {
    patterns: Vec<String>,
    entries: Vec<Entry>,
}

impl Block {
    fn matches(&self, host: &str) -> bool {
        let mut matched = false;
        for pattern in &self.patterns {
            match pattern.strip_prefix('!') {
                Some(negated) if WildMatch::new(negated).matches(host) => return false,
                Some(_) => {}
                None => matched |= WildMatch::new(pattern).matches(host),
            }
        }
        matched
    }
}

/// A parsed configuration: `-o` options first, then the file's blocks in order.
#[derive(Debug, Clone, Default)]
pub struct SshConfig {
    blocks: Vec<Block>,
}

/// The settings that apply to one host, first value first.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    values: HashMap<String, Vec<String>>,
}

impl Applied {
    /// The first value of `key` (lower-case).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).and_then(|v| v.first()).map(String::as_str)
    }

    /// Every value of `key`, in order (for IdentityFile).
    pub fn all(&self, key: &str) -> &[String] {
        self.values.get(key).map_or(&[], Vec::as_slice)
    }
}

impl SshConfig {
    /// Reads a config file; a missing file is an empty config.
    pub fn read(path: &Path) -> Result<Self, SshError> {
        match fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, &path.display().to_string()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(SshError::ConfigRead {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parses config text; `origin` names it in messages.
    pub fn parse(text: &str, origin: &str) -> Result<Self, SshError> {
        let mut blocks = vec![Block {
            patterns: vec!["*".into()],
            entries: Vec::new(),
        }];
        let mut in_match = false;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let Some((key, value)) = split_line(raw).map_err(|reason| SshError::ConfigLine {
                path: PathBuf::from(origin),
                line,
                reason,
            })?
            else {
                continue;
            };
            match key.as_str() {
                "host" => {
                    in_match = false;
                    blocks.push(Block {
                        patterns: split_words(&value),
                        entries: Vec::new(),
                    });
                }
                "match" => {
                    in_match = true;
                    tracing::warn!("{origin}:{line}: `Match` blocks are not supported; ignoring the block");
                }
                _ if in_match => {}
                _ => {
                    let entry = Entry {
                        key,
                        value,
                        origin: format!("{origin}:{line}"),
                    };
                    blocks.last_mut().expect("a block always exists").entries.push(entry);
                }
            }
        }
        Ok(Self { blocks })
    }

    /// Adds command-line `-o Key=Value` options, which win over the file.
    pub fn with_options(mut self, options: &[String]) -> Result<Self, SshError> {
        let text = options.join("\n");
        let parsed = Self::parse(&text, "-o")?;
        let entries = parsed.blocks.into_iter().flat_map(|b| b.entries).collect();
        self.blocks.insert(
            0,
            Block {
                patterns: vec!["*".into()],
                entries,
            },
        );
        Ok(self)
    }

    /// Everything that applies to `host`, in precedence order.
    pub fn apply(&self, host: &str) -> Applied {
        let mut applied = Applied::default();
        for block in self.blocks.iter().filter(|b| b.matches(host)) {
            for entry in &block.entries {
                if UNSUPPORTED_CONNECTION_KEYS.contains(&entry.key.as_str()) {
                    tracing::warn!("{}: {} is not supported yet; ignoring it", entry.origin, entry.key);
                    continue;
                }
                let values = applied.values.entry(entry.key.clone()).or_default();
                if values.is_empty() || entry.key == "identityfile" {
                    values.push(entry.value.clone());
                }
            }
        }
        applied
    }
}

/// Splits a line into a lower-case key and its value; `None` for blanks and comments.
fn split_line(raw: &str) -> Result<Option<(String, String)>, String> {
    let line = raw.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let split_at = line.find(|c: char| c.is_whitespace() || c == '=').unwrap_or(line.len());
    let (key, rest) = line.split_at(split_at);
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim();
    if rest.is_empty() {
        return Err(format!("{key} has no value"));
    }
    Ok(Some((key.to_ascii_lowercase(), unquote(rest))))
}

/// Removes one pair of surrounding double quotes.
fn unquote(value: &str) -> String {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
        .to_string()
}

/// Splits a value into words, honouring double quotes.
pub fn split_words(value: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in value.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
# global defaults come first
ServerAliveInterval 30

Host web* !web-internal
    User deploy
    Port=2200
    IdentityFile ~/.ssh/web

Host web01
    User ignored-because-first-wins
    HostName 10.0.0.1
    IdentityFile "~/.ssh/web 01"

Match host web01
    User from-match

Host *
    User fallback
    IdentityFile ~/.ssh/id_ed25519
"#;

    fn config() -> SshConfig {
        SshConfig::parse(CONFIG, "test").unwrap()
    }

    #[test]
    fn first_value_wins_and_identity_files_accumulate() {
        let applied = config().apply("web01");
        assert_eq!(applied.get("user"), Some("deploy"));
        assert_eq!(applied.get("port"), Some("2200"));
        assert_eq!(applied.get("hostname"), Some("10.0.0.1"));
        assert_eq!(applied.get("serveraliveinterval"), Some("30"));
        assert_eq!(
            applied.all("identityfile"),
            ["~/.ssh/web", "~/.ssh/web 01", "~/.ssh/id_ed25519"]
        );
    }

    #[test]
    fn negated_patterns_exclude_a_host() {
        let applied = config().apply("web-internal");
        assert_eq!(applied.get("user"), Some("fallback"));
        assert_eq!(applied.get("port"), None);
    }

    #[test]
    fn match_blocks_are_skipped() {
        assert_ne!(config().apply("web01").get("user"), Some("from-match"));
    }

    #[test]
    fn command_line_options_win() {
        let config = config().with_options(&["User=cli".into(), "Port 9".into()]).unwrap();
        let applied = config.apply("web01");
        assert_eq!(applied.get("user"), Some("cli"));
        assert_eq!(applied.get("port"), Some("9"));
    }

    #[test]
    fn a_key_without_value_is_an_error_naming_the_line() {
        let err = SshConfig::parse("Host a\n  User\n", "cfg").unwrap_err();
        assert!(err.to_string().starts_with("cfg:2:"), "{err}");
    }

    #[test]
    fn quoted_words_stay_together() {
        assert_eq!(split_words(r#"a "b c" d"#), ["a", "b c", "d"]);
    }
}
