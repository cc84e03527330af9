//! One WebSocket connection: the queue JS sends into, and the single task
//! loop that writes that queue, reads incoming frames and runs the closing
//! handshake.
//!
//! Each connection is driven by one task that polls both directions itself
//! (no split halves, no second task): queued frames are fed to tungstenite
//! until the queue is empty and then flushed once, so a burst of sends leaves
//! in one write.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout};
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::buffers::payload_len;

/// How long we wait for the peer to answer our close frame before dropping
/// the connection (SPEC: `'remove'` at the latest 5 s after our close frame).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long we try to deliver a close frame after a protocol error.
const ERROR_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Rounds of read-and-write one poll may run before yielding to other tasks.
const ROUNDS_PER_POLL: usize = 32;

/// What JS puts on a connection's queue.
pub enum Outgoing {
  Message(Message),
  Close(CloseFrame),
  /// Drop the connection without a closing handshake.
  Terminate,
}

/// The part of a connection that JS calls reach: its send queue and state
/// flags. The driving task holds the receiving end of the queue.
pub struct Peer {
  queue: mpsc::UnboundedSender<Outgoing>,
  /// Whether JS observes this connection's messages; when it does not, they
  /// are dropped in Rust instead of being carried to JS.
  pub observed: AtomicBool,
  /// Set from the first close frame in either direction; `send` then refuses.
  closing: AtomicBool,
  /// Payload bytes accepted by `send` and not yet handed to the kernel.
  buffered: AtomicUsize,
}

pub type Inbox = mpsc::UnboundedReceiver<Outgoing>;

impl Peer {
  pub fn new() -> (Peer, Inbox) {
    let (queue, inbox) = mpsc::unbounded_channel();
    let peer = Peer {
      queue,
      observed: AtomicBool::new(false),
      closing: AtomicBool::new(false),
      buffered: AtomicUsize::new(0),
    };
    (peer, inbox)
  }

  /// Queues a data frame; false once the connection is closing.
  pub fn send(&self, message: Message) -> bool {
    if self.is_closing() {
      return false;
    }
    self.buffered.fetch_add(payload_len(&message), Ordering::Relaxed);
    self.queue.send(Outgoing::Message(message)).is_ok()
  }

  /// Queues a close frame behind everything sent before; false if the
  /// connection was already closing.
  pub fn close(&self, frame: CloseFrame) -> bool {
    if self.closing.swap(true, Ordering::AcqRel) {
      return false;
    }
    self.queue.send(Outgoing::Close(frame)).is_ok()
  }

  pub fn terminate(&self) {
    self.closing.store(true, Ordering::Release);
    // An error means the task has already ended, which is what was asked.
    let _ = self.queue.send(Outgoing::Terminate);
  }

  pub fn is_closing(&self) -> bool {
    self.closing.load(Ordering::Acquire)
  }

  /// After the queue was discarded.
  pub fn reset_buffered(&self) {
    self.buffered.store(0, Ordering::Relaxed);
  }

  pub fn buffered_amount(&self) -> usize {
    self.buffered.load(Ordering::Relaxed)
  }
}

/// How a connection ended, as the `'close'`/`'remove'` events report it.
pub struct Ended {
  pub code: u16,
  pub reason: String,
  pub was_clean: bool,
}

impl Ended {
  fn abnormal() -> Ended {
    Ended { code: 1006, reason: String::new(), was_clean: false }
  }
}

/// How the polling loop stopped.
enum Stop {
  /// The stream ended: after a closing handshake or because TCP ended.
  Finished,
  Terminated,
  CloseTimedOut,
  Failed(WsError),
}

