//! Finding the built `remora` and `remora-agent` executables.
//!
//! Cargo builds integration tests into `target/<profile>/deps/` and the workspace's binaries into
//! `target/<profile>/`, but it does not build another package's binaries for a test, so they
//! must have been built beforehand (`scripts/test` does it).

use std::{
    env,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context};

/// Names a directory holding both executables, overriding the search next to the test binary.
pub const BIN_DIR_VAR: &str = "REMORA_BIN_DIR";

/// The built executables under test.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// The client CLI.
    pub remora: PathBuf,
    /// The agent: sshd's `remora` subsystem and the per-user daemon.
    pub agent: PathBuf,
    /// Where `scripts/dist` puts the portable agent (glibc 2.17), which `remora install`
    /// prefers: `target/dist/` beside `target/<profile>/`. It may not have been built.
    pub portable_agent: PathBuf,
}

impl Binaries {
    /// The hostile agent of the tests (`hostile-agent`, a binary of this crate) beside the
    /// others, or an error saying how to build it.
    pub fn hostile_agent(&self) -> anyhow::Result<PathBuf> {
        let path = self.agent.with_file_name("hostile-agent");
        if !is_executable(&path) {
            bail!(
                "{} is missing: build it with `cargo build --workspace --bins` (scripts/test does)",
                path.display()
            );
        }
        Ok(path)
    }
}

/// Finds `remora` and `remora-agent` in `$REMORA_BIN_DIR`, else in `target/<profile>/` above the
/// running test executable.
pub fn binaries() -> anyhow::Result<Binaries> {
    let dir = bin_dir()?;
    let dist = dir.parent().unwrap_or(&dir).join("dist");
    let binaries = Binaries {
        remora: dir.join("remora"),
        agent: dir.join("remora-agent"),
        portable_agent: dist.join("remora-agent-x86_64-linux-gnu"),
    };
    for path in [&binaries.remora, &binaries.agent] {
        if !is_executable(path) {
            bail!(
                "{} is missing or not executable: build them first with `cargo build --workspace --bins` \
                 (scripts/test does), or point {BIN_DIR_VAR} at the directory holding them",
                path.display()
            );
        }
    }
    Ok(binaries)
}

fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = env::var_os(BIN_DIR_VAR) {
        return Ok(PathBuf::from(dir));
    }
    let exe = env::current_exe().context("cannot find the running test executable")?;
    let deps = exe.parent().context("the test executable has no parent directory")?;
    // target/<profile>/deps/<test> → target/<profile>; a binary run from target/<profile>
    // itself (an example, a bench) has its siblings right there.
    match deps.file_name() {
        Some(name) if name == "deps" => Ok(deps.parent().unwrap_or(deps).to_path_buf()),
        _ => Ok(deps.to_path_buf()),
    }
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}
