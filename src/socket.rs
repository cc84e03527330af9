//! The native client: one task that connects, drives the connection,
//! and reconnects by the policy of reconnecting-websocket. Its send queue
//! outlives every connection, so messages sent while offline simply wait in
//! it and leave, in order, as soon as a connection opens.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use napi::Result;
use napi_derive::napi;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, Request};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use crate::buffers::{json_lines, to_message, Payload};
use crate::connection::{drive, Inbound, Incoming};
use crate::events::{EventCallback, EventDetail, EventQueue};
use crate::flow::Flow;
use crate::peer::{close_frame, Limits, Peer};
use crate::{heartbeat, tls};

/// Options the JS facade has already validated and filled with defaults.
/// Durations are in milliseconds.
#[napi(object)]
pub struct NativeSocketOptions {
  /// The URL, or "" when `urlIsFunction`.
  pub url: String,
  /// JS resolves the URL before every attempt (see `provideUrl`).
  pub url_is_function: bool,
  pub protocols: Vec<String>,
  /// Extra handshake headers as `[name, value, name, value, ...]`.
  pub headers: Vec<String>,
  pub min_reconnection_delay: f64,
  pub max_reconnection_delay: f64,
  pub reconnection_delay_grow_factor: f64,
  pub jitter: f64,
  pub connection_timeout: f64,
  /// Retries before giving up; `Infinity` never gives up.
  pub max_retries: f64,
  pub min_uptime: f64,
  /// Messages the queue may hold; `Infinity` for no bound.
  pub max_enqueued_messages: f64,
  /// Ping period; 0 disables the heartbeat.
  pub heartbeat_interval: f64,
  pub max_payload: u32,
  /// Bytes of messages waiting for JS before the socket stops reading
  /// (flow.rs); `Infinity` for no bound.
  pub max_receive_buffer: f64,
  pub start_closed: bool,
  /// Extra trusted certificates for `wss://`, PEM.
  pub tls_ca: Vec<String>,
  pub tls_reject_unauthorized: bool,
}

/// The wait before retry `retry` (1-based), as reconnecting-websocket
/// computes it, shortened by up to `jitter` of itself.
fn retry_delay(options: &NativeSocketOptions, retry: u32) -> f64 {
  let growth = options.reconnection_delay_grow_factor.powi(retry as i32 - 1);
  let delay = (options.min_reconnection_delay * growth).min(options.max_reconnection_delay);
  delay * (1.0 - options.jitter * fastrand::f64())
}

/// A duration option in milliseconds; `Infinity` (or anything too large)
/// waits forever, as far as tokio's timers reach.
fn millis(ms: f64) -> Duration {
  Duration::try_from_secs_f64(ms.max(0.0) / 1000.0).unwrap_or(Duration::MAX)
}

enum Command {
  /// `close()`: stop connecting; the close frame, if a connection is open,
  /// travels on the send queue behind the messages sent before it.
  Stop,
  /// `reconnect()`: connect again at once with a fresh retry count.
  Reconnect,
}

/// JS's answer to `Connecting` with an empty URL: the result of the user's
/// URL function for attempt `attempt`.
struct UrlAnswer {
  attempt: u32,
  url: std::result::Result<String, String>,
}

/// A reconnecting WebSocket client. Created by lib/native-transport.js.
#[napi]
pub struct NativeSocket {
  peer: Arc<Peer>,
  queue_limit: usize,
  commands: mpsc::UnboundedSender<Command>,
  urls: mpsc::UnboundedSender<UrlAnswer>,
  events: Arc<EventQueue>,
  heartbeat: CancellationToken,
}

#[napi]
impl NativeSocket {
  /// Creates the socket and, unless `startClosed`, starts connecting.
  #[napi(constructor)]
  pub fn new(options: NativeSocketOptions, on_events: EventCallback) -> Result<Self> {
    let max_receive_buffer = if options.max_receive_buffer.is_finite() {
      options.max_receive_buffer as usize
    } else {
      usize::MAX
    };
    // One connection: its own buffer is the total. A client is never
    // stopped by a total, so the stall limit does not apply.
    let flow = Flow::new(max_receive_buffer, usize::MAX, Duration::MAX, usize::MAX);
    let events = EventQueue::start(on_events, flow)?;
    let peer = Arc::new(Peer::new());
    let (commands, command_inbox) = mpsc::unbounded_channel();
    let (urls, url_inbox) = mpsc::unbounded_channel();
    if !options.start_closed {
      // Cannot fail: the receiver is alive until `run` starts.
      let _ = commands.send(Command::Reconnect);
    }

    let heartbeat = CancellationToken::new();
    if options.heartbeat_interval > 0.0 {
      let peer = Arc::clone(&peer);
      let beat =
        heartbeat::run(millis(options.heartbeat_interval), heartbeat.clone(), move |visit| {
          visit(0, &peer)
        });
      napi::bindgen_prelude::spawn(beat);
    }

    let queue_limit = if options.max_enqueued_messages.is_finite() {
      options.max_enqueued_messages as usize
    } else {
      usize::MAX
    };
    let task = Task {
      options,
      peer: Arc::clone(&peer),
      events: Arc::clone(&events),
      backlog: VecDeque::new(),
      urls: url_inbox,
      tls: None,
    };
    napi::bindgen_prelude::spawn(task.run(command_inbox));
    Ok(NativeSocket { peer, queue_limit, commands, urls, events, heartbeat })
  }

