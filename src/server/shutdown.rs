//! `close()`: stop accepting, start every connection's closing handshake,
//! and terminate those still open when the grace period ends.

use std::sync::Arc;
use std::time::Duration;

use socket2::SockRef;
use tokio::time::timeout;

use super::{lock, Shared};
use crate::events::EventDetail;
use crate::link::close_frame;

/// Stops accepting, sends close `code` with `reason` to every connection,
/// terminates those still open after `timeout_ms`, then reports `Stopped`
/// as the last event. Does nothing the second time.
pub(super) fn close(shared: &Arc<Shared>, code: u32, reason: String, timeout_ms: f64) {
  let shared = Arc::clone(shared);
  if shared.shutdown.is_cancelled() {
    return;
  }
  let grace = Duration::try_from_secs_f64(timeout_ms.max(0.0) / 1000.0).unwrap_or(Duration::MAX);
  shared.events.flow.set_close_timeout(grace);
  let closing = close_frame(code, reason);
  // Before the cancellation: a connection that registers once it is
  // cancelled, too late for the loop below, finds the frame and closes
  // itself (registry.rs).
  *lock(&shared.closing_frame) = Some(closing.clone());
  // Cancel before refusing: the accept task then reads the listener's
  // failure below as the end.
  shared.shutdown.cancel();
  // New connections are refused from now on: shutting down a listening
  // socket's read side stops it listening (Linux), before the accept task
  // has even woken up to drop it.
  if let Some(listener) = lock(&shared.listener).take() {
    let _ = SockRef::from(&*listener).shutdown(std::net::Shutdown::Read);
  }
  for connection in shared.connections().values() {
    connection.link.close(closing.clone());
  }
  // The cluster's task publishes what is queued, then ends.
  if let Some(cluster) = &shared.cluster {
    cluster.stop();
  }
  napi::bindgen_prelude::spawn(async move {
    shared.tasks.close();
    if timeout(grace, shared.tasks.wait()).await.is_err() {
      for connection in shared.connections().values() {
        connection.link.terminate();
      }
      shared.tasks.wait().await;
    }
    shared.events.detail(0, EventDetail::Stopped { dropped: 0 });
    shared.events.finish();
  });
}
