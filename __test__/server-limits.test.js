'use strict';

// Limits that keep a Server's memory bounded and its peers alive or gone:
// maxPayload, handshakeTimeout, the heartbeat, maxBackpressure; and the
// checks of every option.

const assert = require('node:assert/strict');
const net = require('node:net');
const { test } = require('node:test');

const WebSocket = require('ws');

const { Server } = require('..');
const { SERVER_OPTIONS } = require('../lib/server-options');
const { within, once, openClient, next, closed, startServer, delay, defer, until, stalled } = require('./helpers');
const { rawWebSocket, makeCertificate } = require('./server-kit');

const KiB = 1024;
const MiB = 1024 * KiB;

// Upper bounds on how long something takes leave room for a run five times
// slower than on an idle machine.
const SLOW = 5;

/** Milliseconds from now until `socket` is closed by the other side. */
function closedAfter(socket, ms = 15000) {
  const start = Date.now();
  return within(
    new Promise((resolve) => socket.once('close', () => resolve(Date.now() - start))),
    ms,
    'the server to drop the socket'
  );
}

/** A raw TCP connection that is open, reading (and ignoring) what arrives. */
async function rawTcp(t, port) {
  const socket = net.connect({ host: '127.0.0.1', port });
  defer(t, () => socket.destroy());
  socket.on('error', () => {});
  socket.resume();
  await once(socket, 'connect');
  return socket;
}

// --- maxPayload ---------------------------------------------------------------

test('maxPayload: a larger message closes the connection with 1009 and removes it', async (t) => {
  const server = await startServer(t, { maxPayload: 4 * KiB });
  const added = once(server, 'add');
  const client = await openClient(t, server);
  const [connection] = await added;
  const removed = once(server, 'remove');
  const received = [];
  server.messages.forEach((message) => received.push(message));

  client.send(Buffer.alloc(4 * KiB, 1)); // exactly the limit: delivered
  client.send(JSON.stringify('x'.repeat(8 * KiB))); // over it, as text
  assert.equal((await closed(client)).code, 1009);
  const [gone, info] = await removed;
  assert.equal(gone, connection);
  assert.equal(info.code, 1009);
  assert.equal(info.wasClean, false);
  assert.equal(connection.closeCode, 1009);
  assert.equal(server.has(connection), false);
  assert.equal(server.size, 0);
  assert.deepEqual(received, [Buffer.alloc(4 * KiB, 1)]);
  assert.equal(connection.send('too late'), false);
});

// --- handshakeTimeout -----------------------------------------------------------

test('handshakeTimeout: a client that opens TCP and sends nothing is dropped after it', async (t) => {
  const server = await startServer(t, { handshakeTimeout: 300 });
  const socket = await rawTcp(t, server.address().port);
  const elapsed = await closedAfter(socket);
  assert.ok(elapsed >= 280 && elapsed < 2000, `dropped after ${elapsed} ms`);
  assert.equal(server.size, 0);
});

test('handshakeTimeout: a client that sends half a request is dropped after it', async (t) => {
  const server = await startServer(t, { handshakeTimeout: 300 });
  const { port } = server.address();
  const socket = await rawTcp(t, port);
  const answered = [];
  socket.on('data', (chunk) => answered.push(chunk));
  const elapsed = closedAfter(socket);
  socket.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n`);
  // A pause, so the two parts reach the server apart (there is nothing to
  // wait for: the server says nothing until the head is complete). Late or
  // not, the second part is still not the end of the head.
  await delay(100);
  socket.write('Connection: Upgrade\r\n'); // still not the end of the head
  const ms = await elapsed;
  assert.ok(ms >= 280 && ms < 2000, `dropped after ${ms} ms`);
  assert.ok(!Buffer.concat(answered).toString().startsWith('HTTP/1.1 101'), 'never upgraded');
  assert.equal(server.size, 0);
});

test('handshakeTimeout: an async verifyClient that never answers counts against it', async (t) => {
  const server = await startServer(t, {
    handshakeTimeout: 300,
    verifyClient: () => new Promise(() => {})
  });
  const client = new WebSocket(`ws://127.0.0.1:${server.address().port}`);
  defer(t, () => client.terminate());
  client.on('error', () => {});
  const start = Date.now();
  let opened = false;
  client.on('open', () => (opened = true));
  await within(once(client, 'close', 15000), 15000, 'the client to be dropped');
  const elapsed = Date.now() - start;
  assert.equal(opened, false);
  assert.ok(elapsed >= 250 && elapsed < 2000, `dropped after ${elapsed} ms`);
  assert.equal(server.size, 0);
});

