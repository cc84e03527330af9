//! Differential tests of a server connection's path for untrusted bytes.
//!
//! The same client byte stream, cut into the same reads, goes to two
//! servers that echo every message:
//! - ours: a `ConnectionTask` over a `ServerStream` (read-ahead, frame
//!   boundaries, large binary frames read past tungstenite, resting between
//!   messages) running the connection loop, as the server runs it;
//! - the reference: tokio-tungstenite's `WebSocketStream` used the plain
//!   way, closing with the same code when tungstenite reports an error.
//!
//! The messages delivered, the close code and the frames written back must
//! be the same (close reasons aside: ours are fixed short texts). Streams
//! are random frame sequences built around valid messages (fragments with
//! control frames between them, text split inside characters, lengths
//! around every threshold of the path) with one frame sometimes mutated
//! (reserved bits, opcodes, masking, FIN, length encodings), and random
//! bytes. `npm test` runs a few hundred cases; `npm run fuzz` runs them for
//! as long as asked (README, "Differential fuzzing").
//!
//! Compressed messages (permessage-deflate) have their own cases: tungstenite
//! cannot read them, so the reference gets the same messages uncompressed
//! and must deliver and answer what ours does with them compressed.

use std::io::Cursor;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress};
use futures_util::{SinkExt, StreamExt};
use proptest::prelude::*;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{FrameHeader, Utf8Bytes};
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::connection_loop::{close_code_for, Ended, HeldError, Inbound, Incoming};
use crate::connection_task::{self, Active, ConnectionTask, Owner, Period};
use crate::deflate::compress::SYNC_TAIL;
use crate::deflate::Agreement;
use crate::direct_frame::DIRECT_MIN_LEN;
use crate::flow::Flow;
use crate::link::{Limits, Link};
use crate::server::server_config;
use crate::server_stream::{PayloadSource, ServerStream, READ_AHEAD};

/// The client's bytes and how they arrive: reads of the sizes in `reads`
/// (in turn), each preceded by a `Pending` when `pauses` says so, then the
/// end of the stream. What the server writes is kept.
#[derive(Clone, Debug)]
struct Script {
  input: Arc<[u8]>,
  reads: Vec<usize>,
  pauses: Vec<bool>,
}

struct ScriptStream {
  script: Script,
  position: usize,
  turn: usize,
  paused: bool,
  written: Arc<Mutex<Vec<u8>>>,
}

impl ScriptStream {
  fn new(script: &Script) -> (ScriptStream, Arc<Mutex<Vec<u8>>>) {
    let written = Arc::new(Mutex::new(Vec::new()));
    let stream = ScriptStream {
      script: script.clone(),
      position: 0,
      turn: 0,
      paused: false,
      written: Arc::clone(&written),
    };
    (stream, written)
  }
}

impl AsyncRead for ScriptStream {
  fn poll_read(
    self: Pin<&mut Self>,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
  ) -> Poll<std::io::Result<()>> {
    let this = self.get_mut();
    let left = this.script.input.len() - this.position;
    if left == 0 {
      return Poll::Ready(Ok(()));
    }
    let turn = this.turn % this.script.reads.len();
    if this.script.pauses[turn] && !this.paused {
      // Nothing yet: the connection may rest here, between two reads.
      this.paused = true;
      cx.waker().wake_by_ref();
      return Poll::Pending;
    }
    let size = this.script.reads[turn].min(left).min(buf.remaining());
    buf.put_slice(&this.script.input[this.position..this.position + size]);
    this.position += size;
    this.turn += 1;
    this.paused = false;
    Poll::Ready(Ok(()))
  }
}

impl PayloadSource for ScriptStream {}

impl AsyncWrite for ScriptStream {
  fn poll_write(
    self: Pin<&mut Self>,
    _: &mut Context<'_>,
    bytes: &[u8],
  ) -> Poll<std::io::Result<usize>> {
    self.written.lock().expect("not poisoned").extend_from_slice(bytes);
    Poll::Ready(Ok(bytes.len()))
  }

  fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
    Poll::Ready(Ok(()))
  }

  fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
    Poll::Ready(Ok(()))
  }
}

/// What a server did with a script.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
  /// `(is_binary, payload)` of each message delivered.
  delivered: Vec<(bool, Bytes)>,
  close_code: u16,
  /// The frames written back: `(opcode, payload)`, a close frame's payload
  /// reduced to its code.
  frames: Vec<(u8, Vec<u8>)>,
}

fn echo_of(binary: bool, payload: Bytes) -> Message {
  if binary {
    Message::Binary(payload)
  } else {
    Message::Text(Utf8Bytes::try_from(payload).expect("delivered text is UTF-8"))
  }
}

/// Our server connection, as the server drives it, echoing.
#[derive(Clone)]
struct Echoing {
  link: Arc<Link>,
  flow: Arc<Flow>,
  config: WebSocketConfig,
  deflate: Option<Agreement>,
  delivered: Arc<Mutex<Vec<(bool, Bytes)>>>,
  ended: Arc<Mutex<Option<u16>>>,
}

