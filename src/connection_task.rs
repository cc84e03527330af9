//! A server connection that holds tungstenite's state only while active.
//!
//! Most connections of a busy server are quiet most of the time. While one
//! is, its task holds only its socket and its owner's handles: tungstenite's
//! state (with its read buffer) and the driving loop's live in one boxed
//! future made when bytes arrive or something is queued, and dropped once
//! the connection is quiet again with nothing half done.
//!
//! A connection that stays quiet leaves even this task behind and goes
//! dormant (dormancy.rs); a new one does so once it has been quiet for
//! `NEW_CONNECTION_GRACE`.
//!
//! The task is a hand-written future rather than an `async fn`: an async
//! function keeps room for its arguments and every nested future's for its
//! whole life, which would cost an idle connection about a kilobyte.

use std::collections::VecDeque;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Sleep;
use tokio_tungstenite::tungstenite::protocol::{Role as WsRole, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use crate::connection_loop::{drive_until_rest, Ended, Incoming, Outcome, Role};
use crate::deflate::Agreement;
use crate::flow::Flow;
use crate::link::Link;
use crate::server_stream::{PayloadSource, ServerStream, READ_AHEAD};

/// How long a new connection that may go dormant waits, quiet, before it
/// does. Clients mostly speak first (a subscription, a login) right after
/// the upgrade: going dormant before that message and waking for it costs
/// half of a connection's `epoll_ctl` calls and a second task, about a
/// tenth of the CPU of a connection that sends one message and leaves. The
/// grace is short because what the waiting tasks hold is freed only as
/// they go: the last `NEW_CONNECTION_GRACE` of a burst of connections
/// leaves that much freed memory behind, which later connections reuse.
const NEW_CONNECTION_GRACE: Duration = Duration::from_millis(20);

/// An active period of a connection: it gives the stream back when the
/// connection rests.
pub type Active<S> = Pin<Box<dyn Future<Output = (ServerStream<S>, Outcome)> + Send>>;

/// What a resting connection needs from whoever owns it.
pub trait Owner<S> {
  fn link(&self) -> &Link;
  /// Starts an active period of connection `generation` (see `active_period`).
  fn activate(&self, stream: ServerStream<S>, generation: u32) -> Active<S>;
  /// The connection rested long enough to leave tokio (dormancy.rs): hand
  /// it over, or give the stream back when it cannot go, as it never can
  /// without `cfg(dormancy)`.
  fn go_dormant(&self, stream: ServerStream<S>, _generation: u32) -> Result<(), ServerStream<S>> {
    Err(stream)
  }
  /// The connection has ended.
  fn ended(&mut self, ended: Ended);
  /// Whether `go_dormant` can take the connection (bytes of a frame in
  /// hand aside).
  fn may_go_dormant(&self) -> bool {
    false
  }
}

enum Phase<S> {
  Resting(ServerStream<S>),
  Active(Active<S>),
  Ended,
}

/// The task of one upgraded server connection.
pub struct ConnectionTask<S, O: Owner<S>> {
  phase: Phase<S>,
  owner: O,
  generation: u32,
  /// A new connection's `NEW_CONNECTION_GRACE`, until it ends or the
  /// connection first becomes active.
  grace: Option<Pin<Box<Sleep>>>,
}

impl<S, O: Owner<S>> Drop for ConnectionTask<S, O> {
  /// A connection's task ends with its connection, or hands it to the
  /// dormant set; dropped before that, it panicked outside the connection
  /// loop (which catches its own), and tokio drops what panicked. The
  /// connection ends with it, reported as our error.
  fn drop(&mut self) {
    if !matches!(self.phase, Phase::Ended) {
      self.phase = Phase::Ended;
      self.owner.ended(Ended::internal_error());
    }
  }
}

impl<S, O: Owner<S>> ConnectionTask<S, O> {
  /// A new connection goes dormant after `NEW_CONNECTION_GRACE` of having
  /// nothing to do, not a whole dormancy tick: most connections of a
  /// server are idle, and what its task and tokio's registration of its
  /// socket free is reused by the next connection.
  pub fn new(stream: ServerStream<S>, owner: O) -> ConnectionTask<S, O> {
    let generation = owner.link().open_connection();
    let grace = owner.may_go_dormant().then(|| Box::pin(tokio::time::sleep(NEW_CONNECTION_GRACE)));
    if grace.is_none() {
      owner.link().allow_dormancy();
    }
    ConnectionTask { phase: Phase::Resting(stream), owner, generation, grace }
  }

  /// Connection `generation` again, back from dormancy.
  #[cfg(dormancy)]
  pub fn resume(stream: ServerStream<S>, owner: O, generation: u32) -> ConnectionTask<S, O> {
    owner.link().rest();
    ConnectionTask { phase: Phase::Resting(stream), owner, generation, grace: None }
  }
}

impl<S, O> Future for ConnectionTask<S, O>
where
  S: AsyncRead + Unpin,
  O: Owner<S> + Unpin,
{
  type Output = ();

  fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
    let this = self.get_mut();
    loop {
      match &mut this.phase {
        Phase::Resting(stream) => {
          // Both register for a wake before they report nothing to do.
          let link = this.owner.link();
          if link.poll_work(cx).is_pending() && stream.poll_arrival(cx).is_pending() {
            if let Some(grace) = &mut this.grace {
              if grace.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
              }
              this.grace = None;
              link.allow_dormancy();
            }
            if !link.dormancy_due() {
              return Poll::Pending;
            }
            if let Phase::Resting(stream) = mem::replace(&mut this.phase, Phase::Ended) {
              match this.owner.go_dormant(stream, this.generation) {
                Ok(()) => return Poll::Ready(()),
                Err(stream) => this.phase = Phase::Resting(stream),
              }
            }
            return Poll::Pending;
          }
          this.grace = None;
          this.owner.link().mark_active();
          if let Phase::Resting(stream) = mem::replace(&mut this.phase, Phase::Ended) {
            this.phase = Phase::Active(this.owner.activate(stream, this.generation));
          }
        }
        Phase::Active(active) => {
          let Poll::Ready((stream, outcome)) = active.as_mut().poll(cx) else {
            return Poll::Pending;
          };
          match outcome {
            Outcome::Rested => {
              this.owner.link().rest();
              this.phase = Phase::Resting(stream);
            }
            Outcome::Ended(ended) => {
              this.phase = Phase::Ended;
              this.owner.ended(ended);
              return Poll::Ready(());
            }
          }
        }
        Phase::Ended => return Poll::Ready(()),
      }
    }
  }
}

