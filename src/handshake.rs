//! The server side of the opening handshake, in steps so that JS can decide
//! in the middle (`verifyClient`, `handleProtocols`): read and check the
//! request, then answer 101 or refuse.
//!
//! httparse reads the request head; its headers go straight into the
//! packed block the connection keeps, and the few the handshake needs are
//! picked out on the way. Going through `http`'s request and header map
//! instead, as tungstenite's own handshake does, cost a connection that
//! sends one message and leaves 6.5 of its 43.5 allocations.

use std::io;

use data_encoding::BASE64;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::deflate::negotiation::{self, ServerSettings};
use crate::deflate::Agreement;
use crate::header_block::HeaderBlock;

/// The largest request head we read; browsers send well under 8 KiB.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// The most headers a request head may have.
const MAX_HEADERS: usize = 124;

/// A request head read off the stream, and the bytes after it (the first
/// frames, when the client did not wait for our answer).
pub struct Upgrade {
  pub request: Request,
  pub leftover: Vec<u8>,
}

/// A valid WebSocket upgrade request (RFC 6455 4.2.1), as far as the rest
/// of the handshake needs it.
pub struct Request {
  /// The request target as sent: path and query.
  pub target: String,
  /// Every header, packed as the connection keeps them.
  pub headers: HeaderBlock,
  /// The subprotocols offered, in order, across repeated headers.
  pub protocols: Vec<String>,
  /// The `Sec-WebSocket-Extensions` values, in order.
  extensions: Vec<String>,
  /// What `Sec-WebSocket-Accept` answers the client's key with.
  accept: String,
}

/// The headers of a request that decide whether it is an upgrade, as
/// they are met.
#[derive(Default)]
struct UpgradeHeaders<'a> {
  hosts: usize,
  connection_upgrade: bool,
  upgrade: Option<&'a [u8]>,
  versions: usize,
  version: Option<&'a [u8]>,
  keys: usize,
  key: Option<&'a [u8]>,
}

impl Request {
  /// Checks a request (its method, HTTP minor version, target and headers
  /// as `(name, value)` in arrival order, names in any case) is a WebSocket
  /// upgrade: a GET of HTTP/1.1 or later with `Connection: Upgrade`,
  /// `Upgrade: websocket`, one Host, one Sec-WebSocket-Key of 16 bytes in
  /// base64, and one Sec-WebSocket-Version, 13 (or else 426 naming 13, RFC
  /// 6455 4.4).
  pub fn check<'a, I>(
    method: &str,
    minor_version: u8,
    target: &str,
    headers: I,
  ) -> Result<Request, Refusal>
  where
    I: Iterator<Item = (&'a str, &'a [u8])> + Clone,
  {
    if method != "GET" {
      return Err(Refusal::bad_request("A WebSocket upgrade is a GET request"));
    }
    if minor_version < 1 {
      return Err(Refusal::bad_request("A WebSocket upgrade needs HTTP/1.1"));
    }
    let mut seen = UpgradeHeaders::default();
    let mut protocols = Vec::new();
    let mut extensions = Vec::new();
    for (name, value) in headers.clone() {
      let is = |known: &str| name.eq_ignore_ascii_case(known);
      if is("host") {
        seen.hosts += 1;
      } else if is("connection") {
        seen.connection_upgrade |= has_token(value, "upgrade");
      } else if is("upgrade") {
        seen.upgrade.get_or_insert(value);
      } else if is("sec-websocket-version") {
        seen.versions += 1;
        seen.version.get_or_insert(value);
      } else if is("sec-websocket-key") {
        seen.keys += 1;
        seen.key.get_or_insert(value);
      } else if is("sec-websocket-protocol") {
        let list = visible_ascii(value).unwrap_or_default();
        let offered = list.split(',').map(str::trim).filter(|protocol| !protocol.is_empty());
        protocols.extend(offered.map(str::to_owned));
      } else if is("sec-websocket-extensions") {
        if let Some(offer) = visible_ascii(value) {
          extensions.push(offer.to_owned());
        }
      }
    }
    let accept = seen.check()?;
    Ok(Request {
      target: target.to_owned(),
      headers: HeaderBlock::pack(headers),
      protocols,
      extensions,
      accept,
    })
  }

  /// The path the request is for: its target without the query.
  pub fn path(&self) -> &str {
    self.target.split_once('?').map_or(&self.target, |(path, _)| path)
  }
}

