'use strict';

const { codedError } = require('./errors');
const utf8Length = require('./utf8-length');

/**
 * Check the arguments of `close(code, reason)`: codes 1000 and 3000-4999
 * (the ones an application may send), and a reason of at most 123 UTF-8
 * bytes so that the close frame stays within 125 bytes.
 *
 * @param {Number} code The close code
 * @param {String} reason The close reason
 * @throws {RangeError} `ERR_INVALID_ARG_VALUE` if either is out of range
 */
function checkClose(code, reason) {
  if (!(code === 1000 || isApplicationCode(code))) {
    throw codedError(
      RangeError,
      'ERR_INVALID_ARG_VALUE',
      `The close code must be 1000 or in 3000-4999, received ${String(code)}`
    );
  }
  checkReason(reason);
}

/**
 * Check the options of `server.close({ code, reason, timeout })`: besides
 * the codes of `checkClose`, a server may say why it goes away: 1001 (going
 * away), 1002, 1003, 1007-1011 and 1012-1014 (restart, try again later,
 * bad gateway). 1004-1006 and 1015 are never sent in a close frame.
 *
 * @param {Number} code The close code
 * @param {String} reason The close reason
 * @param {Number} timeout The grace period in milliseconds
 * @throws {RangeError} `ERR_INVALID_ARG_VALUE` for a bad code or reason
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` for a timeout that is not a
 *     non-negative number
 */
function checkServerClose(code, reason, timeout) {
  const protocolCode = Number.isInteger(code) && code >= 1000 && code <= 1014;
  if (!((protocolCode && (code <= 1003 || code >= 1007)) || isApplicationCode(code))) {
    throw codedError(
      RangeError,
      'ERR_INVALID_ARG_VALUE',
      `The close code must be in 1000-1003, 1007-1014 or 3000-4999, received ${String(code)}`
    );
  }
  checkReason(reason);
  if (typeof timeout !== 'number' || !(timeout >= 0)) {
    throw codedError(
      TypeError,
      'ERR_INVALID_ARG_TYPE',
      `The "timeout" option of close() must be a non-negative number, received ${String(timeout)}`
    );
  }
}

// The longest topic name, in UTF-8 bytes (README, "Topics").
const MAX_TOPIC_BYTES = 1024;

/**
 * Check a topic name: a non-empty string of at most MAX_TOPIC_BYTES UTF-8
 * bytes.
 *
 * @param {String} topic The topic
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` if it is not a string
 * @throws {RangeError} `ERR_INVALID_ARG_VALUE` if it is empty or too long
 */
function checkTopic(topic) {
  if (typeof topic !== 'string') {
    throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE', `A topic must be a string, received ${typeof topic}`);
  }
  if (topic === '' || utf8Length(topic) > MAX_TOPIC_BYTES) {
    throw codedError(
      RangeError,
      'ERR_INVALID_ARG_VALUE',
      `A topic must be a non-empty string of at most ${MAX_TOPIC_BYTES} UTF-8 bytes`
    );
  }
}

function isApplicationCode(code) {
  return Number.isInteger(code) && code >= 3000 && code <= 4999;
}

function checkReason(reason) {
  if (typeof reason !== 'string' || utf8Length(reason) > 123) {
    throw codedError(
      RangeError,
      'ERR_INVALID_ARG_VALUE',
      'The close reason must be a string of at most 123 UTF-8 bytes'
    );
  }
}

module.exports = { checkClose, checkServerClose, checkTopic };
