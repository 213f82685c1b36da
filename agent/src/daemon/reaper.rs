//! Removes sessions whose idle timeout has passed since their last client detached, and hands
//! memory back to the system after sessions went away.

use std::{sync::Arc, time::Duration};

use crate::{clock::now_millis, daemon::Daemon};

/// How often expiry is checked; expiry is precise to this interval.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Runs until the daemon stops.
pub async fn run(daemon: Arc<Daemon>) {
    let mut sessions = daemon.registry.len();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CHECK_EVERY) => remove_expired(&daemon),
            _ = daemon.shutdown.cancelled() => return,
        }
        let now = daemon.registry.len();
        if now < sessions {
            release_free_memory();
        }
        sessions = now;
    }
}

/// Returns the allocator's free pages to the system: a daemon that held many sessions or a
/// burst of output should not keep that memory once they are gone (glibc keeps it otherwise).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

fn remove_expired(daemon: &Arc<Daemon>) {
    let now = now_millis();
    for session in daemon.registry.list(None) {
        let info = session.info(0, &daemon.host);
        if info.attached.is_none() && info.expires_at.is_some_and(|at| at <= now) {
            daemon.remove_session(session.id, "idle timeout expired");
        }
    }
}
