//! The part of a connection that JS calls reach: its send queue, the
//! out-of-band terminations and the state flags, shared with the loop that
//! drives the connection (connection_loop.rs).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use crate::buffers::payload_len;
use crate::sync::lock;

/// Generations number a peer's connections from 1; these two are markers.
const NO_CONNECTION: u32 = 0;
pub const ANY_CONNECTION: u32 = u32::MAX;

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

/// Why a connection does not read (bits of `Link::paused`; flow.rs).
pub struct Paused;

impl Paused {
  /// `connection.pause()`.
  pub const BY_JS: u8 = 1;
  /// Its own messages waiting for JS passed `maxReceiveBuffer`.
  pub const BY_OWN_BUFFER: u8 = 2;
  /// The messages of all connections passed `maxReceiveBufferTotal`.
  pub const BY_TOTAL: u8 = 4;
  pub const ANY: u8 = Paused::BY_JS | Paused::BY_OWN_BUFFER | Paused::BY_TOTAL;
}

impl Limits {
  pub const NONE: Limits = Limits { max_queued: usize::MAX, max_buffered: usize::MAX };
}

/// Milliseconds on a process-wide monotonic clock, for `last_seen`.
pub fn now_ms() -> u64 {
  static START: LazyLock<Instant> = LazyLock::new(Instant::now);
  START.elapsed().as_millis() as u64
}

/// Our end of a connection, the part JS calls reach: its send queue and
/// state flags, shared with the task that drives the connection. (The
/// *peer* is always the other end.)
pub struct Link {
  /// Frames waiting for the task. A plain deque: it allocates only while
  /// frames wait (a channel would hold a block of slots per idle peer), and
  /// the task takes it whole.
  queue: Mutex<VecDeque<Outgoing>>,
  /// The driving task, woken by anything that concerns it.
  pub task: AtomicWaker,
  /// Whether JS observes this connection's messages; when it does not, they
  /// are dropped in Rust instead of being carried to JS.
  pub observed: AtomicBool,
  /// Set from the first close frame in either direction (server), or by
  /// `close()` (client); `send` then refuses.
  pub closing: AtomicBool,
  /// Whether a connection is open now (a client's queue may wait for one).
  pub connected: AtomicBool,
  /// Counts connections, so a close frame reaches only the one it was for.
  generation: AtomicU32,
  /// Payload bytes accepted by `send` and not yet handed to the kernel.
  pub buffered: AtomicUsize,
  /// Set when `buffered` passes half of `maxBackpressure`, until the
  /// connection reports it drained.
  past_drain_mark: AtomicBool,
  /// Bytes of received messages queued for JS whose callbacks have not run
  /// yet (flow.rs).
  pub undelivered: AtomicUsize,
  /// `Paused` bits: why the connection does not read now.
  paused: AtomicU8,
  /// Data messages in the queue, not yet given to tungstenite.
  queued: AtomicUsize,
  /// `now_ms()` when the last frame arrived, for the heartbeat.
  pub last_seen: AtomicU64,
  /// `now_ms()` when the connection opened, for the heartbeat's first ping.
  opened_at: AtomicU64,
  /// A termination for connection `kill >> 8`, reason `kill & 0xff`; 0 for
  /// none. It does not wait in the queue: a peer that reads nothing stalls
  /// the queue, and is exactly the peer to drop.
  kill: AtomicU64,
  /// The generation whose close was requested, for its 5-s timeout.
  close_requested: AtomicU32,
  /// How long a server connection has been resting, in dormancy ticks
  /// (see `dormancy_tick`).
  rest_state: AtomicU8,
}

/// `Link::rest_state`: the connection is active.
const ACTIVE: u8 = 0;
/// Resting since the last tick, since the one before, and long enough to
/// leave tokio (dormancy.rs).
const RESTING: u8 = 1;
#[cfg(dormancy)]
const RESTED_A_TICK: u8 = 2;
const DORMANCY_DUE: u8 = 3;

impl Link {
  pub fn new() -> Link {
    Link {
      queue: Mutex::new(VecDeque::new()),
      task: AtomicWaker::new(),
      observed: AtomicBool::new(false),
      closing: AtomicBool::new(false),
      connected: AtomicBool::new(false),
      generation: AtomicU32::new(NO_CONNECTION),
      buffered: AtomicUsize::new(0),
      past_drain_mark: AtomicBool::new(false),
      undelivered: AtomicUsize::new(0),
      paused: AtomicU8::new(0),
      queued: AtomicUsize::new(0),
      last_seen: AtomicU64::new(now_ms()),
      opened_at: AtomicU64::new(0),
      kill: AtomicU64::new(0),
      close_requested: AtomicU32::new(NO_CONNECTION),
      rest_state: AtomicU8::new(ACTIVE),
    }
  }

