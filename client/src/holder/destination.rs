//! The key of a held connection: the caller's fully resolved destination (HostName, Port, User,
//! the expanded route, identity and known_hosts files, the identity of the ssh_config that
//! produced them), made independent of the caller's working directory.
//!
//! Invariant: two callers share a held connection only when their destinations are equal in
//! every field, so a call never rides a connection it would not have made itself (another
//! `-F` config, an edited one, other known_hosts files). The host key is checked again by each
//! caller against its own known_hosts ([`crate::ssh::trusts_held`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ssh::{self, AgentSocket, HostSettings, StrictHostKeyChecking};

/// Where a connection goes, fully resolved by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    /// The caller's settings, every path absolute.
    pub settings: HostSettings,
    /// The caller's HOME: jump hosts and Includes are resolved against the holder's, so a
    /// holder of another HOME does not serve the caller.
    pub home: PathBuf,
}

impl Destination {
    /// The destination of `settings`, with relative paths made absolute against this
    /// process's working directory (the holder's is another).
    pub fn of(settings: &HostSettings) -> Destination {
        let mut settings = settings.clone();
        absolute_all(&mut settings.identity_files);
        absolute_all(&mut settings.known_hosts_files);
        absolute_all(&mut settings.global_known_hosts_files);
        absolute_all(&mut settings.jump_options.identity_files);
        if let Some(config) = settings
            .jump_options
            .config_file
            .as_mut()
            .filter(|c| c.as_os_str() != "none")
        {
            *config = absolute(config);
        }
        if let AgentSocket::Path(socket) = &mut settings.agent {
            *socket = absolute(socket);
        }
        // The holder never asks anything: the key does not depend on whether the caller may.
        settings.batch_mode = true;
        Destination {
            settings,
            home: ssh::home_dir(),
        }
    }

    /// The text held connections are found by: every field, serialized.
    pub fn key(&self) -> String {
        serde_json::to_string(self).expect("plain data always serializes")
    }

    /// The settings the holder connects with: nothing asked (batch mode) and nothing learned
    /// (`accept-new` and `ask` refuse unknown keys), so questions and "Permanently added"
    /// notices happen in a foreground call that connects by itself.
    pub fn holder_settings(&self) -> HostSettings {
        let mut settings = self.settings.clone();
        settings.batch_mode = true;
        if matches!(
            settings.strict_host_key_checking,
            StrictHostKeyChecking::AcceptNew | StrictHostKeyChecking::Ask
        ) {
            settings.strict_host_key_checking = StrictHostKeyChecking::Yes;
        }
        settings
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn absolute_all(paths: &mut [PathBuf]) {
    for path in paths {
        *path = absolute(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> HostSettings {
        let mut settings = ssh::resolve(
            &"h".parse().unwrap(),
            &ssh::SshOptions {
                config_file: Some("none".into()),
                identity_files: vec!["keys/id".into()],
                options: vec![
                    "UserKnownHostsFile=kh".into(),
                    "StrictHostKeyChecking=accept-new".into(),
                ],
                ..ssh::SshOptions::default()
            },
        )
        .unwrap();
        settings.batch_mode = false;
        settings
    }

    #[test]
    fn paths_become_absolute_and_the_key_covers_every_setting() {
        let cwd = std::env::current_dir().unwrap();
        let destination = Destination::of(&settings());
        assert_eq!(destination.settings.identity_files, [cwd.join("keys/id")]);
        assert_eq!(destination.settings.known_hosts_files, [cwd.join("kh")]);
        assert_eq!(Destination::of(&settings()).key(), destination.key());
        let mut moved = settings();
        moved.port = 2222;
        assert_ne!(Destination::of(&moved).key(), destination.key());
        let mut edited = settings();
        edited.config_identity = "another config".into();
        assert_ne!(Destination::of(&edited).key(), destination.key());
    }

    #[test]
    fn the_holder_neither_asks_nor_learns() {
        let held = Destination::of(&settings()).holder_settings();
        assert!(held.batch_mode);
        assert_eq!(held.strict_host_key_checking, StrictHostKeyChecking::Yes);
    }
}
