//! `fanout`: R receivers connect, then one sender. The sender sends `sync`
//! messages until every receiver got one (so the server has registered them
//! all), then M small messages as fast as it can; the server broadcasts each
//! to everybody else. Measured: from the sender's first message to the last
//! delivery of the last one to every receiver.
//!
//! For the cluster scenario: `--url` may list several servers, comma
//! separated (receivers spread over them in turn; the sender connects to
//! `--sender-url`, by default the first); `--latency 1` also measures each
//! delivery's time from the send of its message (the sender notes when it
//! queued each `seq`; p50/p99/max in the result); `--rate N` paces the
//! messages at N per second (0, the default: a burst); `--more-cpu-pids P,P`
//! adds other processes (the other nodes, Redis) to the server's CPU; and
//! `--protocol socketio` speaks Engine.IO v4 / socket.io over WebSocket to a
//! socket.io server (the URL's path is then `/socket.io/?EIO=4&transport=websocket`):
//! namespace connect `40`, events `42["message",<json>]`, pings `2`
//! answered `3`; the JSON is the same.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

#[derive(Clone, Copy, PartialEq)]
enum Proto {
  Ws,
  SocketIo,
}

impl Proto {
  fn frame(self, json: &str) -> Message {
    match self {
      Proto::Ws => Message::text(json),
      Proto::SocketIo => Message::text(format!("42[\"message\",{json}]")),
    }
  }
}

/// Connects and, for socket.io, joins the namespace `/`.
async fn open(url: &str, proto: Proto) -> Result<Ws, BoxError> {
  let mut ws = connect(url, small_config()).await?;
  if proto == Proto::SocketIo {
    let mut opened = false;
    loop {
      let text = match ws.next().await {
        Some(Ok(Message::Text(text))) => text,
        Some(Ok(Message::Close(frame))) => {
          return Err(format!("socket.io closed: {frame:?}").into())
        }
        Some(Ok(_)) => continue,
        Some(Err(e)) => return Err(e.into()),
        None => return Err("socket.io closed during the handshake".into()),
      };
      if !opened && text.as_bytes().first() == Some(&b'0') {
        opened = true;
        ws.send(Message::text("40")).await?;
      } else if text.as_str() == "2" {
        ws.send(Message::text("3")).await?;
      } else if opened && text.as_bytes().starts_with(b"40") {
        return Ok(ws);
      } else if text.as_bytes().starts_with(b"44") {
        return Err(format!("socket.io refused the namespace: {}", text.as_str()).into());
      }
    }
  }
  Ok(ws)
}

struct Shared {
  base: Instant,
  /// ns after `base` at which each seq was queued (0: not yet).
  sent_ns: Vec<AtomicU64>,
  latency: Option<Mutex<Histogram>>,
  synced: AtomicUsize,
  finished: AtomicUsize,
  all_finished: Notify,
  last_delivery: Mutex<Option<Instant>>,
  receivers: usize,
}

