//! Inflating one received message as its compressed bytes arrive, never
//! past the most a message may hold (a decompression bomb stops there).

use std::cell::Cell;

use flate2::{Decompress, FlushDecompress, Status};

use super::compress::SYNC_TAIL;

/// Output grows by at least this much at a time.
const MIN_GROWTH: usize = 4 * 1024;

thread_local! {
  /// An inflater for messages that keep no context, reused on each thread:
  /// a connection holds one only while a message is half received.
  static SPARE: Cell<Option<Box<Decompress>>> = const { Cell::new(None) };
}

/// Why a compressed message cannot be delivered.
#[derive(Debug, PartialEq, Eq)]
pub enum InflateError {
  /// It inflates to more than the most a message may hold.
  TooBig,
  /// Its bytes are not a deflate stream.
  Corrupt,
}

/// A message being inflated.
pub struct Inflation {
  inflater: Box<Decompress>,
  output: Vec<u8>,
  /// The most the message may inflate to.
  limit: usize,
}

impl Inflation {
  /// Starts a message with the connection's own inflater (the peer keeps
  /// its context) or, when `kept` is `None`, a fresh one.
  pub fn start(kept: Option<Box<Decompress>>, limit: usize) -> Inflation {
    let inflater =
      kept.or_else(|| SPARE.take()).unwrap_or_else(|| Box::new(Decompress::new(false)));
    Inflation { inflater, output: Vec::new(), limit }
  }

  /// Bytes inflated so far.
  pub fn inflated(&self) -> usize {
    self.output.len()
  }

  /// Inflates the next compressed bytes of the message.
  pub fn push(&mut self, mut input: &[u8]) -> Result<(), InflateError> {
    loop {
      if self.output.len() == self.output.capacity() {
        let room = self.limit.saturating_add(1) - self.output.len();
        self.output.reserve_exact(self.output.len().max(MIN_GROWTH).min(room));
      }
      let (before_in, before_out) = (self.inflater.total_in(), self.output.len());
      let status = self
        .inflater
        .decompress_vec(input, &mut self.output, FlushDecompress::None)
        .map_err(|_| InflateError::Corrupt)?;
      if self.output.len() > self.limit {
        return Err(InflateError::TooBig);
      }
      input = &input[(self.inflater.total_in() - before_in) as usize..];
      if status == Status::StreamEnd {
        // A final block (RFC 7692 allows one): what follows starts anew.
        self.inflater.reset(false);
      } else if self.output.len() < self.output.capacity()
        && (input.is_empty() || self.output.len() == before_out)
      {
        // Everything the input gives is out (or it needs more input).
        return Ok(());
      }
    }
  }

  /// Ends the message: its inflated bytes, and the inflater when the peer
  /// keeps its context (`keep`).
  pub fn finish(mut self, keep: bool) -> Result<(Vec<u8>, Option<Box<Decompress>>), InflateError> {
    self.push(&SYNC_TAIL)?;
    if keep {
      return Ok((self.output, Some(self.inflater)));
    }
    self.inflater.reset(false);
    SPARE.set(Some(self.inflater));
    Ok((self.output, None))
  }
}

#[cfg(test)]
mod tests {
  use flate2::{Compress, Compression, FlushCompress};

  use super::*;

  /// `payload` deflated and sync-flushed, the tail left off.
  fn deflated(compressor: &mut Compress, payload: &[u8]) -> Vec<u8> {
    let mut output = Vec::with_capacity(payload.len() + 64);
    compressor.compress_vec(payload, &mut output, FlushCompress::Sync).unwrap();
    output.truncate(output.len() - SYNC_TAIL.len());
    output
  }

  #[test]
  fn inflates_in_pieces_and_keeps_context_when_asked() {
    let mut compressor = Compress::new(Compression::default(), false);
    let text = b"hello hello hello hello hello".repeat(100);
    let first = deflated(&mut compressor, &text);
    let mut inflation = Inflation::start(None, text.len());
    for piece in first.chunks(7) {
      inflation.push(piece).unwrap();
    }
    let (output, kept) = inflation.finish(true).unwrap();
    assert_eq!(output, text);
    // The second message refers back to the first.
    let second = deflated(&mut compressor, &text);
    assert!(second.len() < first.len());
    let (output, _) = Inflation::start(kept, text.len()).finish_with(&second);
    assert_eq!(output, text);
  }

  #[test]
  fn stops_a_bomb_at_the_limit() {
    let mut compressor = Compress::new(Compression::best(), false);
    let bomb = deflated(&mut compressor, &vec![0; 10 << 20]);
    assert!(bomb.len() < 20_000);
    let mut inflation = Inflation::start(None, 1 << 20);
    assert_eq!(inflation.push(&bomb), Err(InflateError::TooBig));
    assert!(inflation.inflated() <= (1 << 20) + 1);
    assert!(inflation.output.capacity() <= (1 << 20) + 1);
  }

  #[test]
  fn refuses_what_is_not_deflate() {
    let mut inflation = Inflation::start(None, 1 << 20);
    assert_eq!(inflation.push(&[0xff; 16]), Err(InflateError::Corrupt));
  }

  impl Inflation {
    fn finish_with(mut self, input: &[u8]) -> (Vec<u8>, Option<Box<Decompress>>) {
      self.push(input).unwrap();
      self.finish(false).unwrap()
    }
  }
}
