//! Compressing one message, on its own (no context kept between messages),
//! into the frame that carries it.

use std::cell::RefCell;

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress, Status};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
use tokio_tungstenite::tungstenite::Message;

use super::Settings;

/// The end of a sync flush: an empty stored block, which RFC 7692 has the
/// sender leave off and the receiver put back.
pub const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// zlib cannot compress with a 256-byte window (it needs 9 bits or more);
/// a peer that asks for it gets its messages uncompressed, which RFC 7692
/// always allows.
const MIN_COMPRESS_WINDOW_BITS: u8 = 9;

thread_local! {
  /// One compressor per window size and level on each thread, reset after
  /// every message: making one costs more than compressing a small
  /// message, and its state (about 270 KiB at 15 bits) should not be paid
  /// per connection.
  static COMPRESSORS: RefCell<Vec<(u8, u8, Compress)>> = const { RefCell::new(Vec::new()) };
}

/// What became of a message offered for compression.
pub enum Compressed {
  /// Not tried: not text or binary, shorter than the threshold, or for a
  /// window zlib cannot make.
  Skipped,
  /// Deflated, and not smaller: it goes out as it is.
  NotSmaller,
  /// The frame that carries it compressed.
  Frame(Message),
}

impl Compressed {
  /// Whether deflate ran (the `deflateCalls` of a Server's stats).
  pub fn deflated(&self) -> bool {
    !matches!(self, Compressed::Skipped)
  }

  /// The message to send: the compressed frame, or `message` itself.
  pub fn or(self, message: Message) -> Message {
    match self {
      Compressed::Frame(frame) => frame,
      _ => message,
    }
  }
}

/// `message` compressed on its own for a peer that takes windows of up to
/// `window_bits`.
pub fn compress(message: &Message, window_bits: u8, settings: Settings) -> Compressed {
  let (payload, opcode) = match message {
    Message::Text(text) => (text.as_bytes(), Data::Text),
    Message::Binary(bytes) => (&bytes[..], Data::Binary),
    _ => return Compressed::Skipped,
  };
  if payload.len() < settings.threshold || window_bits < MIN_COMPRESS_WINDOW_BITS {
    return Compressed::Skipped;
  }
  let Some(compressed) = deflate(payload, window_bits, settings.level) else {
    return Compressed::NotSmaller;
  };
  let header = FrameHeader { rsv1: true, opcode: OpCode::Data(opcode), ..FrameHeader::default() };
  Compressed::Frame(Message::Frame(Frame::from_payload(header, compressed)))
}

/// The deflate blocks of `payload` without the sync tail, when they are
/// shorter than `payload`.
fn deflate(payload: &[u8], window_bits: u8, level: u8) -> Option<Bytes> {
  COMPRESSORS.with_borrow_mut(|compressors| {
    let at =
      match compressors.iter().position(|(bits, lvl, _)| (*bits, *lvl) == (window_bits, level)) {
        Some(at) => at,
        None => {
          let compressor =
            Compress::new_with_window_bits(Compression::new(level.into()), false, window_bits);
          compressors.push((window_bits, level, compressor));
          compressors.len() - 1
        }
      };
    let compressor = &mut compressors[at].2;
    // Room for the tail beyond what is worth sending: a full buffer means
    // the flush did not finish, and the message is not worth compressing.
    let mut output = Vec::with_capacity(payload.len() + SYNC_TAIL.len());
    let status = compressor.compress_vec(payload, &mut output, FlushCompress::Sync);
    let whole = compressor.total_in() == payload.len() as u64;
    compressor.reset();
    let flushed = matches!(status, Ok(Status::Ok)) && whole && output.len() < output.capacity();
    if !flushed || !output.ends_with(&SYNC_TAIL) {
      return None;
    }
    output.truncate(output.len() - SYNC_TAIL.len());
    (output.len() < payload.len()).then(|| Bytes::from(output))
  })
}

#[cfg(test)]
mod tests {
  use flate2::{Decompress, FlushDecompress};

  use super::*;

  fn inflate(compressed: &[u8]) -> Vec<u8> {
    let mut input = compressed.to_vec();
    input.extend_from_slice(&SYNC_TAIL);
    let mut output = Vec::with_capacity(1 << 20);
    Decompress::new(false).decompress_vec(&input, &mut output, FlushDecompress::Sync).unwrap();
    output
  }

  #[test]
  fn compresses_what_gets_smaller_and_leaves_the_rest() {
    let settings = Settings { threshold: 16, level: 6 };
    let text = "{\"type\":\"update\",\"value\":1}".repeat(40);
    let Compressed::Frame(Message::Frame(frame)) =
      compress(&Message::text(text.clone()), 15, settings)
    else {
      panic!("a repetitive text compresses")
    };
    assert!(frame.header().rsv1 && frame.header().is_final);
    assert_eq!(inflate(frame.payload()), text.as_bytes());

    let short = Message::text("{\"a\":1}");
    assert!(matches!(compress(&short, 15, settings), Compressed::Skipped), "under the threshold");
    let mut random = fastrand::Rng::with_seed(7);
    let noise: Vec<u8> = std::iter::repeat_with(|| random.u8(..)).take(4096).collect();
    assert!(matches!(compress(&Message::binary(noise), 15, settings), Compressed::NotSmaller));
    let window_8 = compress(&Message::text(text), 8, settings);
    assert!(matches!(window_8, Compressed::Skipped), "a window zlib cannot make");
  }
}
