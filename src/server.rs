//! The native server: a listener, one task per accepted connection, and the
//! registry that lets JS address connections by a small numeric handle.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use napi::bindgen_prelude::Uint32Array;
use napi::{Error, Result, Status};
use napi_derive::napi;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::buffers::{to_message, Payload};
use crate::connection::{drive, Peer, Queues, Role};
use crate::events::{EventCallback, EventDetail, EventQueue};
use crate::{handshake, heartbeat};

/// Connections still open this long after the server's close frames are
/// terminated.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Pending connections the kernel may hold for `accept` (Node's default).
const LISTEN_BACKLOG: u32 = 511;

/// Options the JS facade has already validated and filled with defaults.
#[napi(object)]
pub struct NativeServerOptions {
  /// Only this request path is upgraded; any path when absent.
  pub path: Option<String>,
  /// Largest incoming message, in bytes.
  pub max_payload: u32,
  /// Milliseconds a client may take to complete the upgrade.
  pub handshake_timeout: u32,
  /// Ping period in milliseconds; 0 disables the heartbeat.
  pub heartbeat_interval: u32,
}

/// The bound address, as `net.Server#address()` reports it.
#[napi(object)]
pub struct AddressInfo {
  pub address: String,
  pub family: String,
  pub port: u32,
}

struct Client {
  peer: Peer,
  raw_headers: Box<str>,
}

struct Shared {
  clients: Mutex<HashMap<u32, Arc<Client>>>,
  next_handle: AtomicU32,
  events: Arc<EventQueue>,
  /// Whether JS observes the server's `messages` (all connections).
  observe_all: AtomicBool,
  shutdown: CancellationToken,
  tasks: TaskTracker,
  path: Option<String>,
  config: WebSocketConfig,
  handshake_timeout: Duration,
  heartbeat_interval: Duration,
}

impl Shared {
  fn clients(&self) -> MutexGuard<'_, HashMap<u32, Arc<Client>>> {
    self.clients.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
  }

  fn client(&self, handle: u32) -> Option<Arc<Client>> {
    self.clients().get(&handle).cloned()
  }

  fn register(&self, client: Arc<Client>) -> u32 {
    let mut clients = self.clients();
    // Handle 0 means the server itself in events; skip it and live handles
    // when the counter wraps.
    let handle = loop {
      let handle = self.next_handle.fetch_add(1, Ordering::Relaxed);
      if handle != 0 && !clients.contains_key(&handle) {
        break handle;
      }
    };
    clients.insert(handle, client);
    handle
  }
}

/// A WebSocket server. Created by lib/server.js, which owns the public API.
#[napi]
pub struct NativeServer {
  shared: Arc<Shared>,
}

#[napi]
impl NativeServer {
  /// Creates a server that reports to `onEvents` (see events.rs); it does
  /// not listen until `listen`.
  #[napi(constructor)]
  pub fn new(options: NativeServerOptions, on_events: EventCallback) -> Result<Self> {
    let max_payload = Some(options.max_payload as usize);
    let config = WebSocketConfig::default()
      // tungstenite allocates the read buffer up front for every connection:
      // 128 KiB by default, far too much for thousands of idle peers.
      .read_buffer_size(4096)
      // Frames are gathered up to this size before a write; a flush after
      // each drained queue writes the rest.
      .write_buffer_size(16 * 1024)
      .max_message_size(max_payload)
      .max_frame_size(max_payload);
    let shared = Shared {
      clients: Mutex::new(HashMap::new()),
      next_handle: AtomicU32::new(1),
      events: EventQueue::start(on_events)?,
      observe_all: AtomicBool::new(false),
      shutdown: CancellationToken::new(),
      tasks: TaskTracker::new(),
      path: options.path,
      config,
      handshake_timeout: Duration::from_millis(options.handshake_timeout.into()),
      heartbeat_interval: Duration::from_millis(options.heartbeat_interval.into()),
    };
    Ok(NativeServer { shared: Arc::new(shared) })
  }

