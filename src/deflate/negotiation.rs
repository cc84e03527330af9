//! Agreeing on permessage-deflate (RFC 7692) in the opening handshake: the
//! server picks an offer and answers it, the client builds its offer and
//! checks the answer.
//!
//! Both sides of this crate compress every message on its own (no context
//! takeover), so the only state an agreement can force on a connection is
//! an inflater kept between messages, when the peer keeps its context.

use super::{Agreement, MAX_WINDOW_BITS, MIN_WINDOW_BITS};

pub const EXTENSION: &str = "permessage-deflate";

/// A Server's `perMessageDeflate` settings that shape its answer.
#[derive(Clone, Copy, Debug)]
pub struct ServerSettings {
  /// Ask clients not to keep their context between messages, so that no
  /// inflater outlives a message on the server.
  pub client_no_context_takeover: bool,
  /// The largest window clients may compress with, when they say they can
  /// be limited.
  pub client_max_window_bits: Option<u8>,
}

/// What a Socket offers (its `perMessageDeflate` option).
#[derive(Clone, Copy, Debug)]
pub struct ClientOffer {
  pub client_no_context_takeover: bool,
  pub server_no_context_takeover: bool,
  /// `Some(bits)` limits our own window; `None` still tells the server it
  /// may limit it.
  pub client_max_window_bits: Option<u8>,
  pub server_max_window_bits: Option<u8>,
}

/// One extension of a `Sec-WebSocket-Extensions` list: its name and its
/// parameters, values unquoted.
struct Extension<'a> {
  name: &'a str,
  params: Vec<(&'a str, Option<&'a str>)>,
}

/// Splits `text` at `separator`s outside quoted strings.
fn split_outside_quotes(text: &str, separator: char) -> impl Iterator<Item = &str> {
  let mut quoted = false;
  let mut escaped = false;
  text.split(move |c: char| {
    if escaped {
      escaped = false;
    } else if quoted && c == '\\' {
      escaped = true;
    } else if c == '"' {
      quoted = !quoted;
    }
    c == separator && !quoted
  })
}

