'use strict';

// The Socket's life cycle (README, Socket): the connection loop, the
// offline queue and closing, one set of tests run against both builds. The Node build
// runs it in Rust (the native transport), the browser build in JS
// (lib/websocket-transport.js, here over the `ws` package); both must
// follow one policy. The waits between attempts are checked
// against one table in __test__/retry-delay.test.js.

const assert = require('node:assert/strict');
const { describe, test } = require('node:test');

const { delay, until } = require('./helpers');
const { BUILDS, closedPort, lifecycle, next, silentServer, socketsOf, wsServer } = require('./socket-helpers');

const TIMEOUT = { timeout: 10000 };
const FAST = { jitter: 0, minReconnectionDelay: 20, reconnectionDelayGrowFactor: 2 };

for (const { build, Socket, defaults } of BUILDS) {
  const { socket, openSocket } = socketsOf(Socket, defaults);

  describe(`${build}: the connection loop`, () => {
    test('the first attempt is immediate', TIMEOUT, async (t) => {
      const backend = await wsServer(t);
      const start = Date.now();
      const s = socket(t, backend.url, { minReconnectionDelay: 5000 });
      assert.equal(s.readyState, Socket.CONNECTING);
      await next(s, 'open');
      assert.ok(Date.now() - start < 1000, `opened after ${Date.now() - start} ms`);
      assert.equal(s.readyState, Socket.OPEN);
      assert.equal(s.offline, false);
      assert.equal(s.url, backend.url);
    });

    test("a drop emits 'close' willReconnect, then 'reconnecting' and 'open'", TIMEOUT, async (t) => {
      const backend = await wsServer(t);
      const s = await openSocket(t, backend.url, FAST);
      const life = lifecycle(s);
      const reopened = next(s, 'open');
      (await backend.connection(0)).close(4000, 'bye');
      await reopened;
      assert.deepEqual(life.names(), ['close', 'reconnecting', 'open']);
      assert.deepEqual(life.values('close'), [{ code: 4000, reason: 'bye', wasClean: true, willReconnect: true }]);
      assert.deepEqual(life.values('reconnecting'), [{ attempt: 1, delay: 20 }]);
      assert.equal(s.retryCount, 1);
    });

    test('the retry count goes back to 0 only after a connection stayed open minUptime', TIMEOUT, async (t) => {
      // Two refused attempts, then a server that closes every connection
      // after `hold` ms: the retry after it counts on (3) when the connection
      // was shorter than minUptime, and starts again (1) when it was not.
      for (const [minUptime, hold, retry] of [
        [5000, 30, { attempt: 3, delay: 80 }],
        [50, 150, { attempt: 1, delay: 20 }]
      ]) {
        const backend = await wsServer(t);
        backend.wss.on('connection', (ws) => setTimeout(() => ws.close(4000), hold));
        const refused = `ws://127.0.0.1:${await closedPort()}`;
        let calls = 0;
        const s = socket(t, () => (++calls <= 2 ? refused : backend.url), { ...FAST, minUptime });
        const life = lifecycle(s);
        await next(s, 'open');
        await next(s, 'reconnecting');
        s.close();
        assert.deepEqual(life.values('reconnecting'), [
          { attempt: 1, delay: 20 },
          { attempt: 2, delay: 40 },
          retry
        ], `minUptime ${minUptime}, open ${hold} ms`);
      }
    });

    test('connectionTimeout abandons a server that never answers: ERR_TIMEOUT, then a retry', TIMEOUT, async (t) => {
      const silent = await silentServer(t);
      const s = socket(t, silent.url, { ...FAST, connectionTimeout: 150 });
      const life = lifecycle(s);
      const start = Date.now();
      const err = await next(s, 'error');
      const elapsed = Date.now() - start;
      assert.equal(err.code, 'ERR_TIMEOUT');
      assert.match(err.message, /150 ms/);
      assert.ok(elapsed >= 140 && elapsed < 1000, `timed out after ${elapsed} ms`);
      await until(() => silent.sockets.length >= 2, 'the second attempt');
      assert.deepEqual(life.values('reconnecting')[0], { attempt: 1, delay: 20 });
      await until(() => silent.sockets.some((sock) => sock.closed), 'the abandoned connection to close');
      assert.equal(s.readyState, Socket.CONNECTING);
    });

    test('waits past the 2^31 ms timer limit (Infinity, 1e300) never fire early', TIMEOUT, async (t) => {
      const silent = await silentServer(t);
      const waiting = socket(t, silent.url, { connectionTimeout: Infinity });
      const retrying = socket(t, `ws://127.0.0.1:${await closedPort()}`, {
        minReconnectionDelay: 1e300,
        maxReconnectionDelay: Infinity,
        jitter: 0
      });
      const [life1, life2] = [lifecycle(waiting), lifecycle(retrying)];
      await next(retrying, 'reconnecting');
      // A wait past the timer limit that fired early would fire at once: a
      // 100 ms connectionTimeout started after them fires later than that.
      const marker = socket(t, silent.url, { connectionTimeout: 100, maxRetries: 0 });
      marker.on('error', () => {});
      await next(marker, 'close');
      assert.deepEqual(life1.names(), []);
      assert.deepEqual(life2.names(), ['error', 'reconnecting']);
      assert.deepEqual(life2.values('error'), ['ERR_CONNECT']);
      assert.deepEqual(life2.values('reconnecting'), [{ attempt: 1, delay: 1e300 }]);
    });

    test('connectionTimeout includes the time the url function takes', TIMEOUT, async (t) => {
      const s = socket(t, () => new Promise(() => {}), { ...FAST, connectionTimeout: 100 });
      const life = lifecycle(s);
      await next(s, 'reconnecting');
      assert.deepEqual(life.names(), ['error', 'reconnecting']);
      assert.deepEqual(life.values('error'), ['ERR_TIMEOUT']);
    });

    test('after maxRetries it gives up with a final close; sends queue; reconnect() connects', TIMEOUT, async (t) => {
      const backend = await wsServer(t);
      let target = `ws://127.0.0.1:${await closedPort()}`;
      const s = socket(t, () => target, { ...FAST, maxRetries: 2 });
      const life = lifecycle(s);
      const final = await next(s, 'close');
      assert.deepEqual(final, { code: 1006, reason: '', wasClean: false, willReconnect: false });
      assert.equal(s.readyState, Socket.CLOSED);
      assert.deepEqual(life.names(), ['error', 'reconnecting', 'error', 'reconnecting', 'error', 'close']);
      assert.deepEqual(life.values('error'), ['ERR_CONNECT', 'ERR_CONNECT', 'ERR_CONNECT']);
      // Nothing marks the absence of a third retry: wait longer than its
      // delay (80 ms) would be.
      await delay(200);
      assert.equal(life.list.length, 6, 'nothing after giving up');

      assert.equal(s.send('kept'), true);
      target = backend.url;
      s.reconnect();
      assert.equal(s.readyState, Socket.CONNECTING);
      await next(s, 'open');
      assert.equal(s.retryCount, 0);
      const ws = await backend.connection();
      await until(() => ws.received.length === 1);
      assert.deepEqual(backend.texts(ws), ['"kept"']);
    });

    test("ERR_CONNECT carries the system error as its cause, as Node's net reports it", TIMEOUT, async (t) => {
      const port = await closedPort();
      const s = socket(t, `ws://127.0.0.1:${port}`, { ...FAST, maxRetries: 0 });
      const err = await next(s, 'error');
      assert.equal(err.code, 'ERR_CONNECT');
      assert.match(err.message, new RegExp(`ECONNREFUSED 127\\.0\\.0\\.1:${port}`));
      assert.ok(err.cause instanceof Error);
      assert.equal(err.cause.code, 'ECONNREFUSED');
      assert.equal(err.cause.syscall, 'connect');
    });

    test('reconnect() after close() opens again', TIMEOUT, async (t) => {
      const backend = await wsServer(t);
      const s = await openSocket(t, backend.url);
      const closed = next(s, 'close');
      s.close();
      assert.equal(s.readyState, Socket.CLOSING);
      assert.equal((await closed).willReconnect, false);
      assert.equal(s.readyState, Socket.CLOSED);
      assert.throws(() => s.send('x'), { code: 'ERR_CLOSED' });

      s.reconnect();
      await next(s, 'open');
      s.send('again');
      const ws = await backend.connection(1);
      await until(() => ws.received.length === 1);
      assert.deepEqual(backend.texts(ws), ['"again"']);
    });

    test('reconnect() while open ends the connection and connects at once', TIMEOUT, async (t) => {
      const backend = await wsServer(t);
      const s = await openSocket(t, backend.url, { minReconnectionDelay: 5000 });
      const life = lifecycle(s);
      const reopened = next(s, 'open');
      s.reconnect(4002, 'again');
      assert.deepEqual(await (await backend.connection(0)).closed, { code: 4002, reason: 'again' });
      await reopened;
      assert.deepEqual(life.names(), ['close', 'open']);
      assert.equal(life.values('close')[0].willReconnect, true);
    });

    test('startClosed does not connect until reconnect()', TIMEOUT, async (t) => {
      const backend = await wsServer(t);
      const s = socket(t, backend.url, { startClosed: true });
      assert.equal(s.readyState, Socket.CLOSED);
      // A Socket made after it connects at once, as an attempt of this one
      // would have.
      await openSocket(t, `${backend.url}/after`);
      assert.deepEqual(backend.conns.map((ws) => ws.req.url), ['/after']);
      s.reconnect();
      await next(s, 'open');
      assert.equal(backend.conns.length, 2);
    });

    test('a url function, sync or async, is called before every attempt', TIMEOUT, async (t) => {
      const backend = await wsServer(t);
      for (const [kind, url] of [
        ['sync', () => backend.url],
        ['async', async () => backend.url]
      ]) {
        let calls = 0;
        const s = await openSocket(t, () => (calls++, url()), FAST);
        assert.match(s.id, /^mytosis-websocket:[0-9a-f-]{36}$/);
        assert.equal(s.url, backend.url);
        assert.equal(calls, 1, kind);
        const reopened = next(s, 'open');
        (await backend.connection(backend.conns.length - 1)).close(4000);
        await reopened;
        assert.equal(calls, 2, kind);
        s.close();
      }
    });

    test('a url function that rejects or gives a bad URL: ERR_INVALID_URL, then a retry', TIMEOUT, async (t) => {
      const backend = await wsServer(t);
      const failures = [
        () => Promise.reject(new Error('no route')),
        () => {
          throw new Error('thrown');
        },
        () => 'http://example.invalid/'
      ];
      let calls = 0;
      const s = socket(t, () => (calls < failures.length ? failures[calls++]() : backend.url), FAST);
      const errors = [];
      s.on('error', (err) => errors.push(err));
      await next(s, 'open');
      assert.deepEqual(errors.map((e) => e.code), ['ERR_INVALID_URL', 'ERR_INVALID_URL', 'ERR_INVALID_URL']);
      assert.match(errors[0].message, /no route/);
      assert.equal(errors[0].cause.message, 'no route');
      assert.match(errors[2].message, /http:\/\/example\.invalid/);
      assert.equal(s.retryCount, 3);
    });

    test('a malformed ws:// URL, from a url function or given, is ERR_INVALID_URL in both builds', TIMEOUT, async (t) => {
      const backend = await wsServer(t);
      // The WHATWG parser takes each of these; no request line can carry
      // them as written, and a WebSocket refuses a fragment.
      const malformed = ['ws:///127.0.0.1', 'ws:127.0.0.1', `${backend.url}/a b`, `${backend.url}/#x`, 'ws://exämple.com/'];
      for (const url of malformed) {
        assert.throws(() => new Socket(url, { ...defaults, startClosed: true }), { code: 'ERR_INVALID_URL' }, url);
      }
      let calls = 0;
      const s = socket(t, () => (calls < malformed.length ? malformed[calls++] : backend.url), FAST);
      const errors = [];
      s.on('error', (err) => errors.push(err));
      await next(s, 'open');
      assert.deepEqual(
        errors.map((e) => [e.code, e.name]),
        malformed.map(() => ['ERR_INVALID_URL', 'TypeError'])
      );
      errors.forEach((e, i) => assert.ok(e.message.includes(JSON.stringify(malformed[i])), e.message));
      assert.equal(backend.conns.length, 1);
    });

    test("with debug, every step is logged to the console", TIMEOUT, async (t) => {
      const lines = [];
      t.mock.method(console, 'error', (...args) => lines.push(args.join(' ')));
      const backend = await wsServer(t);
      const s = await openSocket(t, backend.url, { ...FAST, debug: true, maxRetries: 1 });
      const final = next(s, 'close', (e) => !e.willReconnect);
      backend.wss.close();
      (await backend.connection()).close(4000, 'bye');
      await final;
      const log = lines.join('\n');
      for (const step of [
        `connecting to ${backend.url}`,
        `open ${backend.url}`,
        "close 4000 'bye'",
        'retry 1 in 20 ms',
        'giving up'
      ]) {
        assert.ok(log.includes(step), `logs '${step}' in:\n${log}`);
      }
    });
  });

  describe(`${build}: the offline queue`, () => {
    test("queued messages go in order, before a send in the 'open' listener", TIMEOUT, async (t) => {
      const backend = await wsServer(t);
      const s = socket(t, backend.url);
      assert.equal(s.send('q1'), true);
      assert.equal(s.send({ q: 2 }), true);
      assert.equal(s.send(Uint8Array.from([3])), true);
      s.on('open', () => s.send('in-open'));
      await next(s, 'open');
      const ws = await backend.connection();
      await until(() => ws.received.length === 4);
      assert.deepEqual(
        ws.received.map(({ data, isBinary }) => [isBinary, isBinary ? [...data] : data.toString()]),
        [[false, '"q1"'], [false, '{"q":2}'], [true, [3]], [false, '"in-open"']]
      );
    });

    test('maxEnqueuedMessages bounds the queue: send returns false and emits ERR_QUEUE_FULL', TIMEOUT, async (t) => {
      const backend = await wsServer(t);
      const s = socket(t, backend.url, { startClosed: true, maxEnqueuedMessages: 2 });
      const errors = [];
      s.on('error', (err) => errors.push(err));
      assert.equal(s.send('a'), true);
      assert.equal(s.send('é'), true);
      assert.equal(s.bufferedAmount, 3 + 4, 'the encoded bytes queued');
      assert.equal(s.send('c'), false);
      assert.deepEqual(errors.map((e) => e.code), ['ERR_QUEUE_FULL']);

      s.reconnect();
      await next(s, 'open');
      assert.equal(s.send('after'), true);
      const ws = await backend.connection();
      await until(() => ws.received.length === 3);
      assert.deepEqual(backend.texts(ws), ['"a"', '"é"', '"after"']);
    });

    test('messages sent while the server is away arrive after the reconnect, in order', TIMEOUT, async (t) => {
      const backend = await wsServer(t);
      const s = await openSocket(t, backend.url, FAST);
      s.on('close', (e) => {
        if (!e.willReconnect) return;
        assert.equal(s.offline, true);
        for (let i = 0; i < 10; i++) assert.equal(s.send({ offline: i }), true);
      });
      const reopened = next(s, 'open');
      (await backend.connection(0)).close(4000);
      await reopened;
      s.send('online');
      const ws = await backend.connection(1);
      await until(() => ws.received.length === 11);
      assert.deepEqual(backend.texts(ws), [
        ...Array.from({ length: 10 }, (_, i) => JSON.stringify({ offline: i })),
        '"online"'
      ]);
    });

    test("close() while offline drops the queue: one 'error' ERR_CLOSED with err.dropped", TIMEOUT, async (t) => {
      const s = socket(t, `ws://127.0.0.1:${await closedPort()}`, { ...FAST, minReconnectionDelay: 5000 });
      await next(s, 'reconnecting');
      for (let i = 0; i < 3; i++) s.send(i);
      assert.ok(s.bufferedAmount > 0);
      const life = lifecycle(s);
      const errors = [];
      s.on('error', (err) => errors.push(err));
      const final = next(s, 'close');
      s.close(4001, 'gone');
      assert.deepEqual(await final, { code: 4001, reason: 'gone', wasClean: false, willReconnect: false });
      assert.deepEqual(errors.map((e) => [e.code, e.dropped]), [['ERR_CLOSED', 3]]);
      assert.deepEqual(life.names(), ['error', 'close']);
      assert.deepEqual(life.values('error'), ['ERR_CLOSED']);
      assert.equal(s.bufferedAmount, 0);
      assert.equal(s.readyState, Socket.CLOSED);
      assert.throws(() => s.send('x'), { code: 'ERR_CLOSED' });
    });

    test('close() while open sends what was sent before it, then the close frame', TIMEOUT, async (t) => {
      const backend = await wsServer(t);
      const s = await openSocket(t, backend.url);
      const ws = await backend.connection();
      for (let i = 0; i < 100; i++) s.send(i);
      const final = next(s, 'close');
      s.close(4001, 'done');
      assert.deepEqual(await ws.closed, { code: 4001, reason: 'done' });
      assert.deepEqual(backend.texts(ws), Array.from({ length: 100 }, (_, i) => String(i)));
      assert.deepEqual(await final, { code: 4001, reason: 'done', wasClean: true, willReconnect: false });
    });
  });

  describe(`${build}: closing`, () => {
    test("close(4001, 'done') reaches the server and emits one clean 'close'", TIMEOUT, async (t) => {
      const backend = await wsServer(t);
      const s = await openSocket(t, backend.url);
      const ws = await backend.connection();
      const closes = [];
      s.on('close', (event) => closes.push(event));

      s.close(4001, 'done');
      assert.deepEqual(await ws.closed, { code: 4001, reason: 'done' });
      await until(() => closes.length >= 1);
      // Nothing marks the absence of a second 'close': a short wait.
      await delay(100);
      assert.deepEqual(closes, [{ code: 4001, reason: 'done', wasClean: true, willReconnect: false }]);
      assert.equal(s.readyState, Socket.CLOSED);
    });

    test("after close(), send throws ERR_CLOSED", TIMEOUT, async (t) => {
      const backend = await wsServer(t);
      const s = await openSocket(t, backend.url);
      const closed = next(s, 'close');
      s.close();
      assert.throws(() => s.send('x'), (err) => {
        assert.ok(err instanceof Error);
        assert.equal(err.code, 'ERR_CLOSED');
        return true;
      });
      await closed;
      assert.throws(() => s.send('x'), { code: 'ERR_CLOSED' });
    });

    test('close() with a code other than 1000 or 3000-4999, or a long reason, throws a RangeError', TIMEOUT, async (t) => {
      const backend = await wsServer(t);
      const s = await openSocket(t, backend.url);
      for (const code of [1001, 1005, 1006, 999, 2999, 5000, 3000.5]) {
        assert.throws(() => s.close(code), RangeError, String(code));
      }
      assert.throws(() => s.close(1000, 'x'.repeat(124)), RangeError);
      assert.throws(() => s.close(1000, 'é'.repeat(62)), RangeError, '124 UTF-8 bytes');
      // Nothing happened: the socket is still open and still sends.
      assert.equal(s.readyState, Socket.OPEN);
      const ws = await backend.connection();
      s.send('still open');
      await until(() => ws.received.length === 1);
      assert.deepEqual(backend.texts(ws), ['"still open"']);
    });
  });
}
