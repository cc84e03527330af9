'use strict';

const utf8Length = require('./utf8-length');

/**
 * The messages a WHATWG-WebSocket transport keeps while no connection is
 * open, in order, at most `limit` of them (`maxEnqueuedMessages`).
 */
class OfflineQueue {
  #items = [];
  #bytes = 0;
  #limit;

  /**
   * @param {Number} limit The most messages kept (may be `Infinity`)
   */
  constructor(limit) {
    this.#limit = limit;
  }

  /** @type {Number} The encoded bytes queued. */
  get bytes() {
    return this.#bytes;
  }

  /**
   * Queue a payload at the end.
   *
   * @param {(String|ArrayBuffer|ArrayBufferView|Blob)} payload An encoded message
   * @return {Boolean} `false` when the queue is full (nothing was queued)
   */
  push(payload) {
    if (this.#items.length >= this.#limit) return false;
    this.#items.push(payload);
    this.#bytes += byteLength(payload);
    return true;
  }

  /**
   * Take every payload out, oldest first.
   *
   * @return {Array} The payloads
   */
  drain() {
    const items = this.#items;
    this.#items = [];
    this.#bytes = 0;
    return items;
  }

  /**
   * Drop every payload.
   *
   * @return {Number} How many were dropped
   */
  clear() {
    return this.drain().length;
  }
}

function byteLength(payload) {
  if (typeof payload === 'string') return utf8Length(payload);
  // ArrayBuffer and views have byteLength, a Blob has size.
  return payload.byteLength ?? payload.size ?? 0;
}

module.exports = OfflineQueue;
