'use strict';

// `events` is Node's own module in Node and the `events` package (the same
// API) where a bundler builds the browser client.
const { EventEmitter } = require('events');

const SendOrder = require('./send-order');
const Stream = require('./stream');
const { checkOptions } = require('./options');
const SOCKET_OPTIONS = require('./socket-options');
const { nativeDeflate } = require('./deflate-options');
const { checkClose } = require('./validation');
const { blobReadError, codedError, reportPeerError, reportUserError } = require('./errors');
const randomUUID = require('./random-uuid');
const { decodeMessage, invalidJsonError, INVALID_JSON } = require('./decode');
const { KeepAlive } = require('./keep-alive');

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

/**
 * The client's API, events, encoding and liveness, the same in every build.
 * The connection loop (attempts, retries, the offline queue) belongs to a
 * transport the platform provides: the addon in Node, a loop over a
 * WHATWG `WebSocket` in browsers or when the `WebSocket` option is given.
 *
 * A transport is made as `platform.createTransport(url, options, events)`
 * and offers `send(payload)` (false when its queue is full),
 * `close(code, reason)`, `reconnect()`, `observe(on)`, `bufferedAmount` and
 * `url`. It reports through `events`: `open(protocol)`,
 * `message(data, isBinary)` (data a string for text), `close(info)`,
 * `error(code, message, props, byUser)` (`byUser` when the user's url or
 * headers function threw), `reconnecting(attempt, delay)`,
 * `connecting(url)` and `stopped(dropped)`; a throw from user code in one
 * of them goes to `thrown(err)`.
 *
 * @extends EventEmitter
 */
class SocketCore extends EventEmitter {
  static CONNECTING = CONNECTING;
  static OPEN = OPEN;
  static CLOSING = CLOSING;
  static CLOSED = CLOSED;

  #transport;
  #platform;
  #options;
  #order;
  #readyState;
  #protocol = '';
  #retryCount = 0;
  #closed = false;
  #closeRequest = null;
  #finalCloseEmitted = false;
  #keepAlive = new KeepAlive(this);
  #push = null;

  /**
   * `(message, socket)` for each message received. It never completes.
   *
   * @type {Stream}
   */
  messages = new Stream(
    (push) => {
      this.#push = push;
      this.#transport.observe(true);
      return () => {
        this.#push = null;
        this.#transport.observe(false);
      };
    },
    { onError: (err) => reportUserError(this, err) }
  );

