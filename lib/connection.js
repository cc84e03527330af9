'use strict';

const EventEmitter = require('node:events');

const connectionId = require('./connection-id');
const Stream = require('./stream');
const parseHeaders = require('./headers');
const { checkClose, checkTopic } = require('./validation');
const { reportUserError } = require('./errors');
const {
  kClosing,
  kComplete,
  kDeliver,
  kDescribe,
  kEnd,
  kHandle,
  kNativeOwner
} = require('./symbols');

// What a connection reports of itself when the addon no longer knows it.
const GONE = Object.freeze({ remoteAddress: '', remotePort: 0, protocol: '' });

// A connection's life: `offline` from CLOSING on.
const OPEN = 0;
// The first close frame went out or came in.
const CLOSING = 1;
// Ended, or removed from its Server.
const ENDED = 2;

/**
 * What few connections use, made on first need so that an idle connection
 * does not carry it: its own `messages`, its parsed headers, where it
 * comes from, its `context`, how it ended, and the emitter of its events.
 *
 * @private
 */
class Extras {
  events = null;
  // What `verifyClient` accepted the connection with.
  context = undefined;
  // `{ remoteAddress, remotePort, protocol }`, from the addon on first read
  // or at the end.
  description = null;
  // While paused: the messages that reached JS after `pause()`, in order.
  held = null;
  messages = null;
  // The `messages` publisher's push while the stream is observed.
  push = null;
  // The raw header block, kept from the end (when the addon drops it) until
  // `headers` is first read.
  rawHeaders = null;
  headers = null;
  closeCode = undefined;
  closeReason = undefined;
}

/**
 * One client of a `Server`, as Mytosis sees a connection. Made by the
 * Server when a client has been upgraded; never constructed by users.
 *
 * A server may hold many thousands of idle connections, so each one keeps
 * only its own fields: its Server's core is on the prototype of that
 * Server's subclass (see `forServer`), and the rest waits in `Extras`.
 */
class Connection {
  #state = OPEN;
  // Made on first need: `this.#extras ??= new Extras()`. (A private method
  // would cost every connection a field for the class's brand.)
  #extras = null;

  /**
   * The class of one Server's connections.
   *
   * @param {Object} core The Server's core: `{ server, native, outbox,
   *     json, order, encode, sendTo, deliverToAll }`
   * @return {Function} A subclass whose prototype holds `core`
   * @private
   */
  static forServer(core) {
    class ServerConnection extends Connection {}
    ServerConnection.prototype[kNativeOwner] = core;
    return ServerConnection;
  }

  /**
   * @param {Number} handle The connection's handle in the addon
   * @param {*} context What `verifyClient` accepted the client with
   * @private
   */
  constructor(handle, context) {
    this[kHandle] = handle;
    /** @type {String} A random UUID v4. */
    this.id = connectionId();
    if (context !== undefined) this.context = context;
  }

  /**
   * The client's address, as Node would report it.
   *
   * @type {String}
   */
  get remoteAddress() {
    return this[kDescribe]().remoteAddress;
  }

  /**
   * @type {Number}
   */
  get remotePort() {
    return this[kDescribe]().remotePort;
  }

  /**
   * The subprotocol chosen in the handshake, or `''`.
   *
   * @type {String}
   */
  get protocol() {
    return this[kDescribe]().protocol;
  }

  /**
   * What `verifyClient` accepted the client with (settable).
   *
   * @type {*}
   */
  get context() {
    return this.#extras?.context;
  }

