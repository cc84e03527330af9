//! The native client: one task that connects, drives the connection,
//! and reconnects by the policy of reconnecting-websocket. Its send queue
//! outlives every connection, so messages sent while offline simply wait in
//! it and leave, in order, as soon as a connection opens.

use std::sync::Arc;
use std::time::{Duration, Instant};

use napi::Result;
use napi_derive::napi;
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, Request};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::MaybeTlsStream;

use crate::buffers::{to_message, Payload};
use crate::connection::{drive, Inbox, Outgoing, Peer};
use crate::events::{EventCallback, EventDetail, EventQueue};

/// Options the JS facade has already validated and filled with defaults.
/// Durations are in milliseconds.
#[napi(object)]
pub struct NativeSocketOptions {
  pub url: String,
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
  pub max_payload: u32,
  pub start_closed: bool,
}

/// The wait before retry `retry` (1-based), as reconnecting-websocket
/// computes it, shortened by up to `jitter` of itself.
fn retry_delay(options: &NativeSocketOptions, retry: u32) -> f64 {
  let growth = options.reconnection_delay_grow_factor.powi(retry as i32 - 1);
  let delay = (options.min_reconnection_delay * growth).min(options.max_reconnection_delay);
  delay * (1.0 - options.jitter * fastrand::f64())
}

enum Command {
  /// `close()`: stop connecting; the close frame, if a connection is open,
  /// travels on the send queue behind the messages sent before it.
  Stop,
  /// `reconnect()`: connect again at once with a fresh retry count.
  Reconnect,
}

/// A reconnecting WebSocket client. Created by lib/socket.js.
#[napi]
pub struct NativeSocket {
  peer: Arc<Peer>,
  commands: mpsc::UnboundedSender<Command>,
  events: Arc<EventQueue>,
}

#[napi]
impl NativeSocket {
  /// Creates the socket and, unless `startClosed`, starts connecting.
  #[napi(constructor)]
  pub fn new(options: NativeSocketOptions, on_events: EventCallback) -> Result<Self> {
    let events = EventQueue::start(on_events)?;
    let (peer, inbox) = Peer::new();
    let peer = Arc::new(peer);
    let (commands, command_inbox) = mpsc::unbounded_channel();
    if !options.start_closed {
      // Cannot fail: the receiver is alive until `run` starts.
      let _ = commands.send(Command::Reconnect);
    }
    let task = Task {
      options,
      peer: Arc::clone(&peer),
      events: Arc::clone(&events),
      inbox,
      commands: command_inbox,
    };
    napi::bindgen_prelude::spawn(task.run());
    Ok(NativeSocket { peer, commands, events })
  }

  /// Queues a message for the current or the next connection.
  #[napi]
  pub fn send(&self, payload: Payload) -> bool {
    self.peer.send(to_message(payload))
  }

  /// Closes for good: messages already sent go out before the close frame
  /// when a connection is open; otherwise they are dropped and counted in
  /// the `Stopped` event.
  #[napi]
  pub fn close(&self, code: u32, reason: String) {
    let code = CloseCode::from(u16::try_from(code).unwrap_or(1000));
    self.peer.close(CloseFrame { code, reason: reason.into() });
    // An error means the task is gone, and with it everything to stop.
    let _ = self.commands.send(Command::Stop);
  }