  /**
   * @param {(String|Function)} url A `ws://` or `wss://` URL, or a function
   *     returning one (or a Promise of one), called before every attempt
   * @param {Object} options The user's options
   * @param {Object} platform `{ createTransport, encode, checkUrl }`
   */
  constructor(url, options, platform) {
    super();
    if (typeof url !== 'function') platform.checkUrl(url);
    this.#options = checkOptions('Socket', options ?? {}, SOCKET_OPTIONS);
    // Checked here so that a bad value throws at construction.
    nativeDeflate('Socket', this.#options.perMessageDeflate);
    this.#platform = platform;

    /** @type {String} `'mytosis-websocket:'` and the URL (or a UUID). */
    this.id = `mytosis-websocket:${typeof url === 'function' ? randomUUID() : url}`;
    /** @type {String} */
    this.type = 'websocket';

    this.#transport = platform.createTransport(url, this.#options, this.#transportEvents());
    this.#order = new SendOrder((err) => reportUserError(this, blobReadError(err)));
    // The native transport takes messages from the start, so that a
    // subscription made in this turn misses none that arrive before it
    // (they reach JS in a later turn); without one by then, it stops.
    queueMicrotask(() => {
      if (this.#push === null) this.#transport.observe(false);
    });

    if (this.#options.startClosed) {
      this.#readyState = CLOSED;
    } else {
      this.#readyState = CONNECTING;
      this.#keepAlive.hold();
    }
  }

  /**
   * 0 connecting or waiting to retry, 1 open, 2 closing, 3 stopped.
   *
   * @type {Number}
   */
  get readyState() {
    return this.#readyState;
  }

  /**
   * `true` unless a connection is open.
   *
   * @type {Boolean}
   */
  get offline() {
    return this.#readyState !== OPEN;
  }

  /** @type {String} The URL of the current or last attempt. */
  get url() {
    return this.#transport.url;
  }

  /** @type {String} The subprotocol the server chose, or `''`. */
  get protocol() {
    return this.#protocol;
  }

  /** @type {Number} Failed attempts since the last stable connection. */
  get retryCount() {
    return this.#retryCount;
  }

  /**
   * Bytes queued offline plus bytes accepted and not yet handed to the
   * kernel.
   *
   * @type {Number}
   */
  get bufferedAmount() {
    return this.#transport.bufferedAmount;
  }

  /**
   * Send a message; while offline it is queued and sent, in order, when a
   * connection opens.
   *
   * @param {*} message The message
   * @param {Object} [options]
   * @param {Boolean} [options.compress=true] `false` sends it uncompressed
   *     even when compression was agreed on (an already compressed image)
   * @return {Boolean} `true` if it was accepted; `false` if the offline
   *     queue is full (`'error'` `ERR_QUEUE_FULL` is emitted then)
   * @throws {TypeError} If the message cannot be encoded
   * @throws {Error} `ERR_CLOSED` after `close()`
   */
  send(message, options) {
    if (this.#closed) {
      throw codedError(
        Error,
        'ERR_CLOSED',
        'The socket was closed; call reconnect() to open it again'
      );
    }
    const payload = this.#platform.encode(message, this.#options.json);
    const compress = options?.compress !== false;
    return this.#order.submit(payload, (ready) => this.#enqueue(ready, compress));
  }

  /**
   * Close for good (until `reconnect()`): messages already sent go out
   * before the close frame when a connection is open; messages still queued
   * offline are dropped and reported by one `'error'` `ERR_CLOSED`.
   *
   * @param {Number} [code=1000] 1000 or 3000-4999
   * @param {String} [reason=''] At most 123 UTF-8 bytes
   * @throws {RangeError} If the code or reason is out of range
   */
  close(code = 1000, reason = '') {
    checkClose(code, reason);
    if (this.#closed) return;
    this.#closed = true;
    this.#closeRequest = { code, reason };
    if (this.#readyState === OPEN) this.#readyState = CLOSING;
    this.#order.submit(null, () => this.#transport.close(code, reason));
  }

  /**
   * End the current connection or attempt, reset the retry count and
   * connect at once, whatever the state (after `close()` included).
   *
   * @param {Number} [code=1000] For the connection being ended
   * @param {String} [reason='']
   * @throws {RangeError} If the code or reason is out of range
   */
  reconnect(code = 1000, reason = '') {
    checkClose(code, reason);
    this.#closed = false;
    this.#closeRequest = null;
    this.#finalCloseEmitted = false;
    this.#retryCount = 0;
    if (this.#readyState !== OPEN) this.#readyState = CONNECTING;
    this.#keepAlive.hold();
    this.#order.submit(null, () => this.#transport.reconnect(code, reason));
  }

  /**
   * Let the process exit even while connected or reconnecting.
   *
   * @return {SocketCore} this
   */
  unref() {
    this.#keepAlive.unref();
    return this;
  }

  /**
   * Undo `unref()`.
   *
   * @return {SocketCore} this
   */
  ref() {
    this.#keepAlive.ref();
    return this;
  }

  #enqueue(payload, compress) {
    if (this.#transport.send(payload, compress)) return true;
    const err = codedError(
      Error,
      'ERR_QUEUE_FULL',
      `The offline queue holds maxEnqueuedMessages (${this.#options.maxEnqueuedMessages}); the message was not sent`
    );
    reportPeerError(this, err, this.#options.debug);
    return false;
  }

  #log(...args) {
    if (this.#options.debug) console.error('mytosis-websocket:', ...args);
  }

  /**
   * The handlers the transport reports to. A closed socket never announces
   * a retry: the transport may have decided one before it saw `close()`.
   */
  #transportEvents() {
    return {
      open: (protocol) => {
        this.#log(`open ${this.url}`);
        this.#readyState = this.#closed ? CLOSING : OPEN;
        this.#protocol = protocol;
        this.emit('open');
      },
      message: (data, isBinary) => this.#onMessage(data, isBinary),
      close: ({ code, reason, wasClean, willReconnect }) => {
        willReconnect = willReconnect && !this.#closed;
        this.#log(`close ${code} '${reason}' wasClean=${wasClean} willReconnect=${willReconnect}`);
        this.#readyState = willReconnect ? CONNECTING : CLOSED;
        this.#finalCloseEmitted = !willReconnect;
        this.emit('close', { code, reason, wasClean, willReconnect });
      },
      error: (code, message, props, byUser = false) => {
        this.#log(`${code}: ${message}`);
        // ERR_INVALID_URL and ERR_INVALID_OPTION are TypeErrors, wherever
        // they arise.
        const Type = code === 'ERR_INVALID_URL' || code === 'ERR_INVALID_OPTION' ? TypeError : Error;
        const err = codedError(Type, code, message, props);
        // A throw of the user's own function must not pass unnoticed: with
        // no 'error' listener it is thrown, as a listener's would be.
        if (byUser) reportUserError(this, err);
        else reportPeerError(this, err);
      },
      reconnecting: (attempt, delay) => {
        if (this.#closed) return;
        this.#log(`retry ${attempt} in ${Math.round(delay)} ms`);
        this.#readyState = CONNECTING;
        this.#retryCount = attempt;
        this.emit('reconnecting', { attempt, delay });
      },
      connecting: (url) => this.#log(`connecting to ${url}`),
      thrown: (err) => reportUserError(this, err),
      stopped: (dropped) => this.#onStopped(dropped)
    };
  }

  #onMessage(data, isBinary) {
    const message = decodeMessage(data, isBinary, this.#options.json);
    if (message === INVALID_JSON) {
      const err = invalidJsonError(data, this, 'The server');
      reportPeerError(this, err, this.#options.debug);
      return;
    }
    if (this.#push !== null) this.#push(message, this);
  }

  /**
   * The transport stopped connecting: after `close()`, or after giving up.
   */
  #onStopped(dropped) {
    this.#log(this.#closed ? 'closed' : 'giving up');
    this.#readyState = CLOSED;
    this.#keepAlive.release();
    if (dropped > 0) {
      const err = codedError(
        Error,
        'ERR_CLOSED',
        `close() discarded ${dropped} queued message(s)`,
        { dropped }
      );
      reportPeerError(this, err, this.#options.debug);
    }
    if (!this.#finalCloseEmitted) {
      this.#finalCloseEmitted = true;
      const { code, reason } = this.#closeRequest ?? { code: 1006, reason: '' };
      this.emit('close', { code, reason, wasClean: false, willReconnect: false });
    }
  }
}

module.exports = SocketCore;
