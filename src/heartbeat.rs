//! The heartbeat: one timer per Server (or Socket), not one per connection.
//! Every interval it pings each open connection; a connection whose peer
//! has sent nothing, not even a pong, for two intervals is dropped without
//! a closing handshake (1006).
//!
//! A connection is first pinged once it is half an interval old, between
//! half an interval and one and a half after it opened: a short-lived
//! connection (a test, a conformance case) sees no ping it did not ask
//! for, and a silent one still has half an interval to answer before it is
//! dropped.

use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::link::{now_ms, Link};

/// The interval is cut into at most this many slots, each pinging the
/// connections whose key falls in it. A ping brings a dormant connection
/// back into tokio for a moment (dormancy.rs): spread out, thousands of
/// idle connections never all wake at once, and the memory they use
/// while awake stays small.
const MAX_SLOTS: u32 = 32;

/// Slots are at least this long, so that a short interval does not spin
/// the timer.
const MIN_SLOT: Duration = Duration::from_millis(10);

/// Runs until `stop` is cancelled. `for_each_peer` visits every connection
/// the heartbeat watches, with a key that spreads them over the slots (a
/// server's connection handles, which count up).
pub async fn run(
  interval: Duration,
  stop: CancellationToken,
  mut for_each_peer: impl FnMut(&mut dyn FnMut(u32, &Link)),
) {
  let slots = u32::try_from(interval.as_millis() / MIN_SLOT.as_millis())
    .unwrap_or(MAX_SLOTS)
    .clamp(1, MAX_SLOTS);
  // tokio refuses a zero period.
  let period = (interval / slots).max(Duration::from_millis(1));
  let mut ticks = tokio::time::interval(period);
  ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
  let interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
  let silence_limit = interval_ms.saturating_mul(2);
  let first_ping_age = interval_ms / 2;
  let started = Instant::now();
  let mut clock = SlotClock::new(slots);
  loop {
    tokio::select! {
      _ = stop.cancelled() => return,
      _ = ticks.tick() => {}
    }
    let now = now_ms();
    // Slots follow the clock, not the ticks: on a loaded machine ticks come
    // late, and counting them would ping less often than the silence
    // limit, measured on the clock, expects.
    let due = clock.advance(started.elapsed().as_nanos() / period.as_nanos());
    for_each_peer(&mut |key, link| {
      if !link.drop_if_silent(now, silence_limit)
        && due.contains(key % slots)
        && link.age_ms(now) >= first_ping_age
      {
        link.ping();
      }
    });
  }
}

/// Which slots are due at each tick: every slot whose time came since the
/// last tick, each once.
struct SlotClock {
  slots: u32,
  /// The number of the last period visited, counted from the start.
  last: Option<u128>,
}

/// The slots due at one tick: `count` slots from `first`, wrapping.
struct DueSlots {
  slots: u32,
  first: u32,
  count: u32,
}

impl SlotClock {
  fn new(slots: u32) -> SlotClock {
    SlotClock { slots, last: None }
  }

  /// The slots due now that `period` periods have passed since the start.
  fn advance(&mut self, period: u128) -> DueSlots {
    let from = self.last.map_or(period, |last| last + 1);
    self.last = Some(period.max(self.last.unwrap_or(0)));
    let count = period.saturating_add(1).saturating_sub(from).min(u128::from(self.slots));
    let first = (from % u128::from(self.slots)) as u32;
    DueSlots { slots: self.slots, first, count: count as u32 }
  }
}

impl DueSlots {
  fn contains(&self, slot: u32) -> bool {
    (slot + self.slots - self.first) % self.slots < self.count
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn due(clock: &mut SlotClock, period: u128) -> Vec<u32> {
    let due = clock.advance(period);
    (0..clock.slots).filter(|&slot| due.contains(slot)).collect()
  }

  #[test]
  fn each_tick_on_time_makes_one_slot_due() {
    let mut clock = SlotClock::new(4);
    assert_eq!(due(&mut clock, 0), [0]);
    assert_eq!(due(&mut clock, 1), [1]);
    assert_eq!(due(&mut clock, 2), [2]);
    // Ticks late by two periods: slots 3, 0 and 1 come due.
    assert_eq!(due(&mut clock, 5), [0, 1, 3]);
  }

  #[test]
  fn a_late_tick_makes_every_slot_it_skipped_due_once() {
    let mut clock = SlotClock::new(4);
    assert_eq!(due(&mut clock, 0), [0]);
    // Two periods late: slots 1, 2 and 3 come due together.
    assert_eq!(due(&mut clock, 3), [1, 2, 3]);
    // Over a whole interval late: every slot, once.
    assert_eq!(due(&mut clock, 20), [0, 1, 2, 3]);
    // A tick in the same period again: nothing new.
    assert_eq!(due(&mut clock, 20), Vec::<u32>::new());
  }
}
