//! A small WebSocket client that speaks permessage-deflate (RFC 7692), for
//! the compression scenarios: tokio-tungstenite has no extensions (it
//! rejects frames with RSV1 set).
//!
//! It offers `permessage-deflate; client_no_context_takeover;
//! client_max_window_bits`, so every message it sends is compressed on its
//! own, and one compressor serves all its connections. It inflates what the
//! server compressed, with one inflater per connection when the server keeps
//! its context across messages (no `server_no_context_takeover` in its
//! answer), else one for all connections, reset for every message. A server
//! that declines the extension gets (and sends) plain frames.
//!
//! Each message read or queued reports its size on the wire (frame headers
//! included), which is what the scenarios sum as bytes per message.

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::BoxError;

const OFFER: &str = "permessage-deflate; client_no_context_takeover; client_max_window_bits";
/// What a sync flush leaves at the end of a message, removed before sending
/// and appended again before inflating (RFC 7692, 7.2.1 and 7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
const LEVEL: u32 = 6;

/// The server's answer to the offer.
#[derive(Clone, Copy, Debug)]
pub struct Negotiated {
  pub server_no_context_takeover: bool,
  /// The largest window our compressor may use (8-15).
  pub client_max_window_bits: u8,
}

/// One message read, whole (fragments joined, inflated unless `skip_inflate`).
pub struct Message {
  pub text: bool,
  pub data: Vec<u8>,
  /// `data` is still compressed (see `skip_inflate`).
  pub compressed: bool,
  /// Bytes its frames took on the wire.
  pub wire_bytes: usize,
}

/// A frame's header fields and where its payload is in `rbuf`.
struct Frame {
  opcode: u8,
  rsv1: bool,
  fin: bool,
  start: usize,
  end: usize,
}

pub struct DeflateWs {
  tcp: TcpStream,
  pub deflate: Option<Negotiated>,
  /// Leave the next messages compressed when each stands alone
  /// (server_no_context_takeover): inflating every delivery would make the
  /// load generator what bounds a fan-out. With a context kept across
  /// messages every one is inflated all the same.
  pub skip_inflate: bool,
  rbuf: Vec<u8>,
  /// Start of unparsed bytes in `rbuf`.
  rpos: usize,
  wbuf: Vec<u8>,
  /// Only when the server keeps its context; otherwise the shared one.
  inflater: Option<Box<Decompress>>,
  /// The message being assembled from fragments: (text, compressed, data, wire bytes).
  partial: Option<(bool, bool, Vec<u8>, usize)>,
  mask_seed: u32,
}

