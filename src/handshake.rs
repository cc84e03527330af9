//! The server side of the opening handshake: path routing, the request
//! headers kept for `connection.headers`, and the subprotocol choice.

use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};

/// What the handshake keeps of an accepted request.
pub struct Accepted {
  /// Header names and values, each followed by a NUL, in arrival order:
  /// one small allocation per connection instead of a header map. JS builds
  /// `IncomingMessage`-style headers from it only when they are read.
  pub raw_headers: Box<str>,
  /// The subprotocol we answered with, or "".
  pub protocol: String,
}

/// Checks an upgrade request against `path` (any path when `None`; the
/// query is ignored), picks the first offered subprotocol, and records what
/// `Accepted` keeps. A wrong path is answered 400.
// The error type is tungstenite's, fixed by its `Callback` trait.
#[allow(clippy::result_large_err)]
pub fn accept(
  path: Option<&str>,
  request: &Request,
  mut response: Response,
  accepted: &mut Option<Accepted>,
) -> Result<Response, ErrorResponse> {
  if path.is_some_and(|path| path != request.uri().path()) {
    let mut refusal = ErrorResponse::new(Some("No WebSocket endpoint at this path".into()));
    *refusal.status_mut() = StatusCode::BAD_REQUEST;
    return Err(refusal);
  }

  let mut raw_headers = String::new();
  for (name, value) in request.headers() {
    raw_headers.push_str(name.as_str());
    raw_headers.push('\0');
    raw_headers.push_str(&String::from_utf8_lossy(value.as_bytes()));
    raw_headers.push('\0');
  }

  let protocol = offered_protocols(request).next().unwrap_or_default().to_owned();
  if !protocol.is_empty() {
    if let Ok(value) = HeaderValue::from_str(&protocol) {
      response.headers_mut().insert("sec-websocket-protocol", value);
    }
  }

  *accepted = Some(Accepted { raw_headers: raw_headers.into_boxed_str(), protocol });
  Ok(response)
}

/// The subprotocols a client offers, in order, across repeated headers.
fn offered_protocols(request: &Request) -> impl Iterator<Item = &str> {
  request
    .headers()
    .get_all("sec-websocket-protocol")
    .iter()
    .filter_map(|value| value.to_str().ok())
    .flat_map(|list| list.split(','))
    .map(str::trim)
    .filter(|protocol| !protocol.is_empty())
}
