//! permessage-deflate (RFC 7692): what two ends agreed on (negotiation.rs),
//! compressing one message (compress.rs) and inflating one (inflate.rs).
//!
//! tungstenite neither negotiates the extension nor reads frames with RSV1
//! set, so compressed messages go around it: the stream under tungstenite
//! holds their frames back and inflates them (server_stream.rs), and a
//! compressed message goes out as a ready-made frame with RSV1 set
//! (`Message::Frame`), which tungstenite writes as it is. README, "Design
//! notes: compression", says why and what it costs.

pub mod compress;
pub mod inflate;
pub mod negotiation;

/// The window sizes RFC 7692 allows, as powers of two.
pub const MIN_WINDOW_BITS: u8 = 8;
pub const MAX_WINDOW_BITS: u8 = 15;

/// What one connection's two ends agreed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Agreement {
  /// The largest window we may compress with.
  pub send_window_bits: u8,
  /// Whether the peer keeps its compression context from one message to
  /// the next, so that our inflater must too.
  pub receive_takeover: bool,
}

/// The zlib level when none is given (README, "Compression", has the
/// measurement behind it).
pub const DEFAULT_LEVEL: u8 = 6;

/// How one end compresses what it sends.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
  /// Messages shorter than this go out as they are.
  pub threshold: usize,
  /// The zlib level, 0-9.
  pub level: u8,
}

/// How a connection compresses what it sends when it compresses each
/// message itself (a client; a server compresses as JS sends, once for
/// every receiver of a broadcast).
#[derive(Clone, Copy, Debug)]
pub struct Compressor {
  pub window_bits: u8,
  pub settings: Settings,
}

impl Compressor {
  pub fn compress(
    &self,
    message: &tokio_tungstenite::tungstenite::Message,
  ) -> compress::Compressed {
    compress::compress(message, self.window_bits, self.settings)
  }
}
