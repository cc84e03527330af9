'use strict';

const decideUpgrade = require('./verify');
const parseHeaders = require('./headers');
const { handOver, refuseUpgrade } = require('./attach');
const { MAX_TIMER } = require('./keep-alive');

// Seconds an upgrade refused past `maxConnections` is told to wait, as the
// addon tells standalone ones.
const RETRY_WHEN_FULL = '5';

/**
 * A Server's upgrades until they open: the decision of `verifyClient` and
 * `handleProtocols` (lib/verify.js), taken in JS for both kinds of server,
 * and what `verifyClient` accepted each upgrade with (its `context`), kept
 * until the connection's object is made.
 *
 * A standalone server's addon reads the upgrade itself and asks (`verify`).
 * An attached server's upgrades come from the user's http server (`upgrade`):
 * they are decided here, then the socket is handed to the addon.
 */
class ServerUpgrades {
  #options;
  #native;
  #onUserError;
  #isClosing;
  // What verifyClient accepted each upgrade with, by handle, until it opens.
  #contexts = new Map();
  // Upgrades of an attached server waiting for their verdict.
  #deciding = 0;

  /**
   * @param {Object} options The Server's checked options
   * @param {NativeServer} native The addon's server
   * @param {Object} hooks
   * @param {Function} hooks.onUserError Reports what a user's function threw
   * @param {Function} hooks.isClosing Whether the Server is closing
   */
  constructor(options, native, { onUserError, isClosing }) {
    this.#options = options;
    this.#native = native;
    this.#onUserError = onUserError;
    this.#isClosing = isClosing;
  }

  /** The context of the upgrade `handle`, forgotten from now on. */
  takeContext(handle) {
    const context = this.#contexts.get(handle);
    this.#contexts.delete(handle);
    return context;
  }

  /** The upgrade `handle` will never open. */
  forget(handle) {
    this.#contexts.delete(handle);
  }

  /** The server stopped: no upgrade will open. */
  forgetAll() {
    this.#contexts.clear();
  }

  /**
   * The addon asks about an upgrade it read itself (standalone server).
   *
   * @param {Number} handle The upgrade's handle
   * @param {Object} detail `{ url, rawHeaders, remoteAddress, remotePort }`
   */
  async verify(handle, detail) {
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
    const waited = this.#native.decide(handle, verdict);
    if (waited && verdict.accept) this.#contexts.set(handle, verdict.context);
  }

  /**
   * An upgrade routed here by the user's http server (attached server):
   * decide it in JS, then hand the socket to the addon.
   *
   * @param {http.IncomingMessage} req The upgrade request
   * @param {net.Socket} socket Its socket
   * @param {Buffer} head What the http server read past the request
   */
  async upgrade(req, socket, head) {
    // No byte may be read by Node from now on: they belong to the addon.
    socket.pause();
    // Node's http server no longer listens for the socket's errors: a
    // client that resets it while the upgrade is decided must not crash
    // the process.
    socket.on('error', () => socket.destroy());
    // The open connections (and those being handed over) count in the
    // addon; the upgrades being decided, here.
    if (this.#native.admitted() + this.#deciding >= this.#options.maxConnections) {
      return refuseUpgrade(socket, 503, 'Too many connections', ['Retry-After', RETRY_WHEN_FULL]);
    }
    const remote = { address: req.socket.remoteAddress, port: req.socket.remotePort };
    const verdict = await this.#decideInTime(req, socket, remote);
    // Timed out, or the client left: nothing is left to answer, and an
    // accepted verdict must not hand a dead socket to the addon.
    if (verdict === null || socket.destroyed) return;
    if (this.#isClosing()) return refuseUpgrade(socket, 503);
    if (!verdict.accept) {
      return refuseUpgrade(socket, verdict.status, verdict.reason, verdict.headers);
    }
    const request = {
      method: req.method,
      httpVersionMinor: req.httpVersionMinor,
      url: req.url,
      headers: req.rawHeaders,
      protocol: verdict.protocol,
      remoteAddress: remote.address ?? '',
      remotePort: remote.port ?? 0
    };
    let handle;
    try {
      handle = handOver(this.#native, socket, head, request);
    } catch (err) {
      return refuseUpgrade(socket, 400, err.message);
    }
    this.#contexts.set(handle, verdict.context);
  }

  /**
   * Decide an attached server's upgrade. As standalone, it must be decided
   * within handshakeTimeout: past it the socket is destroyed (no 101 is ever
   * written) and the late verdict is dropped (resolves with `null`). The
   * timer holds no process; the socket does.
   */
  async #decideInTime(req, socket, remote) {
    this.#deciding++;
    let expired = false;
    const timer = setTimeout(() => {
      expired = true;
      socket.destroy();
    }, Math.min(this.#options.handshakeTimeout, MAX_TIMER));
    timer.unref();
    let verdict;
    try {
      verdict = await this.#decide(req.url, req.headers, remote, req);
    } finally {
      clearTimeout(timer);
      this.#deciding--;
    }
    return expired ? null : verdict;
  }

  #decide(url, headers, remote, req) {
    const protocols = String(headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((protocol) => protocol.trim())
      .filter(Boolean);
    const info = { origin: headers.origin, headers, remoteAddress: remote.address, url, req };
    return decideUpgrade(this.#options, info, protocols, this.#onUserError);
  }
}

module.exports = ServerUpgrades;
