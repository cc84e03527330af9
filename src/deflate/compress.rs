//! Compressing one message, on its own (no context kept between messages),
//! into the frame that carries it.

use std::cell::RefCell;

use bytes::Bytes;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
use tokio_tungstenite::tungstenite::Message;
use zlib_rs::{Deflate, DeflateConfig, DeflateFlush, Status};

use super::Settings;

/// The end of a sync flush: an empty stored block, which RFC 7692 has the
/// sender leave off and the receiver put back.
pub const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// zlib cannot compress with a 256-byte window (it needs 9 bits or more);
/// a peer that asks for it gets its messages uncompressed, which RFC 7692
/// always allows.
const MIN_COMPRESS_WINDOW_BITS: u8 = 9;

/// The fewest symbols a compressor's block holds (`mem_level` 5: 2,048). zlib
/// zero-fills its symbol buffer at every block (twice per message), so a
/// buffer sized for the message costs less than the usual 16,384.
const MIN_MEM_LEVEL: u8 = 5;
/// zlib's usual `mem_level` (16,384 symbols a block), for long messages.
const MAX_MEM_LEVEL: u8 = 8;

/// What a compressor is made for: window size, level and `mem_level`.
type CompressorKind = (u8, u8, u8);

thread_local! {
  /// One compressor per kind on each thread, reset after every message:
  /// making one costs more than compressing a small message, and its state
  /// (about 270 KiB at 15 bits) should not be paid per connection.
  static COMPRESSORS: RefCell<Vec<(CompressorKind, Deflate)>> = const { RefCell::new(Vec::new()) };
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
  let kind = (window_bits, level, mem_level_for(payload.len()));
  COMPRESSORS.with_borrow_mut(|compressors| {
    let at = match compressors.iter().position(|(made_for, _)| *made_for == kind) {
      Some(at) => at,
      None => {
        compressors.push((kind, new_compressor(kind)));
        compressors.len() - 1
      }
    };
    let compressor = &mut compressors[at].1;
    // Room for the tail beyond what is worth sending: a full buffer means
    // the flush did not finish, and the message is not worth compressing.
    let room = payload.len() + SYNC_TAIL.len();
    let mut output = vec![0; room];
    let status = compressor.compress(payload, &mut output, DeflateFlush::SyncFlush);
    let whole = compressor.total_in() == payload.len() as u64;
    let written = usize::try_from(compressor.total_out()).unwrap_or(room);
    compressor.reset();
    let flushed = matches!(status, Ok(Status::Ok)) && whole && written < room;
    output.truncate(written);
    if !flushed || !output.ends_with(&SYNC_TAIL) {
      return None;
    }
    output.truncate(output.len() - SYNC_TAIL.len());
    (output.len() < payload.len()).then(|| Bytes::from(output))
  })
}

/// The `mem_level` whose blocks hold a message of `len` bytes whole (a
/// message makes at most one symbol per byte), within zlib's usual.
fn mem_level_for(len: usize) -> u8 {
  // 2^(mem_level + 6) symbols a block.
  let bits = usize::BITS - len.saturating_sub(1).leading_zeros();
  let wanted = u8::try_from(bits.saturating_sub(6)).unwrap_or(MAX_MEM_LEVEL);
  wanted.clamp(MIN_MEM_LEVEL, MAX_MEM_LEVEL)
}

/// A raw deflate compressor (no zlib header) of `kind`.
fn new_compressor((window_bits, level, mem_level): CompressorKind) -> Deflate {
  Deflate::new_with_config(DeflateConfig {
    level: level.into(),
    window_bits: -i32::from(window_bits),
    mem_level: mem_level.into(),
    ..DeflateConfig::default()
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

  #[test]
  fn a_block_holds_the_message_up_to_the_usual_size() {
    let cases = [(0, 5), (1024, 5), (2048, 5), (2049, 6), (8192, 7), (16384, 8), (1 << 20, 8)];
    for (len, mem_level) in cases {
      assert_eq!(mem_level_for(len), mem_level, "{len} bytes");
    }
  }

  #[test]
  fn messages_of_every_compressor_kind_come_back_whole() {
    let settings = Settings { threshold: 0, level: 6 };
    let mut random = fastrand::Rng::with_seed(11);
    for len in [1500, 2048, 2049, 5000, 9000, 20_000, 200_000] {
      let words = ["\"id\":", "\"name\":", "\"x\",", "1,", "true,", "[", "]", "{", "}"];
      let text: String = std::iter::repeat_with(|| words[random.usize(..words.len())])
        .flat_map(str::chars)
        .take(len)
        .collect();
      let Compressed::Frame(Message::Frame(frame)) =
        compress(&Message::text(text.clone()), 15, settings)
      else {
        panic!("{len} bytes of JSON-like text compress")
      };
      assert_eq!(inflate(frame.payload()), text.as_bytes(), "{len} bytes");
    }
  }
}
