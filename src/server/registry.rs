//! The handle -> connection registry: which connections are open, by the
//! small numeric handle JS addresses them with, and whether JS has heard of
//! each one yet.
//!
//! The announce rule: a connection is announced (an `Accepted` event) as it
//! opens only when JS asked for that (`announceOpens`: it listens for 'add'
//! or 'remove') or decided the upgrade itself. Otherwise it stays
//! unannounced until its first event JS must see (a message JS observes, a
//! closing handshake, an internal error, or its end while JS listens for
//! 'remove'), or until JS takes the list of unannounced connections.

use std::cmp::Reverse;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, MutexGuard};

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

use super::served::{MayGoDormant, ServedConnection};
use super::slots::Slots;
use super::{lock, Shared};
use crate::connection_loop::Ended;
use crate::connection_task::ConnectionTask;
use crate::deflate::Agreement;
use crate::events::{Description, EventDetail, Receiver};
use crate::header_block::HeaderBlock;
use crate::link::Link;
use crate::server_stream::{PayloadSource, ServerStream};

/// A connection JS may address by its handle.
pub(super) struct Connection {
  pub(super) link: Link,
  /// For `connection.headers`: one small allocation instead of a header
  /// map; JS builds the object only when read.
  pub(super) headers: HeaderBlock,
  pub(super) remote: Remote,
  pub(super) protocol: Box<str>,
  /// Whether JS has heard of the connection (see `Shared::announce`).
  pub(super) announced: AtomicBool,
  /// The compression agreed on in the handshake, if any.
  pub(super) deflate: Option<Agreement>,
}

impl Receiver for Connection {
  fn link(&self) -> &Link {
    &self.link
  }
}

impl Connection {
  /// A connection just upgraded, announced until `register` says
  /// otherwise.
  pub(super) fn new(
    headers: HeaderBlock,
    protocol: String,
    remote: Remote,
    deflate: Option<Agreement>,
  ) -> Connection {
    Connection {
      link: Link::new(),
      headers,
      remote,
      protocol: protocol.into_boxed_str(),
      announced: AtomicBool::new(true),
      deflate,
    }
  }

  /// What JS reads of the connection on first need (its object does not
  /// keep these from the start: most servers never read them).
  pub(super) fn describe(&self) -> Description {
    Description {
      remote_address: self.remote.address(),
      remote_port: self.remote.port.into(),
      protocol: self.protocol.to_string(),
    }
  }
}

/// Where a client connects from; `ip` is `None` when Node could not tell
/// (an adopted socket already closed).
#[derive(Clone, Copy)]
pub(super) struct Remote {
  pub(super) ip: Option<IpAddr>,
  pub(super) port: u16,
}

impl Remote {
  /// As Node reports it: `::ffff:127.0.0.1` on a dual-stack listener.
  pub(super) fn address(&self) -> String {
    self.ip.map(|ip| ip.to_string()).unwrap_or_default()
  }
}

impl From<SocketAddr> for Remote {
  fn from(address: SocketAddr) -> Remote {
    Remote { ip: Some(address.ip()), port: address.port() }
  }
}

impl Shared {
  pub(super) fn connections(&self) -> MutexGuard<'_, Slots> {
    lock(&self.connections)
  }

  pub(super) fn connection(&self, handle: u32) -> Option<Arc<Connection>> {
    self.connections().get(handle).cloned()
  }

  /// Tells JS of a connection it has not heard of yet, before any other
  /// event about it.
  pub(super) fn announce(&self, handle: u32, connection: &Connection) {
    if !connection.announced.swap(true, Ordering::AcqRel) {
      self.unannounced.fetch_sub(1, Ordering::Relaxed);
      self.events.detail(handle, EventDetail::Accepted {});
    }
  }

  /// The handles of the open connections JS has not heard of, in the order
  /// they opened; JS has heard of them once it has this list.
  pub(super) fn take_unannounced(&self, connections: &Slots) -> Vec<u32> {
    let found = collect_unannounced(connections);
    self.unannounced.fetch_sub(found.len(), Ordering::Relaxed);
    found
  }

  /// A handle for a connection about to upgrade; `None` when the server
  /// holds as many as it can address (slots.rs).
  pub(super) fn reserve(self: &Arc<Self>) -> Option<Reservation> {
    let handle = self.connections().reserve()?;
    Some(Reservation { shared: Arc::clone(self), handle, free_on_drop: true })
  }
}

/// A handle reserved for a connection being upgraded. Dropped before the
/// connection opens, it frees its slot, unless JS has heard of the handle.
pub(super) struct Reservation {
  shared: Arc<Shared>,
  handle: u32,
  free_on_drop: bool,
}

impl Reservation {
  pub(super) fn handle(&self) -> u32 {
    self.handle
  }

  /// The slot's fate is decided elsewhere from now on: its connection
  /// opens, or JS has heard of the handle and releases it (`Abandoned`).
  pub(super) fn settle(mut self) -> u32 {
    self.free_on_drop = false;
    self.handle
  }
}

impl Drop for Reservation {
  fn drop(&mut self) {
    if self.free_on_drop {
      self.shared.connections().release(self.handle);
    }
  }
}

