//! Where a server meets its dormant set (dormancy.rs, Linux only): quiet
//! plain-TCP connections handed over to it, woken from it, and the clock
//! that tells connections they have rested long enough.

use std::sync::Arc;

use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

use super::served::{MayGoDormant, ServedConnection};
use super::Shared;
use crate::connection_loop::Ended;
use crate::connection_task::ConnectionTask;
use crate::dormancy::{DormantOwner, DormantSet, DORMANCY_TICK};
use crate::link::Link;
use crate::server_stream::{PayloadSource, ServerStream};

impl Shared {
  /// Made as the server starts (`start_clock`); `None` if its epoll set
  /// could not be made (the connections then stay tasks).
  fn dormant_set(&self) -> Option<&DormantSet<ServedConnection>> {
    self.dormant_set.get_or_init(|| DormantSet::start(self.shutdown.clone()).ok()).as_ref()
  }
}

impl ServedConnection {
  /// Hands a resting connection to the dormant set; gives the stream back
  /// when it cannot go (TLS, a relay, or bytes of a frame in hand).
  pub(super) fn admit_dormant<S>(
    &self,
    stream: ServerStream<S>,
    generation: u32,
  ) -> Result<(), ServerStream<S>>
  where
    S: PayloadSource + AsyncWrite + MayGoDormant + Send + 'static,
  {
    if !S::MAY_GO_DORMANT || !stream.may_go_dormant() {
      return Err(stream);
    }
    let Some(dormant_set) = self.shared.dormant_set() else { return Err(stream) };
    let stream = S::plain_tcp(stream)?;
    dormant_set.admit(stream, self.clone(), generation, self.shared.tasks.token());
    Ok(())
  }
}

impl DormantOwner for ServedConnection {
  fn link(&self) -> &Link {
    &self.connection.link
  }

  fn wake(self, stream: ServerStream<TcpStream>, generation: u32) {
    let tasks = self.shared.tasks.clone();
    tasks.spawn(ConnectionTask::resume(stream, self, generation));
  }

  fn lost(self) {
    self.report_end(Ended::abnormal());
  }
}

/// Makes the dormant set, then every DORMANCY_TICK tells each connection's
/// task whether it has rested long enough to go dormant.
pub(super) fn start_clock(shared: &Arc<Shared>) {
  let shared = Arc::clone(shared);
  napi::bindgen_prelude::spawn(async move {
    // Now rather than when a first connection goes dormant, so that the
    // server's descriptors (its epoll set, twice) are all there from the
    // start instead of appearing once its first connection has been quiet
    // for a while.
    if shared.tls.is_none() {
      shared.dormant_set();
    }
    let mut ticks = tokio::time::interval(DORMANCY_TICK);
    loop {
      tokio::select! {
        _ = shared.shutdown.cancelled() => return,
        _ = ticks.tick() => {}
      }
      for connection in shared.connections().values() {
        connection.link.dormancy_tick();
      }
    }
  });
}
