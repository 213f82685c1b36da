//! Locking a `std::sync::Mutex` whose holder panicked: the data is taken as it was left.
//!
//! Every value remora keeps behind a mutex stays consistent between statements (each change is
//! one assignment or one call on the value), so a panic elsewhere while the lock was held
//! leaves nothing half-done to protect against; refusing the lock instead would turn one
//! failed task into a daemon that can no longer serve anyone.

use std::sync::{Mutex, MutexGuard};

/// [`Mutex::lock`], recovering the guard of a poisoned lock.
pub trait LockRecover<T: ?Sized> {
    /// The guard, whether or not an earlier holder panicked.
    fn lock_or_recover(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> LockRecover<T> for Mutex<T> {
    fn lock_or_recover(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
    }
}
