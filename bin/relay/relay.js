'use strict';

const http = require('node:http');
const net = require('node:net');

const { Server } = require('../..');
const Metrics = require('./metrics');
const createRoutes = require('./routes');
const demoFiles = require('./demo-files');

// Clients get this long to answer the close frame on shutdown; with the
// rest of the shutdown it stays well within the 6 s the relay promises.
const CLOSE_TIMEOUT = 4000;

/**
 * Start the relay: one http server on `port` that serves the demo page and
 * the operators' routes, with the WebSocket Server attached to it. Every
 * message is sent on to every other client as it came: `json: false`
 * keeps text as text, byte for byte. With `cluster` (--redis), the relays
 * on that Redis channel form one room: each message also reaches the
 * clients of the others.
 *
 * @param {Object} options `{ port, host, path, maxPayload, cluster }` (options.js),
 *     and `onError(err)` for what fails while serving http: an answer, or
 *     accepting a connection
 * @return {Promise<Object>} `{ server, url, close }` once listening; `close()`
 *     closes every client with 1001, then the http server
 */
async function startRelay({ port, host, path, maxPayload, cluster, onError }) {
  // First: a demo page never bundled stops the relay before it opens anything.
  const files = demoFiles({ path, maxPayload });
  const httpServer = http.createServer();
  // Compressed for clients that offer it (browsers do): each relayed
  // message is deflated once for all its receivers.
  const server = new Server({ server: httpServer, path, maxPayload, json: false, perMessageDeflate: true, cluster });
  // With `cluster`, send also publishes the message to the other relays,
  // which pass it to all their clients (`except` is this relay's).
  server.messages.forEach((message, sender) => server.send(message, { except: sender }));

  const metrics = new Metrics({ cluster: cluster !== undefined });
  if (cluster !== undefined) server.on('cluster', ({ state }) => metrics.setClusterState(state));
  httpServer.on('request', createRoutes({ server, metrics, files, onError }));
  await new Promise((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(port, host, () => {
      httpServer.off('error', reject);
      resolve();
    });
  });
  // Once listening, an error of the http server (accepting failed) is
  // told and the relay serves on.
  httpServer.on('error', onError);
  await server.ready;

  let closing = null;
  const close = () => {
    closing ??= (async () => {
      const httpClosed = new Promise((resolve) => httpServer.close(resolve));
      await server.close({ code: 1001, timeout: CLOSE_TIMEOUT });
      // Requests still in flight (and idle keep-alive connections) end now.
      httpServer.closeAllConnections();
      await httpClosed;
      metrics.stop();
    })();
    return closing;
  };
  return { server, url: urlOf(httpServer.address()), close };
}

function urlOf({ address, port }) {
  return `http://${net.isIPv6(address) ? `[${address}]` : address}:${port}`;
}

module.exports = startRelay;
