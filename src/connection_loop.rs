//! The loop that drives one WebSocket connection: it writes what JS queued
//! on the connection's `Link` (link.rs), reads incoming frames and runs the
//! closing handshake.
//!
//! One loop polls both directions itself (no split halves, no second task):
//! queued frames are fed to tungstenite until the queue is empty and then
//! flushed once, so a burst of sends leaves in one write.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::{sleep, timeout};
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::buffers::payload_len;
use crate::deflate::inflate::InflateError;
use crate::deflate::Compressor;
use crate::direct_frame::{DirectFrame, DIRECT_MIN_LEN};
use crate::flow::Flow;
use crate::link::{is_ping, now_ms, Link, Outgoing, Paused, Termination, ANY_CONNECTION};

/// How long we try to deliver a close frame after a protocol error, and
/// then how long we wait for the peer to close.
const ERROR_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// What a peer may still send after our close frame before we stop reading
/// it and close regardless.
const MAX_LINGER_BYTES: usize = 1024 * 1024;

/// Rounds of read-and-write one poll may run before yielding to other tasks.
const ROUNDS_PER_POLL: usize = 32;

/// Data messages one round may read one after another before it writes
/// again. A round's other steps (JS's requests, the queue, the flush, the
/// clocks) cost about as much as reading a small message, and a peer that
/// keeps several messages in flight has them all arrive in one read.
const MESSAGES_PER_ROUND: usize = 16;

/// The longest string V8 makes (`v8::String::kMaxLength` on 64-bit
/// platforms), in UTF-16 code units. A longer text cannot reach JS.
const MAX_JS_STRING: usize = (1 << 29) - 24;

/// The reasons of the close frames we send when we end a connection
/// ourselves: fixed short texts, never a library's error message.
pub mod reason {
  pub const PROTOCOL_ERROR: &str = "protocol error";
  pub const INVALID_UTF8: &str = "invalid UTF-8";
  pub const BAD_COMPRESSED_DATA: &str = "invalid compressed data";
  pub const TOO_BIG: &str = "message too big";
  pub const BACKPRESSURE: &str = "backpressure limit exceeded";
  pub const STALLED: &str = "message stalled while paused";
  pub const INTERNAL_ERROR: &str = "internal error";
}

/// A server connection lives once; a client's queue outlives its
/// connections and keeps accepting sends for the next one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Role {
  Server,
  Client,
}

/// tungstenite answers every ping with a pong in its write buffer, which
/// has no bound: a peer that sends pings and reads nothing would grow it
/// without end. Once this many bytes of pongs wait for such a peer, the
/// connection stops reading until they are written; the heartbeat then
/// drops a peer that stays that way.
const MAX_OWED_PONGS: usize = 64 * 1024;

/// A server's pong header (a client's adds a 4-byte mask; the bound does not
/// need to be exact).
const PONG_HEADER: usize = 2;

/// How a connection ended, as the `'close'`/`'remove'` events report it.
pub struct Ended {
  pub code: u16,
  pub reason: String,
  pub was_clean: bool,
  /// The heartbeat found the peer silent.
  pub heartbeat_lost: bool,
  /// A bug of ours (a panic) ended it, with 1011.
  pub internal_error: bool,
  /// What the peer sent ended it: a protocol violation, text that is not
  /// UTF-8, a message too big.
  pub invalid_input: bool,
}

impl Ended {
  pub fn abnormal() -> Ended {
    Ended {
      code: 1006,
      reason: String::new(),
      was_clean: false,
      heartbeat_lost: false,
      internal_error: false,
      invalid_input: false,
    }
  }

  /// Ended by us with `code` and one of the fixed reasons.
  fn by_us(code: CloseCode, reason: &str) -> Ended {
    Ended { code: code.into(), reason: reason.to_owned(), ..Ended::abnormal() }
  }

  /// Ended by a panic on the connection's path.
  pub fn internal_error() -> Ended {
    Ended { internal_error: true, ..Ended::by_us(CloseCode::Error, reason::INTERNAL_ERROR) }
  }
}

