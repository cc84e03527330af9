//! `echo-deflate`: `echo` with permessage-deflate and ~2 KB graph updates
//! (`graph_update`). N connections keep K messages in flight each; every
//! reply must be, inflated, the very text sent (in order). Besides the
//! server's CPU per message it reports the bytes each message took on the
//! wire, both ways.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::common::*;
use crate::deflate_client::{connect_many, describe, DeflateWs};
use crate::graph_update::graph_update;

#[derive(Default)]
struct Wire {
  sent: u64,
  sent_bytes: u64,
  received: u64,
  received_bytes: u64,
  payload_bytes: u64,
}

struct ConnStats {
  replies: u64,
  hist: Histogram,
  /// Over the whole run, warm-up included: only ratios are reported.
  wire: Wire,
}

pub async fn run(opts: &Opts) -> Result<(), BoxError> {
  let url = opts.str("url", "ws://127.0.0.1:8080/");
  let connections: usize = opts.num("connections", 100)?;
  let inflight: usize = opts.num("inflight", 16)?;
  let warmup = opts.secs("warmup", 1.0)?;
  let duration = opts.secs("duration", 10.0)?;
  let cpu_pid = opts.cpu_pid()?;
  let _stdin = watch_stdin(true);

  let sockets = connect_many(&url, connections, 100).await?;
  let negotiated = describe(sockets[0].deflate);
  emit(&format!(
    "{{\"event\":\"ready\",\"connections\":{connections},\"deflate\":\"{negotiated}\"}}"
  ));

  let phase = Arc::new(AtomicU8::new(WARMUP));
  let mut tasks = Vec::with_capacity(connections);
  for (i, ws) in sockets.into_iter().enumerate() {
    // Connections start at different places in the sequence of updates.
    let first_seq = i as u64 * 1_000_000;
    tasks.push(tokio::spawn(drive(ws, inflight, first_seq, phase.clone())));
  }

  let Measured { cpu, server_cpu, own_cpu, elapsed } =
    measure_window(&phase, warmup, duration, cpu_pid).await;

  let mut replies = 0;
  let mut hist = Histogram::new();
  let mut wire = Wire::default();
  let mut failed = 0;
  let mut first_error = String::new();
  for task in tasks {
    match tokio::time::timeout(std::time::Duration::from_secs(5), task).await {
      Ok(Ok(Ok(stats))) => {
        replies += stats.replies;
        hist.merge(&stats.hist);
        wire.sent += stats.wire.sent;
        wire.sent_bytes += stats.wire.sent_bytes;
        wire.received += stats.wire.received;
        wire.received_bytes += stats.wire.received_bytes;
        wire.payload_bytes += stats.wire.payload_bytes;
      }
      Ok(Ok(Err(e))) => {
        failed += 1;
        if first_error.is_empty() {
          first_error = e.to_string();
        }
      }
      _ => failed += 1,
    }
  }
  if failed > 0 {
    return Err(format!("{failed} of {connections} connections failed: {first_error}").into());
  }

  let up = wire.sent_bytes as f64 / wire.sent.max(1) as f64;
  let down = wire.received_bytes as f64 / wire.received.max(1) as f64;
  JsonObj::new("result")
    .num("messages", replies)
    .float("seconds", elapsed)
    .float("msgs_per_sec", replies as f64 / elapsed)
    .num("p50_us", hist.percentile(50.0))
    .num("p99_us", hist.percentile(99.0))
    .num("max_us", hist.max())
    .float("server_us_per_msg", server_cpu.ns as f64 / 1000.0 / replies.max(1) as f64)
    .float("payload_bytes", wire.payload_bytes as f64 / wire.sent.max(1) as f64)
    .float("up_bytes_per_msg", up)
    .float("down_bytes_per_msg", down)
    .float("wire_bytes_per_msg", up + down)
    .str("deflate", negotiated)
    .cpu_use(&cpu, &server_cpu, &own_cpu, elapsed)
    .emit();
  Ok(())
}

async fn drive(
  mut ws: DeflateWs,
  inflight: usize,
  mut seq: u64,
  phase: Arc<AtomicU8>,
) -> Result<ConnStats, BoxError> {
  let mut stats = ConnStats { replies: 0, hist: Histogram::new(), wire: Wire::default() };
  let mut outstanding: VecDeque<(String, Instant)> = VecDeque::with_capacity(inflight);

  for _ in 0..inflight {
    outstanding.push_back(send(&mut ws, &mut stats.wire, seq)?);
    seq += 1;
  }
  ws.flush().await?;

  loop {
    let mut answered = 0;
    let mut message = ws.next().await?;
    loop {
      if !message.text {
        return Err("a binary reply to a text message".into());
      }
      let (sent, at) = outstanding.pop_front().ok_or("a reply to a message that was not sent")?;
      if message.data != sent.as_bytes() {
        let got = json_number(&message.data, b"\"seq\":");
        let want = json_number(sent.as_bytes(), b"\"seq\":");
        return Err(
          format!(
            "expected the echo of seq {want:?}, got seq {got:?} ({} bytes)",
            message.data.len()
          )
          .into(),
        );
      }
      stats.wire.received += 1;
      stats.wire.received_bytes += message.wire_bytes as u64;
      if phase.load(Ordering::Relaxed) == MEASURE {
        stats.replies += 1;
        stats.hist.record(at.elapsed().as_micros() as u64);
      }
      answered += 1;
      // Take every reply that is already here before writing.
      match ws.try_next()? {
        Some(more) => message = more,
        None => break,
      }
    }
    if phase.load(Ordering::Relaxed) == DONE {
      return Ok(stats);
    }
    for _ in 0..answered {
      outstanding.push_back(send(&mut ws, &mut stats.wire, seq)?);
      seq += 1;
    }
    ws.flush().await?;
  }
}

/// Queues update `seq`; returns it and when it was sent.
fn send(ws: &mut DeflateWs, wire: &mut Wire, seq: u64) -> Result<(String, Instant), BoxError> {
  let text = graph_update(seq);
  wire.sent += 1;
  wire.sent_bytes += ws.queue(text.as_bytes(), true)? as u64;
  wire.payload_bytes += text.len() as u64;
  Ok((text, Instant::now()))
}
