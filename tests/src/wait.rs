//! Polling for observable events that send no notification (a file appears, a process that is
//! not our child exits), with a deadline. Things that do notify — a child's exit, bytes on a
//! socket — are awaited directly instead; a poll is never a stand-in for those.

use std::{
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

/// First pause between probes: most events under test happen within a few milliseconds.
const FIRST_PAUSE: Duration = Duration::from_millis(1);
/// Longest pause between probes, so a late event is still seen promptly.
const MAX_PAUSE: Duration = Duration::from_millis(50);

/// Polls `condition` until it holds; fails naming `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) -> anyhow::Result<()> {
    wait_for(timeout, what, || Ok(condition().then_some(())))
}

/// Polls `probe` until it yields a value (`Ok(Some)`); an `Err` ends the wait at once (the event
/// can no longer happen, e.g. the process that would write the file died). Fails naming `what`
/// after `timeout`.
pub fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    let mut pause = FIRST_PAUSE;
    loop {
        if let Some(value) = probe().with_context(|| format!("while waiting for {what}"))? {
            return Ok(value);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("gave up waiting for {what} after {timeout:?}");
        }
        thread::sleep(pause.min(left));
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// [`wait_until`] for async tests: sleeps on tokio's clock, so it also works under
/// `tokio::time::pause()`.
pub async fn wait_until_async(
    timeout: Duration,
    what: &str,
    mut condition: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = FIRST_PAUSE;
    loop {
        if condition() {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            bail!("gave up waiting for {what} after {timeout:?}");
        }
        tokio::time::sleep(pause.min(left)).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}
