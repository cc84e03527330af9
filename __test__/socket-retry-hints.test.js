'use strict';

// What decides the next attempt besides the retry formula: a `headers`
// function called before every attempt (a fresh token each time), the
// user's url and headers functions failing (user code: thrown when nobody
// listens for 'error', and a failed attempt), a 401 or 403 answer (the end
// of the retries unless a function can give a fresh token), a
// `Retry-After` on a 429 or 503 answer, and close codes 1012 and 1013.

const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const { once } = require('node:events');
const http = require('node:http');
const path = require('node:path');
const { describe, test } = require('node:test');

const WebSocket = require('ws');

const { Socket } = require('..');
const BrowserSocket = require('../browser');
const { defer, delay, until } = require('./helpers');
const { BUILDS, lifecycle, next, socket, socketsOf, wsServer } = require('./socket-helpers');

const TIMEOUT = { timeout: 10000 };
const FAST = { jitter: 0, minReconnectionDelay: 50 };

/**
 * An http server that answers every upgrade with `answer(i)` (a status and
 * headers) for the i-th request; `requests` lists `{ url, headers, at }`.
 */
async function answering(t, answer) {
  const requests = [];
  const httpServer = http.createServer((req, res) => res.end());
  httpServer.on('upgrade', (req, sock) => {
    // The client may reset the connection once it has read the answer.
    sock.on('error', () => {});
    requests.push({ url: req.url, headers: req.headers, at: performance.now() });
    const { status, headers = {} } = answer(requests.length - 1);
    const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`);
    sock.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\n${lines.join('')}Content-Length: 0\r\nConnection: close\r\n\r\n`);
  });
  httpServer.listen(0, '127.0.0.1');
  await once(httpServer, 'listening');
  defer(t, () => new Promise((resolve) => httpServer.close(resolve)));
  return { requests, url: `ws://127.0.0.1:${httpServer.address().port}` };
}

/**
 * A ws server that accepts an upgrade only with a token other than
 * `Bearer token-1` and answers 401 otherwise.
 */
function tokenServer(t) {
  return wsServer(t, {
    verifyClient: (info) => (info.req.headers.authorization ?? 'Bearer token-1') !== 'Bearer token-1'
  });
}

/** Run `node <script> ...args`; resolves with `{ code, signal, stdout, stderr }`. */
function run(script, args) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 8000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const lines = stdout.trim().split('\n').filter(Boolean).map((line) => JSON.parse(line));
      resolve({ code, signal, lines, stderr });
    });
  });
}

const THROWS = path.join(__dirname, 'fixtures', 'user-function-throws.js');

