//! A reader for ssh_config with OpenSSH's semantics, so a host behaves the same under `remora` as
//! under `ssh`: `Host` patterns (`*`, `?`, `!negation`, several per line, case-insensitive), keys
//! case-insensitive, `Key value` or `Key=value`, quoted words, `#` comments, `Include` (relative to
//! ~/.ssh, with globs), `-o` options before everything, and the first value obtained wins
//! (IdentityFile accumulates).
//!
//! Invariant: nothing is silently misread. `Match` blocks are skipped with a warning naming file
//! and line; keys remora does not honour are kept and reported by [`Applied::warn_ignored`] when
//! they apply to the target; values are validated where they are used, with their origin.

use std::{
    collections::HashMap,
    fmt, fs,
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};
use wildmatch::WildMatch;

use super::SshError;

/// Keys whose value is one word (OpenSSH refuses extra words for them too).
const SINGLE_WORD_KEYS: &[&str] = &[
    "hostname",
    "port",
    "user",
    "identityfile",
    "identitiesonly",
    "stricthostkeychecking",
    "serveraliveinterval",
    "serveralivecountmax",
    "connecttimeout",
    "proxyjump",
    "identityagent",
    "batchmode",
    "passwordauthentication",
    "kbdinteractiveauthentication",
    "challengeresponseauthentication",
];

/// Keys remora honours (besides `Host`, `Match` and `Include`, which shape the file).
const HONOURED_KEYS: &[&str] = &[
    "ciphers",
    "hostkeyalgorithms",
    "controlpersist",
    "globalknownhostsfile",
    "hostname",
    "hostkeyalias",
    "escapechar",
    "port",
    "user",
    "identityfile",
    "identitiesonly",
    "userknownhostsfile",
    "stricthostkeychecking",
    "serveraliveinterval",
    "serveralivecountmax",
    "connecttimeout",
    "proxyjump",
    "proxycommand",
    "identityagent",
    "batchmode",
    "passwordauthentication",
    "kbdinteractiveauthentication",
    "challengeresponseauthentication",
];

/// Keys about features remora has no use for (forwarding, terminals, multiplexing, logging):
/// ignoring them changes neither where nor how securely it connects, so they are logged at debug.
const IRRELEVANT_KEYS: &[&str] = &[
    "addkeystoagent",
    "checkhostip",
    "clearallforwardings",
    "compression",
    "controlmaster",
    "controlpath",
    "dynamicforward",
    "enableescapecommandline",
    "exitonforwardfailure",
    "forkafterauthentication",
    "forwardagent",
    "forwardx11",
    "forwardx11timeout",
    "forwardx11trusted",
    "gatewayports",
    "hashknownhosts",
    "ignoreunknown",
    "localcommand",
    "localforward",
    "loglevel",
    "logverbose",
    "obscurekeystroketiming",
    "permitlocalcommand",
    "permitremoteopen",
    "remotecommand",
    "remoteforward",
    "requesttty",
    "sendenv",
    "sessiontype",
    "setenv",
    "stdinnull",
    "streamlocalbindmask",
    "streamlocalbindunlink",
    "syslogfacility",
    "tcpkeepalive",
    "tunnel",
    "tunneldevice",
    "updatehostkeys",
    "usekeychain",
    "visualhostkey",
    "xauthlocation",
];

/// How deep `Include` may nest (OpenSSH's limit).
const MAX_INCLUDE_DEPTH: usize = 16;

/// Where a setting came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A line of a config file.
    File { path: PathBuf, line: usize },
    /// A `-o` option, as typed.
    Option(String),
}

impl Origin {
    /// An error about this setting's value.
    pub fn error(&self, reason: String) -> SshError {
        match self {
            Origin::File { path, line } => SshError::ConfigLine {
                path: path.clone(),
                line: *line,
                reason,
            },
            Origin::Option(option) => SshError::BadOption {
                option: option.clone(),
                reason,
            },
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::Option(option) => write!(f, "-o {option:?}"),
        }
    }
}

