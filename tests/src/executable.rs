//! Copies of built executables for tests that run a "new" binary (agent upgrades).
//!
//! A copy written by this process would hold a write descriptor to the file while it is being
//! written; a test thread that forks at that moment hands the descriptor to its child until the
//! child execs, and running the copy then fails with `ETXTBSY` (Text file busy). The copy is
//! therefore made by a `cp` child process, which forks nothing: once it has exited no process
//! holds the file open for writing.

use std::{path::Path, process::Command};

use anyhow::{bail, Context};

/// Copies the executable `from` to `to` (mode 0755) without this process ever opening `to`.
pub fn copy_executable(from: &Path, to: &Path) -> anyhow::Result<()> {
    let status = Command::new("cp")
        .arg("--")
        .arg(from)
        .arg(to)
        .status()
        .context("cannot run cp")?;
    if !status.success() {
        bail!("cp {} {} failed: {status}", from.display(), to.display());
    }
    let chmod = Command::new("chmod")
        .arg("0755")
        .arg(to)
        .status()
        .context("cannot run chmod")?;
    if !chmod.success() {
        bail!("chmod 0755 {} failed: {chmod}", to.display());
    }
    Ok(())
}
