//! The files around one test sshd: keys, sshd_config, and the client side's ssh_config and
//! known_hosts. Pure text where possible, so what the harness configures is readable in one place.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context};

/// The ssh_config alias that reaches the test sshd.
pub(super) const ALIAS: &str = "testhost";

/// Environment variable sshd sets in every session (and the harness in every client it builds),
/// so teardown finds each process a test started, even orphaned ones.
pub(super) const MARKER_VAR: &str = "REMORA_TESTKIT_SSHD";

/// The HOME of sessions on the test sshd, under the test's dir.
pub(super) const REMOTE_HOME: &str = "remote_home";

/// Everything sshd_config needs to know.
pub(super) struct ServerSettings<'a> {
    pub dir: &'a Path,
    pub port: u16,
    pub marker: &'a str,
    /// Whether this sshd knows `PerSourcePenalties` (OpenSSH 9.8+).
    pub has_penalties: bool,
    /// Lines from the test, placed first: sshd keeps the first value it reads for a keyword.
    pub extra: &'a str,
    /// The command of the `Subsystem remora` line, if there is one (hosts whose admin did not
    /// add it reach the agent through an exec request instead).
    pub subsystem: Option<String>,
    /// More `NAME=VALUE` words for the sessions' environment (sshd reads one `SetEnv` line).
    pub host_env: &'a str,
}

/// Writes an ed25519 key pair at `path` and `path.pub`, encrypted with `passphrase` unless it
/// is empty.
pub fn generate_key(path: &Path, passphrase: &str) -> anyhow::Result<()> {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", passphrase, "-C", "remora-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .context("cannot run ssh-keygen: install openssh-client (scripts/test does it)")?;
    if !status.success() {
        bail!("ssh-keygen failed ({status}) writing {}", path.display());
    }
    Ok(())
}

/// Writes `text` to `path` readable by its owner only (sshd and ssh insist on that for some files).
pub(super) fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// The sshd_config of a test server.
pub(super) fn sshd_config(settings: &ServerSettings) -> String {
    let ServerSettings {
        dir,
        port,
        marker,
        has_penalties,
        extra,
        subsystem,
        host_env,
    } = settings;
    let dir = dir.display();
    let mut config = String::new();
    if !extra.is_empty() {
        config.push_str(extra.trim_end());
        config.push('\n');
    }
    config.push_str(&format!(
        "ListenAddress 127.0.0.1\n\
         Port {port}\n\
         HostKey {dir}/host_key\n\
         PidFile {dir}/sshd.pid\n\
         AuthorizedKeysFile {dir}/authorized_keys\n\
         StrictModes no\n\
         UsePAM no\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PubkeyAuthentication yes\n\
         PermitRootLogin prohibit-password\n\
         AllowTcpForwarding yes\n\
         LogLevel VERBOSE\n\
         # Sessions get a private HOME: nothing a test runs on the \"host\" touches the real one.\n\
         SetEnv {MARKER_VAR}={marker} HOME={dir}/{REMOTE_HOME}{host_env}\n\
         # Tests open many connections at once (reconnect storms, many hosts); the default\n\
         # 10:30:100 would drop some unauthenticated ones at random.\n\
         MaxStartups 100\n",
    ));
    if let Some(command) = subsystem {
        config.push_str(&format!("Subsystem remora {command}\n"));
    }
    if *has_penalties {
        // 9.8+ refuses a source address for a while after a few connections that never
        // authenticate, which is what cut links and banner probes look like.
        config.push_str("PerSourcePenalties no\n");
    }
    config
}

/// An ssh_config `Host` block reaching the test sshd as `alias` through `port`.
pub(super) fn host_block(alias: &str, port: u16, user: &str, key: &Path, known_hosts: &Path) -> String {
    format!(
        "Host {alias}\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  IdentityFile {}\n  \
         IdentitiesOnly yes\n  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n",
        key.display(),
        known_hosts.display()
    )
}

/// A known_hosts line trusting `host_public_key` (a `.pub` line) on 127.0.0.1:`port`.
pub(super) fn known_hosts_line(port: u16, host_public_key: &str) -> String {
    let key: Vec<&str> = host_public_key.split_whitespace().take(2).collect();
    format!("[127.0.0.1]:{port} {}\n", key.join(" "))
}

/// sshd's path: /usr/sbin/sshd, else the first on PATH. Absolute, because sshd re-executes itself
/// for every connection and refuses to start from a relative path.
pub(super) fn sshd_program() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let on_path = std::env::split_paths(&path).map(|dir| dir.join("sshd"));
    std::iter::once(PathBuf::from("/usr/sbin/sshd"))
        .chain(on_path)
        .find(|path| path.is_absolute() && path.is_file())
        .context("sshd not found in /usr/sbin or on PATH: install openssh-server (scripts/test does it)")
}

/// Whether `sshd` is OpenSSH 9.8 or later (it then has per-source penalties).
pub(super) fn has_penalties(sshd: &Path) -> bool {
    // `-V` prints the version on stderr; an sshd too old to know `-V` prints it in its usage.
    let Ok(output) = Command::new(sshd).arg("-V").stdin(Stdio::null()).output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&output.stderr);
    let Some(version) = text.split("OpenSSH_").nth(1) else {
        return false;
    };
    let mut numbers = version
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    (major, minor) >= (9, 8)
}

/// Refuses paths sshd_config or ssh_config could not carry unquoted.
pub(super) fn check_plain(path: &Path) -> anyhow::Result<()> {
    let text = path.to_string_lossy();
    if text
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '%' | '#'))
    {
        bail!(
            "{text} holds a space, quote, % or #, which sshd_config cannot carry: use a plainer \
             TMPDIR or target directory"
        );
    }
    Ok(())
}
