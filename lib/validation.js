'use strict';

const { codedError } = require('./errors');
const utf8Length = require('./utf8-length');

/**
 * Check the arguments of `close(code, reason)`: codes 1000 and 3000-4999
 * (the ones an application may send), and a reason of at most 123 UTF-8
 * bytes so that the close frame stays within 125 bytes.
 *
 * @param {Number} code The close code
 * @param {String} reason The close reason
 * @throws {RangeError} `ERR_INVALID_ARG_VALUE` if either is out of range
 */
function checkClose(code, reason) {
  if (!(code === 1000 || (Number.isInteger(code) && code >= 3000 && code <= 4999))) {
    throw codedError(
      RangeError,
      'ERR_INVALID_ARG_VALUE',
      `The close code must be 1000 or in 3000-4999, received ${String(code)}`
    );
  }
  if (typeof reason !== 'string' || utf8Length(reason) > 123) {
    throw codedError(
      RangeError,
      'ERR_INVALID_ARG_VALUE',
      'The close reason must be a string of at most 123 UTF-8 bytes'
    );
  }
}

module.exports = { checkClose };
