'use strict';

// Symbols the package's modules share with each other. They are not part of
// the public API, so they never collide with a user's or a base class's keys.
module.exports = {
  // On a connection owned by a native Server (on its class's prototype):
  // that Server's core. Groups use its `encode(message)`, which throws a
  // TypeError when the message cannot be encoded, and its
  // `sendTo(connections, payload)`, which queues the encoded message to all
  // of them in one Rust call and returns how many it queued to.
  kNativeOwner: Symbol('kNativeOwner'),
  // A ConnectionGroup's members: a Map from connection id to connection.
  kMembers: Symbol('kMembers'),
  // `stream[kComplete]()` lets an owner complete a Stream whether or not it
  // is open (a closed stream has no publisher `complete` to call).
  kComplete: Symbol('kComplete'),
  // A server-side connection's numeric handle in the addon.
  kHandle: Symbol('kHandle'),
  // `connection[kDeliver](message)`: push a message to its `messages`.
  kDeliver: Symbol('kDeliver'),
  // `connection[kDescribe]()`: a server-side connection's remote address
  // and port and subprotocol, asked of the addon on first need.
  kDescribe: Symbol('kDescribe'),
  // `connection[kClosing]()`: the peer's close frame arrived.
  kClosing: Symbol('kClosing'),
  // `connection[kEnd](detail)`: the connection has ended; complete it.
  kEnd: Symbol('kEnd')
};