describe('a headers function (Node build)', () => {
  test('is called before every attempt, so a refused token is replaced by a fresh one, and again on a reconnect', TIMEOUT, async (t) => {
    const backend = await tokenServer(t);
    let calls = 0;
    const s = socket(t, backend.url, {
      ...FAST,
      headers: () => ({ Authorization: `Bearer token-${++calls}`, 'X-Call': String(calls) })
    });
    const life = lifecycle(s);
    await next(s, 'open');
    assert.deepEqual(life.names(), ['error', 'reconnecting', 'open']);
    assert.equal(life.list[0].error.code, 'ERR_HANDSHAKE');
    assert.equal(life.list[0].error.status, 401);
    assert.equal(calls, 2);
    assert.equal(backend.conns[0].req.headers.authorization, 'Bearer token-2');
    assert.equal(backend.conns[0].req.headers['x-call'], '2');

    const reopened = next(s, 'open');
    backend.conns[0].close(4000);
    await reopened;
    assert.equal(calls, 3, 'called again for the reconnection');
    assert.equal(backend.conns[1].req.headers.authorization, 'Bearer token-3');
  });

  test('may be async; it is awaited, and with a url function both are called once per attempt', TIMEOUT, async (t) => {
    const backend = await tokenServer(t);
    const calls = { url: 0, headers: 0 };
    const s = socket(
      t,
      async () => {
        calls.url++;
        await delay(20);
        return `${backend.url}/attempt-${calls.url}`;
      },
      {
        ...FAST,
        headers: async () => {
          calls.headers++;
          await delay(30);
          return { Authorization: `Bearer token-${calls.headers}` };
        }
      }
    );
    const life = lifecycle(s);
    await next(s, 'open');
    assert.deepEqual(life.names(), ['error', 'reconnecting', 'open']);
    assert.deepEqual(calls, { url: 2, headers: 2 });
    assert.equal(backend.conns[0].req.url, '/attempt-2');
    assert.equal(backend.conns[0].req.headers.authorization, 'Bearer token-2');
    assert.equal(s.url, `${backend.url}/attempt-2`);
  });

  test('connectionTimeout includes the time it takes: one that never settles gives ERR_TIMEOUT and a retry', TIMEOUT, async (t) => {
    const backend = await wsServer(t);
    let calls = 0;
    const s = socket(t, backend.url, {
      ...FAST,
      connectionTimeout: 150,
      headers: () => (++calls === 1 ? new Promise(() => {}) : { 'X-Call': String(calls) })
    });
    const life = lifecycle(s);
    const started = performance.now();
    await next(s, 'open');
    assert.deepEqual(life.names(), ['error', 'reconnecting', 'open']);
    assert.equal(life.list[0].value, 'ERR_TIMEOUT');
    const after = life.list[0].at - started;
    assert.ok(after >= 140 && after < 1000, `timed out after ${after} ms`);
    assert.equal(backend.conns[0].req.headers['x-call'], '2');
  });

  test("a throw or rejection emits 'error' ERR_INVALID_OPTION (a TypeError) with it as the cause, and is a failed attempt that counts towards maxRetries", TIMEOUT, async (t) => {
    const backend = await answering(t, () => ({ status: 500 }));
    const thrown = new Error('token service down');
    let calls = 0;
    const s = socket(t, backend.url, {
      ...FAST,
      maxRetries: 1,
      headers: () => (++calls === 1 ? Promise.reject(thrown) : fail(thrown))
    });
    const life = lifecycle(s);
    const final = await next(s, 'close');
    assert.equal(final.willReconnect, false);
    assert.deepEqual(life.names(), ['error', 'reconnecting', 'error', 'close']);
    for (const { error } of life.of('error')) {
      assert.ok(error instanceof TypeError, `a TypeError, not ${error.constructor.name}`);
      assert.equal(error.code, 'ERR_INVALID_OPTION');
      assert.match(error.message, /headers function failed: token service down/);
      assert.equal(error.cause, thrown);
    }
    assert.deepEqual(life.values('reconnecting'), [{ attempt: 1, delay: 50 }]);
    assert.equal(calls, 2);
    assert.equal(backend.requests.length, 0, 'no attempt reached the server');
    assert.equal(s.readyState, Socket.CLOSED);
  });

  test("a result that cannot be sent is a failed attempt with 'error' ERR_INVALID_OPTION naming the problem; without a listener it is not thrown", TIMEOUT, async (t) => {
    const backend = await wsServer(t);
    const bad = [
      ['x', /the string "x", not an object/],
      [null, /null, not an object/],
      [['a', 'b'], /an array, not an object/],
      [{ Authorization: 5 }, /"Authorization" is a number, not a string/],
      [{ 'bad name': 'v' }, /"bad name" is not a header name/],
      [{ 'X-Split': 'a\r\nInjected: yes' }, /"X-Split" holds characters/],
      [{ 'X-Accent': 'caf\u00e9' }, /"X-Accent" holds characters/]
    ];
    for (const listening of [true, false]) {
      let calls = 0;
      const s = socket(t, backend.url, {
        ...FAST,
        minReconnectionDelay: 10,
        headers: () => (calls < bad.length ? bad[calls++][0] : { 'X-Good': 'yes' })
      });
      const errors = [];
      if (listening) s.on('error', (err) => errors.push(err));
      const retries = [];
      s.on('reconnecting', (e) => retries.push(e));
      await next(s, 'open');
      assert.equal(retries.length, bad.length, 'each bad result is a failed attempt');
      if (listening) {
        assert.equal(errors.length, bad.length);
        errors.forEach((err, i) => {
          assert.equal(err.code, 'ERR_INVALID_OPTION');
          assert.ok(err instanceof TypeError);
          assert.match(err.message, bad[i][1]);
        });
      }
      s.close();
    }
    assert.equal(backend.conns.length, 2);
    assert.equal(backend.conns[0].req.headers['x-good'], 'yes');
    assert.equal(backend.conns[0].req.headers.injected, undefined);
  });

  test('static headers that cannot be sent throw ERR_INVALID_OPTION at construction', () => {
    for (const [headers, problem] of [
      [{ 'bad name': 'v' }, /"bad name" is not a header name/],
      [{ 'X-Split': 'a\nb' }, /"X-Split" holds characters/]
    ]) {
      assert.throws(() => new Socket('ws://127.0.0.1:1', { startClosed: true, headers }), (err) => {
        assert.ok(err instanceof TypeError);
        assert.equal(err.code, 'ERR_INVALID_OPTION');
        assert.match(err.message, /"headers" option/);
        assert.match(err.message, problem);
        return true;
      });
    }
  });

  test('the browser build, and the Node build with a WebSocket option, throw ERR_INVALID_OPTION for a headers function', () => {
    const headers = () => ({ Authorization: 'x' });
    for (const make of [
      () => new BrowserSocket('ws://127.0.0.1:1', { WebSocket, startClosed: true, headers }),
      () => new Socket('ws://127.0.0.1:1', { WebSocket, startClosed: true, headers })
    ]) {
      assert.throws(make, { name: 'TypeError', code: 'ERR_INVALID_OPTION', message: /"headers"/ });
    }
  });
});

