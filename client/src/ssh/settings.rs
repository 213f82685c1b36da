//! Resolving a target against ssh_config and the command line into the settings of one connection
//! (what `ssh -G` prints). Precedence: the target's own `user@`/`:port`, then `-l`/`-p`/`-i`, then
//! `-o`, then the config files, then defaults.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use super::{
    config::{Applied, Entry, Origin, SshConfig},
    target::check_user_name,
    SshError, Target,
};

/// Settings given on the command line; they win over ssh_config like ssh's own flags.
#[derive(Default, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SshOptions {
    /// `-F`: config file instead of ~/.ssh/config (a missing file is an empty config); `none` reads none.
    pub config_file: Option<PathBuf>,
    /// `-i`: identity files tried before the config's.
    pub identity_files: Vec<PathBuf>,
    /// `-p`: the port, unless the target names one.
    pub port: Option<u16>,
    /// `-l`: the user, unless the target names one.
    pub user: Option<String>,
    /// `-o Key=Value` (or `Key Value`): above the config files; the first of a key wins, like ssh.
    pub options: Vec<String>,
    /// `-J`: jump hosts, like `-o ProxyJump=…` but ahead of every `-o`.
    pub jump: Option<String>,
}

impl SshOptions {
    /// `-o` options with `-J` first, as ssh orders them.
    fn all_options(&self) -> Vec<String> {
        let jump = self.jump.iter().map(|hops| format!("ProxyJump={hops}"));
        jump.chain(self.options.iter().cloned()).collect()
    }

    /// What a jump host is resolved with: only the config file; like ssh, `-i`, `-l`, `-p`, `-o`
    /// and `-J` are about the destination.
    fn for_jump_hosts(&self) -> SshOptions {
        SshOptions {
            config_file: self.config_file.clone(),
            ..SshOptions::default()
        }
    }
}

/// How the connection reaches the host's sshd.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Route {
    /// TCP straight to HostName and Port.
    Direct,
    /// Through these jump hosts in order (ProxyJump, `-J`): SSH to the last one, reached through
    /// the ones before it, then a forwarded TCP channel from there to the host.
    Jump(Vec<Target>),
    /// A command whose stdin and stdout carry the connection (ProxyCommand), %-tokens expanded.
    Command(String),
}

/// Where ssh-agent listens (IdentityAgent).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AgentSocket {
    /// `$SSH_AUTH_SOCK` (the default).
    Environment,
    /// `IdentityAgent none`: no agent.
    Disabled,
    /// A socket path, or the path held by a named environment variable.
    Path(PathBuf),
}

/// How host keys missing from known_hosts are treated (changed keys are always refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StrictHostKeyChecking {
    /// Refuse unknown keys (the default).
    Yes,
    /// Record unknown keys in the first known_hosts file.
    AcceptNew,
    /// Accept unknown keys without recording them, with a warning.
    No,
    /// Would ask; remora cannot, so it refuses like `Yes` and says so.
    Ask,
}

/// Everything needed to connect to one host, after applying ssh_config (like `ssh -G`). It is
/// also what the connection holder keys a held connection by (serialized), so it holds every
/// input of a connection, down to which config produced it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostSettings {
    /// What the user typed.
    pub alias: String,
    /// HostName (with `%h` expanded), else the alias.
    pub hostname: String,
    /// Port, 22 by default.
    pub port: u16,
    /// HostKeyAlias: the name host keys are looked up and recorded under, and certificate
    /// principals matched against, instead of HostName and Port.
    pub host_key_alias: Option<String>,
    /// User, the local user by default.
    pub user: String,
    /// Identity files in the order tried (`-i` first); the default key files that exist if none is configured.
    pub identity_files: Vec<PathBuf>,
    /// Use only the configured identities, also from ssh-agent.
    pub identities_only: bool,
    /// UserKnownHostsFile (several allowed); new keys are recorded in the first.
    pub known_hosts_files: Vec<PathBuf>,
    /// GlobalKnownHostsFile: read too, never written (`/etc/ssh/ssh_known_hosts{,2}` by default).
    pub global_known_hosts_files: Vec<PathBuf>,
    /// What to do with unknown host keys.
    pub strict_host_key_checking: StrictHostKeyChecking,
    /// ServerAliveInterval; `None` for 0 or unset (the connection then picks remora's default).
    pub server_alive_interval: Option<Duration>,
    /// ServerAliveCountMax, 3 by default.
    pub server_alive_count_max: u32,
    /// ConnectTimeout; `None` for 0 or unset (the connection then picks remora's default).
    pub connect_timeout: Option<Duration>,
    /// ProxyJump or ProxyCommand, whichever the config names first; direct otherwise.
    pub route: Route,
    /// IdentityAgent.
    pub agent: AgentSocket,
    /// How jump hosts are resolved (the same config file, none of the destination's flags).
    pub jump_options: SshOptions,
    /// BatchMode: never ask on the terminal (passphrases, passwords).
    pub batch_mode: bool,
    /// EscapeChar as written (`~`, `^]`, `none`), for `remora shell`.
    pub escape_char: Option<String>,
    /// PasswordAuthentication (on a terminal).
    pub password_authentication: bool,
    /// KbdInteractiveAuthentication (ChallengeResponseAuthentication), on a terminal.
    pub kbd_interactive_authentication: bool,
    /// ControlPersist: how long a held connection stays open after its last use.
    pub control_persist: Persist,
    /// Ciphers, in the order asked for; empty means remora's own order.
    pub ciphers: Vec<String>,
    /// HostKeyAlgorithms as written (`+ssh-rsa` adds to the defaults, a plain list replaces
    /// them); `None` is remora's default, which leaves out SHA-1 `ssh-rsa` as OpenSSH 8.8 does.
    pub host_key_algorithms: Option<String>,
    /// The identity of the ssh_config files read (their paths and contents): jump hosts are
    /// resolved from them later, so an edit must not reuse a connection made before it.
    pub config_identity: String,
}

