//! One WebSocket connection: the queue JS sends into, and the single task
//! loop that writes that queue, reads incoming frames and runs the closing
//! handshake.
//!
//! Each connection is driven by one task that polls both directions itself
//! (no split halves, no second task): queued frames are fed to tungstenite
//! until the queue is empty and then flushed once, so a burst of sends leaves
//! in one write.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{sleep, timeout};
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::buffers::payload_len;
use crate::direct_frame::{DirectFrame, DIRECT_MIN_LEN};

/// How long we wait for the peer to answer our close frame before dropping
/// the connection (SPEC: `'remove'` at the latest 5 s after our close frame).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long we try to deliver a close frame after a protocol error.
const ERROR_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Generations number a peer's connections from 1; these two are markers.
const NO_CONNECTION: u32 = 0;
const ANY_CONNECTION: u32 = u32::MAX;

/// Rounds of read-and-write one poll may run before yielding to other tasks.
const ROUNDS_PER_POLL: usize = 32;

/// What JS puts on a connection's queue.
pub enum Outgoing {
  Message(Message),
  /// A close frame for the connection of this generation; a frame meant for
  /// a connection that has meanwhile ended is dropped.
  Close(CloseFrame, u32),
}

/// Why a connection is dropped without a closing handshake. These do not
/// wait in the queue: a peer that reads nothing stalls the queue, and is
/// exactly the peer to drop.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Termination {
  Requested = 1,
  /// The peer sent nothing for two heartbeat intervals.
  Heartbeat = 2,
  /// The peer reads too slowly: its unsent bytes passed `maxBackpressure`.
  Backpressure = 3,
}

impl Termination {
  fn from_code(code: u64) -> Termination {
    match code {
      2 => Termination::Heartbeat,
      3 => Termination::Backpressure,
      _ => Termination::Requested,
    }
  }
}

/// The bounds `send` enforces.
#[derive(Clone, Copy)]
pub struct Limits {
  /// Data messages waiting in the queue while no connection is open (a
  /// client's `maxEnqueuedMessages`); over it `send` refuses the message.
  pub max_queued: usize,
  /// Unsent bytes (a server's `maxBackpressure`); over it the connection is
  /// dropped and reported with 1008.
  pub max_buffered: usize,
}

impl Limits {
  pub const NONE: Limits = Limits { max_queued: usize::MAX, max_buffered: usize::MAX };
}

/// A server connection lives once; a client's queue outlives its
/// connections and keeps accepting sends for the next one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Role {
  Server,
  Client,
}

/// Milliseconds on a process-wide monotonic clock, for `last_seen`.
pub fn now_ms() -> u64 {
  static START: LazyLock<Instant> = LazyLock::new(Instant::now);
  START.elapsed().as_millis() as u64
}

/// The part of a connection that JS calls reach: its send queue and state
/// flags, shared with the task that drives the connection.
pub struct Peer {
  /// Frames waiting for the task. A plain deque: it allocates only while
  /// frames wait (a channel would hold a block of slots per idle peer), and
  /// the task takes it whole.
  queue: Mutex<VecDeque<Outgoing>>,
  /// The driving task, woken by anything that concerns it.
  task: AtomicWaker,
  /// Whether JS observes this connection's messages; when it does not, they
  /// are dropped in Rust instead of being carried to JS.
  pub observed: AtomicBool,
  /// Set from the first close frame in either direction (server), or by
  /// `close()` (client); `send` then refuses.
  closing: AtomicBool,
  /// Whether a connection is open now (a client's queue may wait for one).
  connected: AtomicBool,
  /// Counts connections, so a close frame reaches only the one it was for.
  generation: AtomicU32,
  /// Payload bytes accepted by `send` and not yet handed to the kernel.
  buffered: AtomicUsize,
  /// Data messages in the queue, not yet given to tungstenite.
  queued: AtomicUsize,
  /// `now_ms()` when the last frame arrived, for the heartbeat.
  last_seen: AtomicU64,
  /// A termination for connection `kill >> 8`, reason `kill & 0xff`; 0 for
  /// none. It does not wait in the queue: a peer that reads nothing stalls
  /// the queue, and is exactly the peer to drop.
  kill: AtomicU64,
  /// The generation whose close was requested, for its 5-s timeout.
  close_requested: AtomicU32,
}

