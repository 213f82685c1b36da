//! The unix layer both processes use: the client (`remora cp` downloads, `--output-dir`) and
//! the agent (`remora cp` uploads) create files through it.
//!
//! Invariants:
//! - Every name a [`Dir`] takes is one path component (no `/`, not `.` or `..`, not empty);
//!   anything else is refused before a system call is made.
//! - Nothing is opened, written, chmod-ed or renamed through a symlink: a [`Dir`] is opened once
//!   and every later call is relative to its descriptor with `O_NOFOLLOW` (`AT_SYMLINK_NOFOLLOW`),
//!   so a link planted under a name is refused or replaced, never followed.
//! - A file is reused only when `fstat` on its open descriptor shows a regular file of our uid
//!   with exactly one link ([`Dir::open_resume`], [`Dir::create_or_truncate`]).
//! - A lock whose holder panicked is recovered, in one place ([`LockRecover`]).
//! - A per-user daemon (the agent's, the client's connection holder) takes its lifetime lock
//!   before it touches its socket, binds it 0600 in a directory [`ensure_private_dir`] checked,
//!   and starts detached ([`detach`]); these are written once, here.
//! - Modes and times are set through the descriptor ([`set_meta`]), and copied modes never carry
//!   set-uid, set-gid or sticky bits ([`copied_mode`]).

mod daemon;
mod dir;
mod lock;
mod meta;
mod oom;
mod partial;
mod private;
mod read_at;
mod writeback;

pub use daemon::{bind_private_socket, detach, lock_exclusive, open_lock_file, open_log, try_lock_exclusive, Parent};
pub use dir::{Dir, EntryKind, NotOurs};
pub use lock::LockRecover;
pub use meta::{copied_mode, read_prefix, set_meta, CopiedMeta};
pub use oom::{rank_before_self, COMMAND_OOM_BONUS};
pub use partial::part_name;
pub use private::{ensure_private_dir, foreign_peer, tighten_private_dir, verify_private_dir, PrivateDirError};
pub use read_at::read_exact_at;
pub use writeback::{WriteBack, WRITE_BACK_STEP};