/// How long the connection holder keeps a host's connection after its last use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Persist {
    /// Every call connects on its own (`ControlPersist no`).
    Off,
    /// Until the holder is stopped (`ControlPersist yes` or `0`).
    Forever,
    /// This long after the last call ends (`ControlPersist 10m`); 10 minutes when unset.
    For(Duration),
}

impl Default for Persist {
    fn default() -> Self {
        Persist::For(Duration::from_secs(600))
    }
}

impl std::fmt::Display for Persist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Persist::Off => f.write_str("no"),
            Persist::Forever => f.write_str("yes"),
            Persist::For(duration) => write!(f, "{}", duration.as_secs()),
        }
    }
}

impl HostSettings {
    /// The settings as `ssh -G` prints them: lower-case keys, one value per line (IdentityFile
    /// repeats), durations in seconds with 0 for unset.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let secs = |duration: Option<Duration>| duration.map_or(0, |d| d.as_secs()).to_string();
        let path = |path: &PathBuf| path.display().to_string();
        let mut lines = vec![
            ("host", self.alias.clone()),
            ("hostname", self.hostname.clone()),
            ("port", self.port.to_string()),
            ("user", self.user.clone()),
        ];
        if let Some(alias) = &self.host_key_alias {
            lines.push(("hostkeyalias", alias.clone()));
        }
        lines.extend(self.identity_files.iter().map(|file| ("identityfile", path(file))));
        lines.push(("identitiesonly", yes_or_no(self.identities_only).into()));
        lines.push(("identityagent", self.agent.to_string()));
        match &self.route {
            Route::Direct => lines.push(("proxyjump", "none".into())),
            Route::Jump(hops) => {
                let hops: Vec<String> = hops.iter().map(Target::to_string).collect();
                lines.push(("proxyjump", hops.join(",")));
            }
            Route::Command(command) => lines.push(("proxycommand", command.clone())),
        }
        let known_hosts: Vec<String> = self.known_hosts_files.iter().map(path).collect();
        lines.push(("userknownhostsfile", known_hosts.join(" ")));
        let global: Vec<String> = self.global_known_hosts_files.iter().map(path).collect();
        lines.push(("globalknownhostsfile", global.join(" ")));
        lines.push(("stricthostkeychecking", self.strict_host_key_checking.to_string()));
        lines.push(("serveraliveinterval", secs(self.server_alive_interval)));
        lines.push(("serveralivecountmax", self.server_alive_count_max.to_string()));
        lines.push(("connecttimeout", secs(self.connect_timeout)));
        lines.push(("batchmode", yes_or_no(self.batch_mode).into()));
        lines.push(("passwordauthentication", yes_or_no(self.password_authentication).into()));
        let kbd = yes_or_no(self.kbd_interactive_authentication);
        lines.push(("kbdinteractiveauthentication", kbd.into()));
        lines.push(("controlpersist", self.control_persist.to_string()));
        if !self.ciphers.is_empty() {
            lines.push(("ciphers", self.ciphers.join(",")));
        }
        if let Some(algorithms) = &self.host_key_algorithms {
            lines.push(("hostkeyalgorithms", algorithms.clone()));
        }
        lines
    }
}

