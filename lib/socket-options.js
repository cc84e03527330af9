'use strict';

// Option name to [type, default]; see lib/options.js and the README's
// option table.
const SOCKET_OPTIONS = Object.freeze({
  protocols: ['protocols', undefined],
  WebSocket: ['function', undefined],
  minReconnectionDelay: ['milliseconds', 1500],
  reconnectionDelayGrowFactor: ['factor', 1.3],
  maxReconnectionDelay: ['milliseconds', 10000],
  jitter: ['fraction', 0.25],
  connectionTimeout: ['milliseconds', 4000],
  maxRetries: ['limit', Infinity],
  minUptime: ['milliseconds', 5000],
  maxEnqueuedMessages: ['limit', Infinity],
  startClosed: ['boolean', false],
  debug: ['boolean', false],
  json: ['boolean', true],
  binaryType: ['binaryType', 'arraybuffer'],
  maxPayload: ['bytes', 16 * 1024 * 1024],
  maxReceiveBuffer: ['limit', 1024 * 1024],
  headers: ['headers', {}],
  tls: ['clientTls', {}],
  heartbeatInterval: ['milliseconds', 30000],
  perMessageDeflate: ['deflate', true]
});

module.exports = SOCKET_OPTIONS;