pub async fn run(opts: &Opts) -> Result<(), BoxError> {
  let urls: Vec<String> = opts
    .str("url", "ws://127.0.0.1:8080/")
    .split(',')
    .map(|u| u.trim().to_string())
    .filter(|u| !u.is_empty())
    .collect();
  let sender_url = opts.str("sender-url", &urls[0]);
  let receivers: usize = opts.num("receivers", 1000)?;
  let messages: u64 = opts.num("messages", 2000)?;
  let cpu_pid = opts.cpu_pid()?;
  let more_pids: Vec<u32> = opts
    .str("more-cpu-pids", "")
    .split(',')
    .filter(|p| !p.trim().is_empty())
    .map(|p| p.trim().parse::<u32>().map_err(|_| format!("--more-cpu-pids: {p:?}")))
    .collect::<Result<_, _>>()?;
  let measure_latency = opts.num("latency", 0u8)? != 0;
  // Messages per second; 0: a burst, as fast as the sender can.
  let rate: f64 = opts.num("rate", 0.0f64)?;
  let proto = match opts.str("protocol", "ws").as_str() {
    "ws" => Proto::Ws,
    "socketio" => Proto::SocketIo,
    other => return Err(format!("--protocol: {other:?} is not ws or socketio").into()),
  };
  let _stdin = watch_stdin(true);

  let next = std::cell::Cell::new(0usize);
  let sockets = open_many(receivers, 100, || {
    let i = next.get();
    next.set(i + 1);
    open(&urls[i % urls.len()], proto)
  })
  .await?;
  let mut sender = open(&sender_url, proto).await?;
  emit(&format!("{{\"event\":\"ready\",\"receivers\":{receivers}}}"));

  let shared = Arc::new(Shared {
    base: Instant::now(),
    sent_ns: if measure_latency {
      (0..messages).map(|_| AtomicU64::new(0)).collect()
    } else {
      Vec::new()
    },
    latency: measure_latency.then(|| Mutex::new(Histogram::new())),
    synced: AtomicUsize::new(0),
    finished: AtomicUsize::new(0),
    all_finished: Notify::new(),
    last_delivery: Mutex::new(None),
    receivers,
  });
  let mut tasks = Vec::with_capacity(receivers);
  for ws in sockets {
    tasks.push(tokio::spawn(receive(ws, messages, shared.clone(), proto)));
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
    sender.send(proto.frame("{\"type\":\"sync\"}")).await?;
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

  let more_cpu: Vec<CpuSnapshot> = more_pids.iter().map(|&p| cpu_snapshot(p)).collect();
  let cpu = CpuWindow::start(cpu_pid);
  let t0 = Instant::now();
  emit_event("start");
  for seq in 0..messages {
    if rate > 0.0 {
      // Paced: message `seq` at t0 + seq / rate, each flushed at once.
      tokio::time::sleep_until((t0 + Duration::from_secs_f64(seq as f64 / rate)).into()).await;
    }
    if measure_latency {
      // At least 1: 0 means "not sent yet".
      let ns = (shared.base.elapsed().as_nanos() as u64).max(1);
      shared.sent_ns[seq as usize].store(ns, Ordering::Relaxed);
    }
    let frame = proto.frame(&format!("{{\"type\":\"msg\",\"seq\":{seq}}}"));
    if rate > 0.0 {
      sink.send(frame).await?;
    } else {
      sink.feed(frame).await?;
    }
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
  let (mut server_cpu, own_cpu) = cpu.stop();
  for (snap, &pid) in more_cpu.iter().zip(&more_pids) {
    let d = snap.until(&cpu_snapshot(pid));
    server_cpu.ns += d.ns;
    server_cpu.user_ms += d.user_ms;
    server_cpu.sys_ms += d.sys_ms;
  }
  emit_event("stop");
  let last = shared.last_delivery.lock().unwrap().unwrap_or_else(Instant::now);
  let elapsed = last.saturating_duration_since(t0).as_secs_f64();
  let delivered = receivers as u64 * messages;

  let (p50, p99, max, samples) = match &shared.latency {
    Some(h) => {
      let h = h.lock().unwrap();
      (h.percentile(50.0) as f64, h.percentile(99.0) as f64, h.max() as f64, h.count())
    }
    None => (f64::NAN, f64::NAN, f64::NAN, 0),
  };
  JsonObj::new("result")
    .num("receivers", receivers)
    .num("servers", urls.len())
    .float("rate", rate)
    .float("p50_us", p50)
    .float("p99_us", p99)
    .float("max_us", max)
    .num("latency_samples", samples)
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

async fn receive(
  mut ws: Ws,
  messages: u64,
  shared: Arc<Shared>,
  proto: Proto,
) -> Result<Ws, BoxError> {
  let mut synced = false;
  let mut got = 0u64;
  while let Some(message) = ws.next().await {
    let text = match message? {
      Message::Text(text) => text,
      Message::Close(frame) => return Err(format!("the server closed: {frame:?}").into()),
      _ => continue,
    };
    let mut json = text.as_bytes();
    if proto == Proto::SocketIo {
      if json == b"2" {
        ws.send(Message::text("3")).await?;
        continue;
      }
      match json.strip_prefix(b"42[\"message\",").and_then(|j| j.strip_suffix(b"]")) {
        Some(j) => json = j,
        None => continue,
      }
    }
    if json.starts_with(b"{\"type\":\"sync\"") {
      if !synced {
        synced = true;
        shared.synced.fetch_add(1, Ordering::SeqCst);
      }
      continue;
    }
    got += 1;
    if let Some(latency) = &shared.latency {
      if let Some(seq) = json_number(json, b"\"seq\":") {
        let sent = shared.sent_ns.get(seq as usize).map_or(0, |s| s.load(Ordering::Relaxed));
        if sent > 0 {
          let now = shared.base.elapsed().as_nanos() as u64;
          latency.lock().unwrap().record(now.saturating_sub(sent) / 1000);
        }
      }
    }
    if got == messages {
      let now = Instant::now();
      {
        let mut last = shared.last_delivery.lock().unwrap();
        if last.is_none_or(|l| now > l) {
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