#[cfg(test)]
impl HostSettings {
    /// Settings for unit tests: `me@127.0.0.1:port` trusting only `known_hosts`, no identities,
    /// no agent, never prompting; tests change what they are about with struct update syntax.
    pub(crate) fn for_tests(port: u16, known_hosts: PathBuf) -> HostSettings {
        HostSettings {
            alias: "testhost".into(),
            hostname: "127.0.0.1".into(),
            port,
            host_key_alias: None,
            user: "me".into(),
            identity_files: Vec::new(),
            identities_only: true,
            known_hosts_files: vec![known_hosts],
            global_known_hosts_files: Vec::new(),
            strict_host_key_checking: StrictHostKeyChecking::Yes,
            server_alive_interval: None,
            server_alive_count_max: 3,
            connect_timeout: None,
            route: Route::Direct,
            agent: AgentSocket::Disabled,
            jump_options: SshOptions::default(),
            batch_mode: true,
            escape_char: None,
            password_authentication: false,
            kbd_interactive_authentication: false,
            control_persist: Persist::Off,
            ciphers: Vec::new(),
            host_key_algorithms: None,
            config_identity: String::new(),
        }
    }
}

fn yes_or_no(flag: bool) -> &'static str {
    if flag {
        "yes"
    } else {
        "no"
    }
}

impl std::fmt::Display for StrictHostKeyChecking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StrictHostKeyChecking::Yes => "yes",
            StrictHostKeyChecking::AcceptNew => "accept-new",
            StrictHostKeyChecking::No => "no",
            StrictHostKeyChecking::Ask => "ask",
        })
    }
}

