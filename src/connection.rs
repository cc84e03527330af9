//! The loop that drives one WebSocket connection: it writes what JS queued
//! on the connection's `Peer` (peer.rs), reads incoming frames and runs the
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
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{sleep, timeout};
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::buffers::payload_len;
use crate::direct_frame::{DirectFrame, DIRECT_MIN_LEN};
use crate::flow::Flow;
use crate::peer::{is_ping, now_ms, Outgoing, Paused, Peer, Termination, ANY_CONNECTION};

/// How long we try to deliver a close frame after a protocol error.
const ERROR_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Rounds of read-and-write one poll may run before yielding to other tasks.
const ROUNDS_PER_POLL: usize = 32;

/// The longest string V8 makes (`v8::String::kMaxLength` on 64-bit
/// platforms), in UTF-16 code units. A longer text cannot reach JS.
const MAX_JS_STRING: usize = (1 << 29) - 24;

/// The reasons of the close frames we send when we end a connection
/// ourselves: fixed short texts, never a library's error message.
pub mod reason {
  pub const PROTOCOL_ERROR: &str = "protocol error";
  pub const INVALID_UTF8: &str = "invalid UTF-8";
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

/// How a connection ended, as the `'close'`/`'remove'` events report it.
pub struct Ended {
  pub code: u16,
  pub reason: String,
  pub was_clean: bool,
  /// The heartbeat found the peer silent.
  pub heartbeat_lost: bool,
  /// A bug of ours (a panic) ended it, with 1011.
  pub internal_error: bool,
}

impl Ended {
  pub fn abnormal() -> Ended {
    Ended {
      code: 1006,
      reason: String::new(),
      was_clean: false,
      heartbeat_lost: false,
      internal_error: false,
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

/// What the loop asks of the byte stream under tungstenite besides bytes.
/// A server's stream (server_stream.rs) can rest and reads large binary
/// frames itself; a client's does neither.
pub trait Inbound {
  /// Whether tungstenite holds no part of a message, so that the loop may
  /// stop while the connection is quiet and let it rest.
  fn may_rest(&self) -> bool {
    false
  }

  /// A large binary message read past tungstenite, once whole; `None` when
  /// none is being read.
  fn poll_large_binary(&mut self, _cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
    Poll::Ready(None)
  }

  /// Bytes read of the message being received, when they count against the
  /// receive buffers' total (a server's; a client has no total).
  fn arriving(&self) -> usize {
    0
  }
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
  flow: &Flow,
  deliver: impl FnMut(Incoming),
) -> Ended
where
  S: AsyncRead + AsyncWrite + Inbound + Unpin,
{
  let generation = peer.open_connection();
  match drive_until_rest(ws, backlog, peer, flow, generation, Role::Client, deliver).await {
    Outcome::Ended(ended) => ended,
    Outcome::Rested => unreachable!("a connection that may not rest never rests"),
  }
}

/// Runs connection `generation` of `peer` until it ends, or until it is
/// quiet with nothing half done and the stream may rest. Reading stops
/// while `flow` says so.
pub async fn drive_until_rest<S>(
  ws: &mut WebSocketStream<S>,
  backlog: &mut VecDeque<Message>,
  peer: &Peer,
  flow: &Flow,
  generation: u32,
  role: Role,
  mut deliver: impl FnMut(Incoming),
) -> Outcome
where
  S: AsyncRead + AsyncWrite + Inbound + Unpin,
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
  // Bytes of a message being received, as last counted in `flow`.
  let mut arriving = 0usize;
  // Runs while the receive buffers' total stops the connection in the
  // middle of a message.
  let mut stall_deadline: Option<Pin<Box<tokio::time::Sleep>>> = None;

  let mut poll_rounds = |cx: &mut Context<'_>| -> Poll<Option<Stop>> {
    // Read once per poll: the rounds of one poll take microseconds, and the
    // heartbeat counts in milliseconds.
    let mut now = None;
    for _ in 0..ROUNDS_PER_POLL {
      let mut progressed = false;

      // Registered before anything is checked, so that no wake is missed.
      peer.task.register(cx.waker());
      if let Some(why) = peer.take_kill(generation) {
        return Poll::Ready(Some(Stop::Terminated(why)));
      }
      if close_deadline.is_none() && peer.close_requested_for(generation) {
        close_deadline = Some(Box::pin(sleep(flow.close_timeout())));
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
              close_deadline = Some(Box::pin(sleep(flow.close_timeout())));
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

      if flushed && peer.drained(flow.drain_below) {
        deliver(Incoming::Drain);
      }

      let may_read = flow.may_read(peer, arriving, cx);
      let read = if direct.is_some() || !may_read {
        Poll::Pending
      } else {
        match ws.poll_next_unpin(cx) {
          // tungstenite waits while the stream reads a large binary frame.
          Poll::Pending if received_close.is_none() => match ws.get_mut().poll_large_binary(cx) {
            Poll::Ready(Some(Ok(payload))) => Poll::Ready(Some(Ok(Message::Binary(payload)))),
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(WsError::Io(error)))),
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
          },
          read => read,
        }
      };
      match read {
        Poll::Ready(Some(Ok(message))) => {
          progressed = true;
          peer.last_seen.store(*now.get_or_insert_with(now_ms), Ordering::Relaxed);
          match message {
            #[cfg(feature = "panic-trigger")]
            Message::Text(text) if text.as_str() == "__panic__" => {
              panic!("the panic-trigger build was asked to panic")
            }
            Message::Text(text) if !fits_js_string(&text) => {
              let size = text.len();
              let too_long = CapacityError::MessageTooLong { size, max_size: MAX_JS_STRING };
              return Poll::Ready(Some(Stop::Failed(WsError::Capacity(too_long))));
            }
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
      let now_arriving = ws.get_ref().arriving();
      if now_arriving != arriving {
        flow.arriving(arriving, now_arriving);
        arriving = now_arriving;
      }

      if peer.is_paused(Paused::BY_TOTAL) && arriving > 0 {
        let stall = stall_deadline.get_or_insert_with(|| Box::pin(sleep(flow.stall_limit)));
        if stall.as_mut().poll(cx).is_ready() {
          return Poll::Ready(Some(Stop::Stalled));
        }
      } else {
        stall_deadline = None;
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
        if idle && may_read && ws.get_ref().may_rest() {
          // Nothing to do and nothing half done: the caller may drop
          // tungstenite's state until the next bytes or sends.
          return Poll::Ready(None);
        }
        return Poll::Pending;
      }
    }
    cx.waker().wake_by_ref();
    Poll::Pending
  };
  let stopped = poll_fn(|cx| {
    // A panic here is a bug of ours: it ends this connection (with 1011),
    // not the process or the other connections.
    catch_unwind(AssertUnwindSafe(|| poll_rounds(cx))).unwrap_or(Poll::Ready(Some(Stop::Panicked)))
  })
  .await;
  flow.arriving(arriving, 0);
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

  let failed = match stop {
    Stop::Finished => {
      return Outcome::Ended(match received_close {
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
      return Outcome::Ended(Ended::by_us(CloseCode::Policy, reason::BACKPRESSURE))
    }
    Stop::Terminated(why) => {
      let heartbeat_lost = why == Termination::Heartbeat;
      return Outcome::Ended(Ended { heartbeat_lost, ..Ended::abnormal() });
    }
    Stop::CloseTimedOut => return Outcome::Ended(Ended::abnormal()),
    Stop::Failed(error) => match close_code_for(&error) {
      Some((code, reason)) => Ended::by_us(code, reason),
      None => return Outcome::Ended(Ended::abnormal()),
    },
    Stop::Stalled => Ended::by_us(CloseCode::Policy, reason::STALLED),
    Stop::Panicked => Ended::internal_error(),
  };
  // We end the connection: tell the peer why, as far as it still listens
  // (it may have broken the protocol, or not read at all).
  // After a panic, tungstenite's state may be what panicked: caught too.
  let frame = CloseFrame { code: failed.code.into(), reason: failed.reason.as_str().into() };
  let _ =
    AssertUnwindSafe(timeout(ERROR_CLOSE_TIMEOUT, ws.close(Some(frame)))).catch_unwind().await;
  Outcome::Ended(failed)
}

/// Whether a text fits in a JavaScript string (V8 counts UTF-16 units,
/// never more than the UTF-8 bytes).
fn fits_js_string(text: &str) -> bool {
  text.len() <= MAX_JS_STRING || text.encode_utf16().count() <= MAX_JS_STRING
}

/// The close code and reason that tell the peer why we drop it, for errors
/// the peer caused; `None` for transport failures, where no frame can be
/// sent.
fn close_code_for(error: &WsError) -> Option<(CloseCode, &'static str)> {
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