impl UpgradeHeaders<'_> {
  /// The `Sec-WebSocket-Accept` of a valid upgrade.
  fn check(&self) -> Result<String, Refusal> {
    match self.version {
      None => {
        return Err(Refusal::bad_request("A WebSocket upgrade needs Sec-WebSocket-Version: 13"))
      }
      Some(version) if version != b"13" || self.versions > 1 => {
        return Err(Refusal {
          status: 426,
          body: "Unsupported WebSocket version: this server speaks version 13".to_owned(),
          headers: vec![("Sec-WebSocket-Version".to_owned(), "13".to_owned())],
        })
      }
      Some(_) => {}
    }
    if self.hosts != 1 {
      return Err(Refusal::bad_request("A WebSocket upgrade needs one Host header"));
    }
    if !self.connection_upgrade {
      return Err(Refusal::bad_request("A WebSocket upgrade needs \"Connection: Upgrade\""));
    }
    if !self.upgrade.is_some_and(|upgrade| upgrade.eq_ignore_ascii_case(b"websocket")) {
      return Err(Refusal::bad_request("A WebSocket upgrade needs \"Upgrade: websocket\""));
    }
    let key = match self.key {
      Some(key) if self.keys == 1 => key,
      _ => {
        return Err(Refusal::bad_request("A WebSocket upgrade needs one Sec-WebSocket-Key header"))
      }
    };
    if !BASE64.decode(key).is_ok_and(|nonce| nonce.len() == 16) {
      return Err(Refusal::bad_request("Sec-WebSocket-Key is not 16 bytes in base64"));
    }
    Ok(derive_accept_key(key))
  }
}

/// A header value as text when it is all visible ASCII, as `http`'s
/// `HeaderValue::to_str` takes it: subprotocols and extensions are tokens,
/// and a value with other bytes is ignored.
fn visible_ascii(value: &[u8]) -> Option<&str> {
  let visible = value.iter().all(|&byte| byte == b'\t' || (b' '..=b'~').contains(&byte));
  std::str::from_utf8(value).ok().filter(|_| visible)
}

