'use strict';

const { HANDLE_SLOT_BITS } = require('./native');
const { kClosing, kHandle } = require('./symbols');

// The low bits of a handle name its slot in the addon, and the slots of
// open connections are numbered densely from 1: JS keeps its objects in an
// array by slot, 8 bytes a connection where a Map took about 50. A slot
// serves another connection only once JS has released its handle (after
// the `Close` or `Abandoned` event).
const SLOT_MASK = 2 ** HANDLE_SLOT_BITS - 1;

/**
 * The JS objects of a Server's connections, by the addon's handle, and the
 * JS half of the lazy-announce rule.
 *
 * A server nobody listens to for 'add' or 'remove' needs no object for a
 * connection until it has something to say: the addon tells JS of a
 * connection (an `Accepted`, and so an 'add') only at its first message that JS
 * observes or its peer's close frame, and lists it when JS iterates. Idle
 * connections then cost JS nothing. From the first 'add' or 'remove'
 * listener on, every connection is told of as it opens (`startAnnouncing`).
 *
 * A connection the addon told of in an `Accepted` event is `meet`-ed, and the Server
 * adds it (an 'add'). One JS meets by asking the addon (iterating, or the
 * first 'add' or 'remove' listener) `join`s the members at once, without an
 * 'add': the caller emits one when it should.
 */
class ServerConnections {
  #native;
  #Connection;
  #members;
  #takeContext;
  #isClosing;
  // By slot; `undefined` where JS holds no connection. Never holey: a slot
  // past the end is reached by pushing (a sparse array would turn into a
  // dictionary).
  #bySlot = [];
  #announcing = false;

  /**
   * @param {Object} parts
   * @param {Object} parts.native The addon's server: `announceOpens()`,
   *     `announceAll()` and `unannouncedCount()`
   * @param {Function} parts.Connection The class of the connections, made
   *     as `new Connection(handle, context)`
   * @param {Map} parts.members The group's members, by id
   * @param {Function} parts.takeContext `(handle)`: what `verifyClient`
   *     accepted the connection with
   * @param {Function} parts.isClosing Whether the Server is closing
   */
  constructor({ native, Connection, members, takeContext, isClosing }) {
    this.#native = native;
    this.#Connection = Connection;
    this.#members = members;
    this.#takeContext = takeContext;
    this.#isClosing = isClosing;
  }

  /** @return {(Connection|undefined)} The connection of `handle`, if met */
  get(handle) {
    const connection = this.#bySlot[handle & SLOT_MASK];
    return connection !== undefined && connection[kHandle] === handle ? connection : undefined;
  }

  /** Whether `connection` is the object of one of these connections. */
  owns(connection) {
    return connection instanceof this.#Connection && this.get(connection[kHandle]) === connection;
  }

  /** Forget the connection of `handle` (it closed or was removed). */
  delete(handle) {
    if (this.get(handle) !== undefined) this.#bySlot[handle & SLOT_MASK] = undefined;
  }

  /** @return {Iterator<Connection>} The connections met and not forgotten */
  *values() {
    for (const connection of this.#bySlot) if (connection !== undefined) yield connection;
  }

  /** @type {Number} Open connections JS has not met yet. */
  get unmetCount() {
    return this.#native.unannouncedCount();
  }

  /**
   * Make the object of a connection JS has just heard of. It is a member
   * once the caller adds it.
   *
   * @param {Number} handle The connection's handle
   * @return {Connection} The connection
   */
  meet(handle) {
    const connection = new this.#Connection(handle, this.#takeContext(handle));
    const slot = handle & SLOT_MASK;
    while (this.#bySlot.length < slot) this.#bySlot.push(undefined);
    this.#bySlot[slot] = connection;
    // It was open when close() was called.
    if (this.#isClosing()) connection[kClosing]();
    return connection;
  }

  /** Meet every open connection JS has not met yet: they join, unannounced. */
  joinAll() {
    for (const handle of this.#native.announceAll()) this.#join(handle);
  }

  /**
   * A listener for `event` is being added: from the first 'add' or 'remove'
   * listener on, the addon tells of every connection as it opens, and those
   * JS has not met yet join now.
   *
   * @param {String} event The event listened to
   * @return {Connection[]} The connections that joined (the caller emits
   *     'add' for them once the listener is in place)
   */
  startAnnouncing(event) {
    if ((event !== 'add' && event !== 'remove') || this.#announcing) return [];
    this.#announcing = true;
    return this.#native.announceOpens().map((handle) => this.#join(handle));
  }

  /**
   * A connection JS has just met outside an `Accepted` event joins without an
   * 'add'.
   *
   * @param {Number} handle The connection's handle
   * @return {Connection} The connection
   */
  #join(handle) {
    const connection = this.meet(handle);
    this.#members.set(connection.id, connection);
    return connection;
  }
}

module.exports = ServerConnections;
