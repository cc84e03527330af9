//! Where frames begin and end in the bytes a connection hands tungstenite.
//!
//! A server connection keeps tungstenite's state (its read buffer among it)
//! only while it is active, and drops it when it goes quiet. That is safe
//! only when tungstenite holds nothing the next state would lack: no part of
//! a frame in its read buffer and no fragmented message half received. The
//! stream that feeds tungstenite follows the frame headers (parsed by
//! tungstenite's own `FrameHeader::parse`) to know when that is so.

use std::io::Cursor;

use tokio_tungstenite::tungstenite::protocol::frame::coding::OpCode;
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

pub struct FrameBoundaries {
  /// Payload bytes of the current frame still to come.
  payload_left: u64,
  /// A data frame without FIN was seen and its final fragment was not.
  fragmented: bool,
  /// The bytes are not a valid frame sequence; tungstenite fails the
  /// connection, and we stop following.
  invalid: bool,
  /// Bytes followed since the last message boundary: those of the message
  /// being received.
  in_message: u32,
}

impl FrameBoundaries {
  pub const fn new() -> FrameBoundaries {
    FrameBoundaries { payload_left: 0, fragmented: false, invalid: false, in_message: 0 }
  }

  /// Follows `bytes`, the next ones handed to tungstenite: the rest of a
  /// frame's payload.
  pub fn follow(&mut self, bytes: &[u8]) {
    self.follow_until(bytes, |_, _| false);
  }

  /// Follows `bytes` up to the first frame header that is not whole among
  /// them (a header is handed on whole, so that the stream can look at it
  /// first), or up to the start of the first frame outside a fragmented
  /// message that `stop(header, payload_len)` picks; returns how many
  /// bytes it followed.
  pub fn follow_until(&mut self, bytes: &[u8], stop: impl Fn(&FrameHeader, u64) -> bool) -> usize {
    let all = bytes.len();
    let mut bytes = bytes;
    while !bytes.is_empty() && !self.invalid {
      let before = bytes.len();
      if self.payload_left > 0 {
        let skipped = bytes.len().min(usize::try_from(self.payload_left).unwrap_or(usize::MAX));
        self.payload_left -= skipped as u64;
        bytes = &bytes[skipped..];
      } else {
        let mut cursor = Cursor::new(bytes);
        match FrameHeader::parse(&mut cursor) {
          Ok(Some((header, payload_len))) => {
            if !self.fragmented && stop(&header, payload_len) {
              return all - bytes.len();
            }
            bytes = &bytes[cursor.position() as usize..];
            self.payload_left = payload_len;
            // Control frames may come between fragments and change nothing.
            if let OpCode::Data(_) = header.opcode {
              self.fragmented = !header.is_final;
            }
          }
          Ok(None) => return all - bytes.len(),
          Err(_) => self.invalid = true,
        }
      }
      let followed = u32::try_from(before - bytes.len()).unwrap_or(u32::MAX);
      self.in_message =
        if self.between_messages() { 0 } else { self.in_message.saturating_add(followed) };
    }
    all
  }

  /// Bytes followed of the message being received; 0 between messages.
  pub fn in_message(&self) -> usize {
    self.in_message as usize
  }

  /// Payload bytes of the current frame still to come.
  pub fn payload_left(&self) -> u64 {
    self.payload_left
  }

  /// Whether the next byte starts a frame (or the bytes are invalid).
  pub fn at_frame_start(&self) -> bool {
    self.payload_left == 0
  }

  /// Whether every byte followed so far belongs to a complete frame and no
  /// fragmented message is open.
  pub fn between_messages(&self) -> bool {
    self.payload_left == 0 && !self.fragmented && !self.invalid
  }
}

#[cfg(test)]
mod tests {
  use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
  use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

  use super::FrameBoundaries;

