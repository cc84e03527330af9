'use strict';

// TextEncoder rather than Buffer.byteLength: the browser build has no Buffer.
const encoder = new TextEncoder();

/**
 * @param {String} text A string; lone surrogates count as U+FFFD
 * @return {Number} Its length in UTF-8 bytes
 */
function utf8Length(text) {
  return encoder.encode(text).byteLength;
}

module.exports = utf8Length;
