//! The native client: one task that connects, drives the connection,
//! and reconnects by the policy of reconnecting-websocket. Its send queue
//! outlives every connection, so messages sent while offline simply wait in
//! it and leave, in order, as soon as a connection opens.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use napi::bindgen_prelude::ObjectFinalize;
use napi::{Env, Result};
use napi_derive::napi;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, Request};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use crate::buffers::{json_lines, to_message, Payload};
use crate::connection_loop::{drive, Incoming};
use crate::deflate::negotiation::ClientOffer;
use crate::deflate::{Compressor, Settings, DEFAULT_LEVEL, MAX_WINDOW_BITS, MIN_WINDOW_BITS};
use crate::events::{EventCallback, EventDetail, EventQueue};
use crate::flow::Flow;
use crate::handshake;
use crate::link::{close_frame, Limits, Link};
use crate::server_stream::ServerStream;
use crate::teardown::TeardownHook;
use crate::{client_transport, heartbeat, tls};

/// Options the JS facade has already validated and filled with defaults.
/// Durations are in milliseconds.
#[napi(object)]
pub struct NativeSocketOptions {
  /// The URL, or "" when `urlIsFunction`.
  pub url: String,
  /// JS resolves the URL before every attempt (see `provideAttempt`).
  pub url_is_function: bool,
  pub protocols: Vec<String>,
  /// Extra handshake headers as `[name, value, name, value, ...]`.
  pub headers: Vec<String>,
  /// JS resolves the headers before every attempt (see `provideAttempt`);
  /// `headers` is unused then.
  pub headers_is_function: bool,
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
  /// Texts are JSON that JS parses on arrival: they reach JS joined in one
  /// string (events/mod.rs).
  pub json: bool,
  /// Extra trusted certificates for `wss://`, PEM.
  pub tls_ca: Vec<String>,
  pub tls_reject_unauthorized: bool,
  /// The permessage-deflate offer; absent: none.
  pub per_message_deflate: Option<NativeSocketDeflate>,
}

/// A Socket's `perMessageDeflate` (README, "Compression").
#[napi(object)]
pub struct NativeSocketDeflate {
  pub client_no_context_takeover: bool,
  pub server_no_context_takeover: bool,
  /// 8-15.
  pub client_max_window_bits: Option<u32>,
  pub server_max_window_bits: Option<u32>,
  /// Messages shorter than this many bytes go out uncompressed.
  pub threshold: u32,
}

