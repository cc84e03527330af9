//! Flow control: how much a peer may make us hold, and when a connection
//! stops reading.
//!
//! A received message waits in the event queue (events/mod.rs) until JS has
//! run the callbacks of its batch. A peer that sends faster than JS handles
//! its messages would grow that queue without bound, so every message JS
//! will see is counted until then: per connection (`Link::undelivered`),
//! and across all connections of the owner together with the messages
//! still arriving (`Flow::total`).
//!
//! - A connection holding more than `max_each` bytes of complete messages
//!   stops reading until JS has taken it below half.
//! - Past `max_total`, every connection holding at least `max_each` bytes
//!   (complete or still arriving) stops reading until the total is under
//!   half; one holding less is never stopped by it. A connection stopped
//!   this way in the middle of a message for `stall_limit` is closed with
//!   1008: it holds memory that only its peer could release.
//! - JS may also stop a connection itself (`connection.pause()`).
//!
//! A connection that does not read leaves its bytes in the kernel, whose
//! full receive buffer makes TCP slow the sender down. Nothing is dropped.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Waker};
use std::time::Duration;

use crate::link::{Link, Paused};
use crate::sync::lock;

/// How long a closing connection waits for its peer's close frame, unless
/// the owner's `close` says otherwise.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The bounds one Server or Socket applies to all its connections.
pub struct Flow {
  /// `maxReceiveBuffer`.
  max_each: usize,
  /// `maxReceiveBufferTotal`; `usize::MAX` for a Socket, which has one
  /// connection.
  max_total: usize,
  /// Bytes of complete messages waiting for JS, and of messages still
  /// arriving, across all connections.
  total: AtomicUsize,
  /// Set when `total` passed `max_total`, until it falls under half.
  over_total: AtomicBool,
  /// The connections stopped by the total, to wake when it clears.
  stopped_by_total: Mutex<Vec<Waker>>,
  /// How long a connection may stay stopped by the total in the middle of
  /// a message.
  pub stall_limit: Duration,
  /// A connection whose unsent bytes passed this emits `'drain'` once they
  /// fall under it again: half of `maxBackpressure`.
  pub drain_below: usize,
  /// Milliseconds a closing connection waits for its peer's close frame.
  close_timeout_ms: AtomicU64,
}

impl Flow {
  pub fn new(
    max_each: usize,
    max_total: usize,
    stall_limit: Duration,
    max_buffered: usize,
  ) -> Flow {
    Flow {
      max_each,
      max_total,
      total: AtomicUsize::new(0),
      over_total: AtomicBool::new(false),
      stopped_by_total: Mutex::new(Vec::new()),
      stall_limit,
      drain_below: max_buffered / 2,
      close_timeout_ms: AtomicU64::new(CLOSE_TIMEOUT.as_millis() as u64),
    }
  }

  /// A complete message of `len` bytes from `link` was queued for JS.
  pub fn hold(&self, link: &Link, len: usize) {
    let held = link.undelivered.fetch_add(len, Ordering::Relaxed) + len;
    if held > self.max_each {
      link.pause(Paused::BY_OWN_BUFFER);
    }
    self.grow(len);
  }

  /// JS has run the callbacks of `len` bytes of `link`'s messages.
  pub fn release(&self, link: &Link, len: usize) {
    let held = link.undelivered.fetch_sub(len, Ordering::Relaxed) - len;
    if held < self.max_each / 2 {
      link.resume(Paused::BY_OWN_BUFFER);
    }
    if held < self.max_each && link.is_paused(Paused::BY_TOTAL) {
      // It no longer holds enough to be stopped by the total.
      link.task.wake();
    }
    self.shrink(len);
  }

  /// The bytes of the message a connection is receiving went from `before`
  /// to `now`.
  pub fn arriving(&self, before: usize, now: usize) {
    if now > before {
      self.grow(now - before);
    } else {
      self.shrink(before - now);
    }
  }

  /// Whether `link`, with `arriving` bytes of a message still arriving, may
  /// read now. When the total stops it, `cx` is woken once the total has
  /// fallen under half.
  pub fn may_read(&self, link: &Link, arriving: usize, cx: &Context<'_>) -> bool {
    let holds_much = || link.undelivered.load(Ordering::Relaxed) + arriving >= self.max_each;
    if self.over_total.load(Ordering::Acquire) && holds_much() {
      if !link.is_paused(Paused::BY_TOTAL) {
        let mut stopped = self.stopped_by_total();
        // Checked again under the lock `shrink` clears it under, so that
        // the wake-up cannot be missed.
        if self.over_total.load(Ordering::Acquire) {
          link.pause(Paused::BY_TOTAL);
          stopped.push(cx.waker().clone());
        }
      }
    } else if link.is_paused(Paused::BY_TOTAL) {
      link.resume(Paused::BY_TOTAL);
    }
    !link.is_paused(Paused::ANY)
  }

  /// How long a closing connection waits for its peer's close frame.
  pub fn close_timeout(&self) -> Duration {
    Duration::from_millis(self.close_timeout_ms.load(Ordering::Relaxed))
  }

  /// Sets the wait for close frames sent from now on.
  pub fn set_close_timeout(&self, timeout: Duration) {
    let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    self.close_timeout_ms.store(ms, Ordering::Relaxed);
  }

  fn grow(&self, len: usize) {
    let total = self.total.fetch_add(len, Ordering::Relaxed) + len;
    if total > self.max_total && !self.over_total.load(Ordering::Relaxed) {
      self.over_total.store(true, Ordering::Release);
    }
  }

  fn shrink(&self, len: usize) {
    let total = self.total.fetch_sub(len, Ordering::Relaxed) - len;
    if total < self.max_total / 2 && self.over_total.load(Ordering::Relaxed) {
      let stopped = {
        let mut stopped = self.stopped_by_total();
        self.over_total.store(false, Ordering::Release);
        std::mem::take(&mut *stopped)
      };
      for waker in stopped {
        waker.wake();
      }
    }
  }

  fn stopped_by_total(&self) -> MutexGuard<'_, Vec<Waker>> {
    lock(&self.stopped_by_total)
  }
}