test('handshakeTimeout: a client that completes the upgrade in time stays', async (t) => {
  const server = await startServer(t, { handshakeTimeout: 300 });
  const added = once(server, 'add');
  const client = await openClient(t, server);
  const [connection] = await added;
  // A client that opens TCP later and sends nothing: once the timeout has
  // dropped it, it would have dropped the first one too.
  const late = await rawTcp(t, server.address().port);
  await closedAfter(late);
  assert.equal(server.has(connection), true);
  connection.send('still here');
  assert.deepEqual(await next(client), [{ data: '"still here"', binary: false }]);
});

// --- Heartbeat ------------------------------------------------------------------

test('heartbeatInterval: a client that stops answering pings is removed after two intervals (1006, not clean)', async (t) => {
  const interval = 200;
  const server = await startServer(t, { heartbeatInterval: interval });
  const added = once(server, 'add');
  // A raw client: it completes the handshake by hand, then neither reads
  // nor answers anything.
  await rawWebSocket(t, server.address().port);
  const [connection] = await added;
  const addedAt = Date.now();

  const [gone, info] = await once(server, 'remove', 15000);
  const elapsed = Date.now() - addedAt;
  assert.equal(gone, connection);
  assert.deepEqual(info, { code: 1006, reason: '', wasClean: false });
  // Two intervals of silence (400 ms), checked a few times per interval.
  assert.ok(elapsed > interval, `removed after ${elapsed} ms, before one interval`);
  assert.ok(elapsed >= 2 * interval - 60, `removed after ${elapsed} ms, before two intervals`);
  assert.ok(elapsed < SLOW * 500, `removed after ${elapsed} ms`);
  assert.equal(server.size, 0);
  assert.equal(connection.offline, true);
});

test('heartbeatInterval: a healthy ws client (it answers pings) stays connected', async (t) => {
  // 250 ms: the client (in this process) answers well inside the two
  // intervals of silence, even when this process runs late.
  const server = await startServer(t, { heartbeatInterval: 250 });
  const added = once(server, 'add');
  const client = await openClient(t, server);
  const [connection] = await added;
  let pings = 0;
  client.on('ping', () => pings++);
  const removes = [];
  server.on('remove', (conn, info) => removes.push(info));

  // Six pings: the server has watched it over more than two intervals.
  await until(() => pings >= 6, 'six pings');
  assert.deepEqual(removes, []);
  assert.equal(server.has(connection), true);
  assert.equal(connection.offline, false);
  connection.send('alive');
  assert.deepEqual(await next(client), [{ data: '"alive"', binary: false }]);
});

test('heartbeatInterval: the first ping comes half an interval after opening or later, and pings to many connections are spread over the interval', async (t) => {
  const interval = 640;
  const start = Date.now();
  const server = await startServer(t, { heartbeatInterval: interval });
  const clients = await Promise.all(Array.from({ length: 32 }, () => openClient(t, server)));
  const pingedAt = clients.map(() => []);
  clients.forEach((client, i) => client.on('ping', () => pingedAt[i].push(Date.now() - start)));

  await until(() => pingedAt.every((times) => times.length >= 2), 'two pings to every client', 20000);
  const elapsed = Date.now() - start;
  const first = pingedAt.map((times) => times[0]);
  for (const times of pingedAt) {
    // The first ping between 1/2 and 3/2 intervals after opening, then one
    // every interval: no more pings than intervals since the first could
    // have been.
    assert.ok(times.length <= Math.floor((elapsed - interval / 2) / interval) + 1, `pinged at ${times} ms, by ${elapsed} ms`);
    assert.ok(times[0] >= interval / 2, `pinged at ${times} ms`);
    assert.ok(times[0] <= 1.5 * interval + SLOW * 200, `pinged at ${times} ms`);
  }
  // All at once, the first pings would arrive within a few milliseconds.
  const spread = Math.max(...first) - Math.min(...first);
  assert.ok(spread > interval / 2, `first pings spread over ${spread} ms`);
});