describe("a url or headers function that throws with no 'error' listener", () => {
  const cases = [
    ['node', 'headers', 'ERR_INVALID_OPTION'],
    ['node', 'url', 'ERR_INVALID_URL'],
    ['browser', 'url', 'ERR_INVALID_URL']
  ];
  for (const [build, which, code] of cases) {
    test(`${build} build, ${which} function: each throw is an uncaught exception (${code}, the throw as cause) and a failed attempt; maxRetries 1 gives up after two`, TIMEOUT, async () => {
      const { code: exit, signal, lines, stderr } = await run(THROWS, [build, which]);
      assert.equal(signal, null, stderr);
      assert.equal(exit, 0, stderr);
      const uncaught = lines.filter((l) => l.type === 'uncaught');
      assert.equal(uncaught.length, 2, JSON.stringify(lines));
      for (const err of uncaught) {
        assert.equal(err.code, code);
        assert.equal(err.name, 'TypeError');
        assert.equal(err.cause, 'token service down');
        assert.match(err.message, new RegExp(`${which} function failed: token service down`));
      }
      assert.deepEqual(
        lines.filter((l) => l.type !== 'uncaught'),
        [
          { type: 'constructed' },
          { type: 'reconnecting', attempt: 1, delay: 50 },
          { type: 'close', code: 1006, reason: '', wasClean: false, willReconnect: false },
          { type: 'done', calls: 2 }
        ]
      );
    });
  }

  for (const which of ['headers', 'url']) {
    test(`with nothing to catch it, the first throw of the ${which} function ends the process`, TIMEOUT, async () => {
      const { code, signal, lines, stderr } = await run(THROWS, ['node', which, 'crash']);
      assert.equal(signal, null, 'ended by itself');
      assert.equal(code, 1, stderr);
      assert.match(stderr, new RegExp(`${which} function failed: token service down`));
      assert.deepEqual(lines.map((l) => l.type).filter((type) => type !== 'reconnecting'), ['constructed']);
    });
  }
});

