'use strict';

// Messages (README, Messages) through the Socket, one set of tests run
// against both builds, with a `ws` server on the other end.

const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const { once } = require('node:events');
const { Blob } = require('node:buffer');
const { randomBytes } = require('node:crypto');
const { describe, test } = require('node:test');

const { binaryCases, mixedBurst, until } = require('./helpers');
const { BUILDS, record, socketsOf, wsServer } = require('./socket-helpers');

const TIMEOUT = { timeout: 10000 };

for (const { build, Socket, defaults, Binary } of BUILDS) {
  const { socket, openSocket } = socketsOf(Socket, defaults);

  describe(`${build}: messages`, () => {
    test('JSON goes both ways', TIMEOUT, async (t) => {
      const backend = await wsServer(t);
      const s = await openSocket(t, backend.url);
      const got = record(s.messages);
      const ws = await backend.connection();

      s.send({ a: [1, 'two', null], b: { c: true } });
      s.send('hi');
      s.send(42);
      await until(() => ws.received.length === 3);
      assert.deepEqual(backend.texts(ws), ['{"a":[1,"two",null],"b":{"c":true}}', '"hi"', '42']);

      ws.send('{"x":{"y":[1,2]}}');
      ws.send('"text"');
      await got.count(2);
      assert.deepEqual(got.messages(), [{ x: { y: [1, 2] } }, 'text']);
      assert.equal(got.list[0][1], s, 'the sender is the socket');
    });

    test('a burst of texts, ASCII and not, between binary messages arrives whole and in order', TIMEOUT, async (t) => {
      const backend = await wsServer(t);
      const s = await openSocket(t, backend.url);
      const got = record(s.messages);
      const ws = await backend.connection();
      const { sent, expected } = mixedBurst();

      for (const message of sent) ws.send(message);
      await got.count(sent.length);
      const asSent = got.messages().map((message) => (message instanceof Binary ? Buffer.from(message) : message));
      assert.deepEqual(asSent, expected);
    });

    test('a message that arrives before the turn that made the socket ends reaches a subscriber of that turn', TIMEOUT, async (t) => {
      // A server in a process of its own sends while this turn still runs.
      const server = `const { WebSocketServer } = require(${JSON.stringify(require.resolve('ws'))});
        const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' }, () => console.log(wss.address().port));
        wss.on('connection', (ws) => ws.send('"first"'));`;
      const child = spawn(process.execPath, ['-e', server], { stdio: ['ignore', 'pipe', 'inherit'] });
      t.after(() => child.kill());
      const [port] = await once(child.stdout, 'data');
      const s = socket(t, `ws://127.0.0.1:${Number(port)}`);
      const until = Date.now() + 500;
      while (Date.now() < until);
      const got = record(s.messages);
      await got.count(1);
      assert.deepEqual(got.messages(), ['first']);
    });

    test('JSON is encoded during send: later changes to the object change nothing', TIMEOUT, async (t) => {
      const backend = await wsServer(t);
      const s = await openSocket(t, backend.url);
      const ws = await backend.connection();
      const value = { n: 1 };
      s.send(value);
      value.n = 2;
      await until(() => ws.received.length === 1);
      assert.deepEqual(backend.texts(ws), ['{"n":1}']);
    });

    for (const [name, value, bytes] of binaryCases()) {
      test(`a ${name} goes out as one binary frame of exactly its bytes`, TIMEOUT, async (t) => {
        const backend = await wsServer(t);
        const s = await openSocket(t, backend.url);
        const ws = await backend.connection();
        assert.equal(s.send(value), true);
        await until(() => ws.received.length === 1);
        assert.equal(ws.received[0].isBinary, true);
        assert.deepEqual(ws.received[0].data, bytes);
      });
    }

    test('a Blob keeps its place: sends after it wait behind it', TIMEOUT, async (t) => {
      const backend = await wsServer(t);
      const s = await openSocket(t, backend.url);
      const ws = await backend.connection();
      s.send('before');
      s.send(new Blob([Buffer.from('blob')]));
      s.send('after');
      await until(() => ws.received.length === 3);
      assert.deepEqual(
        ws.received.map(({ data, isBinary }) => [isBinary, data.toString()]),
        [[false, '"before"'], [true, 'blob'], [false, '"after"']]
      );
    });

    test(`binary from the server arrives in messages as ${Binary.name === 'Buffer' ? 'a' : 'an'} ${Binary.name}`, TIMEOUT, async (t) => {
      const backend = await wsServer(t);
      const s = await openSocket(t, backend.url);
      const got = record(s.messages);
      const ws = await backend.connection();
      ws.send(Buffer.from([0, 1, 2, 254, 255]));
      await got.count(1);
      const [message] = got.messages();
      assert.ok(message instanceof Binary, Object.prototype.toString.call(message));
      assert.deepEqual(Buffer.from(message), Buffer.from([0, 1, 2, 254, 255]));
    });

    test('a 1 MiB binary message goes both ways intact', TIMEOUT, async (t) => {
      const backend = await wsServer(t);
      const s = await openSocket(t, backend.url);
      const got = record(s.messages);
      const ws = await backend.connection();
      const up = randomBytes(1 << 20);
      const down = randomBytes(1 << 20);

      s.send(up);
      await until(() => ws.received.length === 1);
      assert.equal(ws.received[0].isBinary, true);
      assert.ok(ws.received[0].data.equals(up), 'socket -> server bytes');

      ws.send(down);
      await got.count(1);
      const [message] = got.messages();
      assert.ok(message instanceof Binary, Object.prototype.toString.call(message));
      assert.ok(Buffer.from(message).equals(down), 'server -> socket bytes');
    });

    test('1,000 messages from the socket arrive in order', TIMEOUT, async (t) => {
      const backend = await wsServer(t);
      const s = await openSocket(t, backend.url);
      const ws = await backend.connection();
      for (let i = 0; i < 1000; i++) assert.equal(s.send({ i }), true);
      await until(() => ws.received.length === 1000, '1000 messages at the server');
      assert.deepEqual(
        ws.received.map(({ data }) => JSON.parse(data).i),
        Array.from({ length: 1000 }, (_, i) => i)
      );
    });

    test('1,000 messages from the server arrive in order', TIMEOUT, async (t) => {
      const backend = await wsServer(t);
      const s = await openSocket(t, backend.url);
      const got = record(s.messages);
      const ws = await backend.connection();
      for (let i = 0; i < 1000; i++) ws.send(JSON.stringify({ i }));
      await got.count(1000);
      assert.deepEqual(
        got.messages().map((m) => m.i),
        Array.from({ length: 1000 }, (_, i) => i)
      );
    });

    test("bad JSON from the server emits 'error' ERR_INVALID_JSON with err.data; the socket stays open", TIMEOUT, async (t) => {
      const backend = await wsServer(t);
      const s = await openSocket(t, backend.url);
      const got = record(s.messages);
      const errors = [];
      s.on('error', (err) => errors.push(err));
      const ws = await backend.connection();

      ws.send('not json {');
      ws.send('{"ok":true}');
      await got.count(1);
      assert.equal(errors.length, 1);
      assert.equal(errors[0].code, 'ERR_INVALID_JSON');
      assert.equal(errors[0].data, 'not json {');
      assert.equal(errors[0].connection, s);
      assert.deepEqual(got.messages(), [{ ok: true }], 'the bad frame is not delivered');
      assert.equal(s.readyState, Socket.OPEN);

      ws.send('"later"');
      await got.count(2);
      assert.deepEqual(got.messages(), [{ ok: true }, 'later']);
    });

    test('send throws a TypeError for what JSON cannot encode, and sends nothing', TIMEOUT, async (t) => {
      const backend = await wsServer(t);
      const s = await openSocket(t, backend.url);
      const ws = await backend.connection();
      const cycle = { a: 1 };
      cycle.self = cycle;
      for (const [name, value] of [
        ['undefined', undefined],
        ['a function', () => {}],
        ['a symbol', Symbol('s')],
        ['a BigInt', 10n],
        ['a cycle', cycle],
        ['an object holding a BigInt', { n: 1n }]
      ]) {
        assert.throws(() => s.send(value), TypeError, name);
      }
      s.send('after');
      s.send('last');
      // Anything the refused sends had sent would have come before these.
      await until(() => ws.received.length >= 2);
      assert.deepEqual(backend.texts(ws), ['"after"', '"last"']);
    });

    test('json: false sends and receives strings raw and throws for other values', TIMEOUT, async (t) => {
      const backend = await wsServer(t);
      const s = await openSocket(t, backend.url, { json: false });
      const got = record(s.messages);
      const ws = await backend.connection();

      assert.equal(s.send('not json {'), true);
      for (const value of [{ a: 1 }, 42, null, true, ['x']]) {
        assert.throws(() => s.send(value), TypeError, JSON.stringify(value));
      }
      s.send(Buffer.from('bin'));
      await until(() => ws.received.length === 2);
      assert.deepEqual(
        ws.received.map(({ data, isBinary }) => [isBinary, data.toString()]),
        [[false, 'not json {'], [true, 'bin']]
      );

      ws.send('raw {text');
      ws.send('"quoted"');
      await got.count(2);
      assert.deepEqual(got.messages(), ['raw {text', '"quoted"']);
    });
  });
}
