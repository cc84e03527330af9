'use strict';

const { codedError } = require('./errors');

// `ws://` or `wss://`, the authority as written (the WHATWG parser would
// also take `ws:host`, `ws:///host` or backslashes), then the path and query
// up to a fragment.
const PARTS = /^wss?:\/\/([^/?#]*)([^#]*)(#?)/i;
// An authority holds visible ASCII only, and no quote, angle bracket,
// backquote or backslash.
const BAD_IN_AUTHORITY = /[^\x21-\x7e]|["<>`\\]/;
// A path or query holds no control, space, quote, angle bracket or
// backquote (what the addon cannot send in a request line).
const BAD_IN_PATH = /[\x00-\x20\x7f"<>`]/;

/**
 * Whether `url` is a `ws://` or `wss://` URL both builds of the Socket can
 * connect to as written: one the WHATWG URL parser accepts, whose text an
 * HTTP request line can carry (the addon sends it without normalizing it),
 * and with no fragment (a WHATWG WebSocket refuses one). The one check of a
 * Socket's URL: the one given to the constructor and each one a `url`
 * function gives, in both builds.
 *
 * @param {*} url A value given as a Socket URL
 * @return {Boolean} Whether it is usable
 */
function isWsUrl(url) {
  if (typeof url !== 'string' || !parses(url)) return false;
  const parts = PARTS.exec(url);
  if (parts === null) return false;
  const [, authority, rest, fragment] = parts;
  return authority !== '' && !BAD_IN_AUTHORITY.test(authority) && !BAD_IN_PATH.test(rest) && fragment === '';
}

/** `URL.canParse`, for browsers older than it. */
function parses(url) {
  try {
    new URL(url);
    return true;
  } catch {
    return false;
  }
}

/**
 * @param {*} url The URL given to the Socket
 * @return {String} The URL
 * @throws {TypeError} `ERR_INVALID_URL` unless `isWsUrl(url)`
 */
function checkUrl(url) {
  if (!isWsUrl(url)) {
    const shown = typeof url === 'string' ? `'${url}'` : typeof url;
    throw codedError(TypeError, 'ERR_INVALID_URL', `Expected a ws:// or wss:// URL, received ${shown}`);
  }
  return url;
}

module.exports = checkUrl;
module.exports.isWsUrl = isWsUrl;
