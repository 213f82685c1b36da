//! `remora install`: copy an agent binary to `~/.local/bin/remora-agent` on a host over the
//! user's own SSH connection, for hosts where nobody can add the `remora` subsystem to
//! sshd_config. No root needed; the client finds the agent there through an exec request.
//!
//! Invariants: the host's CPU and C library are asked first (one exec, `platform.rs`), and the
//! binary shipped is one whose ELF headers say it runs there (`elf.rs`, `choose.rs`): the
//! portable agent `scripts/dist` builds when there is one, or the `--agent` given, checked the
//! same way. With none, nothing is copied. The binary lands under a temporary name, is compared
//! by SHA-256 with what was sent and run once (`--version`, whose complaint is shown) before it
//! replaces the installed one in a single rename, so a failed or partial copy never leaves a
//! broken agent behind. A daemon already running there is then handed over to the new binary
//! (`remora-agent upgrade`): its sessions and running commands carry on.

mod choose;
mod elf;
mod platform;

use std::path::Path;

use sha2::{Digest, Sha256};

pub use self::{
    elf::{needs, LibcNeed, Needs},
    platform::{GlibcVersion, HostLibc, HostPlatform},
};
use crate::{
    ssh::{self, sh_command, SshLink, SshOptions, Target},
    ClientError, Result,
};

/// What `install` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Installed {
    /// The host as named on the command line.
    pub host: String,
    /// The local binary that was copied (the one chosen for the host, or `--agent`).
    pub source: String,
    /// What the host runs on, as it said (`Linux x86_64 with glibc 2.31`).
    pub platform: String,
    /// Absolute path of the agent on the host.
    pub path: String,
    /// What the installed agent says with `--version`.
    pub version: String,
    /// SHA-256 of the binary, hex.
    pub sha256: String,
    pub bytes: u64,
    /// The line an admin may add to sshd_config to make it a subsystem.
    pub subsystem_line: String,
    /// What became of the daemon already running there: handed over to the new binary (its
    /// sessions and running commands carry on), none running, or why it was not.
    pub daemon: String,
}

/// Copies an agent that runs on `target` to `~/.local/bin/remora-agent` there: `agent` when
/// given, else the best build found locally for the host's CPU and C library.
pub async fn install_agent(target: &str, options: &SshOptions, agent: Option<&Path>) -> Result<Installed> {
    let fail = |reason: String| ClientError::Install {
        host: target.to_string(),
        reason,
    };
    // A named binary is read before connecting: a typo fails at once.
    let given = match agent {
        Some(path) => Some(read_given(path).map_err(&fail)?),
        None => None,
    };
    let parsed: Target = target.parse()?;
    let link = SshLink::connect(&ssh::resolve(&parsed, options)?).await?;
    let host = remote_platform(&link).await.map_err(&fail)?;
    let build = match given {
        Some(build) => check_given(build, &host).map_err(&fail)?,
        None => choose::choose(&choose::candidates(&host.machine), &host).map_err(&fail)?,
    };
    let sha256 = data_encoding::HEXLOWER.encode(&Sha256::digest(&build.binary));
    let output = link.exec(&sh_command(&install_script(&sha256)), &build.binary).await?;
    let _ = link.close().await;
    if !output.success() {
        return Err(fail(install_failure(output.status, &output.complaint())));
    }
    let text = output.text();
    let mut lines = text.lines();
    let (Some(path), Some(version), daemon) = (lines.next(), lines.next(), lines.next()) else {
        return Err(fail(format!(
            "the install script printed {text:?}, not the agent's path and version"
        )));
    };
    Ok(Installed {
        host: target.to_string(),
        source: build.path.display().to_string(),
        platform: host.to_string(),
        subsystem_line: format!("Subsystem remora {path} subsystem"),
        path: path.to_string(),
        version: version.to_string(),
        daemon: daemon.unwrap_or_default().trim().to_string(),
        sha256,
        bytes: build.binary.len() as u64,
    })
}

