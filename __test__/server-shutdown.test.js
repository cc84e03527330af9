'use strict';

// server.close(): stop accepting at once, close 1001 to everyone, wait up
// to 5 s, terminate the rest, 'remove' for each and then 'close' once; one
// Promise for every call.

const assert = require('node:assert/strict');
const http = require('node:http');
const net = require('node:net');
const { test } = require('node:test');

const WebSocket = require('ws');

const { within, once, startServer, attachServer, openClient, openClients, closed, delay, defer, until, stalled } = require('./helpers');
const { listenOn, rawWebSocket, parseFrames, drain } = require('./server-kit');

/** How a connection attempt to `port` ends: 'open', a status, or an error code. */
function attempt(t, port, path = '/') {
  const client = new WebSocket(`ws://127.0.0.1:${port}${path}`);
  defer(t, () => client.terminate());
  return within(
    new Promise((resolve) => {
      client.on('open', () => resolve('open'));
      client.on('unexpected-response', (req, res) => {
        resolve(res.statusCode);
        req.destroy();
      });
      client.on('error', (err) => resolve(err.code ?? err.message));
    }),
    3000,
    'the connection attempt to end'
  );
}

/** A raw TCP connect to `port`: 'refused', or what happened once connected. */
function tcpAttempt(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.on('error', (err) => resolve(err.code));
    socket.on('connect', () => {
      socket.destroy();
      resolve('connected');
    });
  });
}

test('close(): new connections are refused at once', async (t) => {
  // The window is narrow (the listener is dropped on the addon's side), so
  // the scenario runs 60 times: a server with a client is closed and a new
  // client tries to connect right after the call. None may be upgraded.
  const outcomes = {};
  for (let round = 0; round < 60; round++) {
    const server = await startServer(t);
    const { port } = server.address();
    let added = 0;
    server.on('add', () => added++);
    await openClient(t, server);
    await until(() => added === 1, "the first client's 'add'");
    added = 0;

    const closing = server.close();
    const outcome = await attempt(t, port);
    outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
    assert.ok(
      ['ECONNREFUSED', 'ECONNRESET', 503].includes(outcome) || /hang up|closed/i.test(outcome),
      `round ${round}: the attempt right after close() ended with ${outcome}`
    );
    assert.equal(await tcpAttempt(port), 'ECONNREFUSED', 'the listener is gone');
    await within(closing, 1000, 'server.close() with one polite client');
    assert.equal(added, 0, "'add' after close()");
  }
  t.diagnostic(`outcomes: ${JSON.stringify(outcomes)}`);
});

test('close() of an attached Server: upgrades for its path are no longer served at once', async (t) => {
  const httpServer = await listenOn(
    t,
    http.createServer((req, res) => res.end('plain http'))
  );
  const server = attachServer(t, httpServer, { path: '/ws' });
  const { port } = await server.ready;
  let added = 0;
  server.on('add', () => added++);

  const closing = server.close();
  const outcome = await attempt(t, port, '/ws');
  assert.notEqual(outcome, 'open');
  await within(closing, 6000, 'server.close()');
  // Nothing marks the absence of a late 'add': a short wait.
  await delay(20);
  assert.equal(added, 0);
  assert.equal(server.size, 0);
});

test('close() of an attached Server right after it handed an upgrade over: that connection gets 1001 too', async (t) => {
  // close() comes while the addon is still taking the socket over (it has
  // not registered the connection yet). The connection must still be
  // closed with 1001 at once, not dropped 5 s later. Repeated, because the
  // window is a race with the addon's thread.
  for (let round = 0; round < 60; round++) {
    const httpServer = await listenOn(
      t,
      http.createServer((req, res) => res.end('plain http'))
    );
    const server = attachServer(t, httpServer, { path: '/ws' });
    await server.ready;
    // After our router's listener: runs once the upgrade was handed over.
    httpServer.on('upgrade', () => setImmediate(() => server.close()));
    const removed = [];
    server.on('remove', (connection, info) => removed.push(info));

    const client = new WebSocket(`ws://127.0.0.1:${httpServer.address().port}/ws`);
    defer(t, () => client.terminate());
    client.on('error', () => {});
    const start = Date.now();
    const [code] = await once(client, 'close', 7000);
    const elapsed = Date.now() - start;
    assert.equal(code, 1001, `round ${round}: closed with ${code} after ${elapsed} ms`);
    // (At once, not after the 5-s grace; the bound is for a loaded machine.)
    assert.ok(elapsed < 2500, `round ${round}: closed after ${elapsed} ms`);
    await within(server.close(), 2500, 'server.close()');
    for (const info of removed) assert.equal(info.code, 1001, `round ${round}`);
  }
});

