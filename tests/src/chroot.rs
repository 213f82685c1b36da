//! `ChrootSshd`: a real older host for one test. A Debian root built by `scripts/debian11-root`
//! (cached under `target/`) runs its own sshd (OpenSSH 8.4, glibc 2.31) on a loopback port,
//! chrooted into the root inside a private mount namespace (`unshare --mount`) that holds its
//! /proc and /dev mounts. Sessions log in as root with a private HOME under the test's directory
//! inside the root, and without a `remora` subsystem line: the agent gets there by `remora
//! install`.
//!
//! Invariants: dropping a `ChrootSshd` ends every process it led to (sshd, its sessions, the
//! agent's daemon: all carry a marker variable, set by sshd's `SetEnv`) and removes its
//! directory in the root. The mounts live only in the namespace those processes hold, so they
//! vanish with the last of them, even if the test itself is killed; nothing is mounted in the
//! test's own namespace.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::Duration,
};

use anyhow::{bail, Context};

use crate::{
    binaries::{binaries, Binaries},
    pids::{self, terminate},
    sshd::{free_port, generate_key, greets, tail},
    wait::wait_for,
};

/// Marks the processes of one `ChrootSshd`.
const MARKER_VAR: &str = "REMORA_TESTKIT_CHROOT";
/// The ssh_config alias that reaches it.
const ALIAS: &str = "oldhost";
const START_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A chrooted sshd of an older distribution; see the module docs.
pub struct ChrootSshd {
    root: PathBuf,
    /// The test's directory inside the root (`/tmp/remora-e2e-…` there).
    inside: String,
    /// The test's client-side directory (keys, ssh_config, HOME).
    dir: tempfile::TempDir,
    child: Child,
    marker: String,
    binaries: Binaries,
}

