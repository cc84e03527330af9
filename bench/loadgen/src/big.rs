//! `big`: binary messages of `--size` bytes (1 MiB) echoed over a few
//! connections, `--inflight` per connection; MB/s of echoed payload
//! (10^6 bytes, one direction).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Message};

use crate::common::*;

pub async fn run(opts: &Opts) -> Result<(), BoxError> {
  let url = opts.str("url", "ws://127.0.0.1:8080/");
  let connections: usize = opts.num("connections", 1)?;
  let inflight: usize = opts.num("inflight", 2)?;
  let size: usize = opts.num("size", 1 << 20)?;
  let warmup = opts.secs("warmup", 1.0)?;
  let duration = opts.secs("duration", 5.0)?;
  let cpu_pid = opts.cpu_pid()?;
  let _stdin = watch_stdin(true);

  let config = WebSocketConfig::default().max_message_size(Some(64 << 20));
  let sockets = connect_many(&url, connections, connections, config).await?;
  emit(&format!("{{\"event\":\"ready\",\"connections\":{connections}}}"));

  let payload: Bytes = (0..size).map(|i| (i * 31 % 251) as u8).collect::<Vec<u8>>().into();
  let phase = Arc::new(AtomicU8::new(WARMUP));
  let bytes = Arc::new(AtomicU64::new(0));
  let messages = Arc::new(AtomicU64::new(0));
  let errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));

  for ws in sockets {
    let (mut sink, mut stream) = ws.split();
    let permits = Arc::new(Semaphore::new(inflight));
    let (p2, payload2, errors2) = (permits.clone(), payload.clone(), errors.clone());
    tokio::spawn(async move {
      loop {
        let Ok(permit) = p2.acquire().await else { return };
        permit.forget();
        if let Err(e) = sink.send(Message::Binary(payload2.clone())).await {
          errors2.lock().unwrap().push(e.to_string());
          return;
        }
      }
    });
    let (phase, bytes, messages, errors) =
      (phase.clone(), bytes.clone(), messages.clone(), errors.clone());
    tokio::spawn(async move {
      while let Some(message) = stream.next().await {
        match message {
          Ok(Message::Binary(data)) => {
            if data.len() != size {
              errors.lock().unwrap().push(format!("echo of {} bytes, sent {size}", data.len()));
              return;
            }
            if phase.load(Ordering::Relaxed) == MEASURE {
              bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
              messages.fetch_add(1, Ordering::Relaxed);
            }
            permits.add_permits(1);
          }
          Ok(Message::Close(frame)) => {
            errors.lock().unwrap().push(format!("the server closed: {frame:?}"));
            return;
          }
          Ok(Message::Text(_)) => {
            errors.lock().unwrap().push("a text reply to a binary message".into());
            return;
          }
          Ok(_) => {}
          Err(e) => {
            errors.lock().unwrap().push(e.to_string());
            return;
          }
        }
      }
    });
  }

  let Measured { cpu, server_cpu, own_cpu, elapsed } =
    measure_window(&phase, warmup, duration, cpu_pid).await;
  tokio::time::sleep(Duration::from_millis(1)).await;

  if let Some(e) = errors.lock().unwrap().first() {
    return Err(e.clone().into());
  }
  let bytes = bytes.load(Ordering::SeqCst);
  let messages = messages.load(Ordering::SeqCst);
  JsonObj::new("result")
    .num("messages", messages)
    .num("bytes", bytes)
    .float("seconds", elapsed)
    .float("mb_per_sec", bytes as f64 / 1e6 / elapsed)
    .float("msgs_per_sec", messages as f64 / elapsed)
    .float("server_us_per_mb", server_cpu.ns as f64 / 1000.0 / (bytes as f64 / 1e6).max(1e-9))
    .tls()
    .cpu_use(&cpu, &server_cpu, &own_cpu, elapsed)
    .emit();
  Ok(())
}