test('heartbeatInterval: a silent client that also stopped reading (server writes stalled) is removed after two intervals', async (t) => {
  // What a stopped process looks like: it answers nothing and reads
  // nothing, so what the server sends fills the kernel buffers and the
  // server's writes stall. The heartbeat must drop it all the same.
  const interval = 200;
  const server = await startServer(t, { heartbeatInterval: interval, maxBackpressure: Infinity });
  const added = once(server, 'add');
  await rawWebSocket(t, server.address().port);
  const [connection] = await added;
  const addedAt = Date.now();
  const removed = once(server, 'remove', 15000);
  const chunk = Buffer.alloc(256 * KiB, 2);
  for (let i = 0; i < 64; i++) connection.send(chunk); // 16 MiB
  assert.ok((await stalled(connection)) > 0, 'the writes are stalled');

  const [gone, info] = await removed;
  const elapsed = Date.now() - addedAt;
  assert.equal(gone, connection);
  assert.deepEqual(info, { code: 1006, reason: '', wasClean: false });
  assert.ok(elapsed >= 2 * interval - 60, `removed after ${elapsed} ms, before two intervals`);
  assert.ok(elapsed < SLOW * 500, `removed after ${elapsed} ms`);
});

test('heartbeatInterval: 0 disables it: a silent client is not removed', async (t) => {
  const server = await startServer(t, { heartbeatInterval: 0 });
  const added = once(server, 'add');
  await rawWebSocket(t, server.address().port);
  const [connection] = await added;
  // The same silent client, later, on a Server with a 200 ms heartbeat:
  // once that one is removed, two intervals have passed here as well.
  const watched = await startServer(t, { heartbeatInterval: 200 });
  const watchedAdded = once(watched, 'add');
  await rawWebSocket(t, watched.address().port);
  await watchedAdded;
  await once(watched, 'remove');
  assert.equal(server.has(connection), true);
});

// --- maxBackpressure -------------------------------------------------------------

/**
 * Send `chunk` to `connection` until its `'remove'` (or `limit` bytes went),
 * yielding every few sends. Records the largest bufferedAmount seen before
 * a send. (`send` returns true for a queued message even when the addon
 * then drops it: sends cross into Rust in batches.)
 */
async function flood(server, connection, chunk, limit) {
  let removed = null;
  const onRemove = (conn, info) => {
    if (conn === connection) removed = info;
  };
  server.on('remove', onRemove);
  let sent = 0;
  let peakBefore = 0;
  try {
    for (let i = 0; sent < limit && removed === null; i++) {
      peakBefore = Math.max(peakBefore, connection.bufferedAmount);
      connection.send(chunk);
      sent += chunk.length;
      if (i % 4 === 3) await new Promise((resolve) => setImmediate(resolve));
    }
    await until(() => removed, "'remove' of the client that does not read");
  } finally {
    server.off('remove', onRemove);
  }
  return { sent, peakBefore, removed };
}

