//! Resolving a target against ssh_config and the command line into connection settings
//! (what `ssh -G` prints).

use std::{path::PathBuf, time::Duration};

use super::{
    config::{split_words, Applied, SshConfig},
    SshError, Target,
};

/// Settings given on the command line; they win over ssh_config like ssh's own flags.
#[derive(Default, Clone, Debug)]
pub struct SshOptions {
    /// `-F`: config file instead of ~/.ssh/config; `none` reads no file.
    pub config_file: Option<PathBuf>,
    /// `-i`: identity files tried before the config's.
    pub identity_files: Vec<PathBuf>,
    /// `-p`
    pub port: Option<u16>,
    /// `-l`
    pub user: Option<String>,
    /// `-o Key=Value`, highest precedence.
    pub options: Vec<String>,
}

/// How unknown host keys are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrictHostKeyChecking {
    /// Refuse unknown keys (the default).
    Yes,
    /// Record unknown keys; refuse changed ones.
    AcceptNew,
    /// Accept unknown keys without recording them; still refuse changed ones.
    No,
    /// Would ask; without prompting support it behaves like `Yes`.
    Ask,
}

/// Everything needed to connect to one host.
#[derive(Clone, Debug)]
pub struct HostSettings {
    /// What the user typed.
    pub alias: String,
    pub hostname: String,
    pub port: u16,
    pub user: String,
    pub identity_files: Vec<PathBuf>,
    /// Whether only the configured identities may be used (matters once ssh-agent is supported).
    pub identities_only: bool,
    pub known_hosts_files: Vec<PathBuf>,
    pub strict_host_key_checking: StrictHostKeyChecking,
    pub server_alive_interval: Option<Duration>,
    pub server_alive_count_max: u32,
    pub connect_timeout: Option<Duration>,
}

/// Applies ssh_config and the command line to `target`.
pub fn resolve(target: &Target, options: &SshOptions) -> Result<HostSettings, SshError> {
    let config = load_config(options)?.with_options(&options.options)?;
    let applied = config.apply(&target.host);
    let bad = |key: &str, value: &str| SshError::ConfigLine {
        path: PathBuf::from("ssh_config"),
        line: 0,
        reason: format!("{key} {value:?} is not valid"),
    };
    let hostname = applied
        .get("hostname")
        .map_or_else(|| target.host.clone(), |h| h.replace("%h", &target.host));
    let port = match (target.port, options.port, applied.get("port")) {
        (Some(port), _, _) | (None, Some(port), _) => port,
        (None, None, Some(text)) => text.parse().map_err(|_| bad("Port", text))?,
        (None, None, None) => 22,
    };
    let user = target
        .user
        .clone()
        .or_else(|| options.user.clone())
        .or_else(|| applied.get("user").map(String::from));
    let user = user.unwrap_or_else(local_user);
    let tokens = Tokens {
        host: &hostname,
        port,
        user: &user,
    };
    Ok(HostSettings {
        alias: target.host.clone(),
        identity_files: identity_files(options, &applied, &tokens),
        identities_only: yes_no(applied.get("identitiesonly")),
        known_hosts_files: known_hosts_files(&applied, &tokens),
        strict_host_key_checking: strictness(applied.get("stricthostkeychecking")).ok_or_else(|| {
            bad(
                "StrictHostKeyChecking",
                applied.get("stricthostkeychecking").unwrap_or_default(),
            )
        })?,
        server_alive_interval: seconds(applied.get("serveraliveinterval")),
        server_alive_count_max: applied
            .get("serveralivecountmax")
            .and_then(|v| v.parse().ok())
            .unwrap_or(3),
        connect_timeout: seconds(applied.get("connecttimeout")),
        hostname,
        port,
        user,
    })
}

fn load_config(options: &SshOptions) -> Result<SshConfig, SshError> {
    match &options.config_file {
        Some(path) if path.as_os_str() == "none" => Ok(SshConfig::default()),
        Some(path) => SshConfig::read(path),
        None => SshConfig::read(&home_dir().join(".ssh").join("config")),
    }
}

fn identity_files(options: &SshOptions, applied: &Applied, tokens: &Tokens) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = options.identity_files.clone();
    files.extend(applied.all("identityfile").iter().map(|f| tokens.expand_path(f)));
    if files.is_empty() {
        let ssh_dir = home_dir().join(".ssh");
        files = ["id_ed25519", "id_ecdsa", "id_rsa"]
            .iter()
            .map(|name| ssh_dir.join(name))
            .filter(|p| p.exists())
            .collect();
    }
    files
}

