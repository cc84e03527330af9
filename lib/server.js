'use strict';

const util = require('node:util');

const ConnectionGroup = require('./connection-group');
const Connection = require('./connection');
const Outbox = require('./outbox');
const SendOrder = require('./send-order');
const Stream = require('./stream');
const encode = require('./encode');
const { NativeServer } = require('./native');
const { batchCallback } = require('./batch');
const { invalidOption } = require('./options');
const { nativeDeflate } = require('./deflate-options');
const checkServerOptions = require('./server-options');
const { blobReadError, codedError, reportPeerError, reportUserError } = require('./errors');
const { decodeMessage, invalidJsonError, INVALID_JSON } = require('./decode');
const { attach } = require('./attach');
const ServerConnections = require('./server-connections');
const ServerUpgrades = require('./server-upgrade');
const { checkServerClose, checkTopic } = require('./validation');
const { kClosing, kDeliver, kEnd, kHandle, kMembers } = require('./symbols');
const { KeepAlive } = require('./keep-alive');

/**
 * A WebSocket server whose sockets are served by the addon. It is the
 * Mytosis `ConnectionGroup` of its live connections.
 *
 * This file is the public API, the dispatch of the addon's events
 * (`#onDetail`, `#onMessage`) and the sends. The rest has a module each:
 * lib/server-connections.js (the connections' objects, made only when
 * needed), lib/server-upgrade.js (verifyClient and handleProtocols, and an
 * attached server's upgrades), lib/attach.js (the user's http server),
 * lib/keep-alive.js (holding the process), lib/outbox.js and
 * lib/send-order.js (the sends' way to the addon), lib/batch.js (the
 * events' way back).
 *
 * @extends ConnectionGroup
 */
