//! A client connection's transport: TCP to the URL's host and port, and TLS
//! for `wss://`. The opening handshake then runs over our own stream
//! (server_stream.rs), which is why tokio-tungstenite's `connect` (which
//! puts its own stream under tungstenite) is not used.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::error::{TlsError, UrlError};
use tokio_tungstenite::tungstenite::http::Request;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::MaybeTlsStream;

/// Connects to where `request` goes; `tls` is the configuration for a
/// `wss://` URL (`None` for `ws://`).
pub async fn open(
  request: &Request<()>,
  tls: Option<Arc<ClientConfig>>,
) -> Result<MaybeTlsStream<TcpStream>, WsError> {
  let uri = request.uri();
  let host = uri.host().ok_or(WsError::Url(UrlError::NoHostName))?;
  // An IPv6 address comes in brackets.
  let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
  let default_port = if tls.is_some() { 443 } else { 80 };
  let port = uri.port_u16().unwrap_or(default_port);
  let tcp = TcpStream::connect((host, port)).await?;
  // Messages are written whole; Nagle would only delay them.
  tcp.set_nodelay(true)?;
  let Some(config) = tls else { return Ok(MaybeTlsStream::Plain(tcp)) };
  let name = ServerName::try_from(host.to_owned()).map_err(|_| TlsError::InvalidDnsName)?;
  let tls = TlsConnector::from(config).connect(name, tcp).await?;
  Ok(MaybeTlsStream::Rustls(tls))
}
