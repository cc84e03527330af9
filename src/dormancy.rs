//! Server connections that have been quiet for a while leave tokio.
//!
//! A resting connection (connection_task.rs) is still a tokio task with its socket
//! registered in tokio's reactor: about 500 bytes for the task cell and the
//! registration (both 128-byte aligned), plus what the allocator loses
//! around them. A connection quiet for a whole dormancy tick instead hands
//! its socket and its little state to the server's dormant set: a slab of
//! dormant connections, with the sockets in an epoll set of our own that
//! tokio watches as one descriptor. Bytes arriving, or anything JS asks of
//! the connection (a send, a close, the heartbeat's ping), wake it: the
//! socket goes back to tokio and the connection gets a task again.
//!
//! The words for a server connection's idle path, here and in connection_task.rs:
//! *active* (its loop runs), *resting* (a task holding little more than
//! the socket) and *dormant* (no task: in the server's `DormantSet`).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use slab::Slab;
use tokio::io::unix::AsyncFd;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::frame_boundaries::FrameBoundaries;
use crate::link::Link;
use crate::server_stream::ServerStream;
use crate::sync::lock;

/// How often the server looks for connections that rested through a whole
/// tick (so a connection goes dormant after one to two ticks of quiet).
pub const DORMANCY_TICK: Duration = Duration::from_secs(1);

/// What the dormant set needs from a dormant connection's owner.
pub trait DormantOwner: Send + 'static {
  fn link(&self) -> &Link;
  /// Serve connection `generation` again, on a task of its own.
  fn wake(self, stream: ServerStream<TcpStream>, generation: u32);
  /// Its socket could not go back to tokio: the connection is lost.
  fn lost(self);
}

/// A dormant connection.
struct Dormant<O> {
  socket: std::net::TcpStream,
  boundaries: FrameBoundaries,
  owner: O,
  generation: u32,
  /// Keeps the server's `close()` waiting for this connection as if it
  /// were a task.
  _tracked: TaskTrackerToken,
}

/// The epoll set, owned by the `AsyncFd` through which tokio watches it.
struct Epoll {
  poll: Mutex<Poll>,
  fd: RawFd,
}

impl AsRawFd for Epoll {
  fn as_raw_fd(&self) -> RawFd {
    self.fd
  }
}

struct Inner<O> {
  epoll: AsyncFd<Epoll>,
  registry: Registry,
  /// `None` once the task has ended (the server closed with no connection
  /// dormant): nothing would wake a connection admitted then.
  dormant: Mutex<Option<Slab<Dormant<O>>>>,
  /// Keys woken by JS or the heartbeat, for the dormant set's task.
  woken: Mutex<Vec<usize>>,
  notify: Notify,
}

/// The dormant connections of one server.
pub struct DormantSet<O> {
  inner: Arc<Inner<O>>,
}

impl<O: DormantOwner> DormantSet<O> {
  /// Makes the epoll set and starts the task that wakes connections; it
  /// ends once `shutdown` is cancelled and no connection is dormant. Must run
  /// within the runtime.
  pub fn start(shutdown: CancellationToken) -> io::Result<DormantSet<O>> {
    let poll = Poll::new()?;
    let registry = poll.registry().try_clone()?;
    let epoll = Epoll { fd: poll.as_raw_fd(), poll: Mutex::new(poll) };
    // SAFETY: `epoll` owns the `Poll` whose descriptor it reports, so the
    // descriptor stays open, and the same, for the `AsyncFd`'s whole life.
    let epoll = unsafe { AsyncFd::register_with_interest(epoll, tokio::io::Interest::READABLE) }
      .map_err(io::Error::from)?;
    let inner = Arc::new(Inner {
      epoll,
      registry,
      dormant: Mutex::new(Some(Slab::new())),
      woken: Mutex::new(Vec::new()),
      notify: Notify::new(),
    });
    tokio::spawn(run(Arc::clone(&inner), shutdown));
    Ok(DormantSet { inner })
  }

  /// Makes a resting connection dormant. One whose stream holds more than
  /// the socket and where frames begin stays awake, on a new task.
  pub fn admit(
    &self,
    stream: ServerStream<TcpStream>,
    owner: O,
    generation: u32,
    tracked: TaskTrackerToken,
  ) {
    let (socket, boundaries) = match stream.into_dormant() {
      Ok(parts) => parts,
      Err(stream) => return owner.wake(stream, generation),
    };
    let Ok(socket) = socket.into_std() else { return owner.lost() };
    let mut dormant = lock(&self.inner.dormant);
    // No slab: the server closed while this connection rested, and the
    // set's task has ended; the close frame or termination on its way
    // needs a task to act on it.
    let entry = dormant.as_mut().map(Slab::vacant_entry).filter(|entry| {
      let fd = socket.as_raw_fd();
      self
        .inner
        .registry
        .register(&mut SourceFd(&fd), Token(entry.key()), Interest::READABLE)
        .is_ok()
    });
    let Some(entry) = entry else {
      drop(dormant);
      // Back to tokio at once: it cannot go dormant.
      match TcpStream::from_std(socket) {
        Ok(socket) => owner.wake(ServerStream::resume(socket, boundaries), generation),
        Err(_) => owner.lost(),
      }
      return;
    };
    let key = entry.key();
    // JS's next send, close or ping wakes the connection by its key; what
    // came before that registration is found now.
    let waker = Waker::from(Arc::new(KeyWaker { inner: Arc::downgrade(&self.inner), key }));
    let pending = owner.link().poll_work(&mut Context::from_waker(&waker)).is_ready();
    entry.insert(Dormant { socket, boundaries, owner, generation, _tracked: tracked });
    drop(dormant);
    if pending {
      waker.wake();
    }
  }
}

