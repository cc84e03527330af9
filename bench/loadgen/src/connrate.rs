//! `connrate`: new connections per second. `--concurrency` workers, each in
//! a loop: TCP connect (from the source addresses of `--sources` in turn,
//! against running out of ports), the WebSocket upgrade (after the TLS
//! handshake, for wss://), one small JSON text, its echo, then the close
//! handshake, after which the worker waits for the server to close TCP
//! (RFC 6455: the server closes first, so TIME_WAIT stays with it) and
//! starts again. After `--warmup` seconds, the connections completed
//! within `--duration` seconds are counted, with the time from the start
//! of connect to the first echo (and to the open WebSocket) of each, and
//! the server's CPU per connection (`--cpu-pid`).

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

#[derive(Default)]
struct Tally {
  completed: u64,
  failed: u64,
  first_error: Option<String>,
  /// The server did not close TCP within a second of the close handshake.
  late_closes: u64,
}

struct WorkerStats {
  tally: Tally,
  echo: Histogram,
  open: Histogram,
}

/// `127.0.0.2-9` (the last octet ranges), a comma-separated list, or `none`.
fn parse_sources(spec: &str) -> Result<Vec<Ipv4Addr>, BoxError> {
  if spec == "none" || spec.is_empty() {
    return Ok(Vec::new());
  }
  let mut out = Vec::new();
  for part in spec.split(',') {
    match part.split_once('-') {
      Some((first, last)) => {
        let first: Ipv4Addr = first.parse().map_err(|_| format!("--sources: {part:?}"))?;
        let last: u8 = last.parse().map_err(|_| format!("--sources: {part:?}"))?;
        let [a, b, c, d] = first.octets();
        for x in d..=last {
          out.push(Ipv4Addr::new(a, b, c, x));
        }
      }
      None => out.push(part.parse().map_err(|_| format!("--sources: {part:?}"))?),
    }
  }
  Ok(out)
}

pub async fn run(opts: &Opts) -> Result<(), BoxError> {
  let url = opts.str("url", "ws://127.0.0.1:8080/");
  let concurrency: usize = opts.num("concurrency", 50)?;
  let warmup = opts.secs("warmup", 1.0)?;
  let duration = opts.secs("duration", 10.0)?;
  let conn_timeout = opts.secs("conn-timeout", 10.0)?;
  let cpu_pid = opts.cpu_pid()?;
  let sources = Arc::new(parse_sources(&opts.str("sources", "127.0.0.2-9"))?);
  let _stdin = watch_stdin(true);

  // One connection first: an error here (refused, a bad certificate) is the
  // run's, not a count.
  once(&url, sources.first().copied(), conn_timeout).await?;
  emit_event("ready");

  let phase = Arc::new(AtomicU8::new(WARMUP));
  let turn = Arc::new(AtomicUsize::new(0));
  let mut tasks = Vec::with_capacity(concurrency);
  for _ in 0..concurrency {
    let (url, sources, phase, turn) = (url.clone(), sources.clone(), phase.clone(), turn.clone());
    tasks.push(tokio::spawn(async move {
      let mut stats =
        WorkerStats { tally: Tally::default(), echo: Histogram::new(), open: Histogram::new() };
      loop {
        let started_in = phase.load(Ordering::Relaxed);
        if started_in == DONE {
          return stats;
        }
        let source = (!sources.is_empty())
          .then(|| sources[turn.fetch_add(1, Ordering::Relaxed) % sources.len()]);
        let outcome = once(&url, source, conn_timeout).await;
        // Counted when it began and ended within the window.
        if started_in != MEASURE || phase.load(Ordering::Relaxed) != MEASURE {
          if let Err(e) = outcome {
            // Outside the window: a failure still shows, not counted.
            if stats.tally.first_error.is_none() && started_in == MEASURE {
              stats.tally.first_error = Some(e.to_string());
            }
          }
          continue;
        }
        match outcome {
          Ok(times) => {
            stats.tally.completed += 1;
            stats.open.record(times.open.as_micros() as u64);
            stats.echo.record(times.echo.as_micros() as u64);
            if times.late_close {
              stats.tally.late_closes += 1;
            }
          }
          Err(e) => {
            stats.tally.failed += 1;
            if stats.tally.first_error.is_none() {
              stats.tally.first_error = Some(e.to_string());
            }
            // A refused connection comes back at once: do not spin.
            tokio::time::sleep(Duration::from_millis(1)).await;
          }
        }
      }
    }));
  }

  let Measured { cpu, server_cpu, own_cpu, elapsed } =
    measure_window(&phase, warmup, duration, cpu_pid).await;

  let mut tally = Tally::default();
  let mut echo = Histogram::new();
  let mut open = Histogram::new();
  for task in tasks {
    match tokio::time::timeout(conn_timeout + Duration::from_secs(2), task).await {
      Ok(Ok(stats)) => {
        tally.completed += stats.tally.completed;
        tally.failed += stats.tally.failed;
        tally.late_closes += stats.tally.late_closes;
        if tally.first_error.is_none() {
          tally.first_error = stats.tally.first_error;
        }
        echo.merge(&stats.echo);
        open.merge(&stats.open);
      }
      _ => tally.failed += 1,
    }
  }
  if tally.completed == 0 {
    let why = tally.first_error.unwrap_or_else(|| "none completed".into());
    return Err(format!("no connection completed in the window: {why}").into());
  }

  let error = tally.first_error.unwrap_or_default().replace(['"', '\\', '\n'], " ");
  JsonObj::new("result")
    .num("connections", tally.completed)
    .num("failed", tally.failed)
    .str("first_error", &error)
    .num("late_closes", tally.late_closes)
    .num("concurrency", concurrency)
    .num("sources", sources.len())
    .float("seconds", elapsed)
    .float("conns_per_sec", tally.completed as f64 / elapsed)
    .num("p50_us", echo.percentile(50.0))
    .num("p99_us", echo.percentile(99.0))
    .num("max_us", echo.max())
    .num("open_p50_us", open.percentile(50.0))
    .num("open_p99_us", open.percentile(99.0))
    .float("server_us_per_conn", server_cpu.ns as f64 / 1000.0 / tally.completed as f64)
    .float("loadgen_us_per_conn", own_cpu.ns as f64 / 1000.0 / tally.completed as f64)
    .tls()
    .cpu_use(&cpu, &server_cpu, &own_cpu, elapsed)
    .emit();
  Ok(())
}

