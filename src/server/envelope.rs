//! A broadcast as it crosses Redis between the nodes of a cluster:
//!
//! ```text
//! version (1) | flags (1) | node (u64 LE) | sequence (u64 LE)
//!   | [topic length (u16 LE) | topic, when published to a topic] | payload
//! ```
//!
//! `node` is the sending Server's random id (a node drops its own
//! publications when Redis hands them back); `sequence` counts a node's
//! broadcasts and publications, so that a receiver sees the ones it missed.
//! `except` never travels: handles mean nothing on another node.

use bytes::{BufMut, Bytes, BytesMut};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

const VERSION: u8 = 1;
const BINARY: u8 = 1;
/// The sender let the message be compressed (`send(m, { compress })`).
const COMPRESS: u8 = 2;
/// Published to a topic (`server.publish`), not broadcast to everyone.
const TOPIC: u8 = 4;
const KNOWN_FLAGS: u8 = BINARY | COMPRESS | TOPIC;
const HEADER_LEN: usize = 18;

/// A broadcast read back from the channel.
pub(super) struct Envelope {
  pub(super) node: u64,
  pub(super) sequence: u64,
  pub(super) compress: bool,
  /// The topic it was published to; `None` for a broadcast.
  pub(super) topic: Option<Bytes>,
  pub(super) message: Message,
}

/// What a node sends to the others.
pub(super) struct Outgoing<'a> {
  pub(super) message: &'a Message,
  pub(super) compress: bool,
  pub(super) topic: Option<&'a str>,
}

/// The envelope of `outgoing` (text or binary, a topic of at most 65,535
/// bytes), sent by `node` as its `sequence`th.
pub(super) fn encode(node: u64, sequence: u64, outgoing: Outgoing<'_>) -> Option<Bytes> {
  let (payload, binary) = match outgoing.message {
    Message::Text(text) => (text.as_bytes(), false),
    Message::Binary(bytes) => (&bytes[..], true),
    _ => return None,
  };
  let topic = outgoing.topic.map(|topic| u16::try_from(topic.len()).map(|len| (len, topic)));
  let topic = topic.transpose().ok()?;
  let topic_len = topic.map_or(0, |(len, _)| 2 + usize::from(len));
  let mut envelope = BytesMut::with_capacity(HEADER_LEN + topic_len + payload.len());
  envelope.put_u8(VERSION);
  let flag = |on: bool, flag: u8| if on { flag } else { 0 };
  envelope.put_u8(
    flag(binary, BINARY) | flag(outgoing.compress, COMPRESS) | flag(topic.is_some(), TOPIC),
  );
  envelope.put_u64_le(node);
  envelope.put_u64_le(sequence);
  if let Some((len, topic)) = topic {
    envelope.put_u16_le(len);
    envelope.put_slice(topic.as_bytes());
  }
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
  let (topic, start) = if flags & TOPIC != 0 {
    let len = bytes.get(HEADER_LEN..HEADER_LEN + 2)?;
    let end = HEADER_LEN + 2 + usize::from(u16::from_le_bytes(len.try_into().ok()?));
    std::str::from_utf8(bytes.get(HEADER_LEN + 2..end)?).ok()?;
    (Some(bytes.slice(HEADER_LEN + 2..end)), end)
  } else {
    (None, HEADER_LEN)
  };
  let payload = bytes.slice(start..);
  let message = if flags & BINARY != 0 {
    Message::Binary(payload)
  } else {
    Message::Text(Utf8Bytes::try_from(payload).ok()?)
  };
  Some(Envelope { node, sequence, compress: flags & COMPRESS != 0, topic, message })
}

#[cfg(test)]
mod tests {
  use super::*;

  fn round_trip(message: Message, compress: bool) -> Envelope {
    let outgoing = Outgoing { message: &message, compress, topic: None };
    let Some(bytes) = encode(7, 42, outgoing) else { panic!("text and binary encode") };
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
    assert!(text.topic.is_none());
  }

  #[test]
  fn a_topic_travels_with_its_message() {
    let message = Message::text("hi");
    let outgoing = Outgoing { message: &message, compress: false, topic: Some("room/é") };
    let Some(envelope) = encode(1, 2, outgoing).and_then(decode) else { panic!("round trip") };
    assert_eq!(envelope.topic.as_deref(), Some("room/é".as_bytes()));
    assert_eq!(envelope.message, message);
    let long = "x".repeat(65_536);
    assert!(
      encode(1, 2, Outgoing { message: &message, compress: false, topic: Some(&long) }).is_none()
    );
    let Some(cut) =
      encode(1, 2, Outgoing { message: &message, compress: false, topic: Some("room") })
    else {
      panic!("encodes")
    };
    assert!(decode(cut.slice(..HEADER_LEN + 3)).is_none(), "topic cut short");
  }

  #[test]
  fn what_we_did_not_write_is_refused() {
    let hi = Message::text("hi");
    let Some(good) = encode(1, 1, Outgoing { message: &hi, compress: false, topic: None }) else {
      panic!("encodes")
    };
    let with = |at: usize, byte: u8| {
      let mut bytes = good.to_vec();
      bytes[at] = byte;
      decode(Bytes::from(bytes)).is_none()
    };
    assert!(with(0, 2), "another version");
    assert!(with(1, 8), "an unknown flag");
    assert!(with(1, 4), "a topic flag without a topic");
    assert!(with(HEADER_LEN, 0xff), "text that is not UTF-8");
    assert!(decode(good.slice(..HEADER_LEN - 1)).is_none(), "cut short");
    assert!(decode(Bytes::from_static(b"hello from a stranger")).is_none());
    let ping = Message::Ping(Bytes::new());
    assert!(encode(1, 1, Outgoing { message: &ping, compress: false, topic: None }).is_none());
  }
}