impl std::fmt::Display for AgentSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgentSocket::Environment => f.write_str("SSH_AUTH_SOCK"),
            AgentSocket::Disabled => f.write_str("none"),
            AgentSocket::Path(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Applies ssh_config and the command line to `target`.
pub fn resolve(target: &Target, options: &SshOptions) -> Result<HostSettings, SshError> {
    let config = load_config(options)?.with_options(&options.all_options())?;
    let applied = config.apply(&target.host);
    applied.warn_ignored();
    let hostname = match applied.get("hostname") {
        Some(entry) => expand(entry.value(), &[('h', &target.host)], entry)?,
        None => target.host.clone(),
    };
    let port = match target.port.or(options.port) {
        Some(port) => port,
        None => applied.get("port").map(port_number).transpose()?.unwrap_or(22),
    };
    let user = login_user(target, options, &applied)?;
    let port_text = port.to_string();
    let tokens = PathTokens {
        host: &hostname,
        alias: &target.host,
        port: &port_text,
        user: &user,
    };
    Ok(HostSettings {
        alias: target.host.clone(),
        identity_files: identity_files(options, &applied, &tokens)?,
        identities_only: applied.get("identitiesonly").map(yes_no).transpose()?.unwrap_or(false),
        known_hosts_files: known_hosts_files(&applied, &tokens)?,
        global_known_hosts_files: global_known_hosts_files(&applied, &tokens)?,
        strict_host_key_checking: applied
            .get("stricthostkeychecking")
            .map(strictness)
            .transpose()?
            .unwrap_or(StrictHostKeyChecking::Yes),
        server_alive_interval: applied.get("serveraliveinterval").map(seconds).transpose()?.flatten(),
        server_alive_count_max: applied.get("serveralivecountmax").map(count).transpose()?.unwrap_or(3),
        connect_timeout: applied.get("connecttimeout").map(seconds).transpose()?.flatten(),
        route: route(&applied, &tokens)?,
        agent: agent_socket(&applied, &tokens)?,
        jump_options: options.for_jump_hosts(),
        batch_mode: flag(&applied, "batchmode", false)?,
        escape_char: applied.value("escapechar").map(str::to_string),
        password_authentication: flag(&applied, "passwordauthentication", true)?,
        kbd_interactive_authentication: match applied
            .first_of(&["kbdinteractiveauthentication", "challengeresponseauthentication"])
        {
            Some((_, entry)) => yes_no(entry)?,
            None => true,
        },
        control_persist: applied
            .get("controlpersist")
            .map(persist)
            .transpose()?
            .unwrap_or_default(),
        ciphers: applied.get("ciphers").map(ciphers).transpose()?.unwrap_or_default(),
        host_key_algorithms: applied.get("hostkeyalgorithms").map(host_key_algorithms).transpose()?,
        host_key_alias: applied.value("hostkeyalias").map(str::to_string),
        config_identity: config.identity().to_string(),
        hostname,
        port,
        user,
    })
}

/// The user to log in as: the target's `user@`, `-l`, then `User` (a `-o User=` counts as the
/// command line), then the local user. Names from the command line feed `%r`, so they are
/// checked for shell code (as OpenSSH 9.6 does); a literal `User` in a config file is trusted.
fn login_user(target: &Target, options: &SshOptions, applied: &Applied) -> Result<String, SshError> {
    if let Some(user) = target.user.clone() {
        return Ok(user);
    }
    if let Some(user) = &options.user {
        check_user_name(user).map_err(|reason| SshError::BadOption {
            option: format!("-l {user}"),
            reason,
        })?;
        return Ok(user.clone());
    }
    let Some(entry) = applied.get("user") else {
        return Ok(local_user());
    };
    if matches!(entry.origin, Origin::Option(_)) {
        check_user_name(entry.value()).map_err(|reason| entry.origin.error(reason))?;
    }
    Ok(entry.value().to_string())
}

fn load_config(options: &SshOptions) -> Result<SshConfig, SshError> {
    let ssh_dir = home_dir().join(".ssh");
    match &options.config_file {
        Some(path) if path.as_os_str() == "none" => Ok(SshConfig::default()),
        Some(path) => SshConfig::read(path, &ssh_dir),
        None => SshConfig::read(&ssh_dir.join("config"), &ssh_dir),
    }
}

fn identity_files(options: &SshOptions, applied: &Applied, tokens: &PathTokens) -> Result<Vec<PathBuf>, SshError> {
    let mut files: Vec<PathBuf> = options.identity_files.iter().map(|f| expand_tilde(f)).collect();
    for entry in applied.all("identityfile") {
        let file = tokens.expand_path(entry.value(), entry)?;
        if !files.contains(&file) {
            files.push(file);
        }
    }
    if files.is_empty() {
        let ssh_dir = home_dir().join(".ssh");
        files = ["id_ed25519", "id_ecdsa", "id_rsa"]
            .iter()
            .map(|name| ssh_dir.join(name))
            .filter(|p| p.exists())
            .collect();
    }
    Ok(files)
}

/// UserKnownHostsFile's words; `none` stands for no file.
/// UserKnownHostsFile; OpenSSH's default is `~/.ssh/known_hosts ~/.ssh/known_hosts2`.
fn known_hosts_files(applied: &Applied, tokens: &PathTokens) -> Result<Vec<PathBuf>, SshError> {
    let Some(entry) = applied.get("userknownhostsfile") else {
        let ssh_dir = home_dir().join(".ssh");
        return Ok(vec![ssh_dir.join("known_hosts"), ssh_dir.join("known_hosts2")]);
    };
    let words = entry.args.iter().filter(|word| !word.eq_ignore_ascii_case("none"));
    words.map(|word| tokens.expand_path(word, entry)).collect()
}

/// GlobalKnownHostsFile; OpenSSH's default is `/etc/ssh/ssh_known_hosts /etc/ssh/ssh_known_hosts2`.
fn global_known_hosts_files(applied: &Applied, tokens: &PathTokens) -> Result<Vec<PathBuf>, SshError> {
    let Some(entry) = applied.get("globalknownhostsfile") else {
        return Ok(vec![
            PathBuf::from("/etc/ssh/ssh_known_hosts"),
            PathBuf::from("/etc/ssh/ssh_known_hosts2"),
        ]);
    };
    let words = entry.args.iter().filter(|word| !word.eq_ignore_ascii_case("none"));
    words.map(|word| tokens.expand_path(word, entry)).collect()
}

/// ProxyJump or ProxyCommand, whichever was read first (ssh's rule); `none` means direct.
fn route(applied: &Applied, tokens: &PathTokens) -> Result<Route, SshError> {
    let Some((key, entry)) = applied.first_of(&["proxyjump", "proxycommand"]) else {
        return Ok(Route::Direct);
    };
    if entry.value().eq_ignore_ascii_case("none") {
        return Ok(Route::Direct);
    }
    if key == "proxycommand" {
        return Ok(Route::Command(tokens.expand_command(&entry.raw, entry)?));
    }
    let hops = entry.value().split(',').map(|hop| {
        let hop = hop.strip_prefix("ssh://").unwrap_or(hop);
        hop.parse::<Target>()
            .map_err(|err| invalid(entry, &format!("comma-separated [user@]host[:port] jump hosts ({err})")))
    });
    Ok(Route::Jump(hops.collect::<Result<_, _>>()?))
}

/// IdentityAgent: `none`, `SSH_AUTH_SOCK`, `$VARIABLE` or a path.
fn agent_socket(applied: &Applied, tokens: &PathTokens) -> Result<AgentSocket, SshError> {
    let Some(entry) = applied.get("identityagent") else {
        return Ok(AgentSocket::Environment);
    };
    let value = entry.value();
    if value.eq_ignore_ascii_case("none") {
        return Ok(AgentSocket::Disabled);
    }
    if value == "SSH_AUTH_SOCK" {
        return Ok(AgentSocket::Environment);
    }
    if let Some(variable) = value.strip_prefix('$') {
        return match std::env::var_os(variable) {
            Some(path) if !path.is_empty() => Ok(AgentSocket::Path(path.into())),
            _ => Err(invalid(
                entry,
                &format!("a set environment variable (${variable} is unset)"),
            )),
        };
    }
    Ok(AgentSocket::Path(tokens.expand_path(value, entry)?))
}

fn port_number(entry: &Entry) -> Result<u16, SshError> {
    match entry.value().parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(invalid(entry, "a port number from 1 to 65535")),
    }
}