fn known_hosts_files(applied: &Applied, tokens: &Tokens) -> Vec<PathBuf> {
    match applied.get("userknownhostsfile") {
        Some(value) => split_words(value).iter().map(|f| tokens.expand_path(f)).collect(),
        None => vec![home_dir().join(".ssh").join("known_hosts")],
    }
}

fn strictness(value: Option<&str>) -> Option<StrictHostKeyChecking> {
    Some(match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("yes") | Some("true") => StrictHostKeyChecking::Yes,
        Some("accept-new") => StrictHostKeyChecking::AcceptNew,
        Some("no") | Some("off") | Some("false") => StrictHostKeyChecking::No,
        Some("ask") => StrictHostKeyChecking::Ask,
        Some(_) => return None,
    })
}

fn yes_no(value: Option<&str>) -> bool {
    matches!(
        value.map(str::to_ascii_lowercase).as_deref(),
        Some("yes") | Some("true")
    )
}

fn seconds(value: Option<&str>) -> Option<Duration> {
    value
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
}

/// %-tokens of ssh_config paths.
struct Tokens<'a> {
    host: &'a str,
    port: u16,
    user: &'a str,
}

impl Tokens<'_> {
    fn expand_path(&self, value: &str) -> PathBuf {
        let home = home_dir();
        let mut out = String::new();
        let mut chars = value.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('h') => out.push_str(self.host),
                Some('p') => out.push_str(&self.port.to_string()),
                Some('r') => out.push_str(self.user),
                Some('u') => out.push_str(&local_user()),
                Some('d') => out.push_str(&home.to_string_lossy()),
                Some('%') => out.push('%'),
                Some(other) => {
                    out.push('%');
                    out.push(other);
                }
                None => out.push('%'),
            }
        }
        match out.strip_prefix("~/") {
            Some(rest) => home.join(rest),
            None if out == "~" => home,
            None => PathBuf::from(out),
        }
    }
}

/// `$HOME`, else the account's home directory.
pub fn home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .or_else(|| directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf()))
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// The local user name.
pub fn local_user() -> String {
    std::env::var("USER").unwrap_or_else(|_| {
        let uid = nix::unistd::getuid();
        nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map_or_else(|| uid.to_string(), |u| u.name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_with(config: &str, target: &str, options: SshOptions) -> HostSettings {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, config).unwrap();
        let options = SshOptions {
            config_file: Some(path),
            ..options
        };
        resolve(&target.parse().unwrap(), &options).unwrap()
    }

    #[test]
    fn alias_settings_apply_and_tokens_expand() {
        let config = "Host db\n  HostName db.%h.example\n  Port 2222\n  User ops\n  IdentityFile /keys/%r@%h:%p\n  UserKnownHostsFile /kh/%h /kh/all\n  StrictHostKeyChecking accept-new\n";
        let settings = resolve_with(config, "db", SshOptions::default());
        assert_eq!(settings.hostname, "db.db.example");
        assert_eq!((settings.port, settings.user.as_str()), (2222, "ops"));
        assert_eq!(settings.identity_files, [PathBuf::from("/keys/ops@db.db.example:2222")]);
        assert_eq!(
            settings.known_hosts_files,
            [PathBuf::from("/kh/db.db.example"), PathBuf::from("/kh/all")]
        );
        assert_eq!(settings.strict_host_key_checking, StrictHostKeyChecking::AcceptNew);
    }

    #[test]
    fn target_and_flags_win_over_the_config() {
        let config = "Host db\n  Port 2222\n  User ops\n";
        let flags = SshOptions {
            port: Some(7),
            user: Some("flag".into()),
            ..SshOptions::default()
        };
        let settings = resolve_with(config, "me@db", flags.clone());
        assert_eq!((settings.port, settings.user.as_str()), (7, "me"));
        let settings = resolve_with(config, "db:9", flags);
        assert_eq!((settings.port, settings.user.as_str()), (9, "flag"));
    }

    #[test]
    fn nonsense_strictness_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, "StrictHostKeyChecking maybe\n").unwrap();
        let options = SshOptions {
            config_file: Some(path),
            ..SshOptions::default()
        };
        assert!(resolve(&"h".parse().unwrap(), &options).is_err());
    }
}