/// How the polling loop stopped.
enum Stop {
  /// The stream ended: after a closing handshake or because TCP ended.
  Finished,
  Terminated(Termination),
  CloseTimedOut,
  Failed(WsError),
  /// What the peer sent is refused with this close code and reason.
  Invalid(CloseCode, &'static str),
  /// Stopped by the receive buffers' total in the middle of a message for
  /// too long (flow.rs).
  Stalled,
  /// A panic on the connection's path, caught.
  Panicked,
}

/// What a connection hands its owner as it reads.
pub enum Incoming {
  /// A data frame: `(is_binary, payload)`.
  Data(bool, Bytes),
  /// The peer's close frame arrived: the connection is closing.
  Closing,
  /// The unsent bytes fell under half of `maxBackpressure` after passing it.
  Drain,
}

/// Whether a connection stopped to rest or ended.
pub enum Outcome {
  Rested,
  Ended(Ended),
}

/// What the loop asks of the byte stream under tungstenite besides bytes
/// (server_stream.rs).
pub trait Inbound {
  /// Whether tungstenite holds no part of a message, so that the loop may
  /// stop while the connection is quiet and let it rest.
  fn may_rest(&self) -> bool;

  /// A message read past tungstenite (a large binary one, or a compressed
  /// one), once whole; `None` when none is being read.
  fn poll_held_message(&mut self, cx: &mut Context<'_>)
    -> Poll<Option<Result<Message, HeldError>>>;

  /// Bytes read of the message being received, for the receive buffers'
  /// total.
  fn arriving(&self) -> usize;

  /// Reads what the peer still sends, past any framing, and drops it: how
  /// many bytes (0 once it closed).
  fn poll_discard(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>>;

  /// Whether the transport is TLS, which must say it is done writing
  /// (close_notify) before its TCP close, even after a clean close
  /// handshake (RFC 8446 6.1). Plain TCP's close says it by itself.
  fn ends_with_close_notify(&self) -> bool;
}

impl<T: Inbound> Inbound for &mut T {
  fn may_rest(&self) -> bool {
    (**self).may_rest()
  }

  fn poll_held_message(
    &mut self,
    cx: &mut Context<'_>,
  ) -> Poll<Option<Result<Message, HeldError>>> {
    (**self).poll_held_message(cx)
  }

  fn arriving(&self) -> usize {
    (**self).arriving()
  }

  fn poll_discard(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
    (**self).poll_discard(cx)
  }

  fn ends_with_close_notify(&self) -> bool {
    (**self).ends_with_close_notify()
  }
}

/// Why a message read past tungstenite cannot be delivered.
pub enum HeldError {
  Ws(WsError),
  /// It is (or inflates to) more than the most a message may hold.
  TooBig,
  /// A compressed message whose bytes are not a deflate stream.
  BadCompressedData,
}

impl From<WsError> for HeldError {
  fn from(error: WsError) -> HeldError {
    HeldError::Ws(error)
  }
}

impl From<io::Error> for HeldError {
  fn from(error: io::Error) -> HeldError {
    HeldError::Ws(WsError::Io(error))
  }
}

impl From<InflateError> for HeldError {
  fn from(error: InflateError) -> HeldError {
    match error {
      InflateError::TooBig => HeldError::TooBig,
      InflateError::Corrupt => HeldError::BadCompressedData,
    }
  }
}

impl From<HeldError> for Stop {
  fn from(error: HeldError) -> Stop {
    match error {
      HeldError::Ws(error) => Stop::Failed(error),
      HeldError::TooBig => Stop::Invalid(CloseCode::Size, reason::TOO_BIG),
      HeldError::BadCompressedData => {
        Stop::Invalid(CloseCode::Invalid, reason::BAD_COMPRESSED_DATA)
      }
    }
  }
}

/// Runs one client connection until it ends: writes what is queued on
/// `link`, hands every data frame and the peer's close frame to `deliver`.
///
/// `backlog` holds messages to send before anything queued: messages that
/// an earlier connection took but never handed to the kernel. Messages
/// taken but not yet flushed to the kernel when this connection fails go
/// back to its head, for the next connection.
///
/// With `compressor`, what it sends is compressed as it goes out (the
/// messages given back stay uncompressed: the next connection may not
/// have agreed on compression).
pub async fn drive<S>(
  ws: &mut WebSocketStream<S>,
  backlog: &mut VecDeque<Message>,
  link: &Link,
  flow: &Flow,
  compressor: Option<Compressor>,
  deliver: impl FnMut(Incoming),
) -> Ended
where
  S: AsyncRead + AsyncWrite + Inbound + Unpin,
{
  let generation = link.open_connection();
  let mut driver = Driver::new(ws, backlog, link, flow, generation, Role::Client, deliver);
  driver.compressor = compressor;
  match driver.run().await {
    Outcome::Ended(ended) => ended,
    Outcome::Rested => unreachable!("a client connection never rests"),
  }
}

/// Runs connection `generation` of `link` until it ends, or until it is
/// quiet with nothing half done and the stream may rest. Reading stops
/// while `flow` says so.
pub async fn drive_until_rest<S>(
  ws: &mut WebSocketStream<S>,
  backlog: &mut VecDeque<Message>,
  link: &Link,
  flow: &Flow,
  generation: u32,
  role: Role,
  deliver: impl FnMut(Incoming),
) -> Outcome
where
  S: AsyncRead + AsyncWrite + Inbound + Unpin,
{
  Driver::new(ws, backlog, link, flow, generation, role, deliver).run().await
}

/// What one round of the loop found.
enum Round {
  /// Something moved: run another round.
  Again,
  /// Nothing to do until a wake.
  Wait,
  /// Quiet with nothing half done: the stream may rest.
  Rest,
}

/// What one read found.
enum Read {
  /// Nothing yet, or reading is stopped.
  Nothing,
  /// A text or binary message.
  Data,
  /// A control frame.
  Other,
}

/// How a stopped connection ends: quietly, or with a close frame we still
/// try to send.
enum Ending {
  Quiet(Ended),
  TellPeer(Ended),
}

/// One connection's polling loop and its state between polls.
struct Driver<'a, S, D> {
  ws: &'a mut WebSocketStream<S>,
  /// Messages to send before anything queued (see `drive`).
  backlog: &'a mut VecDeque<Message>,
  link: &'a Link,
  flow: &'a Flow,
  generation: u32,
  role: Role,
  deliver: D,
  /// Payload bytes fed to tungstenite and not yet flushed.
  unflushed_bytes: usize,
  /// A client's messages fed and not yet flushed, to send again on the
  /// next connection if this one fails.
  unflushed: Vec<Message>,
  sent_close: bool,
  received_close: Option<Option<CloseFrame>>,
  close_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
  /// Frames taken from the link's queue and not yet fed to tungstenite.
  taken: VecDeque<Outgoing>,
  /// A large binary frame a server writes itself (direct_frame.rs): it goes
  /// after what tungstenite holds, and nothing is written or read (which
  /// may write a pong) until it is out.
  direct: Option<DirectFrame>,
  /// Bytes of a message being received, as last counted in `flow`.
  arriving: usize,
  /// Runs while the receive buffers' total stops the connection in the
  /// middle of a message.
  stall_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
  /// Bytes of the pongs tungstenite owes the peer since the last complete
  /// flush (see MAX_OWED_PONGS).
  owed_pongs: usize,
  /// How a client compresses what it sends (see `drive`).
  compressor: Option<Compressor>,
}

impl<'a, S, D> Driver<'a, S, D>
where
  S: AsyncRead + AsyncWrite + Inbound + Unpin,
  D: FnMut(Incoming),
{
  fn new(
    ws: &'a mut WebSocketStream<S>,
    backlog: &'a mut VecDeque<Message>,
    link: &'a Link,
    flow: &'a Flow,
    generation: u32,
    role: Role,
    deliver: D,
  ) -> Self {
    Driver {
      ws,
      backlog,
      link,
      flow,
      generation,
      role,
      deliver,
      unflushed_bytes: 0,
      unflushed: Vec::new(),
      sent_close: false,
      received_close: None,
      close_deadline: None,
      taken: VecDeque::new(),
      direct: None,
      arriving: 0,
      stall_deadline: None,
      owed_pongs: 0,
      compressor: None,
    }
  }

  /// Runs the connection until it rests or ends.
  async fn run(mut self) -> Outcome {
    let stopped = poll_fn(|cx| {
      // A panic here is a bug of ours: it ends this connection (with 1011),
      // not the process or the other connections.
      catch_unwind(AssertUnwindSafe(|| self.poll_rounds(cx)))
        .unwrap_or(Poll::Ready(Some(Stop::Panicked)))
    })
    .await;
    self.flow.arriving(self.arriving, 0);
    match stopped {
      None => Outcome::Rested,
      Some(stop) => Outcome::Ended(self.finish(stop).await),
    }
  }

  /// Up to ROUNDS_PER_POLL rounds of read-and-write. `Ready(None)`: the
  /// stream may rest; `Ready(Some(_))`: the connection stopped.
  fn poll_rounds(&mut self, cx: &mut Context<'_>) -> Poll<Option<Stop>> {
    // Read once per poll: the rounds of one poll take microseconds, and the
    // heartbeat counts in milliseconds.
    let mut now = None;
    for _ in 0..ROUNDS_PER_POLL {
      match self.round(cx, &mut now) {
        Err(stop) => return Poll::Ready(Some(stop)),
        Ok(Round::Again) => {}
        Ok(Round::Wait) => return Poll::Pending,
        Ok(Round::Rest) => return Poll::Ready(None),
      }
    }
    cx.waker().wake_by_ref();
    Poll::Pending
  }

  /// One round: JS's requests, writing, reading, then the clocks.
  fn round(&mut self, cx: &mut Context<'_>, now: &mut Option<u64>) -> Result<Round, Stop> {
    self.check_requests(cx)?;
    let mut progressed = self.feed_queued_frames(cx)?;
    let flushed = self.flush(cx)?;
    if flushed {
      progressed |= self.write_direct_frame(cx)?;
      if self.link.drained(self.flow.drain_below) {
        (self.deliver)(Incoming::Drain);
      }
    }
    let may_read = self.may_read(cx);
    progressed |= self.read_burst(cx, may_read, now)?;
    self.account_arriving();
    self.check_deadlines(cx)?;
    Ok(if progressed {
      Round::Again
    } else if self.may_rest(flushed, may_read) {
      Round::Rest
    } else {
      Round::Wait
    })
  }

  /// Whether JS terminated this connection or asked to close it. The waker
  /// is registered before anything is checked, so that no wake is missed.
  fn check_requests(&mut self, cx: &mut Context<'_>) -> Result<(), Stop> {
    self.link.task.register(cx.waker());
    if let Some(why) = self.link.take_kill(self.generation) {
      return Err(Stop::Terminated(why));
    }
    if self.close_deadline.is_none() && self.link.close_requested_for(self.generation) {
      self.close_deadline = Some(Box::pin(sleep(self.flow.close_timeout())));
    }
    Ok(())
  }

  /// Feeds every queued frame to tungstenite's write buffer; true if any
  /// was taken.
  fn feed_queued_frames(&mut self, cx: &mut Context<'_>) -> Result<bool, Stop> {
    let mut progressed = false;
    while !self.sent_close && self.received_close.is_none() && self.direct.is_none() {
      match self.ws.poll_ready_unpin(cx) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(error)) => return Err(Stop::Failed(error)),
        Poll::Pending => break,
      }
      let Some(item) = self.next_outgoing() else { break };
      let message = match item {
        Outgoing::Message(Message::Binary(payload))
          if self.role == Role::Server && payload.len() >= DIRECT_MIN_LEN =>
        {
          self.direct = Some(DirectFrame::new(payload));
          progressed = true;
          break;
        }
        Outgoing::Message(message) => {
          // Counted as queued: uncompressed, for a client's compressor.
          self.unflushed_bytes += payload_len(&message);
          if self.role == Role::Client && !is_ping(&message) {
            self.unflushed.push(message.clone());
          }
          match &self.compressor {
            Some(compressor) => compressor.compress(&message).or(message),
            None => message,
          }
        }
        Outgoing::Close(_, meant_for)
          if meant_for != self.generation && meant_for != ANY_CONNECTION =>
        {
          continue
        }
        Outgoing::Close(frame, _) => {
          self.sent_close = true;
          if self.close_deadline.is_none() {
            self.close_deadline = Some(Box::pin(sleep(self.flow.close_timeout())));
          }
          Message::Close(Some(frame))
        }
      };
      self.ws.start_send_unpin(message).map_err(Stop::Failed)?;
      progressed = true;
    }
    Ok(progressed)
  }

