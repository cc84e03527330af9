//! Events from Rust to JS, delivered in batches.
//!
//! Every native Server or Socket owns one `EventQueue`. IO tasks append to it;
//! one dispatcher task hands everything queued since the last call to JS over
//! and wakes the JS thread (js_wake.rs), which passes it to the JS dispatcher
//! in a single call. Messages, the hot path, are
//! packed: `records` holds `[tag, connection, length]` triples and `bytes`
//! the payloads back to back, so a batch of a thousand messages costs three
//! JS values. An owner whose texts are JSON (`join_texts`) parses each text
//! as soon as it arrives and keeps nothing of it, so its texts can share one
//! JS string, `texts`, that JS slices: one string made per batch instead of
//! one per message, which took about 0.3 us of the JS thread's time off each
//! message of the JSON echo benchmark. Rare events (open, close, errors, large binaries) travel as
//! `EventDetail` objects, except for the commonest of them, which are
//! records too: those without fields, and the end of a server connection.
//! `lib/batch.js` reads this format.
//!
//! A message counts against its owner's receive buffers (flow.rs) from the
//! moment it is queued until the JS call of its batch has returned, that
//! is, until every callback has seen it.

mod dispatch;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use napi::bindgen_prelude::{Buffer, FnArgs, Function, JsValue, Uint32Array, Uint8Array};
use napi_derive::napi;
use tokio::sync::Notify;

use self::dispatch::Dispatcher;
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
/// The end of a server connection, packed in `bytes` (`ServerClose::pack`).
const TAG_SERVER_CLOSE: u32 = 8;
/// A text in `texts`, its length in UTF-16 code units (JS's string length).
const TAG_JOINED_TEXT: u32 = 9;

/// Binary messages at least this large go to JS as their own external Buffer
/// instead of being copied into the packed batch.
const LARGE_BINARY: usize = 64 * 1024;

/// The most a batch reserves for message bytes ahead of them.
const MAX_BATCH_RESERVE: usize = 4 * 1024 * 1024;

/// The largest `texts` string a batch makes, in bytes of V8's memory (one a
/// character while every text is ASCII, else two): under V8's largest
/// regular object (128 KiB), a string past which gets pages of its own,
/// mapped and unmapped at every batch. Texts past it go in `bytes`.
const MAX_JOINED_TEXTS: usize = 96 * 1024;

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
  /// A socket's connection ended; it says whether it will try again. (A
  /// server's connections end in records of their own: `ServerClose`.)
  Close { code: u32, reason: String, was_clean: bool, will_reconnect: bool },
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

/// The end of a server connection, with what JS may still read of it
/// afterwards: its close, the request's headers (`HeaderBlock::unpacked`)
/// and its `Description`. It travels packed in a batch's bytes: as a
/// detail object, its ten property definitions through N-API (each name
/// internalized anew) cost the JS thread about 1.5 us per connection in
/// the connection storm, more than the JSON work of the connection's
/// message.
pub struct ServerClose<'a> {
  pub code: u16,
  pub reason: &'a str,
  pub was_clean: bool,
  pub raw_headers: &'a str,
  pub remote_address: &'a str,
  pub remote_port: u16,
  pub protocol: &'a str,
}

impl ServerClose<'_> {
  /// Little-endian: `code` and `remote_port` (u16 each), `was_clean` (one
  /// byte), then `reason`, `remote_address`, `protocol` and `raw_headers`,
  /// each as its UTF-8 length (u32) and bytes. (A request head is at most
  /// 16 KiB, a close reason 123 bytes.)
  fn pack(&self, bytes: &mut Vec<u8>) {
    bytes.extend_from_slice(&self.code.to_le_bytes());
    bytes.extend_from_slice(&self.remote_port.to_le_bytes());
    bytes.push(u8::from(self.was_clean));
    for text in [self.reason, self.remote_address, self.protocol, self.raw_headers] {
      bytes.extend_from_slice(&(text.len() as u32).to_le_bytes());
      bytes.extend_from_slice(text.as_bytes());
    }
  }
}

