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

use std::io::Cursor;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use proptest::prelude::*;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{FrameHeader, Utf8Bytes};
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::connection_loop::{close_code_for, Ended, Incoming};
use crate::connection_task::{self, Active, ConnectionTask, Owner, Period};
use crate::direct_frame::DIRECT_MIN_LEN;
use crate::flow::Flow;
use crate::link::{Limits, Link};
use crate::server::server_config;
use crate::server_stream::{ServerStream, READ_AHEAD};

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
        deflate: None,
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

fn run_ours(script: &Script, config: WebSocketConfig) -> Observed {
  let (stream, written) = ScriptStream::new(script);
  let owner = Echoing {
    link: Arc::new(Link::new()),
    flow: Arc::new(Flow::new(usize::MAX, usize::MAX, Duration::from_secs(60), usize::MAX)),
    config,
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
      prop::collection::vec(
        prop_oneof![4 => 1..16usize, 3 => 16..5000usize, 1 => 5000..200_000usize],
        1..6,
      ),
      prop::collection::vec(any::<bool>(), 1..6),
    )
      .prop_map(move |(parts, mutation, reads, mut pauses)| {
        pauses.resize(reads.len(), false);
        Case { max_payload, parts, mutation, reads, pauses }
      })
  })
}

/// Runs `case` through both servers and compares what they did.
fn check(case: &Case) -> Result<(), TestCaseError> {
  let script = case.script();
  let config = server_config(case.max_payload);
  let ours = run_ours(&script, config);
  let reference = run_reference(&script, config);
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
    let ours = run_ours(&script, server_config(case.max_payload));
    assert_eq!(ours.delivered.len(), 1);
    assert_eq!(ours.delivered[0].1.len(), len);
    assert_eq!(ours, run_reference(&script, server_config(case.max_payload)));
  }
}
