//! End-to-end tests: a real OpenSSH sshd on loopback runs the freshly built `remora-agent` as its
//! `remora` subsystem; the real `remora` binary and the client library drive it. Each test owns
//! its sshd, state directory and daemon, so tests run in parallel.

mod ansible;
mod bench_signals;
mod buffering;
mod client_crash;
mod configurations;
mod cp;
mod cp_stall;
mod daemon;
mod debian11;
mod demo;
mod disconnected;
mod fleet;
mod host_keys;
mod host_text;
mod hostile;
mod hostile_host;
mod isolation;
mod jobs;
mod library;
mod lifecycle;
mod login_shells;
mod many_hosts;
mod old_servers;
mod planted_links;
mod platforms;
mod reconnect;
mod registry;
mod robustness;
mod runspace;
mod sessions;
mod shell;
mod soak;
mod ssh_world;
mod stdin;
mod support;
mod trust;
mod upgrade;
mod wait;
mod warm;
mod warm_spares;
mod warm_trust;
mod workflow;
