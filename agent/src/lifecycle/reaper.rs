//! Removes sessions whose idle timeout has passed since their last client detached, at the
//! deadline, and hands memory back to the system after sessions went away.

use std::{sync::Arc, time::Duration};

use crate::{clock::now_millis, daemon::Daemon};

/// Longest sleep between checks, a backstop for a wake-up that was missed.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// Runs until the daemon stops: sleeps until the next session's expiry, or until a client lets
/// go of a session or changes an idle timeout.
pub(super) async fn run(daemon: Arc<Daemon>) {
    let mut sessions = daemon.registry.len();
    loop {
        let next = daemon.remove_expired();
        let now = daemon.registry.len();
        if now < sessions {
            release_free_memory();
        }
        sessions = now;
        let sleep = next.map_or(MAX_SLEEP, |at| {
            Duration::from_millis(at.saturating_sub(now_millis())).min(MAX_SLEEP)
        });
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = daemon.idle_changed.notified() => {}
            _ = daemon.shutdown.cancelled() => return,
        }
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
