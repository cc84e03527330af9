//! Events from Rust to JS, delivered in batches.
//!
//! Every native Server or Socket owns one `EventQueue`. IO tasks append to it;
//! one dispatcher task hands everything queued since the last call to JS over
//! and wakes the JS thread (js_wake.rs), which passes it to the JS dispatcher
//! in a single call. Messages, the hot path, are
//! packed: `records` holds `[tag, connection, byteLength]` triples and `bytes`
//! the payloads back to back, so a batch of a thousand messages costs three
//! JS values. Rare events (open, close, errors, large binaries) travel as
//! `EventDetail` objects. `lib/batch.js` reads this format.
//!
//! A message counts against its owner's receive buffers (flow.rs) from the
//! moment it is queued until the JS call of its batch has returned, that
//! is, until every callback has seen it.

use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use napi::bindgen_prelude::{
  Buffer, FnArgs, Function, JsValue, ToNapiValue, Uint32Array, Uint8Array,
};
use napi::{check_status, sys, JsError};
use napi_derive::napi;
use tokio::sync::Notify;

use crate::buffers::to_js_array;
use crate::flow::Flow;
use crate::js_wake::JsWaker;
use crate::link::Link;
use crate::sync::lock;

/// Record tags; lib/batch.js uses the same numbers.
const TAG_TEXT: u32 = 1;
const TAG_BINARY: u32 = 2;
const TAG_DETAIL: u32 = 3;
/// Details without fields travel as tags of their own, which JS reads as one
/// shared object each: no JS object is made per event (a connection storm
/// has one `Accepted` per connection).
const TAG_ACCEPTED: u32 = 4;
const TAG_ABANDONED: u32 = 5;
const TAG_CLOSING: u32 = 6;
const TAG_DRAIN: u32 = 7;

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
  /// A batch on its way to the JS thread.
  handoff: Mutex<Handoff>,
  /// Signalled on the JS thread when the handoff has been taken.
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

/// What the dispatcher task hands to the JS thread.
#[derive(Default)]
struct Handoff {
  batch: Option<Batch>,
  /// Nothing follows: the JS thread lets go of the callback.
  last: bool,
}

impl EventQueue {
  /// Creates the queue and the task that delivers it to `callback`. Call it
  /// on the JS thread.
  pub fn start(callback: EventCallback, flow: Flow) -> napi::Result<Arc<EventQueue>> {
    let queue = Arc::new(EventQueue {
      pending: Mutex::default(),
      queued: Notify::new(),
      handoff: Mutex::default(),
      taken: Notify::new(),
      finished: AtomicBool::new(false),
      last_batch_bytes: AtomicUsize::new(0),
      flow,
    });
    let callback = callback.value();
    let mut dispatcher = Dispatcher::new(callback.env, callback.value, Arc::clone(&queue))?;
    let waker = JsWaker::start(callback.env, Box::new(move |env| dispatcher.dispatch(env)))?;
    napi::bindgen_prelude::spawn(deliver(Arc::clone(&queue), waker));
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
    let events = &mut batch.events;
    let fieldless = match detail {
      EventDetail::Accepted {} => Some(TAG_ACCEPTED),
      EventDetail::Abandoned {} => Some(TAG_ABANDONED),
      EventDetail::Closing {} => Some(TAG_CLOSING),
      EventDetail::Drain {} => Some(TAG_DRAIN),
      _ => None,
    };
    match fieldless {
      Some(tag) => events.records.extend_from_slice(&[tag, conn, 0]),
      None => {
        events.records.extend_from_slice(&[TAG_DETAIL, conn, 0]);
        events.details.push(detail);
      }
    }
    drop(batch);
    self.queued.notify_one();
  }

  /// Ends delivery once everything queued so far has reached JS; the
  /// callback is released then.
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
async fn deliver(queue: Arc<EventQueue>, waker: JsWaker) {
  loop {
    queue.queued.notified().await;
    // Let the other ready tasks run first: when many connections each have
    // a little to say (a storm of short connections), their events join
    // this batch instead of each waking the JS thread for its own; on a
    // shared core each wake is a context switch. This took the connection
    // rate from 10,300 to 12,900 a second, JSON echo unchanged.
    tokio::task::yield_now().await;
    // Read before taking, so that events queued before `finish` are sent.
    let finished = queue.finished.load(Ordering::Acquire);
    let batch = queue.take();
    if batch.is_empty() && !finished {
      continue;
    }
    queue.last_batch_bytes.store(batch.events.bytes.len(), Ordering::Relaxed);
    let batch = (!batch.is_empty()).then_some(batch);
    *lock(&queue.handoff) = Handoff { batch, last: finished };
    if !waker.wake() || finished {
      return;
    }
    queue.taken.notified().await;
  }
}

/// The JS dispatcher, called on the JS thread with what the dispatcher task
/// handed over. Dropped there, when the last batch is delivered or the
/// environment tears down.
struct Dispatcher {
  env: sys::napi_env,
  function: sys::napi_ref,
  /// Calls go through `napi_make_callback` in this async context, so that
  /// the microtasks and `process.nextTick` callbacks JS queued run after.
  context: sys::napi_async_context,
  queue: Arc<EventQueue>,
}

impl Dispatcher {
  fn new(
    env: sys::napi_env,
    function: sys::napi_value,
    queue: Arc<EventQueue>,
  ) -> napi::Result<Dispatcher> {
    let name = "mytosis-websocket events";
    let mut reference = ptr::null_mut();
    let mut resource_name = ptr::null_mut();
    let mut context = ptr::null_mut();
    // SAFETY: on the JS thread with its env; `function` is a live value of
    // the current scope.
    let created = unsafe {
      sys::napi_create_reference(env, function, 1, &mut reference) == sys::Status::napi_ok
        && sys::napi_create_string_utf8(
          env,
          name.as_ptr().cast(),
          name.len() as isize,
          &mut resource_name,
        ) == sys::Status::napi_ok
        && sys::napi_async_init(env, ptr::null_mut(), resource_name, &mut context)
          == sys::Status::napi_ok
    };
    let dispatcher = Dispatcher { env, function: reference, context, queue };
    if !created {
      return Err(napi::Error::from_reason("cannot keep the events callback"));
    }
    Ok(dispatcher)
  }