/// One `Key value…` line.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The key as written, for messages.
    pub name: String,
    /// The value's words, unquoted (never empty).
    pub args: Vec<String>,
    /// The value as written, quotes and all (ProxyCommand is passed to the shell verbatim).
    pub raw: String,
    /// Where it was written.
    pub origin: Origin,
}

impl Entry {
    /// The first word of the value.
    pub fn value(&self) -> &str {
        &self.args[0]
    }
}

/// Entries that apply when every one of `conditions` (a `Host` line's patterns, and those of the
/// blocks enclosing an `Include`) matches the host.
#[derive(Debug, Clone)]
struct Block {
    conditions: Vec<Vec<String>>,
    entries: Vec<(String, Entry)>,
}

impl Block {
    fn matches(&self, host: &str) -> bool {
        self.conditions.iter().all(|patterns| host_matches(patterns, host))
    }
}

/// OpenSSH's rule for a pattern list: a matching negation vetoes, else any positive match counts.
pub fn host_matches(patterns: &[String], host: &str) -> bool {
    let mut matched = false;
    for pattern in patterns {
        match pattern.strip_prefix('!') {
            Some(negated) if WildMatch::new_case_insensitive(negated).matches(host) => return false,
            Some(_) => {}
            None => matched |= WildMatch::new_case_insensitive(pattern).matches(host),
        }
    }
    matched
}

/// A parsed configuration: `-o` options first, then the files' blocks in order.
#[derive(Debug, Clone, Default)]
pub struct SshConfig {
    blocks: Vec<Block>,
    /// SHA-256 (hex) of every file read, path and text, in reading order.
    identity: String,
}

/// The settings that apply to one host, in precedence order (lower-case keys).
#[derive(Debug, Clone, Default)]
pub struct Applied {
    values: HashMap<String, Vec<Entry>>,
    /// Where each key was first seen, in reading order (for keys that compete, like ProxyJump
    /// and ProxyCommand, the first one read wins).
    first_seen: HashMap<String, usize>,
}

impl Applied {
    /// The winning (first) entry for `key`.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.values.get(key).and_then(|entries| entries.first())
    }

    /// The winning value's first word for `key`.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.get(key).map(Entry::value)
    }

    /// Of `keys`, the one read first and its winning entry.
    pub fn first_of<'k>(&self, keys: &[&'k str]) -> Option<(&'k str, &Entry)> {
        let found = keys.iter().filter_map(|&key| Some((self.first_seen.get(key)?, key)));
        let (_, key) = found.min()?;
        Some((key, self.get(key)?))
    }

    /// Every entry for `key`, in order (IdentityFile accumulates).
    pub fn all(&self, key: &str) -> &[Entry] {
        self.values.get(key).map_or(&[], Vec::as_slice)
    }

    /// The winning entries of keys remora does not honour, sorted by key.
    pub fn ignored(&self) -> Vec<&Entry> {
        let mut keys: Vec<&String> = self
            .values
            .keys()
            .filter(|key| !HONOURED_KEYS.contains(&key.as_str()))
            .collect();
        keys.sort();
        keys.into_iter().filter_map(|key| self.get(key)).collect()
    }

    /// Logs one line per ignored key that applies to this host (debug for irrelevant ones).
    pub fn warn_ignored(&self) {
        for entry in self.ignored() {
            if IRRELEVANT_KEYS.contains(&entry.name.to_ascii_lowercase().as_str()) {
                tracing::debug!("{}: {} does not apply to remora; ignoring it", entry.origin, entry.name);
            } else {
                tracing::warn!("{}: {} is not supported yet; ignoring it", entry.origin, entry.name);
            }
        }
    }
}

impl SshConfig {
    /// Reads a config file; a missing file is an empty config. `Include`s resolve against `include_dir`.
    pub fn read(path: &Path, include_dir: &Path) -> Result<Self, SshError> {
        let mut parser = Parser::new(include_dir);
        if let Some(text) = read_optional(path)? {
            parser.record(path, &text);
            parser.parse(&text, path, &[], 0)?;
        }
        Ok(parser.finish())
    }