  /// Marks a new connection open and returns its generation.
  pub fn open_connection(&self) -> u32 {
    let generation =
      self.generation.fetch_add(1, Ordering::AcqRel).wrapping_add(1) % ANY_CONNECTION;
    let now = now_ms();
    self.last_seen.store(now, Ordering::Relaxed);
    self.opened_at.store(now, Ordering::Relaxed);
    self.connected.store(true, Ordering::Release);
    generation
  }

  /// Milliseconds since the connection opened.
  pub fn age_ms(&self, now: u64) -> u64 {
    now.saturating_sub(self.opened_at.load(Ordering::Relaxed))
  }

  /// The connection rests from now on (connection_task.rs).
  pub fn rest(&self) {
    self.rest_state.store(RESTING, Ordering::Relaxed);
  }

  /// The connection may go dormant as soon as it rests (dormancy.rs).
  pub fn allow_dormancy(&self) {
    self.rest_state.store(DORMANCY_DUE, Ordering::Relaxed);
  }

  /// The connection is active from now on.
  pub fn mark_active(&self) {
    self.rest_state.store(ACTIVE, Ordering::Relaxed);
  }

  #[cfg(dormancy)]
  /// One tick of the dormancy clock: a connection that has rested through
  /// a whole tick is woken to go dormant.
  pub fn dormancy_tick(&self) {
    let next = |state| match state {
      RESTING => Some(RESTED_A_TICK),
      RESTED_A_TICK => Some(DORMANCY_DUE),
      _ => None,
    };
    if self.rest_state.fetch_update(Ordering::Relaxed, Ordering::Relaxed, next) == Ok(RESTED_A_TICK)
    {
      self.task.wake();
    }
  }

  /// Whether the connection has rested long enough to go dormant.
  pub fn dormancy_due(&self) -> bool {
    self.rest_state.load(Ordering::Relaxed) == DORMANCY_DUE
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

  pub fn queued_frames(&self) -> MutexGuard<'_, VecDeque<Outgoing>> {
    lock(&self.queue)
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
    if buffered > limits.max_buffered / 2 && !self.past_drain_mark.load(Ordering::Relaxed) {
      self.past_drain_mark.store(true, Ordering::Relaxed);
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
  pub fn take_kill(&self, generation: u32) -> Option<Termination> {
    let kill = self.kill.swap(0, Ordering::AcqRel);
    let meant_for = (kill >> 8) as u32;
    let applies = kill != 0 && (meant_for == generation || meant_for == ANY_CONNECTION);
    applies.then(|| Termination::from_code(kill & 0xff))
  }

  /// Whether a close was requested for the connection of `generation`.
  pub fn close_requested_for(&self, generation: u32) -> bool {
    let requested = self.close_requested.load(Ordering::Acquire);
    requested == generation || requested == ANY_CONNECTION
  }

  /// For the heartbeat: drops the open connection if its peer has been
  /// silent for `limit_ms`; true if it did. A client reconnects after it.
  /// A connection that does not read cannot hear its peer, so its silence
  /// counts from when it reads again.
  pub fn drop_if_silent(&self, now: u64, limit_ms: u64) -> bool {
    if self.is_paused(Paused::ANY) {
      self.last_seen.store(now, Ordering::Relaxed);
      return false;
    }
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

  /// Stops reading for the reasons in `bits`.
  pub fn pause(&self, bits: u8) {
    self.paused.fetch_or(bits, Ordering::AcqRel);
  }

  /// No longer stops reading for the reasons in `bits`; wakes the
  /// connection if that was why it stopped.
  pub fn resume(&self, bits: u8) {
    if self.paused.fetch_and(!bits, Ordering::AcqRel) & bits != 0 {
      self.task.wake();
    }
  }

  /// Whether the connection stops reading for any reason in `bits`.
  pub fn is_paused(&self, bits: u8) -> bool {
    self.paused.load(Ordering::Acquire) & bits != 0
  }

  /// After a write: whether the unsent bytes passed the drain mark and are
  /// now under it (once per passing).
  pub fn drained(&self, drain_below: usize) -> bool {
    self.past_drain_mark.load(Ordering::Relaxed)
      && self.buffered.load(Ordering::Relaxed) < drain_below
      && self.past_drain_mark.swap(false, Ordering::Relaxed)
  }

  pub fn is_closing(&self) -> bool {
    self.closing.load(Ordering::Acquire)
  }

  pub fn is_connected(&self) -> bool {
    self.connected.load(Ordering::Acquire)
  }

  /// Whether data messages wait to be given to tungstenite.
  pub fn has_queued(&self) -> bool {
    self.queued.load(Ordering::Relaxed) > 0
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

  pub fn took_from_queue(&self, message: &Message) {
    if !is_ping(message) {
      self.queued.fetch_sub(1, Ordering::Relaxed);
    }
  }
}

/// A close frame of a code and reason JS has checked.
pub fn close_frame(code: u32, reason: String) -> CloseFrame {
  CloseFrame { code: CloseCode::from(u16::try_from(code).unwrap_or(1000)), reason: reason.into() }
}

pub fn is_ping(message: &Message) -> bool {
  matches!(message, Message::Ping(_))
}
