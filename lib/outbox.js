'use strict';

/**
 * The sends a Server's connections make, gathered and handed to the addon
 * in one call: at the end of each batch of events (so every reply of an
 * event handler crosses together), or at the next microtask for sends made
 * elsewhere. Per-send calls into the addon are what make native servers
 * slow: about half a microsecond each, measured; one call per batch brought
 * JSON echo from 1.5 to about 1 us of server CPU per message.
 *
 * Every other operation on the connections (broadcast, close, terminate)
 * calls `flush()` first, so frames leave in the order of the JS calls.
 *
 * With `json`, a batch of nothing but texts crosses as one string joined
 * with line breaks, which `JSON.stringify` never writes: one string
 * conversion instead of one per message.
 *
 * A batch of events can hold thousands of messages, so the outbox also
 * crosses every CHUNK sends. What it holds when V8 runs a scavenge
 * survives it, and once enough has survived V8 grows its young generation
 * for good: holding a whole batch's replies (1,600 in the benchmark's JSON
 * echo) did that within a minute, +7 MiB of RSS; chunks of 256 did not,
 * for about 2% more CPU per message.
 *
 * It also crosses once the texts gathered reach CHUNK_CHARS: joined, they
 * make one string, and a string past V8's largest regular object (128 KiB)
 * gets pages of its own, mapped at the join and unmapped at the next
 * collection. 256 compressed 2 KB echoes did that at every crossing; the
 * system calls and page faults cost about 2 us of CPU per message.
 */
const CHUNK = 256;
// Two bytes a character at most: 96 KiB.
const CHUNK_CHARS = 48 * 1024;

class Outbox {
  #native;
  #json;
  #handles = [];
  #payloads = [];
  #allText = true;
  #chars = 0;
  #scheduled = false;
  #flushSoon = () => {
    this.#scheduled = false;
    this.flush();
  };

  /**
   * @param {Object} native The NativeServer
   * @param {Boolean} json Whether texts are JSON (the Server's `json`)
   */
  constructor(native, json) {
    this.#native = native;
    this.#json = json;
  }

  /**
   * @param {Number} handle The connection's handle
   * @param {(String|Buffer)} payload The encoded message
   */
  push(handle, payload) {
    this.#handles.push(handle);
    this.#payloads.push(payload);
    if (typeof payload === 'string') this.#chars += payload.length;
    else this.#allText = false;
    if (this.#handles.length === CHUNK || this.#chars >= CHUNK_CHARS) {
      this.flush();
    } else if (!this.#scheduled) {
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
    const joinable = this.#json && this.#allText;
    this.#handles = [];
    this.#payloads = [];
    this.#allText = true;
    this.#chars = 0;
    if (joinable) this.#native.sendJsonBatch(handles, payloads.join('\n'));
    else this.#native.sendBatch(handles, payloads);
  }
}

module.exports = Outbox;