  /// The next frame to send: the backlog first, then the link's queue.
  fn next_outgoing(&mut self) -> Option<Outgoing> {
    if self.backlog.is_empty() && self.taken.is_empty() {
      self.taken = std::mem::take(&mut *self.link.queued_frames());
    }
    if let Some(message) = self.backlog.pop_front() {
      return Some(Outgoing::Message(message));
    }
    let item = self.taken.pop_front()?;
    if let Outgoing::Message(message) = &item {
      self.link.took_from_queue(message);
    }
    Some(item)
  }

  /// One flush for everything fed; true when tungstenite holds nothing.
  fn flush(&mut self, cx: &mut Context<'_>) -> Result<bool, Stop> {
    match self.ws.poll_flush_unpin(cx) {
      Poll::Ready(Ok(())) => {
        self.link.buffered.fetch_sub(self.unflushed_bytes, Ordering::Relaxed);
        self.unflushed_bytes = 0;
        self.owed_pongs = 0;
        self.unflushed.clear();
        Ok(true)
      }
      Poll::Ready(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => Ok(false),
      Poll::Ready(Err(error)) => Err(Stop::Failed(error)),
      Poll::Pending => Ok(false),
    }
  }

  /// Writes the large binary frame in progress, if any; true if it is out.
  fn write_direct_frame(&mut self, cx: &mut Context<'_>) -> Result<bool, Stop> {
    let Some(frame) = &mut self.direct else { return Ok(false) };
    match frame.poll_write(self.ws.get_mut(), cx) {
      Poll::Ready(Ok(())) => {
        self.link.buffered.fetch_sub(frame.payload_len(), Ordering::Relaxed);
        self.direct = None;
        Ok(true)
      }
      Poll::Ready(Err(error)) => Err(Stop::Failed(WsError::Io(error))),
      Poll::Pending => Ok(false),
    }
  }

  /// Whether the connection may read now: it owes few pongs, and `flow`
  /// does not stop it.
  fn may_read(&self, cx: &Context<'_>) -> bool {
    self.owed_pongs < MAX_OWED_PONGS && self.flow.may_read(self.link, self.arriving, cx)
  }

  /// Reads up to MESSAGES_PER_ROUND data messages and hands each on; true
  /// if anything arrived. Anything else ends the burst, so that what it
  /// asks (a pong, the closing handshake) is seen to before more is read,
  /// and so do sends queued meanwhile: they go out first, as they would
  /// have without the burst.
  fn read_burst(
    &mut self,
    cx: &mut Context<'_>,
    may_read: bool,
    now: &mut Option<u64>,
  ) -> Result<bool, Stop> {
    let mut may_read = may_read;
    let mut arrived = false;
    for _ in 0..MESSAGES_PER_ROUND {
      match self.read_one(cx, may_read, now)? {
        Read::Nothing => break,
        Read::Data => arrived = true,
        Read::Other => return Ok(true),
      }
      if self.link.has_queued() {
        break;
      }
      // Each message counts against the receive buffers.
      may_read = self.may_read(cx);
    }
    Ok(arrived)
  }

  /// Reads one message, unless a direct frame is being written or `flow`
  /// stops reading, and handles it.
  fn read_one(
    &mut self,
    cx: &mut Context<'_>,
    may_read: bool,
    now: &mut Option<u64>,
  ) -> Result<Read, Stop> {
    if self.direct.is_some() || !may_read {
      return Ok(Read::Nothing);
    }
    let read = match self.ws.poll_next_unpin(cx) {
      // tungstenite waits while the stream reads a message past it.
      Poll::Pending if self.received_close.is_none() => {
        match self.ws.get_mut().poll_held_message(cx) {
          Poll::Ready(Some(Ok(message))) => Poll::Ready(Some(Ok(message))),
          Poll::Ready(Some(Err(error))) => return Err(error.into()),
          Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
      }
      read => read,
    };
    match read {
      Poll::Ready(Some(Ok(message))) => {
        self.link.last_seen.store(*now.get_or_insert_with(now_ms), Ordering::Relaxed);
        let data = matches!(message, Message::Text(_) | Message::Binary(_));
        self.receive(message)?;
        Ok(if data { Read::Data } else { Read::Other })
      }
      Poll::Ready(Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)))
      | Poll::Ready(None) => Err(Stop::Finished),
      Poll::Ready(Some(Err(error))) => Err(Stop::Failed(error)),
      Poll::Pending => Ok(Read::Nothing),
    }
  }

