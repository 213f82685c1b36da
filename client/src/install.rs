//! `remora install`: copy an agent binary to `~/.local/bin/remora-agent` on a host over the
//! user's own SSH connection, for hosts where nobody can add the `remora` subsystem to
//! sshd_config. No root needed; the client finds the agent there through an exec request.
//!
//! Invariants: the binary is checked to be an ELF executable for the host's machine before it is
//! sent; it lands under a temporary name, is compared by SHA-256 with what was sent and run once
//! (`--version`) before it replaces the installed one in a single rename, so a failed or partial
//! copy never leaves a broken agent behind. A daemon already running there is then handed over
//! to the new binary (`remora-agent upgrade`): its sessions and running commands carry on.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{
    ssh::{self, sh_command, SshLink, SshOptions, Target},
    ClientError, Result,
};

/// What `install` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Installed {
    /// The host as named on the command line.
    pub host: String,
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

/// Copies `agent` (a local file) to `~/.local/bin/remora-agent` on `target`.
pub async fn install_agent(target: &str, options: &SshOptions, agent: &Path) -> Result<Installed> {
    let fail = |reason: String| ClientError::Install {
        host: target.to_string(),
        reason,
    };
    let binary = std::fs::read(agent).map_err(|err| {
        fail(format!(
            "cannot read the agent binary {}: {err}; pass the right one with --agent PATH",
            agent.display()
        ))
    })?;
    let machine = elf_machine(&binary).ok_or_else(|| {
        fail(format!(
            "{} is not a Linux (ELF) executable; pass remora-agent built for the host with --agent PATH",
            agent.display()
        ))
    })?;
    let parsed: Target = target.parse()?;
    let link = SshLink::connect(&ssh::resolve(&parsed, options)?).await?;
    let remote = remote_machine(&link).await.map_err(&fail)?;
    if !same_machine(machine, &remote) {
        return Err(fail(format!(
            "{} is built for {machine}, but the host runs {remote}; build remora-agent for {remote} and pass it \
             with --agent PATH",
            agent.display()
        )));
    }
    let sha256 = data_encoding::HEXLOWER.encode(&Sha256::digest(&binary));
    let output = link.exec(&sh_command(&install_script(&sha256)), &binary).await?;
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
        subsystem_line: format!("Subsystem remora {path} subsystem"),
        path: path.to_string(),
        version: version.to_string(),
        daemon: daemon.unwrap_or_default().trim().to_string(),
        sha256,
        bytes: binary.len() as u64,
    })
}

/// The `remora-agent` next to this `remora`, else the first on PATH.
pub fn default_agent_binary() -> Option<PathBuf> {
    let beside = std::env::current_exe().ok()?.with_file_name("remora-agent");
    if beside.is_file() {
        return Some(beside);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("remora-agent"))
        .find(|candidate| candidate.is_file())
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
        Some(14) => "the copied agent does not run on the host (wrong build or a noexec home?)",
        _ => "the install script failed",
    };
    format!("{step}: {complaint}")
}

/// `uname -sm` on the host, e.g. `Linux x86_64`.
async fn remote_machine(link: &SshLink) -> std::result::Result<String, String> {
    let output = link.exec("uname -sm", &[]).await.map_err(|err| err.to_string())?;
    if !output.success() {
        return Err(format!("`uname -sm` failed on the host: {}", output.complaint()));
    }
    Ok(output.text())
}

/// The CPU an ELF executable is for, in `uname -m` spelling.
fn elf_machine(binary: &[u8]) -> Option<&'static str> {
    if binary.get(..4)? != b"\x7fELF" {
        return None;
    }
    // e_machine: 2 bytes at offset 18, in the file's byte order (EI_DATA: 1 little, 2 big).
    let raw = [*binary.get(18)?, *binary.get(19)?];
    let machine = match binary.get(5)? {
        2 => u16::from_be_bytes(raw),
        _ => u16::from_le_bytes(raw),
    };
    Some(match machine {
        0x03 => "i686",
        0x28 => "armv7l",
        0x3e => "x86_64",
        0xb7 => "aarch64",
        0xf3 => "riscv64",
        0x15 => "ppc64le",
        0x16 => "s390x",
        _ => "an unknown CPU",
    })
}

/// Whether `uname -sm` output names a Linux host with `machine`'s CPU.
fn same_machine(machine: &str, uname: &str) -> bool {
    let mut words = uname.split_whitespace();
    let (Some(system), Some(remote)) = (words.next(), words.next()) else {
        return false;
    };
    let remote = match remote {
        "arm64" => "aarch64",
        "amd64" => "x86_64",
        "i386" | "i486" | "i586" => "i686",
        other => other,
    };
    system == "Linux" && remote == machine
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_running_test_binary_matches_this_machine() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let machine = elf_machine(&me).unwrap();
        assert_eq!(
            machine,
            std::env::consts::ARCH
                .replace("x86", "i686")
                .replace("i686_64", "x86_64")
        );
        assert!(same_machine(machine, &format!("Linux {machine}")));
        assert!(!same_machine(machine, &format!("Darwin {machine}")));
        assert!(!same_machine(machine, "Linux sparc64"));
        assert_eq!(elf_machine(b"#!/bin/sh\n"), None);
    }

    #[test]
    fn failures_name_the_step() {
        assert!(install_failure(Some(13), "received sha256 00").contains("checksum mismatch"));
        assert!(install_failure(Some(14), "Exec format error").contains("does not run"));
    }
}