  /// Binds `host:port` and starts accepting. Without a host, binds `::`
  /// (dual-stack) and falls back to `0.0.0.0` where IPv6 is missing. A
  /// failure throws an Error whose `code` is the OS errno as a string.
  #[napi]
  pub fn listen(&self, host: Option<String>, port: u32) -> Result<AddressInfo> {
    let port =
      u16::try_from(port).map_err(|_| Error::new(Status::InvalidArg, "port out of range"))?;
    let listener = napi::bindgen_prelude::within_runtime_if_available(|| match host {
      Some(host) => bind(&host, port),
      None => bind("::", port).or_else(|_| bind("0.0.0.0", port)),
    })
    .map_err(os_error)?;
    let local = listener.local_addr().map_err(os_error)?;
    let accepting = accept_loop(Arc::clone(&self.shared), listener);
    napi::bindgen_prelude::spawn(self.shared.tasks.track_future(accepting));
    if !self.shared.heartbeat_interval.is_zero() {
      let shared = Arc::clone(&self.shared);
      let beat = heartbeat::run(shared.heartbeat_interval, shared.shutdown.clone(), move |visit| {
        for client in shared.clients().values() {
          visit(&client.peer);
        }
      });
      napi::bindgen_prelude::spawn(beat);
    }
    Ok(AddressInfo {
      address: local.ip().to_string(),
      family: if local.is_ipv6() { "IPv6" } else { "IPv4" }.to_owned(),
      port: local.port().into(),
    })
  }

  /// Queues a message to one connection; false if it is gone or closing.
  #[napi]
  pub fn send(&self, handle: u32, payload: Payload) -> bool {
    self
      .shared
      .client(handle)
      .is_some_and(|client| client.peer.send(to_message(payload), usize::MAX))
  }

  /// Queues one message to each of `handles`, sharing its bytes; returns how
  /// many connections took it.
  #[napi]
  pub fn send_many(&self, handles: Uint32Array, payload: Payload) -> u32 {
    let message = to_message(payload);
    let clients = self.shared.clients();
    let receivers = handles.iter().filter_map(|handle| clients.get(handle));
    receivers.filter(|client| client.peer.send(message.clone(), usize::MAX)).count() as u32
  }

  /// Queues one message to every open connection but those in `except`;
  /// returns how many took it.
  #[napi]
  pub fn broadcast(&self, payload: Payload, except: Option<Uint32Array>) -> u32 {
    let message = to_message(payload);
    let except: &[u32] = except.as_deref().unwrap_or(&[]);
    let clients = self.shared.clients();
    let receivers = clients.iter().filter(|(handle, _)| !except.contains(handle));
    receivers.filter(|(_, client)| client.peer.send(message.clone(), usize::MAX)).count() as u32
  }

  /// Starts the closing handshake of one connection, after what it already
  /// queued. The facade has checked `code` and `reason`.
  #[napi]
  pub fn close_connection(&self, handle: u32, code: u32, reason: String) -> bool {
    let Some(client) = self.shared.client(handle) else { return false };
    let code = CloseCode::from(u16::try_from(code).unwrap_or(1000));
    client.peer.close(CloseFrame { code, reason: reason.into() })
  }

  /// Drops one connection without a closing handshake.
  #[napi]
  pub fn terminate(&self, handle: u32) {
    if let Some(client) = self.shared.client(handle) {
      client.peer.terminate();
    }
  }

  /// Whether a connection has seen a close frame (or is gone).
  #[napi]
  pub fn is_closing(&self, handle: u32) -> bool {
    self.shared.client(handle).is_none_or(|client| client.peer.is_closing())
  }

  /// Payload bytes accepted for a connection and not yet written.
  #[napi]
  pub fn buffered_amount(&self, handle: u32) -> f64 {
    self.shared.client(handle).map_or(0.0, |client| client.peer.buffered_amount() as f64)
  }

  /// The request headers of a connection: names and values, each followed
  /// by a NUL.
  #[napi]
  pub fn raw_headers(&self, handle: u32) -> Option<String> {
    self.shared.client(handle).map(|client| client.raw_headers.to_string())
  }

  /// Turns delivery of one connection's messages to JS on or off.
  #[napi]
  pub fn observe(&self, handle: u32, observed: bool) {
    if let Some(client) = self.shared.client(handle) {
      client.peer.observed.store(observed, Ordering::Relaxed);
    }
  }

  /// Turns delivery of every connection's messages to JS on or off.
  #[napi]
  pub fn observe_all(&self, observed: bool) {
    self.shared.observe_all.store(observed, Ordering::Relaxed);
  }

