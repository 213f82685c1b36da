//! A session's terminal slot: at most one live terminal per session, and the last one kept
//! after its shell ended (for `ls`) until a new one replaces it.
//!
//! Invariants:
//! - A live terminal is never replaced: [`TerminalSlot::install`] refuses while one runs.
//! - Generations grow by one per terminal, so a client's resume point names one terminal.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use super::Terminal;

/// See the module docs.
#[derive(Debug)]
pub struct TerminalSlot {
    slot: Mutex<Option<Arc<Terminal>>>,
    /// The session's change signal: a new terminal is news for `ls` and waiters.
    changed: watch::Sender<()>,
}

impl TerminalSlot {
    pub fn new(changed: watch::Sender<()>) -> Self {
        Self {
            slot: Mutex::new(None),
            changed,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Arc<Terminal>>> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The session's terminal, live or ended.
    pub fn get(&self) -> Option<Arc<Terminal>> {
        self.lock().clone()
    }

    /// The session's terminal while its shell runs.
    pub fn live(&self) -> Option<Arc<Terminal>> {
        self.get().filter(|t| t.exit().is_none())
    }

    /// Installs a new terminal; returns false (and installs nothing) when a live one exists.
    pub fn install(&self, new: Arc<Terminal>) -> bool {
        let mut slot = self.lock();
        if slot
            .as_ref()
            .is_some_and(|t| t.exit().is_none() && !Arc::ptr_eq(t, &new))
        {
            return false;
        }
        *slot = Some(new);
        drop(slot);
        self.changed.send_replace(());
        true
    }

    /// The generation a new terminal gets.
    pub fn next_generation(&self) -> u64 {
        self.get().map_or(1, |t| t.generation + 1)
    }
}