    /// What was read, as SHA-256 (hex) over each file's path and text: equal for the same
    /// files with the same contents, different after any edit.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Parses config text as if read from `path` (tests).
    #[cfg(test)]
    pub fn parse(text: &str, path: &Path, include_dir: &Path) -> Result<Self, SshError> {
        let mut parser = Parser::new(include_dir);
        parser.record(path, text);
        parser.parse(text, path, &[], 0)?;
        Ok(parser.finish())
    }

    /// Adds command-line `-o Key=Value` (or `Key Value`) options, which win over the files.
    pub fn with_options(mut self, options: &[String]) -> Result<Self, SshError> {
        let mut entries = Vec::new();
        for option in options {
            let origin = Origin::Option(option.clone());
            let (key, entry) = match split_line(option, &origin) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => return Err(origin.error("empty option; use -o Key=Value".into())),
                Err(reason) => return Err(origin.error(reason)),
            };
            if matches!(key.as_str(), "host" | "match" | "include") {
                return Err(origin.error(format!("{} cannot be given with -o", entry.name)));
            }
            entries.push((key, entry));
        }
        let options = Block {
            conditions: Vec::new(),
            entries,
        };
        self.blocks.insert(0, options);
        Ok(self)
    }

    /// Everything that applies to `host` (the name as typed, like OpenSSH's `Host` matching).
    pub fn apply(&self, host: &str) -> Applied {
        let mut applied = Applied::default();
        for block in self.blocks.iter().filter(|b| b.matches(host)) {
            for (key, entry) in &block.entries {
                let position = applied.first_seen.len();
                applied.first_seen.entry(key.clone()).or_insert(position);
                applied.values.entry(key.clone()).or_default().push(entry.clone());
            }
        }
        applied
    }
}

/// Parsing state shared across included files.
struct Parser<'a> {
    blocks: Vec<Block>,
    include_dir: &'a Path,
    /// Every file read so far, by path and text.
    digest: Sha256,
}

impl Parser<'_> {
    fn new(include_dir: &Path) -> Parser<'_> {
        Parser {
            blocks: Vec::new(),
            include_dir,
            digest: Sha256::new(),
        }
    }

    fn finish(self) -> SshConfig {
        let identity = self.digest.finalize().iter().map(|b| format!("{b:02x}")).collect();
        SshConfig {
            blocks: self.blocks,
            identity,
        }
    }

    /// Counts `path` and `text` into the identity of what was read.
    fn record(&mut self, path: &Path, text: &str) {
        for part in [path.as_os_str().as_encoded_bytes(), text.as_bytes()] {
            self.digest.update((part.len() as u64).to_be_bytes());
            self.digest.update(part);
        }
    }
}

impl Parser<'_> {
    /// Parses one file's text; its blocks apply only where `outer` (the includer's block) does.
    fn parse(&mut self, text: &str, path: &Path, outer: &[Vec<String>], depth: usize) -> Result<(), SshError> {
        self.open_block(outer.to_vec());
        let mut in_match = false;
        for (index, raw) in text.lines().enumerate() {
            let origin = Origin::File {
                path: path.to_path_buf(),
                line: index + 1,
            };
            let Some((key, entry)) = split_line(raw, &origin).map_err(|reason| origin.error(reason))? else {
                continue;
            };
            match key.as_str() {
                "host" => {
                    in_match = false;
                    let mut conditions = outer.to_vec();
                    conditions.push(entry.args);
                    self.open_block(conditions);
                }
                "match" => {
                    in_match = true;
                    tracing::warn!("{origin}: `Match` blocks are not supported yet; ignoring the block");
                }
                _ if in_match => {}
                "include" => self.include(&entry, depth)?,
                _ => self.current().entries.push((key, entry)),
            }
        }
        Ok(())
    }

    fn current(&mut self) -> &mut Block {
        self.blocks.last_mut().expect("parse opens a block first")
    }

    fn open_block(&mut self, conditions: Vec<Vec<String>>) {
        self.blocks.push(Block {
            conditions,
            entries: Vec::new(),
        });
    }

    /// Reads the files an `Include` names, in place, then continues the including block.
    fn include(&mut self, entry: &Entry, depth: usize) -> Result<(), SshError> {
        if depth >= MAX_INCLUDE_DEPTH {
            let reason = format!("Include nested deeper than {MAX_INCLUDE_DEPTH} files (a loop?)");
            return Err(entry.origin.error(reason));
        }
        let conditions = self.current().conditions.clone();
        for pattern in &entry.args {
            let files = expand_glob(&include_path(pattern, self.include_dir));
            if files.is_empty() {
                tracing::debug!("{}: Include {pattern} matches no file", entry.origin);
            }
            for file in files {
                if let Some(text) = read_optional(&file)? {
                    self.record(&file, &text);
                    self.parse(&text, &file, &conditions, depth + 1)?;
                }
            }
        }
        self.open_block(conditions);
        Ok(())
    }
}