/// Wakes the dormant connection `key`.
struct KeyWaker<O> {
  inner: Weak<Inner<O>>,
  key: usize,
}

impl<O: Send + 'static> Wake for KeyWaker<O> {
  fn wake(self: Arc<Self>) {
    self.wake_by_ref();
  }

  fn wake_by_ref(self: &Arc<Self>) {
    if let Some(inner) = self.inner.upgrade() {
      lock(&inner.woken).push(self.key);
      inner.notify.notify_one();
    }
  }
}

async fn run<O: DormantOwner>(inner: Arc<Inner<O>>, shutdown: CancellationToken) {
  let mut events = Events::with_capacity(256);
  let mut keys = Vec::new();
  let mut stopping = false;
  loop {
    tokio::select! {
      _ = shutdown.cancelled(), if !stopping => stopping = true,
      ready = inner.epoll.readable() => {
        let Ok(mut guard) = ready else { return };
        let mut poll = lock(&inner.epoll.get_ref().poll);
        while poll.poll(&mut events, Some(Duration::ZERO)).is_ok() && !events.is_empty() {
          keys.extend(events.iter().map(|event| event.token().0));
        }
        drop(poll);
        guard.clear_ready();
      }
      _ = inner.notify.notified() => {}
    }
    keys.append(&mut lock(&inner.woken));
    for key in keys.drain(..) {
      wake_up(&inner, key);
    }
    // The server's close() woke every connection. Ended under the lock, so
    // that a connection admitted from now on stays a task (`admit`).
    if stopping {
      let mut dormant = lock(&inner.dormant);
      if dormant.as_ref().is_some_and(Slab::is_empty) {
        *dormant = None;
        return;
      }
    }
  }
}

/// Gives dormant connection `key` back to tokio. A key may be stale (woken
/// twice, or after its slot was reused): then there is nothing to do, or
/// another connection wakes for nothing and goes dormant again.
fn wake_up<O: DormantOwner>(inner: &Inner<O>, key: usize) {
  let Some(dormant) = lock(&inner.dormant).as_mut().and_then(|slab| slab.try_remove(key)) else {
    return;
  };
  let Dormant { socket, boundaries, owner, generation, .. } = dormant;
  let _ = inner.registry.deregister(&mut SourceFd(&socket.as_raw_fd()));
  match TcpStream::from_std(socket) {
    Ok(socket) => owner.wake(ServerStream::resume(socket, boundaries), generation),
    Err(_) => owner.lost(),
  }
}

#[cfg(test)]
mod tests {
  use std::sync::mpsc;

  use tokio::net::TcpListener;
  use tokio_util::task::TaskTracker;

  use super::*;
  use crate::link::close_frame;

  /// Reports whether it was given back to tokio (`wake`) or lost.
  struct Owner {
    link: Arc<Link>,
    outcome: mpsc::Sender<&'static str>,
  }

  impl DormantOwner for Owner {
    fn link(&self) -> &Link {
      &self.link
    }
    fn wake(self, _stream: ServerStream<TcpStream>, _generation: u32) {
      let _ = self.outcome.send("woken");
    }
    fn lost(self) {
      let _ = self.outcome.send("lost");
    }
  }

  /// The server's end of a real loopback connection, and the client's.
  async fn connection() -> (ServerStream<TcpStream>, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (ServerStream::new(server), client)
  }

  async fn until_ended(set: &DormantSet<Owner>) {
    while lock(&set.inner.dormant).is_some() {
      tokio::task::yield_now().await;
    }
  }

  #[tokio::test]
  async fn a_dormant_connection_is_woken_by_the_close_of_its_server() {
    let shutdown = CancellationToken::new();
    let set = DormantSet::start(shutdown.clone()).unwrap();
    let (stream, _client) = connection().await;
    let (outcome, outcomes) = mpsc::channel();
    let link = Arc::new(Link::new());
    let owner = Owner { link: Arc::clone(&link), outcome };
    set.admit(stream, owner, 1, TaskTracker::new().token());
    assert!(lock(&set.inner.dormant).as_ref().is_some_and(|slab| slab.len() == 1));

    shutdown.cancel();
    link.close(close_frame(1012, String::new()));
    until_ended(&set).await;
    assert_eq!(outcomes.try_recv(), Ok("woken"));
  }

  #[tokio::test]
  async fn a_connection_that_rests_after_its_server_closed_stays_a_task() {
    let shutdown = CancellationToken::new();
    let set = DormantSet::start(shutdown.clone()).unwrap();
    shutdown.cancel();
    // The set, empty, ends at once; a connection resting through the close
    // then asks to go dormant. Nothing would ever wake it there.
    until_ended(&set).await;
    let (stream, _client) = connection().await;
    let (outcome, outcomes) = mpsc::channel();
    let owner = Owner { link: Arc::new(Link::new()), outcome };
    set.admit(stream, owner, 1, TaskTracker::new().token());
    assert_eq!(outcomes.try_recv(), Ok("woken"));
  }
}
