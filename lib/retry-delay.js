'use strict';

/**
 * The wait before retry `retry` (1-based), as reconnecting-websocket
 * computes it, shortened by a random fraction of up to `jitter` of itself.
 * src/socket.rs `retry_delay` is the same formula for the native transport;
 * both are checked against __test__/fixtures/retry-delays.json.
 *
 * @param {Object} options The Socket's checked options
 * @param {Number} options.minReconnectionDelay ms before the first retry
 * @param {Number} options.reconnectionDelayGrowFactor Growth per retry
 * @param {Number} options.maxReconnectionDelay The cap, in ms
 * @param {Number} options.jitter The largest fraction taken off
 * @param {Number} retry The retry number, from 1
 * @param {Function} [random=Math.random] A source of numbers in [0, 1)
 * @return {Number} The wait in ms
 */
function retryDelay(options, retry, random = Math.random) {
  const { minReconnectionDelay, reconnectionDelayGrowFactor, maxReconnectionDelay, jitter } =
    options;
  const delay = Math.min(
    maxReconnectionDelay,
    minReconnectionDelay * reconnectionDelayGrowFactor ** (retry - 1)
  );
  return delay * (1 - jitter * random());
}

module.exports = retryDelay;
