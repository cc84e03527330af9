'use strict';

const encodeText = require('./encode-text');

const toTag = (value) => Object.prototype.toString.call(value);

/**
 * Encode a value for `send` in the browser build (README, Messages),
 * without Buffer: a TypedArray or DataView becomes a Uint8Array over exactly
 * its bytes (not a copy), an ArrayBuffer goes as it is, a SharedArrayBuffer
 * (or a view of one) is copied, since WebSocket.send refuses shared memory,
 * and a Blob or File goes straight to WebSocket.send, which keeps it in
 * order with the other sends. Anything else goes to lib/encode-text.js.
 *
 * @param {*} value The value to send
 * @param {Boolean} json Whether non-binary values are JSON-encoded
 * @return {(String|Uint8Array|ArrayBuffer|Blob)} The payload
 * @throws {TypeError} If the value cannot be sent (nothing is sent then)
 */
function encode(value, json) {
  const binary = toBinary(value);
  return binary === undefined ? encodeText(value, json) : binary;
}

function toBinary(value) {
  if (ArrayBuffer.isView(value)) {
    const bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    return toTag(value.buffer) === '[object SharedArrayBuffer]' ? bytes.slice() : bytes;
  }
  // Tags rather than instanceof: buffers from another realm (an iframe,
  // a worker's message) count too.
  const tag = toTag(value);
  if (tag === '[object ArrayBuffer]') return value;
  if (tag === '[object SharedArrayBuffer]') return new Uint8Array(value).slice();
  if (typeof Blob === 'function' && value instanceof Blob) return value;
  return undefined;
}

module.exports = encode;
