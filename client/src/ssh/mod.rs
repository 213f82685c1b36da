//! The SSH transport: targets, ssh_config, known_hosts, authentication and the subsystem
//! channel, over russh. Everything that can fail here is an [`SshError`].

mod config;
mod connect;
mod error;
mod known_hosts;
mod settings;
mod target;

pub use connect::{SshLink, SubsystemStream};
pub use error::SshError;
pub use settings::{home_dir, local_user, resolve, HostSettings, SshOptions, StrictHostKeyChecking};
pub use target::Target;
