'use strict';

// A server connection's id: a random UUID v4, made from text written in
// batches of 128 (lib/connection-id.js). Enough ids are made here to cross
// several batches.

const test = require('node:test');
const assert = require('node:assert');

const connectionId = require('../lib/connection-id');

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test('connection ids are distinct UUID v4 strings across batches', () => {
  const ids = Array.from({ length: 1000 }, connectionId);
  for (const id of ids) assert.match(id, UUID_V4);
  assert.strictEqual(new Set(ids).size, ids.length);
});

test('every random hex digit of a connection id varies', () => {
  const ids = Array.from({ length: 1000 }, connectionId);
  for (let at = 0; at < 36; at++) {
    const digits = new Set(ids.map((id) => id[at]));
    if ([8, 13, 18, 23].includes(at)) assert.deepStrictEqual([...digits], ['-']);
    else if (at === 14) assert.deepStrictEqual([...digits], ['4'], 'the version digit');
    else if (at === 19) assert.strictEqual(digits.size, 4, 'the variant digit: 8, 9, a or b');
    else assert.strictEqual(digits.size, 16, `the digit at ${at} takes every value`);
  }
});
