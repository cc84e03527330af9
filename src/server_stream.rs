//! The byte stream under a server connection's tungstenite state.
//!
//! It does four things for a connection that should cost little while idle:
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
//! - Reads large binary frames past tungstenite (`poll_large_binary`).
//!   tungstenite zero-fills its read buffer before every read, a tenth of
//!   the server's time in the 1 MiB echo benchmark; a frame that is a whole
//!   binary message of DIRECT_MIN_LEN bytes or more is read straight into
//!   its own buffer instead, as many bytes per read as the socket holds.

use std::cell::Cell;
use std::io::{self, Cursor};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_util::io::poll_read_buf;

use crate::connection_loop::Inbound;
use crate::direct_frame::DIRECT_MIN_LEN;
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

/// Keeps what is left of `spill` in `slot`, or gives its buffer back.
fn keep_spill(slot: &mut Option<Box<Spill>>, spill: Box<Spill>) {
  if spill.start < spill.end {
    *slot = Some(spill);
  } else {
    // A connection holds no read-ahead memory between reads.
    give_back(spill.data);
  }
}

/// What a read while resting found besides bytes, kept for tungstenite.
enum Ending {
  Eof,
  Failed(io::Error),
}

/// A large binary frame being read past tungstenite.
struct LargeBinary {
  payload: BytesMut,
  len: usize,
  mask: [u8; 4],
}

impl LargeBinary {
  /// Whether a frame is one tungstenite would take as one binary message
  /// of at least DIRECT_MIN_LEN and at most `limit` bytes: final, masked,
  /// no reserved bits. Anything else goes to tungstenite, which also
  /// reports what is wrong with it.
  fn accepts(header: &FrameHeader, len: u64, limit: usize) -> bool {
    header.is_final
      && !(header.rsv1 || header.rsv2 || header.rsv3)
      && matches!(header.opcode, OpCode::Data(Data::Binary))
      && header.mask.is_some()
      && len >= DIRECT_MIN_LEN as u64
      && len <= limit as u64
  }

  /// The header's length and the frame, when `bytes` start with the whole
  /// header of a frame `accepts` takes.
  fn at_start_of(bytes: &[u8], limit: usize) -> Option<(usize, LargeBinary)> {
    let mut cursor = Cursor::new(bytes);
    let (header, len) = FrameHeader::parse(&mut cursor).ok().flatten()?;
    if !LargeBinary::accepts(&header, len, limit) {
      return None;
    }
    let len = usize::try_from(len).ok()?;
    let mask = header.mask?;
    let frame = LargeBinary { payload: BytesMut::with_capacity(len), len, mask };
    Some((cursor.position() as usize, frame))
  }
}

/// Removes a client's mask (RFC 6455 5.3); tungstenite keeps its own
/// private.
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
  let word = u32::from_ne_bytes(mask);
  let (words, rest) = payload.as_chunks_mut::<4>();
  for chunk in words {
    *chunk = (u32::from_ne_bytes(*chunk) ^ word).to_ne_bytes();
  }
  for (byte, mask_byte) in rest.iter_mut().zip(mask) {
    *byte ^= mask_byte;
  }
}

pub struct ServerStream<S> {
  inner: S,
  /// Boxed: it exists only between reads, and idle connections should be
  /// small.
  spill: Option<Box<Spill>>,
  ending: Option<Ending>,
  boundaries: FrameBoundaries,
  /// Boxed for the same reason as `spill`.
  large: Option<Box<LargeBinary>>,
  /// The largest frame read past tungstenite: the connection's maximum
  /// message size; 0 until `allow_large_binary`.
  large_limit: u32,
}

impl<S> ServerStream<S> {
  pub fn new(inner: S) -> ServerStream<S> {
    ServerStream {
      inner,
      spill: None,
      ending: None,
      boundaries: FrameBoundaries::new(),
      large: None,
      large_limit: 0,
    }
  }

  /// A dormant connection's stream, back in tokio (dormancy.rs).
  #[cfg(dormancy)]
  pub fn resume(inner: S, boundaries: FrameBoundaries) -> ServerStream<S> {
    ServerStream { boundaries, ..ServerStream::new(inner) }
  }

  /// Whether the stream holds nothing but the socket and where frames
  /// begin, so that the connection may go dormant.
  #[cfg(dormancy)]
  pub fn may_go_dormant(&self) -> bool {
    self.spill.is_none() && self.ending.is_none() && self.large.is_none()
  }

  /// The socket and where frames begin, for a dormant connection; the
  /// stream itself when it holds more (`may_go_dormant`).
  #[cfg(dormancy)]
  pub fn into_dormant(self) -> Result<(S, FrameBoundaries), ServerStream<S>> {
    if !self.may_go_dormant() {
      return Err(self);
    }
    Ok((self.inner, self.boundaries))
  }

