'use strict';

// `events`: Node's module, or the `events` package where a bundler builds
// the browser client.
const { EventEmitter } = require('events');

const Stream = require('./stream');
const { kMembers, kNativeOwner } = require('./symbols');

// Mytosis's `ConnectionGroup.ensure()` treats only instances of its own class
// as groups, so extend that class whenever the `mytosis` package is there.
const Base = loadBase();
// Mytosis builds its class on eventemitter3: give ours Node's emitter instead.
const foreignEmitter =
  Base !== EventEmitter && !(Base.prototype instanceof EventEmitter);

/**
 * A set of connections (Mytosis's network interface), keyed by their `id`:
 * of two connections that share an id, a group keeps the first one added.
 *
 * It is a Node `EventEmitter` on either base class, emitting `'add'` with the
 * connection and `'remove'` with the connection and, when the remover gives
 * one, details such as `{ code, reason, wasClean }`.
 *
 * The groups `filter()`, `type()` and `union()` return are live: they follow
 * their sources' later adds and removes for as long as the sources exist, so
 * make them once rather than per message.
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
   * Add a connection and emit `'add'`, unless the group already holds a
   * connection with its id.
   *
   * @param {Object} connection The connection, with a string `id`
   * @return {Boolean} `true` if the connection was added
   */
  add(connection) {
    if (typeof connection?.id !== 'string') {
      throw invalidArgType(
        'The "connection" argument must be an object with a string "id"'
      );
    }
    if (this[kMembers].has(connection.id)) return false;

    this[kMembers].set(connection.id, connection);
    this.emit('add', connection);
    return true;
  }

  /**
   * Remove a member and emit `'remove'` with it and `info`.
   *
   * @param {Object} connection The member
   * @param {Object} [info] Passed on to the `'remove'` listeners, e.g.
   *     `{ code, reason, wasClean }`
   * @return {Boolean} `true` if the connection was a member
   */
  remove(connection, info) {
    if (!this.has(connection)) return false;

    this[kMembers].delete(connection.id);
    this.emit('remove', connection, info);
    return true;
  }

  /**
   * Tell whether a connection is a member.
   *
   * @param {Object} connection The connection
   * @return {Boolean} `true` if it is a member
   */
  has(connection) {
    return (
      connection != null && this[kMembers].get(connection.id) === connection
    );
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
   * Make a live group of the members that pass `predicate`, now and later.
   * The predicate runs once per connection, when it joins this group.
   *
   * @param {Function} predicate Called with a connection; truthy to keep it
   * @return {ConnectionGroup} The new group
   */
  filter(predicate) {
    if (typeof predicate !== 'function') {
      throw invalidArgType('The "predicate" argument must be a function');
    }

    const result = new ConnectionGroup();
    mirror(this, result, predicate, () => false);
    return result;
  }

  /**
   * Make a live group of the members of one type.
   *
   * @param {String} name The connection `type`, e.g. `'websocket'`
   * @return {ConnectionGroup} The new group
   */
  type(name) {
    return this.filter((connection) => connection.type === name);
  }

  /**
   * Make a live group of the members of this group and another: a connection
   * leaves it when it is in neither.
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
      throw invalidArgType('The "group" argument must be a ConnectionGroup');
    }

    const result = new ConnectionGroup();
    const keep = () => true;
    mirror(this, result, keep, (connection) => group.has(connection));
    mirror(group, result, keep, (connection) => this.has(connection));
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
   * @return {Number} How many connections the message was queued to
   */
  send(message, options = {}) {
    const { except } = options;
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
      queued += owner.sendTo(connections, payload);
    }
    for (const connection of others) {
      if (connection.send(message) === true) queued++;
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
  const { constructor, ...emitterMethods } = Object.getOwnPropertyDescriptors(
    EventEmitter.prototype
  );
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
 * The publisher of a group's `messages`: subscribes to each member's stream
 * and keeps the subscriptions in step with the group until the cleanup.
 *
 * @param {ConnectionGroup} group The group
 * @param {Function} push The group stream's `push`
 * @return {Function} The cleanup
 * @private
 */
function followMembers(group, push) {
  const subscriptions = new Map();
  const follow = (connection) => {
    // An earlier 'add' listener may have removed it again.
    if (!group.has(connection)) return;

    const forward = (message) => push(message, connection);
    subscriptions.set(connection, connection.messages.forEach(forward));
  };
  const unfollow = (connection) => {
    subscriptions.get(connection)?.dispose();
    subscriptions.delete(connection);
  };

  for (const connection of group) follow(connection);
  group.on('add', follow);
  group.on('remove', unfollow);

  return () => {
    group.removeListener('add', follow);
    group.removeListener('remove', unfollow);
    for (const subscription of subscriptions.values()) subscription.dispose();
  };
}

/**
 * Keep `result` in step with `source`: add what joins `source` and passes
 * `accept`; remove what leaves it unless `heldElsewhere` says to keep it.
 *
 * @param {ConnectionGroup} source The group followed
 * @param {ConnectionGroup} result The derived group
 * @param {Function} accept Whether a connection joins `result`
 * @param {Function} heldElsewhere Whether `result` keeps a connection that
 *     left `source`
 * @private
 */
function mirror(source, result, accept, heldElsewhere) {
  const add = (connection) => {
    // An earlier 'add' listener may have removed it again.
    if (source.has(connection) && accept(connection)) result.add(connection);
  };

  for (const connection of source) add(connection);
  source.on('add', add);
  source.on('remove', (connection, info) => {
    if (!heldElsewhere(connection)) result.remove(connection, info);
  });
}

function invalidArgType(message) {
  const err = new TypeError(message);
  err.code = 'ERR_INVALID_ARG_TYPE';
  return err;
}

module.exports = ConnectionGroup;