thread_local! {
  // The runtime is single-threaded, and every message we send or (without
  // context takeover) receive stands alone: one (de)compressor serves every
  // connection instead of some 300 KB of zlib state each.
  static DEFLATER: RefCell<Option<(u8, Compress)>> = const { RefCell::new(None) };
  static SHARED_INFLATER: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

impl DeflateWs {
  /// Connects to `ws://host:port/path` and offers permessage-deflate.
  pub async fn connect(url: &str) -> Result<DeflateWs, BoxError> {
    let rest = url.strip_prefix("ws://").ok_or("only ws:// URLs")?;
    let (host_port, path) = match rest.find('/') {
      Some(i) => (&rest[..i], &rest[i..]),
      None => (rest, "/"),
    };
    let mut tcp = TcpStream::connect(host_port).await?;
    tcp.set_nodelay(true)?;
    // A fixed key (RFC 6455's sample): the servers under test do not care,
    // and the answer's Sec-WebSocket-Accept is not checked.
    let request = format!(
      "GET {path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
       Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
       Sec-WebSocket-Extensions: {OFFER}\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await?;

    let mut rbuf = Vec::with_capacity(4096);
    let head_len = loop {
      if let Some(i) = rbuf.windows(4).position(|w| w == b"\r\n\r\n") {
        break i + 4;
      }
      if rbuf.len() > 16 * 1024 || tcp.read_buf(&mut rbuf).await? == 0 {
        return Err("the server ended the handshake".into());
      }
    };
    let head = String::from_utf8_lossy(&rbuf[..head_len]).into_owned();
    let status = head.lines().next().unwrap_or("");
    if !status.starts_with("HTTP/1.1 101") {
      return Err(format!("the upgrade was refused: {status}").into());
    }
    let deflate = head
      .lines()
      .filter_map(|l| l.split_once(':'))
      .find(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-extensions"))
      .map(|(_, value)| parse_answer(value))
      .transpose()?
      .flatten();
    // Frames may follow the answer in the same read.
    Ok(DeflateWs {
      tcp,
      deflate,
      skip_inflate: false,
      rbuf,
      rpos: head_len,
      wbuf: Vec::new(),
      inflater: None,
      partial: None,
      mask_seed: 0x9e37_79b9,
    })
  }

  /// Queues a message (compressed, if negotiated); returns its size on the
  /// wire. `flush` sends what is queued.
  pub fn queue(&mut self, payload: &[u8], text: bool) -> Result<usize, BoxError> {
    let before = self.wbuf.len();
    let opcode = if text { 0x1 } else { 0x2 };
    match self.deflate {
      Some(n) => {
        let compressed = deflate(payload, n.client_max_window_bits)?;
        self.frame(0x80 | 0x40 | opcode, &compressed);
      }
      None => self.frame(0x80 | opcode, payload),
    }
    Ok(self.wbuf.len() - before)
  }

  pub async fn flush(&mut self) -> Result<(), BoxError> {
    if !self.wbuf.is_empty() {
      self.tcp.write_all(&self.wbuf).await?;
      self.wbuf.clear();
    }
    Ok(())
  }

  /// The next message, reading as needed.
  pub async fn next(&mut self) -> Result<Message, BoxError> {
    loop {
      if let Some(message) = self.try_next()? {
        return Ok(message);
      }
      // Pongs queued by `try_next`.
      self.flush().await?;
      if self.rpos > 0 && self.rpos * 2 >= self.rbuf.len() {
        self.rbuf.drain(..self.rpos);
        self.rpos = 0;
      }
      self.rbuf.reserve(16 * 1024);
      if self.tcp.read_buf(&mut self.rbuf).await? == 0 {
        return Err("the server closed the connection".into());
      }
    }
  }

  /// The next message if it has been read whole already, without waiting.
  pub fn try_next(&mut self) -> Result<Option<Message>, BoxError> {
    while let Some(Frame { opcode, rsv1, fin, start, end }) = self.parse_frame()? {
      let wire = end - self.rpos;
      let payload = self.rbuf[start..end].to_vec();
      self.rpos = end;
      match opcode {
        0x8 => {
          let code = payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
          let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or(&[]));
          return Err(format!("the server closed: code {code:?} {reason:?}").into());
        }
        0x9 => self.frame(0x8a, &payload),
        0xa => {}
        0x0 => {
          let (_, _, data, wire_so_far) =
            self.partial.as_mut().ok_or("a continuation frame without a message")?;
          data.extend_from_slice(&payload);
          *wire_so_far += wire;
          if fin {
            let (text, compressed, data, wire) = self.partial.take().unwrap();
            return self.finish(text, compressed, data, wire).map(Some);
          }
        }
        0x1 | 0x2 => {
          if self.partial.is_some() {
            return Err("a new message before the last one ended".into());
          }
          if rsv1 && self.deflate.is_none() {
            return Err("RSV1 set without permessage-deflate".into());
          }
          if fin {
            return self.finish(opcode == 0x1, rsv1, payload, wire).map(Some);
          }
          self.partial = Some((opcode == 0x1, rsv1, payload, wire));
        }
        other => return Err(format!("unknown opcode {other:#x}").into()),
      }
    }
    Ok(None)
  }

  fn finish(
    &mut self,
    text: bool,
    compressed: bool,
    data: Vec<u8>,
    wire_bytes: usize,
  ) -> Result<Message, BoxError> {
    let takeover = !self.deflate.is_none_or(|n| n.server_no_context_takeover);
    if !compressed || (self.skip_inflate && !takeover) {
      return Ok(Message { text, data, compressed, wire_bytes });
    }
    let data = if takeover {
      let inflater =
        self.inflater.get_or_insert_with(|| Box::new(Decompress::new_with_window_bits(false, 15)));
      inflate(inflater, &data)?
    } else {
      SHARED_INFLATER.with(|cell| {
        let mut cell = cell.borrow_mut();
        let inflater = cell.get_or_insert_with(|| Decompress::new_with_window_bits(false, 15));
        inflater.reset(false);
        inflate(inflater, &data)
      })?
    };
    Ok(Message { text, data, compressed: false, wire_bytes })
  }

  /// The frame at `rpos`, if it is all in `rbuf`.
  fn parse_frame(&self) -> Result<Option<Frame>, BoxError> {
    let buf = &self.rbuf[self.rpos..];
    if buf.len() < 2 {
      return Ok(None);
    }
    if buf[1] & 0x80 != 0 {
      return Err("a masked frame from the server".into());
    }
    let (len, header) = match buf[1] & 0x7f {
      126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
      127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize, 10),
      126 | 127 => return Ok(None),
      n => (n as usize, 2),
    };
    if buf.len() < header + len {
      return Ok(None);
    }
    let start = self.rpos + header;
    Ok(Some(Frame {
      opcode: buf[0] & 0x0f,
      rsv1: buf[0] & 0x40 != 0,
      fin: buf[0] & 0x80 != 0,
      start,
      end: start + len,
    }))
  }

  /// Appends one masked frame to `wbuf`.
  fn frame(&mut self, first: u8, payload: &[u8]) {
    let len = payload.len();
    self.wbuf.push(first);
    if len < 126 {
      self.wbuf.push(0x80 | len as u8);
    } else if len <= 0xffff {
      self.wbuf.push(0x80 | 126);
      self.wbuf.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
      self.wbuf.push(0x80 | 127);
      self.wbuf.extend_from_slice(&(len as u64).to_be_bytes());
    }
    // Masks vary per frame; they need not be unpredictable here.
    self.mask_seed = self.mask_seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
    let mask = self.mask_seed.to_be_bytes();
    self.wbuf.extend_from_slice(&mask);
    self.wbuf.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
  }
}

/// Connects `count` clients, at most `parallel` handshakes at a time.
pub async fn connect_many(
  url: &str,
  count: usize,
  parallel: usize,
) -> Result<Vec<DeflateWs>, BoxError> {
  crate::common::open_many(count, parallel, || DeflateWs::connect(url)).await
}

/// What the server answered, for the result line.
pub fn describe(n: Option<Negotiated>) -> &'static str {
  match n {
    None => "none",
    Some(n) if n.server_no_context_takeover => "server_no_context_takeover",
    Some(_) => "context_takeover",
  }
}

