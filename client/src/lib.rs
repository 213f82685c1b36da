//! remora's client library: reach a host's agent over SSH and drive its sessions.
//!
//! [`Client`] is the API; the `remora` binary is a thin layer over it (see [`cli`]).

pub mod cli;
mod client;
mod commands;
pub mod connection;
mod error;
pub mod install;
pub mod output;
pub mod registry;
pub mod resume;
pub mod ssh;

pub use client::{BoxedTransport, Client, InvokeOutcome};
pub use connection::OutputSink;
pub use error::{ClientError, Result};
pub use remora_wire as wire;
