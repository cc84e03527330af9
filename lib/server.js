'use strict';

const util = require('node:util');

const ConnectionGroup = require('./connection-group');
const Connection = require('./connection');
const SendOrder = require('./send-order');
const Stream = require('./stream');
const encode = require('./encode');
const { NativeServer } = require('./native');
const { readBatch, batchCallback } = require('./batch');
const { checkOptions, invalidOption } = require('./options');
const { codedError, reportPeerError, reportUserError } = require('./errors');
const { kDeliver, kEnd, kHandle } = require('./symbols');

// Option name to [type, default]; see lib/options.js and SPEC section 5.
const SERVER_OPTIONS = {
  port: ['port', undefined],
  host: ['string', undefined],
  path: ['string', undefined],
  json: ['boolean', true],
  maxPayload: ['bytes', 16 * 1024 * 1024],
  handshakeTimeout: ['milliseconds', 10000],
  heartbeatInterval: ['milliseconds', 30000],
  perMessageDeflate: ['false', false]
};

// A timer this long never fires; it only holds the event loop open.
const FOREVER = 2 ** 31 - 1;

/**
 * A WebSocket server whose sockets are served by the addon. It is the
 * Mytosis `ConnectionGroup` of its live connections.
 *
 * @extends ConnectionGroup
 */
class Server extends ConnectionGroup {
  #core;
  #connections = new Map();
  #pushAll = null;
  #address = null;
  #ready;
  #readyRead = false;
  #keepAlive = null;
  #unref = false;
  #closing = null;
  #resolveClosing;

  /**
   * `(message, connection)` for every message from every client.
   *
   * @type {Stream}
   */
  messages = new Stream(
    (push) => {
      this.#pushAll = push;
      this.#core.native.observeAll(true);
      return () => {
        this.#pushAll = null;
        this.#core.native.observeAll(false);
      };
    },
    { onError: (err) => reportUserError(this, err) }
  );

  /**
   * Create a server and start listening.
   *
   * @param {(Number|Object)} portOrOptions A port, or the options
   * @param {Number} [portOrOptions.port] The port; `0` picks a free one
   * @param {String} [portOrOptions.host] The address to bind; by default
   *     `::` (dual-stack) where IPv6 exists, else `0.0.0.0`
   * @param {String} [portOrOptions.path] Only upgrade requests for this path
   *     (the query is ignored); others are answered 400
   * @param {Boolean} [portOrOptions.json=true] Encode and decode JSON; with
   *     `false` text frames are plain strings
   * @param {Number} [portOrOptions.maxPayload=16777216] Larger messages
   *     close the connection with 1009
   * @param {Number} [portOrOptions.handshakeTimeout=10000] Milliseconds a
   *     client may take to upgrade
   */
  constructor(portOrOptions) {
    super();
    const options = checkOptions(
      'Server',
      typeof portOrOptions === 'number' ? { port: portOrOptions } : portOrOptions,
      SERVER_OPTIONS
    );
    if (options.port === undefined) {
      throw invalidOption('The "port" option of Server is required');
    }

    const handlers = {
      message: (handle, data, isBinary) => this.#onMessage(handle, data, isBinary),
      detail: (handle, detail) => this.#onDetail(handle, detail),
      onThrow: (err) => reportUserError(this, err)
    };
    const native = new NativeServer(
      {
        path: options.path,
        maxPayload: options.maxPayload,
        handshakeTimeout: Math.min(options.handshakeTimeout, 0xffffffff),
        heartbeatInterval: Math.min(options.heartbeatInterval, 0xffffffff)
      },
      batchCallback(this, (server, records, bytes, details) =>
        readBatch(records, bytes, details, handlers)
      )
    );
    this.#core = {
      server: this,
      native,
      json: options.json,
      order: new SendOrder((err) => reportUserError(this, blobReadError(err))),
      sendTo: (connections, message) => this.#sendTo(connections, message)
    };

