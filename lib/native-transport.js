'use strict';

const { getSystemErrorName } = require('node:util');
const { nativeDeflate } = require('./deflate-options');

const { NativeSocket } = require('./native');
const { batchCallback } = require('./batch');
const { callUrlFunction, callHeadersFunction } = require('./user-functions');

/**
 * The Socket's transport in Node: the addon's connection loop (attempts,
 * retries, heartbeat, the offline queue), reporting through one batched
 * callback. See lib/socket-core.js for the transport interface.
 */
class NativeTransport {
  #native;
  #handlers;
  #url;
  #urlSource;
  #headersSource;
  // The attempt the addon last announced, and why the user's url or
  // headers function failed it: `{ code, cause, thrown }` (see #refuse).
  #attempt = 0;
  #refusal = null;
  #open = false;
  #json;
  // Sends made while open, handed to the addon in one call per batch of
  // events (or at the next microtask), as the Server does.
  #pending = [];
  #flushSoon = () => this.#flush();

  /**
   * @param {(String|Function)} url The URL, or a function giving one
   * @param {Object} options The Socket's checked options
   * @param {Object} events The Socket's transport event handlers
   */
  constructor(url, options, events) {
    this.#json = options.json;
    this.#url = typeof url === 'function' ? '' : url;
    this.#urlSource = typeof url === 'function' ? url : null;
    const { headers } = options;
    this.#headersSource = typeof headers === 'function' ? headers : null;
    const handlers = {
      message: (handle, data, isBinary) => events.message(data, isBinary),
      detail: (handle, detail) => this.#onDetail(detail, events),
      onThrow: (err) => events.thrown(err),
      flush: () => this.#flush()
    };
    this.#native = new NativeSocket(
      {
        url: this.#url,
        urlIsFunction: this.#urlSource !== null,
        protocols: [options.protocols ?? []].flat(),
        headers: this.#headersSource === null ? Object.entries(headers).flat() : [],
        headersIsFunction: this.#headersSource !== null,
        minReconnectionDelay: options.minReconnectionDelay,
        maxReconnectionDelay: options.maxReconnectionDelay,
        reconnectionDelayGrowFactor: options.reconnectionDelayGrowFactor,
        jitter: options.jitter,
        connectionTimeout: options.connectionTimeout,
        maxRetries: options.maxRetries,
        minUptime: options.minUptime,
        maxEnqueuedMessages: options.maxEnqueuedMessages,
        heartbeatInterval: options.heartbeatInterval,
        maxPayload: options.maxPayload,
        maxReceiveBuffer: options.maxReceiveBuffer,
        startClosed: options.startClosed,
        json: options.json,
        tlsCa: [options.tls.ca ?? []].flat().map(String),
        tlsRejectUnauthorized: options.tls.rejectUnauthorized ?? true,
        perMessageDeflate: nativeDeflate('Socket', options.perMessageDeflate)
      },
      // Weakly held: the Socket owns this transport, the addon must not.
      batchCallback(handlers)
    );
    // The callback holds `handlers` weakly; the transport keeps it alive.
    this.#handlers = handlers;
  }

  get url() {
    return this.#url;
  }

  get bufferedAmount() {
    this.#flush();
    return this.#native.bufferedAmount();
  }

  send(payload, compress = true) {
    // Offline, maxEnqueuedMessages applies: the addon answers at once.
    // A message that must not be compressed is marked as such in the addon.
    if (!this.#open || !compress) {
      this.#flush();
      return compress ? this.#native.send(payload) : this.#native.sendUncompressed(payload);
    }
    if (this.#pending.push(payload) === 1) queueMicrotask(this.#flushSoon);
    return true;
  }

  close(code, reason) {
    this.#flush();
    this.#native.close(code, reason);
  }

  reconnect(code, reason) {
    this.#flush();
    this.#native.reconnect(code, reason);
  }

  #flush() {
    if (this.#pending.length === 0) return;
    const payloads = this.#pending;
    this.#pending = [];
    // JSON texts never hold a raw line break: joined, they cross as one
    // string (see lib/outbox.js).
    if (this.#json && payloads.every((payload) => typeof payload === 'string')) {
      this.#native.sendJsonBatch(payloads.join('\n'));
    } else {
      this.#native.sendBatch(payloads);
    }
  }

  observe(on) {
    this.#native.observe(on);
  }

  #onDetail(detail, events) {
    switch (detail.type) {
      case 'Connecting':
        this.#attempt = detail.attempt;
        this.#refusal = null;
        // An empty URL asks for the user's url and headers functions.
        if (detail.url === '') {
          this.#prepare(detail.attempt, events);
        } else {
          this.#url = detail.url;
          events.connecting(this.#url);
        }
        break;
      case 'Open':
        this.#open = true;
        events.open(detail.protocol);
        break;
      case 'Close':
        this.#open = false;
        events.close(detail);
        break;
      case 'Error': {
        const { code, message, status, errno } = detail;
        if (status !== undefined) {
          events.error(code, message, { status });
        } else if (errno !== undefined) {
          const cause = connectError(errno, this.#url);
          events.error(code, `Could not connect to ${this.#url}: ${cause.message}`, { cause });
        } else if (this.#refusal !== null && this.#refusal.code === code) {
          // The user's function failed the attempt: its throw is user code.
          // An attempt waiting for JS's answer has only two Errors: the
          // refusal, with its code, or ERR_TIMEOUT when the refusal came
          // too late (the addon ignores it then). #refusal is of this
          // attempt: 'Connecting' resets it.
          const { cause, thrown } = this.#refusal;
          events.error(code, message, { cause }, thrown);
        } else {
          events.error(code, message, { cause: new Error(message) });
        }
        this.#refusal = null;
        break;
      }
      case 'Reconnecting':
        events.reconnecting(detail.attempt, detail.delay);
        break;
      case 'Stopped':
        events.stopped(detail.dropped);
        break;
    }
  }

  /**
   * Call the user's url and headers functions for attempt `attempt` and
   * hand the results to the addon, which counts a failure as a failed
   * attempt (and a late answer as none: the attempt timed out).
   */
  async #prepare(attempt, events) {
    let url = this.#url;
    let headers = null;
    if (this.#urlSource !== null) {
      const outcome = await callUrlFunction(this.#urlSource);
      if (outcome.problem) return this.#refuse(attempt, outcome.code, outcome.problem, outcome.threw);
      url = outcome.url;
      if (attempt === this.#attempt) this.#url = url;
    }
    if (this.#headersSource !== null) {
      const outcome = await callHeadersFunction(this.#headersSource);
      if (outcome.problem) return this.#refuse(attempt, outcome.code, outcome.problem, outcome.threw);
      headers = outcome.headers;
    }
    if (attempt !== this.#attempt) return;
    events.connecting(url);
    this.#native.provideAttempt(attempt, url, headers);
  }

  /**
   * Fail attempt `attempt`: the addon reports it (an 'Error' event with
   * this code and message) and retries or gives up. When the user's
   * function threw, `threw.err` becomes the error's cause and the error is
   * reported as user code.
   */
  #refuse(attempt, code, message, threw) {
    if (attempt !== this.#attempt) return;
    const cause = threw === undefined ? new Error(message) : threw.err;
    this.#refusal = { code, cause, thrown: threw !== undefined };
    this.#native.refuseAttempt(attempt, code, message);
  }
}

/**
 * A failed connection as Node's `net` reports it (and so `ws`, and the
 * browser build over it): `connect ECONNREFUSED host:port`, with `code`,
 * `errno` and `syscall`. The addon gives the system's error number.
 *
 * @param {Number} errno The system error number (positive, as Rust has it)
 * @param {String} url The URL of the attempt
 * @return {Error} The error
 */
function connectError(errno, url) {
  const code = getSystemErrorName(-errno);
  return Object.assign(new Error(`connect ${code} ${hostAndPort(url)}`), { errno: -errno, code, syscall: 'connect' });
}

/** `host:port` of a ws:// or wss:// URL, the default port included. */
function hostAndPort(url) {
  const { hostname, port, protocol } = new URL(url);
  return `${hostname.replace(/^\[(.*)\]$/, '$1')}:${port || (protocol === 'wss:' ? 443 : 80)}`;
}

module.exports = NativeTransport;
