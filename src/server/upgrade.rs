//! The upgrade of an accepted connection: reading and checking the request,
//! admission against `maxConnections`, JS's decision when it verifies
//! upgrades, and the 101 answer.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
use tokio::time::timeout;

use super::registry::{open_connection, Connection, Opening, Remote, Reservation};
use super::served::MayGoDormant;
use super::{lock, Shared, Verdict};
use crate::deflate::Agreement;
use crate::events::EventDetail;
use crate::handshake::{self, Refusal, Request, Upgrade};
use crate::header_block::HeaderBlock;
use crate::server_stream::{PayloadSource, ServerStream};

/// What an upgrade past `maxConnections` is told: come back in this many
/// seconds.
const FULL_RETRY_AFTER_SECONDS: &str = "5";

impl Shared {
  pub(super) fn verdicts(&self) -> MutexGuard<'_, HashMap<u32, oneshot::Sender<Verdict>>> {
    lock(&self.verdicts)
  }

  /// Admits one more connection unless `maxConnections` are open; it counts
  /// until `discharge` (the guard's drop, or the connection's end).
  fn admit(&self) -> Option<Admission<'_>> {
    let below_max = |open: usize| (open < self.max_connections).then_some(open + 1);
    self.admitted.fetch_update(Ordering::AcqRel, Ordering::Acquire, below_max).ok()?;
    Some(Admission { shared: self })
  }

  pub(super) fn discharge(&self) {
    self.admitted.fetch_sub(1, Ordering::AcqRel);
  }

  /// JS's verdict on the upgrade of connection `handle`; false when the
  /// upgrade no longer waits for it (it timed out, or the client left).
  pub(super) fn decide(&self, handle: u32, verdict: Verdict) -> bool {
    let waiting = self.verdicts().remove(&handle);
    waiting.is_some_and(|waiting| waiting.send(verdict).is_ok())
  }
}

/// An admitted connection not yet open: dropped, it leaves its place.
struct Admission<'a> {
  shared: &'a Shared,
}

impl Admission<'_> {
  /// The connection opened: it keeps its place until it ends.
  fn keep(self) {
    std::mem::forget(self);
  }
}

impl Drop for Admission<'_> {
  fn drop(&mut self) {
    self.shared.discharge();
  }
}

/// Runs the upgrade of an accepted connection, then starts serving it.
pub(super) async fn serve<S>(
  shared: Arc<Shared>,
  stream: ServerStream<S>,
  remote: Remote,
  reservation: Reservation,
) where
  S: PayloadSource + AsyncWrite + MayGoDormant + Send + 'static,
{
  let handle = reservation.handle();
  // Boxed: the handshake's buffers would otherwise stay part of this
  // task's size for the connection's whole life.
  let upgrading =
    Box::pin(timeout(shared.handshake_timeout, upgrade(&shared, stream, &remote, handle)));
  let upgraded = tokio::select! {
    _ = shared.shutdown.cancelled() => None,
    upgraded = upgrading => upgraded.ok().flatten(),
  };
  let Some(Upgraded { stream, opening, headers, protocol, agreement }) = upgraded else {
    // Too slow, refused or gone: nothing was reported as a connection yet.
    shared.verdicts().remove(&handle);
    if shared.verify {
      // JS may have heard of the handle: it releases it.
      shared.events.detail(reservation.settle(), EventDetail::Abandoned {});
    }
    return;
  };
  let connection = Connection::new(headers, protocol, remote, agreement);
  open_connection(&shared, stream, reservation, connection, shared.verify, opening).await;
}

/// The opening handshake on an accepted stream: read and check the
/// request, let JS decide when it wants to, then make the 101 answer or
/// refuse.
async fn upgrade<S>(
  shared: &Shared,
  mut stream: ServerStream<S>,
  remote: &Remote,
  handle: u32,
) -> Option<Upgraded<S>>
where
  S: AsyncRead + AsyncWrite + Unpin,
{
  let Upgrade { request, leftover } = read_valid_request(shared, &mut stream).await?;
  let Some(admission) = shared.admit() else {
    let full = Refusal {
      status: 503,
      body: "Too many connections".into(),
      headers: vec![("Retry-After".into(), FULL_RETRY_AFTER_SECONDS.into())],
    };
    let _ = handshake::refuse(&mut stream, &full).await;
    return None;
  };

  let protocol = if shared.verify {
    let verdict = ask_js(shared, &request, remote, handle).await?;
    if !verdict.accept {
      let _ = handshake::refuse(&mut stream, &refusal_of(verdict)).await;
      return None;
    }
    verdict.protocol
  } else {
    request.protocols.first().cloned().unwrap_or_default()
  };

  let deflate = shared.deflate.map(|d| d.negotiation);
  let (response, agreement) = match handshake::answer(&request, &protocol, deflate) {
    Ok(answer) => answer,
    Err(refusal) => {
      let _ = handshake::refuse(&mut stream, &refusal).await;
      return None;
    }
  };
  admission.keep();
  let opening = Opening { response, leftover };
  Some(Upgraded { stream, opening, headers: request.headers, protocol, agreement })
}

/// A connection accepted, its 101 answer not yet written.
struct Upgraded<S> {
  stream: ServerStream<S>,
  opening: Opening,
  headers: HeaderBlock,
  protocol: String,
  agreement: Option<Agreement>,
}

/// Reads the request and checks it is a valid upgrade at the served path;
/// refuses it (when there is anyone to tell) otherwise.
async fn read_valid_request<S>(shared: &Shared, stream: &mut ServerStream<S>) -> Option<Upgrade>
where
  S: AsyncRead + AsyncWrite + Unpin,
{
  let refusal = match handshake::read_request(stream).await {
    Ok(upgrade) if shared.path.as_deref().is_none_or(|path| path == upgrade.request.path()) => {
      return Some(upgrade)
    }
    Ok(_) => Refusal::bad_request("No WebSocket endpoint at this path"),
    Err(Some(refusal)) => refusal,
    Err(None) => return None,
  };
  let _ = handshake::refuse(stream, &refusal).await;
  None
}

/// Hands the upgrade to JS (a `Verify` event) and waits for its verdict;
/// `None` when it will never come.
async fn ask_js(
  shared: &Shared,
  request: &Request,
  remote: &Remote,
  handle: u32,
) -> Option<Verdict> {
  let (answer, verdict) = oneshot::channel();
  shared.verdicts().insert(handle, answer);
  shared.events.detail(
    handle,
    EventDetail::Verify {
      url: request.target.clone(),
      raw_headers: request.headers.unpacked(),
      remote_address: remote.address(),
      remote_port: remote.port.into(),
      protocols: request.protocols.clone(),
    },
  );
  verdict.await.ok()
}

/// The refusal JS decided on.
fn refusal_of(verdict: Verdict) -> Refusal {
  Refusal::from_js(verdict.status, verdict.reason, &verdict.headers)
}