test('close() right after a client opened (before its \'add\'): that client gets 1001 at once too', async (t) => {
  // The client has its 101 but the addon may not have started serving the
  // connection when close() runs. It must be closed with 1001 like the
  // others, not dropped after the 5-s grace. Repeated: the window is narrow.
  for (let round = 0; round < 60; round++) {
    const server = await startServer(t);
    const client = new WebSocket(`ws://127.0.0.1:${server.address().port}`);
    defer(t, () => client.terminate());
    client.on('error', () => {});
    await once(client, 'open');
    const start = Date.now();
    const closing = server.close();
    const [code] = await once(client, 'close', 7000);
    const elapsed = Date.now() - start;
    assert.equal(code, 1001, `round ${round}: closed with ${code} after ${elapsed} ms`);
    // (At once, not after the 5-s grace; the bound is for a loaded machine.)
    assert.ok(elapsed < 2500, `round ${round}: closed after ${elapsed} ms`);
    await within(closing, 2500, 'server.close()');
  }
});

test('close(): every connection gets close 1001', async (t) => {
  const server = await startServer(t);
  const wsClients = await Promise.all([1, 2, 3].map(() => openClient(t, server)));
  const undici = await openClient(t, server, { kind: 'undici' });
  await until(() => server.size === 4, "4 'add' events");
  const removes = [];
  server.on('remove', (connection, info) => removes.push(info));

  await within(server.close(), 6000, 'server.close()');
  for (const client of [...wsClients, undici]) {
    const { code } = await closed(client);
    assert.equal(code, 1001);
  }
  assert.equal(removes.length, 4);
  for (const info of removes) {
    assert.equal(info.code, 1001);
    assert.equal(info.wasClean, true);
  }
});

test('close(): a client that does not answer the close frame is terminated after about 5 s', async (t) => {
  const server = await startServer(t);
  const { port } = server.address();
  const straggler = await rawWebSocket(t, port);
  const polite = await openClient(t, server);
  await until(() => server.size === 2, "2 'add' events");
  const stragglerConnection = [...server].find(
    (connection) => connection.remotePort === straggler.socket.localPort
  );
  const politeConnection = [...server].find((connection) => connection !== stragglerConnection);
  assert.ok(stragglerConnection && politeConnection);

  const removes = [];
  server.on('remove', (connection, info) => removes.push([connection, info, Date.now()]));
  let closedAt = null;
  server.on('close', () => (closedAt = Date.now()));

  const start = Date.now();
  const closing = server.close();
  let resolvedAt = null;
  closing.then(() => (resolvedAt = Date.now()));

  // The polite client answers at once; the straggler keeps close() waiting.
  assert.equal((await closed(polite)).code, 1001);
  await until(() => removes.length >= 1, "the polite client's 'remove'");
  assert.equal(removes.length, 1);
  assert.equal(removes[0][0], politeConnection);
  assert.equal(resolvedAt, null, 'close() waits for the straggler');
  assert.equal(server.has(stragglerConnection), true);
  // Still closing, and still refusing newcomers.
  assert.equal(await tcpAttempt(port), 'ECONNREFUSED');

  await within(closing, 15000, 'server.close()');
  const elapsed = resolvedAt - start;
  // The grace period is 5 s; the upper bound leaves 5 s for a stalled
  // process to hear of the termination.
  assert.ok(elapsed >= 4500 && elapsed < 10000, `close() took ${elapsed} ms`);
  assert.equal(removes.length, 2);
  const [gone, info, removedAt] = removes[1];
  assert.equal(gone, stragglerConnection);
  assert.equal(info.wasClean, false);
  assert.equal(info.code, 1006);
  assert.ok(removedAt - start >= 4500, `the straggler was removed after ${removedAt - start} ms`);
  assert.ok(closedAt >= removedAt, "'close' after the last 'remove'");

  // The straggler was sent close 1001 before it was dropped.
  const frames = parseFrames(await drain(straggler.socket));
  const close = frames.find((frame) => frame.opcode === 0x8);
  assert.ok(close, 'a close frame was sent');
  assert.equal(close.payload.readUInt16BE(0), 1001);
});