  /// A masked client frame: `first` is FIN|opcode, payload of `len` zeros.
  fn frame(first: u8, len: usize) -> Vec<u8> {
    let mut bytes = vec![first];
    match len {
      0..=125 => bytes.push(0x80 | len as u8),
      126..=0xffff => {
        bytes.push(0x80 | 126);
        bytes.extend_from_slice(&(len as u16).to_be_bytes());
      }
      _ => {
        bytes.push(0x80 | 127);
        bytes.extend_from_slice(&(len as u64).to_be_bytes());
      }
    }
    bytes.extend_from_slice(&[1, 2, 3, 4]);
    bytes.resize(bytes.len() + len, 0);
    bytes
  }

  #[test]
  fn follows_frames_split_anywhere_but_in_a_header() {
    let mut stream = frame(0x82, 70_000);
    stream.extend(frame(0x81, 3));
    for cut in [1, 2, 5, 13, 14, 70_013, 70_015, stream.len() - 1] {
      let mut boundaries = FrameBoundaries::new();
      let followed = boundaries.follow_until(&stream[..cut], |_, _| false);
      // A header cut short is left for the next bytes.
      let header_cut = cut < 14 || (70_014..70_020).contains(&cut);
      assert_eq!(
        followed,
        if cut < 14 {
          0
        } else if header_cut {
          70_014
        } else {
          cut
        },
        "cut at {cut}"
      );
      assert_eq!(
        boundaries.between_messages(),
        followed == 0 || followed == 70_014,
        "cut at {cut}"
      );
      assert_eq!(
        boundaries.follow_until(&stream[followed..], |_, _| false),
        stream.len() - followed
      );
      assert!(boundaries.between_messages(), "cut at {cut}");
    }
  }

  #[test]
  fn a_fragmented_message_is_open_until_its_final_fragment() {
    let mut boundaries = FrameBoundaries::new();
    boundaries.follow(&frame(0x01, 4)); // text, not final
    assert!(!boundaries.between_messages());
    boundaries.follow(&frame(0x89, 0)); // a ping in between
    assert!(!boundaries.between_messages());
    boundaries.follow(&frame(0x80, 4)); // final continuation
    assert!(boundaries.between_messages());
  }

  #[test]
  fn follow_until_stops_before_a_picked_frame_only_where_it_may() {
    let large_binary =
      |header: &FrameHeader, len: u64| header.opcode == OpCode::Data(Data::Binary) && len >= 1000;
    let mut stream = frame(0x81, 3);
    let picked_at = stream.len();
    stream.extend(frame(0x82, 1000));

    // Stops at the picked frame's header, and follows nothing of it.
    let mut boundaries = FrameBoundaries::new();
    assert_eq!(boundaries.follow_until(&stream, large_binary), picked_at);
    assert!(boundaries.between_messages());

    // Nor past it when only part of its header is there.
    let mut boundaries = FrameBoundaries::new();
    assert_eq!(boundaries.follow_until(&stream[..picked_at + 3], large_binary), picked_at);

    // Not inside a fragmented message (where tungstenite must see it, to
    // fail the connection).
    let mut fragmented = frame(0x01, 3);
    fragmented.extend(frame(0x82, 1000));
    let mut boundaries = FrameBoundaries::new();
    assert_eq!(boundaries.follow_until(&fragmented, large_binary), fragmented.len());
  }

  #[test]
  fn counts_the_bytes_of_the_message_being_received_only() {
    let first = frame(0x81, 100);
    let mut stream = first.clone();
    stream.extend(frame(0x01, 50)); // text, not final
    stream.extend(frame(0x89, 0)); // a ping in between
    let fragments_end = stream.len();
    stream.extend(frame(0x80, 20)); // final continuation
    let mut boundaries = FrameBoundaries::new();
    boundaries.follow(&stream[..60]);
    assert_eq!(boundaries.in_message(), 60);
    // The first message ends inside this read: only the second counts.
    boundaries.follow(&stream[60..fragments_end]);
    assert_eq!(boundaries.in_message(), fragments_end - first.len());
    boundaries.follow(&stream[fragments_end..]);
    assert_eq!(boundaries.in_message(), 0);
  }

  #[test]
  fn an_invalid_header_is_never_between_messages() {
    let mut boundaries = FrameBoundaries::new();
    boundaries.follow(&[0x83, 0x80, 1, 2, 3, 4]); // reserved opcode 3
    assert!(!boundaries.between_messages());
  }
}
