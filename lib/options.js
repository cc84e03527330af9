'use strict';

const { codedError } = require('./errors');

// Option names users bring from `ws`, and what to do instead.
const WS_HINTS = {
  noServer: 'use the "server" option to attach to an http.Server',
  clientTracking: 'connections are always tracked: the Server is their group'
};

// Each check returns true when the value is acceptable.
const TYPES = {
  boolean: [(v) => typeof v === 'boolean', 'a boolean'],
  string: [(v) => typeof v === 'string', 'a string'],
  function: [(v) => typeof v === 'function', 'a function'],
  object: [(v) => typeof v === 'object' && v !== null, 'an object'],
  port: [(v) => Number.isInteger(v) && v >= 0 && v <= 65535, 'an integer from 0 to 65535'],
  count: [(v) => Number.isSafeInteger(v) && v >= 0, 'a non-negative integer'],
  bytes: [(v) => Number.isInteger(v) && v >= 0 && v <= 0xffffffff, 'an integer from 0 to 4294967295'],
  milliseconds: [(v) => typeof v === 'number' && v >= 0 && !Number.isNaN(v), 'a non-negative number'],
  limit: [(v) => v === Infinity || (Number.isSafeInteger(v) && v >= 0), 'a non-negative integer or Infinity'],
  factor: [(v) => typeof v === 'number' && v >= 1 && Number.isFinite(v), 'a finite number >= 1'],
  fraction: [(v) => typeof v === 'number' && v >= 0 && v <= 1, 'a number from 0 to 1'],
  protocols: [
    (v) => typeof v === 'string' || (Array.isArray(v) && v.every((p) => typeof p === 'string')),
    'a string or an array of strings'
  ],
  headers: [
    (v) =>
      typeof v === 'function' ||
      (typeof v === 'object' && v !== null && Object.values(v).every((h) => typeof h === 'string')),
    'an object of string values or a function returning one'
  ],
  tls: [
    (v) => typeof v === 'object' && v !== null && isPem(v.cert) && isPem(v.key),
    'an object with PEM "cert" and "key" (strings or Buffers)'
  ],
  clientTls: [
    (v) =>
      typeof v === 'object' &&
      v !== null &&
      Object.keys(v).every((key) => key === 'ca' || key === 'rejectUnauthorized') &&
      (v.ca === undefined || [v.ca].flat().every(isPem)) &&
      (v.rejectUnauthorized === undefined || typeof v.rejectUnauthorized === 'boolean'),
    'an object with "ca" (PEM strings or Buffers) and "rejectUnauthorized" (a boolean)'
  ],
  binaryType: [(v) => v === 'arraybuffer' || v === 'blob', "'arraybuffer' or 'blob'"],
  deflate: [(v) => typeof v === 'boolean' || (typeof v === 'object' && v !== null), 'a boolean or an object'],
  zlibLevel: [(v) => Number.isInteger(v) && v >= 0 && v <= 9, 'an integer from 0 to 9'],
  windowBits: [(v) => Number.isInteger(v) && v >= 8 && v <= 15, 'an integer from 8 to 15']
};

/**
 * Check `options` against `schema` and fill in the defaults.
 *
 * @param {String} owner What the options are for, e.g. `'Server'`
 * @param {Object} options The user's options
 * @param {Object} schema Option name to `[type, default]`; `type` is a key
 *     of `TYPES`; a default of `undefined` leaves the option out
 * @return {Object} The options with defaults
 * @throws {TypeError} `ERR_INVALID_OPTION`, naming the option, for an
 *     unknown option or a value of the wrong type
 */
function checkOptions(owner, options, schema) {
  if (typeof options !== 'object' || options === null) {
    throw invalidOption(`The ${owner} options must be an object`);
  }
  for (const name of Object.keys(options)) {
    if (Object.hasOwn(schema, name)) continue;
    const hint = WS_HINTS[name] ? `: ${WS_HINTS[name]}` : '';
    throw invalidOption(`Unknown ${owner} option "${name}"${hint}`);
  }

  const checked = {};
  for (const [name, [type, fallback]] of Object.entries(schema)) {
    const value = options[name];
    if (value === undefined) {
      checked[name] = fallback;
      continue;
    }
    const [accepts, expected] = TYPES[type];
    if (!accepts(value)) {
      throw invalidOption(
        `The "${name}" option of ${owner} must be ${expected}, received ${received(value)}`
      );
    }
    checked[name] = value;
  }
  return checked;
}

function isPem(value) {
  return typeof value === 'string' || value instanceof Uint8Array;
}

function invalidOption(message) {
  return codedError(TypeError, 'ERR_INVALID_OPTION', message);
}

function received(value) {
  if (value === null) return 'null';
  if (typeof value === 'string') return `'${value.slice(0, 40)}'`;
  if (typeof value === 'object') return `an instance of ${value.constructor?.name ?? 'Object'}`;
  return `${typeof value} ${String(value)}`;
}

module.exports = { checkOptions, invalidOption };
