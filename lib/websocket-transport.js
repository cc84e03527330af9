'use strict';

const OfflineQueue = require('./offline-queue');
const retryDelay = require('./retry-delay');
const { callUrlFunction } = require('./user-functions');
const { MAX_TIMER } = require('./keep-alive');

// WebSocket.OPEN, as a constant: custom constructors may lack the static.
const WS_OPEN = 1;

/**
 * The Socket's transport over a WHATWG-style `WebSocket` constructor: the
 * browser build's, and Node's when the `WebSocket` option is given. It runs
 * the connection loop the addon runs in Node, in JS: attempts, the retry
 * policy of lib/retry-delay.js, `connectionTimeout`, `maxRetries`,
 * `minUptime` and the offline queue. See lib/socket-core.js for the
 * interface.
 *
 * A WHATWG WebSocket shows neither the status nor the headers of a refused
 * upgrade, so a 401 or 403 cannot end the retries and a `Retry-After`
 * cannot be heeded here; close codes 1012 and 1013 are.
 *
 * A WHATWG WebSocket can neither send pings, bound the size of what it
 * receives nor stop reading, so `heartbeatInterval`, `maxPayload` and
 * `maxReceiveBuffer` are inert here (the browser still answers the
 * server's pings). Frames handed to the WebSocket
 * are its own: when a connection drops, those it had not written are lost,
 * and only messages still in the offline queue go out on the next one.
 */
class WebSocketTransport {
  #WebSocket;
  #options;
  #events;
  #binaryType;
  #urlSource;
  #url;
  #queue;
  // 'connecting' (an attempt runs), 'open', 'waiting' (for a retry, or
  // between steps) or 'stopped' (startClosed, close(), gave up).
  #phase = 'stopped';
  // The WebSocket of the current attempt or connection; events from any
  // other (abandoned) one are ignored.
  #ws = null;
  // The retry wait, or the current attempt's connectionTimeout.
  #timer = null;
  // Bumped whenever what is under way is abandoned: callbacks of an older
  // generation (timers, the url function's answer) do nothing.
  #generation = 0;
  #retries = 0;
  #openedAt = 0;
  // close() or reconnect() while open: the WebSocket's 'close' decides next.
  #closing = false;
  #reopening = false;
  #observed = false;

  /**
   * @param {(String|Function)} url The URL, or a function giving one (or a
   *     Promise of one) before every attempt
   * @param {Object} options The Socket's checked options
   * @param {Object} events The Socket's transport event handlers
   * @param {Object} [platform]
   * @param {Function} [platform.WebSocket=options.WebSocket] The constructor
   * @param {String} [platform.binaryType='buffer'] How binary messages are
   *     delivered: `'buffer'` (Node: a Buffer), `'arraybuffer'` or `'blob'`
   */
  constructor(url, options, events, { WebSocket = options.WebSocket, binaryType = 'buffer' } = {}) {
    this.#WebSocket = WebSocket;
    this.#options = options;
    this.#events = events;
    this.#binaryType = binaryType;
    this.#urlSource = typeof url === 'function' ? url : null;
    this.#url = typeof url === 'function' ? '' : url;
    this.#queue = new OfflineQueue(options.maxEnqueuedMessages);
    if (!options.startClosed) this.#begin();
  }

  /** @type {String} The URL of the current or last attempt. */
  get url() {
    return this.#url;
  }

  /** @type {Number} Bytes queued offline plus the WebSocket's bufferedAmount. */
  get bufferedAmount() {
    const handedOver = this.#phase === 'open' ? this.#ws.bufferedAmount : 0;
    return this.#queue.bytes + handedOver;
  }

  /**
   * Send now when a connection is open, else queue for the next one.
   *
   * @param {(String|ArrayBuffer|ArrayBufferView|Blob)} payload An encoded message
   * @return {Boolean} `false` when the offline queue is full
   */
  send(payload) {
    // A WebSocket that is closing would silently discard the frame: keep it
    // for the next connection instead.
    if (this.#phase === 'open' && this.#ws.readyState === WS_OPEN) {
      this.#ws.send(payload);
      return true;
    }
    return this.#queue.push(payload);
  }

