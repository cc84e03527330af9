'use strict';

/**
 * The sends a Server's connections make, gathered and handed to the addon
 * in one call: at the end of each batch of events (so every reply of an
 * event handler crosses together), or at the next microtask for sends made
 * elsewhere. Per-send calls into the addon are what make native servers
 * slow (shared/research/boundary-measurements.md).
 *
 * Every other operation on the connections (broadcast, close, terminate)
 * calls `flush()` first, so frames leave in the order of the JS calls.
 */
class Outbox {
  #native;
  #handles = [];
  #payloads = [];
  #scheduled = false;
  #flushSoon = () => {
    this.#scheduled = false;
    this.flush();
  };

  /**
   * @param {Object} native The NativeServer
   */
  constructor(native) {
    this.#native = native;
  }

  /**
   * @param {Number} handle The connection's handle
   * @param {(String|Buffer)} payload The encoded message
   */
  push(handle, payload) {
    this.#handles.push(handle);
    this.#payloads.push(payload);
    if (!this.#scheduled) {
      this.#scheduled = true;
      queueMicrotask(this.#flushSoon);
    }
  }

  /**
   * Hand everything gathered to the addon now.
   */
  flush() {
    if (this.#handles.length === 0) return;
    const handles = Uint32Array.from(this.#handles);
    const payloads = this.#payloads;
    this.#handles = [];
    this.#payloads = [];
    this.#native.sendBatch(handles, payloads);
  }
}

module.exports = Outbox;