/// The extensions of every `Sec-WebSocket-Extensions` header value, in
/// order. An element that is not `token *(; param)` is skipped.
fn extensions<'a>(values: &'a [&'a str]) -> Vec<Extension<'a>> {
  values
    .iter()
    .flat_map(|value| split_outside_quotes(value, ','))
    .filter_map(|element| {
      let mut parts = split_outside_quotes(element, ';').map(str::trim);
      let name = parts.next().filter(|name| !name.is_empty())?;
      let params = parts
        .map(|param| match param.split_once('=') {
          Some((key, value)) => (key.trim(), Some(unquote(value.trim()))),
          None => (param, None),
        })
        .collect();
      Some(Extension { name, params })
    })
    .collect()
}

fn unquote(value: &str) -> &str {
  value.strip_prefix('"').and_then(|inner| inner.strip_suffix('"')).unwrap_or(value)
}

/// A window size parameter's value: 8 to 15 in plain decimal.
fn window_bits(value: &str) -> Option<u8> {
  if value.len() > 2 || !value.bytes().all(|byte| byte.is_ascii_digit()) || value.starts_with('0') {
    return None;
  }
  value.parse().ok().filter(|bits| (MIN_WINDOW_BITS..=MAX_WINDOW_BITS).contains(bits))
}

/// The parameters of one permessage-deflate offer or answer, each at most
/// once and well formed; `None` otherwise.
#[derive(Default)]
struct Params {
  server_no_context_takeover: bool,
  client_no_context_takeover: bool,
  server_max_window_bits: Option<u8>,
  /// `Some(None)`: present without a value (allowed in offers only).
  client_max_window_bits: Option<Option<u8>>,
}

impl Params {
  fn parse(params: &[(&str, Option<&str>)]) -> Option<Params> {
    let mut parsed = Params::default();
    for &(name, value) in params {
      match (name.to_ascii_lowercase().as_str(), value) {
        ("server_no_context_takeover", None) if !parsed.server_no_context_takeover => {
          parsed.server_no_context_takeover = true
        }
        ("client_no_context_takeover", None) if !parsed.client_no_context_takeover => {
          parsed.client_no_context_takeover = true
        }
        ("server_max_window_bits", Some(value)) if parsed.server_max_window_bits.is_none() => {
          parsed.server_max_window_bits = Some(window_bits(value)?)
        }
        ("client_max_window_bits", value) if parsed.client_max_window_bits.is_none() => {
          let bits = match value {
            Some(value) => Some(window_bits(value)?),
            None => None,
          };
          parsed.client_max_window_bits = Some(bits);
        }
        _ => return None,
      }
    }
    Some(parsed)
  }
}

/// The server's choice among a request's offers (`Sec-WebSocket-Extensions`
/// values, in order): the agreement and the answer's header value, for the
/// first permessage-deflate offer it can accept. Offers it cannot parse are
/// declined, never failed.
pub fn accept_offer(values: &[&str], settings: ServerSettings) -> Option<(Agreement, String)> {
  extensions(values)
    .iter()
    .filter(|extension| extension.name.eq_ignore_ascii_case(EXTENSION))
    .find_map(|offer| answer(&Params::parse(&offer.params)?, settings))
}

/// Our answer to one well-formed offer. We never keep context ourselves, so
/// `server_no_context_takeover` is always in it: a message's compressed
/// bytes then do not depend on the connection, and a broadcast compresses
/// once for all.
fn answer(offer: &Params, settings: ServerSettings) -> Option<(Agreement, String)> {
  let mut answer = format!("{EXTENSION}; server_no_context_takeover");
  // The client's hint that it keeps no context costs us nothing to confirm.
  let client_fresh = settings.client_no_context_takeover || offer.client_no_context_takeover;
  if client_fresh {
    answer.push_str("; client_no_context_takeover");
  }
  if let Some(bits) = offer.server_max_window_bits {
    answer.push_str(&format!("; server_max_window_bits={bits}"));
  }
  if let (Some(limit), Some(offered)) =
    (settings.client_max_window_bits, offer.client_max_window_bits)
  {
    let bits = offered.map_or(limit, |offered| offered.min(limit));
    answer.push_str(&format!("; client_max_window_bits={bits}"));
  }
  let agreement = Agreement {
    send_window_bits: offer.server_max_window_bits.unwrap_or(MAX_WINDOW_BITS),
    receive_takeover: !client_fresh,
  };
  Some((agreement, answer))
}

impl ClientOffer {
  /// The `Sec-WebSocket-Extensions` value of the offer.
  pub fn header(&self) -> String {
    let mut offer = EXTENSION.to_owned();
    if self.client_no_context_takeover {
      offer.push_str("; client_no_context_takeover");
    }
    if self.server_no_context_takeover {
      offer.push_str("; server_no_context_takeover");
    }
    match self.client_max_window_bits {
      Some(bits) => offer.push_str(&format!("; client_max_window_bits={bits}")),
      None => offer.push_str("; client_max_window_bits"),
    }
    if let Some(bits) = self.server_max_window_bits {
      offer.push_str(&format!("; server_max_window_bits={bits}"));
    }
    offer
  }

  /// What the server's answer (its `Sec-WebSocket-Extensions` values)
  /// agreed to: `Ok(None)` when it declined; `Err` (the connection fails)
  /// when it answered something this offer did not allow.
  pub fn accept_answer(&self, values: &[&str]) -> Result<Option<Agreement>, String> {
    let answered = extensions(values);
    let answer = match answered.as_slice() {
      [] => return Ok(None),
      [answer] if answer.name.eq_ignore_ascii_case(EXTENSION) => answer,
      _ => {
        return Err(format!(
          "The server answered with extensions we did not offer: {}",
          values.join(", ")
        ))
      }
    };
    let bad = || {
      format!(
        "The server's permessage-deflate answer is not one our offer allows: {}",
        values.join(", ")
      )
    };
    let params = Params::parse(&answer.params).ok_or_else(bad)?;
    let send_window_bits = match params.client_max_window_bits {
      None => self.client_max_window_bits.unwrap_or(MAX_WINDOW_BITS),
      Some(Some(bits)) if bits <= self.client_max_window_bits.unwrap_or(MAX_WINDOW_BITS) => bits,
      Some(_) => return Err(bad()),
    };
    // What we asked of the server, it must have agreed to.
    let limited = match (self.server_max_window_bits, params.server_max_window_bits) {
      (Some(asked), Some(answered)) => answered <= asked,
      (Some(_), None) => false,
      (None, _) => true,
    };
    if !limited || (self.server_no_context_takeover && !params.server_no_context_takeover) {
      return Err(bad());
    }
    Ok(Some(Agreement { send_window_bits, receive_takeover: !params.server_no_context_takeover }))
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  const DEFAULTS: ServerSettings =
    ServerSettings { client_no_context_takeover: true, client_max_window_bits: None };

  #[test]
  fn the_server_accepts_the_first_offer_it_can_and_always_keeps_no_context() {
    let (agreement, answer) = accept_offer(
      &["permessage-deflate; server_max_window_bits=16, permessage-deflate; server_max_window_bits=10"],
      DEFAULTS,
    )
    .unwrap();
    assert_eq!(
      answer,
      "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10"
    );
    assert_eq!(agreement, Agreement { send_window_bits: 10, receive_takeover: false });
  }

  #[test]
  fn the_server_declines_offers_it_cannot_parse() {
    for offer in [
      "permessage-deflate; unknown",
      "permessage-deflate; server_max_window_bits",
      "permessage-deflate; server_max_window_bits=7",
      "permessage-deflate; server_max_window_bits=010",
      "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
      "permessage-deflate; server_no_context_takeover=1",
      "x-webkit-deflate-frame",
    ] {
      assert!(accept_offer(&[offer], DEFAULTS).is_none(), "{offer}");
    }
  }

  #[test]
  fn the_server_limits_the_client_window_only_when_the_client_allows_it() {
    let settings =
      ServerSettings { client_no_context_takeover: false, client_max_window_bits: Some(10) };
    let (agreement, answer) =
      accept_offer(&["permessage-deflate; client_max_window_bits"], settings).unwrap();
    assert_eq!(answer, "permessage-deflate; server_no_context_takeover; client_max_window_bits=10");
    assert!(agreement.receive_takeover);
    let (_, answer) =
      accept_offer(&["permessage-deflate; client_max_window_bits=\"9\""], settings).unwrap();
    assert!(answer.ends_with("client_max_window_bits=9"));
    let (_, answer) = accept_offer(&["Permessage-Deflate"], settings).unwrap();
    assert_eq!(answer, "permessage-deflate; server_no_context_takeover");
  }

  #[test]
  fn the_client_checks_the_answer_against_its_offer() {
    let offer = ClientOffer {
      client_no_context_takeover: true,
      server_no_context_takeover: false,
      client_max_window_bits: None,
      server_max_window_bits: None,
    };
    assert_eq!(
      offer.header(),
      "permessage-deflate; client_no_context_takeover; client_max_window_bits"
    );
    assert_eq!(offer.accept_answer(&[]), Ok(None));
    assert_eq!(
      offer.accept_answer(&["permessage-deflate; client_max_window_bits=9"]),
      Ok(Some(Agreement { send_window_bits: 9, receive_takeover: true }))
    );
    assert_eq!(
      offer.accept_answer(&["permessage-deflate; server_no_context_takeover"]),
      Ok(Some(Agreement { send_window_bits: 15, receive_takeover: false }))
    );
    for wrong in [
      "permessage-deflate, permessage-deflate",
      "x-other",
      "permessage-deflate; client_max_window_bits",
      "permessage-deflate; bogus=1",
    ] {
      assert!(offer.accept_answer(&[wrong]).is_err(), "{wrong}");
    }
    let asking =
      ClientOffer { server_no_context_takeover: true, server_max_window_bits: Some(10), ..offer };
    assert!(asking.accept_answer(&["permessage-deflate; server_max_window_bits=10"]).is_err());
    assert!(asking
      .accept_answer(&["permessage-deflate; server_no_context_takeover; server_max_window_bits=11"])
      .is_err());
    assert!(asking
      .accept_answer(&["permessage-deflate; server_no_context_takeover; server_max_window_bits=9"])
      .is_ok());
  }
}
