'use strict';

const { randomUUID } = require('node:crypto');

const Stream = require('./stream');
const encode = require('./encode');
const parseHeaders = require('./headers');
const { checkClose } = require('./validation');
const { reportUserError } = require('./errors');
const {
  kClosing,
  kComplete,
  kDeliver,
  kEnd,
  kHandle,
  kNativeOwner
} = require('./symbols');

/**
 * One client of a `Server`, as Mytosis sees a connection. Made by the
 * Server when a client has been upgraded; never constructed by users.
 */
class Connection {
  #core;
  #messages = null;
  #push = null;
  #rawHeaders = null;
  #headers = null;
  #ended = false;
  // From the first close frame in either direction.
  #closing = false;

  /**
   * @param {Object} core The Server's core: `{ server, native, outbox,
   *     json, order }`
   * @param {Number} handle The connection's handle in the addon
   * @param {Object} detail The addon's `Open` event
   * @private
   */
  constructor(core, handle, detail) {
    this.#core = core;
    this[kHandle] = handle;
    this[kNativeOwner] = core;

    /** @type {String} A random UUID v4. */
    this.id = randomUUID();
    /** @type {String} */
    this.type = 'websocket';
    /** @type {String} The client's address, as Node would report it. */
    this.remoteAddress = detail.remoteAddress;
    /** @type {Number} */
    this.remotePort = detail.remotePort;
    /** @type {String} The subprotocol chosen in the handshake, or `''`. */
    this.protocol = detail.protocol;
    /** @type {*} What `verifyClient` accepted the client with. */
    this.context = undefined;
    /** @type {(Number|undefined)} Set when the connection has ended. */
    this.closeCode = undefined;
    /** @type {(String|undefined)} Set when the connection has ended. */
    this.closeReason = undefined;
  }

  /**
   * `true` from the first close frame in either direction.
   *
   * @type {Boolean}
   */
  get offline() {
    return this.#ended || this.#closing;
  }

  /**
   * Payload bytes accepted by `send` and not yet handed to the kernel.
   *
   * @type {Number}
   */
  get bufferedAmount() {
    if (this.#ended) return 0;
    this.#core.outbox.flush();
    return this.#core.native.bufferedAmount(this[kHandle]);
  }

  /**
   * The request headers of the upgrade, shaped like Node's
   * `IncomingMessage.headers`. Built on first read.
   *
   * @type {Object}
   */
  get headers() {
    if (this.#headers === null) {
      const raw = this.#rawHeaders ?? this.#core.native.rawHeaders(this[kHandle]);
      this.#headers = parseHeaders(raw ?? '');
      this.#rawHeaders = null;
    }
    return this.#headers;
  }

  /**
   * `(message, connection)` for each message from this client. Completes
   * at the connection's `'remove'`.
   *
   * @type {Stream}
   */
  get messages() {
    if (this.#messages === null) {
      const { native, server } = this.#core;
      this.#messages = new Stream(
        (push) => {
          this.#push = push;
          native.observe(this[kHandle], true);
          return () => {
            this.#push = null;
            native.observe(this[kHandle], false);
          };
        },
        { onError: (err) => reportUserError(server, err) }
      );
      if (this.#ended) this.#messages[kComplete]();
    }
    return this.#messages;
  }

  /**
   * Send a message: binary data as a binary frame, anything else as JSON
   * text (see the README). Never throws for a closed connection.
   *
   * @param {*} message The message
   * @return {Boolean} `true` if it was queued, `false` if the connection is
   *     closing or gone
   * @throws {TypeError} If the message cannot be encoded
   */
  send(message) {
    if (this.offline) return false;
    const { outbox, json, order } = this.#core;
    const payload = encode(message, json);
    return order.submit(payload, (ready) => {
      outbox.push(this[kHandle], ready);
      return true;
    });
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
    this.#closing = true;
    const { native, order, outbox } = this.#core;
    order.submit(null, () => {
      outbox.flush();
      native.closeConnection(this[kHandle], code, reason);
    });
  }

  /**
   * Drop the connection at once, without a closing handshake.
   */
  terminate() {
    if (this.#ended) return;
    this.#closing = true;
    this.#core.outbox.flush();
    this.#core.native.terminate(this[kHandle]);
  }

  /**
   * Push a received message to this connection's `messages`.
   *
   * @param {*} message The decoded message
   * @private
   */
  [kDeliver](message) {
    if (this.#push !== null) this.#push(message, this);
  }

  /**
   * The peer's close frame arrived: no more sends.
   *
   * @private
   */
  [kClosing]() {
    this.#closing = true;
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
      this.closeCode = detail.code;
      this.closeReason = detail.reason;
      if (this.#headers === null) this.#rawHeaders = detail.rawHeaders ?? '';
    }
    if (this.#ended) return;
    this.#ended = true;
    this.#messages?.[kComplete]();
  }
}

module.exports = Connection;
