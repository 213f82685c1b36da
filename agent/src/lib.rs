//! remora's agent: the sshd subsystem, the per-user session daemon and an embedded SSH server.
//! See `docs/ARCHITECTURE.md` for the lifecycle and invariants.

// What the crate exports is what its binary, its tests and the fuzz targets use; the rest is
// `pub(crate)`.
#![deny(unreachable_pub)]

mod clock;
mod config;
mod connection;
mod create;
mod daemon;
pub mod entry;
mod error;
mod fdpass;
mod handler;
mod handover;
pub mod keeper;
mod launcher;
mod lifecycle;
mod logfile;
mod paths;
mod pipe_width;
mod registry;
mod serve;
pub mod session;
mod subsystem;
mod transfer;

pub use config::ConfigStore;
pub use connection::serve as serve_connection;
pub use daemon::Daemon;
pub use error::{AgentError, HandoverFailure, HostKeyFailure, Result};

pub use paths::StatePaths;
