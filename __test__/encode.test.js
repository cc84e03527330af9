'use strict';

// lib/encode.js: how `send(value)` turns a value into a payload (README,
// Messages). A Buffer goes out as one binary frame, a string as one text
// frame, a Promise of a Buffer is a Blob still being read.

const assert = require('node:assert/strict');
const { File } = require('node:buffer');
const { test } = require('node:test');

const encode = require('../lib/encode');

// 16 distinct bytes, 1 to 16, in a fresh ArrayBuffer.
function backing() {
  const buffer = new ArrayBuffer(16);
  new Uint8Array(buffer).forEach((_, i, bytes) => {
    bytes[i] = i + 1;
  });
  return buffer;
}

// Flip the first byte of a view's memory, through a different view.
function flipFirstByte(view) {
  new Uint8Array(view.buffer, view.byteOffset, 1)[0] ^= 0xff;
}

const TYPED_ARRAYS = [
  Int8Array,
  Uint8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array
];

const UNENCODABLE = () => {
  const cyclic = { name: 'loop' };
  cyclic.self = cyclic;
  return [
    ['undefined', undefined],
    ['a function', () => {}],
    ['a symbol', Symbol('s')],
    ['a BigInt', 10n],
    ['an object holding a BigInt', { n: 1n }],
    ['a cyclic object', cyclic],
    ['an object whose toJSON throws', { toJSON: () => { throw new RangeError('no'); } }]
  ];
};

// --- Binary ---------------------------------------------------------------

test('a Buffer is returned as it is, not copied', () => {
  const buffer = Buffer.from('abc');
  assert.equal(encode(buffer, true), buffer);
  assert.equal(encode(buffer, false), buffer);
});

test('a Buffer over part of a larger one is returned as it is', () => {
  const part = Buffer.from('0123456789').subarray(2, 5);
  assert.equal(encode(part, true), part);
});

for (const TypedArray of TYPED_ARRAYS) {
  test(`a ${TypedArray.name} over part of a buffer gives exactly its bytes, sharing memory`, () => {
    const buffer = backing();
    const view = new TypedArray(buffer, 8, 8 / TypedArray.BYTES_PER_ELEMENT);
    const out = encode(view, true);

    assert.ok(Buffer.isBuffer(out));
    assert.deepEqual(out, Buffer.from([9, 10, 11, 12, 13, 14, 15, 16]));
    flipFirstByte(view);
    assert.equal(out[0], 9 ^ 0xff, 'the Buffer is a view of the same memory');
  });
}

test('a DataView over part of a buffer gives exactly its bytes, sharing memory', () => {
  const view = new DataView(backing(), 3, 5);
  const out = encode(view, true);

  assert.ok(Buffer.isBuffer(out));
  assert.deepEqual(out, Buffer.from([4, 5, 6, 7, 8]));
  flipFirstByte(view);
  assert.equal(out[0], 4 ^ 0xff, 'the Buffer is a view of the same memory');
});

test('an ArrayBuffer gives all its bytes', () => {
  const out = encode(backing(), true);
  assert.ok(Buffer.isBuffer(out));
  assert.deepEqual(out, Buffer.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]));
});

test('an empty ArrayBuffer gives an empty Buffer', () => {
  const out = encode(new ArrayBuffer(0), true);
  assert.ok(Buffer.isBuffer(out));
  assert.equal(out.length, 0);
});

test('a SharedArrayBuffer is copied', () => {
  const shared = new SharedArrayBuffer(4);
  new Uint8Array(shared).set([1, 2, 3, 4]);
  const out = encode(shared, true);

  assert.ok(Buffer.isBuffer(out));
  assert.deepEqual(out, Buffer.from([1, 2, 3, 4]));
  new Uint8Array(shared)[0] = 99;
  assert.equal(out[0], 1, 'a later write to the SharedArrayBuffer changes nothing');
});

