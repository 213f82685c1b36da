//! The one terminal lock. Every question remora asks on the terminal — a host key (`ask`), an
//! identity's passphrase, a password, keyboard-interactive prompts — is asked and answered
//! whole while holding it, so when several hosts are connected to at once (fan-out) their
//! questions come one after the other, and each answer is read by the question that named its
//! host. Whatever else draws on the terminal between questions (the fan-out's progress line)
//! draws only while the lock is free ([`try_turn`]).
//!
//! Invariant: one lock for the whole process, held from a question's first byte to its answer
//! (and the notice that follows it). Other locks may be held while waiting for it (the unlocked
//! keys' cache), never taken while holding it, so it cannot deadlock.

use tokio::sync::{Mutex, MutexGuard};

static TERMINAL: Mutex<()> = Mutex::const_new(());

/// The terminal, for one question, from async code.
pub async fn turn() -> MutexGuard<'static, ()> {
    TERMINAL.lock().await
}

/// The terminal, for one question, from a blocking thread (never an async worker).
pub fn blocking_turn() -> MutexGuard<'static, ()> {
    TERMINAL.blocking_lock()
}

/// The terminal for a moment, to draw something that is not a question; `None` while a
/// question is being asked (draw later instead).
pub fn try_turn() -> Option<MutexGuard<'static, ()>> {
    TERMINAL.try_lock().ok()
}
