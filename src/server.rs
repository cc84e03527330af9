//! The native server: a listener (or sockets adopted from a Node
//! `http.Server`), one task per connection, and the registry that lets JS
//! address connections by a small numeric handle.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::os::fd::{BorrowedFd, IntoRawFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use napi::bindgen_prelude::{Buffer, Uint32Array};
use napi::{Error, Result, Status};
use napi_derive::napi;
use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UnixStream};
use tokio::sync::oneshot;
use tokio::time::timeout;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::Request;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::buffers::{json_lines, to_message, Payload};
use crate::connection::{Ended, Incoming};
use crate::dormancy::{Dormitory, Sleeper, DORMANCY_TICK};
use crate::events::{EventCallback, EventDetail, EventQueue, Receiver};
use crate::flow::Flow;
use crate::handshake::{self, Refusal, Upgrade};
use crate::peer::{close_frame, Limits, Paused, Peer};
use crate::resting::{Active, Owner, Resting};
use crate::server_stream::ServerStream;
use crate::{heartbeat, resting, tls};

/// Pending connections the kernel may hold for `accept` (Node's default).
const LISTEN_BACKLOG: u32 = 511;

/// What an upgrade past `maxConnections` is told: come back in this many
/// seconds.
const FULL_RETRY_AFTER_SECONDS: &str = "5";

/// How long the accept loop waits after a failed accept (out of
/// descriptors or memory), doubling while it keeps failing.
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(50);
const ACCEPT_BACKOFF_MOST: Duration = Duration::from_secs(1);

/// Without a heartbeat, a connection stopped by the receive buffers' total
/// in the middle of a message is closed after this long.
const STALL_LIMIT_WITHOUT_HEARTBEAT: Duration = Duration::from_secs(60);

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
  /// Unsent bytes a connection may hold before it is dropped with 1008.
  pub max_backpressure: f64,
  /// Bytes of one connection's messages waiting for JS before it stops
  /// reading (flow.rs); `Infinity` for no bound.
  pub max_receive_buffer: f64,
  /// The same across all connections, messages still arriving included.
  pub max_receive_buffer_total: f64,
  /// Connections open at once; upgrades past it are answered 503.
  pub max_connections: f64,
  /// Whether JS decides each upgrade (`Verify` events answered by `decide`).
  pub verify: bool,
  /// PEM certificate chain and key: serve `wss://` directly.
  pub tls_cert: Option<String>,
  pub tls_key: Option<String>,
  /// SO_REUSEPORT: several processes may listen on the port.
  pub reuse_port: bool,
}

/// The bound address, as `net.Server#address()` reports it.
#[napi(object)]
pub struct AddressInfo {
  pub address: String,
  pub family: String,
  pub port: u32,
}

/// JS's answer to a `Verify` event.
#[napi(object)]
pub struct Verdict {
  pub accept: bool,
  /// The refusal's status (400-599) when not accepted.
  pub status: u32,
  /// The refusal's body.
  pub reason: String,
  /// Extra refusal headers as `[name, value, ...]`.
  pub headers: Vec<String>,
  /// The chosen subprotocol, or "".
  pub protocol: String,
}

/// A socket adopted through a relay (see `adoptRelay`): JS pipes its end.
#[napi(object)]
pub struct Relay {
  pub handle: u32,
  pub fd: i32,
}

/// The request an attached server's JS already read and accepted.
#[napi(object)]
pub struct AdoptedRequest {
  /// Path and query.
  pub url: String,
  /// `req.rawHeaders`: `[name, value, ...]`.
  pub headers: Vec<String>,
  pub protocol: String,
  pub remote_address: String,
  pub remote_port: u32,
}

/// A connection JS may address by its handle.
struct Client {
  peer: Peer,
  raw_headers: Box<str>,
  remote: Remote,
  protocol: Box<str>,
  /// Whether JS has heard of the connection (see `Shared::announce`).
  announced: AtomicBool,
}

impl Receiver for Client {
  fn peer(&self) -> &Peer {
    &self.peer
  }
}

impl Client {
  /// A connection just upgraded, announced until `start_connection` says
  /// otherwise.
  fn new(raw_headers: Box<str>, protocol: String, remote: Remote) -> Client {
    Client {
      peer: Peer::new(),
      raw_headers,
      remote,
      protocol: protocol.into_boxed_str(),
      announced: AtomicBool::new(true),
    }
  }

  /// `(remoteAddress, remotePort, protocol)`: what JS makes its object of.
  fn describe(&self) -> (String, u32, String) {
    (self.remote.address(), self.remote.port.into(), self.protocol.to_string())
  }

