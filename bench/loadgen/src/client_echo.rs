//! `client-echo`: a fast echo server for the client scenario. Every frame
//! read is fed back as it came (text as text); replies to everything already
//! read leave in one write. Ends when stdin ends.

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::accept_async_with_config;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

pub async fn run(opts: &Opts) -> Result<(), BoxError> {
  let host = opts.str("host", "127.0.0.1");
  let port: u16 = opts.num("port", 0)?;
  let _stdin = watch_stdin(true);

  let listener = TcpListener::bind((host.as_str(), port)).await?;
  let port = listener.local_addr()?.port();
  JsonObj::new("listening").num("port", port).num("pid", std::process::id()).emit();

  loop {
    let (tcp, _) = listener.accept().await?;
    tcp.set_nodelay(true)?;
    tokio::spawn(async move {
      let config = WebSocketConfig::default().max_message_size(Some(64 << 20));
      let Ok(mut ws) = accept_async_with_config(tcp, Some(config)).await else { return };
      'conn: loop {
        let mut next = ws.next().await;
        loop {
          match next {
            Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
              if ws.feed(message).await.is_err() {
                break 'conn;
              }
            }
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break 'conn,
            Some(Ok(_)) => {}
          }
          match ws.next().now_or_never() {
            Some(more) => next = more,
            None => break,
          }
        }
        if ws.flush().await.is_err() {
          break;
        }
      }
      // Answer a close (tungstenite queues the reply) and let it go out.
      let _ = ws.flush().await;
    });
  }
}