struct Times {
  open: Duration,
  echo: Duration,
  late_close: bool,
}

/// One connection's life: connect, upgrade, one echo, close.
async fn once(url: &str, source: Option<Ipv4Addr>, limit: Duration) -> Result<Times, BoxError> {
  match tokio::time::timeout(limit, life(url, source)).await {
    Ok(result) => result,
    Err(_) => Err(format!("a connection took over {} s", limit.as_secs_f64()).into()),
  }
}

async fn life(url: &str, source: Option<Ipv4Addr>) -> Result<Times, BoxError> {
  let t0 = Instant::now();
  let mut ws = connect_from(url, small_config(), source).await?;
  let open = t0.elapsed();
  ws.send(Message::text(r#"{"type":"hello","seq":1}"#)).await?;
  loop {
    match ws.next().await {
      Some(Ok(Message::Text(text))) => {
        if json_number(text.as_bytes(), b"\"seq\":") != Some(1) {
          return Err(format!("not the echo: {text}").into());
        }
        break;
      }
      Some(Ok(Message::Close(frame))) => {
        return Err(format!("the server closed: {frame:?}").into())
      }
      Some(Ok(Message::Binary(_))) => return Err("a binary reply to a text message".into()),
      Some(Ok(_)) => {}
      Some(Err(e)) => return Err(e.into()),
      None => return Err("the server closed the connection".into()),
    }
  }
  let echo = t0.elapsed();
  ws.close(None).await?;
  // The server's close frame; then tungstenite ends the stream.
  let mut close_frame = false;
  let mut close_error = None;
  while let Some(message) = ws.next().await {
    match message {
      Ok(Message::Close(_)) => close_frame = true,
      Ok(_) => {}
      Err(e) => {
        close_error = Some(e.to_string());
        break;
      }
    }
  }
  if !close_frame {
    let why = close_error.unwrap_or_else(|| "the stream ended".into());
    return Err(format!("no close frame from the server: {why}").into());
  }
  // The server closes TCP (TLS: after its close_notify): wait for it, so
  // that the TIME_WAIT is the server's and our port is free at once.
  let mut stream = ws.into_inner();
  let mut buf = [0u8; 256];
  let late_close = loop {
    match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
      Ok(Ok(0)) | Ok(Err(_)) => break false,
      Ok(Ok(_)) => {}
      Err(_) => break true,
    }
  };
  Ok(Times { open, echo, late_close })
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn parses_sources() {
    let all = parse_sources("127.0.0.2-9").unwrap();
    assert_eq!(all.len(), 8);
    assert_eq!(all[0], Ipv4Addr::new(127, 0, 0, 2));
    assert_eq!(all[7], Ipv4Addr::new(127, 0, 0, 9));
    assert_eq!(parse_sources("127.0.0.5,127.0.0.7").unwrap().len(), 2);
    assert!(parse_sources("none").unwrap().is_empty());
    assert!(parse_sources("x").is_err());
  }
}