test('close(): a client that reads nothing while the server writes to it is terminated after about 5 s', async (t) => {
  // A stopped process: our close frame waits behind megabytes it will
  // never read. close() must still end within the grace period.
  const server = await startServer(t, { maxBackpressure: Infinity });
  const added = once(server, 'add');
  await rawWebSocket(t, server.address().port);
  const [connection] = await added;
  const chunk = Buffer.alloc(256 * 1024, 5);
  for (let i = 0; i < 64; i++) connection.send(chunk); // 16 MiB
  assert.ok((await stalled(connection)) > 0, 'the writes are stalled');

  const removed = once(server, 'remove', 15000);
  const start = Date.now();
  const closing = server.close();
  const [gone, info] = await removed;
  assert.equal(gone, connection);
  assert.equal(info.wasClean, false);
  await within(closing, 5000, 'server.close() after the last remove');
  const elapsed = Date.now() - start;
  // The grace period is 5 s; the upper bound leaves 5 s for a stalled
  // process to hear of the termination.
  assert.ok(elapsed >= 4500 && elapsed < 10000, `close() took ${elapsed} ms`);
});

test('close(): from the call on, every connection is offline and its send returns false', async (t) => {
  // Offline from the first close frame in either direction; close()
  // sends ours to everyone. A straggler keeps them members for a while.
  const server = await startServer(t);
  const straggler = await rawWebSocket(t, server.address().port);
  await openClient(t, server);
  await until(() => server.size === 2, "2 'add' events");
  const connections = [...server];
  for (const connection of connections) assert.equal(connection.offline, false);

  const closing = server.close();
  for (const connection of connections) {
    assert.equal(connection.offline, true, 'offline right after close()');
    assert.equal(connection.send('after close()'), false, 'send refused after close()');
  }
  assert.equal(server.send('to nobody'), 0, 'server.send skips closing members');
  // Let the straggler go, so that close() ends quickly.
  straggler.socket.destroy();
  await within(closing, 6000, 'server.close()');
});

test("close(): 'remove' fires for each connection before 'close', which fires once", async (t) => {
  const server = await startServer(t);
  const clients = await openClients(t, server, 5);
  const members = new Set(server);
  assert.equal(members.size, 5);
  const events = [];
  server.on('remove', (connection) => {
    assert.ok(members.has(connection), 'a member is removed');
    members.delete(connection);
    events.push('remove');
  });
  server.on('close', () => events.push('close'));

  await within(server.close(), 6000, 'server.close()');
  await until(() => events.includes('close'), "'close'");
  assert.deepEqual(events, ['remove', 'remove', 'remove', 'remove', 'remove', 'close']);
  assert.equal(members.size, 0, 'every connection was removed');
  assert.equal(server.size, 0);
  for (const client of clients) assert.equal((await closed(client)).code, 1001);
});

test("close() with only clients that answer: 'close' follows the last 'remove' without waiting", async (t) => {
  // Nothing is left to wait for once every connection is removed (the 5-s
  // grace is for stragglers): 'close' and the Promise follow at once.
  const gaps = [];
  for (let round = 0; round < 20; round++) {
    const server = await startServer(t);
    await openClients(t, server, 2);
    let lastRemove = 0;
    server.on('remove', () => (lastRemove = Date.now()));
    const closed = once(server, 'close', 6000);
    await within(server.close(), 6000, 'server.close()');
    await closed;
    gaps.push(Date.now() - lastRemove);
  }
  t.diagnostic(`ms from the last 'remove' to close() resolving: ${gaps}`);
  // Without waiting means well under the 5-s grace; the bound leaves room
  // for a loaded machine's late timers and batches.
  assert.ok(
    gaps.every((gap) => gap < 250),
    `ms from the last 'remove' to close() resolving, per round: ${gaps}`
  );
});

test('close(): the Promise resolves, and a second close() returns the same Promise', async (t) => {
  const server = await startServer(t);
  await openClient(t, server);
  let closes = 0;
  server.on('close', () => closes++);

  const first = server.close();
  assert.ok(first instanceof Promise);
  const second = server.close();
  assert.equal(second, first);
  assert.equal(await within(first, 6000, 'the first close()'), undefined);
  await within(second, 100, 'the second close()');
  // Once closed, still the same resolved Promise, and nothing more happens.
  const third = server.close();
  assert.equal(third, first);
  await within(third, 100, 'a close() after it resolved');
  // Nothing marks the absence of a second 'close': a short wait.
  await delay(20);
  assert.equal(closes, 1);
  assert.equal(server.address(), null);
});

test('close() with no connection at all resolves and emits close', async (t) => {
  const server = await startServer(t);
  const closeEvent = once(server, 'close');
  await within(server.close(), 1000, 'server.close()');
  await closeEvent;
});
