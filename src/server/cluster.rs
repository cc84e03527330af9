//! The cluster: a Redis pub/sub channel that carries each node's broadcasts
//! to the others (README, "Cluster").
//!
//! One task per clustered Server holds two Redis connections: one publishes
//! the node's broadcasts, in order, in pipelined batches; the other is
//! subscribed to the channel, and what other nodes broadcast is fanned out
//! to local connections from here, without entering JS. After a failure the
//! task joins again, with backoff capped at 1 s. Nothing is retried or kept
//! across an outage (a publication that timed out may have gone through):
//! delivery is at most once, and what did not go out is counted as lost.
//!
//! The task is ours rather than the redis crate's reconnecting manager,
//! which holds commands across an outage and tells no one it happened.

use std::collections::HashMap;
use std::mem;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::{AsyncConnectionConfig, Client, RedisError};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::time::{sleep, timeout, Instant};
use tokio_util::sync::CancellationToken;

use super::envelope::{self, Envelope, Outgoing};
use super::{lock, Shared};
use crate::events::EventDetail;

/// How long connecting to Redis, and each answer, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);
/// A subscribed connection only hears Redis when someone publishes: a ping
/// this often finds a Redis that hangs.
const PING_EVERY: Duration = Duration::from_secs(1);
/// Broadcasts published in one round trip, at most.
const MAX_BATCH: usize = 256;
/// Envelope bytes waiting to be published, at most; past it a broadcast is
/// lost to the other nodes (a Redis that is up but does not keep up).
const MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;
/// Senders whose sequence a node follows, at most (nodes restart with new
/// ids); past it it starts over.
const MAX_NODES_FOLLOWED: usize = 4096;

/// A Server's place in its cluster.
pub(super) struct Cluster {
  /// This node's id on the channel.
  node: u64,
  /// Broadcasts for the task to publish; `None` once the server closes.
  outbox: Mutex<Option<UnboundedSender<Bytes>>>,
  /// Envelope bytes in `outbox`.
  queued: AtomicUsize,
  next_sequence: AtomicU64,
  /// Broadcasts lost since the last `'cluster'` up event.
  lost_unreported: AtomicU64,
  pub(super) counters: ClusterCounters,
}

/// The cluster's figures in `server.stats()`.
#[derive(Default)]
pub(super) struct ClusterCounters {
  /// This node's broadcasts published, lost, and other nodes' received.
  pub(super) published: AtomicU64,
  pub(super) lost: AtomicU64,
  pub(super) received: AtomicU64,
  /// Other nodes' broadcasts that never arrived here (gaps in their
  /// sequence), outages included.
  pub(super) missed: AtomicU64,
}

/// What the task needs to join: the Redis client and the channel.
pub(super) struct Joining {
  client: Client,
  channel: String,
  outbox: UnboundedReceiver<Bytes>,
}

impl Cluster {
  /// A cluster on Redis at `url`, on `channel`; `Err` with why for a URL
  /// the redis crate cannot use.
  pub(super) fn new(url: &str, channel: String) -> Result<(Cluster, Joining), String> {
    let client = Client::open(url).map_err(|error| format!("cluster.redis: {error}"))?;
    let (sender, outbox) = mpsc::unbounded_channel();
    let cluster = Cluster {
      node: fastrand::u64(..),
      outbox: Mutex::new(Some(sender)),
      queued: AtomicUsize::new(0),
      next_sequence: AtomicU64::new(1),
      lost_unreported: AtomicU64::new(0),
      counters: ClusterCounters::default(),
    };
    Ok((cluster, Joining { client, channel, outbox }))
  }

  /// Queues a broadcast or a publication for the other nodes.
  pub(super) fn publish(&self, outgoing: Outgoing<'_>) {
    let outbox = lock(&self.outbox);
    let Some(sender) = outbox.as_ref() else { return };
    let sequence = self.next_sequence.fetch_add(1, Ordering::Relaxed);
    let Some(envelope) = envelope::encode(self.node, sequence, outgoing) else { return };
    let len = envelope.len();
    if self.queued.load(Ordering::Relaxed) + len > MAX_QUEUED_BYTES
      || sender.send(envelope).is_err()
    {
      self.lose(1);
      return;
    }
    self.queued.fetch_add(len, Ordering::Relaxed);
  }

