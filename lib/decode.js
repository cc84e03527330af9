'use strict';

const { codedError } = require('./errors');

/** What `decodeMessage` returns for a text that is not valid JSON. */
const INVALID_JSON = Symbol('INVALID_JSON');

/**
 * Decode a received message (README, Messages): with `json`, a text frame is
 * `JSON.parse`'d; binary data and, without `json`, text arrive as they are.
 *
 * @param {(String|Buffer|ArrayBuffer|Blob)} data The payload
 * @param {Boolean} isBinary Whether it came in a binary frame
 * @param {Boolean} json The owner's `json` option
 * @return {*} The message, or `INVALID_JSON`
 */
function decodeMessage(data, isBinary, json) {
  if (isBinary || !json) return data;
  try {
    return JSON.parse(data);
  } catch {
    return INVALID_JSON;
  }
}

/**
 * The `ERR_INVALID_JSON` error for a text that did not parse. It keeps a
 * copy of the text: the text itself may be a slice of a whole batch's
 * string (lib/batch.js), which a kept slice would keep alive. The copy is
 * made through UTF-8 (a text that arrived is valid UTF-8), which works in
 * browsers too, where this module also runs.
 *
 * @param {String} data The raw text
 * @param {Object} connection The connection it came on
 * @param {String} sender Who sent it, for the message: 'A client', 'The server'
 * @return {Error} The error
 */
function invalidJsonError(data, connection, sender) {
  return codedError(Error, 'ERR_INVALID_JSON', `${sender} sent a text message that is not valid JSON`, {
    data: new TextDecoder().decode(new TextEncoder().encode(data)),
    connection
  });
}

module.exports = { decodeMessage, invalidJsonError, INVALID_JSON };