  /// Delivers the handoff, if any; false once the last one is delivered.
  fn dispatch(&mut self, env: sys::napi_env) -> bool {
    let Handoff { batch, last } = std::mem::take(&mut *lock(&self.queue.handoff));
    if let Some(Batch { events, held }) = batch {
      self.queue.taken.notify_one();
      self.call(env, events);
      for (receiver, len) in held {
        self.queue.flow.release(receiver.link(), len);
      }
    }
    !last
  }

  /// Calls the JS dispatcher with `(records, bytes, details)`; a throw from
  /// it is reported as an uncaught exception, after which delivery goes on.
  fn call(&self, env: sys::napi_env, events: Events) {
    let Events { records, bytes, details } = events;
    // SAFETY: on the JS thread, inside the handle scope js_wake.rs opens.
    unsafe {
      let args = records_to_js(env, records).and_then(|records| {
        let bytes = bytes_to_js(env, bytes)?;
        Ok([records, bytes, ToNapiValue::to_napi_value(env, details)?])
      });
      let argv = match args {
        Ok(argv) => argv,
        Err(error) => {
          sys::napi_fatal_exception(env, JsError::from(error).into_value(env));
          return;
        }
      };
      let mut function = ptr::null_mut();
      let mut receiver = ptr::null_mut();
      let mut result = ptr::null_mut();
      sys::napi_get_reference_value(env, self.function, &mut function);
      // `napi_make_callback` wants an object as `this`; the dispatcher
      // does not use it.
      sys::napi_get_global(env, &mut receiver);
      let status = sys::napi_make_callback(
        env,
        self.context,
        receiver,
        function,
        argv.len(),
        argv.as_ptr(),
        &mut result,
      );
      // Any other failure means JS can no longer run (the environment is
      // stopping): there is nobody to tell.
      if status == sys::Status::napi_pending_exception {
        let mut error = ptr::null_mut();
        if sys::napi_get_and_clear_last_exception(env, &mut error) == sys::Status::napi_ok {
          sys::napi_fatal_exception(env, error);
        }
      }
    }
  }
}

/// Batches this large or smaller are copied into memory V8 allocates; larger
/// ones are handed over as they are. Memory handed over costs V8 a finalizer
/// and a weak callback each, more than copying a few KiB (a storm of short
/// connections makes many small batches).
const COPY_MAX: usize = 16 * 1024;

/// The records as a `Uint32Array`.
///
/// # Safety
/// On the JS thread, inside a handle scope.
unsafe fn records_to_js(env: sys::napi_env, records: Vec<u32>) -> napi::Result<sys::napi_value> {
  let byte_length = size_of_val(records.as_slice());
  if byte_length == 0 || byte_length > COPY_MAX {
    // SAFETY: as this function's.
    return unsafe { ToNapiValue::to_napi_value(env, Uint32Array::new(records)) };
  }
  let mut data = ptr::null_mut();
  let mut buffer = ptr::null_mut();
  let mut array = ptr::null_mut();
  // SAFETY: `data` is a fresh allocation of `byte_length` bytes.
  unsafe {
    check_status!(sys::napi_create_arraybuffer(env, byte_length, &mut data, &mut buffer))?;
    ptr::copy_nonoverlapping(records.as_ptr().cast::<u8>(), data.cast::<u8>(), byte_length);
    let kind = sys::TypedarrayType::uint32_array;
    check_status!(sys::napi_create_typedarray(env, kind, records.len(), buffer, 0, &mut array))?;
  }
  Ok(array)
}

/// The message bytes as a `Buffer`.
///
/// # Safety
/// On the JS thread, inside a handle scope.
unsafe fn bytes_to_js(env: sys::napi_env, bytes: Vec<u8>) -> napi::Result<sys::napi_value> {
  if bytes.len() > COPY_MAX {
    // SAFETY: as this function's.
    return unsafe { ToNapiValue::to_napi_value(env, Buffer::from(bytes)) };
  }
  let mut data = ptr::null_mut();
  let mut buffer = ptr::null_mut();
  // SAFETY: `bytes` is readable for its length.
  check_status!(unsafe {
    sys::napi_create_buffer_copy(env, bytes.len(), bytes.as_ptr().cast(), &mut data, &mut buffer)
  })?;
  Ok(buffer)
}

impl Drop for Dispatcher {
  fn drop(&mut self) {
    // SAFETY: dropped on the JS thread while its environment stands.
    unsafe {
      if !self.function.is_null() {
        sys::napi_delete_reference(self.env, self.function);
      }
      if !self.context.is_null() {
        sys::napi_async_destroy(self.env, self.context);
      }
    }
    // Whatever the dispatcher task waits for will not come.
    self.queue.taken.notify_one();
  }
}