test('maxBackpressure: a client that never reads is removed with 1008 once its unsent bytes pass the limit', async (t) => {
  const limit = 1 * MiB;
  const server = await startServer(t, { maxBackpressure: limit });
  const added = once(server, 'add');
  await rawWebSocket(t, server.address().port);
  const [connection] = await added;

  const chunk = Buffer.alloc(256 * KiB, 7);
  // Loopback kernel buffers may take tens of MiB (tcp_rmem max is 32 MiB
  // here) before the server's writes stall and the limit can be passed.
  const result = await flood(server, connection, chunk, 256 * MiB);
  assert.equal(result.removed.code, 1008);
  assert.equal(result.removed.wasClean, false);
  assert.equal(typeof result.removed.reason, 'string');
  assert.equal(connection.closeCode, 1008);
  assert.equal(server.has(connection), false);
  assert.equal(connection.offline, true);
  assert.equal(connection.send('more'), false);
  // Not before the limit: some send found enough unsent to pass it.
  assert.ok(
    result.peakBefore + chunk.length > limit,
    `removed with at most ${result.peakBefore} bytes unsent before a send`
  );
  assert.ok(result.sent < 256 * MiB, 'removed long before 256 MiB were sent');
});

test('maxBackpressure: connection.bufferedAmount grows while the client does not read, and drains when it does', async (t) => {
  const server = await startServer(t, { maxBackpressure: Infinity });
  const added = once(server, 'add');
  const { socket } = await rawWebSocket(t, server.address().port);
  const [connection] = await added;
  assert.equal(connection.bufferedAmount, 0);

  // 32 MiB: more than the kernel buffers of both ends can take.
  const chunk = Buffer.alloc(256 * KiB, 1);
  const samples = [];
  for (let i = 0; i < 128; i++) {
    assert.equal(connection.send(chunk), true);
    if (i % 16 === 15) {
      await delay(20);
      samples.push(connection.bufferedAmount);
    }
  }
  const unsent = await stalled(connection);
  assert.ok(unsent >= 8 * MiB, `only ${unsent} bytes unsent of 32 MiB to a client that does not read`);
  assert.ok(unsent <= 32 * MiB);
  for (let i = 1; i < samples.length; i++) {
    assert.ok(samples[i] >= samples[i - 1], `bufferedAmount went down: ${samples}`);
  }
  // Nothing to wait for: a while later, still nothing has moved.
  await delay(100);
  assert.equal(connection.bufferedAmount, unsent, 'nothing moves while it does not read');

  // The client reads: everything is handed to the kernel.
  let received = 0;
  socket.on('data', (data) => (received += data.length));
  socket.resume();
  await until(() => connection.bufferedAmount === 0, 'bufferedAmount to drain');
  await until(() => received >= 32 * MiB, 'the client to read 32 MiB');
  assert.equal(server.has(connection), true);
});

test('connection.terminate() drops a client that does not read, with writes stalled', async (t) => {
  // terminate() must not wait behind frames the peer will never read.
  const server = await startServer(t, { maxBackpressure: Infinity });
  const added = once(server, 'add');
  await rawWebSocket(t, server.address().port);
  const [connection] = await added;
  const chunk = Buffer.alloc(256 * KiB, 4);
  for (let i = 0; i < 64; i++) connection.send(chunk); // 16 MiB
  assert.ok((await stalled(connection)) > 0, 'the writes are stalled');

  const removed = once(server, 'remove', 5000);
  connection.terminate();
  assert.equal(connection.offline, true);
  const [gone, info] = await removed;
  assert.equal(gone, connection);
  assert.equal(info.code, 1006);
  assert.equal(info.wasClean, false);
});