  /// Stops accepting, sends close 1001 to every connection, terminates
  /// those still open after 5 s, then reports `Stopped` as the last event.
  #[napi]
  pub fn close(&self) {
    let shared = Arc::clone(&self.shared);
    if shared.shutdown.is_cancelled() {
      return;
    }
    // Cancel before closing the registered clients: a connection that
    // registers afterwards sees the cancellation and closes itself.
    shared.shutdown.cancel();
    for client in shared.clients().values() {
      client.peer.close(going_away());
    }
    napi::bindgen_prelude::spawn(async move {
      shared.tasks.close();
      if timeout(SHUTDOWN_GRACE, shared.tasks.wait()).await.is_err() {
        for client in shared.clients().values() {
          client.peer.terminate();
        }
        shared.tasks.wait().await;
      }
      shared.events.detail(0, EventDetail::Stopped { dropped: 0 });
      shared.events.finish();
    });
  }
}

fn going_away() -> CloseFrame {
  CloseFrame { code: CloseCode::Away, reason: "Server is closing".into() }
}

fn bind(host: &str, port: u16) -> io::Result<TcpListener> {
  let address: SocketAddr = (host, port)
    .to_socket_addrs()?
    .next()
    .ok_or_else(|| io::Error::new(io::ErrorKind::AddrNotAvailable, "host has no address"))?;
  let socket = if address.is_ipv6() { TcpSocket::new_v6()? } else { TcpSocket::new_v4()? };
  // As Node does: a restarted server can bind while old connections linger.
  socket.set_reuseaddr(true)?;
  socket.bind(address)?;
  socket.listen(LISTEN_BACKLOG)
}

/// An error whose `code` carries the errno, for the facade to name.
fn os_error(error: io::Error) -> Error {
  let errno = error.raw_os_error().map_or_else(|| "0".to_owned(), |errno| errno.to_string());
  Error::new(Status::GenericFailure, format!("{errno}:{error}"))
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
  loop {
    let accepted = tokio::select! {
      _ = shared.shutdown.cancelled() => return,
      accepted = listener.accept() => accepted,
    };
    match accepted {
      Ok((stream, address)) => {
        shared.tasks.spawn(serve(Arc::clone(&shared), stream, address));
      }
      // Out of descriptors or memory: wait instead of spinning; the
      // listener stays open and serves again once resources return.
      Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
    }
  }
}

/// Runs one accepted TCP connection: the upgrade, then messages until it
/// ends. Reports `Open` and `Close` around it.
async fn serve(shared: Arc<Shared>, stream: TcpStream, address: SocketAddr) {
  // Best effort: without it small frames may wait for Nagle's timer.
  let _ = stream.set_nodelay(true);
  let mut accepted = None;
  let path = shared.path.as_deref();
  #[allow(clippy::result_large_err)]
  let upgrade = tokio_tungstenite::accept_hdr_async_with_config(
    stream,
    |request: &_, response| handshake::accept(path, request, response, &mut accepted),
    Some(shared.config),
  );
  let upgraded = tokio::select! {
    _ = shared.shutdown.cancelled() => return,
    upgraded = timeout(shared.handshake_timeout, upgrade) => upgraded,
  };
  // Failed or too slow upgrades are dropped: there is no connection to
  // report yet, and tungstenite has answered malformed requests itself.
  let (Ok(Ok(mut ws)), Some(accepted)) = (upgraded, accepted) else { return };

  let (peer, mut inbox) = Peer::new();
  let client = Arc::new(Client { peer, raw_headers: accepted.raw_headers });
  let handle = shared.register(Arc::clone(&client));
  let events = &shared.events;
  events.detail(
    handle,
    EventDetail::Open {
      remote_address: address.ip().to_string(),
      remote_port: address.port().into(),
      protocol: accepted.protocol,
    },
  );
  if shared.shutdown.is_cancelled() {
    client.peer.close(going_away());
  }

  let queues = Queues { inbox: &mut inbox, backlog: &mut VecDeque::new() };
  let ended = drive(&mut ws, queues, &client.peer, Role::Server, |binary, payload| {
    if client.peer.observed.load(Ordering::Relaxed) || shared.observe_all.load(Ordering::Relaxed) {
      events.message(handle, binary, payload);
    }
  })
  .await;

  shared.clients().remove(&handle);
  let detail = EventDetail::Close {
    code: ended.code.into(),
    reason: ended.reason,
    was_clean: ended.was_clean,
    will_reconnect: false,
    raw_headers: Some(client.raw_headers.to_string()),
  };
  events.detail(handle, detail);
}
