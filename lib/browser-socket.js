'use strict';

const SocketCore = require('./socket-core');
const WebSocketTransport = require('./websocket-transport');
const encode = require('./browser-encode');
const checkUrl = require('./check-url');
const { invalidOption } = require('./options');

const BROWSER = {
  checkUrl,
  encode,
  createTransport(url, options, events) {
    // A browser's WebSocket cannot send headers or take TLS options.
    for (const name of ['headers', 'tls']) {
      if (typeof options[name] === 'function' || Object.keys(options[name]).length > 0) {
        throw invalidOption(`The "${name}" option of Socket is not available in browsers`);
      }
    }
    const WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (typeof WebSocket !== 'function') {
      throw invalidOption('There is no global WebSocket here: pass the "WebSocket" option');
    }
    return new WebSocketTransport(url, options, events, {
      WebSocket,
      binaryType: options.binaryType
    });
  }
};

/**
 * The browser build's Socket: the same API as in Node, over the global
 * `WebSocket` (or the `WebSocket` option). Binary messages arrive as an
 * ArrayBuffer, or a Blob with `binaryType: 'blob'`. `heartbeatInterval`,
 * `maxPayload` and `maxReceiveBuffer` are inert: a browser's WebSocket
 * cannot ping, bound what it receives or stop reading.
 *
 * @extends SocketCore
 */
class Socket extends SocketCore {
  /**
   * Create a socket and start connecting (unless `startClosed`).
   *
   * @param {(String|Function)} url A `ws://` or `wss://` URL, or a function
   *     giving one (or a Promise of one) before every attempt
   * @param {Object} [options] The options of the README
   */
  constructor(url, options = {}) {
    super(url, options, BROWSER);
  }
}

module.exports = Socket;