test('maxBackpressure: 20 clients that never read, 64 MiB sent to each: RSS stays bounded, all removed with 1008', async (t) => {
  const clients = 20;
  const limit = 1 * MiB;
  // The slack covers the allocator, the JS heap and the tungstenite buffers
  // (a write buffer per connection): everything but the queued messages.
  const slack = 64 * MiB;
  // Text frames (json: false) with one shared string: each send copies the
  // 256 KiB into a Rust String that lives until it is written, so unsent
  // bytes really are memory. (A shared Buffer is not copied: queued frames
  // would only reference it and measure nothing.)
  const server = await startServer(t, { maxBackpressure: limit, json: false });
  const chunk = 'm'.repeat(256 * KiB);

  const connections = [];
  server.on('add', (connection) => connections.push(connection));
  const removes = new Map();
  server.on('remove', (connection, info) => removes.set(connection, info));
  await Promise.all(
    Array.from({ length: clients }, () => rawWebSocket(t, server.address().port))
  );
  await until(() => connections.length === clients, `${clients} 'add' events`);

  const baseline = process.memoryUsage.rss();
  let peak = baseline;
  const perClient = 64 * MiB;
  const rounds = perClient / chunk.length;
  const started = Date.now();
  for (let round = 0; round < rounds; round++) {
    let live = 0;
    for (const connection of connections) {
      if (removes.has(connection)) continue;
      live++;
      connection.send(chunk);
    }
    peak = Math.max(peak, process.memoryUsage.rss());
    await new Promise((resolve) => setImmediate(resolve));
    if (live === 0) break;
  }
  await until(() => removes.size === clients, `all ${clients} removed`, 15000);
  peak = Math.max(peak, process.memoryUsage.rss());

  const growth = peak - baseline;
  const bound = clients * limit + slack;
  t.diagnostic(`RSS growth ${(growth / MiB).toFixed(1)} MiB (bound ${bound / MiB} MiB)`);
  assert.ok(
    growth < bound,
    `RSS grew by ${(growth / MiB).toFixed(1)} MiB, over ${bound / MiB} MiB`
  );
  for (const connection of connections) {
    assert.equal(removes.get(connection).code, 1008, 'removed with 1008');
    assert.equal(removes.get(connection).wasClean, false);
  }
  assert.equal(server.size, 0);
  assert.ok(Date.now() - started < 15000, 'within 15 s');
});

test('maxBackpressure: a client that reads is not removed while the server sends 32 MiB', async (t) => {
  const server = await startServer(t, { maxBackpressure: 1 * MiB });
  const added = once(server, 'add');
  const client = await openClient(t, server);
  const [connection] = await added;
  let received = 0;
  client.on('message', (data) => (received += data.length));

  const chunk = Buffer.alloc(128 * KiB, 3);
  for (let sent = 0; sent < 32 * MiB; sent += chunk.length) {
    // A well-behaved sender waits for the backlog to drain below half.
    while (connection.bufferedAmount > 512 * KiB) await delay(1);
    assert.equal(connection.send(chunk), true);
  }
  await until(() => received >= 32 * MiB, 'the client to get 32 MiB', 30000);
  assert.equal(server.has(connection), true);
});

// --- Options --------------------------------------------------------------------

// For every option of SERVER_OPTIONS in lib/server-options.js: a value of the wrong
// type, and words of the expected type the message must contain.
const BAD_VALUES = {
  port: [
    ['8080', 'an integer from 0 to 65535'],
    [-1, 'an integer from 0 to 65535'],
    [65536, 'an integer from 0 to 65535'],
    [1.5, 'an integer from 0 to 65535']
  ],
  host: [[127001, 'a string']],
  server: [['http://localhost', 'an object']],
  path: [[5, 'a string']],
  json: [['yes', 'a boolean']],
  maxPayload: [
    [-1, 'an integer from 0 to 4294967295'],
    [2 ** 32, 'an integer from 0 to 4294967295'],
    ['16MB', 'an integer from 0 to 4294967295']
  ],
  verifyClient: [[true, 'a function']],
  handleProtocols: [[['a'], 'a function']],
  tls: [
    ['cert', 'PEM "cert" and "key"'],
    [{ cert: 5, key: 'k' }, 'PEM "cert" and "key"']
  ],
  heartbeatInterval: [
    [-1, 'a non-negative number'],
    ['30s', 'a non-negative number'],
    [Number.NaN, 'a non-negative number']
  ],
  maxBackpressure: [
    [-1, 'a non-negative integer or Infinity'],
    [0.5, 'a non-negative integer or Infinity']
  ],
  maxReceiveBuffer: [
    [-1, 'a non-negative integer or Infinity'],
    ['1MB', 'a non-negative integer or Infinity']
  ],
  maxReceiveBufferTotal: [
    [1.5, 'a non-negative integer or Infinity'],
    [null, 'a non-negative integer or Infinity']
  ],
  maxConnections: [
    [-1, 'a non-negative integer or Infinity'],
    ['10', 'a non-negative integer or Infinity']
  ],
  reusePort: [[1, 'a boolean']],
  handshakeTimeout: [
    [-5, 'a non-negative number'],
    [null, 'a non-negative number']
  ],
  perMessageDeflate: [
    [1, 'a boolean or an object'],
    ['yes', 'a boolean or an object']
  ],
  // The rest of the cluster checks: cluster.test.js.
  cluster: [
    [1, 'an object'],
    ['redis://redis.example:6379', 'an object']
  ]
};

