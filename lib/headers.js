'use strict';

/**
 * Build `IncomingMessage`-style headers from the addon's raw block: names
 * and values, each followed by a NUL. Names are lower case; repeated headers
 * are joined with `', '`, except `set-cookie`, which is an array. The
 * object has no prototype, so a header named `__proto__` is just a header.
 *
 * @param {String} raw The raw header block
 * @return {Object} The headers
 */
function parseHeaders(raw) {
  const headers = Object.create(null);
  const parts = raw.split('\0');
  for (let i = 0; i + 1 < parts.length; i += 2) {
    const name = parts[i];
    const value = parts[i + 1];
    if (name === 'set-cookie') {
      (headers[name] ??= []).push(value);
    } else if (Object.hasOwn(headers, name)) {
      headers[name] += `, ${value}`;
    } else {
      headers[name] = value;
    }
  }
  return headers;
}

module.exports = parseHeaders;
