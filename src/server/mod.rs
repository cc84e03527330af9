//! The native server: a listener (or sockets adopted from a Node
//! `http.Server`), one task per connection, and the registry that lets JS
//! address connections by a small numeric handle.
//!
//! This file holds the napi surface (`NativeServer`, its options and the
//! objects it hands JS) and the state all the parts share. The parts:
//!
//! - accept.rs: the listener, the accept loop, TLS accept;
//! - upgrade.rs: reading the request, admission, JS's decision, the 101;
//! - adopt.rs: sockets JS upgraded on its own `http.Server`;
//! - registry.rs: the connections by handle and the announce rule;
//! - slots.rs: the table of handles, each naming a slot JS indexes by;
//! - served.rs: a connection's own task, from open to its end;
//! - fanout.rs: sends to many connections at once;
//! - topics.rs: the connections each topic reaches;
//! - cluster.rs, envelope.rs: broadcasts and publications to and from the
//!   other nodes of a cluster, through Redis;
//! - clocks.rs: the heartbeat;
//! - dormant.rs: quiet connections leaving tokio, and back (Linux only);
//! - shutdown.rs: `close()` with its grace period;
//! - stats.rs: what `stats()` reports.

mod accept;
mod adopt;
mod clocks;
mod cluster;
#[cfg(dormancy)]
mod dormant;
mod envelope;
mod fanout;
mod registry;
mod served;
mod shutdown;
mod slots;
mod stats;
mod topics;
mod upgrade;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
#[cfg(dormancy)]
use std::sync::OnceLock;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use napi::bindgen_prelude::{Buffer, ObjectFinalize, Uint32Array};
use napi::{Env, Result};
use napi_derive::napi;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::cluster::Cluster;
#[cfg(dormancy)]
use self::served::ServedConnection;
use self::slots::Slots;
use self::stats::{Counters, ServerStats};
use self::topics::Topics;
use crate::buffers::Payload;
use crate::deflate::negotiation::ServerSettings;
use crate::deflate::{Settings, MAX_WINDOW_BITS, MIN_WINDOW_BITS};
#[cfg(dormancy)]
use crate::dormancy::DormantSet;
use crate::error::NativeError;
use crate::events::{Description, EventCallback, EventQueue};
use crate::flow::Flow;
use crate::handshake::{self, Refusal};
use crate::link::{close_frame, Limits, Paused};
use crate::sync::lock;
use crate::teardown::TeardownHook;
use crate::tls;

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
  /// Texts are JSON that JS parses on arrival: they reach JS joined in one
  /// string (events/mod.rs).
  pub json: bool,
  /// PEM certificate chain and key: serve `wss://` directly.
  pub tls_cert: Option<String>,
  pub tls_key: Option<String>,
  /// SO_REUSEPORT: several processes may listen on the port.
  pub reuse_port: bool,
  /// permessage-deflate for clients that offer it; absent: never.
  pub per_message_deflate: Option<NativeDeflateOptions>,
  /// Broadcasts shared with the other Servers on a Redis channel.
  pub cluster: Option<NativeClusterOptions>,
}

/// A Server's `cluster` (README, "Cluster").
#[napi(object)]
pub struct NativeClusterOptions {
  /// `redis://` or `rediss://` URL of the Redis every node uses.
  pub redis: String,
  /// The pub/sub channel the nodes share.
  pub channel: String,
}

/// A Server's `perMessageDeflate` (README, "Compression").
#[napi(object)]
pub struct NativeDeflateOptions {
  /// Messages shorter than this many bytes go out uncompressed.
  pub threshold: u32,
  /// zlib's level, 0-9.
  pub level: u32,
  /// The largest window clients may compress with (8-15), when they allow
  /// it to be limited.
  pub client_max_window_bits: Option<u32>,
  /// Ask clients to compress each message on its own, so that no inflater
  /// outlives a message here.
  pub client_no_context_takeover: bool,
}

/// How a server compresses: what it agrees to, and how it sends.
#[derive(Clone, Copy)]
struct ServerDeflate {
  negotiation: ServerSettings,
  sending: Settings,
}

