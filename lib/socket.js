'use strict';

const { EventEmitter } = require('node:events');

const SendOrder = require('./send-order');
const Stream = require('./stream');
const encode = require('./encode');
const { NativeSocket } = require('./native');
const { readBatch, batchCallback } = require('./batch');
const { checkOptions, invalidOption } = require('./options');
const SOCKET_OPTIONS = require('./socket-options');
const { checkClose } = require('./validation');
const { codedError, reportPeerError, reportUserError } = require('./errors');

// A timer this long never fires; it only holds the event loop open.
const FOREVER = 2 ** 31 - 1;

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

/**
 * A WebSocket client that reconnects by itself and queues messages while
 * offline; a Mytosis connection. In Node the connection, the reconnect
 * loop and the offline queue run in the addon.
 *
 * @extends EventEmitter
 */
class Socket extends EventEmitter {
  static CONNECTING = CONNECTING;
  static OPEN = OPEN;
  static CLOSING = CLOSING;
  static CLOSED = CLOSED;

  #native;
  #options;
  #url;
  #order;
  #readyState;
  #protocol = '';
  #retryCount = 0;
  #closed = false;
  #closeRequest = null;
  #finalCloseEmitted = false;
  #keepAlive = null;
  #unref = false;
  #push = null;

  /**
   * `(message, socket)` for each message received. It never completes.
   *
   * @type {Stream}
   */
  messages = new Stream(
    (push) => {
      this.#push = push;
      this.#native.observe(true);
      return () => {
        this.#push = null;
        this.#native.observe(false);
      };
    },
    { onError: (err) => reportUserError(this, err) }
  );

  /**
   * Create a socket and start connecting (unless `startClosed`).
   *
   * @param {String} url A `ws://` or `wss://` URL
   * @param {Object} [options] The options of the README, with the defaults
   *     of reconnecting-websocket
   */
  constructor(url, options = {}) {
    super();
    this.#url = checkUrl(url);
    this.#options = checkOptions('Socket', options, SOCKET_OPTIONS);
    rejectUnsupported(this.#options);

    /** @type {String} `'mytosis-websocket:'` and the URL. */
    this.id = `mytosis-websocket:${this.#url}`;
    /** @type {String} */
    this.type = 'websocket';

    const opts = this.#options;
    const handlers = {
      message: (handle, data, isBinary) => this.#onMessage(data, isBinary),
      detail: (handle, detail) => this.#onDetail(detail),
      onThrow: (err) => reportUserError(this, err)
    };
    this.#native = new NativeSocket(
      {
        url: this.#url,
        protocols: [opts.protocols ?? []].flat(),
        headers: Object.entries(opts.headers).flat(),
        minReconnectionDelay: opts.minReconnectionDelay,
        maxReconnectionDelay: opts.maxReconnectionDelay,
        reconnectionDelayGrowFactor: opts.reconnectionDelayGrowFactor,
        jitter: opts.jitter,
        connectionTimeout: opts.connectionTimeout,
        maxRetries: opts.maxRetries,
        minUptime: opts.minUptime,
        maxPayload: opts.maxPayload,
        startClosed: opts.startClosed
      },
      batchCallback(this, (socket, records, bytes, details) =>
        readBatch(records, bytes, details, handlers)
      )
    );
    this.#order = new SendOrder((err) =>
      reportUserError(this, codedError(Error, 'ERR_BLOB_READ', 'A Blob could not be read; it was not sent', { cause: err }))
    );

