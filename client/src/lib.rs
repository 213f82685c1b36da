//! remora's client library: reach a host's agent over SSH and drive its sessions.

pub mod ssh;