  /// Hands a message that arrived to the owner.
  fn receive(&mut self, message: Message) -> Result<(), Stop> {
    match message {
      #[cfg(feature = "panic-trigger")]
      Message::Text(text) if text.as_str() == "__panic__" => {
        panic!("the panic-trigger build was asked to panic")
      }
      Message::Text(text) if !fits_js_string(&text) => {
        let size = text.len();
        let too_long = CapacityError::MessageTooLong { size, max_size: MAX_JS_STRING };
        return Err(Stop::Failed(WsError::Capacity(too_long)));
      }
      Message::Text(text) => (self.deliver)(Incoming::Data(false, Bytes::from(text))),
      Message::Binary(bytes) => (self.deliver)(Incoming::Data(true, bytes)),
      Message::Close(frame) => {
        if self.role == Role::Server {
          self.link.closing.store(true, Ordering::Release);
        }
        self.received_close = Some(frame);
        (self.deliver)(Incoming::Closing);
      }
      // tungstenite answers pings itself; a pong is only a sign of life.
      Message::Ping(payload) => self.owed_pongs += PONG_HEADER + payload.len(),
      Message::Pong(_) | Message::Frame(_) => {}
    }
    Ok(())
  }

  /// Counts the bytes of the message being received in `flow`.
  fn account_arriving(&mut self) {
    let now_arriving = self.ws.get_ref().arriving();
    if now_arriving != self.arriving {
      self.flow.arriving(self.arriving, now_arriving);
      self.arriving = now_arriving;
    }
  }