/// Whether a comma- or space-separated list holds `token` (any case).
fn has_token(list: &[u8], token: &str) -> bool {
  list
    .split(|&byte| byte == b',' || byte == b' ')
    .any(|part| part.eq_ignore_ascii_case(token.as_bytes()))
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

/// Reads one request head and checks it is an upgrade. `Err(None)` when the
/// client leaves; the refusal to answer when it sends too much, or what is
/// not HTTP, or not an upgrade.
pub async fn read_request<S: AsyncRead + Unpin>(
  stream: &mut S,
) -> Result<Upgrade, Option<Refusal>> {
  let mut buffer = Vec::with_capacity(1024);
  loop {
    buffer.reserve(1024);
    if stream.read_buf(&mut buffer).await.map_err(|_| None)? == 0 {
      return Err(None);
    }
    match parse(&buffer).map_err(Some)? {
      Some((length, request)) => {
        let leftover = buffer.split_off(length);
        return Ok(Upgrade { request, leftover });
      }
      None if buffer.len() < MAX_REQUEST_HEAD => continue,
      None => return Err(Some(Refusal::bad_request("Request head too large"))),
    }
  }
}

/// The request whose head `bytes` start with, and the head's length; `None`
/// while the head is not all there.
fn parse(bytes: &[u8]) -> Result<Option<(usize, Request)>, Refusal> {
  let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
  let mut head = httparse::Request::new(&mut headers);
  let length = match head.parse(bytes) {
    Ok(httparse::Status::Complete(length)) => length,
    Ok(httparse::Status::Partial) => return Ok(None),
    Err(error) => return Err(Refusal::bad_request(format!("Invalid HTTP request: {error}"))),
  };
  // Complete: httparse has filled in all three.
  let (method, version, target) = (
    head.method.unwrap_or_default(),
    head.version.unwrap_or_default(),
    head.path.unwrap_or_default(),
  );
  let headers = head.headers.iter().map(|header| (header.name, header.value));
  Ok(Some((length, Request::check(method, version, target, headers)?)))
}

/// The 101 answer to `request`, with `protocol` when one was chosen and
/// permessage-deflate when `deflate` allows it and the client offers it
/// (with what was agreed); a refusal when `protocol` cannot be a header
/// value.
pub fn answer(
  request: &Request,
  protocol: &str,
  deflate: Option<ServerSettings>,
) -> Result<(Vec<u8>, Option<Agreement>), Refusal> {
  let mut response = Vec::with_capacity(160 + protocol.len());
  response.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
  push_header(&mut response, "Connection", "Upgrade");
  push_header(&mut response, "Upgrade", "websocket");
  push_header(&mut response, "Sec-WebSocket-Accept", &request.accept);
  if !protocol.is_empty() {
    if HeaderValue::from_str(protocol).is_err() {
      return Err(Refusal::bad_request("The chosen subprotocol is not a valid header value"));
    }
    push_header(&mut response, "Sec-WebSocket-Protocol", protocol);
  }
  let offers: Vec<&str> = request.extensions.iter().map(String::as_str).collect();
  let accepted = deflate.and_then(|settings| negotiation::accept_offer(&offers, settings));
  let agreement = accepted.map(|(agreement, answer)| {
    push_header(&mut response, "Sec-WebSocket-Extensions", &answer);
    agreement
  });
  response.extend_from_slice(b"\r\n");
  Ok((response, agreement))
}

fn push_header(response: &mut Vec<u8>, name: &str, value: &str) {
  for part in [name, ": ", value, "\r\n"] {
    response.extend_from_slice(part.as_bytes());
  }
}

/// The values of every `name` header that is text.
pub fn header_values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
  headers.get_all(name).iter().filter_map(|value| value.to_str().ok()).collect()
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

#[cfg(test)]
mod tests {
  use super::*;

  const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

  fn check(method: &str, target: &str, headers: &[(&str, &str)]) -> Result<Request, Refusal> {
    Request::check(method, 1, target, headers.iter().map(|&(name, value)| (name, value.as_bytes())))
  }

  fn upgrade(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut headers = vec![
      ("Host", "example.com"),
      ("Connection", "keep-alive, Upgrade"),
      ("UPGRADE", "WebSocket"),
      ("sec-websocket-key", KEY),
      ("Sec-WebSocket-Version", "13"),
    ];
    headers.extend_from_slice(extra);
    headers
  }

  fn status(result: Result<Request, Refusal>) -> u16 {
    result.err().map_or(101, |refusal| refusal.status)
  }

  #[test]
  fn a_valid_upgrade_is_answered_with_the_key_of_rfc_6455() {
    let offers = [
      ("Sec-WebSocket-Protocol", "chat, , superchat"),
      ("Sec-WebSocket-Protocol", "caf\u{e9}"),
      ("sec-websocket-protocol", "v2"),
    ];
    let Ok(request) = check("GET", "/chat?room=1", &upgrade(&offers)) else { panic!("refused") };
    assert_eq!(request.path(), "/chat");
    assert_eq!(request.protocols, ["chat", "superchat", "v2"]);
    let Ok((response, None)) = answer(&request, "chat", None) else { panic!("no answer") };
    let response = String::from_utf8(response).unwrap();
    assert!(response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{response}");
    // The example of RFC 6455 1.3.
    assert!(response.contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert!(response.ends_with("\r\nSec-WebSocket-Protocol: chat\r\n\r\n"), "{response}");
    assert!(request.headers.unpacked().starts_with("host\0example.com\0connection\0"));
  }

  #[test]
  fn what_is_not_a_valid_upgrade_is_refused() {
    assert_eq!(status(check("POST", "/", &upgrade(&[]))), 400);
    assert_eq!(status(check("GET", "/", &upgrade(&[("Host", "again")]))), 400);
    assert_eq!(status(check("GET", "/", &upgrade(&[("Sec-WebSocket-Key", KEY)]))), 400);
    assert_eq!(status(check("GET", "/", &upgrade(&[("Sec-WebSocket-Version", "13")]))), 426);
    let without = |name: &str| -> Vec<_> {
      upgrade(&[]).into_iter().filter(|(header, _)| !header.eq_ignore_ascii_case(name)).collect()
    };
    for name in ["host", "connection", "upgrade", "sec-websocket-key", "sec-websocket-version"] {
      assert_eq!(status(check("GET", "/", &without(name))), 400, "without {name}");
    }
    let with = |name: &'static str, value: &'static str| -> Vec<_> {
      let mut headers = without(name);
      headers.push((name, value));
      headers
    };
    assert_eq!(status(check("GET", "/", &with("sec-websocket-version", "8"))), 426);
    assert_eq!(status(check("GET", "/", &with("connection", "keep-alive"))), 400);
    assert_eq!(status(check("GET", "/", &with("upgrade", "h2c"))), 400);
    assert_eq!(status(check("GET", "/", &with("sec-websocket-key", "c2hvcnQ="))), 400);
    assert_eq!(
      status(check("GET", "/", &with("sec-websocket-key", "not base64 at all, no!!"))),
      400
    );
    let Ok(request) = check("GET", "/", &upgrade(&[])) else { panic!("refused") };
    assert_eq!(
      answer(&request, "bad\r\nx: y", None).err().map(|refusal| refusal.status),
      Some(400)
    );
  }

  #[test]
  fn a_head_is_read_once_complete_and_not_before() {
    let head = format!(
      "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let bytes = [head.as_bytes(), b"\x81\x00"].concat();
    assert!(matches!(parse(&bytes[..head.len() - 1]), Ok(None)));
    assert!(matches!(parse(&bytes), Ok(Some((length, _))) if length == head.len()));
    assert!(matches!(parse(b"GET / HTTP/1.1\r\nHost\r\n\r\n"), Err(Refusal { status: 400, .. })));
    assert!(matches!(parse(b"GET / HTTP/1.0\r\n\r\n"), Err(Refusal { status: 400, .. })));
  }
}
