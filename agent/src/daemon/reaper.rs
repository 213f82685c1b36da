//! Removes sessions whose idle timeout has passed since their last client detached.

use std::{sync::Arc, time::Duration};

use crate::{clock::now_millis, daemon::Daemon};

/// How often expiry is checked; expiry is precise to this interval.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Runs until the daemon stops.
pub async fn run(daemon: Arc<Daemon>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CHECK_EVERY) => remove_expired(&daemon),
            _ = daemon.shutdown.cancelled() => return,
        }
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