impl Peer {
  pub fn new() -> Peer {
    Peer {
      queue: Mutex::new(VecDeque::new()),
      task: AtomicWaker::new(),
      observed: AtomicBool::new(false),
      closing: AtomicBool::new(false),
      connected: AtomicBool::new(false),
      generation: AtomicU32::new(NO_CONNECTION),
      buffered: AtomicUsize::new(0),
      queued: AtomicUsize::new(0),
      last_seen: AtomicU64::new(now_ms()),
      kill: AtomicU64::new(0),
      close_requested: AtomicU32::new(NO_CONNECTION),
    }
  }

  /// Marks a new connection open and returns its generation.
  pub fn open_connection(&self) -> u32 {
    let generation =
      self.generation.fetch_add(1, Ordering::AcqRel).wrapping_add(1) % ANY_CONNECTION;
    self.last_seen.store(now_ms(), Ordering::Relaxed);
    self.connected.store(true, Ordering::Release);
    generation
  }

  /// Registers the driving task's waker, then tells whether something is
  /// queued or a termination is asked for.
  pub fn poll_work(&self, cx: &mut Context<'_>) -> Poll<()> {
    self.task.register(cx.waker());
    if self.kill.load(Ordering::Acquire) != 0 || !self.queued_frames().is_empty() {
      Poll::Ready(())
    } else {
      Poll::Pending
    }
  }

  fn push(&self, item: Outgoing) {
    self.queued_frames().push_back(item);
    self.task.wake();
  }

  fn queued_frames(&self) -> MutexGuard<'_, VecDeque<Outgoing>> {
    // A panic while holding the lock leaves a deque, not a broken one.
    self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
  }

  /// Queues a data frame; false once closing or over `limits`.
  pub fn send(&self, message: Message, limits: Limits) -> bool {
    let queue_full =
      !self.is_connected() && self.queued.load(Ordering::Relaxed) >= limits.max_queued;
    if self.is_closing() || queue_full {
      return false;
    }
    let length = payload_len(&message);
    let buffered = self.buffered.fetch_add(length, Ordering::Relaxed) + length;
    if buffered > limits.max_buffered {
      // A slow reader must not exhaust memory: drop it, with what it holds.
      self.closing.store(true, Ordering::Release);
      self.kill(ANY_CONNECTION, Termination::Backpressure);
      return false;
    }
    self.queued.fetch_add(1, Ordering::Relaxed);
    self.push(Outgoing::Message(message));
    true
  }

  /// Queues a close frame behind everything sent before, for whichever
  /// connection takes it (one that has not started yet included); false if
  /// already closing.
  pub fn close(&self, frame: CloseFrame) -> bool {
    if self.closing.swap(true, Ordering::AcqRel) {
      return false;
    }
    self.queue_close(frame, ANY_CONNECTION);
    true
  }

  /// Queues a close frame for the current connection only, without refusing
  /// later sends: a client then reconnects.
  pub fn close_connection(&self, frame: CloseFrame) {
    self.queue_close(frame, self.generation.load(Ordering::Acquire));
  }

  fn queue_close(&self, frame: CloseFrame, generation: u32) {
    // The timeout runs from now, even while the frame waits behind others.
    self.close_requested.store(generation, Ordering::Release);
    self.push(Outgoing::Close(frame, generation));
  }

  /// Drops the connection (even one not started yet) without a closing
  /// handshake and refuses sends.
  pub fn terminate(&self) {
    self.closing.store(true, Ordering::Release);
    self.kill(ANY_CONNECTION, Termination::Requested);
  }

  fn kill(&self, generation: u32, why: Termination) {
    self.kill.store(u64::from(generation) << 8 | why as u64, Ordering::Release);
    self.task.wake();
  }

  /// The termination asked for the connection of `generation`, if any;
  /// one meant for an earlier connection is discarded.
  fn take_kill(&self, generation: u32) -> Option<Termination> {
    let kill = self.kill.swap(0, Ordering::AcqRel);
    let meant_for = (kill >> 8) as u32;
    let applies = kill != 0 && (meant_for == generation || meant_for == ANY_CONNECTION);
    applies.then(|| Termination::from_code(kill & 0xff))
  }

  /// Whether a close was requested for the connection of `generation`.
  fn close_requested_for(&self, generation: u32) -> bool {
    let requested = self.close_requested.load(Ordering::Acquire);
    requested == generation || requested == ANY_CONNECTION
  }

  /// For the heartbeat: drops the open connection if its peer has been
  /// silent for `limit_ms`; true if it did. A client reconnects after it.
  pub fn drop_if_silent(&self, now: u64, limit_ms: u64) -> bool {
    if !self.is_connected() || now.saturating_sub(self.last_seen.load(Ordering::Relaxed)) < limit_ms
    {
      return false;
    }
    let generation = self.generation.load(Ordering::Acquire);
    // Once per connection: the next tick finds it no longer connected.
    if self.connected.swap(false, Ordering::AcqRel) {
      self.kill(generation, Termination::Heartbeat);
    }
    true
  }

  /// Accepts sends again after `close()`, for a client's `reconnect()`.
  pub fn reopen(&self) {
    self.close_requested.store(NO_CONNECTION, Ordering::Release);
    self.closing.store(false, Ordering::Release);
  }

  /// Queues a ping if a connection is open; pings are not data and are not
  /// counted as queued or buffered.
  pub fn ping(&self) {
    if self.is_connected() {
      self.push(Outgoing::Message(Message::Ping(Bytes::new())));
    }
  }

  pub fn is_closing(&self) -> bool {
    self.closing.load(Ordering::Acquire)
  }

  pub fn is_connected(&self) -> bool {
    self.connected.load(Ordering::Acquire)
  }

  pub fn buffered_amount(&self) -> usize {
    self.buffered.load(Ordering::Relaxed)
  }

  /// Drops every message still queued (a client's `close()` while
  /// offline) and returns how many there were.
  pub fn discard(&self, backlog: &mut VecDeque<Message>) -> u32 {
    let mut dropped = backlog.len() as u32;
    *backlog = VecDeque::new();
    for item in std::mem::take(&mut *self.queued_frames()) {
      if matches!(item, Outgoing::Message(ref message) if !is_ping(message)) {
        dropped += 1;
      }
    }
    self.queued.store(0, Ordering::Relaxed);
    self.buffered.store(0, Ordering::Relaxed);
    dropped
  }

  fn took_from_queue(&self, message: &Message) {
    if !is_ping(message) {
      self.queued.fetch_sub(1, Ordering::Relaxed);
    }
  }
}

