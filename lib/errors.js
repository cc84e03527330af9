'use strict';

/**
 * Make an error with a stable `code` (the codes are listed in the README).
 *
 * @param {Function} Type The error class: `Error`, `TypeError`, `RangeError`
 * @param {String} code The `err.code`
 * @param {String} message The message
 * @param {Object} [props] More properties to set on the error
 * @return {Error} The error
 */
function codedError(Type, code, message, props) {
  const err = new Type(message);
  err.code = code;
  return Object.assign(err, props);
}

/**
 * Report an error thrown by user code (a listener, a `forEach` callback):
 * to the emitter's `'error'` listeners when it has some, otherwise rethrown
 * asynchronously so that it reaches `'uncaughtException'` without cutting
 * short the batch of events being dispatched.
 *
 * @param {EventEmitter} emitter The Server or Socket
 * @param {*} err The thrown value
 */
function reportUserError(emitter, err) {
  if (emitter.listenerCount('error') > 0) {
    try {
      emitter.emit('error', err);
      return;
    } catch (listenerErr) {
      err = listenerErr;
    }
  }
  queueMicrotask(() => {
    throw err;
  });
}

/**
 * Report an error a peer or the network caused: to `'error'` listeners
 * when there are some; dropped otherwise, since a peer
 * must not be able to crash the process. `debug` prints it.
 *
 * @param {EventEmitter} emitter The Server or Socket
 * @param {Error} err The error
 * @param {Boolean} [debug] Print dropped errors to stderr
 */
function reportPeerError(emitter, err, debug = false) {
  if (emitter.listenerCount('error') > 0) {
    try {
      emitter.emit('error', err);
    } catch (listenerErr) {
      reportUserError(emitter, listenerErr);
    }
  } else if (debug) {
    console.error('mytosis-websocket:', err);
  }
}

/**
 * The `ERR_BLOB_READ` error: a Blob given to `send` could not be read.
 *
 * @param {*} cause What reading it threw
 * @return {Error} The error
 */
function blobReadError(cause) {
  return codedError(Error, 'ERR_BLOB_READ', 'A Blob could not be read; it was not sent', { cause });
}

module.exports = { codedError, reportUserError, reportPeerError, blobReadError };
