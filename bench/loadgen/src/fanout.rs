//! `fanout`: R receivers connect, then one sender. The sender sends `sync`
//! messages until every receiver got one (so the server has registered them
//! all), then M small messages as fast as it can; the server broadcasts each
//! to everybody else. Measured: from the sender's first message to the last
//! delivery of the last one to every receiver.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

struct Shared {
  synced: AtomicUsize,
  finished: AtomicUsize,
  all_finished: Notify,
  last_delivery: Mutex<Option<Instant>>,
  receivers: usize,
}

pub async fn run(opts: &Opts) -> Result<(), BoxError> {
  let url = opts.str("url", "ws://127.0.0.1:8080/");
  let receivers: usize = opts.num("receivers", 1000)?;
  let messages: u64 = opts.num("messages", 2000)?;
  let cpu_pid = opts.cpu_pid()?;
  let _stdin = watch_stdin(true);

  let sockets = connect_many(&url, receivers, 100, small_config()).await?;
  let mut sender = connect(&url, small_config()).await?;
  emit(&format!("{{\"event\":\"ready\",\"receivers\":{receivers}}}"));

  let shared = Arc::new(Shared {
    synced: AtomicUsize::new(0),
    finished: AtomicUsize::new(0),
    all_finished: Notify::new(),
    last_delivery: Mutex::new(None),
    receivers,
  });
  let mut tasks = Vec::with_capacity(receivers);
  for ws in sockets {
    tasks.push(tokio::spawn(receive(ws, messages, shared.clone())));
  }

  // Until every receiver is known to the server: one sync per 100 ms.
  let sync_deadline = Instant::now() + Duration::from_secs(30);
  let mut syncs = 0;
  while shared.synced.load(Ordering::SeqCst) < receivers {
    if Instant::now() > sync_deadline {
      return Err(
        format!(
          "only {} of {receivers} receivers got a broadcast within 30 s",
          shared.synced.load(Ordering::SeqCst)
        )
        .into(),
      );
    }
    sender.send(Message::text("{\"type\":\"sync\"}")).await?;
    syncs += 1;
    let wait_until = Instant::now() + Duration::from_millis(100);
    while Instant::now() < wait_until && shared.synced.load(Ordering::SeqCst) < receivers {
      tokio::time::sleep(Duration::from_millis(5)).await;
    }
  }
  // Let late syncs drain so they do not overlap the measured burst.
  tokio::time::sleep(Duration::from_millis(300)).await;
  // The sender reads nothing in this scenario; a server that echoes to it
  // anyway must not block on it.
  let (mut sink, mut sender_in) = sender.split();
  let sender_echoes = Arc::new(AtomicUsize::new(0));
  let echoes = sender_echoes.clone();
  tokio::spawn(async move {
    while let Some(Ok(_)) = sender_in.next().await {
      echoes.fetch_add(1, Ordering::Relaxed);
    }
  });
  let echoes_before = sender_echoes.load(Ordering::SeqCst);

  let cpu = CpuWindow::start(cpu_pid);
  let t0 = Instant::now();
  emit_event("start");
  for seq in 0..messages {
    sink.feed(Message::text(format!("{{\"type\":\"msg\",\"seq\":{seq}}}"))).await?;
  }
  sink.flush().await?;
  let sent = t0.elapsed();

  let notified = shared.all_finished.notified();
  if shared.finished.load(Ordering::SeqCst) < receivers {
    let limit = Duration::from_secs(opts.num("deliver-timeout", 60.0f64)? as u64);
    if tokio::time::timeout(limit, notified).await.is_err() {
      return Err(
        format!(
          "only {} of {receivers} receivers got all {messages} messages within {limit:?}",
          shared.finished.load(Ordering::SeqCst)
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
    .num("echoes_to_sender", sender_echoes.load(Ordering::SeqCst) - echoes_before)
    .float("send_ms", sent.as_secs_f64() * 1000.0)
    .float("last_delivery_ms", elapsed * 1000.0)
    .float("delivered_per_sec", delivered as f64 / elapsed)
    .float("server_us_per_delivery", server_cpu.ns as f64 / 1000.0 / delivered as f64)
    .cpu_use(&cpu, &server_cpu, &own_cpu, elapsed)
    .emit();
  drop(tasks);
  Ok(())
}

async fn receive(mut ws: Ws, messages: u64, shared: Arc<Shared>) -> Result<Ws, BoxError> {
  let mut synced = false;
  let mut got = 0u64;
  while let Some(message) = ws.next().await {
    let text = match message? {
      Message::Text(text) => text,
      Message::Close(frame) => return Err(format!("the server closed: {frame:?}").into()),
      _ => continue,
    };
    if text.as_bytes().starts_with(b"{\"type\":\"sync\"") {
      if !synced {
        synced = true;
        shared.synced.fetch_add(1, Ordering::SeqCst);
      }
      continue;
    }
    got += 1;
    if got == messages {
      let now = Instant::now();
      {
        let mut last = shared.last_delivery.lock().unwrap();
        if last.map_or(true, |l| now > l) {
          *last = Some(now);
        }
      }
      if shared.finished.fetch_add(1, Ordering::SeqCst) + 1 == shared.receivers {
        shared.all_finished.notify_one();
      }
      // Keep the connection open (and read) until the process ends.
    }
  }
  Ok(ws)
}