    if (opts.startClosed) {
      this.#readyState = CLOSED;
    } else {
      this.#readyState = CONNECTING;
      this.#holdProcess();
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
    return this.#url;
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
   * Payload bytes queued offline or accepted and not yet handed to the
   * kernel.
   *
   * @type {Number}
   */
  get bufferedAmount() {
    return this.#native.bufferedAmount();
  }

  /**
   * Send a message; while offline it is queued and sent, in order, when a
   * connection opens.
   *
   * @param {*} message The message
   * @return {Boolean} `true` if it was accepted
   * @throws {TypeError} If the message cannot be encoded
   * @throws {Error} `ERR_CLOSED` after `close()`
   */
  send(message) {
    if (this.#closed) {
      throw codedError(
        Error,
        'ERR_CLOSED',
        'The socket was closed; call reconnect() to open it again'
      );
    }
    const payload = encode(message, this.#options.json);
    return this.#order.submit(payload, (ready) => this.#native.send(ready));
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
    this.#order.submit(null, () => this.#native.close(code, reason));
  }

  /**
   * Connect again at once, with a fresh retry count, whatever the state.
   */
  reconnect() {
    this.#closed = false;
    this.#closeRequest = null;
    this.#finalCloseEmitted = false;
    if (this.#readyState === CLOSED) this.#readyState = CONNECTING;
    this.#holdProcess();
    this.#native.reconnect();
  }

  /**
   * Let the process exit even while connected or reconnecting.
   *
   * @return {Socket} this
   */
  unref() {
    this.#unref = true;
    this.#keepAlive?.unref();
    return this;
  }

  /**
   * Undo `unref()`.
   *
   * @return {Socket} this
   */
  ref() {
    this.#unref = false;
    this.#keepAlive?.ref();
    return this;
  }

  #holdProcess() {
    // The timer references the socket, so a live socket is never collected.
    this.#keepAlive ??= setInterval(() => this, FOREVER);
    if (this.#unref) this.#keepAlive.unref();
  }

  #releaseProcess() {
    clearInterval(this.#keepAlive);
    this.#keepAlive = null;
  }

  #onMessage(data, isBinary) {
    let message = data;
    if (!isBinary && this.#options.json) {
      try {
        message = JSON.parse(data);
      } catch {
        const err = codedError(
          Error,
          'ERR_INVALID_JSON',
          'The server sent a text message that is not valid JSON',
          { data, connection: this }
        );
        reportPeerError(this, err, this.#options.debug);
        return;
      }
    }
    if (this.#push !== null) this.#push(message, this);
  }

  #onDetail(detail) {
    if (this.#options.debug) console.error('mytosis-websocket:', this.#url, detail);
    switch (detail.type) {
      case 'Open':
        this.#readyState = this.#closed ? CLOSING : OPEN;
        this.#protocol = detail.protocol;
        this.emit('open');
        break;
      case 'Close': {
        const { code, reason, wasClean } = detail;
        // The addon may have decided to retry before it saw close().
        const willReconnect = detail.willReconnect && !this.#closed;
        this.#readyState = willReconnect ? CONNECTING : CLOSED;
        this.#finalCloseEmitted = !willReconnect;
        this.emit('close', { code, reason, wasClean, willReconnect });
        break;
      }
      case 'Error': {
        const { code, message, status } = detail;
        const props = status === undefined ? { cause: new Error(message) } : { status };
        reportPeerError(this, codedError(Error, code, message, props), this.#options.debug);
        break;
      }
      case 'Reconnecting':
        if (this.#closed) break;
        this.#readyState = CONNECTING;
        this.#retryCount = detail.attempt;
        this.emit('reconnecting', { attempt: detail.attempt, delay: detail.delay });
        break;
      case 'Stopped':
        this.#onStopped(detail.dropped);
        break;
    }
  }

  /**
   * The addon stopped connecting: after `close()`, or after giving up.
   */
  #onStopped(dropped) {
    this.#readyState = CLOSED;
    this.#releaseProcess();
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

/**
 * @param {*} url The URL given to the constructor
 * @return {String} The URL
 * @throws {TypeError} `ERR_INVALID_URL` unless it is a `ws://` or `wss://`
 *     URL
 */
function checkUrl(url) {
  let parsed = null;
  if (typeof url === 'string') {
    try {
      parsed = new URL(url);
    } catch {
      // Reported below.
    }
  }
  if (parsed === null || (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:')) {
    throw codedError(
      TypeError,
      'ERR_INVALID_URL',
      `Expected a ws:// or wss:// URL, received ${typeof url === 'string' ? `'${url}'` : typeof url}`
    );
  }
  return url;
}

/**
 * Options of SPEC section 4 that this build cannot honour yet fail loudly
 * instead of being ignored.
 */
function rejectUnsupported(options) {
  const unsupported = [
    ['WebSocket', options.WebSocket !== undefined],
    ['tls', Object.keys(options.tls).length > 0],
    ['maxEnqueuedMessages', options.maxEnqueuedMessages !== Infinity]
  ];
  for (const [name, given] of unsupported) {
    if (given) throw invalidOption(`The "${name}" option of Socket is not supported yet`);
  }
}

module.exports = Socket;