fn is_ping(message: &Message) -> bool {
  matches!(message, Message::Ping(_))
}

/// How a connection ended, as the `'close'`/`'remove'` events report it.
pub struct Ended {
  pub code: u16,
  pub reason: String,
  pub was_clean: bool,
  /// The heartbeat found the peer silent.
  pub heartbeat_lost: bool,
}

impl Ended {
  fn abnormal() -> Ended {
    Ended { code: 1006, reason: String::new(), was_clean: false, heartbeat_lost: false }
  }
}

/// How the polling loop stopped.
enum Stop {
  /// The stream ended: after a closing handshake or because TCP ended.
  Finished,
  Terminated(Termination),
  CloseTimedOut,
  Failed(WsError),
}

/// What a connection hands its owner as it reads.
pub enum Incoming {
  /// A data frame: `(is_binary, payload)`.
  Data(bool, Bytes),
  /// The peer's close frame arrived: the connection is closing.
  Closing,
}

/// Whether a connection stopped to rest or ended.
pub enum Outcome {
  Rested,
  Ended(Ended),
}

/// Runs one client connection until it ends: writes what is queued on
/// `peer`, hands every data frame and the peer's close frame to `deliver`.
///
/// `backlog` holds messages to send before anything queued: messages that
/// an earlier connection took but never handed to the kernel. Messages
/// taken but not yet flushed to the kernel when this connection fails go
/// back to its head, for the next connection.
pub async fn drive<S>(
  ws: &mut WebSocketStream<S>,
  backlog: &mut VecDeque<Message>,
  peer: &Peer,
  deliver: impl FnMut(Incoming),
) -> Ended
where
  S: AsyncRead + AsyncWrite + Unpin,
{
  let generation = peer.open_connection();
  match drive_until_rest(ws, backlog, peer, generation, Role::Client, |_| false, deliver).await {
    Outcome::Ended(ended) => ended,
    Outcome::Rested => unreachable!("a connection that may not rest never rests"),
  }
}

