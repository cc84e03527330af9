'use strict';

const http = require('node:http');
const https = require('node:https');

const { nativeDeflate } = require('./deflate-options');
const { checkOptions, invalidOption } = require('./options');

// Option name to [type, default]; see lib/options.js and the README's
// Server section.
const SERVER_OPTIONS = Object.freeze({
  port: ['port', undefined],
  host: ['string', undefined],
  server: ['object', undefined],
  path: ['string', undefined],
  json: ['boolean', true],
  maxPayload: ['bytes', 16 * 1024 * 1024],
  verifyClient: ['function', undefined],
  handleProtocols: ['function', undefined],
  tls: ['tls', undefined],
  heartbeatInterval: ['milliseconds', 30000],
  maxBackpressure: ['limit', 16 * 1024 * 1024],
  maxReceiveBuffer: ['limit', 1024 * 1024],
  maxReceiveBufferTotal: ['limit', 64 * 1024 * 1024],
  maxConnections: ['limit', Infinity],
  reusePort: ['boolean', false],
  handshakeTimeout: ['milliseconds', 10000],
  perMessageDeflate: ['deflate', false]
});

// Options that make no sense with `server`: that server is already bound.
const STANDALONE_ONLY = ['port', 'host', 'tls', 'reusePort'];

/**
 * Check the Server's options and fill in the defaults.
 *
 * @param {(Number|Object)} portOrOptions A port, or the options
 * @return {Object} The options
 * @throws {TypeError} `ERR_INVALID_OPTION`
 */
function checkServerOptions(portOrOptions) {
  const given = typeof portOrOptions === 'number' ? { port: portOrOptions } : portOrOptions;
  if (isExpressApp(given?.server)) {
    throw invalidOption(
      'The "server" option of Server takes the http.Server that app.listen() returns, not an express app'
    );
  }
  const options = checkOptions('Server', given, SERVER_OPTIONS);
  if (options.server !== undefined) {
    if (!(options.server instanceof http.Server || options.server instanceof https.Server)) {
      throw invalidOption('The "server" option of Server must be an http.Server or https.Server');
    }
    const clash = STANDALONE_ONLY.find((name) => given[name] !== undefined);
    if (clash !== undefined) {
      throw invalidOption(`The "${clash}" option of Server cannot be combined with "server"`);
    }
  } else if (options.port === undefined) {
    throw invalidOption('The "port" option of Server is required (or "server")');
  }
  // Checked here so that a bad value throws at construction.
  nativeDeflate('Server', options.perMessageDeflate);
  if (options.reusePort && process.platform !== 'linux' && process.platform !== 'darwin') {
    throw invalidOption(`The "reusePort" option of Server is not supported on ${process.platform}`);
  }
  return options;
}

function isExpressApp(value) {
  return typeof value === 'function' && typeof value.listen === 'function' && typeof value.use === 'function';
}

module.exports = checkServerOptions;
module.exports.SERVER_OPTIONS = SERVER_OPTIONS;
