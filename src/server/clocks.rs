//! The server's two clocks over all its connections: the heartbeat, and
//! the tick that lets quiet connections go dormant.

use std::sync::Arc;

use super::Shared;
use crate::dormancy::DORMANCY_TICK;
use crate::heartbeat;

/// Every DORMANCY_TICK, tells each connection's resting task whether it
/// has rested long enough to go dormant (dormancy.rs).
pub(super) fn start_dormancy_clock(shared: &Arc<Shared>) {
  let shared = Arc::clone(shared);
  napi::bindgen_prelude::spawn(async move {
    let mut ticks = tokio::time::interval(DORMANCY_TICK);
    loop {
      tokio::select! {
        _ = shared.shutdown.cancelled() => return,
        _ = ticks.tick() => {}
      }
      for connection in shared.connections().values() {
        connection.link.quiet_tick();
      }
    }
  });
}

/// Pings every connection each heartbeat interval (heartbeat.rs); none
/// when the interval is 0.
pub(super) fn start_heartbeat(shared: &Arc<Shared>) {
  if shared.heartbeat_interval.is_zero() {
    return;
  }
  let shared = Arc::clone(shared);
  let beat = heartbeat::run(shared.heartbeat_interval, shared.shutdown.clone(), move |visit| {
    for (&handle, connection) in shared.connections().iter() {
      visit(handle, &connection.link);
    }
  });
  napi::bindgen_prelude::spawn(beat);
}
