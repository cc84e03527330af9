'use strict';

const { isHeaderName } = require('./http-field');

// What the addon can write as a header value: visible ASCII, spaces, tabs.
const VALUE = /^[\t\x20-\x7e]*$/;

/**
 * Why `headers` cannot go out in a Socket's handshake, or `null` when they
 * can: they must be an object of string values, each name an HTTP token
 * and each value visible ASCII, spaces and tabs.
 *
 * @param {*} headers The `headers` option, or what its function gave
 * @return {(String|null)} The problem, as a clause
 */
function headersProblem(headers) {
  if (typeof headers !== 'object' || headers === null || Array.isArray(headers)) {
    return `they are ${describe(headers)}, not an object of string values`;
  }
  for (const [name, value] of Object.entries(headers)) {
    const shown = JSON.stringify(name);
    if (typeof value !== 'string') return `the value of ${shown} is ${describe(value)}, not a string`;
    if (!isHeaderName(name)) return `${shown} is not a header name (an HTTP token)`;
    if (!VALUE.test(value)) {
      return `the value of ${shown} holds characters other than visible ASCII, spaces and tabs`;
    }
  }
  return null;
}

function describe(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `the string ${JSON.stringify(value.slice(0, 40))}`;
  if (value === undefined) return 'undefined';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

module.exports = headersProblem;
