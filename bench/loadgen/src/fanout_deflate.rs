//! `fanout-deflate`: `fanout` with permessage-deflate and ~2 KB graph updates
//! (`graph_update`). R receivers, then one sender; after the sync phase the
//! sender sends M updates as fast as it can and the server broadcasts each
//! to everybody else. Every receiver inflates one update in 16 (every one
//! when the server keeps a compression context) and checks that it is the
//! one due. Measured: from the first send to the last delivery, and the
//! bytes each delivery took on the wire.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::common::*;
use crate::deflate_client::{connect_many, describe, DeflateWs};
use crate::graph_update::graph_update;

const SYNC: &[u8] = b"{\"type\":\"sync\"}";
/// Receivers inflate (and check) one update in this many, when they may.
const CHECK_EVERY: u64 = 16;

struct Shared {
  synced: AtomicUsize,
  finished: AtomicUsize,
  all_finished: Notify,
  last_delivery: Mutex<Option<Instant>>,
  receivers: usize,
  /// Bytes on the wire of the updates delivered, all receivers.
  wire_bytes: AtomicU64,
  /// Set before the first update is sent (the syncs have drained): from
  /// then on receivers may skip inflating.
  burst: AtomicBool,
}

pub async fn run(opts: &Opts) -> Result<(), BoxError> {
  let url = opts.str("url", "ws://127.0.0.1:8080/");
  let receivers: usize = opts.num("receivers", 1000)?;
  let messages: u64 = opts.num("messages", 2000)?;
  let cpu_pid = opts.cpu_pid()?;
  let _stdin = watch_stdin(true);

  let sockets = connect_many(&url, receivers, 100).await?;
  // The servers under test send nothing to the sender, which reads nothing.
  let mut sender = DeflateWs::connect(&url).await?;
  let negotiated = describe(sockets[0].deflate);
  emit(&format!("{{\"event\":\"ready\",\"receivers\":{receivers},\"deflate\":\"{negotiated}\"}}"));

  let shared = Arc::new(Shared {
    synced: AtomicUsize::new(0),
    finished: AtomicUsize::new(0),
    all_finished: Notify::new(),
    last_delivery: Mutex::new(None),
    receivers,
    wire_bytes: AtomicU64::new(0),
    burst: AtomicBool::new(false),
  });
  let mut tasks = Vec::with_capacity(receivers);
  for ws in sockets {
    let shared = shared.clone();
    tasks.push(tokio::spawn(async move {
      // Else a failed receiver would only show as one that never finished.
      if let Err(e) = receive(ws, messages, shared).await {
        eprintln!("loadgen fanout-deflate: a receiver failed: {e}");
      }
    }));
  }

  // Until every receiver is known to the server: one sync per 100 ms.
  let sync_deadline = Instant::now() + Duration::from_secs(30);
  let mut syncs = 0;
  while shared.synced.load(Ordering::SeqCst) < receivers {
    if Instant::now() > sync_deadline {
      let synced = shared.synced.load(Ordering::SeqCst);
      return Err(
        format!("only {synced} of {receivers} receivers got a broadcast within 30 s").into(),
      );
    }
    sender.queue(SYNC, true)?;
    sender.flush().await?;
    syncs += 1;
    let wait_until = Instant::now() + Duration::from_millis(100);
    while Instant::now() < wait_until && shared.synced.load(Ordering::SeqCst) < receivers {
      tokio::time::sleep(Duration::from_millis(5)).await;
    }
  }
  // Let late syncs drain so they do not overlap the measured burst.
  tokio::time::sleep(Duration::from_millis(300)).await;

  // Made (not sent) before the clock starts.
  let updates: Vec<String> = (0..messages).map(graph_update).collect();
  let payload_bytes = updates.iter().map(String::len).sum::<usize>() as f64 / messages as f64;
  let cpu = CpuWindow::start(cpu_pid);
  shared.burst.store(true, Ordering::SeqCst);
  let t0 = Instant::now();
  emit_event("start");
  let mut sent_bytes = 0;
  for update in &updates {
    sent_bytes += sender.queue(update.as_bytes(), true)?;
    sender.flush().await?;
  }
  let sent = t0.elapsed();

  let notified = shared.all_finished.notified();
  if shared.finished.load(Ordering::SeqCst) < receivers {
    let limit = Duration::from_secs(opts.num("deliver-timeout", 60.0f64)? as u64);
    if tokio::time::timeout(limit, notified).await.is_err() {
      let finished = shared.finished.load(Ordering::SeqCst);
      return Err(
        format!(
          "only {finished} of {receivers} receivers got all {messages} updates within {limit:?}"
        )
        .into(),
      );
    }
  }
  let (server_cpu, own_cpu) = cpu.stop();
  emit_event("stop");
  let last = shared.last_delivery.lock().unwrap().unwrap_or_else(Instant::now);
  let elapsed = last.saturating_duration_since(t0).as_secs_f64();
  let delivered = receivers as u64 * messages;

  JsonObj::new("result")
    .num("receivers", receivers)
    .num("messages", messages)
    .num("delivered", delivered)
    .num("syncs", syncs)
    .float("send_ms", sent.as_secs_f64() * 1000.0)
    .float("last_delivery_ms", elapsed * 1000.0)
    .float("delivered_per_sec", delivered as f64 / elapsed)
    .float("server_us_per_delivery", server_cpu.ns as f64 / 1000.0 / delivered as f64)
    .float("payload_bytes", payload_bytes)
    .float("up_bytes_per_msg", sent_bytes as f64 / messages as f64)
    .float("bytes_per_delivery", shared.wire_bytes.load(Ordering::SeqCst) as f64 / delivered as f64)
    .str("deflate", negotiated)
    .cpu_use(&cpu, &server_cpu, &own_cpu, elapsed)
    .emit();
  drop(tasks);
  Ok(())
}

async fn receive(mut ws: DeflateWs, messages: u64, shared: Arc<Shared>) -> Result<(), BoxError> {
  let mut synced = false;
  let mut got = 0u64;
  let mut wire_bytes = 0u64;
  loop {
    // A sync that came late would be counted as an update: the next
    // update checked would then not be the one due.
    ws.skip_inflate = shared.burst.load(Ordering::Relaxed) && !got.is_multiple_of(CHECK_EVERY);
    let message = ws.next().await?;
    if !message.compressed && message.data == SYNC {
      if !synced {
        synced = true;
        shared.synced.fetch_add(1, Ordering::SeqCst);
      }
      continue;
    }
    if !message.compressed && json_number(&message.data, b"\"seq\":") != Some(got) {
      return Err(format!("update {got} expected, got {} bytes", message.data.len()).into());
    }
    got += 1;
    wire_bytes += message.wire_bytes as u64;
    if got == messages {
      let now = Instant::now();
      {
        let mut last = shared.last_delivery.lock().unwrap();
        if last.is_none_or(|l| now > l) {
          *last = Some(now);
        }
      }
      shared.wire_bytes.fetch_add(wire_bytes, Ordering::SeqCst);
      if shared.finished.fetch_add(1, Ordering::SeqCst) + 1 == shared.receivers {
        shared.all_finished.notify_one();
      }
      // Keep the connection open (and read) until the process ends.
    }
  }
}
