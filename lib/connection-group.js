'use strict';

// `events`: Node's module, or the `events` package where a bundler builds
// the browser client.
const { EventEmitter } = require('events');

const Stream = require('./stream');
const { codedError, reportUserError } = require('./errors');
const { kMembers, kNativeOwner } = require('./symbols');

// Mytosis's `ConnectionGroup.ensure()` treats only instances of its own class
// as groups, so extend that class whenever the `mytosis` package is there.
const Base = loadBase();
// Mytosis builds its class on eventemitter3: give ours Node's emitter instead.
const foreignEmitter =
  Base !== EventEmitter && !(Base.prototype instanceof EventEmitter);
// Node's own `emit`, for what ours hands back to it: an 'error' nobody
// listens to. (The `events` package of browser bundles has no errorMonitor.)
const nodeEmit = EventEmitter.prototype.emit;
const { errorMonitor } = EventEmitter;

/**
 * A set of connections (Mytosis's network interface), keyed by their `id`:
 * of two connections that share an id, a group keeps the first one added,
 * and `has`, `remove` and `id` look connections up by id.
 *
 * It is a Node `EventEmitter` on either base class, emitting `'add'` with the
 * connection and `'remove'` with the connection and, when the remover gives
 * them, details such as `{ code, reason, wasClean }` (a Server always does).
 * Unlike Node's, its `emit` calls every listener even when one throws, then
 * reports each throw: to the `'error'` listeners when there are some, else
 * rethrown asynchronously (an `'uncaughtException'` in Node). A throwing
 * `'error'` listener is rethrown asynchronously.
 *
 * `filter()` and `type()` return snapshots: new groups of the members that
 * match at the call, which do not follow their source afterwards and hold
 * nothing of it, so they can be made per operation. `union()` returns a live
 * group, which follows both sources' later adds and removes for as long as
 * the sources exist: make it once, not per operation.
 */
class ConnectionGroup extends Base {
  /**
   * The members, for subclasses: a Map from connection id to connection.
   *
   * @type {Map<string, Object>}
   */
  [kMembers] = new Map();

  /**
   * `(message, connection)` from every member, members added later included.
   * It follows a member's own `messages` only while it is observed itself. A
   * subscriber's throw goes to `'error'`, or without a listener is rethrown
   * asynchronously.
   *
   * @type {Stream}
   */
  messages = new Stream((push) => followMembers(this, push), {
    // With no 'error' listener, emit throws, and the Stream rethrows that
    // asynchronously.
    onError: (err) => this.emit('error', err)
  });

  /**
   * Return `network` when it is a group (one of ours, or of the base class
   * Mytosis's), else a new group holding it, as Mytosis's own `ensure` does.
   *
   * @param {(ConnectionGroup|Object)} network A group, or one connection
   * @return {ConnectionGroup} The group
   */
  static ensure(network) {
    if (isGroup(network)) return network;

    const group = new ConnectionGroup();
    group.add(network);
    return group;
  }

  /**
   * Create a new, empty `ConnectionGroup`.
   */
  constructor() {
    super();
    if (foreignEmitter) {
      // Drop the base's emitter state, which Node's methods cannot read.
      this._events = undefined;
      EventEmitter.call(this);
    }
  }

  /**
   * The number of members.
   *
   * @type {Number}
   */
  get size() {
    return this[kMembers].size;
  }

  /**
   * Call every listener of `event` with `args`, in order, as Node's `emit`
   * does, but without stopping at one that throws: each throw is reported
   * once all have run, to the `'error'` listeners when there are some, else
   * rethrown asynchronously. So a throwing listener never keeps the others
   * (those of the groups made from this one included) from hearing of a
   * member. A throwing `'error'` listener is rethrown asynchronously; an
   * `'error'` nobody listens to is thrown, as Node does.
   *
   * @param {(String|Symbol)} event The event name
   * @param {...*} args The listeners' arguments
   * @return {Boolean} `true` if the event had listeners
   */
  emit(event, ...args) {
    const reporting = event === 'error' || event === errorMonitor;
    if (event === 'error' && this.listenerCount('error') === 0) {
      return nodeEmit.call(this, event, ...args);
    }
    if (
      event === 'error' &&
      errorMonitor !== undefined &&
      this.listenerCount(errorMonitor) > 0
    ) {
      this.emit(errorMonitor, ...args);
    }

    // A copy: listeners added or removed meanwhile change the next emit only.
    const listeners = this.rawListeners(event);
    let thrown = null;
    for (const listener of listeners) {
      try {
        Reflect.apply(listener, this, args);
      } catch (err) {
        (thrown ??= []).push(err);
      }
    }
    if (thrown !== null) {
      for (const err of thrown) {
        if (reporting) rethrowLater(err);
        else reportUserError(this, err);
      }
    }
    return listeners.length > 0;
  }