impl ServerDeflate {
  fn from_options(options: &NativeDeflateOptions) -> ServerDeflate {
    let clamp = |value: u32, low: u8, high: u8| value.clamp(low.into(), high.into()) as u8;
    ServerDeflate {
      negotiation: ServerSettings {
        client_no_context_takeover: options.client_no_context_takeover,
        client_max_window_bits: options
          .client_max_window_bits
          .map(|bits| clamp(bits, MIN_WINDOW_BITS, MAX_WINDOW_BITS)),
      },
      sending: Settings {
        threshold: options.threshold as usize,
        level: clamp(options.level, 0, 9),
      },
    }
  }
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
  /// `req.method` and `req.httpVersionMinor`: an upgrade must be a GET of
  /// HTTP/1.1, and Node passes on others too.
  pub method: String,
  pub http_version_minor: u32,
  /// Path and query.
  pub url: String,
  /// `req.rawHeaders`: `[name, value, ...]`.
  pub headers: Vec<String>,
  pub protocol: String,
  pub remote_address: String,
  pub remote_port: u32,
}

/// The server's state, shared by `NativeServer` and every task it starts.
/// Each part adds its own methods in its file (`impl Shared` blocks).
struct Shared {
  /// The open connections by handle (registry.rs, slots.rs).
  connections: Mutex<Slots>,
  /// The listening socket, so that `close()` can stop it at once.
  listener: Mutex<Option<Arc<TcpListener>>>,
  /// The close frame of `close()`, for connections that open after it.
  closing_frame: Mutex<Option<CloseFrame>>,
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
  deflate: Option<ServerDeflate>,
  /// The other nodes, when clustered (cluster.rs).
  cluster: Option<Cluster>,
  /// Who is subscribed to what (topics.rs); locked after `connections`.
  topics: Mutex<Topics>,
  /// Connections quiet for a while (dormancy.rs); made as the server
  /// starts, and `None` if its epoll set could not be made.
  #[cfg(dormancy)]
  dormant_set: OnceLock<Option<DormantSet<ServedConnection>>>,
  counters: Counters,
}

/// The bytes of an HTTP refusal (status, body, headers as `[name, value,
/// ...]`), which an attached server writes to Node's socket (lib/attach.js):
/// the same bytes a standalone server writes itself.
// Test builds do not register napi functions.
#[cfg_attr(test, allow(dead_code))]
#[napi]
pub fn refusal_response(status: u32, body: String, headers: Vec<String>) -> Buffer {
  handshake::refusal_response(&Refusal::from_js(status, body, &headers)).into()
}