class Server extends ConnectionGroup {
  #core;
  #options;
  #detach = null;
  // The connections' objects, made as lib/server-connections.js says.
  #connections;
  // Upgrades until they open (lib/server-upgrade.js).
  #upgrades;
  #pushAll = null;
  #address = null;
  #ready;
  #readyRead = false;
  #keepAlive = new KeepAlive(this);
  #closing = null;
  #resolveClosing;
  // Texts that were not JSON; the addon counts the rest of `stats().invalid`.
  #invalidJson = 0;

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
   * @param {Object} [portOrOptions.cluster] `{ redis, channel }`: join the
   *     Redis pub/sub channel (default `'mytosis-websocket'`) at the
   *     `redis://` or `rediss://` URL, so that `send` reaches the clients of
   *     every Server on it
   */
  constructor(portOrOptions) {
    super();
    const options = checkServerOptions(portOrOptions);
    this.#options = options;

    const handlers = {
      message: (handle, data, isBinary) => this.#onMessage(handle, data, isBinary),
      detail: (handle, detail) => this.#onDetail(handle, detail),
      onThrow: (err) => reportUserError(this, err),
      flush: () => this.#core.outbox.flush()
    };
    let native;
    try {
      native = new NativeServer(nativeOptions(options), batchCallback(handlers));
    } catch (err) {
      // Without the addon, the explanation of lib/native.js; otherwise only
      // the TLS material, or a Redis URL the addon cannot use, is refused
      // here.
      if (err.code === 'ERR_ADDON_MISSING') throw err;
      const names =
        options.cluster === undefined ? ['"tls"'] : [options.tls && '"tls"', '"cluster"'].filter(Boolean);
      throw invalidOption(`The ${names.join(' or ')} option of Server is not usable: ${err.message}`);
    }
    this.#core = {
      server: this,
      native,
      // The addon's callback holds them weakly (lib/batch.js).
      handlers,
      outbox: new Outbox(native, options.json),
      json: options.json,
      order: new SendOrder((err) => reportUserError(this, blobReadError(err))),
      encode: (message) => encode(message, options.json),
      sendTo: (connections, payload, compress) => this.#sendTo(connections, payload, compress),
      deliverToAll: (message, connection) => this.#pushAll?.(message, connection)
    };
    const isClosing = () => this.#closing !== null;
    this.#upgrades = new ServerUpgrades(options, native, {
      onUserError: (err) => reportUserError(this, err),
      isClosing
    });
    this.#connections = new ServerConnections({
      native,
      Connection: Connection.forServer(this.#core),
      members: this[kMembers],
      takeContext: (handle) => this.#upgrades.takeContext(handle),
      isClosing
    });

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
    return super.size + this.#connections.unmetCount;
  }

  /**
   * What the server has done since it started and holds now, counted in
   * the addon and cheap enough to poll every second (README, "Server
   * statistics").
   *
   * @return {Object} `{ connections, accepted, messagesIn, messagesOut,
   *     bytesIn, bytesOut, closes, invalid, paused, deflateCalls,
   *     clusterPublished, clusterReceived, clusterLost, clusterMissed }`
   */
  stats() {
    const stats = this.#core.native.stats();
    stats.invalid += this.#invalidJson;
    return stats;
  }

  /**
   * Iterate over the connections.
   *
   * @return {Iterator<Connection>} The connections
   */
  [Symbol.iterator]() {
    // Connections JS meets by listing them join without an 'add': the
    // lister sees them here.
    this.#connections.joinAll();
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
   * With the `cluster` option the addon also publishes those bytes once to
   * Redis, and every other node of the channel delivers them to all its
   * connections (`except` is local: it never leaves this node).
   *
   * @param {*} message The message
   * @param {Object} [options] Options object
   * @param {(Connection|Connection[])} [options.except] Connections to skip
   * @param {Boolean} [options.compress=true] `false` sends it uncompressed
   *     to connections that agreed on compression
   * @return {Number} How many connections of this server it was queued to
   * @throws {TypeError} If the message cannot be encoded
   */
  send(message, options = {}) {
    const compress = options.compress !== false;
    const { skipped, handles } = this.#skipping(options.except);
    const payload = this.#core.encode(message);
    return this.#submit(payload, this.size - skipped, (native, ready) =>
      native.broadcast(ready, handles, compress)
    );
  }

  /**
   * Send a message to the connections subscribed to `topic`
   * (`connection.subscribe(topic)`) but those in `options.except`: encoded
   * once, fanned out in Rust, and in a cluster published once to Redis for
   * the members on every other node.
   *
   * @param {String} topic A non-empty string of at most 1024 UTF-8 bytes
   * @param {*} message The message
   * @param {Object} [options] Options object
   * @param {(Connection|Connection[])} [options.except] Connections to skip
   * @param {Boolean} [options.compress=true] `false` sends it uncompressed
   * @return {Number} How many connections of this server it was queued to
   * @throws {TypeError} If the topic is not a string or the message cannot
   *     be encoded
   * @throws {RangeError} If the topic is empty or too long
   */
  publish(topic, message, options = {}) {
    checkTopic(topic);
    const compress = options.compress !== false;
    const { handles } = this.#skipping(options.except);
    const payload = this.#core.encode(message);
    return this.#submit(payload, this.#core.native.topicSize(topic, handles), (native, ready) =>
      native.publish(topic, ready, handles, compress)
    );
  }

  /**
   * The connections of this server in an `except` option (one or an
   * array): how many, and their handles (`null` for none).
   */
  #skipping(except) {
    const skipped = (Array.isArray(except) ? except : [except]).filter((c) => this.#connections.owns(c));
    const handles = skipped.length > 0 ? Uint32Array.from(skipped, (c) => c[kHandle]) : null;
    return { skipped: skipped.length, handles };
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
    if (this.#connections.owns(member)) {
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
      this.#keepAlive.hold();
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
    this.#keepAlive.unref();
    return this;
  }

  /**
   * Undo `unref()`.
   *
   * @return {Server} this
   */
  ref() {
    this.#keepAlive.ref();
    return this;
  }

  /**
   * From the first 'add' or 'remove' listener on, every connection is told
   * of as it opens (see lib/server-connections.js); those JS has not met
   * yet join at once, and 'add' is emitted for them on the next tick, once
   * the listener is in place (listeners are not called from within
   * `on()`). `once` and `prependOnceListener` go through `on` and
   * `prependListener`.
   *
   * @param {Function} add The EventEmitter method that adds the listener
   */
  #addListener(add, event, listener) {
    const unmet = this.#connections.startAnnouncing(event);
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
      this.#keepAlive.hold();
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
      this.#upgrades.upgrade(req, socket, head)
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
   * For groups: queue one message, encoded by `core.encode`, to several of
   * this server's connections in one call into the addon.
   *
   * @param {Connection[]} connections Members of this server
   * @param {(String|Buffer|Promise<Buffer>)} payload The encoded message
   * @param {Boolean} compress `false` sends it uncompressed
   * @return {Number} How many connections it was queued to
   */
  #sendTo(connections, payload, compress) {
    const handles = Uint32Array.from(connections, (c) => c[kHandle]);
    return this.#submit(payload, handles.length, (native, ready) =>
      native.sendMany(handles, ready, compress)
    );
  }

  /**
   * Send `payload` to `count` connections once the sends before it are
   * (lib/send-order.js: a Blob is read first): `deliver(native, ready)`
   * hands it to the addon, after the replies the outbox still holds.
   */
  #submit(payload, count, deliver) {
    const { native, order, outbox } = this.#core;
    return order.submit(
      payload,
      (ready) => {
        outbox.flush();
        return deliver(native, ready);
      },
      count
    );
  }

  #onMessage(handle, data, isBinary) {
    const connection = this.#connections.get(handle);
    if (connection === undefined) return;

    const message = decodeMessage(data, isBinary, this.#core.json);
    if (message === INVALID_JSON) {
      this.#invalidJson++;
      reportPeerError(this, invalidJsonError(data, connection, 'A client'));
      return;
    }
    connection[kDeliver](message);
  }

  /**
   * An error the addon reports on its own: accepting failed (out of file
   * descriptors: it tries again, slower while it lasts), the cluster's
   * Redis became unreachable (`ERR_CLUSTER`, once per outage: the server
   * serves its own clients and joins again), or a bug of ours ended a
   * connection (`ERR_INTERNAL`, the connection closes with 1011). None is
   * the user's doing nor a reason to stop serving: without an 'error'
   * listener it is printed as a process warning.
   */
  #onError(handle, detail) {
    let err;
    if (detail.code === 'ERR_ACCEPT') {
      err = systemError(detail.errno ?? 0, 'accept', '; accepting again shortly');
    } else if (detail.code === 'ERR_CLUSTER') {
      err = codedError(Error, 'ERR_CLUSTER', detail.message);
    } else {
      err = codedError(Error, detail.code, detail.message, {
        connection: this.#connections.get(handle)
      });
    }
    if (this.listenerCount('error') > 0) reportPeerError(this, err);
    else process.emitWarning(err);
  }

  /**
   * A connection ended: unless `remove()` took it out already, it leaves
   * the members with its close code. Either way, JS lets go of its handle.
   */
  #onClose(handle, detail) {
    const connection = this.#connections.get(handle);
    if (connection !== undefined) {
      this.#connections.delete(handle);
      connection[kEnd](detail);
      const { code, reason, wasClean } = detail;
      super.remove(connection, { code, reason, wasClean });
    }
    this.#core.native.release(handle);
  }

  #onDetail(handle, detail) {
    switch (detail.type) {
      case 'Verify':
        this.#upgrades.verify(handle, detail);
        break;
      case 'Accepted':
        this.add(this.#connections.meet(handle));
        break;
      case 'Abandoned':
        this.#upgrades.forget(handle);
        this.#core.native.release(handle);
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
      case 'Cluster':
        // The Redis backplane joined ('up') or was lost ('down'); `lost`:
        // this node's broadcasts that reached no other node meanwhile.
        this.emit('cluster', { state: detail.state, lost: detail.lost });
        break;
      case 'Close':
        this.#onClose(handle, detail);
        break;
      case 'Stopped':
        this.#upgrades.forgetAll();
        this.#keepAlive.release();
        this.#address = null;
        this.#resolveClosing();
        this.emit('close');
        break;
    }
  }
}