  /**
   * Add a connection and emit `'add'`, unless the group already holds a
   * connection with its id.
   *
   * @param {Object} connection The connection, with a string `id`
   * @return {Object} `connection`, added or not
   */
  add(connection) {
    if (typeof connection?.id !== 'string') {
      throw codedError(
        TypeError,
        'ERR_INVALID_ARG_TYPE',
        'The "connection" argument must be an object with a string "id"'
      );
    }
    if (this[kMembers].has(connection.id)) return connection;

    this[kMembers].set(connection.id, connection);
    this.emit('add', connection);
    return connection;
  }

  /**
   * Remove the member with the connection's id and emit `'remove'` with that
   * member, and with `info` when it is given. Nothing happens when no member
   * has the id.
   *
   * @param {Object} connection The connection
   * @param {Object} [info] Passed on to the `'remove'` listeners, e.g.
   *     `{ code, reason, wasClean }`
   * @return {Object} `connection`, removed or not
   */
  remove(connection, info) {
    const member = connection == null ? undefined : this[kMembers].get(connection.id);
    if (member === undefined) return connection;

    this[kMembers].delete(member.id);
    if (info === undefined) this.emit('remove', member);
    else this.emit('remove', member, info);
    return connection;
  }

  /**
   * Tell whether the group holds a connection with this connection's id.
   *
   * @param {Object} connection The connection
   * @return {Boolean} `true` if it is a member
   */
  has(connection) {
    return connection != null && this[kMembers].has(connection.id);
  }

  /**
   * Find a member by id.
   *
   * @param {String} key The connection id
   * @return {Object|null} The member, or `null`
   */
  id(key) {
    return this[kMembers].get(key) ?? null;
  }

  /**
   * Make a new group of the members that pass `predicate` now: a snapshot,
   * which neither follows this group's later adds and removes nor keeps
   * anything of it alive. On a Server it holds the connections JS had not
   * met yet too.
   *
   * @param {Function} predicate Called with each member; truthy to keep it
   * @return {ConnectionGroup} The new group
   */
  filter(predicate) {
    if (typeof predicate !== 'function') {
      throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE', 'The "predicate" argument must be a function');
    }

    const result = new ConnectionGroup();
    const members = result[kMembers];
    // Through the iterator, which a Server overrides to list every
    // connection.
    for (const connection of this) {
      if (!members.has(connection.id) && predicate(connection)) {
        members.set(connection.id, connection);
      }
    }
    return result;
  }

  /**
   * Make a new group of the members of one type now: a snapshot, as
   * `filter()` makes.
   *
   * @param {String} name The connection `type`, e.g. `'websocket'`
   * @return {ConnectionGroup} The new group
   */
  type(name) {
    return this.filter((connection) => connection.type === name);
  }

  /**
   * Make a live group of the members of this group and another: it follows
   * both groups' later adds and removes (a connection leaves it when it is
   * in neither) for as long as they exist, listening to both. Make it once,
   * not per operation.
   *
   * @param {ConnectionGroup} group The other group
   * @return {ConnectionGroup} The new group
   */
  union(group) {
    if (
      typeof group?.has !== 'function' ||
      typeof group.on !== 'function' ||
      typeof group[Symbol.iterator] !== 'function'
    ) {
      throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE', 'The "group" argument must be a ConnectionGroup');
    }

    const result = new ConnectionGroup();
    mirror(this, result, group);
    mirror(group, result, this);
    return result;
  }

