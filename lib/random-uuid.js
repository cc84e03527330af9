'use strict';

/**
 * A random UUID v4. `crypto.randomUUID` exists in Node and on secure
 * (https or localhost) pages; elsewhere in browsers only
 * `crypto.getRandomValues` does, so the UUID is assembled from that.
 *
 * @return {String} The UUID
 */
function randomUUID() {
  if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

module.exports = randomUUID;
