//! The OOM killer's order for what a session runs: its shells (the runspace's, a terminal's) and
//! everything they start are chosen before the daemon that holds every session
//! ([`remora_unix::rank_before_self`]).

/// Makes the OOM killer choose the just-spawned shell `pid` (and what it runs) before the daemon.
pub(super) fn rank_before_daemon(pid: Option<u32>) {
    let Some(pid) = pid else { return };
    if let Err(err) = remora_unix::rank_before_self(pid) {
        tracing::warn!("cannot raise the OOM score of process {pid}: {err}; the OOM killer may pick the daemon first");
    }
}
