'use strict';

// server.close({ code, reason, timeout }): the close code and reason every
// client is sent (code 1001 unless given), and the grace period after
// which a client that does not answer the close frame is dropped (5 s
// unless given). Bad arguments throw and leave the server serving.

const assert = require('node:assert/strict');
const { test } = require('node:test');

const { Socket } = require('..');
const {
  within,
  once,
  openClient,
  openClients,
  next,
  closed,
  startServer,
  defer,
  until
} = require('./helpers');
const { rawWebSocket, parseFrames, drain } = require('./server-kit');
const { lifecycle } = require('./socket-helpers');

/** The straggler's connection: a raw client that never answers our close frame. */
async function straggler(t, server) {
  const before = new Set(server);
  const raw = await rawWebSocket(t, server.address().port);
  const connection = await until(
    () => [...server].find((c) => !before.has(c) && c.remotePort === raw.socket.localPort),
    "the raw client's connection"
  );
  return { ...raw, connection };
}

/** The close frame a raw client was sent, once the server has dropped it. */
async function closeFrameSentTo(socket) {
  const frame = parseFrames(await drain(socket, 7000)).find(({ opcode }) => opcode === 0x8);
  assert.ok(frame, 'a close frame was sent');
  return { code: frame.payload.readUInt16BE(0), reason: frame.payload.subarray(2).toString() };
}

test('close({ code: 1012, reason: "restart" }): every client is sent 1012 "restart", then removed, then \'close\'', async (t) => {
  const server = await startServer(t);
  const clients = await openClients(t, server, 3);
  const undici = await openClient(t, server, { kind: 'undici' });
  await until(() => server.size === 4, '4 connections');
  const events = [];
  server.on('remove', (connection, info) => events.push(['remove', info]));
  server.on('close', () => events.push(['close']));

  await within(server.close({ code: 1012, reason: 'restart' }), 6000, 'server.close()');
  for (const client of [...clients, undici]) {
    assert.deepEqual(await closed(client), { code: 1012, reason: 'restart' });
  }
  await until(() => events.some(([name]) => name === 'close'), "'close'");
  assert.equal(events.length, 5);
  assert.deepEqual(events.at(-1), ['close']);
  for (const [name, info] of events.slice(0, 4)) {
    assert.equal(name, 'remove');
    // The clients answer with the code (and reason) they were sent.
    assert.equal(info.code, 1012);
    assert.equal(info.wasClean, true);
  }
  assert.equal(server.size, 0);
});

test('close(), close({}) and close(undefined) still send 1001', async (t) => {
  for (const args of [[], [{}], [undefined]]) {
    const server = await startServer(t);
    const client = await openClient(t, server);
    await until(() => server.size === 1, 'a connection');
    await within(server.close(...args), 6000, `server.close(${args.map(String)})`);
    assert.equal((await closed(client)).code, 1001, `close(${args.map(String)})`);
  }
});

test('close({ code }): each kind of code a client may be sent arrives as given', async (t) => {
  // The edges of the ranges allowed: 1000-1003, 1007-1014, 3000-4999.
  for (const code of [1000, 1003, 1007, 1011, 1014, 3000, 4999]) {
    const server = await startServer(t);
    const client = await openClient(t, server);
    await until(() => server.size === 1, 'a connection');
    await within(server.close({ code }), 6000, `server.close({ code: ${code} })`);
    assert.equal((await closed(client)).code, code);
  }
});

test('close({ reason }): a reason of 123 UTF-8 bytes (the most a close frame holds) arrives whole', async (t) => {
  const reason = 'é'.repeat(61) + 'x'; // 123 bytes
  const server = await startServer(t);
  const client = await openClient(t, server);
  await until(() => server.size === 1, 'a connection');
  await within(server.close({ code: 4000, reason }), 6000, 'server.close()');
  assert.deepEqual(await closed(client), { code: 4000, reason });
});

test('close({ timeout: 300 }): a client that never answers is dropped after about 300 ms, then \'close\'', async (t) => {
  const server = await startServer(t);
  const quiet = await straggler(t, server);
  const polite = await openClient(t, server);
  await until(() => server.size === 2, '2 connections');
  const removes = [];
  server.on('remove', (connection, info) => removes.push([connection, info, Date.now()]));
  let closedAt = null;
  server.on('close', () => (closedAt = Date.now()));

  const start = Date.now();
  await within(server.close({ code: 1012, reason: 'restart', timeout: 300 }), 5000, 'server.close()');
  const elapsed = Date.now() - start;
  assert.equal((await closed(polite)).code, 1012);
  const [, info, removedAt] = removes.find(([connection]) => connection === quiet.connection);
  assert.equal(info.wasClean, false);
  // About 300 ms, not the 5-s default (five times 300 for a loaded machine).
  assert.ok(removedAt - start >= 250, `the straggler was dropped after ${removedAt - start} ms`);
  assert.ok(removedAt - start < 1500, `the straggler was dropped after ${removedAt - start} ms`);
  assert.ok(elapsed < 1500, `close() took ${elapsed} ms`);
  assert.ok(closedAt !== null && closedAt >= removedAt, "'close' after the last 'remove'");
  // It was sent the close frame before it was dropped.
  assert.deepEqual(await closeFrameSentTo(quiet.socket), { code: 1012, reason: 'restart' });
});