  /// The stall clock (stopped by the total in mid-message) and the close
  /// clock (the closing handshake takes too long).
  fn check_deadlines(&mut self, cx: &mut Context<'_>) -> Result<(), Stop> {
    if self.link.is_paused(Paused::BY_TOTAL) && self.arriving > 0 {
      let stall_limit = self.flow.stall_limit;
      let stall = self.stall_deadline.get_or_insert_with(|| Box::pin(sleep(stall_limit)));
      if stall.as_mut().poll(cx).is_ready() {
        return Err(Stop::Stalled);
      }
    } else {
      self.stall_deadline = None;
    }
    if let Some(deadline) = self.close_deadline.as_mut() {
      if deadline.as_mut().poll(cx).is_ready() {
        return Err(Stop::CloseTimedOut);
      }
    }
    Ok(())
  }

  /// Nothing to do and nothing half done: the caller may drop tungstenite's
  /// state until the next bytes or sends.
  fn may_rest(&self, flushed: bool, may_read: bool) -> bool {
    let idle = flushed
      && !self.sent_close
      && self.received_close.is_none()
      && self.close_deadline.is_none()
      && self.taken.is_empty()
      && self.backlog.is_empty()
      && self.direct.is_none();
    idle && may_read && self.role == Role::Server && self.ws.get_ref().may_rest()
  }

