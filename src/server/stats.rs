//! What `server.stats()` reports: counters kept as the server works, and the
//! figures read off the registry when asked (README, "Server statistics").

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use napi_derive::napi;

use super::Shared;
use crate::link::Paused;
use crate::sync::lock;

/// The figures of `server.stats()`, as the addon counts them. Counts are
/// f64 because JS numbers are; they stay exact up to 2^53.
#[napi(object)]
pub struct ServerStats {
  /// Connections open now.
  pub connections: f64,
  /// Connections accepted since the server started.
  pub accepted: f64,
  /// Data messages received, and their payload bytes.
  pub messages_in: f64,
  pub bytes_in: f64,
  /// Data messages queued to connections, and their payload bytes (a
  /// broadcast counts once per connection that took it).
  pub messages_out: f64,
  pub bytes_out: f64,
  /// Connections that ended, by close code.
  pub closes: HashMap<String, f64>,
  /// Connections closed for what their peer sent: a protocol violation
  /// (1002), text that is not UTF-8 (1007) or a message too big (1009).
  pub invalid: f64,
  /// Connections open now that do not read (paused by JS or by the
  /// receive buffers).
  pub paused: f64,
  /// Times a message was deflated to be sent: once per broadcast (and
  /// per window size its receivers agreed on), once per message sent to
  /// one connection.
  pub deflate_calls: f64,
  /// In a cluster: this server's broadcasts published to the other nodes,
  /// those lost (not published: Redis was unreachable), the other nodes'
  /// received, and those of theirs that never arrived (outages included).
  pub cluster_published: f64,
  pub cluster_lost: f64,
  pub cluster_received: f64,
  pub cluster_missed: f64,
}

/// The counters a server updates as it works. The inbound ones are written
/// by the runtime's threads, the outbound ones mostly by the JS thread (a
/// cluster's broadcasts from other nodes by the runtime), so each group has
/// a cache line of its own.
#[derive(Default)]
pub(super) struct Counters {
  inbound: Inbound,
  outbound: Outbound,
  ends: Mutex<Ends>,
}

#[derive(Default)]
#[repr(align(128))]
struct Inbound {
  messages: AtomicU64,
  bytes: AtomicU64,
  accepted: AtomicU64,
}

#[derive(Default)]
#[repr(align(128))]
struct Outbound {
  messages: AtomicU64,
  bytes: AtomicU64,
  deflate_calls: AtomicU64,
}

#[derive(Default)]
struct Ends {
  by_code: BTreeMap<u16, u64>,
  invalid: u64,
}

impl Counters {
  pub(super) fn accepted(&self) {
    self.inbound.accepted.fetch_add(1, Ordering::Relaxed);
  }

  pub(super) fn received(&self, bytes: usize) {
    self.inbound.messages.fetch_add(1, Ordering::Relaxed);
    self.inbound.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
  }

  /// `messages` sends of `bytes` payload bytes in all.
  pub(super) fn sent(&self, messages: u64, bytes: u64) {
    self.outbound.messages.fetch_add(messages, Ordering::Relaxed);
    self.outbound.bytes.fetch_add(bytes, Ordering::Relaxed);
  }

  pub(super) fn deflated(&self, calls: u64) {
    self.outbound.deflate_calls.fetch_add(calls, Ordering::Relaxed);
  }

  /// A connection ended with `code`; `invalid` if for what its peer sent.
  pub(super) fn ended(&self, code: u16, invalid: bool) {
    let mut ends = lock(&self.ends);
    *ends.by_code.entry(code).or_default() += 1;
    ends.invalid += u64::from(invalid);
  }
}

impl Shared {
  pub(super) fn stats(&self) -> ServerStats {
    let (connections, paused) = {
      let connections = self.connections();
      let paused = connections.values().filter(|c| c.link.is_paused(Paused::ANY)).count();
      (connections.len(), paused)
    };
    let counters = &self.counters;
    let ends = lock(&counters.ends);
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed) as f64;
    ServerStats {
      connections: connections as f64,
      accepted: load(&counters.inbound.accepted),
      messages_in: load(&counters.inbound.messages),
      bytes_in: load(&counters.inbound.bytes),
      messages_out: load(&counters.outbound.messages),
      bytes_out: load(&counters.outbound.bytes),
      closes: ends.by_code.iter().map(|(code, n)| (code.to_string(), *n as f64)).collect(),
      invalid: ends.invalid as f64,
      paused: paused as f64,
      deflate_calls: load(&counters.outbound.deflate_calls),
      cluster_published: self.cluster.as_ref().map_or(0.0, |c| load(&c.counters.published)),
      cluster_lost: self.cluster.as_ref().map_or(0.0, |c| load(&c.counters.lost)),
      cluster_received: self.cluster.as_ref().map_or(0.0, |c| load(&c.counters.received)),
      cluster_missed: self.cluster.as_ref().map_or(0.0, |c| load(&c.counters.missed)),
    }
  }
}
