'use strict';

const { types } = require('node:util');

const encodeText = require('./encode-text');

/**
 * Encode a value for `send` (README, Messages):
 * - binary data (Buffer, any TypedArray, DataView, ArrayBuffer,
 *   SharedArrayBuffer) becomes a Buffer, sent as one binary frame. Buffers
 *   and views are not copied: their exact `byteOffset`/`byteLength` bytes
 *   go out as they are when written. A SharedArrayBuffer (or a view of one)
 *   is copied, since another thread may write it at any time;
 * - a Blob or File becomes a Promise of a Buffer;
 * - with `json`, anything else is `JSON.stringify`'d into a string, sent as
 *   one text frame; without it, only strings are accepted, unchanged.
 *
 * @param {*} value The value to send
 * @param {Boolean} json Whether non-binary values are JSON-encoded
 * @return {(String|Buffer|Promise<Buffer>)} The payload
 * @throws {TypeError} If the value cannot be sent (nothing is sent then)
 */
function encode(value, json) {
  const binary = toBuffer(value);
  return binary === undefined ? encodeText(value, json) : binary;
}

/**
 * The Buffer for binary data, a Promise of one for a Blob, or `undefined`
 * when the value is not binary.
 *
 * @param {*} value The value
 * @return {(Buffer|Promise<Buffer>|undefined)} The bytes
 */
function toBuffer(value) {
  // Most sends are JSON values: answered without the checks below, two of
  // which are calls into C++.
  if (typeof value !== 'object' || value === null || isPlain(value)) return undefined;
  if (Buffer.isBuffer(value)) return value;
  if (ArrayBuffer.isView(value)) {
    const view = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    return types.isSharedArrayBuffer(value.buffer) ? Buffer.from(view) : view;
  }
  if (types.isArrayBuffer(value)) return Buffer.from(value);
  if (types.isSharedArrayBuffer(value)) return Buffer.from(Buffer.from(value));
  if (value instanceof Blob) {
    return value.arrayBuffer().then((bytes) => Buffer.from(bytes));
  }
  return undefined;
}

/**
 * Whether an object is a plain object or an array, which no binary type is.
 *
 * @param {Object} value The object
 * @return {Boolean} Whether it is plain
 */
function isPlain(value) {
  const prototype = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null || Array.isArray(value);
}

module.exports = encode;