impl NativeSocketDeflate {
  fn offer(&self) -> ClientOffer {
    let bits = |value: Option<u32>| {
      value.map(|bits| bits.clamp(MIN_WINDOW_BITS.into(), MAX_WINDOW_BITS.into()) as u8)
    };
    ClientOffer {
      client_no_context_takeover: self.client_no_context_takeover,
      server_no_context_takeover: self.server_no_context_takeover,
      client_max_window_bits: bits(self.client_max_window_bits),
      server_max_window_bits: bits(self.server_max_window_bits),
    }
  }
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

/// The longest wait a server's `Retry-After` can impose: a longer one is
/// cut to this, so that a server cannot park the socket for days.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5 * 60);

/// What one attempt connects to: the URL and, when they come from the
/// user's function, the handshake headers as `[name, value, ...]`.
struct Target {
  url: String,
  headers: Option<Vec<String>>,
}

/// JS's answer to `Connecting` with an empty URL: what the user's `url`
/// and `headers` functions gave for attempt `attempt`, or why they failed.
struct AttemptAnswer {
  attempt: u32,
  target: std::result::Result<Target, Failure>,
}

/// A reconnecting WebSocket client. Created by lib/native-transport.js.
#[napi(custom_finalize)]
pub struct NativeSocket {
  link: Arc<Link>,
  queue_limit: usize,
  commands: mpsc::UnboundedSender<Command>,
  answers: mpsc::UnboundedSender<AttemptAnswer>,
  events: Arc<EventQueue>,
  heartbeat: CancellationToken,
  teardown: TeardownHook<Stopper>,
}

impl ObjectFinalize for NativeSocket {
  fn finalize(mut self, env: Env) -> Result<()> {
    self.teardown.remove(&env)
  }
}

/// What closes a socket for good when its JS environment ends
/// (teardown.rs), without keeping it alive until then.
struct Stopper {
  link: Weak<Link>,
  commands: mpsc::WeakUnboundedSender<Command>,
  heartbeat: CancellationToken,
}

impl Stopper {
  fn stop(self) {
    if let Some(link) = self.link.upgrade() {
      link.close(close_frame(1001, String::new()));
    }
    if let Some(commands) = self.commands.upgrade() {
      let _ = commands.send(Command::Stop);
    }
    self.heartbeat.cancel();
  }
}

#[napi]
impl NativeSocket {
  /// Creates the socket and, unless `startClosed`, starts connecting.
  #[napi(constructor)]
  pub fn new(env: &Env, options: NativeSocketOptions, on_events: EventCallback) -> Result<Self> {
    let max_receive_buffer = if options.max_receive_buffer.is_finite() {
      options.max_receive_buffer as usize
    } else {
      usize::MAX
    };
    // One connection: its own buffer is the total. A client is never
    // stopped by a total, so the stall limit does not apply.
    let flow = Flow::new(max_receive_buffer, usize::MAX, Duration::MAX, usize::MAX);
    let events = EventQueue::start(on_events, flow, options.json)?;
    let link = Arc::new(Link::new());
    // Messages are taken from the start, until the JS turn that made the
    // socket is over: the connection opens on the runtime's threads, and a
    // subscription made in that turn must not miss a message that arrives
    // before it. JS turns this off then if nobody subscribed
    // (lib/socket-core.js).
    link.observed.store(true, Ordering::Relaxed);
    let (commands, command_inbox) = mpsc::unbounded_channel();
    let (answers, answer_inbox) = mpsc::unbounded_channel();
    if !options.start_closed {
      // Cannot fail: the receiver is alive until `run` starts.
      let _ = commands.send(Command::Reconnect);
    }

    let heartbeat = CancellationToken::new();
    if options.heartbeat_interval > 0.0 {
      let link = Arc::clone(&link);
      let beat =
        heartbeat::run(millis(options.heartbeat_interval), heartbeat.clone(), move |visit| {
          visit(0, &link)
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
      link: Arc::clone(&link),
      events: Arc::clone(&events),
      backlog: VecDeque::new(),
      answers: answer_inbox,
      tls: None,
      retries: 0,
      attempts: 0,
    };
    napi::bindgen_prelude::spawn(task.run(command_inbox));
    let stopper = Stopper {
      link: Arc::downgrade(&link),
      commands: commands.downgrade(),
      heartbeat: heartbeat.clone(),
    };
    let teardown = TeardownHook::register(env, stopper, Stopper::stop)?;
    Ok(NativeSocket { link, queue_limit, commands, answers, events, heartbeat, teardown })
  }

  /// Queues a message for the current or the next connection; false when
  /// `maxEnqueuedMessages` messages already wait.
  #[napi]
  pub fn send(&self, payload: Payload) -> bool {
    let limits = Limits { max_queued: self.queue_limit, ..Limits::NONE };
    self.link.send(to_message(payload), limits)
  }

  /// Queues a message that goes out uncompressed (`send(message,
  /// { compress: false })`), like `send`.
  #[napi]
  pub fn send_uncompressed(&self, payload: Payload) -> bool {
    let limits = Limits { max_queued: self.queue_limit, ..Limits::NONE };
    self.link.send(uncompressed(to_message(payload)), limits)
  }

  /// Queues several messages at once, in order: the sends JS made while a
  /// connection was open, gathered into one crossing.
  #[napi]
  pub fn send_batch(&self, payloads: Vec<Payload>) {
    let limits = Limits { max_queued: self.queue_limit, ..Limits::NONE };
    for payload in payloads {
      self.link.send(to_message(payload), limits);
    }
  }

  /// `sendBatch` for JSON texts, joined with line breaks.
  #[napi]
  pub fn send_json_batch(&self, joined: String) {
    let limits = Limits { max_queued: self.queue_limit, ..Limits::NONE };
    for message in json_lines(joined) {
      self.link.send(message, limits);
    }
  }

  /// Closes for good: messages already sent go out before the close frame
  /// when a connection is open; otherwise they are dropped and counted in
  /// the `Stopped` event.
  #[napi]
  pub fn close(&self, code: u32, reason: String) {
    self.link.close(close_frame(code, reason));
    // An error means the task is gone, and with it everything to stop.
    let _ = self.commands.send(Command::Stop);
  }

  /// Ends the current connection (with `code` and `reason`) or attempt and
  /// connects again at once, whatever the state.
  #[napi]
  pub fn reconnect(&self, code: u32, reason: String) {
    self.link.reopen();
    if self.link.is_connected() {
      self.link.close_connection(close_frame(code, reason));
    }
    let _ = self.commands.send(Command::Reconnect);
  }

  /// The answer to a `Connecting` event with an empty URL: the URL of
  /// attempt `attempt` and, when the `headers` option is a function, the
  /// headers it gave, as `[name, value, ...]`.
  #[napi]
  pub fn provide_attempt(&self, attempt: u32, url: String, headers: Option<Vec<String>>) {
    let target = Ok(Target { url, headers });
    // An error means the task is gone, and with it the attempt.
    let _ = self.answers.send(AttemptAnswer { attempt, target });
  }

  /// The other answer to a `Connecting` event with an empty URL: attempt
  /// `attempt` fails with `code` (`ERR_INVALID_OPTION` for the `headers`
  /// function, otherwise `ERR_INVALID_URL`) and `message`, and counts as a
  /// failed attempt.
  #[napi]
  pub fn refuse_attempt(&self, attempt: u32, code: String, message: String) {
    let code = if code == "ERR_INVALID_OPTION" { "ERR_INVALID_OPTION" } else { "ERR_INVALID_URL" };
    let target = Err(Failure::new(code, message));
    let _ = self.answers.send(AttemptAnswer { attempt, target });
  }

  /// Payload bytes queued or accepted and not yet written.
  #[napi]
  pub fn buffered_amount(&self) -> f64 {
    self.link.buffered_amount() as f64
  }

  /// Turns delivery of messages to JS on or off.
  #[napi]
  pub fn observe(&self, observed: bool) {
    self.link.observed.store(observed, Ordering::Relaxed);
  }
}

impl Drop for NativeSocket {
  /// The JS object is gone: nothing can observe events any more, so let the
  /// dispatcher release the JS callback and stop the heartbeat.
  /// Dropping `commands` ends the connection task once it next waits.
  fn drop(&mut self) {
    self.heartbeat.cancel();
    self.events.finish();
  }
}

type Connection = WebSocketStream<ServerStream<MaybeTlsStream<TcpStream>>>;

/// A message as a frame that is sent as it is: the connection loop
/// compresses text and binary messages only.
fn uncompressed(message: Message) -> Message {
  match message {
    Message::Text(text) => Message::Frame(Frame::message(text, OpCode::Data(Data::Text), true)),
    Message::Binary(bytes) => {
      Message::Frame(Frame::message(bytes, OpCode::Data(Data::Binary), true))
    }
    other => other,
  }
}

/// An open connection, with the protocol the server chose and how to
/// compress what it sends.
struct Opened {
  ws: Connection,
  protocol: String,
  compressor: Option<Compressor>,
}

/// Why an attempt failed, with the stable code JS reports.
struct Failure {
  code: &'static str,
  message: String,
  status: Option<u32>,
  errno: Option<i32>,
  /// How long the server asked the client to stay away (`Retry-After`).
  retry_after: Option<Duration>,
}

impl Failure {
  fn new(code: &'static str, message: impl Into<String>) -> Failure {
    Failure { code, message: message.into(), status: None, errno: None, retry_after: None }
  }

  /// A 401 or 403 answer: retrying with the same URL and headers would only
  /// be refused again.
  fn is_unauthorized(&self) -> bool {
    matches!(self.status, Some(401 | 403))
  }

  fn into_event(self) -> EventDetail {
    let Failure { code, message, status, errno, .. } = self;
    EventDetail::Error { code: code.into(), message, status, errno }
  }
}

/// What the connection task owns.
struct Task {
  options: NativeSocketOptions,
  link: Arc<Link>,
  events: Arc<EventQueue>,
  /// Messages a dropped connection never handed to the kernel; they go
  /// first on the next one.
  backlog: VecDeque<Message>,
  answers: mpsc::UnboundedReceiver<AttemptAnswer>,
  /// Built on the first `wss://` attempt.
  tls: Option<Arc<ClientConfig>>,
  /// Failed attempts since the last success, `reconnect()` or give-up.
  retries: u32,
  /// Attempts so far, for the `Connecting` event.
  attempts: u32,
}

/// What a wait between attempts ended with.
enum Wake {
  Attempt,
  Stop,
  /// The JS object is gone.
  Exit,
}

/// What follows an attempt.
enum Next {
  /// Straight to this.
  Go(Wake),
  /// Wait and try again, unless out of retries or `give_up`; the wait is
  /// at least `at_least` milliseconds.
  Retry { at_least: f64, give_up: bool },
}

impl Task {
  async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
    // Idle until the first command: `Reconnect` unless `startClosed`.
    let mut wake = self.idle(&mut commands).await;
    loop {
      wake = match wake {
        Wake::Exit => return,
        Wake::Stop => {
          self.stop();
          let wake = self.after_stop(&mut commands).await;
          self.retries = 0;
          wake
        }
        // close() was called while this attempt was due.
        Wake::Attempt if self.link.is_closing() => Wake::Stop,
        Wake::Attempt => self.attempt_and_wait(&mut commands).await,
      };
    }
  }

  /// One attempt, the connection if it opens, and the wait before the
  /// next attempt.
  async fn attempt_and_wait(&mut self, commands: &mut mpsc::UnboundedReceiver<Command>) -> Wake {
    self.attempts = self.attempts.wrapping_add(1);
    let deadline = millis(self.options.connection_timeout);
    let attempt = tokio::select! {
      command = commands.recv() => return on_command(command, &mut self.retries),
      attempt = timeout(deadline, self.attempt(self.attempts)) => attempt,
    };
    let next = match attempt {
      Ok(Ok(Opened { mut ws, .. })) if self.link.is_closing() => {
        // close() came while the handshake finished: this connection
        // was never announced, so it ends quietly.
        let _ = timeout(Duration::from_secs(1), ws.close(None)).await;
        Next::Go(Wake::Stop)
      }
      Ok(Ok(opened)) => self.connected(opened, commands).await,
      Ok(Err(failure)) => {
        // Without a function to give a fresh token, the same refusal
        // would only come again.
        let give_up = failure.is_unauthorized() && !self.resolves_each_attempt();
        // The least the next wait may be, when the server asked for one.
        let at_least =
          failure.retry_after.map_or(0.0, |wait| wait.min(MAX_RETRY_AFTER).as_secs_f64() * 1000.0);
        self.events.detail(0, failure.into_event());
        Next::Retry { at_least, give_up }
      }
      Err(_) => {
        let message = format!("No connection within {} ms", self.options.connection_timeout);
        self.events.detail(0, Failure::new("ERR_TIMEOUT", message).into_event());
        Next::Retry { at_least: 0.0, give_up: false }
      }
    };
    match next {
      Next::Go(wake) => wake,
      Next::Retry { at_least, give_up } => self.wait_to_retry(at_least, give_up, commands).await,
    }
  }

  /// Whether one more attempt is allowed after `retries` failed ones.
  fn will_retry(&self) -> bool {
    f64::from(self.retries + 1) <= self.options.max_retries
  }

  /// Runs an open connection until it ends, and reports its end.
  async fn connected(
    &mut self,
    Opened { mut ws, protocol, compressor }: Opened,
    commands: &mut mpsc::UnboundedReceiver<Command>,
  ) -> Next {
    self.report_open(&ws, protocol);
    let opened = Instant::now();
    let (link, events) = (&self.link, &self.events);
    let ended = drive(&mut ws, &mut self.backlog, link, &events.flow, compressor, |incoming| {
      if let Incoming::Data(binary, payload) = incoming {
        if link.observed.load(Ordering::Relaxed) {
          events.message(0, link, binary, payload);
        }
      }
    })
    .await;
    if opened.elapsed() >= millis(self.options.min_uptime) {
      self.retries = 0;
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
    let stopping = self.link.is_closing() || matches!(command, Some(Command::Stop));
    let reconnecting = matches!(command, Some(Command::Reconnect));
    let code = ended.code;
    self.events.detail(
      0,
      EventDetail::Close {
        code: code.into(),
        reason: ended.reason,
        was_clean: ended.was_clean,
        will_reconnect: !stopping && (reconnecting || self.will_retry()),
      },
    );
    if stopping || reconnecting {
      self.retries = 0;
      return Next::Go(if stopping { Wake::Stop } else { Wake::Attempt });
    }
    // 1012 (the service restarts) and 1013 (try again later): jitter
    // must not bring the client back sooner than the shortest wait.
    let at_least =
      if matches!(code, 1012 | 1013) { self.options.min_reconnection_delay } else { 0.0 };
    Next::Retry { at_least, give_up: false }
  }

  /// Tells JS the connection is open, and where to.
  fn report_open(&self, ws: &Connection, protocol: String) {
    let remote = match ws.get_ref().get_ref() {
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
  }

  /// Waits before the next attempt (a command may cut it short), or gives
  /// up and idles until one.
  async fn wait_to_retry(
    &mut self,
    at_least: f64,
    give_up: bool,
    commands: &mut mpsc::UnboundedReceiver<Command>,
  ) -> Wake {
    if give_up || !self.will_retry() {
      // Gave up; sends keep queueing for a later `reconnect()`.
      self.events.detail(0, EventDetail::Stopped { dropped: 0 });
      let wake = self.idle(commands).await;
      self.retries = 0;
      return wake;
    }
    self.retries += 1;
    let delay = retry_delay(&self.options, self.retries).max(at_least);
    self.events.detail(0, EventDetail::Reconnecting { attempt: self.retries, delay });
    tokio::select! {
      command = commands.recv() => on_command(command, &mut self.retries),
      _ = sleep(millis(delay)) => Wake::Attempt,
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
    let dropped = self.link.discard(&mut self.backlog);
    self.events.detail(0, EventDetail::Stopped { dropped });
  }

  /// Whether JS resolves the URL or the headers before each attempt.
  fn resolves_each_attempt(&self) -> bool {
    self.options.url_is_function || self.options.headers_is_function
  }

  /// One attempt: the URL and headers (from JS when either is a function),
  /// TCP, TLS and the opening handshake.
  async fn attempt(&mut self, attempt: u32) -> std::result::Result<Opened, Failure> {
    let target = if self.resolves_each_attempt() {
      self.events.detail(0, EventDetail::Connecting { attempt, url: String::new() });
      self.answer(attempt).await?
    } else {
      self.events.detail(0, EventDetail::Connecting { attempt, url: self.options.url.clone() });
      Target { url: self.options.url.clone(), headers: None }
    };
    let headers = target.headers.as_deref().unwrap_or(&self.options.headers);
    let offer = self.options.per_message_deflate.as_ref().map(NativeSocketDeflate::offer);
    let request = request(&target.url, headers, &self.options.protocols, offer)?;
    let tls = if request.uri().scheme_str() == Some("wss") {
      if self.tls.is_none() {
        let config = tls::client_config(&self.options.tls_ca, self.options.tls_reject_unauthorized)
          .map_err(|message| Failure::new("ERR_TLS", message))?;
        self.tls = Some(config);
      }
      self.tls.clone()
    } else {
      None
    };
    let max_payload = self.options.max_payload as usize;
    // One connection per socket: large buffers cost little and save system
    // calls on large messages.
    let config = WebSocketConfig::default()
      .read_buffer_size(64 * 1024)
      .write_buffer_size(64 * 1024)
      .max_message_size(Some(max_payload))
      .max_frame_size(Some(max_payload));
    let transport =
      client_transport::open(&request, tls).await.map_err(|error| connect_failure(&error))?;
    let stream = match transport {
      tls @ MaybeTlsStream::Rustls(_) => ServerStream::for_client(tls).over_tls(),
      plain => ServerStream::for_client(plain),
    };
    let (mut ws, response) =
      tokio_tungstenite::client_async_with_config(request, stream, Some(config))
        .await
        .map_err(|error| connect_failure(&error))?;
    let protocol = response
      .headers()
      .get("sec-websocket-protocol")
      .and_then(|value| value.to_str().ok())
      .unwrap_or_default()
      .to_owned();
    let answer = handshake::header_values(response.headers(), "sec-websocket-extensions");
    let agreement = match (offer, answer.is_empty()) {
      (_, true) => None,
      (Some(offer), false) => {
        offer.accept_answer(&answer).map_err(|message| Failure::new("ERR_HANDSHAKE", message))?
      }
      (None, false) => {
        let message =
          format!("The server answered with extensions we did not offer: {}", answer.join(", "));
        return Err(Failure::new("ERR_HANDSHAKE", message));
      }
    };
    let stream = ws.get_mut();
    stream.start_frames(Vec::new());
    stream.set_max_message(max_payload);
    stream.agree_on(agreement);
    let threshold =
      self.options.per_message_deflate.as_ref().map_or(0, |deflate| deflate.threshold as usize);
    let compressor = agreement.map(|agreement| Compressor {
      window_bits: agreement.send_window_bits,
      settings: Settings { threshold, level: DEFAULT_LEVEL },
    });
    Ok(Opened { ws, protocol, compressor })
  }

  /// Waits for JS's URL and headers for this attempt, skipping late
  /// answers to earlier attempts.
  async fn answer(&mut self, attempt: u32) -> std::result::Result<Target, Failure> {
    loop {
      match self.answers.recv().await {
        Some(answer) if answer.attempt == attempt => return answer.target,
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

/// The upgrade request. JS checked the headers already; one that cannot be
/// sent all the same fails the attempt with `ERR_INVALID_OPTION`.
fn request(
  url: &str,
  headers: &[String],
  protocols: &[String],
  offer: Option<ClientOffer>,
) -> std::result::Result<Request<()>, Failure> {
  let mut request = url.into_client_request().map_err(|error| connect_failure(&error))?;
  let fields = request.headers_mut();
  for pair in headers.chunks_exact(2) {
    let (name, value) = (&pair[0], &pair[1]);
    let field = HeaderName::from_bytes(name.as_bytes()).ok().zip(HeaderValue::from_str(value).ok());
    let Some((name, value)) = field else {
      let message = format!(
        "The handshake header {name:?} cannot be sent: its name must be a token and its value visible ASCII"
      );
      return Err(Failure::new("ERR_INVALID_OPTION", message));
    };
    fields.append(name, value);
  }
  if !protocols.is_empty() {
    let offered = HeaderValue::from_str(&protocols.join(", "))
      .map_err(|error| connect_failure(&http_error(error)))?;
    fields.insert("sec-websocket-protocol", offered);
  }
  if let Some(offer) = offer {
    let offer = HeaderValue::from_str(&offer.header())
      .map_err(|error| connect_failure(&http_error(error)))?;
    fields.insert("sec-websocket-extensions", offer);
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
    WsError::Http(response) => {
      let status = response.status().as_u16();
      // Only these two answers say "later" rather than "no".
      let retry_after = if matches!(status, 429 | 503) {
        let value = response.headers().get("retry-after").and_then(|value| value.to_str().ok());
        value.and_then(|value| retry_after(value, SystemTime::now()))
      } else {
        None
      };
      Failure { status: Some(status.into()), retry_after, ..Failure::new("ERR_HANDSHAKE", message) }
    }
    WsError::Tls(_) => Failure::new("ERR_TLS", message),
    WsError::Io(io) if io.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) => {
      Failure::new("ERR_TLS", message)
    }
    // The system error (ECONNREFUSED...), which JS reports as Node does.
    WsError::Io(io) => Failure { errno: io.raw_os_error(), ..Failure::new("ERR_CONNECT", message) },
    _ => Failure::new("ERR_CONNECT", message),
  }
}

/// How long a `Retry-After` value asks to wait from `now`: a number of
/// seconds, or an HTTP date (in any of the three forms HTTP allows).
/// `None` when it is neither; a date already past asks for no wait.
fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
  let value = value.trim();
  if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) {
    // Too many digits for a u64 is longer than any cap.
    return Some(value.parse().map_or(Duration::MAX, Duration::from_secs));
  }
  let at = http_date(value)?;
  Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

const MONTHS: [&str; 12] =
  ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// An HTTP date: `Sun, 06 Nov 1994 08:49:37 GMT`, the obsolete
/// `Sunday, 06-Nov-94 08:49:37 GMT` and `Sun Nov  6 08:49:37 1994`.
fn http_date(value: &str) -> Option<SystemTime> {
  let words: Vec<&str> = value.split([' ', ',', '-']).filter(|word| !word.is_empty()).collect();
  let (day, month, year, time) = match words.as_slice() {
    [_, day, month, year, time, "GMT"] => (*day, *month, *year, *time),
    [_, month, day, time, year] => (*day, *month, *year, *time),
    _ => return None,
  };
  let day: u64 = day.parse().ok().filter(|day| (1..=31).contains(day))?;
  let month = MONTHS.iter().position(|name| *name == month)? as u64 + 1;
  let year: u64 = match (year.len(), year.parse::<u64>().ok()?) {
    // Two-digit years of the obsolete form: 70-99 are the 1900s.
    (2, year) if year < 70 => year + 2000,
    (2, year) => year + 1900,
    (4, year) if year >= 1970 => year,
    _ => return None,
  };
  let mut clock = time.split(':').map(|part| part.parse::<u64>().ok());
  let (Some(Some(hour)), Some(Some(minute)), Some(Some(second)), None) =
    (clock.next(), clock.next(), clock.next(), clock.next())
  else {
    return None;
  };
  if hour > 23 || minute > 59 || second > 60 {
    return None;
  }
  let seconds = days_since_epoch(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
  SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
}

/// Days from 1970-01-01 to a date from 1970 on (Howard Hinnant's
/// `days_from_civil`).
fn days_since_epoch(year: u64, month: u64, day: u64) -> u64 {
  let year = if month <= 2 { year - 1 } else { year };
  let era = year / 400;
  let year_of_era = year - era * 400;
  let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
  let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
  era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
  use std::time::{Duration, SystemTime};

  use super::retry_after;

  /// 1994-11-06 08:49:37 UTC, the date of HTTP's examples.
  fn example() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777)
  }

  #[test]
  fn seconds() {
    assert_eq!(retry_after("120", example()), Some(Duration::from_secs(120)));
    assert_eq!(retry_after(" 0 ", example()), Some(Duration::ZERO));
    assert_eq!(retry_after("99999999999999999999999", example()), Some(Duration::MAX));
  }

  #[test]
  fn dates_in_the_three_forms() {
    let before = example() - Duration::from_secs(90);
    for date in [
      "Sun, 06 Nov 1994 08:49:37 GMT",
      "Sunday, 06-Nov-94 08:49:37 GMT",
      "Sun Nov  6 08:49:37 1994",
    ] {
      assert_eq!(retry_after(date, before), Some(Duration::from_secs(90)), "{date}");
    }
    let leap_day = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
    assert_eq!(retry_after("Tue, 29 Feb 2000 00:00:00 GMT", leap_day), Some(Duration::ZERO));
  }

  #[test]
  fn a_past_date_asks_for_no_wait() {
    let later = example() + Duration::from_secs(3600);
    assert_eq!(retry_after("Sun, 06 Nov 1994 08:49:37 GMT", later), Some(Duration::ZERO));
  }

  #[test]
  fn anything_else_is_ignored() {
    for value in [
      "",
      "-5",
      "1.5",
      "soon",
      "Sun, 06 Nov 1994 08:49:37 CET",
      "Sun, 06 Foo 1994 08:49:37 GMT",
      "Sun, 32 Nov 1994 08:49:37 GMT",
      "Sun, 06 Nov 1994 24:00:00 GMT",
      "Sun, 06 Nov 1994 08:49 GMT",
      "Sun, 06 Nov 1994 08:49:37:01 GMT",
      "Sun, 06 Nov 1969 08:49:37 GMT",
      "Sun, 06 Nov 123456789012345678901 08:49:37 GMT",
    ] {
      assert_eq!(retry_after(value, example()), None, "{value:?}");
    }
  }
}