/// The arguments of the JS dispatcher: `(records, bytes, details, texts)`.
pub type EventArgs = FnArgs<(Uint32Array, Buffer, Vec<EventDetail>, String)>;

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
  texts: JoinedTexts,
}

/// The texts of a batch that travel as one JS string.
#[derive(Default)]
struct JoinedTexts {
  utf8: Vec<u8>,
  /// Their length in UTF-16 code units.
  units: usize,
  /// Some text is not ASCII: the string is made from UTF-8, two bytes a
  /// character in V8.
  wide: bool,
}

impl JoinedTexts {
  /// Adds `text` (valid UTF-8) and returns its length in UTF-16 code units,
  /// unless the string would grow past MAX_JOINED_TEXTS.
  fn join(&mut self, text: &[u8]) -> Option<u32> {
    let ascii = text.is_ascii();
    let units = if ascii { text.len() } else { utf16_units(text) };
    let wide = self.wide || !ascii;
    let string_bytes = (self.units + units) * if wide { 2 } else { 1 };
    if string_bytes > MAX_JOINED_TEXTS {
      return None;
    }
    self.utf8.extend_from_slice(text);
    self.units += units;
    self.wide = wide;
    Some(units as u32)
  }
}

/// UTF-16 code units of valid UTF-8: one per character, two for those of
/// four bytes. Every character has one byte that is not a continuation
/// byte (`10xxxxxx`), and those of four bytes start with `11110xxx`.
fn utf16_units(utf8: &[u8]) -> usize {
  utf8.iter().map(|&byte| usize::from(byte & 0xC0 != 0x80) + usize::from(byte >= 0xF0)).sum()
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
  /// Texts travel in `texts` (see the module's documentation).
  join_texts: bool,
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
  /// Creates the queue and the task that delivers it to `callback`, with
  /// texts in one string when `join_texts`. Call it on the JS thread.
  pub fn start(
    callback: EventCallback,
    flow: Flow,
    join_texts: bool,
  ) -> napi::Result<Arc<EventQueue>> {
    let queue = Arc::new(EventQueue {
      pending: Mutex::default(),
      queued: Notify::new(),
      handoff: Mutex::default(),
      taken: Notify::new(),
      finished: AtomicBool::new(false),
      join_texts,
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
    let joined = if !binary && self.join_texts { events.texts.join(&payload) } else { None };
    if let Some(units) = joined {
      events.records.extend_from_slice(&[TAG_JOINED_TEXT, conn, units]);
    } else if binary && len >= LARGE_BINARY {
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

  /// Queues the end of server connection `conn`.
  pub fn server_close(&self, conn: u32, close: &ServerClose) {
    let mut batch = self.lock();
    let events = &mut batch.events;
    let start = events.bytes.len();
    close.pack(&mut events.bytes);
    let len = events.bytes.len() - start;
    events.records.extend_from_slice(&[TAG_SERVER_CLOSE, conn, len as u32]);
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

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn utf16_units_count_as_js_string_length_does() {
    for text in [
      "",
      "abc",
      "é",
      "€uro",
      "𝄞 clef",
      "a\u{10FFFF}z",
      "\u{7F}\u{80}\u{7FF}\u{800}\u{FFFF}\u{10000}",
    ] {
      assert_eq!(utf16_units(text.as_bytes()), text.encode_utf16().count(), "{text}");
    }
  }

  #[test]
  fn joined_texts_stop_short_of_a_large_string() {
    let half = "a".repeat(MAX_JOINED_TEXTS / 2);
    let mut texts = JoinedTexts::default();
    assert_eq!(texts.join(half.as_bytes()), Some(half.len() as u32));
    // One character past ASCII would make the string two bytes a character.
    assert_eq!(texts.join("é".as_bytes()), None);
    assert_eq!(texts.join(half.as_bytes()), Some(half.len() as u32));
    assert_eq!(texts.join(b"b"), None);
    assert!(!texts.wide);
    assert_eq!(texts.utf8.len(), MAX_JOINED_TEXTS);

    let mut texts = JoinedTexts::default();
    assert_eq!(texts.join("𝄞é".as_bytes()), Some(3));
    assert!(texts.wide);
    assert_eq!(texts.units, 3);
  }
}
