'use strict';

const { STATUS_CODES } = require('node:http');
const { inspect } = require('node:util');

const { codedError } = require('./errors');
const { isHeaderName, isHeaderValue } = require('./http-field');

/**
 * Decide an upgrade the way `ws` users expect: `verifyClient(info)` (sync
 * or async) or ws's `verifyClient(info, cb)`, then `handleProtocols`. It
 * fails closed: nothing but a clear acceptance lets a client in.
 *
 * - ws's `cb(false, code, reason, headers)` always refuses: with `code`
 *   when it is an integer from 300 to 599 (a 3xx with a `Location` header
 *   is a redirect), otherwise with 401;
 * - a falsy result refuses with 401;
 * - an object with an own `status` property never accepts: an integer
 *   `status` from 300 to 599 refuses with it, `reason` as the body and
 *   optional `headers`; any other `status` is a mistake, answered 500 and
 *   reported through `onThrow`;
 * - a throw or rejection refuses with 500 and is reported through
 *   `onThrow`;
 * - anything else accepts and becomes `connection.context`.
 *
 * The headers of a refusal are checked here, so that the addon, which
 * writes every refusal, never gets a bad one: a name that is not an HTTP
 * token, or a value with CR, LF or NUL, answers 500 and is reported instead.
 *
 * @param {Object} options The Server's `verifyClient` and `handleProtocols`
 * @param {Object} info `{ origin, headers, remoteAddress, url, req }`
 * @param {String[]} protocols The subprotocols the client offers
 * @param {Function} onThrow Receives what user code threw, and the errors
 *     made for its mistakes
 * @return {Promise<Object>} `{ accept, status, reason, headers, protocol,
 *     context }`; `headers` as `[name, value, ...]`
 */
async function decideUpgrade(options, info, protocols, onThrow) {
  try {
    let context;
    if (options.verifyClient !== undefined) {
      const verdict = await verify(options.verifyClient, info);
      if (verdict.refuse) return verdict.refusal;
      context = verdict.context;
    }
    let protocol = protocols[0] ?? '';
    if (options.handleProtocols !== undefined) {
      const chosen = await options.handleProtocols(protocols, info);
      protocol = protocols.includes(chosen) ? chosen : '';
    }
    return { accept: true, status: 101, reason: '', headers: [], protocol, context };
  } catch (err) {
    onThrow(err);
    return refusal(500, STATUS_CODES[500]);
  }
}

/**
 * Call `verifyClient` in its form and read its answer: `{ refuse: true,
 * refusal }` or `{ refuse: false, context }`. Throws what it threw, and the
 * `ERR_INVALID_ARG_VALUE` errors of a bad status or header.
 */
async function verify(verifyClient, info) {
  if (verifyClient.length >= 2) {
    // ws's callback form: cb(result, code, message, headers). Only the
    // first call counts.
    const [result, code, message, headers] = await new Promise((resolve) => {
      verifyClient(info, (...args) => resolve(args));
    });
    if (result) return { refuse: false, context: result };
    const status = isRefusalStatus(code) ? code : 401;
    const body = message === undefined || message === null ? STATUS_CODES[status] : String(message);
    return { refuse: true, refusal: refusal(status, body, checkHeaders(headers)) };
  }
  const result = await verifyClient(info);
  if (!result) return { refuse: true, refusal: refusal(401, STATUS_CODES[401]) };
  if ((typeof result === 'object' || typeof result === 'function') && Object.hasOwn(result, 'status')) {
    const { status } = result;
    if (!isRefusalStatus(status)) {
      throw invalidValue(
        `verifyClient answered with status ${inspect(status)}: a refusal's status must be an ` +
          'integer from 300 to 599, and an accepted context must not have a "status" property'
      );
    }
    const body = String(result.reason ?? '');
    return { refuse: true, refusal: refusal(status, body, checkHeaders(result.headers)) };
  }
  return { refuse: false, context: result };
}

function isRefusalStatus(status) {
  return Number.isInteger(status) && status >= 300 && status <= 599;
}

/**
 * Check a refusal's `headers` object and flatten it to `[name, value, ...]`.
 *
 * @throws {RangeError} `ERR_INVALID_ARG_VALUE` for a bad name or value
 */
function checkHeaders(headers) {
  if (headers === undefined || headers === null) return [];
  if (typeof headers !== 'object' || Array.isArray(headers)) {
    throw invalidValue(
      `verifyClient refused with headers ${inspect(headers)}: they must be an object of names to values`
    );
  }
  const flat = [];
  for (const [name, value] of Object.entries(headers)) {
    if (!isHeaderName(name)) {
      throw invalidValue(
        `verifyClient refused with the header name ${JSON.stringify(name)}, which is not a valid ` +
          'HTTP header name; the upgrade was answered 500'
      );
    }
    const text = String(value);
    if (!isHeaderValue(text)) {
      throw invalidValue(
        `verifyClient refused with a "${name}" header whose value holds CR, LF or NUL; ` +
          'the upgrade was answered 500'
      );
    }
    flat.push(name, text);
  }
  return flat;
}

function invalidValue(message) {
  return codedError(RangeError, 'ERR_INVALID_ARG_VALUE', message);
}

function refusal(status, reason, headers = []) {
  return { accept: false, status, reason, headers, protocol: '', context: undefined };
}

module.exports = decideUpgrade;