describe('a 401 or 403 answer (Node build)', () => {
  for (const status of [401, 403]) {
    test(`${status} with a static URL and headers: 'error' ERR_HANDSHAKE, then the socket gives up at once; reconnect() tries once more`, TIMEOUT, async (t) => {
      const backend = await answering(t, () => ({ status }));
      const s = socket(t, backend.url, { ...FAST, headers: { Authorization: 'Bearer expired' } });
      const life = lifecycle(s);
      const final = await next(s, 'close');
      assert.deepEqual(final, { code: 1006, reason: '', wasClean: false, willReconnect: false });
      assert.equal(s.readyState, Socket.CLOSED);
      assert.deepEqual(life.names(), ['error', 'close']);
      assert.equal(life.list[0].error.code, 'ERR_HANDSHAKE');
      assert.equal(life.list[0].error.status, status);
      // Nothing marks the absence of a retry: wait far longer than its delay
      // (FAST) would be.
      await delay(300);
      assert.equal(backend.requests.length, 1, 'one attempt, no retry');

      s.reconnect();
      await next(s, 'close');
      // As above: no retry after this attempt either.
      await delay(200);
      assert.equal(backend.requests.length, 2);
      assert.deepEqual(life.names(), ['error', 'close', 'error', 'close']);
    });
  }

  test('401 is retried when the headers function or the url function may give a fresh token', TIMEOUT, async (t) => {
    const backend = await answering(t, () => ({ status: 401 }));
    const viaHeaders = socket(t, backend.url, { ...FAST, minReconnectionDelay: 10, headers: () => ({ A: 'b' }) });
    const viaUrl = socket(t, () => `${backend.url}/via-url`, { ...FAST, minReconnectionDelay: 10 });
    const sockets = [viaHeaders, viaUrl];
    for (const s of sockets) s.on('error', () => {});
    await Promise.all(sockets.map((s) => next(s, 'reconnecting', (e) => e.attempt === 3)));
    for (const s of sockets) assert.equal(s.readyState, Socket.CONNECTING);
    assert.ok(backend.requests.filter((r) => r.url === '/via-url').length >= 3);
    assert.ok(backend.requests.filter((r) => r.url === '/').length >= 3);
  });
});

describe('Retry-After on a 429 or 503 answer (Node build)', () => {
  test("503 with Retry-After: 1 makes the next attempt wait 1 s, not minReconnectionDelay 50; 'reconnecting' says so", TIMEOUT, async (t) => {
    const backend = await answering(t, (i) => ({ status: 503, headers: i === 0 ? { 'Retry-After': '1' } : {} }));
    const s = socket(t, backend.url, { ...FAST, maxRetries: 2 });
    const life = lifecycle(s);
    await next(s, 'close');
    const [heeded, plain] = life.values('reconnecting');
    assert.deepEqual(heeded, { attempt: 1, delay: 1000 });
    assert.equal(plain.attempt, 2);
    assert.ok(Math.abs(plain.delay - 65) < 1e-9, `a plain 503 waits by the formula: ${plain.delay}`);
    assert.equal(life.list[0].error.status, 503);
    const [first, second] = backend.requests;
    assert.ok(second.at - first.at >= 990, `the retry came ${second.at - first.at} ms later`);
  });

  test('429 with an HTTP date waits until that date', { timeout: 15000 }, async (t) => {
    // The first answer's date: three seconds after it is written, to the
    // second (an HTTP date has no fraction), so 2 to 3 s after it.
    let sent = null;
    const backend = await answering(t, () => {
      const writtenAt = Date.now();
      const date = new Date(writtenAt + 3000).toUTCString();
      sent ??= { writtenAt, date, at: Date.parse(date) };
      return { status: 429, headers: { 'Retry-After': date } };
    });
    const s = socket(t, backend.url, { ...FAST, maxRetries: 1 });
    s.on('error', () => {});
    const { delay: waited } = await next(s, 'reconnecting');
    const seenAt = Date.now();
    // The Socket measured the wait when it read the answer: after it was
    // written, before 'reconnecting' reached us (Date.now() drops the
    // fraction of a millisecond: 1 ms of slack).
    const most = sent.at - sent.writtenAt;
    const least = sent.at - seenAt - 1;
    assert.ok(
      waited >= least && waited <= most,
      `waits ${waited} ms for ${sent.date}: expected ${least} to ${most} ms`
    );
    // The date was heeded, not the formula's 50 ms: it was over 2 s ahead
    // when written, so this fails only if the Socket read the answer over
    // a second after it was written.
    assert.ok(waited > 1000, `waits ${waited} ms for ${sent.date}, written at ${new Date(sent.writtenAt).toISOString()}`);
    await until(() => backend.requests.length === 2, 'the retry', Math.ceil(waited) + 5000);
    const [first, second] = backend.requests;
    assert.ok(second.at - first.at >= waited - 15, `the retry came ${second.at - first.at} ms later`);
  });

  test('a Retry-After beyond 5 minutes waits 5 minutes; one on another status, or one that is neither seconds nor a date, is ignored', TIMEOUT, async (t) => {
    for (const [status, value, expected] of [
      [503, '86400', 300000],
      [429, '86400', 300000],
      [500, '1', 50],
      [401, '1', 50],
      [503, 'soon', 50],
      [503, '1.5', 50]
    ]) {
      const backend = await answering(t, () => ({ status, headers: { 'Retry-After': value } }));
      const s = socket(t, () => backend.url, FAST);
      s.on('error', () => {});
      const { delay: waited } = await next(s, 'reconnecting');
      assert.equal(waited, expected, `${status} with Retry-After: ${value}`);
      s.close();
    }
  });

  test('our own Server, full (maxConnections), answers 503 with a Retry-After that the Socket heeds', TIMEOUT, async (t) => {
    const { Server } = require('..');
    const server = new Server({ port: 0, host: '127.0.0.1', maxConnections: 1 });
    const { port } = await server.ready;
    defer(t, () => server.close());
    const url = `ws://127.0.0.1:${port}`;
    await next(socket(t, url), 'open');
    const s = socket(t, url, FAST);
    const retry = next(s, 'reconnecting');
    const err = await next(s, 'error');
    assert.equal(err.status, 503);
    const { delay: waited } = await retry;
    assert.ok(waited >= 1000, `waits ${waited} ms, as the Server asked`);
  });
});

