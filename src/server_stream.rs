//! The byte stream under a server connection's tungstenite state.
//!
//! It does three things for a connection that should cost little while idle:
//! - Reads ahead. tungstenite reads at most its (small) read buffer's size at
//!   once, which would cost one system call per 4 KiB of a large message, so
//!   this reads up to 64 KiB into a scratch buffer of the worker thread and
//!   hands on what tungstenite asks for. When more arrived, the connection
//!   keeps that buffer (its "spill") until it is consumed.
//! - Follows frame boundaries in what it hands on (frame_boundaries.rs), so
//!   the connection knows when tungstenite holds no partial frame and its
//!   state may be dropped.
//! - Waits for the next bytes while no tungstenite state exists
//!   (`poll_arrival`), keeping them for the state made to read them.

use std::cell::Cell;
use std::io::{self, Cursor};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

use crate::frame_boundaries::FrameBoundaries;

/// The most read from the socket at once; reads asking for at least this
/// much go straight into the caller's buffer.
pub const READ_AHEAD: usize = 64 * 1024;

thread_local! {
  static SCRATCH: Cell<Option<Box<[u8]>>> = const { Cell::new(None) };
}

fn take_scratch() -> Box<[u8]> {
  SCRATCH.take().unwrap_or_else(|| vec![0; READ_AHEAD].into_boxed_slice())
}

fn give_back(buffer: Box<[u8]>) {
  // A handshake's leftover bytes are a spill too, of another size.
  if buffer.len() == READ_AHEAD {
    SCRATCH.set(Some(buffer));
  }
}

/// Bytes read and not handed on yet: `data[start..end]`.
struct Spill {
  data: Box<[u8]>,
  start: usize,
  end: usize,
}

/// What a read while resting found besides bytes, kept for tungstenite.
enum Ending {
  Eof,
  Failed(io::Error),
}

pub struct ServerStream<S> {
  inner: S,
  /// Boxed: it exists only between reads, and idle connections should be
  /// small.
  spill: Option<Box<Spill>>,
  ending: Option<Ending>,
  boundaries: FrameBoundaries,
}

impl<S> ServerStream<S> {
  pub fn new(inner: S) -> ServerStream<S> {
    ServerStream { inner, spill: None, ending: None, boundaries: FrameBoundaries::new() }
  }

  /// The opening handshake is done: frames start here, with `leftover`
  /// (what the handshake read past the request) to be read first.
  pub fn start_frames(&mut self, mut leftover: Vec<u8>) {
    self.boundaries = FrameBoundaries::new();
    if let Some(spill) = self.spill.take() {
      leftover.extend_from_slice(&spill.data[spill.start..spill.end]);
      give_back(spill.data);
    }
    if !leftover.is_empty() {
      let end = leftover.len();
      self.spill = Some(Box::new(Spill { data: leftover.into_boxed_slice(), start: 0, end }));
    }
  }

  /// The payload length of the next frame, when its header is among the
  /// bytes read but not handed on yet.
  pub fn next_frame_len(&self) -> Option<u64> {
    let spill = self.spill.as_ref()?;
    if !self.boundaries.between_messages() {
      return None;
    }
    let mut cursor = Cursor::new(&spill.data[spill.start..spill.end]);
    FrameHeader::parse(&mut cursor).ok().flatten().map(|(_, len)| len)
  }

  /// Whether everything handed on so far ends at a message boundary.
  pub fn between_messages(&self) -> bool {
    self.boundaries.between_messages()
  }

  /// Hands on up to `buf.remaining()` spilled bytes.
  fn take_spill(&mut self, buf: &mut ReadBuf<'_>) -> bool {
    let Some(spill) = &mut self.spill else { return false };
    let taken = (spill.end - spill.start).min(buf.remaining());
    let bytes = &spill.data[spill.start..spill.start + taken];
    self.boundaries.follow(bytes);
    buf.put_slice(bytes);
    spill.start += taken;
    if spill.start == spill.end {
      // A connection holds no read-ahead memory between reads.
      if let Some(spill) = self.spill.take() {
        give_back(spill.data);
      }
    }
    true
  }
}

impl<S: AsyncRead + Unpin> ServerStream<S> {
  /// Ready once bytes, the end of the stream or an error arrived; what came
  /// is kept for the next `poll_read`.
  pub fn poll_arrival(&mut self, cx: &mut Context<'_>) -> Poll<()> {
    if self.spill.is_some() || self.ending.is_some() {
      return Poll::Ready(());
    }
    let mut scratch = take_scratch();
    let mut ahead = ReadBuf::new(&mut scratch);
    let arrived = Pin::new(&mut self.inner).poll_read(cx, &mut ahead);
    let end = ahead.filled().len();
    let ready = match arrived {
      Poll::Ready(Ok(())) if end > 0 => {
        self.spill = Some(Box::new(Spill { data: scratch, start: 0, end }));
        return Poll::Ready(());
      }
      Poll::Ready(Ok(())) => Some(Ending::Eof),
      Poll::Ready(Err(error)) => Some(Ending::Failed(error)),
      Poll::Pending => None,
    };
    give_back(scratch);
    match ready {
      Some(ending) => {
        self.ending = Some(ending);
        Poll::Ready(())
      }
      None => Poll::Pending,
    }
  }
}

impl<S: AsyncRead + Unpin> AsyncRead for ServerStream<S> {
  fn poll_read(
    self: Pin<&mut Self>,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
  ) -> Poll<io::Result<()>> {
    let this = self.get_mut();
    if this.take_spill(buf) {
      return Poll::Ready(Ok(()));
    }
    match this.ending.take() {
      Some(Ending::Eof) => return Poll::Ready(Ok(())),
      Some(Ending::Failed(error)) => return Poll::Ready(Err(error)),
      None => {}
    }
    if buf.remaining() >= READ_AHEAD {
      let before = buf.filled().len();
      let read = Pin::new(&mut this.inner).poll_read(cx, buf);
      this.boundaries.follow(&buf.filled()[before..]);
      return read;
    }

    let mut scratch = take_scratch();
    let mut ahead = ReadBuf::new(&mut scratch);
    let end = match Pin::new(&mut this.inner).poll_read(cx, &mut ahead) {
      Poll::Ready(Ok(())) => ahead.filled().len(),
      other => {
        give_back(scratch);
        return other;
      }
    };
    let taken = end.min(buf.remaining());
    this.boundaries.follow(&scratch[..taken]);
    buf.put_slice(&scratch[..taken]);
    if taken < end {
      this.spill = Some(Box::new(Spill { data: scratch, start: taken, end }));
    } else {
      give_back(scratch);
    }
    Poll::Ready(Ok(()))
  }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ServerStream<S> {
  fn poll_write(
    self: Pin<&mut Self>,
    cx: &mut Context<'_>,
    data: &[u8],
  ) -> Poll<io::Result<usize>> {
    Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
  }

  fn poll_write_vectored(
    self: Pin<&mut Self>,
    cx: &mut Context<'_>,
    bufs: &[io::IoSlice<'_>],
  ) -> Poll<io::Result<usize>> {
    Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
  }

  fn is_write_vectored(&self) -> bool {
    self.inner.is_write_vectored()
  }

  fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    Pin::new(&mut self.get_mut().inner).poll_flush(cx)
  }

  fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
  }
}