/// Runs connection `generation` of `peer` until it ends, or until it is
/// quiet with nothing half done and `may_rest` agrees (it tells whether the
/// stream has handed tungstenite whole messages only).
pub async fn drive_until_rest<S>(
  ws: &mut WebSocketStream<S>,
  backlog: &mut VecDeque<Message>,
  peer: &Peer,
  generation: u32,
  role: Role,
  may_rest: impl Fn(&S) -> bool,
  mut deliver: impl FnMut(Incoming),
) -> Outcome
where
  S: AsyncRead + AsyncWrite + Unpin,
{
  let mut unflushed_bytes = 0usize;
  let mut unflushed: Vec<Message> = Vec::new();
  let mut sent_close = false;
  let mut received_close: Option<Option<CloseFrame>> = None;
  let mut close_deadline: Option<Pin<Box<tokio::time::Sleep>>> = None;
  // Frames taken from the peer's queue and not yet fed to tungstenite.
  let mut taken: VecDeque<Outgoing> = VecDeque::new();
  // A large binary frame a server writes itself (direct_frame.rs): it goes
  // after what tungstenite holds, and nothing is written or read (which may
  // write a pong) until it is out.
  let mut direct: Option<DirectFrame> = None;

  let stopped = poll_fn(|cx| {
    for _ in 0..ROUNDS_PER_POLL {
      let mut progressed = false;

      // Registered before anything is checked, so that no wake is missed.
      peer.task.register(cx.waker());
      if let Some(why) = peer.take_kill(generation) {
        return Poll::Ready(Some(Stop::Terminated(why)));
      }
      if close_deadline.is_none() && peer.close_requested_for(generation) {
        close_deadline = Some(Box::pin(sleep(CLOSE_TIMEOUT)));
      }

      // Feed every queued frame to tungstenite's write buffer.
      while !sent_close && received_close.is_none() && direct.is_none() {
        match ws.poll_ready_unpin(cx) {
          Poll::Ready(Ok(())) => {}
          Poll::Ready(Err(error)) => return Poll::Ready(Some(Stop::Failed(error))),
          Poll::Pending => break,
        }
        if backlog.is_empty() && taken.is_empty() {
          taken = std::mem::take(&mut *peer.queued_frames());
        }
        let item = match backlog.pop_front() {
          Some(message) => Outgoing::Message(message),
          None => match taken.pop_front() {
            Some(Outgoing::Message(message)) => {
              peer.took_from_queue(&message);
              Outgoing::Message(message)
            }
            Some(item) => item,
            None => break,
          },
        };
        let message = match item {
          Outgoing::Message(Message::Binary(payload))
            if role == Role::Server && payload.len() >= DIRECT_MIN_LEN =>
          {
            direct = Some(DirectFrame::new(payload));
            progressed = true;
            break;
          }
          Outgoing::Message(message) => {
            unflushed_bytes += payload_len(&message);
            if role == Role::Client && !is_ping(&message) {
              unflushed.push(message.clone());
            }
            message
          }
          Outgoing::Close(_, meant_for)
            if meant_for != generation && meant_for != ANY_CONNECTION =>
          {
            continue
          }
          Outgoing::Close(frame, _) => {
            sent_close = true;
            if close_deadline.is_none() {
              close_deadline = Some(Box::pin(sleep(CLOSE_TIMEOUT)));
            }
            Message::Close(Some(frame))
          }
        };
        if let Err(error) = ws.start_send_unpin(message) {
          return Poll::Ready(Some(Stop::Failed(error)));
        }
        progressed = true;
      }

      // One flush for everything fed above.
      let flushed = match ws.poll_flush_unpin(cx) {
        Poll::Ready(Ok(())) => {
          peer.buffered.fetch_sub(unflushed_bytes, Ordering::Relaxed);
          unflushed_bytes = 0;
          unflushed.clear();
          true
        }
        Poll::Ready(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => false,
        Poll::Ready(Err(error)) => return Poll::Ready(Some(Stop::Failed(error))),
        Poll::Pending => false,
      };
      if let (true, Some(frame)) = (flushed, &mut direct) {
        match frame.poll_write(ws.get_mut(), cx) {
          Poll::Ready(Ok(())) => {
            peer.buffered.fetch_sub(frame.payload_len(), Ordering::Relaxed);
            direct = None;
            progressed = true;
          }
          Poll::Ready(Err(error)) => return Poll::Ready(Some(Stop::Failed(WsError::Io(error)))),
          Poll::Pending => {}
        }
      }

      let read = if direct.is_none() { ws.poll_next_unpin(cx) } else { Poll::Pending };
      match read {
        Poll::Ready(Some(Ok(message))) => {
          progressed = true;
          peer.last_seen.store(now_ms(), Ordering::Relaxed);
          match message {
            Message::Text(text) => deliver(Incoming::Data(false, Bytes::from(text))),
            Message::Binary(bytes) => deliver(Incoming::Data(true, bytes)),
            Message::Close(frame) => {
              if role == Role::Server {
                peer.closing.store(true, Ordering::Release);
              }
              received_close = Some(frame);
              deliver(Incoming::Closing);
            }
            // tungstenite answers pings itself; a pong is only a sign of life.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
          }
        }
        Poll::Ready(Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)))
        | Poll::Ready(None) => return Poll::Ready(Some(Stop::Finished)),
        Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Stop::Failed(error))),
        Poll::Pending => {}
      }

      if let Some(deadline) = close_deadline.as_mut() {
        if deadline.as_mut().poll(cx).is_ready() {
          return Poll::Ready(Some(Stop::CloseTimedOut));
        }
      }
      if !progressed {
        let idle = flushed
          && !sent_close
          && received_close.is_none()
          && close_deadline.is_none()
          && taken.is_empty()
          && backlog.is_empty()
          && direct.is_none();
        if idle && may_rest(ws.get_ref()) {
          // Nothing to do and nothing half done: the caller may drop
          // tungstenite's state until the next bytes or sends.
          return Poll::Ready(None);
        }
        return Poll::Pending;
      }
    }
    cx.waker().wake_by_ref();
    Poll::Pending
  })
  .await;
  let Some(stop) = stopped else { return Outcome::Rested };

  peer.connected.store(false, Ordering::Release);
  // What never reached the kernel goes first on the next connection, then
  // what was taken from the queue but not fed. On a clean close nothing is
  // left: the close frame went after everything.
  let unwritten = unflushed_bytes + direct.map_or(0, |frame| frame.payload_len());
  peer.buffered.fetch_sub(unwritten, Ordering::Relaxed);
  if role == Role::Client {
    for message in unflushed.into_iter().rev() {
      peer.buffered.fetch_add(payload_len(&message), Ordering::Relaxed);
      backlog.push_front(message);
    }
    backlog.extend(taken.into_iter().filter_map(|item| match item {
      Outgoing::Message(message) if !is_ping(&message) => Some(message),
      _ => None,
    }));
  }

  Outcome::Ended(match stop {
    Stop::Finished => match received_close {
      Some(Some(frame)) => Ended {
        code: frame.code.into(),
        reason: frame.reason.to_string(),
        was_clean: true,
        heartbeat_lost: false,
      },
      Some(None) => {
        Ended { code: 1005, reason: String::new(), was_clean: true, heartbeat_lost: false }
      }
      None => Ended::abnormal(),
    },
    Stop::Terminated(Termination::Backpressure) => Ended {
      code: CloseCode::Policy.into(),
      reason: "Backpressure limit exceeded".to_owned(),
      was_clean: false,
      heartbeat_lost: false,
    },
    Stop::Terminated(why) => {
      Ended { heartbeat_lost: why == Termination::Heartbeat, ..Ended::abnormal() }
    }
    Stop::CloseTimedOut => Ended::abnormal(),
    Stop::Failed(error) => match close_code_for(&error) {
      Some(code) => {
        let reason = error.to_string();
        let frame = CloseFrame { code, reason: truncate_reason(&reason).into() };
        // Best effort: the peer broke the protocol and may not read it.
        let _ = timeout(ERROR_CLOSE_TIMEOUT, ws.close(Some(frame))).await;
        Ended { code: code.into(), reason, was_clean: false, heartbeat_lost: false }
      }
      None => Ended::abnormal(),
    },
  })
}

/// The close code that tells the peer why we drop it, for errors the peer
/// caused; `None` for transport failures, where no frame can be sent.
fn close_code_for(error: &WsError) -> Option<CloseCode> {
  match error {
    WsError::Utf8(_) => Some(CloseCode::Invalid),
    WsError::Capacity(_) => Some(CloseCode::Size),
    // A reset is a transport failure reported as a protocol error.
    WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
    WsError::Protocol(_) | WsError::AttackAttempt => Some(CloseCode::Protocol),
    _ => None,
  }
}

/// Close reasons are limited to 123 bytes; cut at a character boundary.
fn truncate_reason(reason: &str) -> &str {
  let mut end = reason.len().min(123);
  while !reason.is_char_boundary(end) {
    end -= 1;
  }
  &reason[..end]
}
