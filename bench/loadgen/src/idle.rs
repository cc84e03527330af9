//! `idle`: open N connections, say so, and hold them (answering pings) until
//! `stop` arrives on stdin (or stdin ends).

use std::time::Instant;

use futures_util::StreamExt;

use crate::common::*;

pub async fn run(opts: &Opts) -> Result<(), BoxError> {
  let url = opts.str("url", "ws://127.0.0.1:8080/");
  let connections: usize = opts.num("connections", 10_000)?;
  let parallel: usize = opts.num("parallel", 200)?;
  let stdin = watch_stdin(false);

  let t0 = Instant::now();
  // tungstenite's smallest useful buffers: these connections only idle.
  let config = small_config().read_buffer_size(1024);
  let sockets = connect_many(&url, connections, parallel, config).await?;
  let seconds = t0.elapsed().as_secs_f64();
  for mut ws in sockets {
    tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} });
  }
  JsonObj::new("open").num("connections", connections).float("seconds", seconds).emit();

  stdin.stop.notified().await;
  emit_event("closing");
  Ok(())
}
