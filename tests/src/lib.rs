//! `remora_testkit`: the end-to-end harness of remora. A test starts a real OpenSSH sshd on a
//! loopback port ([`Sshd`]) whose `remora` subsystem is the freshly built `remora-agent`, drives
//! it with the built `remora` binary or OpenSSH's `ssh`, and breaks links on purpose with a
//! [`FaultyLink`] in between.
//!
//! Invariants:
//! - Nothing a test starts through the harness outlives the [`Sshd`] it came from: dropping it
//!   ends sshd, every session process, the agent's daemon and the clients built by
//!   [`Sshd::remora`] and [`Sshd::ssh`].
//! - A test never reads the developer's `~/.ssh` or ssh-agent: clients get a private HOME, an
//!   explicit ssh_config, key and known_hosts, and no `SSH_AUTH_SOCK`.
//! - Every wait is bounded and names what it waited for when it gives up.

mod account;
mod binaries;
mod chroot;
mod executable;
pub mod hostile_agent;
mod pids;
mod process;
mod proxy;
mod pty;
mod sshd;
mod wait;

pub use account::Account;
pub use binaries::{binaries, Binaries, BIN_DIR_VAR};
pub use chroot::ChrootSshd;
pub use executable::copy_executable;
pub use pids::{command_line, descendants, live_command_lines, process_alive, rss_kib, terminate};
pub use process::{run, run_async, run_child};
pub use proxy::FaultyLink;
pub use pty::PtyProgram;
pub use sshd::{generate_key, Sshd};
pub use wait::{wait_for, wait_until, wait_until_async};
