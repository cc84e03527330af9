'use strict';

// Record tags of src/events/mod.rs.
const TEXT = 1;
const BINARY = 2;
const DETAIL = 3;
// Details without fields come as tags of their own (4 and up), each read as
// one shared, frozen detail object.
const FIELDLESS = {
  4: Object.freeze({ type: 'Accepted' }),
  5: Object.freeze({ type: 'Abandoned' }),
  6: Object.freeze({ type: 'Closing' }),
  7: Object.freeze({ type: 'Drain' })
};
// The end of a server connection, packed in `bytes` (`ServerClose`).
const SERVER_CLOSE = 8;
// A text in the batch's `texts` string, its length in UTF-16 code units.
const JOINED_TEXT = 9;

/**
 * Walk one batch of events from the addon (format in src/events/mod.rs) and
 * hand each to the owner, in order. A throw from a handler is passed to
 * `onThrow` and the walk goes on: one bad listener never costs the other
 * connections their events.
 *
 * Binary payloads are copied out of the batch so that a kept message does
 * not pin the whole batch in memory; large ones arrive as their own memory,
 * not copied. The texts of an owner with `json` come as slices of one
 * string, `texts`: they are parsed at once and never kept.
 *
 * @param {Uint32Array} records `[tag, connection, length]` triples
 * @param {Buffer} bytes The payloads of text and small binary messages
 * @param {Object[]} details The rare events, in order
 * @param {String} texts The joined texts
 * @param {Object} handlers `message(connection, data, isBinary)` (a string
 *     for text, a Buffer for binary), `detail(connection, detail)` and
 *     `onThrow(err)`
 */
function readBatch(records, bytes, details, texts, handlers) {
  let offset = 0;
  let textOffset = 0;
  let nextDetail = 0;
  for (let i = 0; i < records.length; i += 3) {
    const tag = records[i];
    const connection = records[i + 1];
    try {
      if (tag === DETAIL) {
        const detail = details[nextDetail++];
        if (detail.type === 'LargeBinary') {
          const { buffer, byteOffset, byteLength } = detail.data;
          handlers.message(connection, Buffer.from(buffer, byteOffset, byteLength), true);
        } else {
          handlers.detail(connection, detail);
        }
        continue;
      }
      if (tag === JOINED_TEXT) {
        const start = textOffset;
        textOffset += records[i + 2];
        handlers.message(connection, texts.slice(start, textOffset), false);
        continue;
      }
      const fieldless = FIELDLESS[tag];
      if (fieldless !== undefined) {
        handlers.detail(connection, fieldless);
        continue;
      }
      const start = offset;
      offset += records[i + 2];
      if (tag === TEXT) {
        handlers.message(connection, bytes.toString('utf8', start, offset), false);
      } else if (tag === BINARY) {
        handlers.message(connection, Buffer.from(bytes.subarray(start, offset)), true);
      } else if (tag === SERVER_CLOSE) {
        handlers.detail(connection, readServerClose(bytes, start));
      }
    } catch (err) {
      handlers.onThrow(err);
    }
  }
}

/**
 * The `Close` detail of a server connection, from its packed form (see
 * `ServerClose::pack` in src/events/mod.rs) at `start` of `bytes`.
 *
 * @param {Buffer} bytes The batch's bytes
 * @param {Number} start Where the record's bytes begin
 * @return {Object} The detail, as a `Close` detail object would be
 */
function readServerClose(bytes, start) {
  const code = bytes.readUInt16LE(start);
  const remotePort = bytes.readUInt16LE(start + 2);
  const wasClean = bytes[start + 4] === 1;
  const texts = new TextFields(bytes, start + 5);
  const reason = texts.next();
  const remoteAddress = texts.next();
  const protocol = texts.next();
  const rawHeaders = texts.next();
  return {
    type: 'Close',
    code,
    reason,
    wasClean,
    willReconnect: false,
    rawHeaders,
    description: { remoteAddress, remotePort, protocol }
  };
}

/** Texts one after another, each its byte length (u32 LE) and UTF-8. */
class TextFields {
  #bytes;
  #at;

  constructor(bytes, at) {
    this.#bytes = bytes;
    this.#at = at;
  }

  next() {
    const start = this.#at + 4;
    this.#at = start + this.#bytes.readUInt32LE(this.#at);
    return this.#bytes.toString('utf8', start, this.#at);
  }
}

/**
 * Make the callback the addon calls with each batch: it reads the batch
 * into `handlers` (see `readBatch`), then calls `handlers.flush()` so that
 * the replies of the batch's handlers cross in one call.
 *
 * It holds `handlers` weakly: the addon keeps the callback alive, and the
 * Server or Socket must stay collectable once the user drops it (its
 * keep-alive timer holds it while it is listening or connected). So the
 * owner keeps `handlers`, and the callback is made here, where its closure
 * holds nothing else: a function made in the owner's constructor would
 * hold the constructor's scope, `this` included.
 *
 * @param {Object} handlers `readBatch`'s handlers, and `flush()`
 * @return {Function} The callback for the native constructor
 */
function batchCallback(handlers) {
  const ref = new WeakRef(handlers);
  return (records, bytes, details, texts) => {
    const target = ref.deref();
    if (target === undefined) return;
    readBatch(records, bytes, details, texts, target);
    target.flush();
  };
}

module.exports = { readBatch, batchCallback };