impl ChrootSshd {
    /// Starts the root's sshd and returns once it greets on its port. Needs root (chroot and a
    /// mount namespace).
    pub fn start(root: &Path) -> anyhow::Result<ChrootSshd> {
        if !nix::unistd::geteuid().is_root() {
            bail!("a chrooted sshd needs root");
        }
        let binaries = binaries()?;
        let marker = uuid::Uuid::new_v4().simple().to_string();
        let inside = format!("/tmp/remora-e2e-{marker}");
        let host_dir = root.join(inside.trim_start_matches('/'));
        fs::create_dir_all(host_dir.join("home"))?;
        fs::create_dir_all(host_dir.join("bin"))?;
        let dir = tempfile::Builder::new().prefix("remora-e2e-chroot-").tempdir()?;
        fs::create_dir(dir.path().join("home"))?;
        generate_key(&host_dir.join("host_key"), "")?;
        generate_key(&dir.path().join("user_key"), "")?;
        fs::copy(dir.path().join("user_key.pub"), host_dir.join("authorized_keys"))?;
        let port = free_port()?;
        fs::write(host_dir.join("sshd_config"), sshd_config(&inside, port, &marker))?;
        let host_key = fs::read_to_string(host_dir.join("host_key.pub"))?;
        let key: Vec<&str> = host_key.split_whitespace().take(2).collect();
        fs::write(
            dir.path().join("known_hosts"),
            format!("[127.0.0.1]:{port} {}\n", key.join(" ")),
        )?;
        fs::write(
            dir.path().join("ssh_config"),
            format!(
                "Host {ALIAS}\n  HostName 127.0.0.1\n  Port {port}\n  User root\n  IdentityFile {}\n  \
                 IdentitiesOnly yes\n  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n",
                dir.path().join("user_key").display(),
                dir.path().join("known_hosts").display()
            ),
        )?;
        // sh mounts inside the new namespace, then becomes sshd: the child's pid is sshd's.
        let script = format!(
            "set -e; r='{root}'; mkdir -p \"$r/run/sshd\"; mount -t proc proc \"$r/proc\"; \
             mount --rbind /dev \"$r/dev\"; exec chroot \"$r\" /usr/sbin/sshd -D -f {inside}/sshd_config -E {inside}/sshd.log",
            root = root.display()
        );
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .env(MARKER_VAR, &marker)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run unshare (util-linux)")?;
        let mut sshd = ChrootSshd {
            root: root.to_path_buf(),
            inside,
            dir,
            child,
            marker,
            binaries,
        };
        let pid_file = host_dir.join("sshd.pid");
        let pid = sshd.child.id().to_string();
        let started = wait_for(START_TIMEOUT, "the chrooted sshd to greet on its port", || {
            if let Some(status) = sshd.child.try_wait()? {
                let mut stderr = String::new();
                if let Some(mut pipe) = sshd.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
                }
                bail!("the chrooted sshd exited ({status}): {stderr}{}", sshd.log());
            }
            let bound = fs::read_to_string(&pid_file).is_ok_and(|text| text.trim() == pid);
            Ok((bound && greets(port)).then_some(()))
        });
        started.with_context(|| format!("sshd log:\n{}", tail(&sshd.log(), 30)))?;
        Ok(sshd)
    }

    /// The ssh_config alias that reaches this host.
    pub fn alias(&self) -> &'static str {
        ALIAS
    }

    /// The HOME of sessions on the host, as seen from outside the root.
    pub fn remote_home(&self) -> PathBuf {
        self.host_path(&format!("{}/home", self.inside))
    }

    /// The same HOME as the host sees it (inside the root).
    pub fn remote_home_inside(&self) -> String {
        format!("{}/home", self.inside)
    }

    /// `path` inside the root, seen from outside.
    pub fn host_path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// The built `remora` with `-F <ssh_config>`, a private HOME and stdin from /dev/null.
    pub fn remora(&self) -> Command {
        let mut command = Command::new(&self.binaries.remora);
        command
            .arg("-F")
            .arg(self.dir.path().join("ssh_config"))
            .env("HOME", self.dir.path().join("home"))
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("SSH_AUTH_SOCK")
            .env(MARKER_VAR, &self.marker)
            .stdin(Stdio::null());
        command
    }

    /// A directory first on the host's PATH, empty at start, for fake commands (a `getconf`
    /// that lies), as seen from outside the root.
    pub fn fake_bin(&self) -> PathBuf {
        self.host_path(&format!("{}/bin", self.inside))
    }

    /// The test's client-side directory, for files to copy.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// sshd's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.host_path(&format!("{}/sshd.log", self.inside))).unwrap_or_default()
    }
}

impl Drop for ChrootSshd {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("--- chrooted sshd log:\n{}", tail(&self.log(), 30));
        }
        // sshd's listener rewrites its environment block for its process title, so it is
        // named by pid; what it started carries the marker.
        let listener = self.child.id() as i32;
        let mut all = vec![listener];
        all.extend(pids::descendants(listener));
        all.extend(pids::with_env(MARKER_VAR, &self.marker));
        all.sort_unstable();
        all.dedup();
        for pid in terminate(&all, STOP_GRACE) {
            eprintln!("remora-testkit: pid {pid} in the chroot ignored SIGTERM for {STOP_GRACE:?}; killed it");
        }
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(self.host_path(&self.inside));
    }
}

fn sshd_config(inside: &str, port: u16, marker: &str) -> String {
    format!(
        "ListenAddress 127.0.0.1\n\
         Port {port}\n\
         HostKey {inside}/host_key\n\
         PidFile {inside}/sshd.pid\n\
         AuthorizedKeysFile {inside}/authorized_keys\n\
         StrictModes no\n\
         UsePAM no\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PubkeyAuthentication yes\n\
         PermitRootLogin prohibit-password\n\
         LogLevel VERBOSE\n\
         SetEnv {MARKER_VAR}={marker} HOME={inside}/home PATH={inside}/bin:/usr/local/bin:/usr/bin:/bin\n"
    )
}
