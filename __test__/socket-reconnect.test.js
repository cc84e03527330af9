'use strict';

// The Node Socket (native, Rust transport): options, url functions, the
// reconnection policy, the offline queue, handshake headers and `debug`
// (README, Socket).

const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const path = require('node:path');
const { describe, test } = require('node:test');

const SOCKET_OPTIONS = require('../lib/socket-options');
const { Socket } = require('..');
const { delay, until } = require('./helpers');
const {
  next,
  lifecycle,
  wsServer,
  socket,
  openSocket,
  closedPort,
  silentServer
} = require('./socket-helpers');

const TIMEOUT = { timeout: 20000 };

// Upper bounds on how long something takes leave room for a run five times
// slower than on an idle machine.
const SLOW = 5;
const FIXTURES = path.join(__dirname, 'fixtures');

/**
 * A ws server that answers the upgrade with 503 (no Retry-After) while
 * `gate.refuse` is true (a failed attempt, ERR_HANDSHAKE, that is retried)
 * and accepts it otherwise.
 */
async function gatedServer(t, refuse = true) {
  const gate = { refuse };
  const backend = await wsServer(t, { verifyClient: (info, cb) => cb(!gate.refuse, 503) });
  return Object.assign(backend, { gate });
}

/** Run `node <script> ...args`; resolves with `{ code, signal, stdout, stderr }`. */
function run(script, args = [], { env = {}, ms = 30000 } = {}) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [script, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe']
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

// ---------------------------------------------------------------------------


/**
 * After messages were dropped by close(): reconnect, send one more, and
 * check that only it reaches the server.
 */
async function assertOnlyNewArrives(s, backend) {
  s.reconnect();
  await next(s, 'open');
  s.send('new');
  s.send('last');
  const ws = await backend.connection();
  // The dropped messages would have gone out before these two.
  await until(() => ws.received.length >= 2);
  assert.deepEqual(backend.texts(ws), ['"new"', '"last"'], 'the dropped messages were not sent');
}

describe('Socket options: validated at construction', () => {
  // The README's Socket option table, with its defaults.
  const SPEC_DEFAULTS = {
    protocols: undefined,
    WebSocket: undefined,
    minReconnectionDelay: 1500,
    reconnectionDelayGrowFactor: 1.3,
    maxReconnectionDelay: 10000,
    jitter: 0.25,
    connectionTimeout: 4000,
    maxRetries: Infinity,
    minUptime: 5000,
    maxEnqueuedMessages: Infinity,
    startClosed: false,
    debug: false,
    json: true,
    binaryType: 'arraybuffer',
    maxPayload: 16 * 1024 * 1024,
    maxReceiveBuffer: 1024 * 1024,
    headers: {},
    tls: {},
    heartbeatInterval: 30000,
    perMessageDeflate: true
  };

  // For each option: wrong values, and how the message must describe the
  // expected type.
  const WRONG = {
    protocols: [[5, {}, ['a', 1]], /string or an array of strings/],
    WebSocket: [['ws', {}], /function/],
    minReconnectionDelay: [['10', -1, NaN, null], /non-negative number/],
    reconnectionDelayGrowFactor: [[0.5, '2', Infinity], /number >= 1/],
    maxReconnectionDelay: [['x', -5], /non-negative number/],
    jitter: [[-0.1, 1.5, '0'], /number from 0 to 1/],
    connectionTimeout: [[-1, '4000'], /non-negative number/],
    maxRetries: [[-1, 1.5, '3'], /non-negative integer or Infinity/],
    minUptime: [[-1, true], /non-negative number/],
    maxEnqueuedMessages: [[-1, 0.5, '1'], /non-negative integer or Infinity/],
    startClosed: [['yes', 1], /boolean/],
    debug: [[1, 'true'], /boolean/],
    json: [['true', 0], /boolean/],
    binaryType: [['nodebuffer', 1], /'arraybuffer' or 'blob'/],
    maxPayload: [[-1, 1.5, '1'], /integer/],
    maxReceiveBuffer: [[-1, 1.5, '1'], /non-negative integer or Infinity/],
    headers: [['x', { Authorization: 5 }], /object of string values/],
    tls: [['x', 5], /object/],
    heartbeatInterval: [[-1, '30'], /non-negative number/],
    perMessageDeflate: [['yes', 1, null], /boolean or an object/]
  };

  test("the option table is exactly the README's, with its defaults", () => {
    assert.deepEqual(Object.keys(SOCKET_OPTIONS).sort(), Object.keys(SPEC_DEFAULTS).sort());
    for (const [name, [, fallback]] of Object.entries(SOCKET_OPTIONS)) {
      assert.deepEqual(fallback, SPEC_DEFAULTS[name], `default of ${name}`);
    }
    // Every option has a wrong-type case below.
    assert.deepEqual(Object.keys(WRONG).sort(), Object.keys(SOCKET_OPTIONS).sort());
  });

  for (const [name, [values, expected]] of Object.entries(WRONG)) {
    test(`a wrong type for "${name}" throws TypeError ERR_INVALID_OPTION naming it and ${expected.source}`, () => {
      for (const value of values) {
        assert.throws(
          () => new Socket('ws://127.0.0.1:1', { startClosed: true, [name]: value }),
          (err) => {
            assert.ok(err instanceof TypeError, 'a TypeError');
            assert.equal(err.code, 'ERR_INVALID_OPTION');
            assert.ok(err.message.includes(`"${name}"`), `names "${name}": ${err.message}`);
            assert.match(err.message, expected);
            return true;
          },
          `${name}: ${String(value)}`
        );
      }
    });
  }

  test('a wrong type throws at construction, before any connection attempt', async (t) => {
    const backend = await wsServer(t);
    assert.throws(() => new Socket(`${backend.url}/refused`, { minReconnectionDelay: 'soon' }), {
      code: 'ERR_INVALID_OPTION'
    });
    // A Socket made after it connects at once, as a first attempt of the
    // refused one would have.
    await openSocket(t, `${backend.url}/after`);
    assert.deepEqual(backend.conns.map((ws) => ws.req.url), ['/after'], 'nothing else connected');
  });

  test('an unknown option throws TypeError ERR_INVALID_OPTION naming it', () => {
    for (const name of ['reconnectDelay', 'maxReconnectAttempts', 'minReconnectDelay']) {
      assert.throws(
        () => new Socket('ws://127.0.0.1:1', { startClosed: true, [name]: 5 }),
        (err) => {
          assert.ok(err instanceof TypeError);
          assert.equal(err.code, 'ERR_INVALID_OPTION');
          assert.ok(err.message.includes(name), `names ${name}: ${err.message}`);
          return true;
        }
      );
    }
  });

  test('tls.ca and tls.rejectUnauthorized of a wrong type throw TypeError ERR_INVALID_OPTION naming them', () => {
    for (const [tls, name] of [
      [{ rejectUnauthorized: 'no' }, 'rejectUnauthorized'],
      [{ rejectUnauthorized: 0 }, 'rejectUnauthorized'],
      [{ ca: 5 }, 'ca'],
      [{ ca: { pem: 'x' } }, 'ca']
    ]) {
      assert.throws(
        () => new Socket('wss://127.0.0.1:1', { startClosed: true, tls }),
        (err) => {
          assert.ok(err instanceof TypeError, 'a TypeError');
          assert.equal(err.code, 'ERR_INVALID_OPTION', `code for ${JSON.stringify(tls)}: ${err.code} ${err.message}`);
          assert.match(err.message, new RegExp(name));
          return true;
        },
        JSON.stringify(tls)
      );
    }
  });

  // No bad input aborts the process from Rust. A number option of
  // Infinity (or one too large for a Duration) is either refused with
  // ERR_INVALID_OPTION or works: the socket runs and close() ends it.
  const EXTREMES = [
    ['heartbeatInterval=Infinity'],
    ['heartbeatInterval=1e300'],
    ['connectionTimeout=Infinity'],
    ['connectionTimeout=1e300'],
    ['minReconnectionDelay=Infinity'],
    ['maxReconnectionDelay=Infinity'],
    ['minReconnectionDelay=Infinity', 'maxReconnectionDelay=Infinity'],
    ['minReconnectionDelay=1e300', 'maxReconnectionDelay=1e300'],
    ['minUptime=Infinity'],
    // A connection that opens and ends, for minUptime.
    ['server', 'minUptime=Infinity'],
    ['server', 'minUptime=1e300']
  ];
  test('a duration option of Infinity or 1e300 is refused with ERR_INVALID_OPTION or works; it never aborts or wedges the socket', { timeout: 60000 }, async () => {
    const port = await closedPort();
    const results = await Promise.all(
      EXTREMES.map((pairs) =>
        run(
          path.join(FIXTURES, 'option-extreme.js'),
          pairs[0] === 'server' ? pairs : [String(port), ...pairs],
          { ms: 30000 }
        )
      )
    );
    const failures = [];
    results.forEach(({ code, signal, stdout, stderr }, i) => {
      const options = EXTREMES[i].join(', ');
      const line = stdout.trim().split('\n').pop() || '{}';
      let result = {};
      try {
        result = JSON.parse(line);
      } catch {}
      const ok =
        code === 0 &&
        signal === null &&
        (result.closed === true || (result.threw === 'ERR_INVALID_OPTION' && result.name === 'TypeError'));
      if (!ok) {
        const why = stderr.split('\n').find((l) => /panic|fatal|Error/.test(l)) ?? '';
        failures.push(`${options} -> exit ${code ?? signal}, stdout ${JSON.stringify(stdout.trim())}, ${why.trim()}`);
      }
    });
    assert.deepEqual(failures, []);
  });
});

describe('Socket url: a string, a function or an async function', () => {
  test('socket.url reads as the URL given, and id is mytosis-websocket: + url', async (t) => {
    const backend = await wsServer(t);
    const s = await openSocket(t, backend.url + '/x?y=1');
    assert.equal(s.url, backend.url + '/x?y=1');
    assert.equal(s.id, 'mytosis-websocket:' + backend.url + '/x?y=1');
  });

  test('a url function is called before every attempt, failed ones and reconnects included; socket.url is the current attempt\'s URL', TIMEOUT, async (t) => {
    const backend = await wsServer(t);
    const refused = `ws://127.0.0.1:${await closedPort()}/refused`;
    let calls = 0;
    const urlFn = () => (++calls <= 2 ? refused : backend.url + '/up');
    const s = socket(t, urlFn, { jitter: 0, minReconnectionDelay: 20 });
    assert.match(s.id, /^mytosis-websocket:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const urlsAtError = [];
    s.on('error', () => urlsAtError.push(s.url));
    await next(s, 'open');
    assert.equal(calls, 3, 'two refused attempts and one that opened');
    assert.deepEqual(urlsAtError, [refused, refused]);
    assert.equal(s.url, backend.url + '/up');
    assert.equal(backend.conns[0].req.url, '/up');

    // A reconnect after a drop calls it again.
    const reopened = next(s, 'open');
    backend.conns[0].close(4000);
    await reopened;
    assert.equal(calls, 4, 'called again for the reconnection');
    assert.equal(backend.conns.length, 2);
  });

  test('an async url function is awaited before every attempt', TIMEOUT, async (t) => {
    const backend = await wsServer(t);
    let calls = 0;
    const s = socket(
      t,
      async () => {
        calls++;
        await delay(30);
        return `${backend.url}/attempt-${calls}`;
      },
      { jitter: 0, minReconnectionDelay: 20 }
    );
    await next(s, 'open');
    assert.equal(calls, 1);
    assert.equal(s.url, `${backend.url}/attempt-1`);
    const reopened = next(s, 'open');
    backend.conns[0].close(4000);
    await reopened;
    assert.equal(calls, 2);
    assert.equal(s.url, `${backend.url}/attempt-2`);
    assert.deepEqual(backend.conns.map((ws) => ws.req.url), ['/attempt-1', '/attempt-2']);
  });

  for (const [name, make] of [
    ['rejects', () => async () => Promise.reject(new Error('no url today'))],
    ['throws', () => () => {
      throw new Error('no url today');
    }],
    ['returns an http:// URL', () => () => 'http://x'],
    ['returns a non-string', () => async () => 42]
  ]) {
    test(`a url function that ${name} emits 'error' ERR_INVALID_URL and counts as a failed attempt ('reconnecting' follows)`, TIMEOUT, async (t) => {
      const backend = await wsServer(t);
      let calls = 0;
      const bad = make();
      const s = socket(t, (...args) => (++calls === 1 ? bad(...args) : backend.url), {
        jitter: 0,
        minReconnectionDelay: 30
      });
      const events = lifecycle(s);
      await next(s, 'open');
      assert.deepEqual(events.names(), ['error', 'reconnecting', 'open']);
      assert.equal(events.list[0].value, 'ERR_INVALID_URL');
      assert.deepEqual(events.list[1].value, { attempt: 1, delay: 30 });
      assert.equal(calls, 2);
      assert.equal(backend.conns.length, 1);
    });
  }

  test("the url function's ERR_INVALID_URL 'error' is a TypeError naming the bad URL", TIMEOUT, async (t) => {
    const s = socket(t, () => 'http://bad.example/', { jitter: 0, minReconnectionDelay: 1000 });
    const err = await next(s, 'error');
    assert.equal(err.code, 'ERR_INVALID_URL');
    assert.match(err.message, /http:\/\/bad\.example\//);
    assert.ok(err instanceof TypeError, `a TypeError, got ${err.constructor.name}`);
  });

  test('bad url results count towards maxRetries: the socket gives up', TIMEOUT, async (t) => {
    let calls = 0;
    const s = socket(t, () => (calls++, 'http://x'), { jitter: 0, minReconnectionDelay: 10, maxRetries: 2 });
    const events = lifecycle(s);
    const final = await next(s, 'close');
    assert.equal(final.willReconnect, false);
    assert.equal(calls, 3);
    assert.deepEqual(events.names(), ['error', 'reconnecting', 'error', 'reconnecting', 'error', 'close']);
    assert.ok(events.of('error').every((e) => e.value === 'ERR_INVALID_URL'));
    assert.equal(s.readyState, Socket.CLOSED);
  });

  test('connectionTimeout includes the time to resolve the url: one that never resolves gives ERR_TIMEOUT and a retry', TIMEOUT, async (t) => {
    const backend = await wsServer(t);
    let calls = 0;
    const s = socket(t, () => (++calls === 1 ? new Promise(() => {}) : backend.url), {
      connectionTimeout: 200,
      jitter: 0,
      minReconnectionDelay: 20
    });
    const started = performance.now();
    const events = lifecycle(s);
    await next(s, 'open');
    const timedOutAfter = events.list[0].at - started;
    assert.deepEqual(events.names(), ['error', 'reconnecting', 'open']);
    assert.equal(events.list[0].value, 'ERR_TIMEOUT');
    assert.ok(timedOutAfter >= 180, `timed out after ${timedOutAfter} ms, before connectionTimeout`);
    assert.ok(timedOutAfter < SLOW * 300, `timed out after ${timedOutAfter} ms`);
    assert.equal(calls, 2);
  });
});

describe('Reconnection policy', () => {
  test('the first attempt is immediate, whatever minReconnectionDelay', TIMEOUT, async (t) => {
    const backend = await wsServer(t);
    // A wait of minReconnectionDelay (30 s) is far past the bounds here.
    const started = performance.now();
    socket(t, backend.url, { minReconnectionDelay: 30000, maxReconnectionDelay: 30000 });
    const ws = await backend.connection(0);
    assert.ok(ws.openedAt - started < SLOW * 300, `connected after ${ws.openedAt - started} ms`);

    const refused = socket(t, `ws://127.0.0.1:${await closedPort()}`, { minReconnectionDelay: 30000, maxReconnectionDelay: 30000, jitter: 0 });
    const t0 = performance.now();
    const reconnecting = next(refused, 'reconnecting');
    const err = await next(refused, 'error');
    assert.equal(err.code, 'ERR_CONNECT');
    assert.ok(err.cause instanceof Error, 'ERR_CONNECT carries a cause');
    assert.ok(performance.now() - t0 < SLOW * 300);
    assert.deepEqual(await reconnecting, { attempt: 1, delay: 30000 });
  });

  test("with jitter 0 the waits follow the formula (min 20, factor 2: 20, 40, 80), then after maxRetries 3 a final 'close' with willReconnect false and readyState 3", TIMEOUT, async (t) => {
    const s = socket(t, `ws://127.0.0.1:${await closedPort()}`, {
      maxRetries: 3,
      minReconnectionDelay: 20,
      reconnectionDelayGrowFactor: 2,
      jitter: 0
    });
    const events = lifecycle(s);
    const retryCounts = [];
    s.on('reconnecting', () => retryCounts.push(s.retryCount));
    const final = await next(s, 'close');
    // Nothing marks the absence of a fourth retry: wait longer than its
    // delay (160 ms) would be.
    await delay(200);

    assert.deepEqual(
      events.list.map((e) => [e.name, e.value]),
      [
        ['error', 'ERR_CONNECT'],
        ['reconnecting', { attempt: 1, delay: 20 }],
        ['error', 'ERR_CONNECT'],
        ['reconnecting', { attempt: 2, delay: 40 }],
        ['error', 'ERR_CONNECT'],
        ['reconnecting', { attempt: 3, delay: 80 }],
        ['error', 'ERR_CONNECT'],
        ['close', final]
      ]
    );
    assert.equal(final.willReconnect, false);
    assert.equal(final.wasClean, false);
    assert.equal(s.readyState, Socket.CLOSED);
    assert.equal(s.offline, true);
    assert.deepEqual(retryCounts, [1, 2, 3]);
    for (const e of events.of('reconnecting')) assert.equal(e.readyState, Socket.CONNECTING);

    // Each wait really lasted its delay (from 'reconnecting' to the next
    // attempt's 'error').
    const list = events.list;
    for (let i = 1; i < list.length - 1; i += 2) {
      const waited = list[i + 1].at - list[i].at;
      const { delay: expected } = list[i].value;
      assert.ok(waited >= expected - 8, `retry ${list[i].value.attempt}: waited ${waited} ms, expected ${expected}`);
      assert.ok(waited < SLOW * (expected + 50), `retry ${list[i].value.attempt}: waited ${waited} ms, expected ${expected}`);
    }
  });

  test('the wait is capped at maxReconnectionDelay (min 20, factor 3, max 50: 20, 50, 50, 50)', TIMEOUT, async (t) => {
    const s = socket(t, `ws://127.0.0.1:${await closedPort()}`, {
      maxRetries: 4,
      minReconnectionDelay: 20,
      reconnectionDelayGrowFactor: 3,
      maxReconnectionDelay: 50,
      jitter: 0
    });
    const delays = [];
    s.on('reconnecting', ({ delay: d }) => delays.push(d));
    s.on('error', () => {});
    await next(s, 'close');
    assert.deepEqual(delays, [20, 50, 50, 50]);
  });

  test('jitter shortens each wait by a random fraction of at most jitter', TIMEOUT, async (t) => {
    const s = socket(t, `ws://127.0.0.1:${await closedPort()}`, {
      maxRetries: 12,
      minReconnectionDelay: 30,
      reconnectionDelayGrowFactor: 1,
      jitter: 0.5
    });
    const delays = [];
    s.on('reconnecting', ({ delay: d }) => delays.push(d));
    s.on('error', () => {});
    await next(s, 'close');
    assert.equal(delays.length, 12);
    for (const d of delays) assert.ok(d >= 15 && d <= 30, `delay ${d} in [15, 30]`);
    assert.ok(new Set(delays).size > 1, `random, not constant: ${delays}`);
  });

  test('the defaults are minReconnectionDelay 1500, reconnectionDelayGrowFactor 1.3 and jitter 0.25', { timeout: 30000 }, async (t) => {
    const url = `ws://127.0.0.1:${await closedPort()}`;
    const exact = socket(t, url, { jitter: 0 });
    const jittered = socket(t, url);
    exact.on('error', () => {});
    jittered.on('error', () => {});
    const first = next(exact, 'reconnecting', (e) => e.attempt === 1);
    const second = next(exact, 'reconnecting', (e) => e.attempt === 2, 20000);
    const jitteredDelay = (await next(jittered, 'reconnecting')).delay;
    assert.ok(jitteredDelay >= 1125 && jitteredDelay <= 1500, `default jitter: ${jitteredDelay}`);
    assert.deepEqual(await first, { attempt: 1, delay: 1500 });
    const { delay: secondDelay } = await second;
    assert.ok(Math.abs(secondDelay - 1950) < 1e-9, `1500 * 1.3 = 1950, got ${secondDelay}`);
  });

  test('the retry count resets only after a connection stayed open minUptime', TIMEOUT, async (t) => {
    // The server accepts, then closes every connection after 100 ms.
    const backend = await wsServer(t, {}, (ws) => setTimeout(() => ws.close(4000), 100));
    const options = { jitter: 0, minReconnectionDelay: 20, reconnectionDelayGrowFactor: 2 };

    // minUptime 2000: up 100 ms is far below it, even when the close comes late.
    const short = socket(t, backend.url, { ...options, minUptime: 2000 });
    const long = socket(t, backend.url, { ...options, minUptime: 40 });
    const shortRetries = [];
    const longRetries = [];
    short.on('reconnecting', (e) => shortRetries.push(e));
    long.on('reconnecting', (e) => longRetries.push(e));
    await until(() => shortRetries.length >= 3 && longRetries.length >= 3, '3 reconnections each');

    assert.deepEqual(
      shortRetries.slice(0, 3),
      [{ attempt: 1, delay: 20 }, { attempt: 2, delay: 40 }, { attempt: 3, delay: 80 }],
      'up 100 ms < minUptime 2000: the delays keep growing'
    );
    assert.deepEqual(
      longRetries.slice(0, 3),
      [{ attempt: 1, delay: 20 }, { attempt: 1, delay: 20 }, { attempt: 1, delay: 20 }],
      'up 100 ms > minUptime 40: each retry starts again at min'
    );
  });

  test('connectionTimeout: a server that accepts TCP but never answers the upgrade gives ERR_TIMEOUT within about connectionTimeout, drops that attempt and retries', TIMEOUT, async (t) => {
    const silent = await silentServer(t);
    const started = performance.now();
    const s = socket(t, silent.url, { connectionTimeout: 300, jitter: 0, minReconnectionDelay: 50 });
    const events = lifecycle(s);
    const reconnecting = next(s, 'reconnecting');
    const err = await next(s, 'error');
    const elapsed = performance.now() - started;
    assert.equal(err.code, 'ERR_TIMEOUT');
    assert.match(err.message, /300 ms/);
    assert.ok(elapsed >= 280, `ERR_TIMEOUT after ${elapsed} ms, before connectionTimeout`);
    assert.ok(elapsed < SLOW * 300, `ERR_TIMEOUT after ${elapsed} ms`);
    assert.deepEqual(await reconnecting, { attempt: 1, delay: 50 });
    await until(() => silent.sockets.length >= 2, 'the retry to reach the server');
    await until(() => silent.sockets[0].closed, 'the abandoned attempt to be dropped');
    assert.equal(events.count('open'), 0);
    assert.equal(events.count('close'), 0, "a failed attempt never emits 'close'");
  });

  test("maxRetries 0: a refused attempt is not retried; one final 'close'", TIMEOUT, async (t) => {
    // With no delay, a retry would come at once.
    const s = socket(t, `ws://127.0.0.1:${await closedPort()}`, { maxRetries: 0, minReconnectionDelay: 0, jitter: 0 });
    const events = lifecycle(s);
    await next(s, 'close');
    // Nothing marks the absence of a retry: a short wait (a retry would
    // take no time at all).
    await delay(100);
    assert.deepEqual(events.list.map((e) => [e.name, e.name === 'close' ? e.value.willReconnect : e.value]), [
      ['error', 'ERR_CONNECT'],
      ['close', false]
    ]);
    assert.equal(s.readyState, Socket.CLOSED);
  });

  test("maxRetries 0: a dropped connection is not retried; its 'close' says willReconnect false", TIMEOUT, async (t) => {
    const backend = await wsServer(t);
    // With no delay, a reconnection would start at once.
    const s = await openSocket(t, backend.url, { maxRetries: 0, minReconnectionDelay: 0, jitter: 0 });
    const events = lifecycle(s);
    (await backend.connection()).close(4000, 'bye');
    await next(s, 'close');
    // A Socket made now connects at once, as a reconnection would have.
    await openSocket(t, `${backend.url}/after`);
    assert.deepEqual(events.list.map((e) => [e.name, e.value]), [
      ['close', { code: 4000, reason: 'bye', wasClean: true, willReconnect: false }]
    ]);
    assert.equal(s.readyState, Socket.CLOSED);
    assert.deepEqual(backend.conns.map((ws) => ws.req.url), ['/', '/after']);
  });

  test('reconnect() works after giving up, and sends made meanwhile are kept for it', TIMEOUT, async (t) => {
    const backend = await gatedServer(t, true);
    const s = socket(t, backend.url, { maxRetries: 1, jitter: 0, minReconnectionDelay: 10 });
    const errors = [];
    s.on('error', (err) => errors.push(err.code));
    const final = await next(s, 'close');
    assert.equal(final.willReconnect, false);
    assert.equal(s.readyState, Socket.CLOSED);
    assert.deepEqual(errors, ['ERR_HANDSHAKE', 'ERR_HANDSHAKE']);

    assert.equal(s.send('kept'), true, 'a socket that gave up keeps queueing');
    backend.gate.refuse = false;
    s.reconnect();
    assert.equal(s.readyState, Socket.CONNECTING);
    await next(s, 'open');
    const ws = await backend.connection();
    await until(() => ws.received.length === 1);
    assert.deepEqual(backend.texts(ws), ['"kept"']);
  });

  test('reconnect() works after close(): the socket opens again and sends again', TIMEOUT, async (t) => {
    const backend = await wsServer(t);
    const s = await openSocket(t, backend.url);
    const closed = next(s, 'close');
    s.close();
    assert.equal((await closed).willReconnect, false);
    assert.throws(() => s.send('x'), { code: 'ERR_CLOSED' });

    s.reconnect();
    assert.equal(s.readyState, Socket.CONNECTING);
    await next(s, 'open');
    assert.equal(s.readyState, Socket.OPEN);
    assert.equal(s.send('again'), true);
    const ws = await backend.connection(1);
    await until(() => ws.received.length === 1);
    assert.deepEqual(backend.texts(ws), ['"again"']);
  });

  test("reconnect() while open ends the connection with 1000 and connects again at once, with no 'reconnecting' wait", TIMEOUT, async (t) => {
    const backend = await wsServer(t);
    const s = await openSocket(t, backend.url, { minReconnectionDelay: 30000, maxReconnectionDelay: 30000, jitter: 0 });
    const events = lifecycle(s);
    const started = performance.now();
    s.reconnect();
    await next(s, 'open');
    const elapsed = performance.now() - started;
    assert.deepEqual((await backend.conns[0].closed).code, 1000);
    assert.ok(elapsed < SLOW * 1000, `open again after ${elapsed} ms (minReconnectionDelay is 30000)`);
    assert.equal(events.count('reconnecting'), 0);
    assert.deepEqual(events.names(), ['close', 'open']);
    assert.equal(events.list[0].value.willReconnect, true);
    assert.equal(backend.conns.length, 2);
  });

  test('reconnect(code, reason) while open closes the connection with that code and reason', TIMEOUT, async (t) => {
    const backend = await wsServer(t);
    const s = await openSocket(t, backend.url, { minReconnectionDelay: 5000 });
    s.reconnect(4321, 'again please');
    assert.deepEqual(await backend.conns[0].closed, { code: 4321, reason: 'again please' });
    await next(s, 'open');
    assert.throws(() => s.reconnect(1001), { name: 'RangeError' });
  });

  test('reconnect() during a retry wait connects at once and resets the retry count', TIMEOUT, async (t) => {
    const s = socket(t, `ws://127.0.0.1:${await closedPort()}`, {
      minReconnectionDelay: 30000,
      maxReconnectionDelay: 30000,
      jitter: 0
    });
    const events = lifecycle(s);
    await next(s, 'reconnecting');
    // Into the wait a little (the scenario, not a wait for anything).
    await delay(50);
    const started = performance.now();
    const reconnecting = next(s, 'reconnecting');
    s.reconnect();
    await next(s, 'error');
    assert.ok(performance.now() - started < SLOW * 500, 'the attempt came at once, not after 30000 ms');
    assert.deepEqual(await reconnecting, { attempt: 1, delay: 30000 });
    assert.equal(s.retryCount, 1);
    assert.deepEqual(events.names(), ['error', 'reconnecting', 'error', 'reconnecting']);
  });

  test('reconnect() during a hanging attempt drops it and starts a new one at once', TIMEOUT, async (t) => {
    const silent = await silentServer(t);
    // connectionTimeout 30 s: only reconnect() ends the first attempt within
    // the waits here.
    const s = socket(t, silent.url, { connectionTimeout: 30000 });
    await until(() => silent.sockets.length === 1, 'the first attempt');
    s.reconnect();
    await until(() => silent.sockets.length === 2, 'a second attempt at once');
    await until(() => silent.sockets[0].closed, 'the first attempt to be dropped');
  });

  test('startClosed: no attempt until reconnect(); readyState 3; sends made meanwhile go out first', TIMEOUT, async (t) => {
    const backend = await wsServer(t);
    const s = socket(t, backend.url, { startClosed: true });
    const events = lifecycle(s);
    assert.equal(s.readyState, Socket.CLOSED);
    assert.equal(s.offline, true);
    assert.equal(s.send('early'), true);
    // A Socket made after it connects at once, as an attempt of this one
    // would have.
    await openSocket(t, `${backend.url}/after`);
    assert.deepEqual(backend.conns.map((ws) => ws.req.url), ['/after']);
    assert.deepEqual(events.list, []);

    s.reconnect();
    s.on('open', () => s.send('in open'));
    await next(s, 'open');
    const ws = await backend.connection(1);
    await until(() => ws.received.length === 2);
    assert.deepEqual(backend.texts(ws), ['"early"', '"in open"']);
  });
});

describe('Offline queue', () => {
  test('sends while offline are kept up to maxEnqueuedMessages and flushed in order before anything sent later', TIMEOUT, async (t) => {
    // The server closes the first connection; the socket is offline for
    // 300 ms before its retry.
    const backend = await wsServer(t, {}, (ws) => {
      if (backend.conns.length === 1) setTimeout(() => ws.close(4000), 100);
    });
    const s = await openSocket(t, backend.url, {
      jitter: 0,
      minReconnectionDelay: 300,
      maxEnqueuedMessages: 3
    });
    const errors = [];
    s.on('error', (err) => errors.push(err));
    const results = [];
    s.on('close', (e) => {
      if (!e.willReconnect) return;
      assert.equal(s.offline, true);
      for (let i = 1; i <= 5; i++) {
        const before = errors.length;
        results.push(s.send(i));
        // ERR_QUEUE_FULL is emitted during the send that is refused.
        if (i > 3) assert.equal(errors.length, before + 1, `'error' during send #${i}`);
      }
    });
    s.on('open', () => s.send('later'));
    await until(() => backend.conns.length === 2, 'the reconnection');
    const ws = backend.conns[1];
    await until(() => ws.received.length >= 4, 'the flushed queue and the later message');
    // One more: once it is in, anything queued would have arrived.
    s.send('end');
    await until(() => ws.received.length >= 5, 'the last message');

    assert.deepEqual(results, [true, true, true, false, false]);
    assert.deepEqual(errors.map((e) => e.code), ['ERR_QUEUE_FULL', 'ERR_QUEUE_FULL']);
    assert.match(errors[0].message, /maxEnqueuedMessages/);
    assert.deepEqual(backend.texts(ws), ['1', '2', '3', '"later"', '"end"']);
  });

  test('with startClosed the bound holds too: the 4th of maxEnqueuedMessages 3 returns false and emits ERR_QUEUE_FULL', TIMEOUT, async (t) => {
    const backend = await wsServer(t);
    const s = socket(t, backend.url, { startClosed: true, maxEnqueuedMessages: 3 });
    const errors = [];
    s.on('error', (err) => errors.push(err.code));
    assert.deepEqual(['a', 'b', 'c', 'd'].map((m) => s.send(m)), [true, true, true, false]);
    assert.deepEqual(errors, ['ERR_QUEUE_FULL']);
    s.reconnect();
    await next(s, 'open');
    s.send('e');
    const ws = await backend.connection();
    await until(() => ws.received.length === 4);
    assert.deepEqual(backend.texts(ws), ['"a"', '"b"', '"c"', '"e"']);
  });

  test('maxEnqueuedMessages bounds only the offline queue: a burst of sends while open is all accepted and delivered', TIMEOUT, async (t) => {
    const backend = await wsServer(t);
    const s = await openSocket(t, backend.url, { maxEnqueuedMessages: 1 });
    const errors = [];
    s.on('error', (err) => errors.push(err.code));
    const results = Array.from({ length: 100 }, (_, i) => s.send(i));
    const ws = await backend.connection();
    await until(() => ws.received.length >= 100, '100 messages').catch(() => {});
    assert.equal(results.filter((r) => r === false).length, 0, `refused ${results.filter((r) => !r).length} of 100 while open`);
    assert.deepEqual(errors, []);
    assert.equal(ws.received.length, 100);
  });

  test('bufferedAmount counts the bytes queued offline and drops to 0 once they are sent', TIMEOUT, async (t) => {
    const backend = await wsServer(t);
    const s = socket(t, backend.url, { startClosed: true });
    assert.equal(s.bufferedAmount, 0);
    s.send('abc'); // "abc" with its quotes: 5 bytes
    s.send(Buffer.alloc(10));
    assert.equal(s.bufferedAmount, 15);
    s.reconnect();
    await next(s, 'open');
    const ws = await backend.connection();
    await until(() => ws.received.length === 2);
    await until(() => s.bufferedAmount === 0, 'bufferedAmount 0');
  });

  test('after close(), send throws ERR_CLOSED, also when closed while offline', TIMEOUT, async (t) => {
    const s = socket(t, `ws://127.0.0.1:${await closedPort()}`, { minReconnectionDelay: 5000 });
    s.on('error', () => {});
    await next(s, 'reconnecting');
    s.close();
    assert.throws(() => s.send('x'), (err) => {
      assert.equal(err.code, 'ERR_CLOSED');
      assert.match(err.message, /reconnect\(\)/);
      return true;
    });
  });

  test("close() while offline with queued messages emits one 'error' ERR_CLOSED with err.dropped, and they are never sent", TIMEOUT, async (t) => {
    const backend = await gatedServer(t, true);
    const s = socket(t, backend.url, { minReconnectionDelay: 5000, jitter: 0 });
    const errors = [];
    s.on('error', (err) => errors.push(err));
    await next(s, 'reconnecting');
    for (let i = 0; i < 4; i++) assert.equal(s.send(i), true);
    const final = next(s, 'close');
    s.close();
    assert.equal((await final).willReconnect, false);
    const closedErrors = () => errors.filter((e) => e.code === 'ERR_CLOSED');
    await until(() => closedErrors().length >= 1, 'ERR_CLOSED');
    assert.equal(closedErrors()[0].dropped, 4);
    assert.equal(s.readyState, Socket.CLOSED);

    // They are gone: a later reconnect() does not send them.
    backend.gate.refuse = false;
    await assertOnlyNewArrives(s, backend);
    // By now a second one would have come.
    assert.equal(closedErrors().length, 1, 'one ERR_CLOSED');
  });

  test("close() on a startClosed socket with queued messages emits ERR_CLOSED with err.dropped, and they are never sent", TIMEOUT, async (t) => {
    const backend = await wsServer(t);
    const s = socket(t, backend.url, { startClosed: true });
    const errors = [];
    s.on('error', (err) => errors.push(err));
    s.send('a');
    s.send('b');
    s.close();
    await until(() => errors.length >= 1, "'error'");
    assert.deepEqual(errors.map((e) => [e.code, e.dropped]), [['ERR_CLOSED', 2]]);

    await assertOnlyNewArrives(s, backend);
    // By now a second one would have come.
    assert.deepEqual(errors.map((e) => [e.code, e.dropped]), [['ERR_CLOSED', 2]]);
  });

  test("close() after giving up, with messages queued meanwhile, emits ERR_CLOSED with err.dropped, and they are never sent", TIMEOUT, async (t) => {
    const backend = await gatedServer(t, true);
    const s = socket(t, backend.url, { maxRetries: 0 });
    const errors = [];
    s.on('error', (err) => errors.push(err));
    await next(s, 'close');
    s.send('a');
    s.send('b');
    s.send('c');
    s.close();
    const dropped = () => errors.filter((e) => e.code === 'ERR_CLOSED').map((e) => e.dropped);
    await until(() => dropped().length >= 1, 'ERR_CLOSED');
    assert.deepEqual(dropped(), [3]);

    backend.gate.refuse = false;
    await assertOnlyNewArrives(s, backend);
    // By now a second one would have come.
    assert.deepEqual(dropped(), [3]);
  });

  test('close() while open drops nothing: no ERR_CLOSED, everything sent arrives', TIMEOUT, async (t) => {
    const backend = await wsServer(t);
    const s = await openSocket(t, backend.url);
    const errors = [];
    s.on('error', (err) => errors.push(err));
    for (let i = 0; i < 20; i++) s.send(i);
    const closed = next(s, 'close');
    s.close();
    await closed;
    const ws = await backend.connection();
    assert.equal((await ws.closed).code, 1000);
    assert.equal(ws.received.length, 20);
    assert.deepEqual(errors, []);
  });
});

describe('Handshake headers', () => {
  test('headers go out in the handshake of every attempt', TIMEOUT, async (t) => {
    const backend = await wsServer(t);
    const s = await openSocket(t, backend.url, {
      headers: { Authorization: 'Bearer x', 'X-Custom-Header': 'custom value' },
      jitter: 0,
      minReconnectionDelay: 20
    });
    const reopened = next(s, 'open');
    backend.conns[0].close(4000);
    await reopened;
    assert.equal(backend.conns.length, 2);
    for (const ws of backend.conns) {
      assert.equal(ws.req.headers.authorization, 'Bearer x');
      assert.equal(ws.req.headers['x-custom-header'], 'custom value');
    }
  });
});

describe('debug', () => {
  test("debug: true logs every life-cycle step to stderr: connecting to the URL, the error, 'retry N in M ms', open, close with code and reason, giving up", { timeout: 40000 }, async () => {
    const { code, signal, stdout, stderr } = await run(path.join(FIXTURES, 'debug-socket.js'));
    assert.equal(signal, null, `the child was killed; stderr:\n${stderr}`);
    assert.equal(code, 0, `exit code; stderr:\n${stderr}`);
    const { url } = JSON.parse(stdout.split('\n')[0]);
    const steps = [
      ['connecting to the URL', `connecting to ${url}`],
      ['the refused attempt', 'ERR_CONNECT'],
      ['the first retry', 'retry 1 in 200 ms'],
      ['open', `open ${url}`],
      ['the close with code and reason', "close 4000 'bye'"],
      ['the second retry', 'retry 2 in 400 ms'],
      ['giving up', 'giving up']
    ];
    let from = 0;
    for (const [what, text] of steps) {
      const at = stderr.indexOf(text, from);
      assert.ok(at >= 0, `stderr mentions ${what} (${JSON.stringify(text)}) in order:\n${stderr}`);
      from = at + text.length;
    }
    for (const line of stderr.trim().split('\n')) {
      assert.match(line, /^mytosis-websocket: /, 'every line is prefixed');
    }
  });

  test('debug off (the default) writes nothing to stderr', { timeout: 40000 }, async () => {
    const { code, stderr } = await run(path.join(FIXTURES, 'debug-socket.js'), [], { env: { DEBUG_OFF: '1' } });
    assert.equal(code, 0);
    assert.equal(stderr, '');
  });
});
