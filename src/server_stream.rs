//! The byte stream under a connection's tungstenite state.
//!
//! It does five things, the first for every connection, the others for one
//! that should cost little while idle (a server's) or that tungstenite
//! cannot read alone (one that agreed on compression):
//! - Reads ahead. tungstenite reads at most its (small) read buffer's size at
//!   once, which would cost one system call per 4 KiB of a large message, so
//!   this reads up to 64 KiB into a scratch buffer of the worker thread and
//!   hands on what tungstenite asks for. When more arrived, the connection
//!   keeps that buffer (its "spill") until it is consumed.
//! - Follows frame boundaries in what it hands on (frame_boundaries.rs), so
//!   the connection knows when tungstenite holds no partial frame and its
//!   state may be dropped. A frame header is handed on whole, once it has
//!   all arrived, so that the frame can be looked at first.
//! - Waits for the next bytes while no tungstenite state exists
//!   (`poll_arrival`), keeping them for the state made to read them.
//! - Reads large binary frames past tungstenite. tungstenite zero-fills
//!   its read buffer before every read, a tenth of the server's time in the
//!   1 MiB echo benchmark; a frame that is a whole binary message of
//!   DIRECT_MIN_LEN bytes or more is read straight into its own buffer
//!   instead, as many bytes per read as the socket holds.
//! - Reads compressed messages past tungstenite (which refuses frames with
//!   RSV1 set) and inflates them (deflate/inflate.rs). Control frames that
//!   come between a compressed message's fragments still go to tungstenite,
//!   which answers them.
//!
//! Before frames start, it hands on the opening handshake's head and not a
//! byte past it, so that the frames after it are followed from the first.

use std::cell::Cell;
use std::io::{self, Cursor};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use flate2::Decompress;
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{FrameHeader, Utf8Bytes};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::io::poll_read_buf;

use crate::connection_loop::{HeldError, Inbound};
use crate::deflate::inflate::Inflation;
use crate::deflate::Agreement;
use crate::direct_frame::DIRECT_MIN_LEN;
use crate::frame_boundaries::FrameBoundaries;

/// The most read from the socket at once; reads asking for at least this
/// much go straight into the caller's buffer.
pub const READ_AHEAD: usize = 64 * 1024;

/// How an HTTP head ends.
const HEAD_END: &[u8; 4] = b"\r\n\r\n";

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

impl Spill {
  fn unread(&self) -> &[u8] {
    &self.data[self.start..self.end]
  }
}

