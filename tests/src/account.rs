//! `Account`: a throw-away local user whose login shell is dash, zsh, fish or tcsh, so a test
//! sshd can log in as it ([`crate::Sshd::start_as`]) and remora runs under that shell as it
//! would on a real host. Needs root (useradd); dropping it removes the user again (userdel).

use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{bail, Context};

/// A local user made for one test; removed on drop.
pub struct Account {
    name: String,
    shell: PathBuf,
}

impl Account {
    /// Creates a user with the installed `shell` (a name: `fish`) as its login shell, a
    /// password that cannot log in but does not lock the account (sshd refuses locked ones even
    /// for keys), and no home directory yet (the test sshd gives it one: [`Account::set_home`]).
    pub fn create(shell: &str) -> anyhow::Result<Account> {
        if !nix::unistd::geteuid().is_root() {
            bail!("creating a user with a {shell} login shell needs root");
        }
        let path = ["/usr/bin", "/bin"]
            .iter()
            .map(|dir| PathBuf::from(dir).join(shell))
            .find(|path| path.is_file())
            .with_context(|| format!("{shell} is not installed (scripts/test installs it)"))?;
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("rt-{shell}-{}", &suffix[..8]);
        let status = Command::new("useradd")
            .args(["-M", "-d", "/nonexistent", "-p", "*", "-s"])
            .arg(&path)
            .arg(&name)
            .stdin(Stdio::null())
            .status()
            .context("cannot run useradd")?;
        if !status.success() {
            bail!("useradd {name} failed: {status}");
        }
        Ok(Account { name, shell: path })
    }

    /// The user's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The user's login shell.
    pub fn shell(&self) -> &PathBuf {
        &self.shell
    }

    /// Makes `home` the user's home directory in the passwd entry (what a login shell on a
    /// terminal starts in and reads its rc files from).
    pub fn set_home(&self, home: &std::path::Path) -> anyhow::Result<()> {
        let status = Command::new("usermod")
            .arg("-d")
            .arg(home)
            .arg(&self.name)
            .stdin(Stdio::null())
            .status()
            .context("cannot run usermod")?;
        if !status.success() {
            bail!("usermod -d {} {} failed: {status}", home.display(), self.name);
        }
        Ok(())
    }

    /// The user's uid.
    pub fn uid(&self) -> anyhow::Result<nix::unistd::Uid> {
        match nix::unistd::User::from_name(&self.name) {
            Ok(Some(user)) => Ok(user.uid),
            _ => bail!("user {} vanished", self.name),
        }
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        let status = Command::new("userdel").arg(&self.name).stdin(Stdio::null()).status();
        if !status.is_ok_and(|status| status.success()) {
            eprintln!("remora-testkit: userdel {} failed; remove the user by hand", self.name);
        }
    }
}
