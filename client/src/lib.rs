//! remora's client library: reach a host's agent over SSH and drive its sessions.
//!
//! [`Client`] is the API; the `remora` command (crate `remora-cli`) is a thin layer over it.
//! It has no command-line parsing and prints only what ssh itself would (host-key notices,
//! passphrase and password prompts); results are values, progress goes to callbacks
//! ([`resume::ReconnectPolicy`], [`OutputSink`]) and diagnostics to `tracing`.

mod client;
pub mod connection;
mod error;
pub mod holder;
pub mod input;
pub mod install;
pub mod listing;
pub mod registry;
pub mod resume;
pub mod ssh;
pub mod terminal;
pub mod transfer;
pub mod visible;

pub use client::{BoxedTransport, Client, InvokeOutcome};
pub use connection::OutputSink;
pub use error::{ClientError, CopyRefusal, Result};
pub use remora_wire as wire;
pub use visible::{visible, visible_bytes, visible_lines};
