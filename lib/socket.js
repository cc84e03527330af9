'use strict';

const SocketCore = require('./socket-core');
const NativeTransport = require('./native-transport');
const WebSocketTransport = require('./websocket-transport');
const encode = require('./encode');
const checkUrl = require('./check-url');
const headersProblem = require('./socket-headers');
const { invalidOption } = require('./options');
const addon = require('./native');

const NODE = {
  checkUrl,
  encode,
  createTransport(url, options, events) {
    const { headers } = options;
    const hasHeaders = typeof headers === 'function' || Object.keys(headers).length > 0;
    const hasTls = Object.keys(options.tls).length > 0;
    let { WebSocket } = options;
    if (WebSocket === undefined && addon.loadError !== null) {
      // Without the addon, the global WebSocket (Node 22) carries the
      // Socket, unless it needs what only the addon can do (lib/native.js).
      if (hasHeaders || hasTls) throw addon.missingAddonError();
      WebSocket = addon.fallbackWebSocket();
    }
    if (WebSocket === undefined) {
      const problem = typeof headers === 'function' ? null : headersProblem(headers);
      if (problem !== null) {
        throw invalidOption(`The "headers" option of Socket cannot be sent: ${problem}`);
      }
      return new NativeTransport(url, options, events);
    }
    // A custom WebSocket cannot send headers or take TLS options.
    if (hasHeaders) {
      throw invalidOption('The "headers" option of Socket cannot be used with a custom WebSocket');
    }
    if (hasTls) {
      throw invalidOption('The "tls" option of Socket cannot be used with a custom WebSocket');
    }
    // Once per process, when the addon is missing.
    addon.warnFallback();
    return new WebSocketTransport(url, options, events, { WebSocket });
  }
};

/**
 * A WebSocket client that reconnects by itself and queues messages while
 * offline; a Mytosis connection. In Node the connection loop runs in the
 * addon, unless a `WebSocket` constructor is given.
 *
 * @extends SocketCore
 */
class Socket extends SocketCore {
  /**
   * Create a socket and start connecting (unless `startClosed`).
   *
   * @param {(String|Function)} url A `ws://` or `wss://` URL, or a function
   *     giving one (or a Promise of one) before every attempt
   * @param {Object} [options] The options of the README, with the defaults
   *     of reconnecting-websocket
   */
  constructor(url, options = {}) {
    super(url, options, NODE);
  }
}

module.exports = Socket;
