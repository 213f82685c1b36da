//! The SSH transport: reach a host the way `ssh` would (same targets, ssh_config, known_hosts,
//! keys and agent) and open the `remora` subsystem on it, over russh.
//!
//! Flow: [`Target`] (what was typed) → [`resolve`] with [`SshOptions`] (the command line) →
//! [`HostSettings`] (like `ssh -G`) → [`SshLink::connect`] → [`SshLink::open_subsystem`].
//!
//! Invariants: nothing here knows the remora protocol (the subsystem is a byte stream); nothing
//! is silently misread (unsupported ssh_config and known_hosts content is warned about with file
//! and line); changed or revoked host keys are always refused. Every failure is an [`SshError`],
//! and every [`SshError`] is a connection failure (exit 255, like ssh).

mod auth;
mod config;
mod connect;
mod error;
mod exec;
mod host_key;
mod interactive;
mod known_hosts;
mod route;
mod settings;
mod target;
pub mod terminal;
#[cfg(test)]
mod test_server;

pub use connect::{preferred_cipher, SshLink, SubsystemStream};
pub use error::SshError;
pub use exec::{sh_command, ExecOutput};
pub use host_key::{trusts_held, VerifiedKey};
pub use settings::{
    home_dir, local_user, resolve, AgentSocket, HostSettings, Persist, Route, SshOptions, StrictHostKeyChecking,
};
pub use target::{check_host_name, check_user_name, Target};