/// Reads `--agent PATH`, refusing what is not an ELF executable.
fn read_given(path: &Path) -> std::result::Result<choose::Build, String> {
    let binary = std::fs::read(path).map_err(|err| {
        format!(
            "cannot read the agent binary {}: {err}; pass the right one with --agent PATH",
            path.display()
        )
    })?;
    if elf::needs(&binary).is_none() {
        return Err(format!(
            "{} is not a Linux (ELF) executable; pass remora-agent built for the host with --agent PATH",
            path.display()
        ));
    }
    Ok(choose::Build {
        path: path.to_path_buf(),
        binary,
    })
}

/// Refuses `--agent PATH` when its headers say it cannot run on `host`.
fn check_given(build: choose::Build, host: &HostPlatform) -> std::result::Result<choose::Build, String> {
    let why = match elf::needs(&build.binary) {
        Some(needs) => choose::mismatch(&needs, host),
        None => Some("it is not a Linux (ELF) executable".into()),
    };
    match why {
        None => Ok(build),
        Some(why) => Err(format!(
            "{} cannot run there ({why}; the host is {host}); {}",
            build.path.display(),
            choose::next_step(host)
        )),
    }
}

/// The script run on the host, reading the binary on stdin. Exit codes name the failed step.
fn install_script(sha256: &str) -> String {
    format!(
        r#"set -u
dir="$HOME/.local/bin"
mkdir -p "$dir" || exit 10
tmp="$dir/.remora-agent.$$"
trap 'rm -f "$tmp"' EXIT
cat > "$tmp" || exit 11
if command -v sha256sum >/dev/null 2>&1; then sum=$(sha256sum < "$tmp")
elif command -v shasum >/dev/null 2>&1; then sum=$(shasum -a 256 < "$tmp")
else echo "neither sha256sum nor shasum is installed" >&2; exit 12; fi
sum=${{sum%% *}}
[ "$sum" = "{sha256}" ] || {{ echo "received sha256 $sum" >&2; exit 13; }}
chmod 755 "$tmp" || exit 11
version=$("$tmp" --version) || exit 14
mv -f "$tmp" "$dir/remora-agent" || exit 11
daemon=$("$dir/remora-agent" upgrade 2>&1) || daemon="the running daemon was not handed over: $daemon"
printf '%s\n%s\n%s\n' "$dir/remora-agent" "$version" "$(printf '%s' "$daemon" | tr '\n' ' ')"
"#
    )
}

fn install_failure(status: Option<u32>, complaint: &str) -> String {
    let step = match status {
        Some(10) => "cannot create ~/.local/bin",
        Some(11) => "cannot write ~/.local/bin/remora-agent (disk full or permissions?)",
        Some(12) => "cannot verify the copy",
        Some(13) => "the copy arrived corrupted (checksum mismatch); run install again",
        Some(14) => "the copied agent does not run on the host (a wrong build or a noexec home); it said",
        _ => "the install script failed",
    };
    format!("{step}: {complaint}")
}

/// The host's CPU and C library, asked in one exec round trip.
async fn remote_platform(link: &SshLink) -> std::result::Result<HostPlatform, String> {
    let output = link
        .exec(&sh_command(platform::PROBE), &[])
        .await
        .map_err(|err| err.to_string())?;
    let text = output.text();
    match platform::parse_probe(&text) {
        Some(host) if output.success() => Ok(host),
        _ => Err(format!(
            "cannot tell what the host runs on: `uname -sm` printed {text:?} ({})",
            output.complaint()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_name_the_step() {
        assert!(install_failure(Some(13), "received sha256 00").contains("checksum mismatch"));
        let loader = "version `GLIBC_2.34' not found";
        let text = install_failure(Some(14), loader);
        assert!(text.contains("does not run") && text.ends_with(loader), "{text}");
    }
}