fn strictness(entry: &Entry) -> Result<StrictHostKeyChecking, SshError> {
    Ok(match entry.value().to_ascii_lowercase().as_str() {
        "yes" | "true" => StrictHostKeyChecking::Yes,
        "accept-new" => StrictHostKeyChecking::AcceptNew,
        "no" | "off" | "false" => StrictHostKeyChecking::No,
        "ask" => StrictHostKeyChecking::Ask,
        _ => return Err(invalid(entry, "yes, accept-new, no, off or ask")),
    })
}

/// A yes/no key, `default` when unset.
fn flag(applied: &Applied, key: &str, default: bool) -> Result<bool, SshError> {
    applied
        .get(key)
        .map(yes_no)
        .transpose()
        .map(|set| set.unwrap_or(default))
}

fn yes_no(entry: &Entry) -> Result<bool, SshError> {
    match entry.value().to_ascii_lowercase().as_str() {
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        _ => Err(invalid(entry, "yes or no")),
    }
}

/// ControlPersist: `yes`/`no`, or a time like ssh's (`600`, `10m`, `1h30m`); `0` is `yes`.
fn persist(entry: &Entry) -> Result<Persist, SshError> {
    let value = entry.value().to_ascii_lowercase();
    match value.as_str() {
        "yes" | "true" => return Ok(Persist::Forever),
        "no" | "false" => return Ok(Persist::Off),
        _ => {}
    }
    let secs = ssh_time(&value).ok_or_else(|| invalid(entry, "yes, no or a time like 600, 10m or 1h30m"))?;
    Ok(match secs {
        0 => Persist::Forever,
        secs => Persist::For(Duration::from_secs(secs)),
    })
}

/// Ciphers: a comma-separated list in order of preference. `+`/`-`/`^` edits of OpenSSH's
/// default list are not taken: name the ciphers.
fn ciphers(entry: &Entry) -> Result<Vec<String>, SshError> {
    let value = entry.value();
    if value.starts_with(['+', '-', '^']) {
        return Err(invalid(
            entry,
            "a plain comma-separated list of ciphers (remora does not edit a default list)",
        ));
    }
    let named: Vec<String> = value
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty())
        .collect();
    let supported = super::connect::supported_ciphers();
    if !named.iter().any(|c| supported.contains(c)) {
        let expected = format!("at least one cipher remora speaks ({})", supported.join(", "));
        return Err(invalid(entry, &expected));
    }
    Ok(named)
}

/// HostKeyAlgorithms: a comma-separated list of host-key signature algorithms replacing the
/// defaults, or `+list` added after them (`+ssh-rsa` for a server that offers nothing newer).
/// Every name must be one remora knows.
fn host_key_algorithms(entry: &Entry) -> Result<String, SshError> {
    let value = entry.value().trim();
    if value.starts_with(['-', '^']) {
        return Err(invalid(
            entry,
            "a comma-separated list of host-key algorithms, or +list to add some to the defaults",
        ));
    }
    let names = value.strip_prefix('+').unwrap_or(value);
    let unknown: Vec<&str> = names
        .split(',')
        .map(str::trim)
        .filter(|name| name.parse::<russh::keys::Algorithm>().is_err())
        .collect();
    if !unknown.is_empty() || names.trim().is_empty() {
        return Err(invalid(
            entry,
            "host-key algorithms such as ssh-ed25519, rsa-sha2-512 or ssh-rsa",
        ));
    }
    Ok(value.to_string())
}

