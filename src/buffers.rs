//! Payloads crossing between JS and Rust.

use bytes::Bytes;
use napi::bindgen_prelude::{Buffer, Either};
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

/// The payload bytes of a data frame, as `bufferedAmount` counts them.
pub fn payload_len(message: &Message) -> usize {
  match message {
    Message::Text(text) => text.len(),
    Message::Binary(bytes) => bytes.len(),
    _ => 0,
  }
}