  /// Queues a message for the current or the next connection; false when
  /// `maxEnqueuedMessages` messages already wait.
  #[napi]
  pub fn send(&self, payload: Payload) -> bool {
    let limits = Limits { max_queued: self.queue_limit, ..Limits::NONE };
    self.peer.send(to_message(payload), limits)
  }

  /// Queues several messages at once, in order: the sends JS made while a
  /// connection was open, gathered into one crossing.
  #[napi]
  pub fn send_batch(&self, payloads: Vec<Payload>) {
    let limits = Limits { max_queued: self.queue_limit, ..Limits::NONE };
    for payload in payloads {
      self.peer.send(to_message(payload), limits);
    }
  }

  /// `sendBatch` for JSON texts, joined with line breaks.
  #[napi]
  pub fn send_json_batch(&self, joined: String) {
    let limits = Limits { max_queued: self.queue_limit, ..Limits::NONE };
    for message in json_lines(joined) {
      self.peer.send(message, limits);
    }
  }

  /// Closes for good: messages already sent go out before the close frame
  /// when a connection is open; otherwise they are dropped and counted in
  /// the `Stopped` event.
  #[napi]
  pub fn close(&self, code: u32, reason: String) {
    self.peer.close(close_frame(code, reason));
    // An error means the task is gone, and with it everything to stop.
    let _ = self.commands.send(Command::Stop);
  }

  /// Ends the current connection (with `code` and `reason`) or attempt and
  /// connects again at once, whatever the state.
  #[napi]
  pub fn reconnect(&self, code: u32, reason: String) {
    self.peer.reopen();
    if self.peer.is_connected() {
      self.peer.close_connection(close_frame(code, reason));
    }
    let _ = self.commands.send(Command::Reconnect);
  }

  /// The answer to a `Connecting` event with an empty URL: the URL, or why
  /// there is none (which fails the attempt with `ERR_INVALID_URL`).
  #[napi]
  pub fn provide_url(&self, attempt: u32, url: Option<String>, problem: String) {
    let _ = self.urls.send(UrlAnswer { attempt, url: url.ok_or(problem) });
  }

  /// Payload bytes queued or accepted and not yet written.
  #[napi]
  pub fn buffered_amount(&self) -> f64 {
    self.peer.buffered_amount() as f64
  }

  /// Turns delivery of messages to JS on or off.
  #[napi]
  pub fn observe(&self, observed: bool) {
    self.peer.observed.store(observed, Ordering::Relaxed);
  }
}

impl Drop for NativeSocket {
  /// The JS object is gone: nothing can observe events any more, so let the
  /// dispatcher release its threadsafe function and stop the heartbeat.
  /// Dropping `commands` ends the connection task once it next waits.
  fn drop(&mut self) {
    self.heartbeat.cancel();
    self.events.finish();
  }
}

// A client's stream neither rests nor reads frames past tungstenite.
impl Inbound for MaybeTlsStream<TcpStream> {}

type Connection = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why an attempt failed, with the stable code JS reports.
struct Failure {
  code: &'static str,
  message: String,
  status: Option<u32>,
  errno: Option<i32>,
}

impl Failure {
  fn new(code: &'static str, message: impl Into<String>) -> Failure {
    Failure { code, message: message.into(), status: None, errno: None }
  }

  fn into_event(self) -> EventDetail {
    let Failure { code, message, status, errno } = self;
    EventDetail::Error { code: code.into(), message, status, errno }
  }
}

/// What the connection task owns.
struct Task {
  options: NativeSocketOptions,
  peer: Arc<Peer>,
  events: Arc<EventQueue>,
  /// Messages a dropped connection never handed to the kernel; they go
  /// first on the next one.
  backlog: VecDeque<Message>,
  urls: mpsc::UnboundedReceiver<UrlAnswer>,
  /// Built on the first `wss://` attempt.
  tls: Option<Arc<ClientConfig>>,
}

/// What a wait between attempts ended with.
enum Wake {
  Attempt,
  Stop,
  /// The JS object is gone.
  Exit,
}