/** What the addon's server takes of the Server's checked options. */
function nativeOptions(options) {
  return {
    path: options.path,
    maxPayload: options.maxPayload,
    handshakeTimeout: Math.min(options.handshakeTimeout, 0xffffffff),
    heartbeatInterval: Math.min(options.heartbeatInterval, 0xffffffff),
    maxBackpressure: options.maxBackpressure,
    maxReceiveBuffer: options.maxReceiveBuffer,
    maxReceiveBufferTotal: options.maxReceiveBufferTotal,
    maxConnections: options.maxConnections,
    verify: options.verifyClient !== undefined || options.handleProtocols !== undefined,
    json: options.json,
    tlsCert: options.tls && String(options.tls.cert),
    tlsKey: options.tls && String(options.tls.key),
    reusePort: options.reusePort,
    perMessageDeflate: nativeDeflate('Server', options.perMessageDeflate),
    // Only when set (its default channel filled in).
    cluster: options.cluster && { redis: options.cluster.redis, channel: options.cluster.channel }
  };
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
 * The addon throws a system failure with `code: 'Os'` and the OS errno
 * (positive) as `errno`; anything else (`code: 'InvalidArg'`, a port out
 * of range) has no errno and comes out as `EUNKNOWN`.
 */
function listenError(err, options) {
  const errno = err.code === 'Os' ? err.errno : Number.NaN;
  const address = options.host ?? '::';
  const where = ` ${address}:${options.port}`;
  return Object.assign(systemError(errno, 'listen', where), { address, port: options.port });
}

module.exports = Server;