/// The first `room` unread bytes of `spill`.
fn bytes_within(spill: &Spill, room: usize) -> &[u8] {
  &spill.data[spill.start..spill.start + room]
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

/// What a read found besides bytes, kept for tungstenite.
enum Ending {
  Eof,
  Failed(io::Error),
}

/// A message read past tungstenite.
enum Held {
  Large(LargeBinary),
  Compressed(Compressed),
}

/// A large binary frame being read past tungstenite.
pub struct LargeBinary {
  payload: BytesMut,
  len: usize,
  mask: [u8; 4],
  /// The payload's first bytes that are unmasked already.
  unmasked: usize,
}

impl LargeBinary {
  /// Unmasks what arrived since the last call, while it is still in the
  /// cache: a pass over the whole payload at its end reads it back from
  /// further away.
  fn unmask_arrived(&mut self) {
    unmask(&mut self.payload[self.unmasked..], self.mask, self.unmasked);
    self.unmasked = self.payload.len();
  }

  fn missing(&self) -> usize {
    self.len - self.payload.len()
  }

  /// Appends the next payload bytes, unmasked as they are copied: eight
  /// bytes at a time, which the compiler turns into vector instructions.
  fn extend_unmasked(&mut self, masked: &[u8]) {
    let at = self.payload.len();
    let mask = mask_from(self.mask, at);
    let [a, b, c, d] = mask;
    let wide = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    self.payload.reserve(masked.len());
    let spare = &mut self.payload.spare_capacity_mut()[..masked.len()];
    let (words, rest) = masked.as_chunks::<8>();
    let (word_slots, rest_slots) = spare.as_chunks_mut::<8>();
    for (slot, word) in word_slots.iter_mut().zip(words) {
      *slot = (u64::from_ne_bytes(*word) ^ wide).to_ne_bytes().map(MaybeUninit::new);
    }
    // Whole words keep the mask's phase: the rest (under eight bytes)
    // starts at `mask[0]`.
    for ((slot, byte), mask_byte) in rest_slots.iter_mut().zip(rest).zip(wide.to_ne_bytes()) {
      slot.write(byte ^ mask_byte);
    }
    // SAFETY: the two loops wrote each of the first `masked.len()` bytes
    // of the spare capacity.
    unsafe { self.payload.set_len(at + masked.len()) };
    self.unmasked = self.payload.len();
  }
}

/// Where a large frame's payload comes from.
pub trait PayloadSource: AsyncRead + Unpin {
  /// Reads more of `frame`'s payload into it and unmasks it; 0 at the end
  /// of the stream.
  fn poll_payload(
    &mut self,
    cx: &mut Context<'_>,
    frame: &mut LargeBinary,
  ) -> Poll<io::Result<usize>> {
    let missing = frame.missing();
    let mut window = (&mut frame.payload).limit(missing);
    let read = ready!(poll_read_buf(Pin::new(self), cx, &mut window))?;
    frame.unmask_arrived();
    Poll::Ready(Ok(read))
  }
}

impl PayloadSource for tokio::net::TcpStream {}
impl PayloadSource for tokio::net::UnixStream {}
/// The Socket's: a server's frames are not masked, nor held back.
impl PayloadSource for tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream> {}

/// rustls decrypts each record in a buffer of its own: the payload is
/// copied out of it unmasked, one pass where reading, then unmasking, takes
/// two.
impl<IO: AsyncRead + AsyncWrite + Unpin> PayloadSource for TlsStream<IO> {
  fn poll_payload(
    &mut self,
    cx: &mut Context<'_>,
    frame: &mut LargeBinary,
  ) -> Poll<io::Result<usize>> {
    poll_buffered_payload(self, cx, frame)
  }
}

/// `PayloadSource::poll_payload` for a source with a buffer of its own.
fn poll_buffered_payload<R: AsyncBufRead + Unpin>(
  source: &mut R,
  cx: &mut Context<'_>,
  frame: &mut LargeBinary,
) -> Poll<io::Result<usize>> {
  let mut source = Pin::new(source);
  let buffered = ready!(source.as_mut().poll_fill_buf(cx))?;
  let taken = buffered.len().min(frame.missing());
  frame.extend_unmasked(&buffered[..taken]);
  source.consume(taken);
  Poll::Ready(Ok(taken))
}

/// A compressed message being read and inflated.
struct Compressed {
  binary: bool,
  inflation: Inflation,
  /// Payload bytes of the current frame still to come.
  payload_left: u64,
  /// The current frame's mask, and where in its cycle the next byte is.
  mask: Option<[u8; 4]>,
  mask_at: usize,
  /// The current frame is the message's last.
  last_frame: bool,
  /// Compressed bytes read so far: bounded like the inflated ones.
  compressed: u64,
}

/// Removes a client's mask (RFC 6455 5.3) from bytes that start `at` bytes
/// into the masked payload; tungstenite keeps its own private.
fn unmask(payload: &mut [u8], mask: [u8; 4], at: usize) {
  let mask = mask_from(mask, at);
  let word = u32::from_ne_bytes(mask);
  let (words, rest) = payload.as_chunks_mut::<4>();
  for chunk in words {
    *chunk = (u32::from_ne_bytes(*chunk) ^ word).to_ne_bytes();
  }
  for (byte, mask_byte) in rest.iter_mut().zip(mask) {
    *byte ^= mask_byte;
  }
}

/// The mask as it applies from `at` bytes into the payload.
fn mask_from(mask: [u8; 4], at: usize) -> [u8; 4] {
  [mask[at % 4], mask[(at + 1) % 4], mask[(at + 2) % 4], mask[(at + 3) % 4]]
}

/// Which frames the stream holds back from tungstenite at a message's
/// start.
#[derive(Clone, Copy)]
struct HoldBack {
  /// Binary frames this large or larger, up to the largest message, are
  /// read directly; 0 reads none.
  large_limit: u32,
  /// Compressed messages are inflated here (compression was agreed on).
  compressed: bool,
  /// Frames from the peer are masked (it is a client).
  peer_masks: bool,
}

impl HoldBack {
  /// Whether a frame starts a message the stream reads itself. A frame
  /// that is not quite right for that goes to tungstenite, which reports
  /// what is wrong with it.
  fn picks(&self, header: &FrameHeader, len: u64) -> bool {
    let data = matches!(header.opcode, OpCode::Data(Data::Text | Data::Binary));
    let well_masked = header.mask.is_some() == self.peer_masks;
    let reserved = header.rsv2 || header.rsv3;
    if !data || !well_masked || reserved {
      return false;
    }
    if header.rsv1 {
      return self.compressed;
    }
    header.is_final
      && header.opcode == OpCode::Data(Data::Binary)
      && len >= DIRECT_MIN_LEN as u64
      && len <= u64::from(self.large_limit)
  }
}

/// What came next in a held compressed message.
enum Fragment {
  /// Its next frame, whose payload follows.
  Started,
  /// A control frame, for tungstenite.
  Control,
  /// A header that has not all arrived.
  Incomplete,
  Invalid(HeldError),
}

fn is_control(opcode: OpCode) -> bool {
  matches!(opcode, OpCode::Control(_))
}

fn unexpected_eof() -> HeldError {
  io::Error::from(io::ErrorKind::UnexpectedEof).into()
}

/// What `hand_on` did.
enum HandOn {
  /// Bytes went into tungstenite's buffer.
  Handed,
  /// The next frame starts a message read past tungstenite.
  HeldBack,
  /// The next bytes are a held message's, or a header that has not all
  /// arrived; tungstenite waits.
  Wait,
  /// Nothing can be handed on until more bytes arrive.
  NeedMore,
}

pub struct ServerStream<S> {
  inner: S,
  /// Boxed: it exists only between reads, and idle connections should be
  /// small.
  spill: Option<Box<Spill>>,
  ending: Option<Ending>,
  boundaries: FrameBoundaries,
  /// Boxed for the same reason as `spill`.
  held: Option<Box<Held>>,
  /// The connection's maximum message size; 0 until `set_max_message`.
  max_message: u32,
  /// How many bytes of HEAD_END the bytes handed on so far end with, while
  /// the opening handshake's head is read; `None` once frames started.
  head_end_seen: Option<u8>,
  large_binary: bool,
  peer_masks: bool,
  /// Whether the transport is TLS, whose clean close ends with close_notify.
  tls: bool,
  /// What compression the two ends agreed on, if any.
  deflate: Option<Agreement>,
  /// The inflater between messages, when the peer keeps its context.
  kept_inflater: Option<Box<Decompress>>,
}

impl<S> ServerStream<S> {
  /// A server connection's stream: the peer masks its frames, and large
  /// binary frames are read directly.
  pub fn new(inner: S) -> ServerStream<S> {
    ServerStream {
      inner,
      spill: None,
      ending: None,
      boundaries: FrameBoundaries::new(),
      held: None,
      max_message: 0,
      head_end_seen: Some(0),
      large_binary: true,
      peer_masks: true,
      tls: false,
      deflate: None,
      kept_inflater: None,
    }
  }

  /// The stream under this one.
  pub fn get_ref(&self) -> &S {
    &self.inner
  }

  /// A client connection's stream: the server does not mask.
  pub fn for_client(inner: S) -> ServerStream<S> {
    ServerStream { large_binary: false, peer_masks: false, ..ServerStream::new(inner) }
  }

  /// The stream over a TLS transport.
  pub fn over_tls(self) -> ServerStream<S> {
    ServerStream { tls: true, ..self }
  }

  /// A dormant connection's stream, back in tokio (dormancy.rs).
  #[cfg(dormancy)]
  pub fn resume(inner: S, boundaries: FrameBoundaries) -> ServerStream<S> {
    ServerStream { boundaries, head_end_seen: None, ..ServerStream::new(inner) }
  }

  /// Whether the stream holds nothing but the socket and where frames
  /// begin, so that the connection may go dormant. (Its agreement on
  /// compression is the connection's to give back, `agree_on`.)
  #[cfg(dormancy)]
  pub fn may_go_dormant(&self) -> bool {
    self.spill.is_none()
      && self.ending.is_none()
      && self.held.is_none()
      && self.kept_inflater.is_none()
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

  /// Sets the largest message the peer may send: larger binary frames go
  /// to tungstenite, which refuses them, and compressed messages stop
  /// inflating past it.
  pub fn set_max_message(&mut self, limit: usize) {
    self.max_message = u32::try_from(limit).unwrap_or(u32::MAX);
  }

  /// Compressed messages are inflated as `agreement` says.
  pub fn agree_on(&mut self, agreement: Option<Agreement>) {
    self.deflate = agreement;
  }

  /// The opening handshake is done: frames start here, with `leftover`
  /// (what the handshake read past its head) to be read first.
  pub fn start_frames(&mut self, mut leftover: Vec<u8>) {
    self.boundaries = FrameBoundaries::new();
    self.head_end_seen = None;
    if let Some(spill) = self.spill.take() {
      leftover.extend_from_slice(spill.unread());
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
    let mut cursor = Cursor::new(spill.unread());
    FrameHeader::parse(&mut cursor).ok().flatten().map(|(_, len)| len)
  }

  /// Whether everything handed on so far ends at a message boundary and no
  /// message is being read past tungstenite.
  pub fn between_messages(&self) -> bool {
    self.held.is_none() && self.boundaries.between_messages()
  }

  /// Whether the held compressed message is between two of its frames,
  /// where a control frame may come.
  fn between_fragments(&self) -> bool {
    matches!(self.held.as_deref(), Some(Held::Compressed(message)) if message.payload_left == 0 && !message.last_frame)
  }

  fn hold_back(&self) -> HoldBack {
    HoldBack {
      large_limit: if self.large_binary { self.max_message } else { 0 },
      compressed: self.deflate.is_some(),
      peer_masks: self.peer_masks,
    }
  }

  /// Hands on to tungstenite as much of `spill` as `buf` takes, up to the
  /// next frame it must not read or a header not whole yet.
  fn hand_on(&mut self, spill: &mut Spill, buf: &mut ReadBuf<'_>) -> HandOn {
    let room = (spill.end - spill.start).min(buf.remaining());
    let bytes = bytes_within(spill, room);
    let handed = match self.head_end_seen {
      Some(seen) => self.follow_head(bytes, seen),
      // While a compressed message is held, only the control frames between
      // its fragments are tungstenite's; inside a fragment, every byte is
      // the message's.
      None if self.held.is_some() => {
        if !self.between_fragments() {
          return HandOn::Wait;
        }
        self.boundaries.follow_until(bytes, |header, _| !is_control(header.opcode))
      }
      None => {
        let hold_back = self.hold_back();
        self.boundaries.follow_until(bytes, |header, len| hold_back.picks(header, len))
      }
    };
    if handed > 0 {
      buf.put_slice(&spill.data[spill.start..spill.start + handed]);
      spill.start += handed;
      return HandOn::Handed;
    }
    if self.held.is_some() {
      return HandOn::Wait;
    }
    let mut cursor = Cursor::new(bytes_within(spill, room));
    let Ok(Some((header, len))) = FrameHeader::parse(&mut cursor) else { return HandOn::NeedMore };
    spill.start += cursor.position() as usize;
    self.held = Some(Box::new(self.start_held(&header, len)));
    HandOn::HeldBack
  }

  /// How much of `bytes` belongs to the handshake's head, given that what
  /// was handed before ends with `seen` bytes of HEAD_END.
  fn follow_head(&mut self, bytes: &[u8], mut seen: u8) -> usize {
    for (at, &byte) in bytes.iter().enumerate() {
      seen = match (byte, seen) {
        (b'\r', 0 | 2) | (b'\n', 1 | 3) => seen + 1,
        (b'\r', _) => 1,
        _ => 0,
      };
      if usize::from(seen) == HEAD_END.len() {
        self.head_end_seen = None;
        return at + 1;
      }
    }
    self.head_end_seen = Some(seen);
    bytes.len()
  }

  /// The held message a picked frame starts.
  fn start_held(&mut self, header: &FrameHeader, len: u64) -> Held {
    if !header.rsv1 {
      let len = usize::try_from(len).unwrap_or(usize::MAX);
      let mask = header.mask.unwrap_or_default();
      return Held::Large(LargeBinary {
        payload: BytesMut::with_capacity(len),
        len,
        mask,
        unmasked: 0,
      });
    }
    let keeps_context = self.deflate.is_some_and(|agreement| agreement.receive_takeover);
    let kept = if keeps_context { self.kept_inflater.take() } else { None };
    Held::Compressed(Compressed {
      binary: header.opcode == OpCode::Data(Data::Binary),
      inflation: Inflation::start(kept, self.max_message as usize),
      payload_left: len,
      mask: header.mask,
      mask_at: 0,
      last_frame: header.is_final,
      compressed: len,
    })
  }
}

impl<S: AsyncRead + Unpin> ServerStream<S> {
  /// Reads more bytes after those the spill holds (a header cut short), or
  /// keeps the end of the stream for tungstenite.
  fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<()> {
    let mut scratch = take_scratch();
    let unread = self.spill.as_ref().map_or(&[][..], |spill| spill.unread());
    let kept = unread.len().min(READ_AHEAD - 1);
    scratch[..kept].copy_from_slice(&unread[..kept]);
    let mut ahead = ReadBuf::new(&mut scratch[kept..]);
    let arrived = Pin::new(&mut self.inner).poll_read(cx, &mut ahead);
    let read = ahead.filled().len();
    let ending = match arrived {
      Poll::Ready(Ok(())) if read > 0 => {
        if let Some(old) = self.spill.take() {
          give_back(old.data);
        }
        self.spill = Some(Box::new(Spill { data: scratch, start: 0, end: kept + read }));
        return Poll::Ready(());
      }
      Poll::Ready(Ok(())) => Ending::Eof,
      Poll::Ready(Err(error)) => Ending::Failed(error),
      Poll::Pending => {
        give_back(scratch);
        return Poll::Pending;
      }
    };
    give_back(scratch);
    self.ending = Some(ending);
    Poll::Ready(())
  }

  /// Reads and inflates the held compressed message's frames until it is
  /// whole. Control frames between them are left for tungstenite, which
  /// the loop polls first.
  fn poll_compressed(&mut self, cx: &mut Context<'_>) -> Poll<Result<Message, HeldError>> {
    loop {
      let Some(Held::Compressed(message)) = self.held.as_deref() else {
        unreachable!("a compressed message is held")
      };
      let (payload_left, last_frame, binary) =
        (message.payload_left, message.last_frame, message.binary);
      if payload_left > 0 {
        match self.spill.take() {
          Some(spill) => self.inflate_from(spill)?,
          None if self.ending.is_some() => return Poll::Ready(Err(unexpected_eof())),
          None => ready!(self.poll_fill(cx)),
        }
        continue;
      }
      if last_frame {
        return Poll::Ready(self.finish_compressed());
      }
      // Between two of the message's frames. tungstenite may be in the
      // middle of a control frame, and reads on itself.
      if !self.boundaries.at_frame_start() {
        return Poll::Pending;
      }
      match self.next_fragment(binary) {
        Fragment::Started => {}
        Fragment::Control => {
          // tungstenite's to read: the loop polls it again first.
          cx.waker().wake_by_ref();
          return Poll::Pending;
        }
        Fragment::Incomplete if self.ending.is_some() => return Poll::Ready(Err(unexpected_eof())),
        Fragment::Incomplete => ready!(self.poll_fill(cx)),
        Fragment::Invalid(error) => return Poll::Ready(Err(error)),
      }
    }
  }

  /// Unmasks and inflates what `spill` holds of the current frame.
  fn inflate_from(&mut self, mut spill: Box<Spill>) -> Result<(), HeldError> {
    let Some(Held::Compressed(message)) = self.held.as_deref_mut() else {
      unreachable!("a compressed message is held")
    };
    if message.compressed > u64::from(self.max_message) {
      return Err(HeldError::TooBig);
    }
    let left = usize::try_from(message.payload_left).unwrap_or(usize::MAX);
    let taken = (spill.end - spill.start).min(left);
    let bytes = &mut spill.data[spill.start..spill.start + taken];
    if let Some(mask) = message.mask {
      unmask(bytes, mask, message.mask_at);
      message.mask_at = (message.mask_at + taken) % 4;
    }
    let pushed = message.inflation.push(bytes);
    spill.start += taken;
    message.payload_left -= taken as u64;
    keep_spill(&mut self.spill, spill);
    Ok(pushed?)
  }

  /// Takes the header of the held message's next frame, which must be a
  /// continuation (a control frame is tungstenite's).
  fn next_fragment(&mut self, binary: bool) -> Fragment {
    let unread = self.spill.as_ref().map_or(&[][..], |spill| spill.unread());
    let mut cursor = Cursor::new(unread);
    let (header, len) = match FrameHeader::parse(&mut cursor) {
      Ok(Some(parsed)) => parsed,
      Ok(None) => return Fragment::Incomplete,
      Err(error) => return Fragment::Invalid(error.into()),
    };
    if is_control(header.opcode) {
      return Fragment::Control;
    }
    let problem = if header.rsv1 || header.rsv2 || header.rsv3 {
      Some(ProtocolError::NonZeroReservedBits)
    } else if header.mask.is_some() != self.peer_masks {
      Some(if self.peer_masks {
        ProtocolError::UnmaskedFrameFromClient
      } else {
        ProtocolError::MaskedFrameFromServer
      })
    } else if header.opcode != OpCode::Data(Data::Continue) {
      Some(ProtocolError::ExpectedFragment(if binary { Data::Binary } else { Data::Text }))
    } else {
      None
    };
    if let Some(problem) = problem {
      return Fragment::Invalid(WsError::Protocol(problem).into());
    }
    let header_len = cursor.position() as usize;
    let Some(Held::Compressed(message)) = self.held.as_deref_mut() else {
      unreachable!("a compressed message is held")
    };
    message.compressed = message.compressed.saturating_add(len);
    if let Some(spill) = self.spill.as_mut() {
      spill.start += header_len;
    }
    message.payload_left = len;
    message.mask = header.mask;
    message.mask_at = 0;
    message.last_frame = header.is_final;
    Fragment::Started
  }

  fn finish_compressed(&mut self) -> Result<Message, HeldError> {
    let Some(held) = self.held.take() else { unreachable!("a compressed message is held") };
    let Held::Compressed(message) = *held else { unreachable!("a compressed message is held") };
    let keep = self.deflate.is_some_and(|agreement| agreement.receive_takeover);
    let (payload, kept) = message.inflation.finish(keep)?;
    self.kept_inflater = kept;
    let payload = Bytes::from(payload);
    if message.binary {
      return Ok(Message::Binary(payload));
    }
    let text = Utf8Bytes::try_from(payload).map_err(|error| WsError::Utf8(error.to_string()))?;
    Ok(Message::Text(text))
  }

  /// Ready once bytes, the end of the stream or an error arrived; what came
  /// is kept for the next `poll_read`.
  pub fn poll_arrival(&mut self, cx: &mut Context<'_>) -> Poll<()> {
    if self.spill.is_some() || self.ending.is_some() {
      return Poll::Ready(());
    }
    self.poll_fill(cx)
  }
}

impl<S: PayloadSource> ServerStream<S> {
  /// A message read past tungstenite, once whole; `None` when none is
  /// being read.
  pub fn poll_held_message(
    &mut self,
    cx: &mut Context<'_>,
  ) -> Poll<Option<Result<Message, HeldError>>> {
    match self.held.as_deref() {
      None => Poll::Ready(None),
      Some(Held::Large(_)) => self.poll_large_binary(cx).map(Some),
      Some(Held::Compressed(_)) => self.poll_compressed(cx).map(Some),
    }
  }

  fn poll_large_binary(&mut self, cx: &mut Context<'_>) -> Poll<Result<Message, HeldError>> {
    let Some(Held::Large(frame)) = self.held.as_deref_mut() else {
      unreachable!("a large frame is held")
    };
    if let Some(mut spill) = self.spill.take() {
      let taken = (spill.end - spill.start).min(frame.len - frame.payload.len());
      frame.payload.extend_from_slice(&spill.data[spill.start..spill.start + taken]);
      spill.start += taken;
      keep_spill(&mut self.spill, spill);
    }
    frame.unmask_arrived();
    while frame.missing() > 0 {
      if ready!(self.inner.poll_payload(cx, frame))? == 0 {
        return Poll::Ready(Err(unexpected_eof()));
      }
    }
    let Some(held) = self.held.take() else { unreachable!("a large frame is held") };
    let Held::Large(LargeBinary { payload, .. }) = *held else { unreachable!() };
    Poll::Ready(Ok(Message::Binary(payload.freeze())))
  }
}

impl<S: PayloadSource> Inbound for ServerStream<S> {
  /// Bytes still unread (the start of a header, which tungstenite waits
  /// for whole) keep the connection active: resting, they would wake it at
  /// once, again and again.
  fn may_rest(&self) -> bool {
    self.between_messages() && self.spill.is_none()
  }

  fn poll_held_message(
    &mut self,
    cx: &mut Context<'_>,
  ) -> Poll<Option<Result<Message, HeldError>>> {
    ServerStream::poll_held_message(self, cx)
  }

  fn arriving(&self) -> usize {
    let held = match self.held.as_deref() {
      Some(Held::Large(frame)) => frame.payload.len(),
      Some(Held::Compressed(message)) => message.inflation.inflated(),
      None => 0,
    };
    self.boundaries.in_message() + held
  }

  fn ends_with_close_notify(&self) -> bool {
    self.tls
  }

  fn poll_discard(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
    self.spill = None;
    let mut scratch = [0; 4096];
    let mut buf = ReadBuf::new(&mut scratch);
    ready!(Pin::new(&mut self.inner).poll_read(cx, &mut buf))?;
    Poll::Ready(Ok(buf.filled().len()))
  }
}

impl<S: AsyncRead + Unpin> AsyncRead for ServerStream<S> {
  fn poll_read(
    self: Pin<&mut Self>,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
  ) -> Poll<io::Result<()>> {
    let this = self.get_mut();
    loop {
      // tungstenite waits while the loop reads a large frame (polled right
      // after tungstenite in the same round, so no wake-up is needed here).
      if matches!(this.held.as_deref(), Some(Held::Large(_))) {
        return Poll::Pending;
      }
      let Some(mut spill) = this.spill.take() else {
        match this.ending.take() {
          Some(Ending::Eof) => return Poll::Ready(Ok(())),
          Some(Ending::Failed(error)) => return Poll::Ready(Err(error)),
          None => {}
        }
        // Straight into tungstenite's buffer only inside a frame's payload:
        // at a frame's start, the frame may be one to hold back.
        let in_payload =
          this.head_end_seen.is_none() && this.boundaries.payload_left() >= buf.remaining() as u64;
        if buf.remaining() >= READ_AHEAD && in_payload {
          let before = buf.filled().len();
          let read = Pin::new(&mut this.inner).poll_read(cx, buf);
          this.boundaries.follow(&buf.filled()[before..]);
          return read;
        }
        ready!(this.poll_fill(cx));
        continue;
      };
      let handed = this.hand_on(&mut spill, buf);
      keep_spill(&mut this.spill, spill);
      match handed {
        HandOn::Handed => return Poll::Ready(Ok(())),
        HandOn::HeldBack | HandOn::Wait => return Poll::Pending,
        // A header cut short by the end of the stream: nothing more comes.
        HandOn::NeedMore if this.ending.is_some() => {
          if let Some(spill) = this.spill.take() {
            give_back(spill.data);
          }
        }
        HandOn::NeedMore => ready!(this.poll_fill(cx)),
      }
    }
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

#[cfg(test)]
mod tests {
  use std::task::Waker;

  use tokio::io::BufReader;

  use super::*;

  /// A payload of `len` bytes, and the same masked with `mask` as a client
  /// sends it.
  fn masked(len: usize, mask: [u8; 4]) -> (Vec<u8>, Vec<u8>) {
    let payload: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
    let mut masked = payload.clone();
    unmask(&mut masked, mask, 0);
    (payload, masked)
  }

  fn frame(len: usize, mask: [u8; 4]) -> LargeBinary {
    LargeBinary { payload: BytesMut::new(), len, mask, unmasked: 0 }
  }

  #[test]
  fn a_payload_copied_out_of_a_buffered_source_is_unmasked_at_every_offset() {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let (payload, masked) = masked(1000, mask);
    let mut cx = Context::from_waker(Waker::noop());
    // Buffers of 1, 3, 4, 13 and 64 bytes start copies at every offset in
    // the mask's cycle, with and without whole words; the source holds
    // more than the payload, which stays for the next frame.
    for capacity in [1, 3, 4, 13, 64] {
      let mut input = masked.clone();
      input.extend_from_slice(b"next frame");
      let mut source = BufReader::with_capacity(capacity, &input[..]);
      let mut frame = frame(payload.len(), mask);
      while frame.missing() > 0 {
        let Poll::Ready(Ok(read)) = poll_buffered_payload(&mut source, &mut cx, &mut frame) else {
          panic!("a slice is always ready")
        };
        assert!(read > 0 && read <= capacity);
      }
      assert!(frame.payload[..] == payload[..], "buffer of {capacity}");
      assert_eq!(frame.unmasked, payload.len());
      let Poll::Ready(Ok(rest)) = Pin::new(&mut source).poll_fill_buf(&mut cx) else {
        panic!("a slice is always ready")
      };
      assert_eq!(rest[0], b'n');
    }
  }

  #[test]
  fn a_payload_unmasked_partly_on_the_way_and_partly_after_is_whole() {
    let mask = [0xa5, 0x00, 0xff, 0x3c];
    let (payload, masked) = masked(4099, mask);
    let mut frame = frame(payload.len(), mask);
    frame.extend_unmasked(&masked[..13]);
    frame.payload.extend_from_slice(&masked[13..]);
    frame.unmask_arrived();
    assert!(frame.payload[..] == payload[..]);
  }
}
