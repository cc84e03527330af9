//! Sending from JS to many connections in one crossing: the batches of
//! sends JS gathered, and one message to many connections.

use std::sync::Arc;

use napi::bindgen_prelude::Uint32Array;
use tokio_tungstenite::tungstenite::Message;

use super::registry::Connection;
use super::Shared;
use crate::buffers::{json_lines, payload_len, to_message, Payload};

impl Shared {
  /// Queues `payloads[i]` to connection `handles[i]`, for every i.
  /// Connections that are gone or closing are skipped.
  pub(super) fn send_batch(&self, handles: Uint32Array, payloads: Vec<Payload>) {
    let connections = self.connections();
    let sends = handles.iter().zip(payloads).filter_map(|(handle, payload)| {
      connections.get(handle).map(|connection| (connection, to_message(payload)))
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
      .filter_map(|(handle, message)| connections.get(handle).map(|c| (c, message)));
    self.send_each(sends);
  }

  /// Queues one message to each of `handles`, sharing its bytes; returns
  /// how many connections took it.
  pub(super) fn send_many(&self, handles: Uint32Array, payload: Payload) -> u32 {
    let connections = self.connections();
    let receivers = handles.iter().filter_map(|handle| connections.get(handle));
    self.send_to_all(receivers, to_message(payload))
  }

  /// Queues one message to every open connection but those in `except`;
  /// returns how many took it.
  pub(super) fn broadcast(&self, payload: Payload, except: Option<Uint32Array>) -> u32 {
    let except: &[u32] = except.as_deref().unwrap_or(&[]);
    let connections = self.connections();
    let receivers = connections.iter().filter(|(handle, _)| !except.contains(handle));
    self.send_to_all(receivers.map(|(_, connection)| connection), to_message(payload))
  }

  /// Queues each message to its connection, and counts what was taken.
  fn send_each<'a>(&self, sends: impl Iterator<Item = (&'a Arc<Connection>, Message)>) {
    let (mut messages, mut bytes) = (0, 0);
    for (connection, message) in sends {
      let length = payload_len(&message);
      if connection.link.send(message, self.limits) {
        messages += 1;
        bytes += length as u64;
      }
    }
    self.counters.sent(messages, bytes);
  }

  /// Queues `message` to every one of `receivers`, sharing its bytes;
  /// returns how many took it.
  fn send_to_all<'a>(
    &self,
    receivers: impl Iterator<Item = &'a Arc<Connection>>,
    message: Message,
  ) -> u32 {
    let taken =
      receivers.filter(|connection| connection.link.send(message.clone(), self.limits)).count();
    self.counters.sent(taken as u64, (taken * payload_len(&message)) as u64);
    taken as u32
  }
}