/// A time as sshd_config(5) spells it: seconds, or numbers with `s`, `m`, `h`, `d`, `w` run
/// together (`1h30m`).
fn ssh_time(text: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            'w' => 604800,
            _ => return None,
        };
        total = total.checked_add(number.parse::<u64>().ok()?.checked_mul(unit)?)?;
        number.clear();
    }
    if !number.is_empty() {
        total = total.checked_add(number.parse().ok()?)?;
    }
    (!text.is_empty()).then_some(total)
}

/// Whole seconds; 0 and `none` mean unset.
fn seconds(entry: &Entry) -> Result<Option<Duration>, SshError> {
    if entry.value().eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let secs: u64 = entry
        .value()
        .parse()
        .map_err(|_| invalid(entry, "a number of seconds"))?;
    Ok((secs > 0).then(|| Duration::from_secs(secs)))
}

fn count(entry: &Entry) -> Result<u32, SshError> {
    entry.value().parse().map_err(|_| invalid(entry, "a whole number"))
}

fn invalid(entry: &Entry, expected: &str) -> SshError {
    let reason = format!("{} {:?} is not valid; expected {expected}", entry.name, entry.value());
    entry.origin.error(reason)
}

/// The %-tokens of IdentityFile and UserKnownHostsFile.
struct PathTokens<'a> {
    host: &'a str,
    alias: &'a str,
    port: &'a str,
    user: &'a str,
}

impl PathTokens<'_> {
    /// Expands the %-tokens ProxyCommand knows (%h %n %p %r %%).
    fn expand_command(&self, value: &str, entry: &Entry) -> Result<String, SshError> {
        let tokens = [('h', self.host), ('n', self.alias), ('p', self.port), ('r', self.user)];
        expand(value, &tokens, entry)
    }

    /// Expands %-tokens, then a leading `~`.
    fn expand_path(&self, value: &str, entry: &Entry) -> Result<PathBuf, SshError> {
        let home = home_dir().to_string_lossy().into_owned();
        let local = local_user();
        let local_host = nix::unistd::gethostname()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tokens = [
            ('h', self.host),
            ('n', self.alias),
            ('p', self.port),
            ('r', self.user),
            ('u', &local),
            ('d', &home),
            ('l', &local_host),
        ];
        Ok(expand_tilde(Path::new(&expand(value, &tokens, entry)?)))
    }
}

/// Replaces `%x` tokens and `%%`; an unknown token is an error naming the setting's origin.
fn expand(value: &str, tokens: &[(char, &str)], entry: &Entry) -> Result<String, SshError> {
    let mut out = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(token) => match tokens.iter().find(|(name, _)| *name == token) {
                Some((_, replacement)) => out.push_str(replacement),
                None => return Err(entry.origin.error(format!("{}: unknown token %{token}", entry.name))),
            },
            None => return Err(entry.origin.error(format!("{}: '%' at the end", entry.name))),
        }
    }
    Ok(out)
}

fn expand_tilde(path: &Path) -> PathBuf {
    match path.strip_prefix("~") {
        Ok(rest) => home_dir().join(rest),
        Err(_) => path.to_path_buf(),
    }
}