impl Owner<ScriptStream> for Echoing {
  fn link(&self) -> &Link {
    &self.link
  }

  fn activate(&self, stream: ServerStream<ScriptStream>, generation: u32) -> Active<ScriptStream> {
    let this = self.clone();
    Box::pin(async move {
      let echo = Arc::clone(&this.link);
      let delivered = Arc::clone(&this.delivered);
      let deliver = move |incoming| {
        if let Incoming::Data(binary, payload) = incoming {
          delivered.lock().expect("not poisoned").push((binary, payload.clone()));
          echo.send(echo_of(binary, payload), Limits::NONE);
        }
      };
      let period = Period {
        config: this.config,
        deflate: this.deflate,
        link: &this.link,
        flow: &this.flow,
        generation,
      };
      connection_task::active_period(stream, period, deliver).await
    })
  }

  fn ended(&mut self, ended: Ended) {
    *self.ended.lock().expect("not poisoned") = Some(ended.code);
  }
}

/// A runtime whose clock moves only when every task waits, so that the
/// close timeouts pass at once.
fn runtime() -> tokio::runtime::Runtime {
  tokio::runtime::Builder::new_current_thread()
    .enable_time()
    .start_paused(true)
    .build()
    .expect("a runtime")
}

fn run_ours(script: &Script, config: WebSocketConfig, deflate: Option<Agreement>) -> Observed {
  let (stream, written) = ScriptStream::new(script);
  let owner = Echoing {
    link: Arc::new(Link::new()),
    flow: Arc::new(Flow::new(usize::MAX, usize::MAX, Duration::from_secs(60), usize::MAX)),
    config,
    deflate,
    delivered: Arc::new(Mutex::new(Vec::new())),
    ended: Arc::new(Mutex::new(None)),
  };
  let mut stream = ServerStream::new(stream);
  stream.start_frames(Vec::new());
  runtime().block_on(ConnectionTask::new(stream, owner.clone()));
  let delivered = std::mem::take(&mut *owner.delivered.lock().expect("not poisoned"));
  let close_code = owner.ended.lock().expect("not poisoned").expect("the connection ended");
  let frames = frames_of(&written.lock().expect("not poisoned"));
  Observed { delivered, close_code, frames }
}

fn run_reference(script: &Script, config: WebSocketConfig) -> Observed {
  let (stream, written) = ScriptStream::new(script);
  let mut delivered = Vec::new();
  let close_code = runtime().block_on(async {
    let mut ws = WebSocketStream::from_raw_socket(stream, Role::Server, Some(config)).await;
    let mut close_code = 1006;
    loop {
      match ws.next().await {
        Some(Ok(Message::Text(text))) => {
          let payload = Bytes::from(text);
          delivered.push((false, payload.clone()));
          let _ = ws.send(echo_of(false, payload)).await;
        }
        Some(Ok(Message::Binary(payload))) => {
          delivered.push((true, payload.clone()));
          let _ = ws.send(echo_of(true, payload)).await;
        }
        Some(Ok(Message::Close(frame))) => {
          close_code = frame.map_or(1005, |frame| frame.code.into())
        }
        Some(Ok(_)) => {}
        Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) | None => break,
        Some(Err(error)) => {
          if let Some((code, _)) = close_code_for(&error) {
            let frame = CloseFrame { code, reason: Utf8Bytes::default() };
            let _ = ws.close(Some(frame)).await;
            close_code = code.into();
          }
          break;
        }
      }
    }
    close_code
  });
  let frames = frames_of(&written.lock().expect("not poisoned"));
  Observed { delivered, close_code, frames }
}

/// The frames a server wrote: `(opcode, payload)`, a close frame's payload
/// reduced to its code.
fn frames_of(written: &[u8]) -> Vec<(u8, Vec<u8>)> {
  let mut frames = Vec::new();
  let mut cursor = Cursor::new(written);
  while let Ok(Some((header, len))) = FrameHeader::parse(&mut cursor) {
    let start = cursor.position() as usize;
    let end = start + len as usize;
    let payload = &written[start..end.min(written.len())];
    let opcode = u8::from(header.opcode);
    let kept = if header.opcode == OpCode::Control(Control::Close) {
      payload.get(..2).unwrap_or_default().to_vec()
    } else {
      payload.to_vec()
    };
    frames.push((opcode, kept));
    cursor.set_position(end as u64);
  }
  frames
}

// ---- Building the client's bytes

/// How a frame's length is written: the shortest form, or a longer one
/// (which RFC 6455 forbids).
#[derive(Clone, Copy, Debug)]
enum LengthForm {
  Shortest,
  Wide16,
  Wide64,
}

#[derive(Clone, Debug)]
struct RawFrame {
  fin: bool,
  rsv: u8,
  opcode: u8,
  mask: Option<[u8; 4]>,
  length: LengthForm,
  payload: Vec<u8>,
}

