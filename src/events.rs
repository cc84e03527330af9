//! Events from Rust to JS, delivered in batches.
//!
//! Every native Server or Socket owns one `EventQueue`. IO tasks append to it;
//! one dispatcher task hands everything queued since the last call to JS in a
//! single call of one weak threadsafe function. Messages, the hot path, are
//! packed: `records` holds `[tag, connection, byteLength]` triples and `bytes`
//! the payloads back to back, so a batch of a thousand messages costs three
//! JS values. Rare events (open, close, errors, large binaries) travel as
//! `EventDetail` objects. `lib/batch.js` reads this format.
//!
//! A message counts against its owner's receive buffers (flow.rs) from the
//! moment it is queued until the JS call of its batch has returned, that
//! is, until every callback has seen it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use napi::bindgen_prelude::{Buffer, FnArgs, Function, Uint32Array, Uint8Array};
use napi::threadsafe_function::{
  ThreadsafeCallContext, ThreadsafeFunction, ThreadsafeFunctionCallMode,
};
use napi::Status;
use napi_derive::napi;

use crate::buffers::to_js_array;
use crate::flow::Flow;
use crate::link::Link;
use crate::sync::lock;
use tokio::sync::Notify;

/// Record tags; lib/batch.js uses the same numbers.
const TAG_TEXT: u32 = 1;
const TAG_BINARY: u32 = 2;
const TAG_DETAIL: u32 = 3;

/// Binary messages at least this large go to JS as their own external Buffer
/// instead of being copied into the packed batch.
const LARGE_BINARY: usize = 64 * 1024;

/// The most a batch reserves for message bytes ahead of them.
const MAX_BATCH_RESERVE: usize = 4 * 1024 * 1024;

/// Where a server's connection comes from and the subprotocol it speaks,
/// as JS reads them on first need.
#[napi(object)]
pub struct Description {
  pub remote_address: String,
  pub remote_port: u32,
  pub protocol: String,
}

/// An event that is rare next to messages, delivered as a JS object whose
/// `type` names the variant.
#[napi(discriminant = "type")]
pub enum EventDetail {
  /// A client asks to upgrade; JS answers with `NativeServer#decide` for
  /// this connection handle (`verifyClient`, `handleProtocols`).
  Verify {
    url: String,
    raw_headers: String,
    remote_address: String,
    remote_port: u32,
    protocols: Vec<String>,
  },
  /// A socket connected.
  Open { remote_address: String, remote_port: u32, protocol: String },
  /// A server accepted a client, or JS hears of one accepted earlier. JS
  /// asks for its `Description` when it first needs it.
  Accepted {},
  /// An upgrade JS accepted (`verifyClient`, or the user's http server)
  /// that never opened: it timed out or the client left. JS drops what it
  /// kept for it.
  Abandoned {},
  /// A server connection received its peer's close frame: it is offline.
  Closing {},
  /// A connection ended. A socket says whether it will try again; a server
  /// hands back the request headers and the connection's `Description`,
  /// which JS may still read afterwards.
  Close {
    code: u32,
    reason: String,
    was_clean: bool,
    will_reconnect: bool,
    raw_headers: Option<String>,
    description: Option<Description>,
  },
  /// A binary message too large to copy into the packed batch, handed over
  /// without a copy.
  LargeBinary { data: Uint8Array },
  /// A server connection's unsent bytes fell under half of
  /// `maxBackpressure` after passing it.
  Drain {},
  /// Something failed; `code` is one of the stable `ERR_*` codes, `status`
  /// the HTTP status of a refused upgrade, `errno` the system error number
  /// of a failed connection.
  Error { code: String, message: String, status: Option<u32>, errno: Option<i32> },
  /// The socket starts attempt `attempt` to `url`; with an empty `url`, JS
  /// must resolve the user's URL function and answer with `provideAttempt`.
  Connecting { attempt: u32, url: String },
  /// The socket waits `delay` ms before attempt number `attempt`.
  Reconnecting { attempt: u32, delay: f64 },
  /// A server joined its cluster's Redis (`"up"`) or lost it (`"down"`);
  /// `lost` counts its broadcasts that did not reach the other nodes
  /// since it was last up.
  Cluster { state: String, lost: f64 },
  /// The owner stopped: a server for good, a socket until `reconnect()`.
  /// `dropped` counts queued messages discarded by `close()`.
  Stopped { dropped: u32 },
}

/// The arguments of the JS dispatcher: `(records, bytes, details)`.
pub type EventArgs = FnArgs<(Uint32Array, Buffer, Vec<EventDetail>)>;

/// The JS dispatcher as it arrives in a native constructor.
pub type EventCallback<'scope> = Function<'scope, EventArgs, ()>;

/// The one threadsafe function per native object: weak (it never keeps the
/// process alive; the JS facade holds a handle while that is wanted), not
/// error-first, unbounded (the dispatcher keeps at most two batches queued).
type EventSink = ThreadsafeFunction<Events, (), EventArgs, Status, false, true, 0>;

/// What holds a connection's `Link`: a server's connection, or a socket's
/// peer itself.
pub trait Receiver: Send + Sync {
  fn link(&self) -> &Link;
}

impl Receiver for Link {
  fn link(&self) -> &Link {
    self
  }
}

/// Events as JS receives them.
#[derive(Default)]
pub struct Events {
  records: Vec<u32>,
  bytes: Vec<u8>,
  details: Vec<EventDetail>,
}

/// Events gathered since the last call into JS, with the bytes each
/// connection holds in them.
#[derive(Default)]
struct Batch {
  events: Events,
  /// Consecutive messages of one connection share an entry.
  held: Vec<(Arc<dyn Receiver>, usize)>,
}

