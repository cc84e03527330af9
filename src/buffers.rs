//! Payloads crossing between JS and Rust.

use bytes::Bytes;
use napi::bindgen_prelude::{Buffer, Either, Uint8Array};
use tokio_tungstenite::tungstenite::protocol::frame::Utf8Bytes;
use tokio_tungstenite::tungstenite::Message;

/// What `send` accepts from JS: a string for a text frame, a Buffer for a
/// binary frame (the JS encoder turns every binary type into a Buffer view).
pub type Payload = Either<String, Buffer>;

/// Turns a JS payload into a frame without copying a Buffer: the `Bytes`
/// owns the Buffer's reference and releases it when the frame has been
/// written. JS must not modify the Buffer before then (documented in the
/// README); tungstenite copies it into its write buffer when it frames it.
pub fn to_message(payload: Payload) -> Message {
  match payload {
    Either::A(text) => Message::text(text),
    Either::B(buffer) => Message::Binary(Bytes::from_owner(buffer)),
  }
}

/// The text frames of JSON texts that JS joined with line breaks (which
/// `JSON.stringify` never writes), sharing the joined string's memory.
pub fn json_lines(joined: String) -> impl Iterator<Item = Message> {
  let all = Bytes::from(joined);
  let mut start = 0;
  std::iter::from_fn(move || {
    if start > all.len() {
      return None;
    }
    let end = memchr::memchr(b'\n', &all[start..]).map_or(all.len(), |at| start + at);
    let line = all.slice(start..end);
    start = end + 1;
    // SAFETY: a line of a `String` split at its line breaks (an ASCII byte,
    // never part of another character) is valid UTF-8. Not checking it
    // again saves a pass over every text sent.
    Some(Message::Text(unsafe { Utf8Bytes::from_bytes_unchecked(line) }))
  })
}

/// The payload bytes of a data frame, as `bufferedAmount` counts them.
pub fn payload_len(message: &Message) -> usize {
  match message {
    Message::Text(text) => text.len(),
    Message::Binary(bytes) => bytes.len(),
    // A compressed message, or one sent as it is (`compress: false`).
    Message::Frame(frame) => frame.payload().len(),
    _ => 0,
  }
}

/// Hands a received payload to JS without copying it: the array is a view
/// of the frame's own memory, kept alive by the array's finalizer. JS gets
/// it as a writable Buffer.
pub fn to_js_array(bytes: Bytes) -> Uint8Array {
  let (data, length) = (bytes.as_ptr().cast_mut(), bytes.len());
  // SAFETY: `data..data + length` is the memory of `bytes`, which the
  // finalizer owns, so it lives as long as the array. JS may write to it
  // (a Buffer is writable) although `Bytes` promises immutable memory:
  // that is harmless because nothing in Rust reads this region after this
  // call. `bytes` is moved into the finalizer, which only drops it, and the
  // caller hands over the one `Bytes` of a received frame (the event queue keeps
  // no other). Every frame is a region of its own, so V8 is never given one
  // pointer twice (it aborts on that, nodejs/node#32463).
  unsafe { Uint8Array::with_external_data(data, length, move |_, _| drop(bytes)) }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn json_lines_gives_each_joined_text_as_one_message() {
    let long = format!("\"{}\"", "é".repeat(3000));
    let joined = format!("{{\"a\":1}}\n{long}\n[]");
    let lines: Vec<Message> = json_lines(joined).collect();
    assert_eq!(lines, [Message::text("{\"a\":1}"), Message::text(long), Message::text("[]")]);
    assert_eq!(json_lines("1".into()).collect::<Vec<_>>(), [Message::text("1")]);
  }
}