/// Runs one connection until it ends: writes what arrives on `inbox`, hands
/// every incoming data frame to `deliver(is_binary, payload)`.
///
/// `peer.closing` is set when a close frame arrives only if `close_ends_peer`:
/// a server connection never reopens, while a client's queue outlives its
/// connections and keeps accepting sends for the next one.
pub async fn drive<S>(
  ws: &mut WebSocketStream<S>,
  inbox: &mut Inbox,
  peer: &Peer,
  close_ends_peer: bool,
  mut deliver: impl FnMut(bool, Bytes),
) -> Ended
where
  S: AsyncRead + AsyncWrite + Unpin,
{
  let mut unflushed = 0usize;
  let mut sent_close = false;
  let mut received_close: Option<Option<CloseFrame>> = None;
  let mut close_deadline: Option<Pin<Box<tokio::time::Sleep>>> = None;

  let stop = poll_fn(|cx| {
    for _ in 0..ROUNDS_PER_POLL {
      let mut progressed = false;

      // Feed every queued frame to tungstenite's write buffer.
      while !sent_close && received_close.is_none() {
        match ws.poll_ready_unpin(cx) {
          Poll::Ready(Ok(())) => {}
          Poll::Ready(Err(error)) => return Poll::Ready(Stop::Failed(error)),
          Poll::Pending => break,
        }
        let item = match inbox.poll_recv(cx) {
          Poll::Ready(Some(item)) => item,
          Poll::Ready(None) => Outgoing::Terminate,
          Poll::Pending => break,
        };
        let message = match item {
          Outgoing::Message(message) => {
            unflushed += payload_len(&message);
            message
          }
          Outgoing::Close(frame) => {
            sent_close = true;
            close_deadline = Some(Box::pin(sleep(CLOSE_TIMEOUT)));
            Message::Close(Some(frame))
          }
          Outgoing::Terminate => return Poll::Ready(Stop::Terminated),
        };
        if let Err(error) = ws.start_send_unpin(message) {
          return Poll::Ready(Stop::Failed(error));
        }
        progressed = true;
      }

      // One flush for everything fed above.
      match ws.poll_flush_unpin(cx) {
        Poll::Ready(Ok(())) => {
          peer.buffered.fetch_sub(unflushed, Ordering::Relaxed);
          unflushed = 0;
        }
        Poll::Ready(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => {}
        Poll::Ready(Err(error)) => return Poll::Ready(Stop::Failed(error)),
        Poll::Pending => {}
      }

      match ws.poll_next_unpin(cx) {
        Poll::Ready(Some(Ok(message))) => {
          progressed = true;
          match message {
            Message::Text(text) => deliver(false, Bytes::from(text)),
            Message::Binary(bytes) => deliver(true, bytes),
            Message::Close(frame) => {
              if close_ends_peer {
                peer.closing.store(true, Ordering::Release);
              }
              received_close = Some(frame);
            }
            // tungstenite answers pings itself.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
          }
        }
        Poll::Ready(Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)))
        | Poll::Ready(None) => return Poll::Ready(Stop::Finished),
        Poll::Ready(Some(Err(error))) => return Poll::Ready(Stop::Failed(error)),
        Poll::Pending => {}
      }

      if let Some(deadline) = close_deadline.as_mut() {
        if deadline.as_mut().poll(cx).is_ready() {
          return Poll::Ready(Stop::CloseTimedOut);
        }
      }
      if !progressed {
        return Poll::Pending;
      }
    }
    cx.waker().wake_by_ref();
    Poll::Pending
  })
  .await;

  match stop {
    Stop::Finished => match received_close {
      Some(Some(frame)) => {
        Ended { code: frame.code.into(), reason: frame.reason.to_string(), was_clean: true }
      }
      Some(None) => Ended { code: 1005, reason: String::new(), was_clean: true },
      None => Ended::abnormal(),
    },
    Stop::Terminated | Stop::CloseTimedOut => Ended::abnormal(),
    Stop::Failed(error) => match close_code_for(&error) {
      Some(code) => {
        let reason = error.to_string();
        let frame = CloseFrame { code, reason: truncate_reason(&reason).into() };
        // Best effort: the peer broke the protocol and may not read it.
        let _ = timeout(ERROR_CLOSE_TIMEOUT, ws.close(Some(frame))).await;
        Ended { code: code.into(), reason, was_clean: false }
      }
      None => Ended::abnormal(),
    },
  }
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
