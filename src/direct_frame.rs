//! Large binary frames written straight from the sender's Buffer.
//!
//! tungstenite copies every frame into its write buffer, and after each
//! partial write moves what is left to the buffer's front: for a 1 MiB
//! message that is one full copy and several partial ones, a tenth of the
//! server's time in the 1 MiB echo benchmark. A server's frames are not
//! masked, so a large binary frame can go out as tungstenite's header plus
//! the payload itself, in one vectored write, with no copy.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

/// Binary messages this large or larger are written directly.
pub const DIRECT_MIN_LEN: usize = 64 * 1024;

pub struct DirectFrame {
  header: Vec<u8>,
  payload: Bytes,
  /// Bytes of header and payload written so far.
  written: usize,
}

impl DirectFrame {
  /// One final, unmasked binary frame carrying `payload`.
  pub fn new(payload: Bytes) -> DirectFrame {
    let header = FrameHeader {
      is_final: true,
      rsv1: false,
      rsv2: false,
      rsv3: false,
      opcode: OpCode::Data(Data::Binary),
      mask: None,
    };
    let mut head = Vec::with_capacity(10);
    // Writing into a Vec cannot fail.
    let _ = header.format(payload.len() as u64, &mut head);
    DirectFrame { header: head, payload, written: 0 }
  }

  pub fn payload_len(&self) -> usize {
    self.payload.len()
  }

  /// Writes what is left of the frame, then flushes.
  pub fn poll_write<S>(&mut self, stream: &mut S, cx: &mut Context<'_>) -> Poll<io::Result<()>>
  where
    S: AsyncWrite + Unpin,
  {
    let total = self.header.len() + self.payload.len();
    while self.written < total {
      let header_left = self.header.get(self.written..).unwrap_or_default();
      let payload_from = self.written.saturating_sub(self.header.len());
      let slices = [IoSlice::new(header_left), IoSlice::new(&self.payload[payload_from..])];
      let written = ready!(Pin::new(&mut *stream).poll_write_vectored(cx, &slices))?;
      if written == 0 {
        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
      }
      self.written += written;
    }
    Pin::new(stream).poll_flush(cx)
  }
}
