//! A broadcast as it crosses Redis between the nodes of a cluster:
//!
//! ```text
//! version (1) | flags (1) | node (u64 LE) | sequence (u64 LE) | payload
//! ```
//!
//! `node` is the sending Server's random id (a node drops its own
//! publications when Redis hands them back); `sequence` counts a node's
//! broadcasts, so that a receiver sees the ones it missed. `except` never
//! travels: handles mean nothing on another node.

use bytes::{BufMut, Bytes, BytesMut};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

const VERSION: u8 = 1;
const BINARY: u8 = 1;
/// The sender let the message be compressed (`send(m, { compress })`).
const COMPRESS: u8 = 2;
const KNOWN_FLAGS: u8 = BINARY | COMPRESS;
const HEADER_LEN: usize = 18;

/// A broadcast read back from the channel.
pub(super) struct Envelope {
  pub(super) node: u64,
  pub(super) sequence: u64,
  pub(super) compress: bool,
  pub(super) message: Message,
}

/// The envelope of `message` (text or binary), broadcast by `node` as its
/// `sequence`th.
pub(super) fn encode(node: u64, sequence: u64, message: &Message, compress: bool) -> Option<Bytes> {
  let (payload, binary) = match message {
    Message::Text(text) => (text.as_bytes(), false),
    Message::Binary(bytes) => (&bytes[..], true),
    _ => return None,
  };
  let mut envelope = BytesMut::with_capacity(HEADER_LEN + payload.len());
  envelope.put_u8(VERSION);
  envelope.put_u8(if binary { BINARY } else { 0 } | if compress { COMPRESS } else { 0 });
  envelope.put_u64_le(node);
  envelope.put_u64_le(sequence);
  envelope.put_slice(payload);
  Some(envelope.freeze())
}

/// The broadcast in `bytes`; `None` for anything a node of ours did not
/// write (another version, or a stranger publishing on the channel), which
/// is dropped.
pub(super) fn decode(bytes: Bytes) -> Option<Envelope> {
  let header = bytes.get(..HEADER_LEN)?;
  let flags = header[1];
  if header[0] != VERSION || flags & !KNOWN_FLAGS != 0 {
    return None;
  }
  let node = u64::from_le_bytes(header[2..10].try_into().ok()?);
  let sequence = u64::from_le_bytes(header[10..18].try_into().ok()?);
  let payload = bytes.slice(HEADER_LEN..);
  let message = if flags & BINARY != 0 {
    Message::Binary(payload)
  } else {
    Message::Text(Utf8Bytes::try_from(payload).ok()?)
  };
  Some(Envelope { node, sequence, compress: flags & COMPRESS != 0, message })
}

#[cfg(test)]
mod tests {
  use super::*;

  fn round_trip(message: Message, compress: bool) -> Envelope {
    let Some(bytes) = encode(7, 42, &message, compress) else { panic!("text and binary encode") };
    let Some(envelope) = decode(bytes) else { panic!("what we encode decodes") };
    envelope
  }

  #[test]
  fn text_and_binary_come_back_as_they_went() {
    let text = round_trip(Message::text("{\"a\":1}"), true);
    assert_eq!((text.node, text.sequence, text.compress), (7, 42, true));
    assert_eq!(text.message, Message::text("{\"a\":1}"));
    let binary = round_trip(Message::binary(vec![0, 255, 1]), false);
    assert!(!binary.compress);
    assert_eq!(binary.message, Message::binary(vec![0, 255, 1]));
    assert_eq!(round_trip(Message::text(""), false).message, Message::text(""));
  }

  #[test]
  fn what_we_did_not_write_is_refused() {
    let Some(good) = encode(1, 1, &Message::text("hi"), false) else { panic!("encodes") };
    let with = |at: usize, byte: u8| {
      let mut bytes = good.to_vec();
      bytes[at] = byte;
      decode(Bytes::from(bytes)).is_none()
    };
    assert!(with(0, 2), "another version");
    assert!(with(1, 8), "an unknown flag");
    assert!(with(HEADER_LEN, 0xff), "text that is not UTF-8");
    assert!(decode(good.slice(..HEADER_LEN - 1)).is_none(), "cut short");
    assert!(decode(Bytes::from_static(b"hello from a stranger")).is_none());
    assert!(encode(1, 1, &Message::Ping(Bytes::new()), false).is_none());
  }
}