  /// Lets `poll_large_binary` read binary messages of up to `limit` bytes
  /// (larger ones go to tungstenite, which refuses them).
  pub fn allow_large_binary(&mut self, limit: usize) {
    self.large_limit = u32::try_from(limit).unwrap_or(u32::MAX);
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

  /// Whether everything handed on so far ends at a message boundary and no
  /// large binary frame is being read.
  pub fn between_messages(&self) -> bool {
    self.large.is_none() && self.boundaries.between_messages()
  }

  /// Hands on to tungstenite as much of `spill` as `buf` takes, up to the
  /// start of a large binary frame. A frame that starts `spill` is held back
  /// instead (its header taken), and tungstenite waits.
  fn hand_on(&mut self, spill: &mut Spill, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
    let room = (spill.end - spill.start).min(buf.remaining());
    let bytes = &spill.data[spill.start..spill.start + room];
    let limit = self.large_limit as usize;
    let mut handed =
      self.boundaries.follow_until(bytes, |header, len| LargeBinary::accepts(header, len, limit));
    if handed == 0 && room > 0 {
      match LargeBinary::at_start_of(&spill.data[spill.start..spill.end], limit) {
        Some((header_len, frame)) => {
          self.large = Some(Box::new(frame));
          spill.start += header_len;
          return Poll::Pending;
        }
        // `follow_until` stopped at a frame `at_start_of` would take.
        None => handed = room,
      }
    }
    buf.put_slice(&spill.data[spill.start..spill.start + handed]);
    spill.start += handed;
    Poll::Ready(Ok(()))
  }
}

impl<S: AsyncRead + Unpin> ServerStream<S> {
  /// Reads the large binary frame held back from tungstenite and gives its
  /// payload, unmasked, once it is whole: `None` when none is held back.
  pub fn poll_large_binary(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
    let Some(frame) = self.large.as_deref_mut() else { return Poll::Ready(None) };
    if let Some(mut spill) = self.spill.take() {
      let taken = (spill.end - spill.start).min(frame.len - frame.payload.len());
      frame.payload.extend_from_slice(&spill.data[spill.start..spill.start + taken]);
      spill.start += taken;
      keep_spill(&mut self.spill, spill);
    }
    while frame.payload.len() < frame.len {
      let missing = frame.len - frame.payload.len();
      let mut window = (&mut frame.payload).limit(missing);
      if ready!(poll_read_buf(Pin::new(&mut self.inner), cx, &mut window))? == 0 {
        return Poll::Ready(Some(Err(io::ErrorKind::UnexpectedEof.into())));
      }
    }
    let Some(frame) = self.large.take() else { return Poll::Ready(None) };
    let LargeBinary { mut payload, mask, .. } = *frame;
    unmask(&mut payload, mask);
    Poll::Ready(Some(Ok(payload.freeze())))
  }

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

impl<S: AsyncRead + Unpin> Inbound for &mut ServerStream<S> {
  fn may_rest(&self) -> bool {
    self.between_messages()
  }

  fn poll_large_binary(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
    ServerStream::poll_large_binary(self, cx)
  }

  fn arriving(&self) -> usize {
    let large = self.large.as_ref().map_or(0, |frame| frame.payload.len());
    self.boundaries.in_message() + large
  }
}

impl<S: AsyncRead + Unpin> AsyncRead for ServerStream<S> {
  fn poll_read(
    self: Pin<&mut Self>,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
  ) -> Poll<io::Result<()>> {
    let this = self.get_mut();
    // tungstenite waits while the loop reads a held-back frame
    // (`poll_large_binary`, polled right after tungstenite in the same
    // round, so no wake-up is needed here).
    if this.large.is_some() {
      return Poll::Pending;
    }
    if let Some(mut spill) = this.spill.take() {
      let handed = this.hand_on(&mut spill, buf);
      keep_spill(&mut this.spill, spill);
      return handed;
    }
    match this.ending.take() {
      Some(Ending::Eof) => return Poll::Ready(Ok(())),
      Some(Ending::Failed(error)) => return Poll::Ready(Err(error)),
      None => {}
    }
    // Straight into tungstenite's buffer only inside a frame's payload: at
    // a frame's start, the frame may be one to hold back.
    if buf.remaining() >= READ_AHEAD && this.boundaries.payload_left() >= buf.remaining() as u64 {
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
    let mut spill = Spill { data: scratch, start: 0, end };
    let handed = this.hand_on(&mut spill, buf);
    if spill.start < spill.end {
      this.spill = Some(Box::new(spill));
    } else {
      give_back(spill.data);
    }
    handed
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
