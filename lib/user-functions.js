'use strict';

const checkUrl = require('./check-url');
const headersProblem = require('./socket-headers');

/**
 * Call the Socket's `url` function before an attempt. Resolves with
 * `{ url }`, or with `{ problem }` when it gave no ws:// or wss:// URL,
 * plus `threw: { err }` when it threw or rejected (user code: the error is
 * reported as such).
 *
 * @param {Function} urlFunction The user's function
 * @return {Promise<Object>} The outcome
 */
async function callUrlFunction(urlFunction) {
  let url;
  try {
    url = await urlFunction();
  } catch (err) {
    return { problem: `The url function failed: ${describeThrow(err)}`, threw: { err } };
  }
  if (!isWsUrl(url)) return { problem: `The url function gave ${show(url)}, not a ws:// or wss:// URL` };
  return { url };
}

/**
 * Call the Socket's `headers` function before an attempt. Resolves with
 * `{ headers }` as `[name, value, ...]`, or with `{ problem }` when the
 * result cannot be sent, plus `threw: { err }` when it threw or rejected.
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
    return { problem: `The headers function failed: ${describeThrow(err)}`, threw: { err } };
  }
  if (problem !== null) return { problem: `The headers function gave headers that cannot be sent: ${problem}` };
  return { headers };
}

function isWsUrl(url) {
  try {
    checkUrl(url);
    return true;
  } catch {
    return false;
  }
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