  /// Ends a stopped connection: gives back what was not sent, and tells the
  /// peer why when we end it.
  async fn finish(mut self, stop: Stop) -> Ended {
    self.link.connected.store(false, Ordering::Release);
    self.give_back_unsent();
    let failed = match self.ending(stop) {
      Ending::Quiet(ended) => {
        if ended.was_clean && self.ws.get_ref().ends_with_close_notify() {
          // tokio-rustls's shutdown sends close_notify, then TCP's FIN.
          let _ = timeout(ERROR_CLOSE_TIMEOUT, self.ws.get_mut().shutdown()).await;
        }
        return ended;
      }
      Ending::TellPeer(failed) => failed,
    };
    // We end the connection: tell the peer why, as far as it still listens
    // (it may have broken the protocol, or not read at all).
    // After a panic, tungstenite's state may be what panicked: caught too.
    let frame = CloseFrame { code: failed.code.into(), reason: failed.reason.as_str().into() };
    let _ = AssertUnwindSafe(timeout(ERROR_CLOSE_TIMEOUT, self.ws.close(Some(frame))))
      .catch_unwind()
      .await;
    let _ = timeout(ERROR_CLOSE_TIMEOUT, linger(self.ws.get_mut())).await;
    failed
  }

  /// What never reached the kernel goes first on a client's next
  /// connection, then what was taken from the queue but not fed. On a clean
  /// close nothing is left: the close frame went after everything.
  fn give_back_unsent(&mut self) {
    let unwritten =
      self.unflushed_bytes + self.direct.take().map_or(0, |frame| frame.payload_len());
    self.link.buffered.fetch_sub(unwritten, Ordering::Relaxed);
    if self.role == Role::Client {
      for message in std::mem::take(&mut self.unflushed).into_iter().rev() {
        self.link.buffered.fetch_add(payload_len(&message), Ordering::Relaxed);
        self.backlog.push_front(message);
      }
      self.backlog.extend(std::mem::take(&mut self.taken).into_iter().filter_map(
        |item| match item {
          Outgoing::Message(message) if !is_ping(&message) => Some(message),
          _ => None,
        },
      ));
    }
  }

