'use strict';

const { isWsUrl } = require('./check-url');
const headersProblem = require('./socket-headers');

const INVALID_URL = 'ERR_INVALID_URL';
const INVALID_OPTION = 'ERR_INVALID_OPTION';

/**
 * Call the Socket's `url` function before an attempt. Resolves with
 * `{ url }`, or with `{ code: 'ERR_INVALID_URL', problem }` when it gave no
 * URL lib/check-url.js accepts, plus `threw: { err }` when it threw or
 * rejected (user code: the error is reported as such). Both transports
 * report the failure as it is.
 *
 * @param {Function} urlFunction The user's function
 * @return {Promise<Object>} The outcome
 */
async function callUrlFunction(urlFunction) {
  let url;
  try {
    url = await urlFunction();
  } catch (err) {
    return { code: INVALID_URL, problem: `The url function failed: ${describeThrow(err)}`, threw: { err } };
  }
  if (!isWsUrl(url)) {
    return { code: INVALID_URL, problem: `The url function gave ${show(url)}, not a ws:// or wss:// URL` };
  }
  return { url };
}

/**
 * Call the Socket's `headers` function before an attempt. Resolves with
 * `{ headers }` as `[name, value, ...]`, or with
 * `{ code: 'ERR_INVALID_OPTION', problem }` when the result cannot be sent,
 * plus `threw: { err }` when it threw or rejected.
 *
 * @param {Function} headersFunction The user's function
 * @return {Promise<Object>} The outcome
 */
async function callHeadersFunction(headersFunction) {
  let problem;
  let headers;
  try {
    const given = await headersFunction();
    // Reading the result runs its getters, user code too.
    problem = headersProblem(given);
    if (problem === null) headers = Object.entries(given).flat();
  } catch (err) {
    return { code: INVALID_OPTION, problem: `The headers function failed: ${describeThrow(err)}`, threw: { err } };
  }
  if (problem !== null) {
    return { code: INVALID_OPTION, problem: `The headers function gave headers that cannot be sent: ${problem}` };
  }
  return { headers };
}

/** A value the user's url function gave, for a message. */
function show(value) {
  if (typeof value === 'string') return JSON.stringify(value);
  return typeof value === 'object' && value !== null ? 'an object' : String(value);
}

/** What a user's function threw, for a message; any value can be thrown. */
function describeThrow(err) {
  try {
    return String(err?.message ?? err);
  } catch {
    return 'a value that cannot be shown';
  }
}

module.exports = { callUrlFunction, callHeadersFunction };
