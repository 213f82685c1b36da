//! remora's agent: the sshd subsystem relay, the per-user session daemon and an embedded SSH
//! server. See `docs/ARCHITECTURE.md` for the lifecycle and invariants.

pub mod error;
pub mod launcher;
pub mod paths;
pub mod serve;

pub use error::{AgentError, Result};
pub use paths::StatePaths;
