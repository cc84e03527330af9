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

use tokio::time::MissedTickBehavior;
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
  for tick in 0u32.. {
    tokio::select! {
      _ = stop.cancelled() => return,
      _ = ticks.tick() => {}
    }
    let now = now_ms();
    let slot = tick % slots;
    for_each_peer(&mut |key, link| {
      if !link.drop_if_silent(now, silence_limit)
        && key % slots == slot
        && link.age_ms(now) >= first_ping_age
      {
        link.ping();
      }
    });
  }
}