  /**
   * Stop for good (until `reconnect()`). An open connection closes after
   * the frames already handed to the WebSocket; otherwise the attempt or
   * wait ends at once and the offline queue is dropped, reported through
   * `stopped(dropped)`.
   *
   * @param {Number} code The close code
   * @param {String} reason The close reason
   */
  close(code, reason) {
    if (this.#phase === 'open') {
      this.#closing = true;
      this.#reopening = false;
      this.#ws.close(code, reason);
    } else if (this.#phase === 'stopped') {
      // Already reported as stopped: only queued messages are left to drop.
      const dropped = this.#queue.clear();
      if (dropped > 0) this.#emit('stopped', dropped);
    } else {
      this.#stop();
    }
  }

  /**
   * End the current connection (with `code` and `reason`) or attempt,
   * reset the retry count and connect again at once, in any state.
   *
   * @param {Number} code The close code
   * @param {String} reason The close reason
   */
  reconnect(code, reason) {
    this.#retries = 0;
    this.#closing = false;
    if (this.#phase === 'open') {
      this.#reopening = true;
      this.#ws.close(code, reason);
      return;
    }
    this.#halt();
    this.#begin();
  }

  /**
   * Turn the delivery of messages on or off: messages nobody observes are
   * dropped, and so never reported as bad JSON.
   *
   * @param {Boolean} on Whether somebody observes the messages
   */
  observe(on) {
    this.#observed = on;
  }

  /**
   * Start an attempt: at once, but after the caller (a constructor emits
   * nothing synchronously). The timeout covers the url function too.
   */
  #begin() {
    this.#phase = 'connecting';
    const generation = ++this.#generation;
    this.#setTimer(() => this.#timedOut(generation), this.#options.connectionTimeout);
    queueMicrotask(() => this.#attempt(generation));
  }

