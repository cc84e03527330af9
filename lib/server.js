'use strict';

const util = require('node:util');

const ConnectionGroup = require('./connection-group');
const Connection = require('./connection');
const Outbox = require('./outbox');
const SendOrder = require('./send-order');
const Stream = require('./stream');
const encode = require('./encode');
const { NativeServer } = require('./native');
const { readBatch, batchCallback } = require('./batch');
const { invalidOption } = require('./options');
const checkServerOptions = require('./server-options');
const { blobReadError, codedError, reportPeerError, reportUserError } = require('./errors');
const decideUpgrade = require('./verify');
const { decodeMessage, invalidJsonError, INVALID_JSON } = require('./decode');
const parseHeaders = require('./headers');
const { attach, handOver, refuseUpgrade } = require('./attach');
const { checkServerClose } = require('./validation');
const { kClosing, kDeliver, kEnd, kHandle, kMembers } = require('./symbols');


// A timer this long never fires; it only holds the event loop open.
const FOREVER = 2 ** 31 - 1;

// Seconds an upgrade refused past `maxConnections` is told to wait, as the
// addon tells standalone ones.
const RETRY_WHEN_FULL = '5';

/**
 * A WebSocket server whose sockets are served by the addon. It is the
 * Mytosis `ConnectionGroup` of its live connections.
 *
 * @extends ConnectionGroup
 */
class Server extends ConnectionGroup {
  #core;
  // The class of this server's connections (`Connection.forServer`).
  #Connection;
  #options;
  #detach = null;
  #connections = new Map();
  // What verifyClient accepted each upgrade with, until it opens.
  #contexts = new Map();
  // Upgrades of an attached server waiting for their verdict.
  #deciding = 0;
  // The strings of the last connection opened. The next one shares them when
  // they are equal (behind a proxy every address is, and most servers speak
  // one subprotocol) rather than keeping its own copies.
  #lastAddress = '';
  #lastProtocol = '';
  #pushAll = null;
  // Whether the addon tells of every connection as it opens (see
  // `#addListener`).
  #announcing = false;
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
    const options = checkServerOptions(portOrOptions);
    this.#options = options;