impl Task {
  async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut retries = 0u32;
    let mut attempts = 0u32;
    // Idle until the first command: `Reconnect` unless `startClosed`.
    let mut wake = self.idle(&mut commands).await;
    loop {
      match wake {
        Wake::Exit => return,
        Wake::Stop => {
          self.stop();
          wake = self.after_stop(&mut commands).await;
          retries = 0;
          continue;
        }
        // close() was called while this attempt was due.
        Wake::Attempt if self.peer.is_closing() => {
          wake = Wake::Stop;
          continue;
        }
        Wake::Attempt => {}
      }

      attempts = attempts.wrapping_add(1);
      let deadline = millis(self.options.connection_timeout);
      let attempt = tokio::select! {
        command = commands.recv() => {
          wake = on_command(command, &mut retries);
          continue;
        }
        attempt = timeout(deadline, self.attempt(attempts)) => attempt,
      };

      let will_retry = |retries: u32| f64::from(retries + 1) <= self.options.max_retries;
      match attempt {
        Ok(Ok((mut ws, _))) if self.peer.is_closing() => {
          // close() came while the handshake finished: this connection
          // was never announced, so it ends quietly.
          let _ = timeout(Duration::from_secs(1), ws.close(None)).await;
          wake = Wake::Stop;
          continue;
        }
        Ok(Ok((mut ws, protocol))) => {
          let remote = match ws.get_ref() {
            MaybeTlsStream::Plain(tcp) => tcp.peer_addr().ok(),
            MaybeTlsStream::Rustls(tls) => tls.get_ref().0.peer_addr().ok(),
            _ => None,
          };
          self.events.detail(
            0,
            EventDetail::Open {
              remote_address: remote.map(|a| a.ip().to_string()).unwrap_or_default(),
              remote_port: remote.map_or(0, |a| a.port().into()),
              protocol,
            },
          );
          let opened = Instant::now();
          let (peer, events) = (&self.peer, &self.events);
          let ended = drive(&mut ws, &mut self.backlog, peer, &events.flow, |incoming| {
            if let Incoming::Data(binary, payload) = incoming {
              if peer.observed.load(Ordering::Relaxed) {
                events.message(0, peer, binary, payload);
              }
            }
          })
          .await;
          if opened.elapsed() >= millis(self.options.min_uptime) {
            retries = 0;
          }
          if ended.heartbeat_lost {
            let message = "The server did not answer pings for two heartbeat intervals";
            self.events.detail(0, Failure::new("ERR_HEARTBEAT", message).into_event());
          }
          if ended.internal_error {
            let message = "An internal error of mytosis-websocket ended the connection (1011)";
            self.events.detail(0, Failure::new("ERR_INTERNAL", message).into_event());
          }
          // A `reconnect()` or `close()` made while connected comes next.
          let command = commands.try_recv().ok();
          let stopping = self.peer.is_closing() || matches!(command, Some(Command::Stop));
          let reconnecting = matches!(command, Some(Command::Reconnect));
          self.events.detail(
            0,
            EventDetail::Close {
              code: ended.code.into(),
              reason: ended.reason,
              was_clean: ended.was_clean,
              will_reconnect: !stopping && (reconnecting || will_retry(retries)),
              raw_headers: None,
            },
          );
          if stopping || reconnecting {
            wake = if stopping { Wake::Stop } else { Wake::Attempt };
            retries = 0;
            continue;
          }
        }
        Ok(Err(failure)) => self.events.detail(0, failure.into_event()),
        Err(_) => {
          let message = format!("No connection within {} ms", self.options.connection_timeout);
          self.events.detail(0, Failure::new("ERR_TIMEOUT", message).into_event());
        }
      }

      if !will_retry(retries) {
        // Gave up; sends keep queueing for a later `reconnect()`.
        self.events.detail(0, EventDetail::Stopped { dropped: 0 });
        wake = self.idle(&mut commands).await;
        retries = 0;
        continue;
      }
      retries += 1;
      let delay = retry_delay(&self.options, retries);
      self.events.detail(0, EventDetail::Reconnecting { attempt: retries, delay });
      wake = tokio::select! {
        command = commands.recv() => on_command(command, &mut retries),
        _ = sleep(millis(delay)) => Wake::Attempt,
      };
    }
  }

  /// Waits, not connected, for the next command. A `close()` meanwhile
  /// (after `startClosed` or giving up) discards the queue and says so.
  async fn idle(&mut self, commands: &mut mpsc::UnboundedReceiver<Command>) -> Wake {
    loop {
      match commands.recv().await {
        Some(Command::Reconnect) => return Wake::Attempt,
        Some(Command::Stop) => self.stop(),
        None => return Wake::Exit,
      }
    }
  }

  /// After stopping: close() also sent a `Stop` command, which may still
  /// wait; a `reconnect()` behind it starts again.
  async fn after_stop(&mut self, commands: &mut mpsc::UnboundedReceiver<Command>) -> Wake {
    loop {
      match commands.try_recv() {
        Ok(Command::Stop) => continue,
        Ok(Command::Reconnect) => return Wake::Attempt,
        Err(mpsc::error::TryRecvError::Empty) => return self.idle(commands).await,
        Err(mpsc::error::TryRecvError::Disconnected) => return Wake::Exit,
      }
    }
  }

  /// Discards what waits in the queue and reports the socket stopped.
  fn stop(&mut self) {
    let dropped = self.peer.discard(&mut self.backlog);
    self.events.detail(0, EventDetail::Stopped { dropped });
  }

  /// One attempt: the URL (from JS when it is a function), TCP, TLS and the
  /// opening handshake.
  async fn attempt(&mut self, attempt: u32) -> std::result::Result<(Connection, String), Failure> {
    let url = if self.options.url_is_function {
      self.events.detail(0, EventDetail::Connecting { attempt, url: String::new() });
      self.answered_url(attempt).await?
    } else {
      self.events.detail(0, EventDetail::Connecting { attempt, url: self.options.url.clone() });
      self.options.url.clone()
    };
    let request = request(&url, &self.options).map_err(|error| connect_failure(&error))?;
    let connector = if request.uri().scheme_str() == Some("wss") {
      if self.tls.is_none() {
        let config = tls::client_config(&self.options.tls_ca, self.options.tls_reject_unauthorized)
          .map_err(|message| Failure::new("ERR_TLS", message))?;
        self.tls = Some(config);
      }
      self.tls.clone().map(Connector::Rustls)
    } else {
      None
    };
    let max_payload = Some(self.options.max_payload as usize);
    // One connection per socket: large buffers cost little and save system
    // calls on large messages.
    let config = WebSocketConfig::default()
      .read_buffer_size(64 * 1024)
      .write_buffer_size(64 * 1024)
      .max_message_size(max_payload)
      .max_frame_size(max_payload);
    let (ws, response) =
      tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, connector)
        .await
        .map_err(|error| connect_failure(&error))?;
    let protocol = response
      .headers()
      .get("sec-websocket-protocol")
      .and_then(|value| value.to_str().ok())
      .unwrap_or_default()
      .to_owned();
    Ok((ws, protocol))
  }

  /// Waits for JS's URL for this attempt, skipping late answers to earlier
  /// attempts.
  async fn answered_url(&mut self, attempt: u32) -> std::result::Result<String, Failure> {
    loop {
      match self.urls.recv().await {
        Some(answer) if answer.attempt == attempt => {
          return answer.url.map_err(|problem| Failure::new("ERR_INVALID_URL", problem));
        }
        Some(_) => continue,
        None => return Err(Failure::new("ERR_INVALID_URL", "The socket is gone")),
      }
    }
  }
}