  fn open_event(&self) -> EventDetail {
    let (remote_address, remote_port, protocol) = self.describe();
    EventDetail::Open { remote_address, remote_port, protocol }
  }
}

/// Where a client connects from; `ip` is `None` when Node could not tell
/// (an adopted socket already closed).
#[derive(Clone, Copy)]
struct Remote {
  ip: Option<IpAddr>,
  port: u16,
}

impl Remote {
  /// As Node reports it: `::ffff:127.0.0.1` on a dual-stack listener.
  fn address(&self) -> String {
    self.ip.map(|ip| ip.to_string()).unwrap_or_default()
  }
}

impl From<SocketAddr> for Remote {
  fn from(address: SocketAddr) -> Remote {
    Remote { ip: Some(address.ip()), port: address.port() }
  }
}

/// A connection JS has not heard of yet, as `announceAll` hands it over.
#[napi(object)]
pub struct Unannounced {
  pub handle: u32,
  pub remote_address: String,
  pub remote_port: u32,
  pub protocol: String,
}

struct Shared {
  clients: Mutex<HashMap<u32, Arc<Client>>>,
  /// The listening socket, so that `close()` can stop it at once.
  listener: Mutex<Option<Arc<TcpListener>>>,
  /// The close frame of `close()`, for connections that open after it.
  closing_frame: Mutex<Option<CloseFrame>>,
  next_handle: AtomicU32,
  /// Upgrades waiting for JS's verdict, by connection handle.
  verdicts: Mutex<HashMap<u32, oneshot::Sender<Verdict>>>,
  events: Arc<EventQueue>,
  /// Whether JS observes the server's `messages` (all connections).
  observe_all: AtomicBool,
  /// Whether JS listens for connections opening or ending ('add' or
  /// 'remove'); until it does, connections are announced lazily.
  announce_opens: AtomicBool,
  /// Connections open that JS has not heard of.
  unannounced: AtomicUsize,
  /// Connections open or upgrading past the admission check.
  admitted: AtomicUsize,
  max_connections: usize,
  shutdown: CancellationToken,
  tasks: TaskTracker,
  path: Option<String>,
  verify: bool,
  tls: Option<TlsAcceptor>,
  limits: Limits,
  config: WebSocketConfig,
  handshake_timeout: Duration,
  heartbeat_interval: Duration,
  /// Connections quiet for a while (dormancy.rs); made on first need, and
  /// `None` if its epoll set could not be made.
  dormitory: OnceLock<Option<Dormitory<ServedConnection>>>,
}

/// Locks a mutex of the server's state. A panic while holding one cannot
/// leave the state half-changed in a way worse than losing the process, so
/// poisoning is ignored.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
  mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
  fn clients(&self) -> MutexGuard<'_, HashMap<u32, Arc<Client>>> {
    lock(&self.clients)
  }

  fn verdicts(&self) -> MutexGuard<'_, HashMap<u32, oneshot::Sender<Verdict>>> {
    lock(&self.verdicts)
  }

  fn dormitory(&self) -> Option<&Dormitory<ServedConnection>> {
    self.dormitory.get_or_init(|| Dormitory::start(self.shutdown.clone()).ok()).as_ref()
  }

  fn client(&self, handle: u32) -> Option<Arc<Client>> {
    self.clients().get(&handle).cloned()
  }

  /// Admits one more connection unless `maxConnections` are open; it counts
  /// until `discharge` (the guard's drop, or the connection's end).
  fn admit(&self) -> Option<Admission<'_>> {
    let below_max = |open: usize| (open < self.max_connections).then_some(open + 1);
    self.admitted.fetch_update(Ordering::AcqRel, Ordering::Acquire, below_max).ok()?;
    Some(Admission { shared: self })
  }

  fn discharge(&self) {
    self.admitted.fetch_sub(1, Ordering::AcqRel);
  }

  /// Tells JS of a connection it has not heard of yet, before any other
  /// event about it.
  fn announce(&self, handle: u32, client: &Client) {
    if !client.announced.swap(true, Ordering::AcqRel) {
      self.unannounced.fetch_sub(1, Ordering::Relaxed);
      self.events.detail(handle, client.open_event());
    }
  }

  /// The open connections JS has not heard of, in the order they were
  /// accepted; JS has heard of them once it has this list.
  fn take_unannounced(&self, clients: &HashMap<u32, Arc<Client>>) -> Vec<Unannounced> {
    let mut found = Vec::new();
    for (&handle, client) in clients {
      if !client.announced.swap(true, Ordering::AcqRel) {
        let (remote_address, remote_port, protocol) = client.describe();
        found.push(Unannounced { handle, remote_address, remote_port, protocol });
      }
    }
    self.unannounced.fetch_sub(found.len(), Ordering::Relaxed);
    // Handles count up as connections are accepted; they wrap only after
    // four billion.
    found.sort_unstable_by_key(|connection| connection.handle);
    found
  }

  /// A handle for a new connection. Handle 0 means the server itself in
  /// events; live handles are skipped when the counter wraps.
  fn new_handle(&self) -> u32 {
    let clients = self.clients();
    loop {
      let handle = self.next_handle.fetch_add(1, Ordering::Relaxed);
      if handle != 0 && !clients.contains_key(&handle) {
        return handle;
      }
    }
  }
}