  /// No more broadcasts: the task publishes what is queued, then ends.
  pub(super) fn stop(&self) {
    lock(&self.outbox).take();
  }

  fn lose(&self, broadcasts: u64) {
    self.counters.lost.fetch_add(broadcasts, Ordering::Relaxed);
    self.lost_unreported.fetch_add(broadcasts, Ordering::Relaxed);
  }
}

/// Starts the task of `shared`'s cluster; it ends when the server closes.
pub(super) fn start(shared: &Arc<Shared>, joining: Joining) {
  let task = run(Arc::downgrade(shared), shared.shutdown.clone(), joining);
  napi::bindgen_prelude::spawn(shared.tasks.track_future(task));
}

/// The two connections of a node that has joined.
struct Session {
  publisher: MultiplexedConnection,
  sink: PubSubSink,
  stream: PubSubStream,
}

/// Joins, serves until the session fails, drops (and counts) what is
/// broadcast while down, joins again; until the server closes.
async fn run(server: Weak<Shared>, shutdown: CancellationToken, joining: Joining) {
  let Joining { client, channel, mut outbox } = joining;
  let mut sequences = HashMap::new();
  let mut attempt = 0;
  let mut down = false;
  loop {
    let joined = tokio::select! {
      joined = join(&client, &channel) => joined,
      () = shutdown.cancelled() => return,
    };
    let failure = match joined {
      Ok(session) => {
        attempt = 0;
        down = false;
        report(&server, |cluster| {
          let lost = cluster.lost_unreported.swap(0, Ordering::Relaxed);
          vec![EventDetail::Cluster { state: "up".into(), lost: lost as f64 }]
        });
        let served = serve(session, &server, &channel, &mut outbox, &mut sequences).await;
        match served {
          Some(failure) => failure,
          None => return,
        }
      }
      Err(error) => error.to_string(),
    };
    if !mem::replace(&mut down, true) {
      report(&server, |_| {
        vec![cluster_error(&failure), EventDetail::Cluster { state: "down".into(), lost: 0.0 }]
      });
    }
    let wait = sleep(backoff(attempt));
    tokio::pin!(wait);
    attempt += 1;
    loop {
      tokio::select! {
        () = &mut wait => break,
        taken = outbox.recv() => {
          let Some(envelope) = taken else { return };
          with_cluster(&server, |cluster| {
            cluster.queued.fetch_sub(envelope.len(), Ordering::Relaxed);
            cluster.lose(1);
          });
        }
        () = shutdown.cancelled() => return,
      }
    }
  }
}

/// Connects the publishing connection and subscribes the other.
async fn join(client: &Client, channel: &str) -> Result<Session, RedisError> {
  let config = AsyncConnectionConfig::new()
    .set_connection_timeout(Some(CONNECT_TIMEOUT))
    .set_response_timeout(Some(ANSWER_TIMEOUT));
  let publisher = client.get_multiplexed_async_connection_with_config(&config).await?;
  let subscribing = async {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    Ok::<_, RedisError>(pubsub)
  };
  let timed_out = || RedisError::from((redis::ErrorKind::Io, "subscribing timed out"));
  let pubsub =
    timeout(CONNECT_TIMEOUT + ANSWER_TIMEOUT, subscribing).await.map_err(|_| timed_out())??;
  let (sink, stream) = pubsub.split();
  Ok(Session { publisher, sink, stream })
}