test('a view of a SharedArrayBuffer is copied, exactly its bytes', () => {
  const shared = new SharedArrayBuffer(8);
  new Uint8Array(shared).set([1, 2, 3, 4, 5, 6, 7, 8]);
  const view = new Uint8Array(shared, 2, 3);
  const out = encode(view, true);

  assert.ok(Buffer.isBuffer(out));
  assert.deepEqual(out, Buffer.from([3, 4, 5]));
  view[0] = 99;
  assert.equal(out[0], 3, 'a later write to the SharedArrayBuffer changes nothing');
});

test('a Blob gives a Promise of a Buffer of its bytes', async () => {
  const blob = new Blob(['ab', new Uint8Array([0, 255])]);
  for (const json of [true, false]) {
    const out = encode(blob, json);
    assert.ok(out instanceof Promise);
    const bytes = await out;
    assert.ok(Buffer.isBuffer(bytes));
    assert.deepEqual(bytes, Buffer.from([0x61, 0x62, 0, 255]));
  }
});

test('a File gives a Promise of a Buffer of its bytes', async () => {
  const file = new File([Buffer.from('file body')], 'name.txt', { type: 'text/plain' });
  const out = encode(file, true);
  assert.ok(out instanceof Promise);
  assert.deepEqual(await out, Buffer.from('file body'));
});

// --- JSON -----------------------------------------------------------------

test('a string is JSON-encoded: send("hi") sends "hi" with quotes', () => {
  assert.equal(encode('hi', true), '"hi"');
  assert.equal(encode('', true), '""');
  assert.equal(encode('line\n"q"', true), '"line\\n\\"q\\""');
});

test('numbers, booleans and null are JSON-encoded', () => {
  assert.equal(encode(42, true), '42');
  assert.equal(encode(-1.5, true), '-1.5');
  assert.equal(encode(true, true), 'true');
  assert.equal(encode(null, true), 'null');
});

test('objects and arrays are JSON-encoded, nested ones included', () => {
  const value = { a: 1, b: [1, 'two', { c: null }], d: { e: { f: [] } } };
  assert.equal(encode(value, true), JSON.stringify(value));
  assert.deepEqual(JSON.parse(encode(value, true)), value);
  assert.equal(encode([], true), '[]');
  assert.equal(encode({}, true), '{}');
});

test("nested values follow JSON's rules", () => {
  const value = {
    skipped: undefined,
    fn: () => {},
    nan: NaN,
    inf: Infinity,
    date: new Date(0),
    custom: { toJSON: () => 'custom' },
    list: [undefined, () => {}, Symbol('s')],
    map: new Map([[1, 2]])
  };
  assert.equal(
    encode(value, true),
    '{"nan":null,"inf":null,"date":"1970-01-01T00:00:00.000Z","custom":"custom",' +
      '"list":[null,null,null],"map":{}}'
  );
});

test('a binary value nested in an object is JSON-encoded, not sent as binary', () => {
  assert.equal(encode({ data: Buffer.from([1]) }, true), '{"data":{"type":"Buffer","data":[1]}}');
});

test('the object is encoded as it is at the call', () => {
  const value = { n: 1 };
  const out = encode(value, true);
  value.n = 2;
  assert.equal(out, '{"n":1}');
});

for (const [name, value] of UNENCODABLE()) {
  test(`${name} throws a TypeError`, () => {
    assert.throws(() => encode(value, true), TypeError);
  });
}

// --- json: false -----------------------------------------------------------

test('with json: false a string is returned unchanged', () => {
  for (const text of ['raw', '', '"already quoted"', 'not json {', 'ünïcødé']) {
    assert.equal(encode(text, false), text);
  }
});

test('with json: false binary values are still binary', () => {
  assert.deepEqual(encode(new Uint8Array([1, 2]), false), Buffer.from([1, 2]));
  assert.deepEqual(encode(new Uint8Array([3]).buffer, false), Buffer.from([3]));
});

test('with json: false any other value throws a TypeError', () => {
  for (const value of [{ a: 1 }, [1], 42, true, null, undefined, 10n, Symbol('s'), () => {}]) {
    assert.throws(() => encode(value, false), TypeError, String(typeof value));
  }
});