fn on_command(command: Option<Command>, retries: &mut u32) -> Wake {
  match command {
    Some(Command::Reconnect) => {
      *retries = 0;
      Wake::Attempt
    }
    Some(Command::Stop) => Wake::Stop,
    None => Wake::Exit,
  }
}

fn request(url: &str, options: &NativeSocketOptions) -> std::result::Result<Request<()>, WsError> {
  let mut request = url.into_client_request()?;
  let headers = request.headers_mut();
  for pair in options.headers.chunks_exact(2) {
    let name = HeaderName::from_bytes(pair[0].as_bytes()).map_err(http_error)?;
    let value = HeaderValue::from_str(&pair[1]).map_err(http_error)?;
    headers.append(name, value);
  }
  if !options.protocols.is_empty() {
    let offered = HeaderValue::from_str(&options.protocols.join(", ")).map_err(http_error)?;
    headers.insert("sec-websocket-protocol", offered);
  }
  Ok(request)
}

fn http_error(error: impl Into<tokio_tungstenite::tungstenite::http::Error>) -> WsError {
  WsError::HttpFormat(error.into())
}

/// Names a failed attempt with a stable code. rustls reports certificate
/// and handshake failures as IO errors that carry a `rustls::Error`.
fn connect_failure(error: &WsError) -> Failure {
  let message = error.to_string();
  match error {
    WsError::Http(response) => Failure {
      status: Some(response.status().as_u16().into()),
      ..Failure::new("ERR_HANDSHAKE", message)
    },
    WsError::Tls(_) => Failure::new("ERR_TLS", message),
    WsError::Io(io) if io.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) => {
      Failure::new("ERR_TLS", message)
    }
    // The system error (ECONNREFUSED...), which JS reports as Node does.
    WsError::Io(io) => Failure { errno: io.raw_os_error(), ..Failure::new("ERR_CONNECT", message) },
    _ => Failure::new("ERR_CONNECT", message),
  }
}