/** The option names of the Server's option table. */
function serverOptionNames() {
  return Object.keys(SERVER_OPTIONS);
}

function assertInvalidOption(options, ...patterns) {
  let server;
  assert.throws(
    () => {
      server = new Server(options);
    },
    (err) => {
      assert.ok(err instanceof TypeError, `a TypeError, got ${err}`);
      assert.equal(err.code, 'ERR_INVALID_OPTION');
      for (const pattern of patterns) {
        if (typeof pattern === 'string') {
          assert.ok(err.message.includes(pattern), `"${err.message}" names ${pattern}`);
        } else {
          assert.match(err.message, pattern);
        }
      }
      return true;
    },
    `${require('node:util').inspect(options)} was accepted`
  );
  // Only reached when the check is broken: do not leave it listening.
  server?.close();
}

test('options: a bad value of every option throws TypeError ERR_INVALID_OPTION naming the option and the expected type', () => {
  assert.deepEqual(
    Object.keys(BAD_VALUES).sort(),
    serverOptionNames().sort(),
    'a bad value for every option of SERVER_OPTIONS'
  );
  for (const [name, cases] of Object.entries(BAD_VALUES)) {
    for (const [value, expected] of cases) {
      // A base that would listen harmlessly if the check were missing.
      const base = name === 'port' ? { host: '127.0.0.1' } : { port: 0, host: '127.0.0.1' };
      assertInvalidOption({ ...base, [name]: value }, `"${name}"`, expected);
    }
  }
});

test('options: server must be an http.Server or https.Server', () => {
  for (const value of [{}, new (require('node:events'))(), net.createServer()]) {
    assertInvalidOption({ server: value }, '"server"', /http\.Server/);
  }
});

test('options: an unknown option throws TypeError ERR_INVALID_OPTION naming it', () => {
  assertInvalidOption({ port: 0, host: '127.0.0.1', prot: 8080 }, '"prot"');
  assertInvalidOption({ port: 0, host: '127.0.0.1', maxPayLoad: 5 }, '"maxPayLoad"');
});

test("options: ws's noServer and clientTracking name the way here", () => {
  const base = { port: 0, host: '127.0.0.1' };
  assertInvalidOption({ ...base, noServer: true }, '"noServer"', /use the "server" option/);
  assertInvalidOption({ ...base, clientTracking: true }, '"clientTracking"', /always/);
  assertInvalidOption({ ...base, clientTracking: false }, '"clientTracking"', /always/);
});

test('options: perMessageDeflate: false (the default) negotiates nothing', async (t) => {
  const server = await startServer(t, { perMessageDeflate: false });
  const client = await openClient(t, server);
  // No extension was negotiated.
  assert.equal(client.extensions, '');
});

test('options: no port and no server, or options that are not an object, throw TypeError ERR_INVALID_OPTION', () => {
  assertInvalidOption({ host: '127.0.0.1' }, '"port"');
  assertInvalidOption({}, '"port"');
  for (const value of [undefined, null, '8080', true]) {
    assertInvalidOption(value);
  }
});

test('options: tls with bad PEM is ERR_INVALID_OPTION, a valid pair listens', async (t) => {
  assertInvalidOption({ port: 0, host: '127.0.0.1', tls: { cert: 'x', key: 'y' } }, '"tls"');
  const server = await startServer(t, { tls: makeCertificate() });
  assert.ok(server.address().port > 0);
});