/// Opens an upgraded connection: registers it, answers 101, then serves it
/// on a task of its own that holds little more than the socket while the
/// connection is quiet (see connection_task.rs).
///
/// It is registered before the 101 goes out, so that a broadcast sent once
/// the client has read the 101 reaches it (the frame waits on its link
/// until the task runs). A client gone before the 101 is written is a
/// connection that closed abnormally at once.
///
/// `decided_in_js`: JS accepted the upgrade itself (`verifyClient`, or the
/// user's http server) and keeps what it decided until the connection
/// opens, so it hears of it at once.
pub(super) async fn open_connection<S>(
  shared: &Arc<Shared>,
  mut stream: ServerStream<S>,
  reservation: Reservation,
  connection: Connection,
  decided_in_js: bool,
  opening: Opening,
) where
  S: PayloadSource + AsyncWrite + MayGoDormant + Send + 'static,
{
  let served = register(shared, reservation.settle(), connection, decided_in_js);
  let answered = async {
    stream.write_all(&opening.response).await?;
    stream.flush().await
  };
  // A fresh socket's send buffer takes the answer at once; the bound is
  // for a peer that never reads a TLS record.
  if !matches!(timeout(shared.handshake_timeout, answered).await, Ok(Ok(()))) {
    served.report_end(Ended::abnormal());
    return;
  }
  stream.start_frames(opening.leftover);
  shared.tasks.spawn(ConnectionTask::new(stream, served));
}

/// What opens an accepted upgrade: the 101 answer, and the bytes the client
/// sent after its request.
pub(super) struct Opening {
  pub(super) response: Vec<u8>,
  pub(super) leftover: Vec<u8>,
}

/// Makes a connection addressable by its handle (broadcasts reach it from
/// now on), and reports it open when JS listens for that.
fn register(
  shared: &Arc<Shared>,
  handle: u32,
  connection: Connection,
  decided_in_js: bool,
) -> ServedConnection {
  let connection = Arc::new(connection);
  let mut connections = shared.connections();
  // Read under the lock, against `announce_opens`.
  let announce = announced_on_open(decided_in_js, shared.announce_opens.load(Ordering::Acquire));
  if !announce {
    connection.announced.store(false, Ordering::Relaxed);
    shared.unannounced.fetch_add(1, Ordering::Relaxed);
  }
  connections.open(handle, Arc::clone(&connection));
  drop(connections);
  shared.counters.accepted();
  if announce {
    shared.events.detail(handle, EventDetail::Accepted {});
  }
  if shared.shutdown.is_cancelled() {
    if let Some(closing) = lock(&shared.closing_frame).clone() {
      connection.link.close(closing);
    }
  }
  ServedConnection { shared: Arc::clone(shared), connection, handle }
}

/// Whether a connection is announced as it opens: JS decided its upgrade
/// (and keeps what it decided until then), or JS listens for 'add' or
/// 'remove' (`announce_opens`).
fn announced_on_open(decided_in_js: bool, announce_opens: bool) -> bool {
  decided_in_js || announce_opens
}

/// Whether the end of a connection is reported to JS: JS has heard of it,
/// or listens for 'remove'. The end of a connection JS never met is
/// otherwise only uncounted.
pub(super) fn end_is_reported(announced: bool, announce_opens: bool) -> bool {
  announced || announce_opens
}

/// The handles of the connections of `connections` JS has not heard of,
/// marked as heard of, in the order they opened.
fn collect_unannounced(connections: &Slots) -> Vec<u32> {
  let mut found = Vec::new();
  for (&handle, connection) in connections.iter() {
    if !connection.announced.swap(true, Ordering::AcqRel) {
      found.push(handle);
    }
  }
  found.sort_unstable_by_key(|&handle| Reverse(connections.age(handle)));
  found
}

#[cfg(test)]
mod tests {
  use super::*;

  fn connection(announced: bool) -> Arc<Connection> {
    let remote = Remote { ip: Some([127, 0, 0, 1].into()), port: 4000 };
    let connection =
      Connection::new(HeaderBlock::pack(std::iter::empty()), "chat".into(), remote, None);
    connection.announced.store(announced, Ordering::Relaxed);
    Arc::new(connection)
  }

  #[test]
  fn a_connection_is_announced_on_open_only_when_js_asked() {
    assert!(!announced_on_open(false, false));
    assert!(announced_on_open(true, false));
    assert!(announced_on_open(false, true));
    assert!(announced_on_open(true, true));
  }

  #[test]
  fn the_end_of_a_connection_js_never_met_matters_only_to_remove_listeners() {
    assert!(!end_is_reported(false, false));
    assert!(end_is_reported(false, true));
    assert!(end_is_reported(true, false));
  }

  #[test]
  fn unannounced_connections_are_listed_once_in_the_order_they_opened() {
    let mut connections = Slots::new();
    let handles: Vec<u32> = (0..4).map(|_| connections.reserve().unwrap()).collect();
    // Opened out of slot order; the third was announced.
    for (&i, announced) in [1, 0, 2, 3].iter().zip([false, false, true, false]) {
      connections.open(handles[i], connection(announced));
    }
    assert_eq!(collect_unannounced(&connections), [handles[1], handles[0], handles[3]]);
    let description = connections.get(handles[0]).unwrap().describe();
    assert_eq!(description.remote_address, "127.0.0.1");
    assert_eq!((description.remote_port, description.protocol.as_str()), (4000, "chat"));
    assert!(connections.values().all(|connection| connection.announced.load(Ordering::Relaxed)));
    assert!(collect_unannounced(&connections).is_empty());
  }
}