test('close({ timeout: 3000 }): a client that never answers is dropped after about 3 s, not 5', async (t) => {
  const server = await startServer(t);
  const quiet = await straggler(t, server);
  const removed = once(server, 'remove', 15000);
  const start = Date.now();
  const closing = server.close({ timeout: 3000 });
  const [gone] = await removed;
  const elapsed = Date.now() - start;
  assert.equal(gone, quiet.connection);
  // Not before 3 s, and before the 5-s default would have dropped it: the
  // most room a loaded machine can be given without mistaking one for the
  // other.
  assert.ok(elapsed >= 2800 && elapsed < 4500, `the straggler was dropped after ${elapsed} ms`);
  await within(closing, 5000, 'server.close() after the last remove');
  assert.equal((await closeFrameSentTo(quiet.socket)).code, 1001);
});

test('close({ timeout: 0 }): a client that never answers is dropped at once', async (t) => {
  const server = await startServer(t);
  await straggler(t, server);
  const start = Date.now();
  await within(server.close({ timeout: 0 }), 5000, 'server.close()');
  const elapsed = Date.now() - start;
  // At once, not after the 5-s default (the bound is for a loaded machine).
  assert.ok(elapsed < 2500, `close() took ${elapsed} ms`);
  assert.equal(server.size, 0);
});

test('close() with a bad code or reason throws RangeError ERR_INVALID_ARG_VALUE, a bad timeout TypeError ERR_INVALID_ARG_TYPE, and the server keeps serving', async (t) => {
  const server = await startServer(t);
  server.messages.forEach((message, connection) => connection.send(message));
  const client = await openClient(t, server);
  await until(() => server.size === 1, 'a connection');

  const badValues = [
    ...[999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000].map((code) => ({ code })),
    { reason: 'é'.repeat(62) }, // 124 bytes
    { code: 4000, reason: 'x'.repeat(124) }
  ];
  for (const options of badValues) {
    assert.throws(
      () => server.close(options),
      (err) => {
        assert.ok(err instanceof RangeError, `a RangeError for ${JSON.stringify(options)}, got ${err}`);
        assert.equal(err.code, 'ERR_INVALID_ARG_VALUE');
        return true;
      },
      `close(${JSON.stringify(options)}) did not throw`
    );
  }
  for (const timeout of [-1, '300', Number.NaN, null, {}, -Infinity]) {
    assert.throws(
      () => server.close({ timeout }),
      (err) => {
        assert.ok(err instanceof TypeError, `a TypeError for timeout ${String(timeout)}, got ${err}`);
        assert.equal(err.code, 'ERR_INVALID_ARG_TYPE');
        return true;
      },
      `close({ timeout: ${String(timeout)} }) did not throw`
    );
  }

  // None of them started closing.
  assert.equal(server.size, 1);
  assert.ok(server.address() !== null, 'still listening');
  client.send(JSON.stringify('still open'));
  assert.deepEqual(await next(client), [{ data: '"still open"', binary: false }]);
  const newcomer = await openClient(t, server);
  newcomer.send(JSON.stringify('newcomer'));
  assert.deepEqual(await next(newcomer), [{ data: '"newcomer"', binary: false }]);
});

test('a Socket closed with 1012 waits at least minReconnectionDelay before connecting again', async (t) => {
  const server = await startServer(t);
  const minReconnectionDelay = 500;
  const socket = new Socket(`ws://127.0.0.1:${server.address().port}`, { minReconnectionDelay, jitter: 0 });
  defer(t, async () => {
    socket.on('error', () => {});
    socket.close();
  });
  const events = lifecycle(socket);
  await once(socket, 'open');

  const closing = once(socket, 'close');
  // Measured from before the close: JS may hear of it late on a loaded
  // machine, but the Socket's wait cannot start before the close is sent.
  const closedAt = performance.now();
  server.close({ code: 1012, reason: 'restart' });
  const [closeEvent] = await closing;
  assert.equal(closeEvent.code, 1012);
  assert.equal(closeEvent.willReconnect, true);
  // Nothing listens any more: the next attempt fails, and when it does
  // tells when it was made.
  const failed = await until(() => events.of('error').find(({ at }) => at > closedAt), 'the next attempt');
  const waited = failed.at - closedAt;
  assert.ok(waited >= minReconnectionDelay - 1, `the next attempt came ${waited.toFixed(0)} ms after the close`);
});