/// The extension in a Sec-WebSocket-Extensions answer; None if the server
/// accepted no permessage-deflate.
fn parse_answer(value: &str) -> Result<Option<Negotiated>, BoxError> {
  let mut params = value.split(';').map(str::trim);
  if params.next() != Some("permessage-deflate") {
    return Ok(None);
  }
  let mut n = Negotiated { server_no_context_takeover: false, client_max_window_bits: 15 };
  for param in params {
    let (name, arg) = match param.split_once('=') {
      Some((name, arg)) => (name.trim(), Some(arg.trim().trim_matches('"'))),
      None => (param, None),
    };
    match (name, arg) {
      ("server_no_context_takeover", None) => n.server_no_context_takeover = true,
      // We asked for it: our messages stand alone in any case.
      ("client_no_context_takeover", None) => {}
      ("server_max_window_bits", Some(_)) => {}
      ("client_max_window_bits", Some(bits)) => {
        n.client_max_window_bits =
          bits.parse().map_err(|_| format!("client_max_window_bits={bits}"))?;
      }
      _ => return Err(format!("unexpected extension parameter {param:?} in {value:?}").into()),
    }
  }
  // zlib's raw deflate has no 8-bit window.
  if !(9..=15).contains(&n.client_max_window_bits) {
    return Err(format!("unsupported client_max_window_bits={}", n.client_max_window_bits).into());
  }
  Ok(Some(n))
}

/// Raw deflate of one message on its own, sync-flushed, without the tail.
fn deflate(payload: &[u8], bits: u8) -> Result<Vec<u8>, BoxError> {
  DEFLATER.with(|cell| {
    let mut cell = cell.borrow_mut();
    if cell.as_ref().map(|(b, _)| *b) != Some(bits) {
      *cell = Some((bits, Compress::new_with_window_bits(Compression::new(LEVEL), false, bits)));
    }
    let compress = &mut cell.as_mut().unwrap().1;
    compress.reset();
    let mut out = Vec::with_capacity(payload.len() / 2 + 64);
    let mut input = payload;
    loop {
      out.reserve(1024);
      let before = compress.total_in();
      compress.compress_vec(input, &mut out, FlushCompress::Sync)?;
      input = &input[(compress.total_in() - before) as usize..];
      // Done once the input is in and the flush did not fill the output.
      if input.is_empty() && out.len() < out.capacity() {
        break;
      }
    }
    if !out.ends_with(&TAIL) {
      return Err("a sync flush that did not end in 00 00 ff ff".into());
    }
    out.truncate(out.len() - TAIL.len());
    Ok(out)
  })
}

/// Inflates one message's payload (the tail appended again).
fn inflate(inflater: &mut Decompress, data: &[u8]) -> Result<Vec<u8>, BoxError> {
  let mut out = Vec::with_capacity(data.len() * 4 + 64);
  for mut input in [data, &TAIL[..]] {
    loop {
      out.reserve(4096);
      let (in_before, out_before) = (inflater.total_in(), inflater.total_out());
      let status = inflater.decompress_vec(input, &mut out, FlushDecompress::Sync)?;
      input = &input[(inflater.total_in() - in_before) as usize..];
      if status == Status::StreamEnd {
        // A final block ends the stream: the next message starts a new one.
        inflater.reset(false);
        break;
      }
      if input.is_empty() && out.len() < out.capacity() {
        break;
      }
      if inflater.total_in() == in_before && inflater.total_out() == out_before {
        return Err("inflate made no progress".into());
      }
    }
  }
  Ok(out)
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn deflates_and_inflates_back() {
    let text = crate::graph_update::graph_update(1);
    let compressed = deflate(text.as_bytes(), 15).unwrap();
    assert!(compressed.len() < text.len() / 2, "{} of {}", compressed.len(), text.len());
    let mut inflater = Decompress::new_with_window_bits(false, 15);
    assert_eq!(inflate(&mut inflater, &compressed).unwrap(), text.as_bytes());
  }

  #[test]
  fn parses_answers() {
    let n =
      parse_answer("permessage-deflate; server_no_context_takeover; client_max_window_bits=12")
        .unwrap()
        .unwrap();
    assert!(n.server_no_context_takeover);
    assert_eq!(n.client_max_window_bits, 12);
    let n = parse_answer("permessage-deflate; client_no_context_takeover").unwrap().unwrap();
    assert!(!n.server_no_context_takeover);
    assert!(parse_answer("x-other").unwrap().is_none());
  }
}
