//! The heartbeat: one timer per Server (or Socket), not one per connection.
//! Every interval it pings each open connection; a connection whose peer
//! has sent nothing, not even a pong, for two intervals is dropped without
//! a closing handshake (1006).

use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::peer::{now_ms, Peer};

/// Checks for silent peers this many times per interval, so a dead peer is
/// dropped at most a quarter interval after its two intervals are up.
const CHECKS_PER_INTERVAL: u32 = 4;

/// Runs until `stop` is cancelled. `for_each_peer` visits every connection
/// the heartbeat watches.
pub async fn run(
  interval: Duration,
  stop: CancellationToken,
  mut for_each_peer: impl FnMut(&mut dyn FnMut(&Peer)),
) {
  // tokio refuses a zero period.
  let period = (interval / CHECKS_PER_INTERVAL).max(Duration::from_millis(1));
  let mut ticks = tokio::time::interval(period);
  ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
  let silence_limit = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX).saturating_mul(2);
  for tick in 1u32.. {
    tokio::select! {
      _ = stop.cancelled() => return,
      _ = ticks.tick() => {}
    }
    let now = now_ms();
    let ping = tick % CHECKS_PER_INTERVAL == 0;
    for_each_peer(&mut |peer| {
      if !peer.drop_if_silent(now, silence_limit) && ping {
        peer.ping();
      }
    });
  }
}