/// `$HOME`, else the account's home directory.
pub fn home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .map(PathBuf::from)
        .or_else(|| directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf()))
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// The local user name: `$USER`, else the account's name, else the uid.
pub fn local_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|user| !user.is_empty())
        .unwrap_or_else(|| {
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

    fn try_resolve(config: &str, target: &str, options: SshOptions) -> Result<HostSettings, SshError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, config).unwrap();
        let options = SshOptions {
            config_file: Some(path),
            ..options
        };
        resolve(&target.parse().unwrap(), &options)
    }

    fn resolve_with(config: &str, target: &str, options: SshOptions) -> HostSettings {
        try_resolve(config, target, options).unwrap()
    }

    #[test]
    fn alias_settings_apply_and_tokens_expand() {
        let config = "Host db\n  HostName db.%h.example\n  Port 2222\n  User ops\n  \
            IdentityFile /keys/%r@%h:%p_%n_%%\n  UserKnownHostsFile /kh/%h \"/kh/all files\"\n  \
            StrictHostKeyChecking accept-new\n  IdentitiesOnly yes\n  ServerAliveInterval 5\n  \
            ServerAliveCountMax 2\n  ConnectTimeout 0\n";
        let settings = resolve_with(config, "db", SshOptions::default());
        assert_eq!(settings.hostname, "db.db.example");
        assert_eq!((settings.port, settings.user.as_str()), (2222, "ops"));
        assert_eq!(
            settings.identity_files,
            [PathBuf::from("/keys/ops@db.db.example:2222_db_%")]
        );
        assert_eq!(
            settings.known_hosts_files,
            [PathBuf::from("/kh/db.db.example"), PathBuf::from("/kh/all files")]
        );
        assert_eq!(settings.strict_host_key_checking, StrictHostKeyChecking::AcceptNew);
        assert!(settings.identities_only);
        assert_eq!(settings.server_alive_interval, Some(Duration::from_secs(5)));
        assert_eq!((settings.server_alive_count_max, settings.connect_timeout), (2, None));
    }

    #[test]
    fn defaults_when_nothing_is_configured() {
        let settings = resolve_with("", "plain", SshOptions::default());
        assert_eq!((settings.hostname.as_str(), settings.port), ("plain", 22));
        assert_eq!(settings.user, local_user());
        assert_eq!(settings.strict_host_key_checking, StrictHostKeyChecking::Yes);
        assert_eq!(
            settings.known_hosts_files,
            [
                home_dir().join(".ssh/known_hosts"),
                home_dir().join(".ssh/known_hosts2")
            ]
        );
        assert_eq!(
            settings.global_known_hosts_files,
            [
                PathBuf::from("/etc/ssh/ssh_known_hosts"),
                PathBuf::from("/etc/ssh/ssh_known_hosts2")
            ]
        );
        assert_eq!(
            (settings.server_alive_interval, settings.server_alive_count_max),
            (None, 3)
        );
    }

    #[test]
    fn home_and_user_tokens_expand() {
        let config = "IdentityFile ~/.ssh/%u-%d\nUserKnownHostsFile ~/kh none\n";
        let settings = resolve_with(config, "h", SshOptions::default());
        let home = home_dir();
        let expected = home.join(format!(".ssh/{}-{}", local_user(), home.display()));
        assert_eq!(settings.identity_files, [expected]);
        assert_eq!(settings.known_hosts_files, [home.join("kh")]);
    }

    #[test]
    fn target_and_flags_win_over_options_and_the_config() {
        let config = "Host db\n  Port 2222\n  User ops\n  IdentityFile /config-key\n";
        let flags = SshOptions {
            port: Some(7),
            user: Some("flag".into()),
            identity_files: vec!["/flag-key".into()],
            options: vec!["Port=8".into(), "User opt".into()],
            ..SshOptions::default()
        };
        let settings = resolve_with(config, "me@db", flags.clone());
        assert_eq!((settings.port, settings.user.as_str()), (7, "me"));
        assert_eq!(
            settings.identity_files,
            [PathBuf::from("/flag-key"), "/config-key".into()]
        );
        let settings = resolve_with(config, "db:9", flags);
        assert_eq!((settings.port, settings.user.as_str()), (9, "flag"));
        let only_o = SshOptions {
            options: vec!["Port=8".into(), "User opt".into(), "Port=99".into()],
            ..SshOptions::default()
        };
        let settings = resolve_with(config, "db", only_o);
        assert_eq!((settings.port, settings.user.as_str()), (8, "opt"));
    }

    #[test]
    fn bad_values_name_their_origin() {
        let err = try_resolve("\nStrictHostKeyChecking maybe\n", "h", SshOptions::default()).unwrap_err();
        assert!(
            err.to_string().contains("config:2: StrictHostKeyChecking \"maybe\""),
            "{err}"
        );
        let options = SshOptions {
            options: vec!["Port=x".into()],
            ..SshOptions::default()
        };
        let err = try_resolve("", "h", options).unwrap_err();
        assert!(err.to_string().starts_with("option -o \"Port=x\": Port \"x\""), "{err}");
        let err = try_resolve("IdentityFile /k/%z\n", "h", SshOptions::default()).unwrap_err();
        assert!(
            err.to_string().contains("config:1: IdentityFile: unknown token %z"),
            "{err}"
        );
    }

    #[test]
    fn jump_hosts_come_from_proxyjump_or_dash_j_and_proxy_commands_expand_tokens() {
        let config = "Host inner\n  HostName 10.1.2.3\n  User ops\n  ProxyJump ada@bastion:2222,ssh://hop2\n\
            Host cmd\n  Port 2200\n  ProxyCommand ssh -W %h:%p gw # for %n as %r\n";
        let settings = resolve_with(config, "inner", SshOptions::default());
        let hops: Vec<String> = match &settings.route {
            Route::Jump(hops) => hops.iter().map(Target::to_string).collect(),
            other => panic!("{other:?}"),
        };
        assert_eq!(hops, ["ada@bastion:2222", "hop2"]);
        let flag = SshOptions {
            jump: Some("other".into()),
            options: vec!["ProxyJump=ignored".into()],
            ..SshOptions::default()
        };
        let settings = resolve_with(config, "inner", flag);
        assert_eq!(settings.route, Route::Jump(vec!["other".parse().unwrap()]), "-J wins");
        assert!(settings.jump_options.options.is_empty() && settings.jump_options.jump.is_none());
        let settings = resolve_with(config, "cmd", SshOptions::default());
        let expected = format!("ssh -W cmd:2200 gw # for cmd as {}", local_user());
        assert_eq!(settings.route, Route::Command(expected));
        let none = SshOptions {
            jump: Some("none".into()),
            ..SshOptions::default()
        };
        assert_eq!(resolve_with(config, "inner", none).route, Route::Direct);
        let err = try_resolve("ProxyJump a,,b\n", "h", SshOptions::default()).unwrap_err();
        assert!(err.to_string().contains("config:1: ProxyJump"), "{err}");
    }

    #[test]
    fn identity_agent_is_a_path_none_or_the_environment() {
        let settings = resolve_with("IdentityAgent ~/agent.%r\n", "h", SshOptions::default());
        let expected = home_dir().join(format!("agent.{}", local_user()));
        assert_eq!(settings.agent, AgentSocket::Path(expected));
        assert_eq!(
            resolve_with("IdentityAgent none\n", "h", SshOptions::default()).agent,
            AgentSocket::Disabled
        );
        let default = resolve_with("", "h", SshOptions::default());
        assert_eq!(default.agent, AgentSocket::Environment);
        let lines = default.describe();
        assert!(lines.contains(&("identityagent", "SSH_AUTH_SOCK".into())), "{lines:?}");
        assert!(lines.contains(&("proxyjump", "none".into())), "{lines:?}");
    }

    #[test]
    fn batch_mode_and_interactive_methods_follow_the_config() {
        let settings = resolve_with("", "h", SshOptions::default());
        assert!(!settings.batch_mode && settings.password_authentication && settings.kbd_interactive_authentication);
        let config = "BatchMode yes\nPasswordAuthentication no\nChallengeResponseAuthentication no\n";
        let settings = resolve_with(config, "h", SshOptions::default());
        assert!(settings.batch_mode && !settings.password_authentication && !settings.kbd_interactive_authentication);
        let err = try_resolve("BatchMode maybe\n", "h", SshOptions::default()).unwrap_err();
        assert!(err.to_string().contains("BatchMode"), "{err}");
    }

    #[test]
    fn control_persist_and_ciphers_follow_the_config() {
        let settings = resolve_with("", "h", SshOptions::default());
        assert_eq!(settings.control_persist, Persist::For(Duration::from_secs(600)));
        assert!(settings.ciphers.is_empty());
        let config = "ControlPersist 1h30m\nCiphers chacha20-poly1305@openssh.com,aes256-gcm@openssh.com\n";
        let settings = resolve_with(config, "h", SshOptions::default());
        assert_eq!(settings.control_persist, Persist::For(Duration::from_secs(5400)));
        assert_eq!(
            settings.ciphers,
            ["chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com"]
        );
        assert_eq!(
            resolve_with("ControlPersist no\n", "h", SshOptions::default()).control_persist,
            Persist::Off
        );
        assert_eq!(
            resolve_with("ControlPersist yes\n", "h", SshOptions::default()).control_persist,
            Persist::Forever
        );
        for bad in ["ControlPersist soon\n", "Ciphers 3des-cbc\n", "Ciphers +aes128-ctr\n"] {
            assert!(try_resolve(bad, "h", SshOptions::default()).is_err(), "{bad}");
        }
    }

    #[test]
    fn dash_f_none_reads_no_config() {
        let options = SshOptions {
            config_file: Some("none".into()),
            ..SshOptions::default()
        };
        let settings = resolve(&"h".parse().unwrap(), &options).unwrap();
        assert_eq!(settings.port, 22);
    }
}
