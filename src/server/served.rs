//! A served connection as its own task sees it: delivering what arrives to
//! JS, going dormant when quiet (plain TCP only), and reporting its end.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::AsyncWrite;
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::server::TlsStream;

use super::registry::{end_is_reported, Connection};
use super::Shared;
use crate::connection_loop::{Ended, Incoming};
use crate::connection_task::{self, Active, Owner, Period};
use crate::events::{EventDetail, ServerClose};
use crate::link::Link;
use crate::server_stream::{PayloadSource, ServerStream};

/// A server connection, as its resting task reaches it.
#[derive(Clone)]
pub(super) struct ServedConnection {
  pub(super) shared: Arc<Shared>,
  pub(super) connection: Arc<Connection>,
  pub(super) handle: u32,
}

impl<S> Owner<S> for ServedConnection
where
  S: PayloadSource + AsyncWrite + MayGoDormant + Send + 'static,
{
  fn link(&self) -> &Link {
    &self.connection.link
  }

  fn activate(&self, stream: ServerStream<S>, generation: u32) -> Active<S> {
    let (shared, connection, handle) =
      (Arc::clone(&self.shared), Arc::clone(&self.connection), self.handle);
    Box::pin(async move {
      let events = &shared.events;
      let deliver = |incoming| match incoming {
        Incoming::Data(binary, payload) => {
          shared.counters.received(payload.len());
          if connection.link.observed.load(Ordering::Relaxed)
            || shared.observe_all.load(Ordering::Relaxed)
          {
            shared.announce(handle, &connection);
            events.message(handle, &connection, binary, payload);
          }
        }
        // JS marks the connection offline; its 'remove' follows.
        Incoming::Closing => {
          shared.announce(handle, &connection);
          events.detail(handle, EventDetail::Closing {});
        }
        // Only a connection JS has met can have a 'drain' listener.
        Incoming::Drain => {
          if connection.announced.load(Ordering::Acquire) {
            events.detail(handle, EventDetail::Drain {});
          }
        }
      };
      let link = &connection.link;
      let deflate = connection.deflate;
      let period = Period { config: shared.config, deflate, link, flow: &events.flow, generation };
      connection_task::active_period(stream, period, deliver).await
    })
  }

  #[cfg(dormancy)]
  fn go_dormant(
    &self,
    stream: ServerStream<S>,
    generation: u32,
  ) -> std::result::Result<(), ServerStream<S>> {
    self.admit_dormant(stream, generation)
  }

  fn ended(&mut self, ended: Ended) {
    self.report_end(ended);
  }

  fn may_go_dormant(&self) -> bool {
    cfg!(dormancy) && S::MAY_GO_DORMANT
  }
}

impl ServedConnection {
  pub(super) fn report_end(&self, ended: Ended) {
    let shared = &self.shared;
    shared.connections().close(self.handle);
    shared.leave_topics(self.handle);
    shared.discharge();
    shared.counters.ended(ended.code, ended.invalid_input);
    if ended.internal_error {
      shared.announce(self.handle, &self.connection);
      shared.events.detail(self.handle, internal_error_event());
    }
    // Out of `connections`, the connection is announced by this task or not
    // at all. The end of one JS never heard of matters only to a 'remove'
    // listener.
    let announced = self.connection.announced.load(Ordering::Acquire);
    if !end_is_reported(announced, shared.announce_opens.load(Ordering::Acquire)) {
      shared.unannounced.fetch_sub(1, Ordering::Relaxed);
      // JS never had the handle: nothing to release.
      shared.connections().release(self.handle);
      return;
    }
    shared.announce(self.handle, &self.connection);
    let connection = &self.connection;
    let raw_headers = connection.headers.unpacked();
    let remote_address = connection.remote.address();
    let close = ServerClose {
      code: ended.code,
      reason: &ended.reason,
      was_clean: ended.was_clean,
      raw_headers: &raw_headers,
      remote_address: &remote_address,
      remote_port: connection.remote.port,
      protocol: &connection.protocol,
    };
    shared.events.server_close(self.handle, &close);
  }
}

/// `ERR_INTERNAL`: a bug of ours ended a connection (with 1011).
fn internal_error_event() -> EventDetail {
  EventDetail::Error {
    code: "ERR_INTERNAL".into(),
    message: "An internal error of mytosis-websocket ended a connection (1011)".into(),
    status: None,
    errno: None,
  }
}

/// The streams a connection is served on. Only plain TCP connections go
/// dormant: a TLS connection keeps rustls's state, and an adopted one
/// relayed through a socket pair is not worth it.
#[cfg_attr(not(dormancy), allow(dead_code))]
pub(super) trait MayGoDormant: Sized {
  const MAY_GO_DORMANT: bool = false;

  /// The stream as the plain TCP one it is, when `MAY_GO_DORMANT`.
  fn plain_tcp(
    stream: ServerStream<Self>,
  ) -> std::result::Result<ServerStream<TcpStream>, ServerStream<Self>> {
    Err(stream)
  }
}

impl MayGoDormant for TcpStream {
  const MAY_GO_DORMANT: bool = true;

  fn plain_tcp(
    stream: ServerStream<Self>,
  ) -> std::result::Result<ServerStream<TcpStream>, ServerStream<Self>> {
    Ok(stream)
  }
}

impl MayGoDormant for TlsStream<TcpStream> {}

impl MayGoDormant for UnixStream {}
