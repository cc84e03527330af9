'use strict';

const { codedError } = require('./errors');

/**
 * Encode a value that is not binary data for `send` (README, Messages):
 * with `json`, `JSON.stringify` it into the text of one text frame;
 * without it, only strings are accepted, unchanged. Shared by the Node and
 * browser encoders (lib/encode.js, lib/browser-encode.js).
 *
 * @param {*} value The value to send
 * @param {Boolean} json Whether the value is JSON-encoded
 * @return {String} The text
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` if the value cannot be sent
 *     (nothing is sent then)
 */
function encodeText(value, json) {
  if (!json) {
    if (typeof value === 'string') return value;
    throw codedError(
      TypeError,
      'ERR_INVALID_ARG_TYPE',
      'With json: false, send() takes a string or binary data, not ' +
        describe(value)
    );
  }

  let text;
  try {
    text = JSON.stringify(value);
  } catch (err) {
    throw codedError(
      TypeError,
      'ERR_INVALID_ARG_TYPE',
      `The message cannot be sent as JSON: ${err.message}`,
      { cause: err }
    );
  }
  if (text === undefined) {
    throw codedError(
      TypeError,
      'ERR_INVALID_ARG_TYPE',
      `The message cannot be sent as JSON: ${describe(value)}`
    );
  }
  return text;
}

function describe(value) {
  if (value === null) return 'null';
  if (typeof value === 'object') return `an object (${value.constructor?.name})`;
  return `a ${typeof value}`;
}

module.exports = encodeText;
