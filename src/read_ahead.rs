//! Large reads for connections that keep small read buffers.
//!
//! tungstenite allocates its read buffer up front for every connection and
//! never reads more than that buffer's size at once. Server connections
//! keep it small (idle peers must be cheap), which would cost one system
//! call per 4 KiB of a large message. `ReadAhead` reads up to 64 KiB at a
//! time into a scratch buffer of the worker thread and hands on what the
//! caller asked for. When more arrived, the connection keeps that scratch
//! buffer (its "spill") until it is consumed, and the thread takes another.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const READ_AHEAD: usize = 64 * 1024;

thread_local! {
  static SCRATCH: Cell<Option<Box<[u8]>>> = const { Cell::new(None) };
}

fn take_scratch() -> Box<[u8]> {
  SCRATCH.take().unwrap_or_else(|| vec![0; READ_AHEAD].into_boxed_slice())
}

fn give_back(scratch: Box<[u8]>) {
  SCRATCH.set(Some(scratch));
}

/// Bytes read ahead and not handed on yet: `data[start..end]`.
struct Spill {
  data: Box<[u8]>,
  start: usize,
  end: usize,
}

pub struct ReadAhead<S> {
  inner: S,
  spill: Option<Spill>,
}

impl<S> ReadAhead<S> {
  pub fn new(inner: S) -> ReadAhead<S> {
    ReadAhead { inner, spill: None }
  }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
  fn poll_read(
    self: Pin<&mut Self>,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
  ) -> Poll<io::Result<()>> {
    let this = self.get_mut();
    if let Some(spill) = &mut this.spill {
      let taken = (spill.end - spill.start).min(buf.remaining());
      buf.put_slice(&spill.data[spill.start..spill.start + taken]);
      spill.start += taken;
      if spill.start == spill.end {
        // An idle connection holds no read-ahead memory.
        if let Some(spill) = this.spill.take() {
          give_back(spill.data);
        }
      }
      return Poll::Ready(Ok(()));
    }
    if buf.remaining() >= READ_AHEAD {
      return Pin::new(&mut this.inner).poll_read(cx, buf);
    }

    let mut scratch = take_scratch();
    let mut ahead = ReadBuf::new(&mut scratch);
    let read = match Pin::new(&mut this.inner).poll_read(cx, &mut ahead) {
      Poll::Ready(Ok(())) => ahead.filled().len(),
      other => {
        give_back(scratch);
        return other;
      }
    };
    let taken = read.min(buf.remaining());
    buf.put_slice(&scratch[..taken]);
    if taken < read {
      this.spill = Some(Spill { data: scratch, start: taken, end: read });
    } else {
      give_back(scratch);
    }
    Poll::Ready(Ok(()))
  }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
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
