//! The heartbeat: the server's clock over all its connections. (The
//! dormancy tick is dormant.rs's.)

use std::sync::Arc;

use super::Shared;
use crate::heartbeat;

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
