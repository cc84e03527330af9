//! The listener: binding, the accept loop (with its backoff when out of
//! descriptors) and the TLS accept of `wss://` connections.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::timeout;

use super::registry::Remote;
use super::upgrade::serve;
use super::{lock, AddressInfo, Shared};
use crate::events::EventDetail;
use crate::server_stream::ServerStream;

/// Pending connections the kernel may hold for `accept` (Node's default).
const LISTEN_BACKLOG: u32 = 511;

/// The most ciphertext rustls queues for the socket before it stops taking
/// plaintext. Half its default (64 KiB): a large message then goes out two
/// records at a time, each written while it is still in the core's cache,
/// and the peer starts reading sooner. The wss:// 1 MiB echo went from
/// 723-775 to 848-875 MB/s in interleaved runs (256 KiB: 716-765, 16 KiB:
/// 824-855); small messages are not affected.
const TLS_SEND_QUEUE: usize = 32 * 1024;

/// How long the accept loop waits after a failed accept (out of
/// descriptors or memory), doubling while it keeps failing.
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(50);
const ACCEPT_BACKOFF_MOST: Duration = Duration::from_secs(1);

/// Binds `host:port` (or `::`, falling back to `0.0.0.0` where IPv6 is
/// missing) and starts accepting on a task of its own.
pub(super) fn listen(
  shared: &Arc<Shared>,
  host: Option<String>,
  port: u16,
  reuse_port: bool,
) -> io::Result<AddressInfo> {
  let listener = napi::bindgen_prelude::within_runtime_if_available(|| match host {
    Some(host) => bind(&host, port, reuse_port),
    None => bind("::", port, reuse_port).or_else(|_| bind("0.0.0.0", port, reuse_port)),
  })?;
  let local = listener.local_addr()?;
  let listener = Arc::new(listener);
  *lock(&shared.listener) = Some(Arc::clone(&listener));
  let accepting = accept_loop(Arc::clone(shared), listener);
  napi::bindgen_prelude::spawn(shared.tasks.track_future(accepting));
  Ok(AddressInfo {
    address: local.ip().to_string(),
    family: if local.is_ipv6() { "IPv6" } else { "IPv4" }.to_owned(),
    port: local.port().into(),
  })
}

fn bind(host: &str, port: u16, reuse_port: bool) -> io::Result<TcpListener> {
  let address: SocketAddr = (host, port)
    .to_socket_addrs()?
    .next()
    .ok_or_else(|| io::Error::new(io::ErrorKind::AddrNotAvailable, "host has no address"))?;
  let socket = if address.is_ipv6() { TcpSocket::new_v6()? } else { TcpSocket::new_v4()? };
  // As Node does: a restarted server can bind while old connections linger.
  socket.set_reuseaddr(true)?;
  if reuse_port {
    socket.set_reuseport(true)?;
  }
  socket.bind(address)?;
  socket.listen(LISTEN_BACKLOG)
}

async fn accept_loop(shared: Arc<Shared>, listener: Arc<TcpListener>) {
  // Grows while accepting keeps failing; `None` while it succeeds.
  let mut backoff: Option<Duration> = None;
  loop {
    let accepted = tokio::select! {
      biased;
      _ = shared.shutdown.cancelled() => return,
      accepted = listener.accept() => accepted,
    };
    match accepted {
      Ok((stream, address)) => {
        backoff = None;
        spawn_upgrade(&shared, stream, Remote::from(address));
      }
      // `close()` shut the listener down.
      Err(_) if shared.shutdown.is_cancelled() => return,
      // Out of descriptors or memory: say so once, then wait instead of
      // spinning, longer while it lasts. The listener stays open, and the
      // kernel keeps new connections in its backlog until we accept again.
      Err(error) => {
        let wait = match backoff {
          None => {
            report_accept_error(&shared, &error);
            ACCEPT_BACKOFF_FIRST
          }
          Some(wait) => (wait * 2).min(ACCEPT_BACKOFF_MOST),
        };
        backoff = Some(wait);
        tokio::select! {
          _ = shared.shutdown.cancelled() => return,
          _ = tokio::time::sleep(wait) => {}
        }
      }
    }
  }
}

/// Starts the upgrade of an accepted connection on a task of its own, after
/// the TLS handshake when serving `wss://`.
fn spawn_upgrade(shared: &Arc<Shared>, stream: TcpStream, remote: Remote) {
  // Best effort: without it small frames may wait for Nagle's timer.
  let _ = stream.set_nodelay(true);
  // Every handle taken (slots.rs): the stream is dropped, closing it.
  let Some(reservation) = shared.reserve() else { return };
  let shared = Arc::clone(shared);
  if let Some(acceptor) = shared.tls.clone() {
    let tracked = shared.tasks.clone();
    tracked.spawn(async move {
      let deadline = shared.handshake_timeout;
      if let Ok(Ok(mut stream)) = timeout(deadline, acceptor.accept(stream)).await {
        stream.get_mut().1.set_buffer_limit(Some(TLS_SEND_QUEUE));
        serve(shared, ServerStream::new(stream).over_tls(), remote, reservation).await;
      }
    });
  } else {
    shared.tasks.clone().spawn(serve(shared, ServerStream::new(stream), remote, reservation));
  }
}

/// `ERR_ACCEPT`, with the OS errno for JS to name.
fn report_accept_error(shared: &Shared, error: &io::Error) {
  let detail = EventDetail::Error {
    code: "ERR_ACCEPT".into(),
    message: error.to_string(),
    status: None,
    errno: error.raw_os_error(),
  };
  shared.events.detail(0, detail);
}