fn read_optional(path: &Path) -> Result<Option<String>, SshError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SshError::ConfigRead {
            path: path.to_path_buf(),
            cause: source,
        }),
    }
}

/// `~/x` is under the home directory; a relative path is under `include_dir` (~/.ssh).
fn include_path(pattern: &str, include_dir: &Path) -> PathBuf {
    match pattern.strip_prefix("~/") {
        Some(rest) => super::home_dir().join(rest),
        None => include_dir.join(pattern),
    }
}

/// The existing paths matching a glob (`*`, `?` in any component), sorted like glob(3).
fn expand_glob(pattern: &Path) -> Vec<PathBuf> {
    let mut found = vec![PathBuf::new()];
    for component in pattern.components() {
        let part = component.as_os_str().to_string_lossy();
        if !part.contains(['*', '?']) {
            found.iter_mut().for_each(|path| path.push(component));
            continue;
        }
        let wanted = WildMatch::new(&part);
        let mut next = Vec::new();
        for dir in &found {
            let Ok(listing) = fs::read_dir(dir) else { continue };
            let mut names: Vec<String> = listing
                .filter_map(|item| item.ok()?.file_name().into_string().ok())
                .filter(|name| wanted.matches(name) && (part.starts_with('.') || !name.starts_with('.')))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|name| dir.join(name)));
        }
        found = next;
    }
    found.retain(|path| path.exists());
    found
}

/// Splits a line into its lower-case key and entry; `None` for blanks and comments.
fn split_line(raw: &str, origin: &Origin) -> Result<Option<(String, Entry)>, String> {
    let line = raw.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let split_at = line.find(|c: char| c.is_whitespace() || c == '=').unwrap_or(line.len());
    let (name, rest) = line.split_at(split_at);
    let rest = rest.trim_start();
    let raw = rest.strip_prefix('=').unwrap_or(rest).trim_start();
    let args = split_words(raw)?;
    let key = name.to_ascii_lowercase();
    if args.is_empty() {
        return Err(format!("{name} has no value"));
    }
    if args.len() > 1 && SINGLE_WORD_KEYS.contains(&key.as_str()) {
        return Err(format!("{name} takes one value; quote it if it contains spaces"));
    }
    let entry = Entry {
        name: name.to_string(),
        args,
        raw: raw.to_string(),
        origin: origin.clone(),
    };
    Ok(Some((key, entry)))
}

/// Splits a value into words like OpenSSH: `"` and `'` quote, `\` escapes a quote, a backslash or
/// a space, and an unquoted word starting with `#` begins a comment.
fn split_words(value: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote = None;
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quote) {
            ('\\', _) if matches!(chars.peek(), Some('"' | '\'' | '\\' | ' ')) => {
                word.get_or_insert_default().extend(chars.next());
            }
            (c, Some(open)) if c == open => quote = None,
            (c, Some(_)) => word.get_or_insert_default().push(c),
            ('"' | '\'', None) => {
                quote = Some(c);
                word.get_or_insert_default();
            }
            ('#', None) if word.is_none() => break,
            (c, None) if c.is_whitespace() => words.extend(word.take()),
            (c, None) => word.get_or_insert_default().push(c),
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".into());
    }
    words.extend(word);
    Ok(words)
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
    IdentityFile ~/.ssh/web   # the deploy key

