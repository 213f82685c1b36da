//! Locking a `std::sync::Mutex` whose holder panicked: the data is taken as it was left.
//!
//! Every value remora keeps behind a mutex stays consistent between statements (each change is
//! one assignment or one call on the value), so a panic elsewhere while the lock was held
//! leaves nothing half-done to protect against; refusing the lock instead would turn one
//! failed task into a daemon that can no longer serve anyone.

use std::sync::{Mutex, MutexGuard, TryLockError};

/// [`Mutex::lock`], recovering the guard of a poisoned lock.
pub trait LockRecover<T: ?Sized> {
    /// The guard, whether or not an earlier holder panicked.
    fn lock_or_recover(&self) -> MutexGuard<'_, T>;
    /// The guard if the lock is free now (poisoned or not), without waiting.
    fn try_lock_or_recover(&self) -> Option<MutexGuard<'_, T>>;
}

impl<T: ?Sized> LockRecover<T> for Mutex<T> {
    fn lock_or_recover(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn try_lock_or_recover(&self) -> Option<MutexGuard<'_, T>> {
        match self.try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_still_gives_the_value_as_it_was_left() {
        let value = std::sync::Arc::new(Mutex::new(1));
        let holder = value.clone();
        let panicked = std::thread::spawn(move || {
            let mut guard = holder.lock().unwrap();
            *guard = 2;
            panic!("a holder that panics");
        })
        .join();
        assert!(panicked.is_err());
        assert!(value.is_poisoned());
        assert_eq!(*value.lock_or_recover(), 2);
        assert_eq!(value.try_lock_or_recover().map(|v| *v), Some(2));
        let held = value.lock_or_recover();
        assert!(
            value.try_lock_or_recover().is_none(),
            "held elsewhere: no wait, no guard"
        );
        drop(held);
    }
}