  /**
   * Send a message to every member but those in `options.except`.
   *
   * Members of a native Server are handed to it in one call per Server, which
   * encodes the message once. They come first: an encoding error (a
   * `TypeError`) is thrown before anything is sent.
   *
   * @param {*} message The message
   * @param {Object} [options] Options object
   * @param {(Object|Object[])} [options.except] A connection or an array of
   *     connections not to send to
   * @param {Boolean} [options.compress=true] `false` sends it uncompressed
   *     to members that agreed on compression
   * @return {Number} How many connections the message was queued to
   */
  send(message, options = {}) {
    const { except } = options;
    const compress = options.compress !== false;
    const excluded = new Set(Array.isArray(except) ? except : [except]);
    const byOwner = new Map();
    const others = [];

    for (const connection of this) {
      if (excluded.has(connection)) continue;

      const owner = connection[kNativeOwner];
      if (owner === undefined) others.push(connection);
      else if (byOwner.has(owner)) byOwner.get(owner).push(connection);
      else byOwner.set(owner, [connection]);
    }

    // Every Server encodes before any sends: with several Servers of
    // different `json`, one may refuse what another accepts.
    const encoded = Array.from(byOwner, ([owner, connections]) => [
      owner,
      connections,
      owner.encode(message)
    ]);
    let queued = 0;
    for (const [owner, connections, payload] of encoded) {
      queued += owner.sendTo(connections, payload, compress);
    }
    for (const connection of others) {
      if (connection.send(message, compress ? undefined : { compress }) === true) queued++;
    }
    return queued;
  }

  /**
   * Iterate over the members, in the order they were added.
   *
   * @return {Iterator<Object>} The members
   */
  [Symbol.iterator]() {
    return this[kMembers].values();
  }
}

if (foreignEmitter) {
  // Node's emitter methods, but for those the class defines itself (`emit`).
  const { constructor, ...emitterMethods } = Object.getOwnPropertyDescriptors(
    EventEmitter.prototype
  );
  for (const name of Reflect.ownKeys(emitterMethods)) {
    if (Object.hasOwn(ConnectionGroup.prototype, name)) delete emitterMethods[name];
  }
  Object.defineProperties(ConnectionGroup.prototype, emitterMethods);
}

function loadBase() {
  try {
    return require('mytosis').ConnectionGroup;
  } catch (err) {
    // A bundle without `mytosis` fails this require at run time with its own
    // error (esbuild: 'Dynamic require ... is not supported'), never Node's
    // code: outside Node any failure means the package is not there.
    if (err.code !== 'MODULE_NOT_FOUND' && inNode()) throw err;
    return EventEmitter;
  }
}

function inNode() {
  return typeof process !== 'undefined' && typeof process.versions?.node === 'string';
}

/**
 * Whether `ensure` keeps `network` as it is: one of our groups, or of the
 * base class when it is Mytosis's.
 *
 * @private
 */
function isGroup(network) {
  return (
    network instanceof ConnectionGroup ||
    (Base !== EventEmitter && network instanceof Base)
  );
}

function rethrowLater(err) {
  queueMicrotask(() => {
    throw err;
  });
}

/**
 * The publisher of a group's `messages`: subscribes to each member's stream
 * and keeps the subscriptions in step with the group until the cleanup.
 *
 * @param {ConnectionGroup} group The group
 * @param {Function} push The group stream's `push`
 * @return {Function} The cleanup
 * @private
 */
function followMembers(group, push) {
  // By connection id, as the members are.
  const subscriptions = new Map();
  const follow = (connection) => {
    // An earlier 'add' listener may have removed it again.
    if (group[kMembers].get(connection.id) !== connection) return;
    if (subscriptions.has(connection.id)) return;

    const forward = (message) => push(message, connection);
    subscriptions.set(connection.id, connection.messages.forEach(forward));
  };
  const unfollow = (connection) => {
    subscriptions.get(connection.id)?.dispose();
    subscriptions.delete(connection.id);
  };

  for (const connection of group) follow(connection);
  group.on('add', follow);
  group.on('remove', unfollow);

  return () => {
    group.removeListener('add', follow);
    group.removeListener('remove', unfollow);
    for (const subscription of subscriptions.values()) subscription.dispose();
    subscriptions.clear();
  };
}

/**
 * Keep the union `result` in step with one of its sources: add what joins
 * `source`; remove what leaves it unless `other`, the other source, holds
 * it. `source` may be a group of Mytosis's own, whose `'remove'` listeners
 * get no details.
 *
 * @param {ConnectionGroup} source The group followed
 * @param {ConnectionGroup} result The union
 * @param {ConnectionGroup} other The union's other source
 * @private
 */
function mirror(source, result, other) {
  for (const connection of source) result.add(connection);
  source.on('add', (connection) => {
    // An earlier 'add' listener may have removed it again.
    if (source.has(connection)) result.add(connection);
  });
  source.on('remove', (connection, info) => {
    if (!other.has(connection)) result.remove(connection, info);
  });
}

module.exports = ConnectionGroup;
