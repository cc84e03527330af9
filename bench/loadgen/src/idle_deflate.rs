//! `idle-deflate`: open N connections offering permessage-deflate; each
//! sends one graph update (`graph_update`) and reads its echo, so that the
//! server has compressed and inflated on it once; then hold them (answering
//! pings) until `stop` arrives on stdin (or stdin ends).

use std::time::Instant;

use crate::common::*;
use crate::deflate_client::{describe, DeflateWs};
use crate::graph_update::graph_update;

pub async fn run(opts: &Opts) -> Result<(), BoxError> {
  let url = opts.str("url", "ws://127.0.0.1:8080/");
  let connections: usize = opts.num("connections", 10_000)?;
  let parallel: usize = opts.num("parallel", 200)?;
  let stdin = watch_stdin(false);

  let t0 = Instant::now();
  let sockets = open_many(connections, parallel, || async {
    let ws = DeflateWs::connect(&url).await?;
    exchange(ws).await
  })
  .await?;
  let seconds = t0.elapsed().as_secs_f64();
  let negotiated = describe(sockets[0].deflate);
  for mut ws in sockets {
    tokio::spawn(async move { while ws.next().await.is_ok() {} });
  }
  JsonObj::new("open")
    .num("connections", connections)
    .float("seconds", seconds)
    .str("deflate", negotiated)
    .emit();

  stdin.stop.notified().await;
  emit_event("closing");
  Ok(())
}

/// One update sent and its echo checked.
async fn exchange(mut ws: DeflateWs) -> Result<DeflateWs, BoxError> {
  let update = graph_update(0);
  ws.queue(update.as_bytes(), true)?;
  ws.flush().await?;
  let reply = ws.next().await?;
  if reply.data != update.as_bytes() {
    return Err(format!("the echo differs from the update ({} bytes)", reply.data.len()).into());
  }
  Ok(ws)
}
