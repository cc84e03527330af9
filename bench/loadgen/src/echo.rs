//! `echo`: N connections, each keeping K small JSON texts in flight. Every
//! reply is checked (its `seq` must be the oldest one outstanding) and timed;
//! each batch of replies read at once is answered by as many new messages in
//! one write.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

struct ConnStats {
  replies: u64,
  hist: Histogram,
}

pub async fn run(opts: &Opts) -> Result<(), BoxError> {
  let url = opts.str("url", "ws://127.0.0.1:8080/");
  let connections: usize = opts.num("connections", 100)?;
  let inflight: usize = opts.num("inflight", 16)?;
  let warmup = opts.secs("warmup", 1.0)?;
  let duration = opts.secs("duration", 10.0)?;
  let cpu_pid = opts.cpu_pid()?;
  // Samples of the server's RSS (`--rss-every` seconds) for the leak check.
  let rss_every: f64 = opts.num("rss-every", 0.0)?;
  let _stdin = watch_stdin(true);

  let sockets = connect_many(&url, connections, 100, small_config()).await?;
  emit(&format!("{{\"event\":\"ready\",\"connections\":{connections}}}"));

  let epoch = Instant::now();
  let phase = Arc::new(AtomicU8::new(WARMUP));
  let mut tasks = Vec::with_capacity(connections);
  for ws in sockets {
    tasks.push(tokio::spawn(drive(ws, inflight, phase.clone(), epoch)));
  }

  tokio::time::sleep(warmup).await;
  let cpu = CpuWindow::start(cpu_pid);
  phase.store(MEASURE, Ordering::SeqCst);
  let started = Instant::now();
  emit_event("start");

  if rss_every > 0.0 {
    if let Some(pid) = cpu_pid {
      let step = std::time::Duration::from_secs_f64(rss_every);
      let mut next = started + step;
      while next <= started + duration {
        tokio::time::sleep_until(next.into()).await;
        let t = started.elapsed().as_secs_f64();
        JsonObj::new("rss").float("t", t).num("rss", rss_of(pid)).emit();
        next += step;
      }
    }
  }
  tokio::time::sleep_until((started + duration).into()).await;

  phase.store(DONE, Ordering::SeqCst);
  let (server_cpu, own_cpu) = cpu.stop();
  let elapsed = started.elapsed().as_secs_f64();
  emit_event("stop");

  let mut total = ConnStats { replies: 0, hist: Histogram::new() };
  let mut failed = 0;
  let mut first_error = String::new();
  for task in tasks {
    // A task ends at its next reply after DONE; a stalled server must not
    // hang us.
    match tokio::time::timeout(std::time::Duration::from_secs(5), task).await {
      Ok(Ok(Ok(stats))) => {
        total.replies += stats.replies;
        total.hist.merge(&stats.hist);
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

  let msgs_per_sec = total.replies as f64 / elapsed;
  let server_us_per_msg = server_cpu.ns as f64 / 1000.0 / total.replies.max(1) as f64;
  JsonObj::new("result")
    .num("messages", total.replies)
    .float("seconds", elapsed)
    .float("msgs_per_sec", msgs_per_sec)
    .num("p50_us", total.hist.percentile(50.0))
    .num("p99_us", total.hist.percentile(99.0))
    .num("max_us", total.hist.max())
    .num("samples", total.hist.count())
    .float("server_us_per_msg", server_us_per_msg)
    .tls()
    .cpu_use(&cpu, &server_cpu, &own_cpu, elapsed)
    .emit();
  Ok(())
}

fn rss_of(pid: u32) -> u64 {
  let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
  status
    .lines()
    .find_map(|l| l.strip_prefix("VmRSS:"))
    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    .map(|kb| kb * 1024)
    .unwrap_or(0)
}

fn ping(seq: u64, epoch: Instant) -> Message {
  let t = epoch.elapsed().as_micros();
  Message::text(format!("{{\"type\":\"ping\",\"seq\":{seq},\"t\":{t}}}"))
}

async fn drive(
  mut ws: Ws,
  inflight: usize,
  phase: Arc<AtomicU8>,
  epoch: Instant,
) -> Result<ConnStats, BoxError> {
  let mut stats = ConnStats { replies: 0, hist: Histogram::new() };
  let mut outstanding: VecDeque<(u64, Instant)> = VecDeque::with_capacity(inflight);
  let mut seq = 0u64;

  for _ in 0..inflight {
    outstanding.push_back((seq, Instant::now()));
    ws.feed(ping(seq, epoch)).await?;
    seq += 1;
  }
  ws.flush().await?;

  loop {
    let mut answered = 0;
    let mut next = ws.next().await;
    loop {
      let message = match next {
        Some(Ok(message)) => message,
        Some(Err(e)) => return Err(e.into()),
        None => return Err("the server closed the connection".into()),
      };
      match message {
        Message::Text(text) => {
          let (want, sent) =
            outstanding.pop_front().ok_or("a reply to a message that was not sent")?;
          match json_number(text.as_bytes(), b"\"seq\":") {
            Some(got) if got == want => {}
            got => {
              return Err(format!("expected the echo of seq {want}, got {got:?}: {text}").into())
            }
          }
          if phase.load(Ordering::Relaxed) == MEASURE {
            stats.replies += 1;
            stats.hist.record(sent.elapsed().as_micros() as u64);
          }
          answered += 1;
        }
        Message::Close(frame) => return Err(format!("the server closed: {frame:?}").into()),
        Message::Binary(_) => return Err("a binary reply to a text message".into()),
        _ => {}
      }
      // Take every reply that is already here before writing.
      match ws.next().now_or_never() {
        Some(more) => next = more,
        None => break,
      }
    }
    if phase.load(Ordering::Relaxed) == DONE {
      return Ok(stats);
    }
    if answered > 0 {
      for _ in 0..answered {
        outstanding.push_back((seq, Instant::now()));
        ws.feed(ping(seq, epoch)).await?;
        seq += 1;
      }
      ws.flush().await?;
    }
  }
}