Host web01 db?
    User ignored-because-first-wins
    HostName "10.0.0.1"
    IdentityFile "~/.ssh/web 01"
    PKCS11Provider /usr/lib/p11.so

Match host web01
    User from-match

Host *
    User fallback
    IdentityFile ~/.ssh/id_ed25519
"#;

    fn parse(text: &str) -> SshConfig {
        SshConfig::parse(text, Path::new("cfg"), Path::new("/nonexistent")).unwrap()
    }

    fn values(applied: &Applied, key: &str) -> Vec<String> {
        applied.all(key).iter().map(|e| e.value().to_string()).collect()
    }

    #[test]
    fn first_value_wins_and_identity_files_accumulate() {
        let applied = parse(CONFIG).apply("web01");
        assert_eq!(applied.value("user"), Some("deploy"));
        assert_eq!(applied.value("port"), Some("2200"));
        assert_eq!(applied.value("hostname"), Some("10.0.0.1"));
        assert_eq!(applied.value("serveraliveinterval"), Some("30"));
        assert_eq!(
            values(&applied, "identityfile"),
            ["~/.ssh/web", "~/.ssh/web 01", "~/.ssh/id_ed25519"]
        );
    }

    #[test]
    fn negated_and_single_character_patterns() {
        let config = parse(CONFIG);
        let applied = config.apply("web-internal");
        assert_eq!(applied.value("user"), Some("fallback"));
        assert_eq!(applied.value("port"), None);
        assert_eq!(config.apply("db1").value("hostname"), Some("10.0.0.1"));
        assert_eq!(config.apply("db12").value("hostname"), None);
        assert_eq!(config.apply("WEB01").value("user"), Some("deploy"), "case-insensitive");
    }

    #[test]
    fn host_star_first_sets_what_specific_hosts_cannot_override() {
        let applied = parse("Host *\n  User everyone\nHost special\n  User special\n").apply("special");
        assert_eq!(
            applied.value("user"),
            Some("everyone"),
            "first obtained value wins, as in OpenSSH"
        );
        let config = parse("Host special\n  User special\nHost *\n  User everyone\n  Port 2\n");
        let applied = config.apply("special");
        assert_eq!(
            (applied.value("user"), applied.value("port")),
            (Some("special"), Some("2"))
        );
        assert_eq!(config.apply("other").value("user"), Some("everyone"));
    }

    #[test]
    fn match_blocks_are_skipped_and_unhonoured_keys_reported_with_their_line() {
        let config = parse(CONFIG);
        let applied = config.apply("web01");
        assert_ne!(applied.value("user"), Some("from-match"));
        let ignored = applied.ignored();
        assert_eq!(ignored.len(), 1);
        assert_eq!(ignored[0].name, "PKCS11Provider");
        assert_eq!(ignored[0].origin.to_string(), "cfg:14");
        assert!(
            config.apply("other").ignored().is_empty(),
            "only what applies to the target"
        );
    }

    #[test]
    fn the_first_read_of_competing_keys_wins_and_proxy_commands_stay_verbatim() {
        let config = parse("Host a\n  ProxyCommand sh -c \"nc %h %p\" # raw\n  ProxyJump j\nHost *\n  ProxyJump k\n");
        let a = config.apply("a");
        let (key, entry) = a.first_of(&["proxyjump", "proxycommand"]).unwrap();
        assert_eq!(key, "proxycommand");
        assert_eq!(entry.raw, "sh -c \"nc %h %p\" # raw");
        let b = config.apply("b");
        let (key, entry) = b.first_of(&["proxyjump", "proxycommand"]).unwrap();
        assert_eq!((key, entry.value()), ("proxyjump", "k"));
        assert!(config.apply("b").first_of(&["identityagent"]).is_none());
    }

    #[test]
    fn command_line_options_win_in_both_spellings() {
        let options = ["User=cli".into(), "Port 9".into(), "user=x".into()];
        let applied = parse(CONFIG).with_options(&options).unwrap().apply("web01");
        assert_eq!(applied.value("user"), Some("cli"));
        assert_eq!(applied.value("port"), Some("9"));
        let err = SshConfig::default().with_options(&["Host=x".into()]).unwrap_err();
        assert!(err.to_string().contains("-o \"Host=x\""), "{err}");
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        for (text, line) in [("Host a\n  User\n", 2), ("Port 1 2\n", 1), ("User \"unterminated\n", 1)] {
            let err = SshConfig::parse(text, Path::new("cfg"), Path::new("/")).unwrap_err();
            assert!(err.to_string().starts_with(&format!("cfg:{line}:")), "{err}");
        }
    }

    #[test]
    fn words_honour_quotes_escapes_and_comments() {
        assert_eq!(split_words(r#"a "b c" d"#).unwrap(), ["a", "b c", "d"]);
        assert_eq!(split_words(r#"'x y' z\ w # tail"#).unwrap(), ["x y", "z w"]);
        assert_eq!(split_words("a#b").unwrap(), ["a#b"]);
        assert_eq!(split_words(r#""""#).unwrap(), [""]);
    }

    #[test]
    fn includes_apply_in_place_and_inside_their_host_block() {
        let dir = tempfile::tempdir().unwrap();
        let conf_d = dir.path().join("conf.d");
        fs::create_dir(&conf_d).unwrap();
        fs::write(conf_d.join("10-a.conf"), "User from-include\nHost inner\n  Port 7\n").unwrap();
        fs::write(conf_d.join("20-b.conf"), "Port 8\n").unwrap();
        fs::write(conf_d.join("notes.txt"), "User not-included\n").unwrap();
        let text = "Host inner outer\n  Include conf.d/*.conf\n  User after-include\nHost *\n  Port 1\n";
        let config = SshConfig::parse(text, &dir.path().join("config"), dir.path()).unwrap();
        let inner = config.apply("inner");
        assert_eq!(inner.value("user"), Some("from-include"));
        assert_eq!(inner.value("port"), Some("7"));
        assert_eq!(config.apply("outer").value("port"), Some("8"));
        assert_eq!(
            config.apply("elsewhere").value("user"),
            None,
            "the include sits in a Host block"
        );
        assert_eq!(config.apply("elsewhere").value("port"), Some("1"));
    }

    #[test]
    fn the_identity_changes_with_any_file_read_and_only_then() {
        let dir = tempfile::tempdir().unwrap();
        let (main, included) = (dir.path().join("config"), dir.path().join("extra.conf"));
        fs::write(&main, "Include extra.conf\nHost a\n  Port 1\n").unwrap();
        fs::write(&included, "Host b\n  Port 2\n").unwrap();
        let identity = || SshConfig::read(&main, dir.path()).unwrap().identity().to_string();
        let first = identity();
        assert_eq!(identity(), first, "the same files give the same identity");
        fs::write(&included, "Host b\n  Port 3\n").unwrap();
        let edited = identity();
        assert_ne!(edited, first, "an included file's edit counts");
        let elsewhere = dir.path().join("copy");
        fs::copy(&main, &elsewhere).unwrap();
        let copied = SshConfig::read(&elsewhere, dir.path()).unwrap();
        assert_ne!(
            copied.identity(),
            edited,
            "the same text at another path is another config"
        );
    }

    #[test]
    fn include_loops_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("config"), "Include config\n").unwrap();
        let err = SshConfig::read(&dir.path().join("config"), dir.path()).unwrap_err();
        assert!(err.to_string().contains("Include nested deeper"), "{err}");
    }
}