/// Drives a connection from the bytes or sends that woke it until it rests
/// or ends, with tungstenite's state made for the period.
///
/// tungstenite zero-fills and reads its whole read buffer size each time,
/// so the usual size is small; a period that starts with a large frame
/// reads in large chunks, which also go to tungstenite without passing
/// through the read-ahead buffer.
pub async fn active_period<S>(
  mut stream: ServerStream<S>,
  period: Period<'_>,
  deliver: impl FnMut(Incoming),
) -> (ServerStream<S>, Outcome)
where
  S: PayloadSource + AsyncWrite,
{
  let Period { mut config, deflate, link, flow, generation } = period;
  if stream.next_frame_len().is_some_and(|len| len >= READ_AHEAD as u64) {
    config = config.read_buffer_size(READ_AHEAD);
  }
  let most = [config.max_message_size, config.max_frame_size].into_iter().flatten().min();
  stream.set_max_message(most.unwrap_or(usize::MAX));
  stream.agree_on(deflate);
  let mut ws = WebSocketStream::from_raw_socket(&mut stream, WsRole::Server, Some(config)).await;
  let no_backlog = &mut VecDeque::new();
  let outcome =
    drive_until_rest(&mut ws, no_backlog, link, flow, generation, Role::Server, deliver).await;
  drop(ws);
  (stream, outcome)
}

/// What an active period of a server connection runs with.
pub struct Period<'a> {
  pub config: WebSocketConfig,
  /// The compression agreed on in the handshake (a dormant connection's
  /// stream does not keep it).
  pub deflate: Option<Agreement>,
  pub link: &'a Link,
  pub flow: &'a Flow,
  pub generation: u32,
}