/// An admitted connection not yet open: dropped, it leaves its place.
struct Admission<'a> {
  shared: &'a Shared,
}

impl Admission<'_> {
  /// The connection opened: it keeps its place until it ends.
  fn keep(self) {
    std::mem::forget(self);
  }
}

impl Drop for Admission<'_> {
  fn drop(&mut self) {
    self.shared.discharge();
  }
}

/// A number option from JS where `Infinity` means no bound.
fn bound(limit: f64) -> usize {
  if limit.is_finite() {
    limit as usize
  } else {
    usize::MAX
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
      // 128 KiB by default, far too much for thousands of idle peers. Large
      // messages are still read in large chunks (see server_stream.rs).
      .read_buffer_size(4096)
      // Frames are gathered up to this size before a write; a flush after
      // each drained queue writes the rest.
      .write_buffer_size(16 * 1024)
      .max_message_size(max_payload)
      .max_frame_size(max_payload);
    let tls = match (&options.tls_cert, &options.tls_key) {
      (Some(cert), Some(key)) => Some(
        tls::server_acceptor(cert, key)
          .map_err(|message| Error::new(Status::InvalidArg, message))?,
      ),
      _ => None,
    };
    let max_buffered = bound(options.max_backpressure);
    let heartbeat_interval = Duration::from_millis(options.heartbeat_interval.into());
    let stall_limit = if heartbeat_interval.is_zero() {
      STALL_LIMIT_WITHOUT_HEARTBEAT
    } else {
      heartbeat_interval * 2
    };
    let max_each = bound(options.max_receive_buffer);
    // One message of `maxPayload` must always be able to arrive: a total
    // below it would stop such a message forever.
    let max_total = bound(options.max_receive_buffer_total)
      .max((options.max_payload as usize).saturating_add(max_each));
    let flow = Flow::new(max_each, max_total, stall_limit, max_buffered);
    let shared = Shared {
      clients: Mutex::new(HashMap::new()),
      listener: Mutex::new(None),
      closing_frame: Mutex::new(None),
      next_handle: AtomicU32::new(1),
      verdicts: Mutex::new(HashMap::new()),
      events: EventQueue::start(on_events, flow)?,
      observe_all: AtomicBool::new(false),
      announce_opens: AtomicBool::new(false),
      unannounced: AtomicUsize::new(0),
      admitted: AtomicUsize::new(0),
      max_connections: bound(options.max_connections),
      shutdown: CancellationToken::new(),
      tasks: TaskTracker::new(),
      path: options.path,
      verify: options.verify,
      tls,
      limits: Limits { max_buffered, ..Limits::NONE },
      config,
      handshake_timeout: Duration::from_millis(options.handshake_timeout.into()),
      heartbeat_interval,
      dormitory: OnceLock::new(),
    };
    let server = NativeServer { shared: Arc::new(shared) };
    server.start_heartbeat();
    server.start_dormancy_clock();
    Ok(server)
  }

  /// Binds `host:port` and starts accepting. Without a host, binds `::`
  /// (dual-stack) and falls back to `0.0.0.0` where IPv6 is missing. A
  /// failure throws an Error whose message starts with the OS errno.
  #[napi]
  pub fn listen(&self, host: Option<String>, port: u32, reuse_port: bool) -> Result<AddressInfo> {
    let port =
      u16::try_from(port).map_err(|_| Error::new(Status::InvalidArg, "port out of range"))?;
    let listener = napi::bindgen_prelude::within_runtime_if_available(|| match host {
      Some(host) => bind(&host, port, reuse_port),
      None => bind("::", port, reuse_port).or_else(|_| bind("0.0.0.0", port, reuse_port)),
    })
    .map_err(os_error)?;
    let local = listener.local_addr().map_err(os_error)?;
    let listener = Arc::new(listener);
    *lock(&self.shared.listener) = Some(Arc::clone(&listener));
    let accepting = accept_loop(Arc::clone(&self.shared), listener);
    napi::bindgen_prelude::spawn(self.shared.tasks.track_future(accepting));
    Ok(AddressInfo {
      address: local.ip().to_string(),
      family: if local.is_ipv6() { "IPv6" } else { "IPv4" }.to_owned(),
      port: local.port().into(),
    })
  }

  /// Takes over a TCP socket that a Node `http.Server` upgraded and JS
  /// accepted: answers 101 on it and serves it. `fd` stays Node's (we use a
  /// duplicate); `head` is what Node read past the request. Throws, and
  /// touches nothing, when the request is not a valid upgrade.
  #[napi]
  pub fn adopt(&self, fd: i32, head: Buffer, request: AdoptedRequest) -> Result<u32> {
    let (response, raw_headers) = adopted_response(&request)?;
    // SAFETY: JS passes the fd of a live socket it still owns; it is only
    // borrowed long enough to duplicate it (with close-on-exec).
    let owned = unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned().map_err(os_error)?;
    let std_stream = std::net::TcpStream::from(owned);
    std_stream.set_nonblocking(true).map_err(os_error)?;
    let stream =
      napi::bindgen_prelude::within_runtime_if_available(|| TcpStream::from_std(std_stream))
        .map_err(os_error)?;
    let _ = stream.set_nodelay(true);
    Ok(self.serve_adopted(ServerStream::new(stream), head, response, raw_headers, request))
  }

  /// Like `adopt` for a socket whose bytes Node must keep handling (TLS
  /// terminated by an `https.Server`): returns one end of a socket pair for
  /// JS to pipe to and from that socket.
  #[napi]
  pub fn adopt_relay(&self, head: Buffer, request: AdoptedRequest) -> Result<Relay> {
    let (response, raw_headers) = adopted_response(&request)?;
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(os_error)?;
    ours.set_nonblocking(true).map_err(os_error)?;
    let stream = napi::bindgen_prelude::within_runtime_if_available(|| UnixStream::from_std(ours))
      .map_err(os_error)?;
    let handle =
      self.serve_adopted(ServerStream::new(stream), head, response, raw_headers, request);
    Ok(Relay { handle, fd: theirs.into_raw_fd() })
  }

  /// JS's verdict on the upgrade of connection `handle`; false when the
  /// upgrade no longer waits for it (it timed out, or the client left).
  #[napi]
  pub fn decide(&self, handle: u32, verdict: Verdict) -> bool {
    let waiting = self.shared.verdicts().remove(&handle);
    waiting.is_some_and(|waiting| waiting.send(verdict).is_ok())
  }

  /// Queues `payloads[i]` to connection `handles[i]`, for every i: all the
  /// sends JS made since its last call, in one crossing. Connections that
  /// are gone or closing are skipped (JS learns it from their events).
  #[napi]
  pub fn send_batch(&self, handles: Uint32Array, payloads: Vec<Payload>) {
    let limits = self.shared.limits;
    let clients = self.shared.clients();
    for (handle, payload) in handles.iter().zip(payloads) {
      if let Some(client) = clients.get(handle) {
        client.peer.send(to_message(payload), limits);
      }
    }
  }

  /// `sendBatch` for JSON texts, joined with line breaks: line i goes to
  /// connection `handles[i]`.
  #[napi]
  pub fn send_json_batch(&self, handles: Uint32Array, joined: String) {
    let limits = self.shared.limits;
    let clients = self.shared.clients();
    for (handle, message) in handles.iter().zip(json_lines(joined)) {
      if let Some(client) = clients.get(handle) {
        client.peer.send(message, limits);
      }
    }
  }

  /// Queues one message to each of `handles`, sharing its bytes; returns how
  /// many connections took it.
  #[napi]
  pub fn send_many(&self, handles: Uint32Array, payload: Payload) -> u32 {
    let message = to_message(payload);
    let limits = self.shared.limits;
    let clients = self.shared.clients();
    let receivers = handles.iter().filter_map(|handle| clients.get(handle));
    receivers.filter(|client| client.peer.send(message.clone(), limits)).count() as u32
  }

  /// Queues one message to every open connection but those in `except`;
  /// returns how many took it.
  #[napi]
  pub fn broadcast(&self, payload: Payload, except: Option<Uint32Array>) -> u32 {
    let message = to_message(payload);
    let limits = self.shared.limits;
    let except: &[u32] = except.as_deref().unwrap_or(&[]);
    let clients = self.shared.clients();
    let receivers = clients.iter().filter(|(handle, _)| !except.contains(handle));
    receivers.filter(|(_, client)| client.peer.send(message.clone(), limits)).count() as u32
  }

  /// Starts the closing handshake of one connection, after what it already
  /// queued. The facade has checked `code` and `reason`.
  #[napi]
  pub fn close_connection(&self, handle: u32, code: u32, reason: String) -> bool {
    let Some(client) = self.shared.client(handle) else { return false };
    client.peer.close(close_frame(code, reason))
  }

  /// Drops one connection without a closing handshake.
  #[napi]
  pub fn terminate(&self, handle: u32) {
    if let Some(client) = self.shared.client(handle) {
      client.peer.terminate();
    }
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

  /// Stops or resumes reading one connection (`connection.pause()`).
  #[napi]
  pub fn pause(&self, handle: u32, paused: bool) {
    if let Some(client) = self.shared.client(handle) {
      if paused {
        client.peer.pause(Paused::BY_JS);
      } else {
        client.peer.resume(Paused::BY_JS);
      }
    }
  }

  /// Turns delivery of one connection's messages to JS on or off.
  #[napi]
  pub fn observe(&self, handle: u32, observed: bool) {
    if let Some(client) = self.shared.client(handle) {
      client.peer.observed.store(observed, Ordering::Relaxed);
    }
  }

  /// From now on, tells JS of every connection as it opens, and of the end
  /// of every connection it has not heard of (JS listens for 'add' or
  /// 'remove'). Returns the connections JS has not heard of so far.
  #[napi]
  pub fn announce_opens(&self) -> Vec<Unannounced> {
    // Under the lock that `start_connection` reads the flag under: every
    // connection is either in this list or announced as it opens.
    let clients = self.shared.clients();
    self.shared.announce_opens.store(true, Ordering::Release);
    self.shared.take_unannounced(&clients)
  }

  /// Connections open or being adopted: what an attached server's JS
  /// holds against `maxConnections`, with the upgrades it is deciding.
  #[napi]
  pub fn admitted(&self) -> u32 {
    u32::try_from(self.shared.admitted.load(Ordering::Acquire)).unwrap_or(u32::MAX)
  }

  /// How many open connections JS has not heard of.
  #[napi]
  pub fn unannounced_count(&self) -> u32 {
    self.shared.unannounced.load(Ordering::Relaxed) as u32
  }

  /// The open connections JS has not heard of (see `take_unannounced`).
  #[napi]
  pub fn announce_all(&self) -> Vec<Unannounced> {
    self.shared.take_unannounced(&self.shared.clients())
  }

  /// Turns delivery of every connection's messages to JS on or off.
  #[napi]
  pub fn observe_all(&self, observed: bool) {
    self.shared.observe_all.store(observed, Ordering::Relaxed);
  }

  /// Stops accepting, sends close `code` with `reason` to every connection
  /// (the facade has checked them), terminates those still open after
  /// `timeout_ms`, then reports `Stopped` as the last event.
  #[napi]
  pub fn close(&self, code: u32, reason: String, timeout_ms: f64) {
    let shared = Arc::clone(&self.shared);
    if shared.shutdown.is_cancelled() {
      return;
    }
    let grace = Duration::try_from_secs_f64(timeout_ms.max(0.0) / 1000.0).unwrap_or(Duration::MAX);
    shared.events.flow.set_close_timeout(grace);
    // Cancel first: the accept task then reads the listener's failure below
    // as the end. A connection that registers after this sees the
    // cancellation and closes itself.
    shared.shutdown.cancel();
    // New connections are refused from now on: shutting down a listening
    // socket's read side stops it listening (Linux), before the accept task
    // has even woken up to drop it.
    if let Some(listener) = lock(&shared.listener).take() {
      let _ = SockRef::from(&*listener).shutdown(std::net::Shutdown::Read);
    }
    let closing = close_frame(code, reason);
    for client in shared.clients().values() {
      client.peer.close(closing.clone());
    }
    *lock(&shared.closing_frame) = Some(closing);
    napi::bindgen_prelude::spawn(async move {
      shared.tasks.close();
      if timeout(grace, shared.tasks.wait()).await.is_err() {
        for client in shared.clients().values() {
          client.peer.terminate();
        }
        shared.tasks.wait().await;
      }
      shared.events.detail(0, EventDetail::Stopped { dropped: 0 });
      shared.events.finish();
    });
  }

  /// Every DORMANCY_TICK, tells each connection's resting task whether it
  /// has rested long enough to go dormant (dormancy.rs).
  fn start_dormancy_clock(&self) {
    let shared = Arc::clone(&self.shared);
    napi::bindgen_prelude::spawn(async move {
      let mut ticks = tokio::time::interval(DORMANCY_TICK);
      loop {
        tokio::select! {
          _ = shared.shutdown.cancelled() => return,
          _ = ticks.tick() => {}
        }
        for client in shared.clients().values() {
          client.peer.quiet_tick();
        }
      }
    });
  }

  fn start_heartbeat(&self) {
    if self.shared.heartbeat_interval.is_zero() {
      return;
    }
    let shared = Arc::clone(&self.shared);
    let beat = heartbeat::run(shared.heartbeat_interval, shared.shutdown.clone(), move |visit| {
      for (&handle, client) in shared.clients().iter() {
        visit(handle, &client.peer);
      }
    });
    napi::bindgen_prelude::spawn(beat);
  }

  fn serve_adopted<S>(
    &self,
    mut stream: ServerStream<S>,
    head: Buffer,
    response: Vec<u8>,
    raw: Box<str>,
    request: AdoptedRequest,
  ) -> u32
  where
    S: AsyncRead + AsyncWrite + MaySleep + Unpin + Send + 'static,
  {
    let handle = self.shared.new_handle();
    // JS admitted it (see `admitted`).
    self.shared.admitted.fetch_add(1, Ordering::AcqRel);
    let shared = Arc::clone(&self.shared);
    let head = head.to_vec();
    // Node's `remoteAddress` always parses; it is undefined (empty here)
    // only for a socket already closed.
    let remote = Remote {
      ip: request.remote_address.parse().ok(),
      port: u16::try_from(request.remote_port).unwrap_or(0),
    };
    let serving = async move {
      if stream.write_all(&response).await.is_err() || stream.flush().await.is_err() {
        shared.discharge();
        shared.events.detail(handle, EventDetail::Abandoned {});
        return;
      }
      stream.start_frames(head);
      start_connection(&shared, stream, handle, Client::new(raw, request.protocol, remote), true);
    };
    napi::bindgen_prelude::spawn(self.shared.tasks.track_future(serving));
    handle
  }
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

/// An error whose message starts with the errno, for the facade to name.
fn os_error(error: io::Error) -> Error {
  let errno = error.raw_os_error().unwrap_or(0);
  Error::new(Status::GenericFailure, format!("{errno}:{error}"))
}

/// The 101 answer and the kept headers for a request Node has parsed.
fn adopted_response(request: &AdoptedRequest) -> Result<(Vec<u8>, Box<str>)> {
  let mut builder = Request::builder().method("GET").uri(request.url.as_str());
  for pair in request.headers.chunks_exact(2) {
    builder = builder.header(pair[0].as_str(), pair[1].as_str());
  }
  let parsed =
    builder.body(()).map_err(|error| Error::new(Status::InvalidArg, error.to_string()))?;
  let response = handshake::accept_response(&parsed, &request.protocol)
    .map_err(|refusal| Error::new(Status::InvalidArg, refusal.body))?;
  Ok((response, handshake::raw_headers(&parsed)))
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
        // Best effort: without it small frames may wait for Nagle's timer.
        let _ = stream.set_nodelay(true);
        let handle = shared.new_handle();
        let shared = Arc::clone(&shared);
        let remote = Remote::from(address);
        if let Some(acceptor) = shared.tls.clone() {
          let tracked = shared.tasks.clone();
          tracked.spawn(async move {
            let deadline = shared.handshake_timeout;
            if let Ok(Ok(stream)) = timeout(deadline, acceptor.accept(stream)).await {
              serve(shared, ServerStream::new(stream), remote, handle).await;
            }
          });
        } else {
          shared.tasks.clone().spawn(serve(shared, ServerStream::new(stream), remote, handle));
        }
      }
      // `close()` shut the listener down.
      Err(_) if shared.shutdown.is_cancelled() => return,
      // Out of descriptors or memory: say so once, then wait instead of
      // spinning, longer while it lasts. The listener stays open, and the
      // kernel keeps new connections in its backlog until we accept again.
      Err(error) => {
        let wait = match backoff {
          None => {
            let detail = EventDetail::Error {
              code: "ERR_ACCEPT".into(),
              message: error.to_string(),
              status: None,
              errno: error.raw_os_error(),
            };
            shared.events.detail(0, detail);
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

/// Runs the upgrade of an accepted connection, then starts serving it.
async fn serve<S>(shared: Arc<Shared>, stream: ServerStream<S>, remote: Remote, handle: u32)
where
  S: AsyncRead + AsyncWrite + MaySleep + Unpin + Send + 'static,
{
  // Boxed: the handshake's buffers would otherwise stay part of this
  // task's size for the connection's whole life.
  let upgrading =
    Box::pin(timeout(shared.handshake_timeout, upgrade(&shared, stream, &remote, handle)));
  let upgraded = tokio::select! {
    _ = shared.shutdown.cancelled() => None,
    upgraded = upgrading => upgraded.ok().flatten(),
  };
  let Some((stream, raw_headers, protocol)) = upgraded else {
    // Too slow, refused or gone: nothing was reported as a connection yet.
    shared.verdicts().remove(&handle);
    if shared.verify {
      shared.events.detail(handle, EventDetail::Abandoned {});
    }
    return;
  };
  let client = Client::new(raw_headers, protocol, remote);
  start_connection(&shared, stream, handle, client, shared.verify);
}

/// The opening handshake on an accepted stream: read and check the
/// request, let JS decide when it wants to, answer 101 or refuse.
async fn upgrade<S>(
  shared: &Shared,
  mut stream: ServerStream<S>,
  remote: &Remote,
  handle: u32,
) -> Option<(ServerStream<S>, Box<str>, String)>
where
  S: AsyncRead + AsyncWrite + Unpin,
{
  let Upgrade { request, leftover } = match handshake::read_request(&mut stream).await {
    Ok(upgrade) => upgrade,
    Err(refusal) => {
      if let Some(refusal) = refusal {
        let _ = handshake::refuse(&mut stream, &refusal).await;
      }
      return None;
    }
  };
  let wrong_path = shared.path.as_deref().is_some_and(|path| path != request.uri().path());
  let checked = if wrong_path {
    Err(Refusal::bad_request("No WebSocket endpoint at this path"))
  } else {
    handshake::accept_response(&request, "").map(|_| ())
  };
  if let Err(refusal) = checked {
    let _ = handshake::refuse(&mut stream, &refusal).await;
    return None;
  }
  let Some(admission) = shared.admit() else {
    let full = Refusal {
      status: 503,
      body: "Too many connections".into(),
      headers: vec![("Retry-After".into(), FULL_RETRY_AFTER_SECONDS.into())],
    };
    let _ = handshake::refuse(&mut stream, &full).await;
    return None;
  };

  let raw_headers = handshake::raw_headers(&request);
  let offered = handshake::offered_protocols(&request);
  let protocol = if shared.verify {
    let (answer, verdict) = oneshot::channel();
    shared.verdicts().insert(handle, answer);
    shared.events.detail(
      handle,
      EventDetail::Verify {
        url: request.uri().to_string(),
        raw_headers: raw_headers.to_string(),
        remote_address: remote.address(),
        remote_port: remote.port.into(),
        protocols: offered,
      },
    );
    let verdict = verdict.await.ok()?;
    if !verdict.accept {
      let headers =
        verdict.headers.chunks_exact(2).map(|pair| (pair[0].clone(), pair[1].clone())).collect();
      let refusal = Refusal { status: verdict.status as u16, body: verdict.reason, headers };
      let _ = handshake::refuse(&mut stream, &refusal).await;
      return None;
    }
    verdict.protocol
  } else {
    offered.into_iter().next().unwrap_or_default()
  };

  let response = match handshake::accept_response(&request, &protocol) {
    Ok(response) => response,
    Err(refusal) => {
      let _ = handshake::refuse(&mut stream, &refusal).await;
      return None;
    }
  };
  stream.write_all(&response).await.ok()?;
  stream.flush().await.ok()?;
  stream.start_frames(leftover);
  admission.keep();
  Some((stream, raw_headers, protocol))
}

/// Starts serving an upgraded connection, on a task of its own that holds
/// little more than the socket while the connection is quiet (see
/// resting.rs), and reports it open when JS listens for that.
///
/// `decided_in_js`: JS accepted the upgrade itself (`verifyClient`, or the
/// user's http server) and keeps what it decided until the connection
/// opens, so it hears of it at once.
fn start_connection<S>(
  shared: &Arc<Shared>,
  stream: ServerStream<S>,
  handle: u32,
  client: Client,
  decided_in_js: bool,
) where
  S: AsyncRead + AsyncWrite + MaySleep + Unpin + Send + 'static,
{
  let client = Arc::new(client);
  let mut clients = shared.clients();
  // Read under the lock, against `announce_opens`.
  let announce = decided_in_js || shared.announce_opens.load(Ordering::Acquire);
  if !announce {
    client.announced.store(false, Ordering::Relaxed);
    shared.unannounced.fetch_add(1, Ordering::Relaxed);
  }
  clients.insert(handle, Arc::clone(&client));
  drop(clients);
  if announce {
    shared.events.detail(handle, client.open_event());
  }
  if shared.shutdown.is_cancelled() {
    if let Some(closing) = lock(&shared.closing_frame).clone() {
      client.peer.close(closing);
    }
  }
  let served = ServedConnection { shared: Arc::clone(shared), client, handle };
  shared.tasks.spawn(Resting::new(stream, served));
}

/// A server connection, as its resting task reaches it.
#[derive(Clone)]
struct ServedConnection {
  shared: Arc<Shared>,
  client: Arc<Client>,
  handle: u32,
}

impl<S> Owner<S> for ServedConnection
where
  S: AsyncRead + AsyncWrite + MaySleep + Unpin + Send + 'static,
{
  fn peer(&self) -> &Peer {
    &self.client.peer
  }

  fn activate(&self, stream: ServerStream<S>, generation: u32) -> Active<S> {
    let (shared, client, handle) =
      (Arc::clone(&self.shared), Arc::clone(&self.client), self.handle);
    Box::pin(async move {
      let events = &shared.events;
      let deliver = |incoming| match incoming {
        Incoming::Data(binary, payload) => {
          if client.peer.observed.load(Ordering::Relaxed)
            || shared.observe_all.load(Ordering::Relaxed)
          {
            shared.announce(handle, &client);
            events.message(handle, &client, binary, payload);
          }
        }
        // JS marks the connection offline; its 'remove' follows.
        Incoming::Closing => {
          shared.announce(handle, &client);
          events.detail(handle, EventDetail::Closing {});
        }
        // Only a connection JS has met can have a 'drain' listener.
        Incoming::Drain => {
          if client.announced.load(Ordering::Acquire) {
            events.detail(handle, EventDetail::Drain {});
          }
        }
      };
      let peer = &client.peer;
      resting::active_period(stream, shared.config, peer, &events.flow, generation, deliver).await
    })
  }

  fn sleep(
    &self,
    stream: ServerStream<S>,
    generation: u32,
  ) -> std::result::Result<(), ServerStream<S>> {
    if !S::MAY_SLEEP || !stream.may_sleep() {
      return Err(stream);
    }
    let Some(dormitory) = self.shared.dormitory() else { return Err(stream) };
    let stream = S::plain_tcp(stream)?;
    dormitory.admit(stream, self.clone(), generation, self.shared.tasks.token());
    Ok(())
  }

  fn ended(&mut self, ended: Ended) {
    self.report_end(ended);
  }
}

impl ServedConnection {
  fn report_end(&self, ended: Ended) {
    let shared = &self.shared;
    shared.clients().remove(&self.handle);
    shared.discharge();
    if ended.internal_error {
      shared.announce(self.handle, &self.client);
      shared.events.detail(self.handle, internal_error_event());
    }
    // Out of `clients`, the connection is announced by this task or not
    // at all. The end of one JS never heard of matters only to a 'remove'
    // listener.
    let unheard_of = !self.client.announced.load(Ordering::Acquire);
    if unheard_of && !shared.announce_opens.load(Ordering::Acquire) {
      shared.unannounced.fetch_sub(1, Ordering::Relaxed);
      return;
    }
    shared.announce(self.handle, &self.client);
    let detail = EventDetail::Close {
      code: ended.code.into(),
      reason: ended.reason,
      was_clean: ended.was_clean,
      will_reconnect: false,
      raw_headers: Some(self.client.raw_headers.to_string()),
    };
    self.shared.events.detail(self.handle, detail);
  }
}

impl Sleeper for ServedConnection {
  fn peer(&self) -> &Peer {
    &self.client.peer
  }

  fn wake(self, stream: ServerStream<TcpStream>, generation: u32) {
    let tasks = self.shared.tasks.clone();
    tasks.spawn(Resting::resume(stream, self, generation));
  }

  fn lost(self) {
    self.report_end(Ended::abnormal());
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
trait MaySleep: Sized {
  const MAY_SLEEP: bool = false;

  /// The stream as the plain TCP one it is, when `MAY_SLEEP`.
  fn plain_tcp(
    stream: ServerStream<Self>,
  ) -> std::result::Result<ServerStream<TcpStream>, ServerStream<Self>> {
    Err(stream)
  }
}

impl MaySleep for TcpStream {
  const MAY_SLEEP: bool = true;

  fn plain_tcp(
    stream: ServerStream<Self>,
  ) -> std::result::Result<ServerStream<TcpStream>, ServerStream<Self>> {
    Ok(stream)
  }
}

impl MaySleep for TlsStream<TcpStream> {}

impl MaySleep for UnixStream {}