  /// How the connection ends for `stop`.
  fn ending(&mut self, stop: Stop) -> Ending {
    let failed = match stop {
      Stop::Finished => {
        return Ending::Quiet(match self.received_close.take() {
          Some(Some(frame)) => Ended {
            code: frame.code.into(),
            reason: frame.reason.to_string(),
            was_clean: true,
            ..Ended::abnormal()
          },
          Some(None) => Ended { code: 1005, was_clean: true, ..Ended::abnormal() },
          None => Ended::abnormal(),
        })
      }
      Stop::Terminated(Termination::Backpressure) => {
        return Ending::Quiet(Ended::by_us(CloseCode::Policy, reason::BACKPRESSURE))
      }
      Stop::Terminated(why) => {
        let heartbeat_lost = why == Termination::Heartbeat;
        return Ending::Quiet(Ended { heartbeat_lost, ..Ended::abnormal() });
      }
      Stop::CloseTimedOut => return Ending::Quiet(Ended::abnormal()),
      Stop::Failed(error) => match close_code_for(&error) {
        Some((code, reason)) => Ended { invalid_input: true, ..Ended::by_us(code, reason) },
        None => return Ending::Quiet(Ended::abnormal()),
      },
      Stop::Invalid(code, reason) => Ended { invalid_input: true, ..Ended::by_us(code, reason) },
      Stop::Stalled => Ended::by_us(CloseCode::Policy, reason::STALLED),
      Stop::Panicked => Ended::internal_error(),
    };
    Ending::TellPeer(failed)
  }
}

/// Whether a text fits in a JavaScript string (V8 counts UTF-16 units,
/// never more than the UTF-8 bytes).
fn fits_js_string(text: &str) -> bool {
  text.len() <= MAX_JS_STRING || text.encode_utf16().count() <= MAX_JS_STRING
}

/// Once our close frame is written after an error: tells the peer we are
/// done writing, and reads what it still sends (dropping it) until it
/// closes. Closing a socket with unread bytes answers them with a reset,
/// which can destroy the close frame before the peer has read it (a peer
/// still sending a message too big to take, say).
async fn linger<S: AsyncWrite + Inbound + Unpin>(stream: &mut S) {
  let _ = stream.shutdown().await;
  let mut dropped = 0;
  while dropped < MAX_LINGER_BYTES {
    match poll_fn(|cx| stream.poll_discard(cx)).await {
      Ok(0) | Err(_) => return,
      Ok(read) => dropped += read,
    }
  }
}

/// The close code and reason that tell the peer why we drop it, for errors
/// the peer caused; `None` for transport failures, where no frame can be
/// sent.
pub(crate) fn close_code_for(error: &WsError) -> Option<(CloseCode, &'static str)> {
  match error {
    WsError::Utf8(_) => Some((CloseCode::Invalid, reason::INVALID_UTF8)),
    WsError::Capacity(_) => Some((CloseCode::Size, reason::TOO_BIG)),
    // A reset is a transport failure reported as a protocol error.
    WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
    WsError::Protocol(_) | WsError::AttackAttempt => {
      Some((CloseCode::Protocol, reason::PROTOCOL_ERROR))
    }
    _ => None,
  }
}
