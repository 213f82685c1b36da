//! remora's agent: the sshd subsystem, the per-user session daemon and an embedded SSH server.
//! See `docs/ARCHITECTURE.md` for the lifecycle and invariants.

mod clock;
pub mod config;
pub mod connection;
pub mod create;
pub mod daemon;
pub mod entry;
pub mod error;
pub mod fdpass;
mod handler;
pub mod handover;
pub mod launcher;
pub mod lifecycle;
pub mod logfile;
pub mod paths;
pub mod pipe_width;
mod registry;
pub mod serve;
pub mod session;
pub mod subsystem;
mod transfer;

pub use error::{AgentError, HandoverFailure, HostKeyFailure, Result};
pub use paths::StatePaths;
