//! Locking the addon's mutexes.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, ignoring poisoning. Every mutex of the addon guards a
/// plain collection or value (a queue, a map, a batch of events) that a
/// panic while holding the lock cannot leave half-changed in a way worse
/// than losing the process; and a panic on one connection's path must not
/// take every later lock down with it.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
  mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