  set context(value) {
    (this.#extras ??= new Extras()).context = value;
  }

  /**
   * @type {String}
   */
  get type() {
    return 'websocket';
  }

  /**
   * `true` from the first close frame in either direction.
   *
   * @type {Boolean}
   */
  get offline() {
    return this.#state !== OPEN;
  }

  /**
   * The close code, once the connection has ended.
   *
   * @type {(Number|undefined)}
   */
  get closeCode() {
    return this.#extras?.closeCode;
  }

  /**
   * The close reason, once the connection has ended.
   *
   * @type {(String|undefined)}
   */
  get closeReason() {
    return this.#extras?.closeReason;
  }

  /**
   * Payload bytes accepted by `send` and not yet handed to the kernel.
   *
   * @type {Number}
   */
  get bufferedAmount() {
    if (this.#state === ENDED) return 0;
    const { native, outbox } = this[kNativeOwner];
    outbox.flush();
    return native.bufferedAmount(this[kHandle]);
  }

  /**
   * The request headers of the upgrade, shaped like Node's
   * `IncomingMessage.headers`. Built on first read.
   *
   * @type {Object}
   */
  get headers() {
    const extras = (this.#extras ??= new Extras());
    if (extras.headers === null) {
      const raw = extras.rawHeaders ?? this[kNativeOwner].native.rawHeaders(this[kHandle]);
      extras.headers = parseHeaders(raw ?? '');
      extras.rawHeaders = null;
    }
    return extras.headers;
  }

  /**
   * `(message, connection)` for each message from this client. Completes
   * at the connection's `'remove'`.
   *
   * @type {Stream}
   */
  get messages() {
    const extras = (this.#extras ??= new Extras());
    if (extras.messages === null) {
      const { native, server } = this[kNativeOwner];
      extras.messages = new Stream(
        (push) => {
          extras.push = push;
          native.observe(this[kHandle], true);
          return () => {
            extras.push = null;
            native.observe(this[kHandle], false);
          };
        },
        { onError: (err) => reportUserError(server, err) }
      );
      if (this.#state === ENDED) extras.messages[kComplete]();
    }
    return extras.messages;
  }

  /**
   * Send a message: binary data as a binary frame, anything else as JSON
   * text (see the README). Never throws for a closed connection.
   *
   * @param {*} message The message
   * @param {Object} [options]
   * @param {Boolean} [options.compress=true] `false` sends it uncompressed
   *     even when compression was agreed on (an already compressed image)
   * @return {Boolean} `true` if it was queued, `false` if the connection is
   *     closing or gone
   * @throws {TypeError} If the message cannot be encoded
   */
  send(message, options) {
    if (this.offline) return false;
    const { outbox, encode, order, native } = this[kNativeOwner];
    const payload = encode(message);
    if (options?.compress === false) {
      return order.submit(payload, (ready) => {
        outbox.flush();
        return native.sendUncompressed(this[kHandle], ready);
      });
    }
    return order.submit(payload, (ready) => {
      outbox.push(this[kHandle], ready);
      return true;
    });
  }

  /**
   * Join `topic`: `server.publish(topic, ...)` reaches this connection
   * from now on, from this server and, in a cluster, from every other. A
   * connection leaves its topics when it ends.
   *
   * @param {String} topic A non-empty string of at most 1024 UTF-8 bytes
   * @return {Boolean} `true` if it joined, `false` if it was a member
   *     already or is closing or gone
   * @throws {TypeError|RangeError} For a topic that is not such a string
   */
  subscribe(topic) {
    checkTopic(topic);
    if (this.offline) return false;
    return this[kNativeOwner].native.subscribe(this[kHandle], topic);
  }

  /**
   * Leave `topic`.
   *
   * @param {String} topic The topic
   * @return {Boolean} `true` if it left, `false` if it was not a member
   * @throws {TypeError|RangeError} For a topic that is not a valid one
   */
  unsubscribe(topic) {
    checkTopic(topic);
    return this[kNativeOwner].native.unsubscribe(this[kHandle], topic);
  }

  /**
   * Start the closing handshake, after the messages already sent.
   *
   * @param {Number} [code=1000] 1000 or 3000-4999
   * @param {String} [reason=''] At most 123 UTF-8 bytes
   * @throws {RangeError} If the code or reason is out of range
   */
  close(code = 1000, reason = '') {
    checkClose(code, reason);
    if (this.offline) return;
    this.#state = CLOSING;
    const { native, order, outbox } = this[kNativeOwner];
    order.submit(null, () => {
      outbox.flush();
      native.closeConnection(this[kHandle], code, reason);
    });
  }

  /**
   * Stop reading this connection and delivering its messages until
   * `resume()`: for a handler that awaits something before it can take the
   * next message. Messages already received wait in JS (at most about
   * `maxReceiveBuffer` of them: the addon stops reading at once); what the
   * client sends meanwhile waits in the kernel, whose full buffers slow the
   * client down. Nothing is dropped, and the heartbeat does not count the
   * pause as silence.
   *
   * @return {Connection} this
   */
  pause() {
    if (this.#state === ENDED) return this;
    const extras = (this.#extras ??= new Extras());
    if (extras.held === null) {
      extras.held = [];
      this[kNativeOwner].native.pause(this[kHandle], true);
    }
    return this;
  }

  /**
   * Deliver the messages that waited, then read this connection again. A
   * callback that pauses again stops the delivery there.
   *
   * @return {Connection} this
   */
  resume() {
    const extras = this.#extras;
    const held = extras?.held;
    if (held == null) return this;
    extras.held = null;
    const { deliverToAll } = this[kNativeOwner];
    for (let i = 0; i < held.length; i++) {
      extras.push?.(held[i], this);
      deliverToAll(held[i], this);
      if (extras.held !== null) {
        // Paused again: the rest wait for the next resume().
        extras.held = held.slice(i + 1);
        return this;
      }
    }
    if (this.#state !== ENDED) this[kNativeOwner].native.pause(this[kHandle], false);
    return this;
  }

  /**
   * Listen for `'drain'`: emitted when `bufferedAmount` falls under half of
   * the Server's `maxBackpressure` after rising past it.
   *
   * @param {String} event The event name
   * @param {Function} listener The listener
   * @return {Connection} this
   */
  on(event, listener) {
    const extras = (this.#extras ??= new Extras());
    (extras.events ??= new EventEmitter()).on(event, listener);
    return this;
  }

  addListener(event, listener) {
    return this.on(event, listener);
  }

  once(event, listener) {
    const extras = (this.#extras ??= new Extras());
    (extras.events ??= new EventEmitter()).once(event, listener);
    return this;
  }

  off(event, listener) {
    this.#extras?.events?.off(event, listener);
    return this;
  }

  removeListener(event, listener) {
    return this.off(event, listener);
  }

  listenerCount(event) {
    return this.#extras?.events?.listenerCount(event) ?? 0;
  }

  /**
   * @param {String} event The event name
   * @param {...*} args Its arguments
   * @return {Boolean} Whether it had listeners
   */
  emit(event, ...args) {
    return this.#extras?.events?.emit(event, ...args) ?? false;
  }

  /**
   * Drop the connection at once, without a closing handshake.
   */
  terminate() {
    if (this.#state === ENDED) return;
    this.#state = CLOSING;
    const { native, outbox } = this[kNativeOwner];
    outbox.flush();
    native.terminate(this[kHandle]);
  }

  /**
   * Deliver a received message to this connection's `messages` and its
   * Server's, or keep it while paused.
   *
   * @param {*} message The decoded message
   * @private
   */
  [kDeliver](message) {
    const extras = this.#extras;
    if (extras?.held != null) {
      extras.held.push(message);
      return;
    }
    extras?.push?.(message, this);
    this[kNativeOwner].deliverToAll(message, this);
  }

  /**
   * Where the connection comes from and the subprotocol it speaks, asked of
   * the addon on first need and kept.
   *
   * @return {Object} `{ remoteAddress, remotePort, protocol }` (empty once
   *     the connection is gone without the addon having told them)
   * @private
   */
  [kDescribe]() {
    const extras = (this.#extras ??= new Extras());
    extras.description ??= this[kNativeOwner].native.describe(this[kHandle]);
    return extras.description ?? GONE;
  }

  /**
   * The peer's close frame arrived: no more sends.
   *
   * @private
   */
  [kClosing]() {
    if (this.#state === OPEN) this.#state = CLOSING;
  }

  /**
   * The connection has ended (or left its Server): keep what can still be
   * read and complete `messages`.
   *
   * @param {Object} [detail] The addon's `Close` event, when it ended
   * @private
   */
  [kEnd](detail) {
    if (detail !== undefined) {
      const extras = (this.#extras ??= new Extras());
      extras.closeCode = detail.code;
      extras.closeReason = detail.reason;
      if (extras.headers === null) extras.rawHeaders = detail.rawHeaders ?? '';
      extras.description ??= detail.description ?? null;
    } else if (this.#state !== ENDED) {
      // Removed while open: keep what the addon drops once it has closed.
      this[kDescribe]();
      const extras = this.#extras;
      if (extras.headers === null) {
        extras.rawHeaders ??= this[kNativeOwner].native.rawHeaders(this[kHandle]);
      }
    }
    if (this.#state === ENDED) return;
    this.#state = ENDED;
    // The addon may give the handle to another connection once the Server
    // has released it: from now on this object's calls reach nothing.
    this[kHandle] = 0;
    // Its last messages are delivered before it ends, paused or not.
    const extras = this.#extras;
    const held = extras?.held ?? [];
    if (extras !== null) extras.held = null;
    for (const message of held) {
      extras.push?.(message, this);
      this[kNativeOwner].deliverToAll(message, this);
    }
    this.#extras?.messages?.[kComplete]();
  }
}

module.exports = Connection;
