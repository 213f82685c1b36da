//! Surviving a broken link: when a stream's connection fails, reconnect (every second, for up to
//! the policy's window), check that the same agent answered, and resume the same session from the
//! first unacknowledged entry. Entries this process already wrote are skipped, so output arrives
//! exactly once even though the agent re-sends what was never acknowledged.

use std::{
    collections::HashMap,
    io,
    sync::Arc,
    time::{Duration, Instant},
};

use remora_wire::{CommandEnded, Output, OutputDropped};

use crate::{ClientError, OutputSink};

/// What the client reports while it reconnects (the CLI prints these on stderr).
#[derive(Debug, Clone)]
pub enum ReconnectEvent {
    /// The link broke; reconnecting starts.
    LinkLost { error: String },
    /// Still trying, `elapsed` after the link broke.
    Retrying { elapsed: Duration, error: String },
    /// Streaming again; the next entry delivered will be after what was already written.
    Resumed { after: Duration },
    /// The window passed without a working link.
    GaveUp { after: Duration },
}

/// A callback told about reconnect steps.
pub type EventHandler = Arc<dyn Fn(&ReconnectEvent) + Send + Sync>;

/// How long and how often to try reconnecting. A zero window disables reconnecting.
#[derive(Clone)]
pub struct ReconnectPolicy {
    pub window: Duration,
    pub interval: Duration,
    /// Told about every step, for a status line.
    pub on_event: Option<EventHandler>,
}

impl Default for ReconnectPolicy {
    /// Like PowerShell's robust connections: every second for up to four minutes.
    fn default() -> Self {
        Self {
            window: Duration::from_secs(240),
            interval: Duration::from_secs(1),
            on_event: None,
        }
    }
}

impl std::fmt::Debug for ReconnectPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReconnectPolicy")
            .field("window", &self.window)
            .field("interval", &self.interval)
            .finish()
    }
}

impl ReconnectPolicy {
    /// No reconnecting: a broken link ends the stream with its error.
    pub fn disabled() -> Self {
        Self {
            window: Duration::ZERO,
            ..Self::default()
        }
    }

    pub(crate) fn report(&self, event: ReconnectEvent) {
        if let Some(on_event) = &self.on_event {
            on_event(&event);
        }
    }

    /// Whether another attempt fits in the window that started at `since`.
    pub(crate) fn allows(&self, since: Instant) -> bool {
        since.elapsed() < self.window
    }
}

/// One run of reconnect attempts under a policy: paces them and reports every step.
pub(crate) struct Retrying {
    policy: ReconnectPolicy,
    since: Instant,
    attempt_at: tokio::time::Instant,
    /// What broke the link, for a policy that does not reconnect at all.
    cause: String,
}

impl Retrying {
    /// The link broke with `cause`. The first attempt is immediate (most drops are brief); then
    /// one per interval. A zero window makes no attempt and reports nothing.
    pub(crate) fn start(policy: ReconnectPolicy, cause: &ClientError) -> Self {
        let cause = cause.to_string();
        if !policy.window.is_zero() {
            policy.report(ReconnectEvent::LinkLost { error: cause.clone() });
        }
        Self {
            policy,
            since: Instant::now(),
            attempt_at: tokio::time::Instant::now(),
            cause,
        }
    }

    /// Calls `attempt` at the policy's pace until it succeeds, reporting each step; the error
    /// that ended the retries otherwise (not transient, or the window ran out), or
    /// [`ClientError::NotReconnecting`] at once when the window is zero.
    pub(crate) async fn until_ok<T>(
        mut self,
        mut attempt: impl AsyncFnMut() -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        if self.policy.window.is_zero() {
            return Err(ClientError::NotReconnecting { cause: self.cause });
        }
        loop {
            tokio::time::sleep_until(self.attempt_at).await;
            self.attempt_at += self.policy.interval;
            match attempt().await {
                Ok(value) => {
                    self.policy.report(ReconnectEvent::Resumed {
                        after: self.since.elapsed(),
                    });
                    return Ok(value);
                }
                Err(err) if self.retry_after(&err) => {}
                Err(err) => return Err(err),
            }
        }
    }

    /// Whether an attempt that failed with `err` is worth another; reports which.
    fn retry_after(&self, err: &ClientError) -> bool {
        let retry = err.is_transient() && self.policy.allows(self.since);
        self.policy.report(match retry {
            true => ReconnectEvent::Retrying {
                elapsed: self.since.elapsed(),
                error: err.to_string(),
            },
            false => ReconnectEvent::GaveUp {
                after: self.since.elapsed(),
            },
        });
        retry
    }
}

/// Passes each entry to the inner sink at most once per command, across reconnects.
pub(crate) struct OnceSink<'a> {
    inner: &'a mut dyn OutputSink,
    written: HashMap<u64, u64>,
}

impl<'a> OnceSink<'a> {
    pub fn new(inner: &'a mut dyn OutputSink) -> Self {
        Self {
            inner,
            written: HashMap::new(),
        }
    }

    /// Records `seq` of `command`; false if it was already written.
    fn first_time(&mut self, command: u64, seq: u64) -> bool {
        let last = self.written.entry(command).or_insert(0);
        if seq <= *last {
            return false;
        }
        *last = seq;
        true
    }
}

impl OutputSink for OnceSink<'_> {
    fn output(&mut self, output: &Output) -> io::Result<()> {
        match self.first_time(output.command, output.seq) {
            true => self.inner.output(output),
            false => Ok(()),
        }
    }

    fn dropped(&mut self, dropped: &OutputDropped) -> io::Result<()> {
        match self.first_time(dropped.command, dropped.seq) {
            true => self.inner.dropped(dropped),
            false => Ok(()),
        }
    }

    fn ended(&mut self, ended: &CommandEnded) -> io::Result<()> {
        match self.first_time(ended.command, ended.seq) {
            true => self.inner.ended(ended),
            false => Ok(()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
