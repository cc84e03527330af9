//! The server side of the opening handshake, in steps so that JS can decide
//! in the middle (`verifyClient`, `handleProtocols`): read the request,
//! check it, then answer 101 or refuse. tungstenite parses the request and
//! builds the 101 answer; we only add the pause for JS.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::machine::TryParse;
use tokio_tungstenite::tungstenite::handshake::server::{
  create_response, write_response, Request, Response,
};
use tokio_tungstenite::tungstenite::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::deflate::negotiation::{self, ServerSettings};
use crate::deflate::Agreement;

/// The largest request head we read; browsers send well under 8 KiB.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// A request head read off the stream, and the bytes after it (the first
/// frames, when the client did not wait for our answer).
pub struct Upgrade {
  pub request: Request,
  pub leftover: Vec<u8>,
}

/// What to answer a request with, when it is not a 101.
pub struct Refusal {
  pub status: u16,
  pub body: String,
  pub headers: Vec<(String, String)>,
}

impl Refusal {
  pub fn bad_request(body: impl Into<String>) -> Refusal {
    Refusal { status: 400, body: body.into(), headers: Vec::new() }
  }

  /// A refusal JS decided on, its headers as `[name, value, ...]`. A status
  /// out of range answers 500.
  pub fn from_js(status: u32, body: String, headers: &[String]) -> Refusal {
    let headers = headers.chunks_exact(2).map(|pair| (pair[0].clone(), pair[1].clone())).collect();
    Refusal { status: u16::try_from(status).unwrap_or(500), body, headers }
  }
}

/// Reads one request head. `None` when the client leaves or sends too much
/// or something that is not HTTP (answered 400 by the caller).
pub async fn read_request<S: AsyncRead + Unpin>(
  stream: &mut S,
) -> Result<Upgrade, Option<Refusal>> {
  let mut buffer = Vec::with_capacity(1024);
  loop {
    let mut chunk = [0u8; 1024];
    let read = stream.read(&mut chunk).await.map_err(|_| None)?;
    if read == 0 {
      return Err(None);
    }
    buffer.extend_from_slice(&chunk[..read]);
    match Request::try_parse(&buffer) {
      Ok(Some((length, request))) => {
        let leftover = buffer.split_off(length);
        return Ok(Upgrade { request, leftover });
      }
      Ok(None) if buffer.len() < MAX_REQUEST_HEAD => continue,
      Ok(None) => return Err(Some(Refusal::bad_request("Request head too large"))),
      Err(error) => return Err(Some(Refusal::bad_request(error.to_string()))),
    }
  }
}

/// The subprotocols a client offers, in order, across repeated headers.
pub fn offered_protocols(request: &Request) -> Vec<String> {
  request
    .headers()
    .get_all("sec-websocket-protocol")
    .iter()
    .filter_map(|value| value.to_str().ok())
    .flat_map(|list| list.split(','))
    .map(str::trim)
    .filter(|protocol| !protocol.is_empty())
    .map(str::to_owned)
    .collect()
}

/// The 101 answer, with `protocol` when one was chosen and permessage-deflate
/// when `deflate` allows it and the client offers it (with what was agreed);
/// a refusal when the request is not a valid WebSocket upgrade.
pub fn accept_response(
  request: &Request,
  protocol: &str,
  deflate: Option<ServerSettings>,
) -> Result<(Vec<u8>, Option<Agreement>), Refusal> {
  answer(valid_upgrade(request)?, request, protocol, deflate)
}

/// Checks that `request` is a valid WebSocket upgrade, and makes the 101
/// answer to it without a subprotocol or extensions, which `answer` adds
/// once they are chosen.
pub fn valid_upgrade(request: &Request) -> Result<Response, Refusal> {
  check_request(request)?;
  create_response(request).map_err(|error| Refusal::bad_request(error.to_string()))
}

/// `accept_response`, from the answer `valid_upgrade` made for `request`.
pub fn answer(
  mut response: Response,
  request: &Request,
  protocol: &str,
  deflate: Option<ServerSettings>,
) -> Result<(Vec<u8>, Option<Agreement>), Refusal> {
  if !protocol.is_empty() {
    let value =
      HeaderValue::from_str(protocol).map_err(|error| Refusal::bad_request(error.to_string()))?;
    response.headers_mut().insert("sec-websocket-protocol", value);
  }
  let offers = header_values(request.headers(), "sec-websocket-extensions");
  let accepted = deflate.and_then(|settings| negotiation::accept_offer(&offers, settings));
  let agreement = accepted.map(|(agreement, answer)| {
    // Built of our own ASCII text.
    if let Ok(value) = HeaderValue::from_str(&answer) {
      response.headers_mut().insert("sec-websocket-extensions", value);
    }
    agreement
  });
  let mut bytes = Vec::with_capacity(224);
  write_response(&mut bytes, &response).map_err(|error| Refusal::bad_request(error.to_string()))?;
  Ok((bytes, agreement))
}

/// The values of every `name` header that is text.
pub fn header_values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
  headers.get_all(name).iter().filter_map(|value| value.to_str().ok()).collect()
}

/// What RFC 6455 4.2.1-2 asks that tungstenite's `create_response` does not
/// check: one Host header, one Sec-WebSocket-Key, and a version we speak,
/// or else 426 naming it (4.4). A missing version is left to tungstenite.
fn check_request(request: &Request) -> Result<(), Refusal> {
  let headers = request.headers();
  let mut versions = headers.get_all("sec-websocket-version").iter();
  if let Some(version) = versions.next() {
    if version != "13" || versions.next().is_some() {
      return Err(Refusal {
        status: 426,
        body: "Unsupported WebSocket version: this server speaks version 13".to_owned(),
        headers: vec![("Sec-WebSocket-Version".to_owned(), "13".to_owned())],
      });
    }
  }
  if headers.get_all("host").iter().count() != 1 {
    return Err(Refusal::bad_request("A WebSocket upgrade needs one Host header"));
  }
  if headers.get_all("sec-websocket-key").iter().count() > 1 {
    return Err(Refusal::bad_request("A WebSocket upgrade needs one Sec-WebSocket-Key header"));
  }
  Ok(())
}

/// Writes a refusal as a complete HTTP response and flushes it.
pub async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, refusal: &Refusal) -> io::Result<()> {
  stream.write_all(&refusal_response(refusal)).await?;
  stream.flush().await
}

/// The bytes of an HTTP refusal, for a standalone server's stream and for
/// the sockets of an attached one (lib/attach.js): one writer for both.
pub fn refusal_response(refusal: &Refusal) -> Vec<u8> {
  // Fails closed: a header that is not a valid field (a name that is not a
  // token, a value with a line break) is never written; the refusal
  // becomes a 500 instead. JS reports it before it gets here.
  let valid = |(name, value): &(String, String)| {
    HeaderName::from_bytes(name.as_bytes()).is_ok() && HeaderValue::from_str(value).is_ok()
  };
  let internal;
  let refusal = if refusal.headers.iter().all(valid) {
    refusal
  } else {
    internal = Refusal { status: 500, body: "Internal Server Error".into(), headers: Vec::new() };
    &internal
  };
  let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST);
  let mut head = format!(
    "HTTP/1.1 {} {}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n",
    status.as_u16(),
    status.canonical_reason().unwrap_or(""),
    refusal.body.len()
  );
  for (name, value) in &refusal.headers {
    head.push_str(&format!("{name}: {value}\r\n"));
  }
  head.push_str("\r\n");
  let mut response = head.into_bytes();
  response.extend_from_slice(refusal.body.as_bytes());
  response
}