    this.#ready = new Promise((resolve, reject) => {
      try {
        this.#address = native.listen(options.host, options.port);
      } catch (err) {
        const error = listenError(err, options);
        reject(error);
        process.nextTick(() => {
          // As net.Server: unhandled, a listen error is thrown, unless the
          // user reads `ready`, which then carries it.
          if (this.listenerCount('error') > 0 || !this.#readyRead) {
            this.emit('error', error);
          }
        });
        return;
      }
      this.#holdProcess();
      resolve(this.#address);
      process.nextTick(() => this.emit('listening'));
    });
    // `ready` alone never causes an unhandled rejection.
    this.#ready.catch(() => {});
  }

  /**
   * Resolves with `address()` once listening; rejects with the listen error.
   *
   * @type {Promise<Object>}
   */
  get ready() {
    this.#readyRead = true;
    return this.#ready;
  }

  /**
   * The bound address as `net.Server#address()` gives it, or `null` before
   * listening and after `close()`.
   *
   * @return {(Object|null)} `{ address, family, port }`
   */
  address() {
    return this.#address === null ? null : { ...this.#address };
  }

  /**
   * Send a message to every connection but those in `options.except`. It is
   * encoded once and the same bytes are queued to every connection in Rust.
   *
   * @param {*} message The message
   * @param {Object} [options] Options object
   * @param {(Connection|Connection[])} [options.except] Connections to skip
   * @return {Number} How many connections it was queued to
   * @throws {TypeError} If the message cannot be encoded
   */
  send(message, options = {}) {
    const { except } = options;
    const skipped = (Array.isArray(except) ? except : [except]).filter((c) =>
      this.#owns(c)
    );
    const handles = skipped.length > 0 ? Uint32Array.from(skipped, (c) => c[kHandle]) : null;
    const { native, json, order } = this.#core;
    const payload = encode(message, json);
    return order.submit(
      payload,
      (ready) => native.broadcast(ready, handles),
      this.size - skipped.length
    );
  }

  /**
   * Remove a connection: a connection of this server is closed with 1000,
   * and `'remove'` is emitted at once.
   *
   * @param {Connection} connection The connection
   * @param {Object} [info] For the `'remove'` listeners
   * @return {Boolean} `true` if it was a member
   */
  remove(connection, info = { code: 1000, reason: '', wasClean: true }) {
    if (this.#owns(connection)) {
      this.#connections.delete(connection[kHandle]);
      connection.close(1000);
      connection[kEnd]();
    }
    return super.remove(connection, info);
  }

  /**
   * Stop accepting, close every connection with 1001, terminate those still
   * open after 5 s, emit `'remove'` for each and then `'close'`.
   *
   * @return {Promise<void>} Resolves when all is closed; every call returns
   *     the same Promise
   */
  close() {
    if (this.#closing === null) {
      this.#closing = new Promise((resolve) => {
        this.#resolveClosing = resolve;
      });
      // Until 'close', even when listening failed: the addon's callback
      // alone does not keep the process running.
      this.#holdProcess();
      this.#core.native.close();
    }
    return this.#closing;
  }

  /**
   * Let the process exit even while listening.
   *
   * @return {Server} this
   */
  unref() {
    this.#unref = true;
    this.#keepAlive?.unref();
    return this;
  }

  /**
   * Undo `unref()`.
   *
   * @return {Server} this
   */
  ref() {
    this.#unref = false;
    this.#keepAlive?.ref();
    return this;
  }

  #holdProcess() {
    // The timer references the server, so a listening server is never
    // collected.
    this.#keepAlive ??= setInterval(() => this, FOREVER);
    if (this.#unref) this.#keepAlive.unref();
  }

  #owns(connection) {
    return (
      connection instanceof Connection &&
      this.#connections.get(connection[kHandle]) === connection
    );
  }

  /**
   * For groups: queue one message to several of this server's connections
   * in one call into the addon.
   *
   * @param {Connection[]} connections Members of this server
   * @param {*} message The message
   * @return {Number} How many connections it was queued to
   */
  #sendTo(connections, message) {
    const { native, json, order } = this.#core;
    const payload = encode(message, json);
    const handles = Uint32Array.from(connections, (c) => c[kHandle]);
    return order.submit(payload, (ready) => native.sendMany(handles, ready), handles.length);
  }

  #onMessage(handle, data, isBinary) {
    const connection = this.#connections.get(handle);
    if (connection === undefined) return;

    let message = data;
    if (!isBinary && this.#core.json) {
      try {
        message = JSON.parse(data);
      } catch {
        const err = codedError(
          Error,
          'ERR_INVALID_JSON',
          'A client sent a text message that is not valid JSON',
          { data, connection }
        );
        reportPeerError(this, err);
        return;
      }
    }
    connection[kDeliver](message);
    if (this.#pushAll !== null) this.#pushAll(message, connection);
  }

  #onDetail(handle, detail) {
    switch (detail.type) {
      case 'Open': {
        const connection = new Connection(this.#core, handle, detail);
        this.#connections.set(handle, connection);
        this.add(connection);
        break;
      }
      case 'Close': {
        const connection = this.#connections.get(handle);
        if (connection === undefined) break;
        this.#connections.delete(handle);
        connection[kEnd](detail);
        const { code, reason, wasClean } = detail;
        super.remove(connection, { code, reason, wasClean });
        break;
      }
      case 'Stopped':
        clearInterval(this.#keepAlive);
        this.#address = null;
        this.#resolveClosing();
        this.emit('close');
        break;
    }
  }
}

/**
 * A listen failure shaped like Node's: `listen EADDRINUSE: address already
 * in use :::8080`, with `code`, `errno`, `syscall`, `address` and `port`.
 * The addon's error message starts with the OS errno.
 */
function listenError(err, options) {
  const errno = Number.parseInt(err.message, 10);
  const [code, description] = util.getSystemErrorMap().get(-errno) ?? ['EUNKNOWN', err.message];
  const address = options.host ?? '::';
  return codedError(
    Error,
    code,
    `listen ${code}: ${description} ${address}:${options.port}`,
    { errno: -errno, syscall: 'listen', address, port: options.port }
  );
}

function blobReadError(cause) {
  return codedError(Error, 'ERR_BLOB_READ', 'A Blob could not be read; it was not sent', {
    cause
  });
}

module.exports = Server;
