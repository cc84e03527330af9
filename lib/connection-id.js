'use strict';

const { randomFillSync } = require('node:crypto');

// Ids formatted per refill of the random bytes.
const BATCH = 128;
const UUID_BYTES = 16;
const UUID_LENGTH = 36;
const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1');
const DASH = 0x2d;

const random = Buffer.alloc(BATCH * UUID_BYTES);
const text = Buffer.alloc(BATCH * UUID_LENGTH);
let next = BATCH;

/**
 * A random UUID v4 for a server connection's id, as one flat string.
 *
 * A server makes one for every connection, in bursts when many connect
 * at once, and keeps it for the connection's life. Node 20's
 * `crypto.randomUUID()` builds its result from ~20 pieces, a tree of
 * strings that had to be copied flat to keep: about 700 bytes of garbage
 * per id in all. Here the text of 128 UUIDs is written into one buffer
 * at a time, from the same cryptographically secure source, and each id
 * is sliced from it: one 36-character string and nothing else.
 *
 * @return {String} The UUID
 */
function connectionId() {
  if (next === BATCH) refill();
  const start = next++ * UUID_LENGTH;
  return text.toString('latin1', start, start + UUID_LENGTH);
}

function refill() {
  randomFillSync(random);
  let at = 0;
  for (let uuid = 0; uuid < BATCH; uuid++) {
    for (let i = 0; i < UUID_BYTES; i++) {
      let byte = random[uuid * UUID_BYTES + i];
      // RFC 9562, 5.4: the version (4) and the variant (0b10).
      if (i === 6) byte = (byte & 0x0f) | 0x40;
      else if (i === 8) byte = (byte & 0x3f) | 0x80;
      // 8-4-4-4-12 hex digits.
      if (i === 4 || i === 6 || i === 8 || i === 10) text[at++] = DASH;
      text[at++] = HEX_DIGITS[byte >> 4];
      text[at++] = HEX_DIGITS[byte & 0x0f];
    }
  }
  next = 0;
}

module.exports = connectionId;