  /// Connects again at once, whatever the state.
  #[napi]
  pub fn reconnect(&self) {
    let _ = self.commands.send(Command::Reconnect);
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
  /// dispatcher release its threadsafe function. Dropping `commands` ends
  /// the connection task once it next waits for a command.
  fn drop(&mut self) {
    self.events.finish();
  }
}

/// What the connection task owns.
struct Task {
  options: NativeSocketOptions,
  peer: Arc<Peer>,
  events: Arc<EventQueue>,
  inbox: Inbox,
  commands: mpsc::UnboundedReceiver<Command>,
}

/// What a wait between attempts ended with.
enum Wake {
  Attempt,
  Stop,
  /// The JS object is gone.
  Exit,
}

impl Task {
  async fn run(mut self) {
    let mut retries = 0u32;
    // Idle until the first command: `Reconnect` unless `startClosed`.
    let mut wake = self.idle().await;
    loop {
      match wake {
        Wake::Exit => return,
        Wake::Stop => {
          self.stop();
          wake = self.idle().await;
          retries = 0;
          continue;
        }
        Wake::Attempt => {}
      }

      let connection_timeout =
        Duration::from_secs_f64(self.options.connection_timeout.max(0.0) / 1000.0);
      let attempt = tokio::select! {
        command = self.commands.recv() => {
          wake = on_command(command, &mut retries);
          continue;
        }
        attempt = timeout(connection_timeout, connect(&self.options)) => attempt,
      };

      let will_retry = |retries: u32| f64::from(retries + 1) <= self.options.max_retries;
      match attempt {
        Ok(Ok((mut ws, protocol))) => {
          let remote = match ws.get_ref() {
            MaybeTlsStream::Plain(tcp) => tcp.peer_addr().ok(),
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
          let ended = drive(&mut ws, &mut self.inbox, peer, false, |binary, payload| {
            if peer.observed.load(Ordering::Relaxed) {
              events.message(0, binary, payload);
            }
          })
          .await;
          if opened.elapsed().as_secs_f64() * 1000.0 >= self.options.min_uptime {
            retries = 0;
          }
          let stopping = self.peer.is_closing();
          self.events.detail(
            0,
            EventDetail::Close {
              code: ended.code.into(),
              reason: ended.reason,
              was_clean: ended.was_clean,
              will_reconnect: !stopping && will_retry(retries),
              raw_headers: None,
            },
          );
          if stopping {
            wake = Wake::Stop;
            continue;
          }
        }
        Ok(Err(error)) => self.events.detail(0, connect_error(error)),
        Err(_) => self.events.detail(
          0,
          EventDetail::Error {
            code: "ERR_TIMEOUT".into(),
            message: format!("No connection within {} ms", self.options.connection_timeout),
            status: None,
          },
        ),
      }

      if !will_retry(retries) {
        // Gave up; sends keep queueing for a later `reconnect()`.
        self.events.detail(0, EventDetail::Stopped { dropped: 0 });
        wake = self.idle().await;
        retries = 0;
        continue;
      }
      retries += 1;
      let delay = retry_delay(&self.options, retries);
      self.events.detail(0, EventDetail::Reconnecting { attempt: retries, delay });
      wake = tokio::select! {
        command = self.commands.recv() => on_command(command, &mut retries),
        _ = sleep(Duration::from_secs_f64(delay / 1000.0)) => Wake::Attempt,
      };
    }
  }

  /// Waits, not connected, for the next command.
  async fn idle(&mut self) -> Wake {
    loop {
      match self.commands.recv().await {
        Some(Command::Reconnect) => return Wake::Attempt,
        // Already stopped.
        Some(Command::Stop) => continue,
        None => return Wake::Exit,
      }
    }
  }

  /// After `close()` while not connected: discard what waits in the queue
  /// and report how many messages that was.
  fn stop(&mut self) {
    let mut dropped = 0u32;
    while let Ok(item) = self.inbox.try_recv() {
      if matches!(item, Outgoing::Message(_)) {
        dropped += 1;
      }
    }
    self.peer.reset_buffered();
    self.events.detail(0, EventDetail::Stopped { dropped });
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

/// One connection attempt: TCP connect and the opening handshake.
async fn connect(
  options: &NativeSocketOptions,
) -> std::result::Result<
  (tokio_tungstenite::WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>, String),
  WsError,
> {
  let request = request(options)?;
  let max_payload = Some(options.max_payload as usize);
  let config = WebSocketConfig::default()
    .read_buffer_size(16 * 1024)
    .write_buffer_size(16 * 1024)
    .max_message_size(max_payload)
    .max_frame_size(max_payload);
  let (ws, response) =
    tokio_tungstenite::connect_async_with_config(request, Some(config), true).await?;
  let protocol = response
    .headers()
    .get("sec-websocket-protocol")
    .and_then(|value| value.to_str().ok())
    .unwrap_or_default()
    .to_owned();
  Ok((ws, protocol))
}

fn request(options: &NativeSocketOptions) -> std::result::Result<Request<()>, WsError> {
  let mut request = options.url.as_str().into_client_request()?;
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

/// Names a failed attempt with a stable code.
fn connect_error(error: WsError) -> EventDetail {
  let (code, status) = match &error {
    WsError::Http(response) => ("ERR_HANDSHAKE", Some(response.status().as_u16().into())),
    WsError::Tls(_) => ("ERR_TLS", None),
    WsError::Url(tokio_tungstenite::tungstenite::error::UrlError::TlsFeatureNotEnabled) => {
      ("ERR_TLS", None)
    }
    _ => ("ERR_CONNECT", None),
  };
  EventDetail::Error { code: code.into(), message: error.to_string(), status }
}
