//! Sending from JS to many connections in one crossing: the batches of
//! sends JS gathered, and one message to many connections, compressed once
//! for every connection that agreed on compression.

use std::sync::Arc;

use napi::bindgen_prelude::Uint32Array;
use tokio_tungstenite::tungstenite::Message;

use super::envelope::Outgoing;
use super::registry::Connection;
use super::Shared;
use crate::buffers::{json_lines, payload_len, to_message, Payload};
use crate::deflate::compress::compress;
use crate::deflate::{Agreement, Settings, MAX_WINDOW_BITS, MIN_WINDOW_BITS};

/// One message as each of its receivers gets it: as it is, or compressed
/// for the window its connection agreed on. Each compressed form is made
/// once, when a receiver first needs it; receivers share its bytes.
pub(super) struct Prepared {
  message: Message,
  /// How to compress; `None` sends it as it is to everyone.
  settings: Option<Settings>,
  /// The form for each window size (index: bits - MIN_WINDOW_BITS), once
  /// made.
  forms: [Option<Message>; (MAX_WINDOW_BITS - MIN_WINDOW_BITS + 1) as usize],
  deflate_calls: u64,
}

impl Prepared {
  pub(super) fn new(message: Message, settings: Option<Settings>) -> Prepared {
    Prepared { message, settings, forms: Default::default(), deflate_calls: 0 }
  }

  /// The message for a connection that agreed on `agreement`.
  fn for_connection(&mut self, agreement: Option<Agreement>) -> Message {
    let (Some(settings), Some(agreement)) = (self.settings, agreement) else {
      return self.message.clone();
    };
    let bits = agreement.send_window_bits;
    let index = usize::from(bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS) - MIN_WINDOW_BITS);
    let (message, calls) = (&self.message, &mut self.deflate_calls);
    let form = self.forms[index].get_or_insert_with(|| {
      let compressed = compress(message, bits, settings);
      *calls += u64::from(compressed.deflated());
      compressed.or(message.clone())
    });
    form.clone()
  }
}

impl Shared {
  /// Compression as this server sends, unless the sender said not to.
  pub(super) fn sending(&self, compress: bool) -> Option<Settings> {
    self.deflate.filter(|_| compress).map(|deflate| deflate.sending)
  }

  /// Queues `payloads[i]` to connection `handles[i]`, for every i.
  /// Connections that are gone or closing are skipped.
  pub(super) fn send_batch(&self, handles: Uint32Array, payloads: Vec<Payload>) {
    let connections = self.connections();
    let sends = handles.iter().zip(payloads).filter_map(|(handle, payload)| {
      connections.get(*handle).map(|connection| (connection, to_message(payload)))
    });
    self.send_each(sends);
  }

  /// `send_batch` for JSON texts joined with line breaks: line i goes to
  /// connection `handles[i]`.
  pub(super) fn send_json_batch(&self, handles: Uint32Array, joined: String) {
    let connections = self.connections();
    let sends = handles
      .iter()
      .zip(json_lines(joined))
      .filter_map(|(handle, message)| connections.get(*handle).map(|c| (c, message)));
    self.send_each(sends);
  }

  /// Queues one message, uncompressed, to connection `handle`.
  pub(super) fn send_uncompressed(&self, handle: u32, payload: Payload) -> bool {
    let Some(connection) = self.connection(handle) else { return false };
    self.send_to_all([&connection].into_iter(), Prepared::new(to_message(payload), None)) == 1
  }

  /// Queues one message to each of `handles`, sharing its bytes; returns
  /// how many connections took it.
  pub(super) fn send_many(&self, handles: Uint32Array, payload: Payload, compress: bool) -> u32 {
    let connections = self.connections();
    let receivers = handles.iter().filter_map(|handle| connections.get(*handle));
    self.send_to_all(receivers, Prepared::new(to_message(payload), self.sending(compress)))
  }

  /// Queues one message to every open connection but those in `except`,
  /// and hands it to the other nodes of a cluster; returns how many here
  /// took it.
  pub(super) fn broadcast(
    &self,
    payload: Payload,
    except: Option<Uint32Array>,
    compress: bool,
  ) -> u32 {
    let message = to_message(payload);
    if let Some(cluster) = &self.cluster {
      cluster.publish(Outgoing { message: &message, compress, topic: None });
    }
    let connections = self.connections();
    self.send_except(connections.iter(), except.as_deref(), message, compress)
  }

  /// Queues `message` to each of `members` (by handle) not in `except`;
  /// returns how many took it.
  pub(super) fn send_except<'a>(
    &self,
    members: impl Iterator<Item = (&'a u32, &'a Arc<Connection>)>,
    except: Option<&[u32]>,
    message: Message,
    compress: bool,
  ) -> u32 {
    let except = except.unwrap_or(&[]);
    let receivers = members.filter(|(handle, _)| !except.contains(handle));
    let prepared = Prepared::new(message, self.sending(compress));
    self.send_to_all(receivers.map(|(_, connection)| connection), prepared)
  }

  /// Queues another node's broadcast to every open connection.
  pub(super) fn deliver_remote(&self, message: Message, compress: bool) {
    let connections = self.connections();
    self.send_to_all(connections.values(), Prepared::new(message, self.sending(compress)));
  }

  /// Queues each message to its connection, and counts what was taken.
  fn send_each<'a>(&self, sends: impl Iterator<Item = (&'a Arc<Connection>, Message)>) {
    let (mut messages, mut bytes, mut deflate_calls) = (0, 0, 0);
    let settings = self.sending(true);
    for (connection, message) in sends {
      let length = payload_len(&message);
      let mut prepared = Prepared::new(message, settings);
      if connection.link.send(prepared.for_connection(connection.deflate), self.limits) {
        messages += 1;
        bytes += length as u64;
      }
      deflate_calls += prepared.deflate_calls;
    }
    self.counters.sent(messages, bytes);
    self.counters.deflated(deflate_calls);
  }

  /// Queues `prepared` to every one of `receivers`, sharing its bytes;
  /// returns how many took it.
  pub(super) fn send_to_all<'a>(
    &self,
    receivers: impl Iterator<Item = &'a Arc<Connection>>,
    mut prepared: Prepared,
  ) -> u32 {
    let taken = receivers
      .filter(|connection| {
        connection.link.send(prepared.for_connection(connection.deflate), self.limits)
      })
      .count();
    let length = payload_len(&prepared.message);
    self.counters.sent(taken as u64, (taken * length) as u64);
    self.counters.deflated(prepared.deflate_calls);
    taken as u32
  }
}
