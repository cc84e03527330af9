'use strict';

// An HTTP header name (RFC 7230 section 3.2.6 `token`).
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// What a header value must not hold: it would end the line or the head.
const LINE_BREAK = /[\r\n\0]/;

/**
 * Whether a header can be written as is, without changing the head's
 * meaning: its name is a token and its value holds no CR, LF or NUL.
 */
const isHeaderName = (name) => TOKEN.test(name);
const isHeaderValue = (value) => !LINE_BREAK.test(value);

module.exports = { isHeaderName, isHeaderValue };
