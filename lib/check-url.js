'use strict';

const { codedError } = require('./errors');

/**
 * @param {*} url The URL given to the Socket
 * @return {String} The URL
 * @throws {TypeError} `ERR_INVALID_URL` unless it is a `ws://` or `wss://`
 *     URL
 */
function checkUrl(url) {
  let parsed = null;
  if (typeof url === 'string') {
    try {
      parsed = new URL(url);
    } catch {
      // Reported below.
    }
  }
  if (parsed === null || (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:')) {
    const shown = typeof url === 'string' ? `'${url}'` : typeof url;
    throw codedError(TypeError, 'ERR_INVALID_URL', `Expected a ws:// or wss:// URL, received ${shown}`);
  }
  return url;
}

module.exports = checkUrl;