for (const { build, Socket: Build, defaults } of BUILDS) {
  describe(`${build}: close codes 1012 and 1013`, () => {
    const { openSocket } = socketsOf(Build, defaults);

    test('the retry after a 1012 or 1013 close waits at least minReconnectionDelay, however much jitter; other codes keep the jitter', TIMEOUT, async (t) => {
      const codes = [1012, 1013, 4000];
      const backend = await wsServer(t);
      // jitter 1: without the floor, a wait is anywhere from 0 to 200 ms.
      const s = await openSocket(t, backend.url, {
        minReconnectionDelay: 200,
        reconnectionDelayGrowFactor: 1,
        jitter: 1
      });
      const waits = [];
      for (const [i, code] of codes.entries()) {
        const ws = await backend.connection(i);
        const retry = next(s, 'reconnecting');
        const reopened = next(s, 'open');
        const closedAt = performance.now();
        ws.close(code);
        const { delay: wait } = await retry;
        await reopened;
        waits.push(wait);
        if (code !== 4000) {
          const reconnectedAfter = backend.conns[i + 1].openedAt - closedAt;
          assert.ok(reconnectedAfter >= 195, `${code}: reconnected after ${reconnectedAfter} ms`);
        }
      }
      assert.deepEqual(waits.slice(0, 2), [200, 200], `waits ${waits}`);
      assert.ok(waits[2] < 200, `4000 keeps the jitter: ${waits[2]}`);
    });
  });
}

describe('the Node build with a WebSocket option', () => {
  test('heeds 1013 as the browser build does', TIMEOUT, async (t) => {
    const backend = await wsServer(t);
    const s = await socketsOf(Socket).openSocket(t, backend.url, {
      WebSocket,
      minReconnectionDelay: 200,
      jitter: 1
    });
    const retry = next(s, 'reconnecting');
    (await backend.connection()).close(1013);
    assert.equal((await retry).delay, 200);
  });
});

function fail(err) {
  throw err;
}
