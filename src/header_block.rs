//! The request headers a server connection keeps for `connection.headers`,
//! packed: an idle connection holds them for its whole life, and most of
//! their bytes are names (and a few whole headers) that every WebSocket
//! request repeats. A common name, or a common name with its usual value,
//! is kept as one byte; the rest as it came.
//!
//! The packed form: for each header in arrival order, either one code
//! byte of `COMMON` (below 0x20, which no header name starts with), then
//! the value and a NUL unless the code stands for the whole header; or the
//! name and a NUL, then the value and a NUL. Header values hold no NUL.
//!
//! JS reads the headers unpacked (`unpacked`): names and values, each
//! followed by a NUL, names in lower case.

/// Names (in lower case), and whole headers, that WebSocket requests of
/// browsers, proxies and clients commonly carry.
/// Code `i + 1` stands for entry `i`; append only, at most 31 entries.
const COMMON: [(&str, Option<&str>); 24] = [
  ("host", None),
  ("upgrade", Some("websocket")),
  ("upgrade", None),
  ("connection", Some("Upgrade")),
  ("connection", Some("upgrade")),
  ("connection", None),
  ("sec-websocket-key", None),
  ("sec-websocket-version", Some("13")),
  ("sec-websocket-version", None),
  ("sec-websocket-extensions", Some("permessage-deflate; client_max_window_bits")),
  ("sec-websocket-extensions", None),
  ("sec-websocket-protocol", None),
  ("origin", None),
  ("user-agent", None),
  ("pragma", Some("no-cache")),
  ("cache-control", Some("no-cache")),
  ("accept-encoding", None),
  ("accept-language", None),
  ("cookie", None),
  ("authorization", None),
  ("x-forwarded-for", None),
  ("x-forwarded-proto", None),
  ("x-real-ip", None),
  ("forwarded", None),
];

/// A connection's request headers, packed.
pub struct HeaderBlock(Box<[u8]>);

impl HeaderBlock {
  /// Packs `(name, value)` pairs, names in any case (kept in lower case);
  /// a value that is not UTF-8 is kept with U+FFFD in place of what is not.
  pub fn pack<'a>(headers: impl Iterator<Item = (&'a str, &'a [u8])>) -> HeaderBlock {
    // Packed here, then copied to a block of the exact size: shrinking in
    // place would leave a gap next to every idle connection's headers.
    let mut packed = Vec::with_capacity(256);
    for (name, value) in headers {
      let value = String::from_utf8_lossy(value);
      let is = |common: &(&str, Option<&str>)| common.0.eq_ignore_ascii_case(name);
      let whole = COMMON.iter().position(|common| is(common) && common.1 == Some(&*value));
      if let Some(index) = whole {
        packed.push(code(index));
        continue;
      }
      match COMMON.iter().position(|common| is(common) && common.1.is_none()) {
        Some(index) => packed.push(code(index)),
        None => {
          packed.extend(name.bytes().map(|byte| byte.to_ascii_lowercase()));
          packed.push(0);
        }
      }
      packed.extend_from_slice(value.as_bytes());
      packed.push(0);
    }
    HeaderBlock(Box::from(packed.as_slice()))
  }

  /// Names and values, each followed by a NUL, in arrival order.
  pub fn unpacked(&self) -> String {
    let mut unpacked = String::with_capacity(self.0.len() * 2);
    let mut rest = &*self.0;
    while let Some((&first, after)) = rest.split_first() {
      let common = COMMON.get(usize::from(first).wrapping_sub(1)).filter(|_| first < 0x20);
      let (name, value) = match common {
        Some((name, Some(value))) => {
          rest = after;
          (*name, *value)
        }
        Some((name, None)) => {
          let (value, after) = until_nul(after);
          rest = after;
          (*name, value)
        }
        None => {
          let (name, after) = until_nul(rest);
          let (value, after) = until_nul(after);
          rest = after;
          (name, value)
        }
      };
      for part in [name, value] {
        unpacked.push_str(part);
        unpacked.push('\0');
      }
    }
    unpacked
  }
}

fn code(index: usize) -> u8 {
  // COMMON has fewer than 31 entries: the code stays below 0x20.
  (index + 1) as u8
}

/// The text up to the next NUL (or the end), and what follows the NUL.
fn until_nul(bytes: &[u8]) -> (&str, &[u8]) {
  let end = bytes.iter().position(|&byte| byte == 0).unwrap_or(bytes.len());
  // Packed from `&str`s, split at NULs only: always UTF-8.
  let text = std::str::from_utf8(&bytes[..end]).unwrap_or_default();
  (text, bytes.get(end + 1..).unwrap_or_default())
}

#[cfg(test)]
mod tests {
  use super::*;

  /// The unpacked form, made directly.
  fn plain(headers: &[(&str, &[u8])]) -> String {
    let mut raw = String::new();
    for (name, value) in headers {
      raw.push_str(name);
      raw.push('\0');
      raw.push_str(&String::from_utf8_lossy(value));
      raw.push('\0');
    }
    raw
  }

  fn round_trip(headers: &[(&str, &[u8])]) -> (String, usize) {
    let block = HeaderBlock::pack(headers.iter().copied());
    (block.unpacked(), block.0.len())
  }

  #[test]
  fn common_headers_shrink_and_unpack_as_they_came() {
    let headers: &[(&str, &[u8])] = &[
      ("host", b"127.0.0.1:8080"),
      ("upgrade", b"websocket"),
      ("connection", b"Upgrade"),
      ("sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
      ("sec-websocket-version", b"13"),
    ];
    let (unpacked, packed_len) = round_trip(headers);
    assert_eq!(unpacked, plain(headers));
    assert!(packed_len <= 46, "{packed_len} bytes packed, {} plain", unpacked.len());
  }

  #[test]
  fn other_names_values_and_repeats_unpack_as_they_came() {
    let headers: &[(&str, &[u8])] = &[
      ("upgrade", b"WebSocket"),
      ("connection", b"keep-alive, Upgrade"),
      ("x-custom", b""),
      ("set-cookie", b"a=1"),
      ("set-cookie", b"b=2"),
      ("sec-websocket-version", b""),
      ("x-latin1", b"caf\xe9"),
      ("origin", b"https://example.com"),
      ("pragma", b"no-cache"),
    ];
    assert_eq!(round_trip(headers).0, plain(headers));
    assert_eq!(round_trip(&[]).0, "");
  }

  #[test]
  fn names_are_kept_in_lower_case() {
    let headers: &[(&str, &[u8])] =
      &[("Host", b"a"), ("UPGRADE", b"websocket"), ("X-Mixed", b"Case")];
    let lower: &[(&str, &[u8])] =
      &[("host", b"a"), ("upgrade", b"websocket"), ("x-mixed", b"Case")];
    assert_eq!(round_trip(headers), round_trip(lower));
    assert_eq!(round_trip(headers).0, plain(lower));
  }

  #[test]
  fn every_common_entry_unpacks_to_itself() {
    for (name, value) in COMMON {
      let value = value.unwrap_or("some value");
      let headers: &[(&str, &[u8])] = &[(name, value.as_bytes()), ("x-after", b"1")];
      assert_eq!(round_trip(headers).0, plain(headers), "{name}");
    }
    assert!(COMMON.len() < 0x20);
  }
}
