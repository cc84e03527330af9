//! Sending from JS to many connections in one crossing: the batches of
//! sends JS gathered, and one message to many connections.

use napi::bindgen_prelude::Uint32Array;

use super::Shared;
use crate::buffers::{json_lines, to_message, Payload};

impl Shared {
  /// Queues `payloads[i]` to connection `handles[i]`, for every i.
  /// Connections that are gone or closing are skipped.
  pub(super) fn send_batch(&self, handles: Uint32Array, payloads: Vec<Payload>) {
    let limits = self.limits;
    let connections = self.connections();
    for (handle, payload) in handles.iter().zip(payloads) {
      if let Some(connection) = connections.get(handle) {
        connection.peer.send(to_message(payload), limits);
      }
    }
  }

  /// `send_batch` for JSON texts joined with line breaks: line i goes to
  /// connection `handles[i]`.
  pub(super) fn send_json_batch(&self, handles: Uint32Array, joined: String) {
    let limits = self.limits;
    let connections = self.connections();
    for (handle, message) in handles.iter().zip(json_lines(joined)) {
      if let Some(connection) = connections.get(handle) {
        connection.peer.send(message, limits);
      }
    }
  }

  /// Queues one message to each of `handles`, sharing its bytes; returns
  /// how many connections took it.
  pub(super) fn send_many(&self, handles: Uint32Array, payload: Payload) -> u32 {
    let message = to_message(payload);
    let limits = self.limits;
    let connections = self.connections();
    let receivers = handles.iter().filter_map(|handle| connections.get(handle));
    receivers.filter(|connection| connection.peer.send(message.clone(), limits)).count() as u32
  }

  /// Queues one message to every open connection but those in `except`;
  /// returns how many took it.
  pub(super) fn broadcast(&self, payload: Payload, except: Option<Uint32Array>) -> u32 {
    let message = to_message(payload);
    let limits = self.limits;
    let except: &[u32] = except.as_deref().unwrap_or(&[]);
    let connections = self.connections();
    let receivers = connections.iter().filter(|(handle, _)| !except.contains(handle));
    receivers.filter(|(_, connection)| connection.peer.send(message.clone(), limits)).count() as u32
  }
}
