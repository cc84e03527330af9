'use strict';

const { codedError } = require('./errors');
const { kComplete } = require('./symbols');

/**
 * @typedef {Object} Subscription
 * @property {Function} dispose Stops the callback; idempotent
 */

/**
 * A lazy, cacheless stream of `(message, sender)` pairs: the Mytosis Stream.
 *
 * The publisher runs when the first subscriber arrives and its cleanup runs
 * when the last one leaves, so the owner knows exactly when anybody listens
 * (and can stop carrying messages while nobody does). A later subscriber
 * opens the stream again: the publisher runs anew with a fresh `push`; a
 * `push` from an earlier opening delivers nothing. Messages are never kept.
 *
 * A stream completes (closes for good) once in its lifetime, by the
 * publisher's `complete` (from any opening) or the owner's
 * `stream[kComplete]()`: `complete` resolves, every subscriber is dropped,
 * the cleanup runs, and the stream never opens again. After that a `push`
 * throws an `Error` saying the stream is closed, and so does completing it
 * again (`code` `'ERR_CLOSED'` on both).
 */
class Stream {
  #publisher;
  #onError;
  // Replaced, never mutated: a push iterates the subscribers it began with.
  #subscribers = [];
  // The current opening, or null while nobody observes the stream.
  #session = null;
  #completed = false;
  #complete;
  #resolve;

  /**
   * The same as `new Stream(publisher, options)`.
   *
   * @param {Function} publisher See the constructor
   * @param {Object} [options] See the constructor
   * @return {Stream} The new stream
   */
  static create(publisher, options) {
    return new Stream(publisher, options);
  }

  /**
   * A stream of one event of an emitter: each time it fires, the listener's
   * first argument is pushed as the message and its second as the sender.
   * It listens only while the stream is observed: from the first subscriber
   * on, with `on` (or `addEventListener`), until the last one leaves, with
   * `off` or `removeListener` (or `removeEventListener`).
   *
   * @param {Object} emitter A Node-style emitter or an `EventTarget`
   * @param {(String|Symbol)} event The event name
   * @return {Stream} The stream
   * @throws {TypeError} If `emitter` has neither `on` nor `addEventListener`
   */
  static fromEvent(emitter, event) {
    const methods = listenerMethods(emitter);
    if (methods === null) {
      throw invalidArgType(
        'The "emitter" argument must have an "on" or an "addEventListener" method'
      );
    }

    const [add, remove] = methods;
    return new Stream((push) => {
      // A listener of its own per opening, so that closing removes just it.
      const listener = (message, sender) => push(message, sender);
      add.call(emitter, event, listener);
      return () => remove.call(emitter, event, listener);
    });
  }

  /**
   * Create a new `Stream`.
   *
   * @param {Function} publisher Called as `publisher(push, complete)` when the
   *     stream opens; may return a cleanup function, called when it closes
   * @param {Object} [options] Options object
   * @param {Function} [options.onError] Receives every error a subscriber
   *     throws; without it, or when it throws itself, the error is rethrown
   *     asynchronously (an `'uncaughtException'` in Node)
   */
  constructor(publisher, options = {}) {
    if (typeof publisher !== 'function') {
      throw invalidArgType('The "publisher" argument must be a function');
    }
    if (
      options.onError !== undefined &&
      typeof options.onError !== 'function'
    ) {
      throw invalidArgType('The "onError" option must be a function');
    }

    this.#publisher = publisher;
    this.#onError = options.onError;
    this.#complete = new Promise((resolve) => {
      this.#resolve = resolve;
    });
  }

  /**
   * A promise resolved when the stream completes.
   *
   * @type {Promise<void>}
   */
  get complete() {
    return this.#complete;
  }

  /**
   * Subscribe to the stream, opening it if nobody observed it yet. On a
   * completed stream the callback is never called.
   *
   * @param {Function} callback Called as `callback(message, sender)`
   * @return {Subscription} The subscription
   */
  forEach(callback) {
    if (typeof callback !== 'function') {
      throw invalidArgType('The "callback" argument must be a function');
    }

    const entry = { callback, active: !this.#completed };
    const subscription = { dispose: () => this.#unsubscribe(entry) };
    if (!entry.active) return subscription;

    this.#subscribers = [...this.#subscribers, entry];
    if (this.#session === null) {
      try {
        this.#open();
      } catch (err) {
        this.#unsubscribe(entry);
        throw err;
      }
    }
    return subscription;
  }

  /**
   * Complete the stream, whether or not it is open. For owners only.
   *
   * @throws {Error} `ERR_CLOSED` if the stream is already complete
   */
  [kComplete]() {
    if (this.#completed) {
      throw closedError('The stream is already closed');
    }

    this.#completed = true;
    for (const entry of this.#subscribers) entry.active = false;
    this.#subscribers = [];
    this.#resolve();
    this.#close();
  }

  #open() {
    const session = { closed: false, cleanup: undefined };
    this.#session = session;

    const push = (message, sender) => {
      if (this.#completed) {
        throw closedError('Cannot push to a closed stream');
      }
      if (!session.closed) this.#deliver(message, sender);
    };
    const cleanup = this.#publisher(push, () => this[kComplete]());

    // The publisher may have completed the stream before returning its cleanup.
    if (session.closed) runCleanup(cleanup);
    else session.cleanup = cleanup;
  }

  #close() {
    const session = this.#session;
    if (session === null) return;

    this.#session = null;
    session.closed = true;
    runCleanup(session.cleanup);
  }

  #unsubscribe(entry) {
    if (!entry.active) return;

    entry.active = false;
    this.#subscribers = this.#subscribers.filter((other) => other !== entry);
    if (this.#subscribers.length === 0) this.#close();
  }

  #deliver(message, sender) {
    for (const entry of this.#subscribers) {
      // Skip a subscriber disposed by an earlier callback of this push.
      if (!entry.active) continue;

      const { callback } = entry;
      try {
        callback(message, sender);
      } catch (err) {
        this.#report(err);
      }
    }
  }

  #report(err) {
    if (this.#onError !== undefined) {
      try {
        this.#onError(err);
        return;
      } catch (sinkErr) {
        err = sinkErr;
      }
    }
    queueMicrotask(() => {
      throw err;
    });
  }
}

/**
 * The methods `fromEvent` listens and stops listening with: `on` with `off`
 * (or `removeListener`), else `addEventListener` with
 * `removeEventListener`; `null` when there are none.
 *
 * @private
 */
function listenerMethods(emitter) {
  if (emitter == null) return null;

  const { on, off, removeListener, addEventListener, removeEventListener } = emitter;
  if (typeof on === 'function') {
    const remove = typeof off === 'function' ? off : removeListener;
    if (typeof remove === 'function') return [on, remove];
  }
  if (typeof addEventListener === 'function' && typeof removeEventListener === 'function') {
    return [addEventListener, removeEventListener];
  }
  return null;
}

function runCleanup(cleanup) {
  if (typeof cleanup === 'function') cleanup();
}

function invalidArgType(message) {
  return codedError(TypeError, 'ERR_INVALID_ARG_TYPE', message);
}

function closedError(message) {
  return codedError(Error, 'ERR_CLOSED', message);
}

module.exports = Stream;