    const handlers = {
      message: (handle, data, isBinary) => this.#onMessage(handle, data, isBinary),
      detail: (handle, detail) => this.#onDetail(handle, detail),
      onThrow: (err) => reportUserError(this, err)
    };
    let native;
    try {
      native = new NativeServer(
        {
          path: options.path,
          maxPayload: options.maxPayload,
          handshakeTimeout: Math.min(options.handshakeTimeout, 0xffffffff),
          heartbeatInterval: Math.min(options.heartbeatInterval, 0xffffffff),
          maxBackpressure: options.maxBackpressure,
          maxReceiveBuffer: options.maxReceiveBuffer,
          maxReceiveBufferTotal: options.maxReceiveBufferTotal,
          maxConnections: options.maxConnections,
          verify: options.verifyClient !== undefined || options.handleProtocols !== undefined,
          tlsCert: options.tls && String(options.tls.cert),
          tlsKey: options.tls && String(options.tls.key),
          reusePort: options.reusePort
        },
        batchCallback(this, (server, records, bytes, details) => {
          readBatch(records, bytes, details, handlers);
          // The replies of this batch's handlers cross in one call.
          server.#core.outbox.flush();
        })
      );
    } catch (err) {
      // Only the TLS material can be refused here.
      throw invalidOption(`The "tls" option of Server is not usable: ${err.message}`);
    }
    this.#core = {
      server: this,
      native,
      outbox: new Outbox(native, options.json),
      json: options.json,
      order: new SendOrder((err) => reportUserError(this, blobReadError(err))),
      encode: (message) => encode(message, options.json),
      sendTo: (connections, payload) => this.#sendTo(connections, payload),
      deliverToAll: (message, connection) => this.#pushAll?.(message, connection)
    };
    this.#Connection = Connection.forServer(this.#core);

    this.#ready =
      options.server === undefined ? this.#listen(options) : this.#attach(options.server);
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
   * The number of open connections.
   *
   * @type {Number}
   */
  get size() {
    return super.size + this.#core.native.unannouncedCount();
  }

  /**
   * Iterate over the connections.
   *
   * @return {Iterator<Connection>} The connections
   */
  [Symbol.iterator]() {
    // Connections JS meets by listing them join without an 'add': the
    // lister sees them here.
    for (const found of this.#core.native.announceAll()) this.#join(found);
    return super[Symbol.iterator]();
  }

  addListener(event, listener) {
    return this.#addListener(super.addListener, event, listener);
  }

  on(event, listener) {
    return this.#addListener(super.on, event, listener);
  }

  prependListener(event, listener) {
    return this.#addListener(super.prependListener, event, listener);
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
    const { native, encode, order, outbox } = this.#core;
    const payload = encode(message);
    return order.submit(
      payload,
      (ready) => {
        outbox.flush();
        return native.broadcast(ready, handles);
      },
      this.size - skipped.length
    );
  }

  /**
   * Remove a connection: a connection of this server is closed with 1000,
   * and `'remove'` is emitted at once.
   *
   * @param {Connection} connection The connection
   * @param {Object} [info] For the `'remove'` listeners
   * @return {Object} The connection
   */
  remove(connection, info = { code: 1000, reason: '', wasClean: true }) {
    // Members are keyed by id: what is removed is the member with this id.
    const member = this.id(connection?.id) ?? connection;
    if (this.#owns(member)) {
      this.#connections.delete(member[kHandle]);
      member.close(1000);
      member[kEnd]();
    }
    return super.remove(member, info);
  }

  /**
   * Stop accepting, close every connection (with 1001 unless told
   * otherwise), terminate those still open after the grace period, emit
   * `'remove'` for each and then `'close'`.
   *
   * @param {Object} [options] Options object
   * @param {Number} [options.code=1001] The close code: 1000-1003,
   *     1007-1014 or 3000-4999 (1012 tells clients the service restarts)
   * @param {String} [options.reason=''] At most 123 UTF-8 bytes
   * @param {Number} [options.timeout=5000] Milliseconds clients get to
   *     answer the close frame before they are dropped
   * @return {Promise<void>} Resolves when all is closed; every call returns
   *     the same Promise
   * @throws {RangeError} `ERR_INVALID_ARG_VALUE` for a bad code or reason
   * @throws {TypeError} `ERR_INVALID_ARG_TYPE` for a bad timeout
   */
  close(options = {}) {
    const { code = 1001, reason = '', timeout = 5000 } = options ?? {};
    checkServerClose(code, reason, timeout);
    if (this.#closing === null) {
      this.#closing = new Promise((resolve) => {
        this.#resolveClosing = resolve;
      });
      // Until 'close', even when listening failed: the addon's callback
      // alone does not keep the process running.
      this.#holdProcess();
      this.#detach?.();
      this.#core.outbox.flush();
      // From the call on, every connection is offline.
      for (const connection of this.#connections.values()) connection[kClosing]();
      this.#core.native.close(code, reason, timeout);
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

  /**
   * A server nobody listens to for 'add' or 'remove' needs no object for
   * a connection until it has something to say: the addon tells JS of a
   * connection (an `Open`, and so an 'add') only at its first message that
   * JS observes or its peer's close frame, and lists it when JS iterates.
   * Idle connections then cost JS nothing. From the first 'add' or
   * 'remove' listener on, every connection is told of as it opens; those
   * JS has not met yet join at once, and 'add' is emitted for them on the
   * next tick, once the listener is in place (listeners are not called
   * from within `on()`). `once` and `prependOnceListener` go through `on`
   * and `prependListener`.
   *
   * @param {Function} add The EventEmitter method that adds the listener
   */
  #addListener(add, event, listener) {
    const first = (event === 'add' || event === 'remove') && !this.#announcing;
    if (first) this.#announcing = true;
    const unmet = first ? this.#core.native.announceOpens().map((found) => this.#join(found)) : [];
    add.call(this, event, listener);
    if (unmet.length > 0) {
      process.nextTick(() => {
        // The group's `emit` never throws for an 'add' (it reports what its
        // listeners throw once all have run), so one throwing listener
        // keeps neither the others nor the later connections from hearing.
        for (const connection of unmet) {
          // Unless removed meanwhile (or replaced by one with its id).
          if (this[kMembers].get(connection.id) === connection) this.emit('add', connection);
        }
      });
    }
    return this;
  }

  #holdProcess() {
    // The timer references the server, so a listening server is never
    // collected.
    this.#keepAlive ??= setInterval(() => this, FOREVER);
    if (this.#unref) this.#keepAlive.unref();
  }

  #listen(options) {
    return new Promise((resolve, reject) => {
      try {
        this.#address = this.#core.native.listen(options.host, options.port, options.reusePort);
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
  }

  /**
   * Serve the upgrades of the user's http server for our path. Holds no
   * process handle: the user's server does.
   */
  #attach(httpServer) {
    this.#detach = attach(httpServer, this.#options.path, (req, socket, head) =>
      this.#onUpgrade(req, socket, head)
    );
    return new Promise((resolve) => {
      const listening = () => {
        this.#address = httpServer.address();
        resolve(this.address());
        this.emit('listening');
      };
      if (httpServer.listening) process.nextTick(listening);
      else httpServer.once('listening', listening);
    });
  }

  /**
   * An upgrade routed here by the user's http server: decide it in JS, then
   * hand the socket to the addon.
   */
  async #onUpgrade(req, socket, head) {
    // No byte may be read by Node from now on: they belong to the addon.
    socket.pause();
    // Node's http server no longer listens for the socket's errors: a
    // client that resets it while the upgrade is decided must not crash
    // the process.
    socket.on('error', () => socket.destroy());
    // The open connections (and those being handed over) count in the
    // addon; the upgrades being decided, here.
    if (this.#core.native.admitted() + this.#deciding >= this.#options.maxConnections) {
      return refuseUpgrade(socket, 503, 'Too many connections', ['Retry-After', RETRY_WHEN_FULL]);
    }
    this.#deciding++;
    // As standalone, the upgrade must be decided within handshakeTimeout:
    // past it the socket is destroyed (no 101 is ever written) and the late
    // verdict is dropped. The timer holds no process; the socket does.
    let expired = false;
    const timer = setTimeout(() => {
      expired = true;
      socket.destroy();
    }, Math.min(this.#options.handshakeTimeout, FOREVER));
    timer.unref();
    const headers = req.headers;
    const remote = { address: req.socket.remoteAddress, port: req.socket.remotePort };
    let verdict;
    try {
      verdict = await this.#decide(req.url, headers, remote, req);
    } finally {
      clearTimeout(timer);
      this.#deciding--;
    }
    // Timed out, or the client left: nothing is left to answer, and an
    // accepted verdict must not hand a dead socket to the addon.
    if (expired || socket.destroyed) return;
    if (this.#closing !== null) return refuseUpgrade(socket, 503);
    if (!verdict.accept) {
      return refuseUpgrade(socket, verdict.status, verdict.reason, verdict.headers);
    }
    const request = {
      url: req.url,
      headers: req.rawHeaders,
      protocol: verdict.protocol,
      remoteAddress: remote.address ?? '',
      remotePort: remote.port ?? 0
    };
    let handle;
    try {
      handle = handOver(this.#core.native, socket, head, request);
    } catch (err) {
      return refuseUpgrade(socket, 400, err.message);
    }
    this.#contexts.set(handle, verdict.context);
  }

  /**
   * The addon asks about an upgrade it read itself (standalone server).
   */
  async #onVerify(handle, detail) {
    const headers = parseHeaders(detail.rawHeaders);
    const remote = { address: detail.remoteAddress, port: detail.remotePort };
    // There is no IncomingMessage here; `req` carries what one would.
    const req = {
      method: 'GET',
      url: detail.url,
      headers,
      socket: { remoteAddress: remote.address, remotePort: remote.port }
    };
    const verdict = await this.#decide(detail.url, headers, remote, req);
    // Kept until the connection opens, unless the upgrade stopped waiting.
    const waited = this.#core.native.decide(handle, verdict);
    if (waited && verdict.accept) this.#contexts.set(handle, verdict.context);
  }

  #decide(url, headers, remote, req) {
    const protocols = String(headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((protocol) => protocol.trim())
      .filter(Boolean);
    const info = { origin: headers.origin, headers, remoteAddress: remote.address, url, req };
    return decideUpgrade(this.#options, info, protocols, (err) => reportUserError(this, err));
  }

  #owns(connection) {
    return (
      connection instanceof Connection &&
      this.#connections.get(connection[kHandle]) === connection
    );
  }

  /**
   * For groups: queue one message, encoded by `core.encode`, to several of
   * this server's connections in one call into the addon.
   *
   * @param {Connection[]} connections Members of this server
   * @param {(String|Buffer|Promise<Buffer>)} payload The encoded message
   * @return {Number} How many connections it was queued to
   */
  #sendTo(connections, payload) {
    const { native, order, outbox } = this.#core;
    const handles = Uint32Array.from(connections, (c) => c[kHandle]);
    const deliver = (ready) => {
      outbox.flush();
      return native.sendMany(handles, ready);
    };
    return order.submit(payload, deliver, handles.length);
  }

  #onMessage(handle, data, isBinary) {
    const connection = this.#connections.get(handle);
    if (connection === undefined) return;

    const message = decodeMessage(data, isBinary, this.#core.json);
    if (message === INVALID_JSON) {
      reportPeerError(this, invalidJsonError(data, connection, 'A client'));
      return;
    }
    connection[kDeliver](message);
  }

  /**
   * Make the object of a connection JS has just heard of. It is a member
   * once the caller adds it.
   */
  #meet(handle, detail) {
    const context = this.#contexts.get(handle);
    this.#contexts.delete(handle);
    if (detail.remoteAddress !== this.#lastAddress) this.#lastAddress = detail.remoteAddress;
    if (detail.protocol !== this.#lastProtocol) this.#lastProtocol = detail.protocol;
    const connection = new this.#Connection(
      handle,
      this.#lastAddress,
      detail.remotePort,
      this.#lastProtocol,
      context
    );
    this.#connections.set(handle, connection);
    // It was open when close() was called.
    if (this.#closing !== null) connection[kClosing]();
    return connection;
  }

  /**
   * A connection JS has just met outside an `Open` event joins without an
   * 'add' (the caller emits one when it should).
   *
   * @param {Object} found `{ handle, remoteAddress, remotePort, protocol }`
   * @return {Connection} The connection
   */
  #join(found) {
    const connection = this.#meet(found.handle, found);
    this[kMembers].set(connection.id, connection);
    return connection;
  }

  /**
   * An error the addon reports on its own: accepting failed (out of file
   * descriptors: it tries again, slower while it lasts), or a bug of ours
   * ended a connection (`ERR_INTERNAL`, the connection closes with 1011).
   * Neither is the user's doing nor a reason to stop serving: without an
   * 'error' listener it is printed as a process warning.
   */
  #onError(handle, detail) {
    const err =
      detail.code === 'ERR_ACCEPT'
        ? systemError(detail.errno ?? 0, 'accept', '; accepting again shortly')
        : codedError(Error, detail.code, detail.message, {
            connection: this.#connections.get(handle)
          });
    if (this.listenerCount('error') > 0) reportPeerError(this, err);
    else process.emitWarning(err);
  }

  #onDetail(handle, detail) {
    switch (detail.type) {
      case 'Verify':
        this.#onVerify(handle, detail);
        break;
      case 'Open':
        this.add(this.#meet(handle, detail));
        break;
      case 'Abandoned':
        this.#contexts.delete(handle);
        break;
      case 'Closing':
        this.#connections.get(handle)?.[kClosing]();
        break;
      case 'Drain':
        this.#connections.get(handle)?.emit('drain');
        break;
      case 'Error':
        this.#onError(handle, detail);
        break;
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
        this.#contexts.clear();
        clearInterval(this.#keepAlive);
        this.#address = null;
        this.#resolveClosing();
        this.emit('close');
        break;
    }
  }
}

/**
 * A system error shaped like Node's, from the errno the addon reports:
 * `code` (`EMFILE`...), `errno`, `syscall` and a message that names them.
 */
function systemError(errno, syscall, detail = '') {
  const [code, description] = util.getSystemErrorMap().get(-errno) ?? ['EUNKNOWN', 'unknown error'];
  return codedError(Error, code, `${syscall} ${code}: ${description}${detail}`, {
    errno: -errno,
    syscall
  });
}

/**
 * A listen failure shaped like Node's: `listen EADDRINUSE: address already
 * in use :::8080`, with `code`, `errno`, `syscall`, `address` and `port`.
 * The addon's error message starts with the OS errno.
 */
function listenError(err, options) {
  const errno = Number.parseInt(err.message, 10);
  const address = options.host ?? '::';
  const where = ` ${address}:${options.port}`;
  return Object.assign(systemError(errno, 'listen', where), { address, port: options.port });
}

module.exports = Server;