/// tungstenite's settings for a server connection.
pub(crate) fn server_config(max_payload: usize) -> WebSocketConfig {
  WebSocketConfig::default()
    // tungstenite allocates the read buffer up front for every connection:
    // 128 KiB by default, far too much for thousands of idle peers. Large
    // messages are still read in large chunks (see server_stream.rs).
    .read_buffer_size(4096)
    // Frames are gathered up to this size before a write; a flush after
    // each drained queue writes the rest.
    .write_buffer_size(16 * 1024)
    .max_message_size(Some(max_payload))
    .max_frame_size(Some(max_payload))
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
#[napi(custom_finalize)]
pub struct NativeServer {
  shared: Arc<Shared>,
  teardown: TeardownHook<Weak<Shared>>,
}

impl ObjectFinalize for NativeServer {
  fn finalize(mut self, env: Env) -> Result<()> {
    self.teardown.remove(&env)
  }
}

#[napi]
impl NativeServer {
  /// Creates a server that reports to `onEvents` (see events/mod.rs); it does
  /// not listen until `listen`.
  #[napi(constructor)]
  pub fn new(env: &Env, options: NativeServerOptions, on_events: EventCallback) -> Result<Self> {
    let config = server_config(options.max_payload as usize);
    let tls = match (&options.tls_cert, &options.tls_key) {
      (Some(cert), Some(key)) => Some(
        tls::server_acceptor(cert, key)
          .map_err(|message| NativeError::invalid_arg(message).throw(env))?,
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
    let (cluster, joining) = match &options.cluster {
      Some(cluster) => Cluster::new(&cluster.redis, cluster.channel.clone())
        .map(|(cluster, joining)| (Some(cluster), Some(joining)))
        .map_err(|message| NativeError::invalid_arg(message).throw(env))?,
      None => (None, None),
    };
    let shared = Shared {
      connections: Mutex::new(Slots::new()),
      listener: Mutex::new(None),
      closing_frame: Mutex::new(None),
      verdicts: Mutex::new(HashMap::new()),
      events: EventQueue::start(on_events, flow, options.json)?,
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
      deflate: options.per_message_deflate.as_ref().map(ServerDeflate::from_options),
      cluster,
      topics: Mutex::default(),
      #[cfg(dormancy)]
      dormant_set: OnceLock::new(),
      counters: Counters::default(),
    };
    let shared = Arc::new(shared);
    // Ended with its JS environment (teardown.rs): its connections are
    // told 1001 and dropped.
    let teardown = TeardownHook::register(env, Arc::downgrade(&shared), |shared| {
      if let Some(shared) = shared.upgrade() {
        shutdown::close(&shared, 1001, String::new(), 0.0);
      }
    })?;
    let server = NativeServer { shared, teardown };
    clocks::start_heartbeat(&server.shared);
    if let Some(joining) = joining {
      cluster::start(&server.shared, joining);
    }
    #[cfg(dormancy)]
    dormant::start_clock(&server.shared);
    Ok(server)
  }

  /// Binds `host:port` and starts accepting. Without a host, binds `::`
  /// (dual-stack) and falls back to `0.0.0.0` where IPv6 is missing. A
  /// failure throws an `Os` error with the errno (error.rs).
  #[napi]
  pub fn listen(
    &self,
    env: &Env,
    host: Option<String>,
    port: u32,
    reuse_port: bool,
  ) -> Result<AddressInfo> {
    let port =
      u16::try_from(port).map_err(|_| NativeError::invalid_arg("port out of range").throw(env))?;
    accept::listen(&self.shared, host, port, reuse_port)
      .map_err(|error| NativeError::from(error).throw(env))
  }

  /// Takes over a TCP socket that a Node `http.Server` upgraded and JS
  /// accepted: answers 101 on it and serves it. `fd` stays Node's (we use a
  /// duplicate); `head` is what Node read past the request. Throws, and
  /// touches nothing, when the request is not a valid upgrade.
  #[napi]
  pub fn adopt(&self, env: &Env, fd: i32, head: Buffer, request: AdoptedRequest) -> Result<u32> {
    adopt::adopt(&self.shared, fd, head, request).map_err(|error| error.throw(env))
  }

  /// Like `adopt` for a socket whose bytes Node must keep handling (TLS
  /// terminated by an `https.Server`): returns one end of a socket pair for
  /// JS to pipe to and from that socket.
  #[napi]
  pub fn adopt_relay(&self, env: &Env, head: Buffer, request: AdoptedRequest) -> Result<Relay> {
    adopt::adopt_relay(&self.shared, head, request).map_err(|error| error.throw(env))
  }

  /// JS's verdict on the upgrade of connection `handle`; false when the
  /// upgrade no longer waits for it (it timed out, or the client left).
  #[napi]
  pub fn decide(&self, handle: u32, verdict: Verdict) -> bool {
    self.shared.decide(handle, verdict)
  }

  /// Queues `payloads[i]` to connection `handles[i]`, for every i: all the
  /// sends JS made since its last call, in one crossing. Connections that
  /// are gone or closing are skipped (JS learns it from their events).
  #[napi]
  pub fn send_batch(&self, handles: Uint32Array, payloads: Vec<Payload>) {
    self.shared.send_batch(handles, payloads);
  }

  /// `sendBatch` for JSON texts, joined with line breaks: line i goes to
  /// connection `handles[i]`.
  #[napi]
  pub fn send_json_batch(&self, handles: Uint32Array, joined: String) {
    self.shared.send_json_batch(handles, joined);
  }

  /// Queues one message to connection `handle` uncompressed (`send(message,
  /// { compress: false })`); false if it is gone or closing.
  #[napi]
  pub fn send_uncompressed(&self, handle: u32, payload: Payload) -> bool {
    self.shared.send_uncompressed(handle, payload)
  }

  /// Queues one message to each of `handles`, sharing its bytes (compressed
  /// once unless `compress` is false); returns how many connections took
  /// it.
  #[napi]
  pub fn send_many(&self, handles: Uint32Array, payload: Payload, compress: bool) -> u32 {
    self.shared.send_many(handles, payload, compress)
  }

  /// Queues one message to every open connection but those in `except`,
  /// like `sendMany`, and to those of every other node of a cluster;
  /// returns how many here took it.
  #[napi]
  pub fn broadcast(&self, payload: Payload, except: Option<Uint32Array>, compress: bool) -> u32 {
    self.shared.broadcast(payload, except, compress)
  }

  /// Connection `handle` joins `topic`; false if it is a member already, or
  /// gone or closing.
  #[napi]
  pub fn subscribe(&self, handle: u32, topic: String) -> bool {
    self.shared.subscribe(handle, &topic)
  }

  /// Connection `handle` leaves `topic`; false if it was not a member.
  #[napi]
  pub fn unsubscribe(&self, handle: u32, topic: String) -> bool {
    self.shared.unsubscribe(handle, &topic)
  }

  /// How many connections here are subscribed to `topic`, those in
  /// `except` left out.
  #[napi]
  pub fn topic_size(&self, topic: String, except: Option<Uint32Array>) -> u32 {
    self.shared.topic_size(&topic, except.as_deref().unwrap_or(&[]))
  }

  /// Queues one message to the members of `topic` but those in `except`,
  /// here and on every other node of a cluster; returns how many here took
  /// it.
  #[napi]
  pub fn publish(
    &self,
    topic: String,
    payload: Payload,
    except: Option<Uint32Array>,
    compress: bool,
  ) -> u32 {
    self.shared.publish(&topic, payload, except, compress)
  }

  /// Starts the closing handshake of one connection, after what it already
  /// queued. The facade has checked `code` and `reason`.
  #[napi]
  pub fn close_connection(&self, handle: u32, code: u32, reason: String) -> bool {
    let Some(connection) = self.shared.connection(handle) else { return false };
    connection.link.close(close_frame(code, reason))
  }

  /// Drops one connection without a closing handshake.
  #[napi]
  pub fn terminate(&self, handle: u32) {
    if let Some(connection) = self.shared.connection(handle) {
      connection.link.terminate();
    }
  }

  /// Payload bytes accepted for a connection and not yet written.
  #[napi]
  pub fn buffered_amount(&self, handle: u32) -> f64 {
    self
      .shared
      .connection(handle)
      .map_or(0.0, |connection| connection.link.buffered_amount() as f64)
  }

  /// The request headers of a connection: names and values, each followed
  /// by a NUL.
  #[napi]
  pub fn raw_headers(&self, handle: u32) -> Option<String> {
    self.shared.connection(handle).map(|connection| connection.headers.unpacked())
  }

  /// A connection's remote address and port and its subprotocol, while it
  /// is open.
  #[napi]
  pub fn describe(&self, handle: u32) -> Option<Description> {
    self.shared.connection(handle).map(|connection| connection.describe())
  }

  /// JS has let go of `handle`, after its `Close` or `Abandoned` event:
  /// its slot may serve another connection (slots.rs).
  #[napi]
  pub fn release(&self, handle: u32) {
    self.shared.connections().release(handle);
  }

  /// Stops or resumes reading one connection (`connection.pause()`).
  #[napi]
  pub fn pause(&self, handle: u32, paused: bool) {
    if let Some(connection) = self.shared.connection(handle) {
      if paused {
        connection.link.pause(Paused::BY_JS);
      } else {
        connection.link.resume(Paused::BY_JS);
      }
    }
  }

  /// Turns delivery of one connection's messages to JS on or off.
  #[napi]
  pub fn observe(&self, handle: u32, observed: bool) {
    if let Some(connection) = self.shared.connection(handle) {
      connection.link.observed.store(observed, Ordering::Relaxed);
    }
  }

  /// From now on, tells JS of every connection as it opens, and of the end
  /// of every connection it has not heard of (JS listens for 'add' or
  /// 'remove'). Returns the handles of the connections JS has not heard
  /// of so far.
  #[napi]
  pub fn announce_opens(&self) -> Vec<u32> {
    // Under the lock that `registry::register` reads the flag under: every
    // connection is either in this list or announced as it opens.
    let connections = self.shared.connections();
    self.shared.announce_opens.store(true, Ordering::Release);
    self.shared.take_unannounced(&connections)
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

  /// The handles of the open connections JS has not heard of (see
  /// `take_unannounced`).
  #[napi]
  pub fn announce_all(&self) -> Vec<u32> {
    self.shared.take_unannounced(&self.shared.connections())
  }

  /// Turns delivery of every connection's messages to JS on or off.
  #[napi]
  pub fn observe_all(&self, observed: bool) {
    self.shared.observe_all.store(observed, Ordering::Relaxed);
  }

  /// The figures of `server.stats()` (stats.rs).
  #[napi]
  pub fn stats(&self) -> ServerStats {
    self.shared.stats()
  }

  /// Stops accepting, sends close `code` with `reason` to every connection
  /// (the facade has checked them), terminates those still open after
  /// `timeout_ms`, then reports `Stopped` as the last event.
  #[napi]
  pub fn close(&self, code: u32, reason: String, timeout_ms: f64) {
    shutdown::close(&self.shared, code, reason, timeout_ms);
  }
}
