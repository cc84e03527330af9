//! Connections JS upgraded itself, on a Node `http.Server` it attached us
//! to: adopting the socket's fd, or relaying through a socket pair when Node
//! must keep handling the socket's bytes (TLS of an `https.Server`).

use std::io;
use std::os::fd::{BorrowedFd, IntoRawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use napi::bindgen_prelude::Buffer;
use tokio::io::AsyncWrite;
use tokio::net::{TcpStream, UnixStream};

use super::registry::{open_connection, Connection, Opening, Remote, Reservation};
use super::served::MayGoDormant;
use super::{AdoptedRequest, Relay, Shared};
use crate::deflate::Agreement;
use crate::error::NativeError;
use crate::handshake::{self, Refusal, Request};
use crate::header_block::HeaderBlock;
use crate::server_stream::{PayloadSource, ServerStream};

/// Answers 101 on a duplicate of JS's socket `fd` and serves it.
pub(super) fn adopt(
  shared: &Arc<Shared>,
  fd: i32,
  head: Buffer,
  request: AdoptedRequest,
) -> Result<u32, NativeError> {
  if fd < 0 {
    return Err(NativeError::invalid_arg("fd must be a file descriptor (>= 0)"));
  }
  let answer = adopted_response(shared, &request)?;
  let reservation = reserve(shared)?;
  // SAFETY: `borrow_raw` needs `fd` open, and not closed by anyone else,
  // for as long as the borrow lives; here, one `fcntl(F_DUPFD_CLOEXEC)`.
  // The sign is checked above. The rest is lib/attach.js's contract: it
  // passes the fd of the live socket it hands over, synchronously, and
  // destroys that socket only after this call returns. Were the fd closed
  // anyway, the duplication fails with EBADF (an `Os` error) and nothing
  // else reads it; the duplicate we keep is ours alone.
  let owned = unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()?;
  let std_stream = std::net::TcpStream::from(owned);
  std_stream.set_nonblocking(true)?;
  let stream =
    napi::bindgen_prelude::within_runtime_if_available(|| TcpStream::from_std(std_stream))?;
  let _ = stream.set_nodelay(true);
  Ok(serve_adopted(shared, ServerStream::new(stream), head, answer, request, reservation))
}

/// Answers 101 on one end of a new socket pair and serves it; JS pipes the
/// other end to and from its socket.
pub(super) fn adopt_relay(
  shared: &Arc<Shared>,
  head: Buffer,
  request: AdoptedRequest,
) -> Result<Relay, NativeError> {
  let answer = adopted_response(shared, &request)?;
  let reservation = reserve(shared)?;
  let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
  ours.set_nonblocking(true)?;
  let stream = napi::bindgen_prelude::within_runtime_if_available(|| UnixStream::from_std(ours))?;
  let handle = serve_adopted(shared, ServerStream::new(stream), head, answer, request, reservation);
  Ok(Relay { handle, fd: theirs.into_raw_fd() })
}

/// A handle for an adopted socket, or an error when every one is taken.
fn reserve(shared: &Arc<Shared>) -> Result<Reservation, NativeError> {
  let full = || io::Error::new(io::ErrorKind::OutOfMemory, "every connection handle is taken");
  Ok(shared.reserve().ok_or_else(full)?)
}

/// The 101 answer to a request Node has parsed, with what it agreed on and
/// the headers kept.
struct Answer {
  response: Vec<u8>,
  agreement: Option<Agreement>,
  headers: HeaderBlock,
}

fn adopted_response(shared: &Shared, request: &AdoptedRequest) -> Result<Answer, NativeError> {
  let headers = request.headers.chunks_exact(2).map(|pair| (pair[0].as_str(), pair[1].as_bytes()));
  let invalid = |refusal: Refusal| NativeError::invalid_arg(refusal.body);
  let minor_version = u8::try_from(request.http_version_minor).unwrap_or(u8::MAX);
  let parsed =
    Request::check(&request.method, minor_version, &request.url, headers).map_err(invalid)?;
  let deflate = shared.deflate.map(|deflate| deflate.negotiation);
  let (response, agreement) =
    handshake::answer(&parsed, &request.protocol, deflate).map_err(invalid)?;
  Ok(Answer { response, agreement, headers: parsed.headers })
}

/// Answers 101 and serves the connection; returns its handle.
fn serve_adopted<S>(
  shared: &Arc<Shared>,
  stream: ServerStream<S>,
  head: Buffer,
  answer: Answer,
  request: AdoptedRequest,
  reservation: Reservation,
) -> u32
where
  S: PayloadSource + AsyncWrite + MayGoDormant + Send + 'static,
{
  let handle = reservation.handle();
  // JS admitted it (see `admitted`).
  shared.admitted.fetch_add(1, Ordering::AcqRel);
  let tasks = shared.tasks.clone();
  let shared = Arc::clone(shared);
  let head = head.to_vec();
  // Node's `remoteAddress` always parses; it is undefined (empty here)
  // only for a socket already closed.
  let remote = Remote {
    ip: request.remote_address.parse().ok(),
    port: u16::try_from(request.remote_port).unwrap_or(0),
  };
  let serving = async move {
    let connection = Connection::new(answer.headers, request.protocol, remote, answer.agreement);
    let opening = Opening { response: answer.response, leftover: head };
    open_connection(&shared, stream, reservation, connection, true, opening).await;
  };
  napi::bindgen_prelude::spawn(tasks.track_future(serving));
  handle
}
