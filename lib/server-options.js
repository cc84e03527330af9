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
  perMessageDeflate: ['deflate', false],
  cluster: ['object', undefined]
});

// The object form of `cluster`, option name to [type, default]: the Redis
// pub/sub backplane (README, "Cluster: broadcast across processes and
// machines").
const CLUSTER_OPTIONS = Object.freeze({
  redis: ['string', undefined],
  channel: ['string', 'mytosis-websocket']
});

// The URL schemes of a Redis the addon can join (rediss: is TLS).
const REDIS_PROTOCOLS = new Set(['redis:', 'rediss:']);

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
  if (typeof given?.cluster === 'string') {
    // Not quoted: a Redis URL may carry a password.
    throw invalidOption('The "cluster" option of Server must be an object: { redis: <the URL>, channel? }');
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
  if (options.cluster !== undefined) options.cluster = checkCluster(options.cluster);
  if (options.reusePort && process.platform !== 'linux' && process.platform !== 'darwin') {
    throw invalidOption(`The "reusePort" option of Server is not supported on ${process.platform}`);
  }
  return options;
}

/**
 * Check the `cluster` option and fill in the default channel.
 *
 * @param {Object} value `{ redis, channel }`
 * @return {Object} `{ redis, channel }`
 * @throws {TypeError} `ERR_INVALID_OPTION`
 */
function checkCluster(value) {
  if (Array.isArray(value)) {
    throw invalidOption('The "cluster" option of Server must be an object: { redis: <the URL>, channel? }');
  }
  const cluster = checkOptions('Server cluster', value, CLUSTER_OPTIONS);
  if (cluster.redis === undefined) {
    throw invalidOption('The "redis" option of Server cluster is required: a redis:// or rediss:// URL');
  }
  // The URL may carry a password: the messages never quote it.
  let url;
  try {
    url = new URL(cluster.redis);
  } catch {
    throw invalidOption('The "redis" option of Server cluster must be a redis:// or rediss:// URL');
  }
  if (!REDIS_PROTOCOLS.has(url.protocol)) {
    throw invalidOption(
      `The "redis" option of Server cluster must be a redis:// or rediss:// URL, received one with protocol ${url.protocol}`
    );
  }
  if (url.hostname === '') {
    throw invalidOption('The "redis" option of Server cluster must be a URL with a host');
  }
  if (cluster.channel === '') {
    throw invalidOption('The "channel" option of Server cluster must be a non-empty string');
  }
  return cluster;
}

function isExpressApp(value) {
  return typeof value === 'function' && typeof value.listen === 'function' && typeof value.use === 'function';
}

module.exports = checkServerOptions;
module.exports.SERVER_OPTIONS = SERVER_OPTIONS;
module.exports.checkCluster = checkCluster;