impl RawFrame {
  fn client(opcode: u8, fin: bool, payload: Vec<u8>, mask: [u8; 4]) -> RawFrame {
    RawFrame { fin, rsv: 0, opcode, mask: Some(mask), length: LengthForm::Shortest, payload }
  }

  fn write(&self, out: &mut Vec<u8>) {
    out.push(u8::from(self.fin) << 7 | (self.rsv & 7) << 4 | (self.opcode & 15));
    let masked = if self.mask.is_some() { 0x80 } else { 0 };
    let len = self.payload.len();
    match self.length {
      LengthForm::Shortest if len < 126 => out.push(masked | len as u8),
      LengthForm::Shortest | LengthForm::Wide16 if len <= 0xffff => {
        out.push(masked | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
      }
      _ => {
        out.push(masked | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
      }
    }
    match self.mask {
      Some(mask) => {
        out.extend_from_slice(&mask);
        out.extend(self.payload.iter().enumerate().map(|(i, byte)| byte ^ mask[i % 4]));
      }
      None => out.extend_from_slice(&self.payload),
    }
  }
}

/// `len` bytes from `seed`: random bytes, or UTF-8 text of one- to
/// four-byte characters (possibly a little shorter than `len`).
fn payload(len: usize, seed: u64, text: bool) -> Vec<u8> {
  let mut rng = fastrand::Rng::with_seed(seed);
  if !text {
    let mut bytes = vec![0; len];
    rng.fill(&mut bytes);
    return bytes;
  }
  let mut out = String::with_capacity(len);
  for c in std::iter::repeat_with(|| ['a', 'z', ' ', 'é', '€', '😀'][rng.usize(..6)]) {
    if out.len() + c.len_utf8() > len {
      break;
    }
    out.push(c);
  }
  out.into_bytes()
}

/// Lengths on either side of the path's thresholds: the short and 16-bit
/// length forms, large binary frames read past tungstenite, the read-ahead
/// size, and `maxPayload`.
fn length(max_payload: usize) -> impl Strategy<Value = usize> {
  let thresholds = [125, 126, 127, 0xffff, 0x1_0000, DIRECT_MIN_LEN, READ_AHEAD, max_payload];
  prop_oneof![
    6 => 0..200usize,
    2 => 200..3000usize,
    3 => (prop::sample::select(thresholds.to_vec()), -2i64..=2).prop_map(|(at, by)| (at as i64 + by).max(0) as usize),
  ]
}

/// One part of the stream: a data message (maybe fragmented, with control
/// frames between its fragments), a control frame, a close, or anything.
#[derive(Clone, Debug)]
enum Part {
  Message {
    text: bool,
    len: usize,
    seed: u64,
    cuts: Vec<usize>,
    pings: Vec<bool>,
    corrupt: Option<usize>,
  },
  Ping(Vec<u8>),
  Pong(Vec<u8>),
  Close(Option<u16>, usize),
  Frame(RawFrame),
  Garbage(Vec<u8>),
}

fn raw_frame() -> impl Strategy<Value = RawFrame> {
  (
    any::<bool>(),
    0u8..8,
    0u8..16,
    any::<Option<[u8; 4]>>(),
    0u8..3,
    prop::collection::vec(any::<u8>(), 0..140),
  )
    .prop_map(|(fin, rsv, opcode, mask, length, payload)| RawFrame {
      fin,
      rsv,
      opcode,
      mask,
      length: [LengthForm::Shortest, LengthForm::Wide16, LengthForm::Wide64][length as usize],
      payload,
    })
}

fn part(max_payload: usize) -> impl Strategy<Value = Part> {
  let message = (
    any::<bool>(),
    length(max_payload),
    any::<u64>(),
    prop::collection::vec(any::<prop::sample::Index>(), 0..4),
    prop::collection::vec(any::<bool>(), 0..4),
    prop::option::weighted(0.1, any::<prop::sample::Index>()),
  )
    .prop_map(|(text, len, seed, cuts, pings, corrupt)| Part::Message {
      text,
      len,
      seed,
      cuts: cuts.iter().map(|cut| cut.index(len + 1)).collect(),
      pings,
      corrupt: corrupt.map(|at| at.index(len.max(1))),
    });
  prop_oneof![
    10 => message,
    2 => prop::collection::vec(any::<u8>(), 0..130).prop_map(Part::Ping),
    1 => prop::collection::vec(any::<u8>(), 0..130).prop_map(Part::Pong),
    1 => (prop::option::of(prop_oneof![Just(1000u16), Just(1001), Just(4000), Just(1005), Just(999), any::<u16>()]), 0..130usize)
      .prop_map(|(code, reason)| Part::Close(code, reason)),
    2 => raw_frame().prop_map(Part::Frame),
    1 => prop::collection::vec(any::<u8>(), 1..20).prop_map(Part::Garbage),
  ]
}

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// The frames of one part.
fn frames_of_part(part: &Part, out: &mut Vec<RawFrame>) {
  match part {
    Part::Message { text, len, seed, cuts, pings, corrupt } => {
      let mut bytes = payload(*len, *seed, *text);
      if let Some(at) = corrupt.filter(|&at| at < bytes.len()) {
        bytes[at] = 0xff;
      }
      let mut cuts: Vec<usize> = cuts.iter().map(|&cut| cut.min(bytes.len())).collect();
      cuts.sort_unstable();
      cuts.dedup();
      let mut start = 0;
      let mut fragments = Vec::new();
      for cut in cuts.into_iter().chain([bytes.len()]) {
        if cut > start || fragments.is_empty() {
          fragments.push(bytes[start..cut.max(start)].to_vec());
          start = cut.max(start);
        }
      }
      let last = fragments.len() - 1;
      for (i, fragment) in fragments.into_iter().enumerate() {
        let opcode = if i > 0 {
          0
        } else if *text {
          1
        } else {
          2
        };
        out.push(RawFrame::client(opcode, i == last, fragment, MASK));
        if i < last && pings.get(i).copied().unwrap_or(false) {
          out.push(RawFrame::client(9, true, b"between".to_vec(), MASK));
        }
      }
    }
    Part::Ping(payload) => out.push(RawFrame::client(9, true, payload.clone(), MASK)),
    Part::Pong(payload) => out.push(RawFrame::client(10, true, payload.clone(), MASK)),
    Part::Close(code, reason) => {
      let mut payload = Vec::new();
      if let Some(code) = code {
        payload.extend_from_slice(&code.to_be_bytes());
        payload.extend(std::iter::repeat_n(b'r', *reason));
      }
      out.push(RawFrame::client(8, true, payload, MASK));
    }
    Part::Frame(frame) => out.push(frame.clone()),
    Part::Garbage(_) => {}
  }
}

/// A change to one frame of a stream.
#[derive(Clone, Debug)]
enum Mutation {
  Rsv(u8),
  Opcode(u8),
  Unmasked,
  ToggleFin,
  Length(u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
  prop_oneof![
    (1u8..8).prop_map(Mutation::Rsv),
    (0u8..16).prop_map(Mutation::Opcode),
    Just(Mutation::Unmasked),
    Just(Mutation::ToggleFin),
    (1u8..3).prop_map(Mutation::Length),
  ]
}

fn apply(mutation: &Mutation, frame: &mut RawFrame) {
  match *mutation {
    Mutation::Rsv(rsv) => frame.rsv = rsv,
    Mutation::Opcode(opcode) => frame.opcode = opcode,
    Mutation::Unmasked => frame.mask = None,
    Mutation::ToggleFin => frame.fin = !frame.fin,
    Mutation::Length(form) => {
      frame.length = [LengthForm::Wide16, LengthForm::Wide64][form as usize - 1]
    }
  }
}

#[derive(Clone, Debug)]
struct Case {
  max_payload: usize,
  parts: Vec<Part>,
  mutation: Option<(prop::sample::Index, Mutation)>,
  reads: Vec<usize>,
  pauses: Vec<bool>,
}

impl Case {
  fn script(&self) -> Script {
    let mut frames = Vec::new();
    let mut garbage_after = Vec::new();
    for part in &self.parts {
      frames_of_part(part, &mut frames);
      garbage_after.push((
        frames.len(),
        if let Part::Garbage(bytes) = part { bytes.clone() } else { Vec::new() },
      ));
    }
    if let Some((index, mutation)) = &self.mutation {
      if !frames.is_empty() {
        let at = index.index(frames.len());
        apply(mutation, &mut frames[at]);
      }
    }
    let mut input = Vec::new();
    let mut garbage = garbage_after.into_iter().peekable();
    for (i, frame) in frames.iter().enumerate() {
      while let Some((_, bytes)) = garbage.next_if(|(after, _)| *after == i) {
        input.extend_from_slice(&bytes);
      }
      frame.write(&mut input);
    }
    garbage.for_each(|(_, bytes)| input.extend_from_slice(&bytes));
    Script { input: input.into(), reads: self.reads.clone(), pauses: self.pauses.clone() }
  }
}

fn case() -> impl Strategy<Value = Case> {
  prop_oneof![Just(70_000usize), Just(140_000), Just(1000)].prop_flat_map(|max_payload| {
    (
      prop::collection::vec(part(max_payload), 1..8),
      prop::option::weighted(0.3, (any::<prop::sample::Index>(), mutation())),
      reads_and_pauses(),
    )
      .prop_map(move |(parts, mutation, (reads, pauses))| Case {
        max_payload,
        parts,
        mutation,
        reads,
        pauses,
      })
  })
}

/// The sizes of a script's reads, and the pauses before them.
fn reads_and_pauses() -> impl Strategy<Value = (Vec<usize>, Vec<bool>)> {
  (
    prop::collection::vec(
      prop_oneof![4 => 1..16usize, 3 => 16..5000usize, 1 => 5000..200_000usize],
      1..6,
    ),
    prop::collection::vec(any::<bool>(), 1..6),
  )
    .prop_map(|(reads, mut pauses)| {
      pauses.resize(reads.len(), false);
      (reads, pauses)
    })
}

/// Runs `case` through both servers and compares what they did.
fn check(case: &Case) -> Result<(), TestCaseError> {
  let script = case.script();
  let config = server_config(case.max_payload);
  compare(&run_ours(&script, config, None), &run_reference(&script, config))
}

fn compare(ours: &Observed, reference: &Observed) -> Result<(), TestCaseError> {
  prop_assert_eq!(ours.close_code, reference.close_code, "close codes");
  prop_assert_eq!(ours.delivered.len(), reference.delivered.len(), "messages delivered");
  prop_assert!(ours.delivered == reference.delivered, "messages delivered differ");
  prop_assert!(
    ours.frames == reference.frames,
    "frames written back differ:\nours {:?}\nreference {:?}",
    summary(&ours.frames),
    summary(&reference.frames)
  );
  Ok(())
}

fn summary(frames: &[(u8, Vec<u8>)]) -> Vec<(u8, usize)> {
  frames.iter().map(|(opcode, payload)| (*opcode, payload.len())).collect()
}

proptest! {
  // 256 cases, or PROPTEST_CASES (scripts/fuzz.js).
  #[test]
  fn a_server_connection_does_what_tungstenite_does(case in case()) {
    check(&case)?;
  }
}

#[test]
fn a_large_binary_message_split_in_every_way_is_read_past_tungstenite_and_echoed() {
  let len = DIRECT_MIN_LEN + 3;
  for reads in [vec![1], vec![13], vec![READ_AHEAD], vec![7, 65_000, 3]] {
    let case = Case {
      max_payload: 140_000,
      parts: vec![Part::Message {
        text: false,
        len,
        seed: 7,
        cuts: vec![],
        pings: vec![],
        corrupt: None,
      }],
      mutation: None,
      pauses: vec![true; reads.len()],
      reads,
    };
    let script = case.script();
    let ours = run_ours(&script, server_config(case.max_payload), None);
    assert_eq!(ours.delivered.len(), 1);
    assert_eq!(ours.delivered[0].1.len(), len);
    assert_eq!(ours, run_reference(&script, server_config(case.max_payload)));
  }
}

// ---- Compressed messages (permessage-deflate)
//
// A client that agreed on compression sends each message compressed or
// not, cut into frames anywhere (a compressed one in its compressed bytes),
// with pings between frames and between messages. tungstenite refuses
// compressed frames, so the reference gets the same messages uncompressed,
// each in one frame, and a ping sent between a message's frames comes just
// before that message: the pings, and so the pongs, keep their order, and a
// message's pongs still go out before its echo.

/// The most a message may hold in the compressed cases: more than any
/// message they send, compressed or not (too big a message has a unit test).
const DEFLATE_MAX_PAYLOAD: usize = 256 * 1024;

/// How many compressed cases run when PROPTEST_CASES is not set: few
/// enough for a few seconds in a debug build.
const DEFLATE_CASES: u32 = 128;

/// RSV1 in `RawFrame::rsv`: the frame starts a compressed message.
const RSV1: u8 = 0b100;

/// What a message's bytes are like, for how well they compress.
#[derive(Clone, Copy, Debug)]
enum Content {
  /// A piece of about this many bytes, repeated: compresses to little.
  Repeated(usize),
  /// `payload`'s: random bytes, or text of a small alphabet.
  Varied,
  /// Random characters from all of Unicode (random bytes for binary):
  /// deflate cannot make them smaller.
  AnyCharacters,
}

/// `len` bytes or a little fewer (text stays whole characters) from `seed`.
fn content(kind: Content, len: usize, seed: u64, text: bool) -> Vec<u8> {
  match kind {
    Content::Repeated(piece) => repeated(&payload(piece, seed, text), len),
    Content::AnyCharacters if text => any_characters(len, seed),
    Content::Varied | Content::AnyCharacters => payload(len, seed, text),
  }
}

/// As many whole copies of `piece` as fit in `len` bytes.
fn repeated(piece: &[u8], len: usize) -> Vec<u8> {
  if piece.is_empty() {
    return Vec::new();
  }
  piece.repeat(len / piece.len())
}

/// Text of random characters (most of them four bytes long) in `len`
/// bytes or a little fewer.
fn any_characters(len: usize, seed: u64) -> Vec<u8> {
  let mut rng = fastrand::Rng::with_seed(seed);
  let mut out = String::with_capacity(len);
  loop {
    let c = rng.char(..);
    if out.len() + c.len_utf8() > len {
      return out.into_bytes();
    }
    out.push(c);
  }
}

/// How a client sends one message.
#[derive(Clone, Copy, Debug)]
enum Sending {
  Plain,
  /// Compressed, from an empty context when `fresh` (always when the
  /// server keeps none) or after the messages compressed before it.
  Compressed {
    fresh: bool,
  },
}

#[derive(Clone, Debug)]
struct ClientMessage {
  text: bool,
  content: Content,
  len: usize,
  seed: u64,
  sending: Sending,
  /// Where its payload (compressed or not) is cut into frames; a cut
  /// repeated makes an empty frame.
  cuts: Vec<prop::sample::Index>,
  /// Its pings: before which of its frames (or after the last), and their
  /// payloads.
  pings: Vec<(prop::sample::Index, Vec<u8>)>,
}

impl ClientMessage {
  fn bytes(&self) -> Vec<u8> {
    content(self.content, self.len, self.seed, self.text)
  }

  /// How many frames our server gets it in, whatever its length.
  fn frame_count(&self) -> usize {
    self.cuts.len() + 1
  }

  /// The payloads of the pings sent just before its frame `at` (after its
  /// last frame when `at` is `frame_count()`).
  fn pings_before(&self, at: usize) -> impl Iterator<Item = &[u8]> {
    let positions = self.frame_count() + 1;
    let here = move |(before, _): &&(prop::sample::Index, Vec<u8>)| before.index(positions) == at;
    self.pings.iter().filter(here).map(|(_, payload)| &payload[..])
  }
}

/// `payload` cut at `cuts` (in any order): one more piece than cuts.
fn fragments<'a>(payload: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
  let mut bounds: Vec<usize> = cuts.iter().map(|cut| cut.index(payload.len() + 1)).collect();
  bounds.sort_unstable();
  bounds.insert(0, 0);
  bounds.push(payload.len());
  bounds.windows(2).map(|bounds| &payload[bounds[0]..bounds[1]]).collect()
}

/// A client's compressor (RFC 7692 7.2.1): raw deflate, each message
/// sync-flushed and sent without the flush's tail.
struct ClientDeflater(Compress);

impl ClientDeflater {
  fn new(level: u32, window_bits: u8) -> ClientDeflater {
    ClientDeflater(Compress::new_with_window_bits(Compression::new(level), false, window_bits))
  }

  /// `payload` compressed, from an empty context if `fresh`.
  fn deflate(&mut self, payload: &[u8], fresh: bool) -> Vec<u8> {
    if fresh {
      self.0.reset();
    }
    let start = self.0.total_in();
    let mut out = Vec::with_capacity(payload.len() + 64);
    loop {
      let consumed = (self.0.total_in() - start) as usize;
      self.0.compress_vec(&payload[consumed..], &mut out, FlushCompress::Sync).expect("deflates");
      // Room left over means the flush is complete.
      if self.0.total_in() - start == payload.len() as u64 && out.len() < out.capacity() {
        break;
      }
      out.reserve(out.capacity());
    }
    if out.is_empty() {
      // zlib does not flush twice in a row: an empty message right after
      // another, its context kept, comes out as nothing. RFC 7692 7.2.1
      // has the sender end with an empty stored block all the same, which
      // is one 0x00 byte once its tail is left off.
      return vec![0x00];
    }
    assert!(out.ends_with(&SYNC_TAIL), "a sync flush ends with its tail");
    out.truncate(out.len() - SYNC_TAIL.len());
    out
  }
}

/// A client that agreed on compression: its messages, then a close frame,
/// and how they arrive.
#[derive(Clone, Debug)]
struct DeflateCase {
  /// The agreement lets the client keep its context between messages.
  takeover: bool,
  level: u32,
  window_bits: u8,
  messages: Vec<ClientMessage>,
  /// The close frame's code; none: an empty close frame.
  close_code: Option<u16>,
  /// Where the masks of the compressed script's frames come from.
  mask_seed: u64,
  reads: Vec<usize>,
  pauses: Vec<bool>,
}

impl DeflateCase {
  fn agreement(&self) -> Agreement {
    Agreement { send_window_bits: 15, receive_takeover: self.takeover }
  }

  /// The client's bytes for our server: each message sent as it says, in
  /// its frames, its pings among them, each frame with its own mask.
  fn compressed_script(&self) -> Script {
    let mut deflater = ClientDeflater::new(self.level, self.window_bits);
    let mut masks = fastrand::Rng::with_seed(self.mask_seed);
    let mut mask = || masks.u32(..).to_le_bytes();
    let mut frames = Vec::new();
    for message in &self.messages {
      let bytes = message.bytes();
      let (payload, rsv) = match message.sending {
        Sending::Plain => (bytes, 0),
        Sending::Compressed { fresh } => (deflater.deflate(&bytes, fresh || !self.takeover), RSV1),
      };
      let pieces = fragments(&payload, &message.cuts);
      for (at, piece) in pieces.iter().enumerate() {
        frames.extend(message.pings_before(at).map(|ping| ping_frame(ping, mask())));
        let (opcode, rsv) = if at == 0 { (data_opcode(message.text), rsv) } else { (0, 0) };
        let frame = RawFrame::client(opcode, at == pieces.len() - 1, piece.to_vec(), mask());
        frames.push(RawFrame { rsv, ..frame });
      }
      let after = message.pings_before(message.frame_count());
      frames.extend(after.map(|ping| ping_frame(ping, mask())));
    }
    frames.push(close_frame(self.close_code));
    script_of(&frames, &self.reads, &self.pauses)
  }

  /// The same messages for the reference: uncompressed, each in one frame,
  /// with the pings sent between its frames before it.
  fn plain_script(&self) -> Script {
    let mut frames = Vec::new();
    for message in &self.messages {
      let count = message.frame_count();
      let within = (0..count).flat_map(|at| message.pings_before(at));
      frames.extend(within.map(|ping| ping_frame(ping, MASK)));
      frames.push(RawFrame::client(data_opcode(message.text), true, message.bytes(), MASK));
      frames.extend(message.pings_before(count).map(|ping| ping_frame(ping, MASK)));
    }
    frames.push(close_frame(self.close_code));
    script_of(&frames, &self.reads, &self.pauses)
  }
}

fn data_opcode(text: bool) -> u8 {
  if text {
    1
  } else {
    2
  }
}

fn ping_frame(payload: &[u8], mask: [u8; 4]) -> RawFrame {
  RawFrame::client(9, true, payload.to_vec(), mask)
}

fn close_frame(code: Option<u16>) -> RawFrame {
  let payload = code.map_or_else(Vec::new, |code| code.to_be_bytes().to_vec());
  RawFrame::client(8, true, payload, MASK)
}

fn script_of(frames: &[RawFrame], reads: &[usize], pauses: &[bool]) -> Script {
  let mut input = Vec::new();
  frames.iter().for_each(|frame| frame.write(&mut input));
  Script { input: input.into(), reads: reads.to_vec(), pauses: pauses.to_vec() }
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
  let content = prop_oneof![
    (4..64usize).prop_map(Content::Repeated),
    Just(Content::Varied),
    Just(Content::AnyCharacters),
  ];
  let len = prop_oneof![3 => 0..200usize, 3 => 200..5000usize, 2 => 5000..100_000usize];
  let sending = prop_oneof![
    1 => Just(Sending::Plain),
    3 => any::<bool>().prop_map(|fresh| Sending::Compressed { fresh }),
  ];
  let ping = (any::<prop::sample::Index>(), prop::collection::vec(any::<u8>(), 0..=125));
  (
    any::<bool>(),
    content,
    len,
    any::<u64>(),
    sending,
    prop::collection::vec(any::<prop::sample::Index>(), 0..5),
    prop::collection::vec(ping, 0..3),
  )
    .prop_map(|(text, content, len, seed, sending, cuts, pings)| ClientMessage {
      text,
      content,
      len,
      seed,
      sending,
      cuts,
      pings,
    })
}

fn deflate_case() -> impl Strategy<Value = DeflateCase> {
  (
    any::<bool>(),
    0u32..=9,
    // zlib makes no 8-bit window; a 9-bit one is what it uses instead.
    9u8..=15,
    prop::collection::vec(client_message(), 1..6),
    prop::option::of(prop_oneof![Just(1000u16), Just(1001), Just(4000)]),
    any::<u64>(),
    reads_and_pauses(),
  )
    .prop_map(
      |(takeover, level, window_bits, messages, close_code, mask_seed, (reads, pauses))| {
        DeflateCase { takeover, level, window_bits, messages, close_code, mask_seed, reads, pauses }
      },
    )
}

/// Sends `case` compressed to ours and uncompressed to the reference, and
/// compares what they did.
fn check_deflate(case: &DeflateCase) -> Result<(), TestCaseError> {
  let config = server_config(DEFLATE_MAX_PAYLOAD);
  let ours = run_ours(&case.compressed_script(), config, Some(case.agreement()));
  compare(&ours, &run_reference(&case.plain_script(), config))
}

/// PROPTEST_CASES when set (scripts/fuzz.js), DEFLATE_CASES otherwise.
fn deflate_config() -> ProptestConfig {
  let cases = std::env::var("PROPTEST_CASES").ok().and_then(|cases| cases.parse().ok());
  ProptestConfig { cases: cases.unwrap_or(DEFLATE_CASES), ..ProptestConfig::default() }
}

proptest! {
  #![proptest_config(deflate_config())]
  // Named like the test above, so that scripts/fuzz.js runs it too.
  #[test]
  fn a_server_connection_inflates_what_tungstenite_reads_uncompressed(case in deflate_case()) {
    check_deflate(&case)?;
  }
}

// ---- Compressed messages that must be refused

/// What our server did with `frames` from a client that agreed on
/// compression, arriving in small and larger reads.
fn ours_with_deflate(frames: &[RawFrame], max_payload: usize) -> Observed {
  let script = script_of(frames, &[5, 3000], &[true, false]);
  let agreement = Agreement { send_window_bits: 15, receive_takeover: false };
  run_ours(&script, server_config(max_payload), Some(agreement))
}

fn compressed_frame(opcode: u8, fin: bool, payload: Vec<u8>) -> RawFrame {
  RawFrame { rsv: RSV1, ..RawFrame::client(opcode, fin, payload, MASK) }
}

fn deflated(payload: &[u8]) -> Vec<u8> {
  ClientDeflater::new(6, 15).deflate(payload, true)
}

/// The connection delivered nothing and closed with `code`, telling the
/// client.
fn assert_refused(observed: &Observed, code: u16) {
  assert!(observed.delivered.is_empty(), "delivered {:?}", summary_of(&observed.delivered));
  assert_eq!(observed.close_code, code);
  assert_eq!(observed.frames.last(), Some(&(8, code.to_be_bytes().to_vec())), "the close frame");
}

fn summary_of(delivered: &[(bool, Bytes)]) -> Vec<(bool, usize)> {
  delivered.iter().map(|(binary, payload)| (*binary, payload.len())).collect()
}

#[test]
fn compressed_bytes_that_are_not_deflate_close_with_1007() {
  // 0xff starts a final block of the reserved type 3.
  let frames = [compressed_frame(2, true, vec![0xff; 16]), close_frame(Some(1000))];
  assert_refused(&ours_with_deflate(&frames, DEFLATE_MAX_PAYLOAD), 1007);
}

#[test]
fn compressed_text_that_inflates_to_invalid_utf8_closes_with_1007() {
  // "café" cut inside its last character.
  let frames = [compressed_frame(1, true, deflated(b"caf\xc3")), close_frame(Some(1000))];
  assert_refused(&ours_with_deflate(&frames, DEFLATE_MAX_PAYLOAD), 1007);
}

#[test]
fn a_compressed_message_interrupted_or_continued_with_rsv1_closes_with_1002() {
  let compressed = deflated(b"hello hello hello hello");
  let (first, rest) = compressed.split_at(compressed.len() / 2);
  let continuation_with_rsv1 = compressed_frame(0, true, rest.to_vec());
  let plain_message = RawFrame::client(1, true, b"hi".to_vec(), MASK);
  let compressed_message = compressed_frame(1, true, deflated(b"hi"));
  for interruption in [continuation_with_rsv1, plain_message, compressed_message] {
    let frames =
      [compressed_frame(1, false, first.to_vec()), interruption, close_frame(Some(1000))];
    assert_refused(&ours_with_deflate(&frames, DEFLATE_MAX_PAYLOAD), 1002);
  }
}

#[test]
fn a_compressed_message_may_inflate_to_the_largest_message_and_no_more() {
  const LIMIT: usize = 1000;
  let at_limit = ours_with_deflate(&[compressed_frame(2, true, deflated(&[7; LIMIT]))], LIMIT);
  assert_eq!(at_limit.delivered, vec![(true, Bytes::from(vec![7; LIMIT]))]);
  let over = [compressed_frame(2, true, deflated(&[7; LIMIT + 1])), close_frame(Some(1000))];
  assert_refused(&ours_with_deflate(&over, LIMIT), 1009);
}

#[test]
fn a_decompression_bomb_closes_with_1009_never_holding_more_than_the_largest_message() {
  const LIMIT: usize = 64 * 1024;
  let bomb = deflated(&vec![0; 16 << 20]);
  assert!(bomb.len() < LIMIT / 2, "the bomb is a message the server takes");
  let frames = [compressed_frame(2, true, bomb), close_frame(Some(1000))];
  assert_refused(&ours_with_deflate(&frames, LIMIT), 1009);
  assert!(inflated_when_refused(&frames, LIMIT) <= LIMIT + 1, "inflated past the limit");
}

/// How much our stream holds inflated of the compressed message `frames`
/// start with once it refuses it as too big (the inflated bytes only grow
/// until then). It reads the message past tungstenite as the connection
/// loop has it: tungstenite's read finds it held back.
fn inflated_when_refused(frames: &[RawFrame], limit: usize) -> usize {
  let (input, _) = ScriptStream::new(&script_of(frames, &[1000], &[false]));
  let mut stream = ServerStream::new(input);
  stream.start_frames(Vec::new());
  stream.set_max_message(limit);
  stream.agree_on(Some(Agreement { send_window_bits: 15, receive_takeover: false }));
  let mut cx = Context::from_waker(std::task::Waker::noop());
  let mut tungstenite_buffer = [0; 4096];
  let read = Pin::new(&mut stream).poll_read(&mut cx, &mut ReadBuf::new(&mut tungstenite_buffer));
  assert!(read.is_pending(), "the message is held back from tungstenite");
  // The script never makes the stream wait: one poll reads all it needs.
  let refused = stream.poll_held_message(&mut cx);
  assert!(matches!(refused, Poll::Ready(Some(Err(HeldError::TooBig)))), "refused as too big");
  Inbound::arriving(&stream)
}