/// Publishes this node's broadcasts and delivers the others' until the
/// session fails (`Some(why)`) or the server closes and what it queued is
/// published (`None`).
async fn serve(
  session: Session,
  server: &Weak<Shared>,
  channel: &str,
  outbox: &mut UnboundedReceiver<Bytes>,
  sequences: &mut HashMap<u64, u64>,
) -> Option<String> {
  let Session { mut publisher, mut sink, mut stream } = session;
  // Broadcasts whose PUBLISH is under way: lost if the session fails first.
  let in_flight = AtomicU64::new(0);
  let publishing = async {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
      if outbox.recv_many(&mut batch, MAX_BATCH).await == 0 {
        return None;
      }
      let mut pipe = redis::pipe();
      let mut bytes = 0;
      for envelope in &batch {
        pipe.cmd("PUBLISH").arg(channel).arg(&envelope[..]).ignore();
        bytes += envelope.len();
      }
      let count = batch.len() as u64;
      batch.clear();
      // The server is gone: nothing more to publish for.
      with_cluster(server, |cluster| cluster.queued.fetch_sub(bytes, Ordering::Relaxed))?;
      in_flight.store(count, Ordering::Relaxed);
      let published = pipe.query_async::<()>(&mut publisher).await;
      in_flight.store(0, Ordering::Relaxed);
      with_cluster(server, |cluster| {
        if published.is_ok() {
          cluster.counters.published.fetch_add(count, Ordering::Relaxed);
        } else {
          cluster.lose(count);
        }
      })?;
      if let Err(error) = published {
        return Some(format!("publishing failed: {error}"));
      }
    }
  };
  let receiving = async {
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    loop {
      tokio::select! {
        received = stream.next() => {
          let Some(received) = received else { return "the subscription ended".to_string() };
          let bytes = Bytes::copy_from_slice(received.get_payload_bytes());
          if let Some(envelope) = envelope::decode(bytes) {
            let Some(shared) = server.upgrade() else { return "the server is gone".to_string() };
            shared.deliver_from_cluster(envelope, sequences);
          }
        }
        _ = ping.tick() => match timeout(ANSWER_TIMEOUT, sink.ping::<redis::Value>()).await {
          Ok(Ok(_)) => {}
          Ok(Err(error)) => return format!("a ping failed: {error}"),
          Err(_) => return "Redis did not answer a ping in time".to_string(),
        },
      }
    }
  };
  let outcome = tokio::select! {
    done = publishing => done,
    failure = receiving => Some(failure),
  };
  let unsettled = in_flight.load(Ordering::Relaxed);
  if unsettled > 0 {
    with_cluster(server, |cluster| cluster.lose(unsettled));
  }
  outcome
}

impl Shared {
  /// A broadcast or publication from the channel: another node's goes to
  /// every local connection, or those of its topic, as a local one would;
  /// this node's own is dropped.
  fn deliver_from_cluster(&self, envelope: Envelope, sequences: &mut HashMap<u64, u64>) {
    let Some(cluster) = &self.cluster else { return };
    if envelope.node == cluster.node {
      return;
    }
    if sequences.len() >= MAX_NODES_FOLLOWED && !sequences.contains_key(&envelope.node) {
      sequences.clear();
    }
    if let Some(last) = sequences.insert(envelope.node, envelope.sequence) {
      let missed = envelope.sequence.saturating_sub(last.saturating_add(1));
      cluster.counters.missed.fetch_add(missed, Ordering::Relaxed);
    }
    cluster.counters.received.fetch_add(1, Ordering::Relaxed);
    match envelope.topic {
      // Checked to be UTF-8 by `decode`.
      Some(topic) => {
        if let Ok(topic) = std::str::from_utf8(&topic) {
          self.deliver_to_topic(topic, envelope.message, envelope.compress);
        }
      }
      None => self.deliver_remote(envelope.message, envelope.compress),
    }
  }
}

/// Runs `with` on the server's cluster, while the server exists.
fn with_cluster<T>(server: &Weak<Shared>, with: impl FnOnce(&Cluster) -> T) -> Option<T> {
  let shared = server.upgrade()?;
  shared.cluster.as_ref().map(with)
}

/// Reports the events `of` makes of the cluster to JS.
fn report(server: &Weak<Shared>, of: impl FnOnce(&Cluster) -> Vec<EventDetail>) {
  let Some(shared) = server.upgrade() else { return };
  let Some(cluster) = &shared.cluster else { return };
  for detail in of(cluster) {
    shared.events.detail(0, detail);
  }
}

/// `ERR_CLUSTER`: an outage of the cluster starts.
fn cluster_error(why: &str) -> EventDetail {
  EventDetail::Error {
    code: "ERR_CLUSTER".into(),
    message: format!(
      "The cluster's Redis is unreachable ({why}); broadcasts stay local until it is back"
    ),
    status: None,
    errno: None,
  }
}

/// The wait before attempt `attempt` of an outage: 50 ms doubling, capped
/// at 1 s, up to a fifth less at random so that nodes do not come back in
/// step.
fn backoff(attempt: u32) -> Duration {
  let base = (50_u64 << attempt.min(5)).min(1000);
  Duration::from_millis(base - fastrand::u64(0..=base / 5))
}