  async #attempt(generation) {
    let url = this.#url;
    if (this.#urlSource !== null) {
      const outcome = await callUrlFunction(this.#urlSource);
      if (generation !== this.#generation) return;
      if (outcome.problem) {
        // A throw of the user's function is reported as user code.
        const props = outcome.threw && { cause: outcome.threw.err };
        return this.#failed(generation, outcome.code, outcome.problem, props, Boolean(outcome.threw));
      }
      url = outcome.url;
      this.#url = url;
    }
    if (generation !== this.#generation) return;

    this.#emit('connecting', url);
    let ws;
    try {
      ws =
        this.#options.protocols === undefined
          ? new this.#WebSocket(url)
          : new this.#WebSocket(url, this.#options.protocols);
    } catch (err) {
      return this.#failed(generation, 'ERR_CONNECT', `Could not connect to ${url}: ${err?.message}`, {
        cause: err
      });
    }
    this.#ws = ws;
    ws.binaryType = this.#binaryType === 'blob' ? 'blob' : 'arraybuffer';
    let failure = null;
    ws.addEventListener('open', () => this.#ws === ws && this.#onOpen(ws));
    ws.addEventListener('message', (event) => this.#ws === ws && this.#onMessage(event.data));
    // Kept on abandoned WebSockets too: `ws` throws an 'error' that nothing
    // listens to.
    ws.addEventListener('error', (event) => {
      failure = event;
    });
    ws.addEventListener('close', (event) => this.#ws === ws && this.#onClose(event, failure));
  }

  #onOpen(ws) {
    this.#clearTimer();
    this.#phase = 'open';
    this.#openedAt = Date.now();
    // Before 'open': a send in an 'open' listener goes after the queue.
    for (const payload of this.#queue.drain()) ws.send(payload);
    this.#emit('open', ws.protocol ?? '');
  }

  #onMessage(data) {
    if (!this.#observed) return;
    if (typeof data === 'string') this.#emit('message', data, false);
    else this.#emit('message', this.#binary(data), true);
  }

  #binary(data) {
    if (this.#binaryType !== 'buffer') return data;
    if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    return Buffer.from(data);
  }

  #onClose({ code, reason, wasClean }, failure) {
    this.#ws = null;
    if (this.#phase === 'connecting') {
      const detail = failureDetail(failure, code, reason);
      const cause = failure?.error instanceof Error ? failure.error : new Error(detail);
      return this.#failed(this.#generation, 'ERR_CONNECT', `Could not connect to ${this.#url}: ${detail}`, {
        cause
      });
    }

    if (Date.now() - this.#openedAt >= this.#options.minUptime) this.#retries = 0;
    const stopping = this.#closing;
    const reopening = this.#reopening;
    this.#closing = false;
    this.#reopening = false;
    this.#phase = 'waiting';
    const generation = ++this.#generation;
    const willReconnect = !stopping && (reopening || this.#mayRetry());
    this.#emit('close', { code, reason, wasClean, willReconnect });
    // A close() or reconnect() in a 'close' listener has taken over.
    if (generation !== this.#generation) return;
    if (stopping) {
      this.#stop();
    } else if (reopening) {
      this.#retries = 0;
      this.#begin();
    } else {
      // 1012 (the service restarts) and 1013 (try again later): jitter must
      // not bring the client back sooner than the shortest wait.
      const comeBackLater = code === 1012 || code === 1013;
      this.#retryOrGiveUp(comeBackLater ? this.#options.minReconnectionDelay : 0);
    }
  }

  #timedOut(generation) {
    const message = `No connection within ${this.#options.connectionTimeout} ms`;
    this.#failed(generation, 'ERR_TIMEOUT', message);
  }

  /**
   * A failed attempt: report it (as user code when `byUser`: the user's url
   * function threw), then retry or give up.
   */
  #failed(generation, code, message, props, byUser = false) {
    if (generation !== this.#generation) return;
    this.#halt();
    this.#phase = 'waiting';
    const current = this.#generation;
    this.#emit('error', code, message, props, byUser);
    // A close() or reconnect() in an 'error' listener has taken over.
    if (current !== this.#generation) return;
    this.#retryOrGiveUp();
  }

  /** Wait at least `atLeast` ms and the policy's delay, or give up. */
  #retryOrGiveUp(atLeast = 0) {
    if (!this.#mayRetry()) {
      // Gave up: sends keep queueing for a later reconnect().
      this.#phase = 'stopped';
      this.#emit('stopped', 0);
      return;
    }
    this.#retries += 1;
    const delay = Math.max(retryDelay(this.#options, this.#retries), atLeast);
    const generation = ++this.#generation;
    this.#phase = 'waiting';
    this.#setTimer(() => generation === this.#generation && this.#begin(), delay);
    this.#emit('reconnecting', this.#retries, delay);
  }

  #mayRetry() {
    return this.#retries + 1 <= this.#options.maxRetries;
  }

  /** Stop connecting and drop the offline queue. */
  #stop() {
    this.#halt();
    this.#phase = 'stopped';
    this.#emit('stopped', this.#queue.clear());
  }

  /** Abandon the attempt or wait under way, if any. */
  #halt() {
    this.#generation++;
    this.#clearTimer();
    const ws = this.#ws;
    this.#ws = null;
    try {
      ws?.close();
    } catch {
      // Already closed: nothing to abandon.
    }
  }

  #setTimer(fn, ms) {
    this.#clearTimer();
    // Timers fire at once past 2^31 - 1 ms: wait longer ones (Infinity
    // included) in steps.
    this.#timer =
      ms > MAX_TIMER
        ? setTimeout(() => this.#setTimer(fn, ms - MAX_TIMER), MAX_TIMER)
        : setTimeout(fn, ms);
    // The Socket holds the process while it should; the timers never do.
    this.#timer.unref?.();
  }

  #clearTimer() {
    clearTimeout(this.#timer);
    this.#timer = null;
  }

  /** Report to the Socket; a throw from a user's listener goes to `thrown`. */
  #emit(name, ...args) {
    try {
      this.#events[name](...args);
    } catch (err) {
      this.#events.thrown(err);
    }
  }
}

/**
 * What a failed attempt's events tell: a WHATWG WebSocket says little (a
 * browser nothing at all), `ws` gives an ErrorEvent with `error`/`message`.
 */
function failureDetail(failure, code, reason) {
  const message = failure?.error?.message || failure?.message;
  if (message) return message;
  return `the WebSocket closed with code ${code}${reason ? ` (${reason})` : ''}`;
}

module.exports = WebSocketTransport;
