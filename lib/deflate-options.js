'use strict';

const { checkOptions, invalidOption } = require('./options');

// The zlib level both sides compress with unless told (README,
// "Compression", has the measurement behind it).
const DEFAULT_LEVEL = 6;

// The object forms of `perMessageDeflate`, option name to [type, default].
const SERVER_DEFLATE = Object.freeze({
  threshold: ['bytes', 1024],
  level: ['zlibLevel', DEFAULT_LEVEL],
  clientMaxWindowBits: ['windowBits', undefined],
  clientNoContextTakeover: ['boolean', true]
});

const SOCKET_DEFLATE = Object.freeze({
  threshold: ['bytes', 1024],
  clientNoContextTakeover: ['boolean', true],
  serverNoContextTakeover: ['boolean', false],
  clientMaxWindowBits: ['windowBits', undefined],
  serverMaxWindowBits: ['windowBits', undefined]
});

/**
 * The addon's form of a `perMessageDeflate` option: `undefined` for
 * `false`, the defaults for `true`, the checked object otherwise.
 *
 * @param {String} owner `'Server'` or `'Socket'`
 * @param {(Boolean|Object)} value The option
 * @return {(Object|undefined)}
 * @throws {TypeError} `ERR_INVALID_OPTION`
 */
function nativeDeflate(owner, value) {
  if (value === false) return undefined;
  const schema = owner === 'Server' ? SERVER_DEFLATE : SOCKET_DEFLATE;
  if (value === true) return checkOptions(`${owner} perMessageDeflate`, {}, schema);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalidOption(`The "perMessageDeflate" option of ${owner} must be a boolean or an object`);
  }
  return checkOptions(`${owner} perMessageDeflate`, value, schema);
}

module.exports = { nativeDeflate, DEFAULT_LEVEL };