impl Batch {
  fn is_empty(&self) -> bool {
    self.events.records.is_empty()
  }

  fn hold<R: Receiver + 'static>(&mut self, from: &Arc<R>, len: usize) {
    match self.held.last_mut() {
      Some((last, held)) if std::ptr::addr_eq(Arc::as_ptr(last), Arc::as_ptr(from)) => *held += len,
      _ => self.held.push((Arc::clone(from) as Arc<dyn Receiver>, len)),
    }
  }
}

pub struct EventQueue {
  pending: Mutex<Batch>,
  /// Signalled when `pending` gains an event.
  queued: Notify,
  /// Signalled on the JS thread when a batch has been taken.
  taken: Notify,
  /// Set by `finish`: deliver what is pending, then release the callback.
  finished: AtomicBool,
  /// The message bytes of the last batch delivered: the next batch starts
  /// with room for as many, instead of growing by doubling (each step a
  /// copy, the largest ones fresh mappings from the kernel).
  last_batch_bytes: AtomicUsize,
  /// The receive buffers the queued messages count against.
  pub flow: Flow,
}

impl EventQueue {
  /// Creates the queue and the task that delivers it to `callback`.
  pub fn start(callback: EventCallback, flow: Flow) -> napi::Result<Arc<EventQueue>> {
    let queue = Arc::new(EventQueue {
      pending: Mutex::default(),
      queued: Notify::new(),
      taken: Notify::new(),
      finished: AtomicBool::new(false),
      last_batch_bytes: AtomicUsize::new(0),
      flow,
    });
    let on_js_thread = Arc::clone(&queue);
    let sink: EventSink = callback
      .build_threadsafe_function::<Events>()
      .weak::<true>()
      .callee_handled::<false>()
      .build_callback(move |ctx: ThreadsafeCallContext<Events>| {
        on_js_thread.taken.notify_one();
        let Events { records, bytes, details } = ctx.value;
        Ok(FnArgs::from((Uint32Array::new(records), Buffer::from(bytes), details)))
      })?;
    napi::bindgen_prelude::spawn(deliver(Arc::clone(&queue), sink));
    Ok(queue)
  }

  /// Queues a text or binary message received on connection `conn`, whose
  /// `Link` `from` holds.
  pub fn message<R: Receiver + 'static>(
    &self,
    conn: u32,
    from: &Arc<R>,
    binary: bool,
    payload: Bytes,
  ) {
    let len = payload.len();
    self.flow.hold(from.link(), len);
    let mut batch = self.lock();
    batch.hold(from, len);
    let events = &mut batch.events;
    if binary && len >= LARGE_BINARY {
      events.records.extend_from_slice(&[TAG_DETAIL, conn, 0]);
      events.details.push(EventDetail::LargeBinary { data: to_js_array(payload) });
    } else {
      let tag = if binary { TAG_BINARY } else { TAG_TEXT };
      events.records.extend_from_slice(&[tag, conn, len as u32]);
      if events.bytes.capacity() == 0 {
        let expected = self.last_batch_bytes.load(Ordering::Relaxed).min(MAX_BATCH_RESERVE);
        events.bytes.reserve(expected.max(len));
      }
      events.bytes.extend_from_slice(&payload);
    }
    drop(batch);
    self.queued.notify_one();
  }

  /// Queues a rare event about connection `conn` (0 for the owner itself).
  pub fn detail(&self, conn: u32, detail: EventDetail) {
    let mut batch = self.lock();
    batch.events.records.extend_from_slice(&[TAG_DETAIL, conn, 0]);
    batch.events.details.push(detail);
    drop(batch);
    self.queued.notify_one();
  }

  /// Ends delivery once everything queued so far has reached JS; the
  /// threadsafe function is released then.
  pub fn finish(&self) {
    self.finished.store(true, Ordering::Release);
    self.queued.notify_one();
  }

  fn lock(&self) -> MutexGuard<'_, Batch> {
    lock(&self.pending)
  }

  fn take(&self) -> Batch {
    std::mem::take(&mut *self.lock())
  }
}

/// Hands batches to JS, one in flight at a time, so that under load batches
/// grow instead of piling up as separate calls; ends after `finish`.
async fn deliver(queue: Arc<EventQueue>, sink: EventSink) {
  loop {
    queue.queued.notified().await;
    // Let the other ready tasks run first: when many connections each have
    // a little to say (a storm of short connections), their events join
    // this batch instead of each taking a call into JS of its own. Each
    // call wakes the JS thread while it holds the threadsafe function's
    // lock, three context switches on a shared core; this took the
    // connection rate from 10,300 to 12,900 a second, JSON echo unchanged.
    tokio::task::yield_now().await;
    // Read before taking, so that events queued before `finish` are sent.
    let finished = queue.finished.load(Ordering::Acquire);
    let batch = queue.take();
    if !batch.is_empty() {
      let Batch { events, held } = batch;
      queue.last_batch_bytes.store(events.bytes.len(), Ordering::Relaxed);
      let on_return = Arc::clone(&queue);
      // Runs on the JS thread once the dispatcher has returned; a throw
      // from it is reported as before (an uncaught exception).
      let released = move |returned: napi::Result<()>, _| {
        for (receiver, len) in held {
          on_return.flow.release(receiver.link(), len);
        }
        returned
      };
      let mode = ThreadsafeFunctionCallMode::NonBlocking;
      if sink.call_with_return_value(events, mode, released) != Status::Ok {
        return;
      }
      if !finished {
        queue.taken.notified().await;
      }
    }
    if finished {
      return;
    }
  }
}
