//! Topics: named sets of connections that `server.publish` reaches, on this
//! node and, in a cluster, on every other (README, "Topics").
//!
//! Locked after `connections` when both are held, never before: a
//! subscription holds `connections` while it joins, so a connection that
//! ends (leaving `connections` first) cannot join a topic afterwards.

use std::collections::HashMap;
use std::sync::{Arc, MutexGuard};

use napi::bindgen_prelude::Uint32Array;
use tokio_tungstenite::tungstenite::Message;

use super::envelope::Outgoing;
use super::fanout::Prepared;
use super::registry::Connection;
use super::{lock, Shared};
use crate::buffers::{to_message, Payload};

/// Who is subscribed to what on this node.
#[derive(Default)]
pub(super) struct Topics {
  /// Topic -> its members here.
  members: HashMap<Arc<str>, HashMap<u32, Arc<Connection>>>,
  /// Connection handle -> its topics, so that its end leaves them all.
  joined: HashMap<u32, Vec<Arc<str>>>,
}

impl Shared {
  fn topics(&self) -> MutexGuard<'_, Topics> {
    lock(&self.topics)
  }

  /// Connection `handle` joins `topic`; false if it is a member already,
  /// or gone or closing.
  pub(super) fn subscribe(&self, handle: u32, topic: &str) -> bool {
    let connections = self.connections();
    let Some(connection) = connections.get(handle).filter(|c| !c.link.is_closing()) else {
      return false;
    };
    let mut topics = self.topics();
    let Topics { members, joined } = &mut *topics;
    let topic: Arc<str> = match members.get_key_value(topic) {
      Some((name, _)) => Arc::clone(name),
      None => topic.into(),
    };
    let members = members.entry(Arc::clone(&topic)).or_default();
    if members.insert(handle, Arc::clone(connection)).is_some() {
      return false;
    }
    joined.entry(handle).or_default().push(topic);
    true
  }

  /// Connection `handle` leaves `topic`; false if it was not a member.
  pub(super) fn unsubscribe(&self, handle: u32, topic: &str) -> bool {
    let mut topics = self.topics();
    let Topics { members, joined } = &mut *topics;
    let Some(topic_members) = members.get_mut(topic) else { return false };
    if topic_members.remove(&handle).is_none() {
      return false;
    }
    if topic_members.is_empty() {
      members.remove(topic);
    }
    if let Some(its_topics) = joined.get_mut(&handle) {
      its_topics.retain(|joined| &**joined != topic);
      if its_topics.is_empty() {
        joined.remove(&handle);
      }
    }
    true
  }

  /// Connection `handle` ended: it leaves every topic.
  pub(super) fn leave_topics(&self, handle: u32) {
    let mut topics = self.topics();
    let Topics { members, joined } = &mut *topics;
    for topic in joined.remove(&handle).unwrap_or_default() {
      if let Some(topic_members) = members.get_mut(&topic) {
        topic_members.remove(&handle);
        if topic_members.is_empty() {
          members.remove(&topic);
        }
      }
    }
  }

  /// How many connections of this node are subscribed to `topic`, those in
  /// `except` left out.
  pub(super) fn topic_size(&self, topic: &str, except: &[u32]) -> u32 {
    let topics = self.topics();
    let Some(members) = topics.members.get(topic) else { return 0 };
    members.keys().filter(|handle| !except.contains(handle)).count() as u32
  }

  /// Queues one message to this node's members of `topic` but those in
  /// `except`, and to those of every other node in a cluster; returns how
  /// many here took it.
  pub(super) fn publish(
    &self,
    topic: &str,
    payload: Payload,
    except: Option<Uint32Array>,
    compress: bool,
  ) -> u32 {
    let message = to_message(payload);
    if let Some(cluster) = &self.cluster {
      cluster.publish(Outgoing { message: &message, compress, topic: Some(topic) });
    }
    let topics = self.topics();
    let Some(members) = topics.members.get(topic) else { return 0 };
    self.send_except(members.iter(), except.as_deref(), message, compress)
  }

  /// Queues another node's publication to this node's members of `topic`.
  pub(super) fn deliver_to_topic(&self, topic: &str, message: Message, compress: bool) {
    let topics = self.topics();
    let Some(members) = topics.members.get(topic) else { return };
    self.send_to_all(members.values(), Prepared::new(message, self.sending(compress)));
  }
}
