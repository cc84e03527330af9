'use strict';

// Inbound flow control of the Socket (Node build): what the addon has read
// from the server and JS has not dispatched yet is bounded by
// maxReceiveBuffer; past it the addon stops reading and TCP slows the
// server down.

const assert = require('node:assert/strict');
const { test } = require('node:test');

const { Socket } = require('..');
const { until, defer } = require('./helpers');
const { lifecycle, socket: makeSocket, next } = require('./socket-helpers');
const { floodPeer, busyWait, watchMemory, KiB, MiB, mib } = require('./server-kit');

test('maxReceiveBuffer: a server flooding small messages faster than a slow handler takes them is slowed by TCP: RSS stays bounded, every message arrives in order', async (t) => {
  const FLOOD_MS = 2000;
  // Each message costs the handler this much: JS takes some 10 MB/s.
  const HANDLER_US = 20;
  // maxReceiveBuffer (1 MiB by default) is far below this; the slack covers
  // the heap, the allocator and the batches in flight.
  const BOUND = 64 * MiB + 64 * MiB;
  const flooder = floodPeer(t, ['server', FLOOD_MS]);
  const { port } = await flooder.waitFor('listening');

  const memory = watchMemory(BOUND);
  defer(t, () => memory.stop());
  let expected = 0;
  let received = 0;
  let disorder = null;
  // Default options: maxReceiveBuffer 1 MiB.
  const socket = makeSocket(t, `ws://127.0.0.1:${port}`);
  const events = lifecycle(socket);
  // Observed before the connection opens: the flood starts with it.
  socket.messages.forEach((message) => {
    if (message.seq !== expected && disorder === null) {
      disorder = `expected seq ${expected}, got ${message.seq} (message #${received})`;
    }
    expected = message.seq + 1;
    received++;
    if ((received & 1023) === 0) memory.sample();
    // Once the bound is passed the test fails: stop being slow.
    if (!memory.over) busyWait(HANDLER_US);
  });
  await next(socket, 'open');

  // The flooder's count once it stopped, or null if RSS passed the bound first.
  const stopped = await until(
    () => (memory.over ? 'over' : flooder.events.find((event) => event.type === 'done')),
    "the flooder's 'done'",
    FLOOD_MS + 10000,
    10
  );
  const done = stopped === 'over' ? null : stopped;
  if (done !== null) {
    await until(
      () => memory.over || disorder !== null || received >= done.sent,
      `all the server's messages (${received} of ${done.sent})`,
      15000,
      10
    );
  }
  memory.sample();
  memory.stop();

  t.diagnostic(
    `RSS growth ${mib(memory.growth())} (bound ${mib(BOUND)}); ${done?.sent ?? '?'} sent, ${received} received`
  );
  assert.ok(
    memory.growth() < BOUND,
    `RSS grew by ${mib(memory.growth())} over ${mib(BOUND)} while a server flooded a slow handler`
  );
  assert.equal(disorder, null, 'messages in order, none missing');
  assert.equal(received, done.sent, 'every message the server sent arrived, no more');
  assert.equal(expected, done.sent);
  assert.ok(done.sent > 20000, `the server sent ${done.sent} messages`);
  // One connection all along: nothing was dropped and sent again.
  assert.deepEqual(events.names(), ['open']);
  assert.equal(socket.readyState, Socket.OPEN);
});

test('maxReceiveBuffer: a smaller limit is accepted and messages still arrive whole and in order', async (t) => {
  // 64 KiB of undelivered messages at most, and one message of 1 MiB: a
  // message still arriving is read on, or it could never complete. The
  // handler is slow at first, so the limit is reached.
  const { WebSocketServer } = require('ws');
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise((resolve) => wss.once('listening', resolve));
  defer(t, async () => {
    for (const ws of wss.clients) ws.terminate();
    await new Promise((resolve) => wss.close(resolve));
  });
  const big = Buffer.alloc(1 * MiB, 7);
  wss.on('connection', (ws) => {
    for (let i = 0; i < 500; i++) ws.send(JSON.stringify({ seq: i, pad: 'p'.repeat(1000) }));
    ws.send(big);
    ws.send(JSON.stringify({ seq: 500 }));
  });
  const received = [];
  const socket = makeSocket(t, `ws://127.0.0.1:${wss.address().port}`, { maxReceiveBuffer: 64 * KiB });
  socket.messages.forEach((message) => {
    received.push(message);
    if (received.length === 1) busyWait(100 * 1000);
  });
  await next(socket, 'open');
  await until(() => received.length === 502, `502 messages, got ${received.length}`, 5000);
  for (let i = 0; i < 500; i++) assert.equal(received[i].seq, i);
  assert.ok(Buffer.isBuffer(received[500]) && received[500].equals(big), 'the 1 MiB message, whole');
  assert.deepEqual(received[501], { seq: 500 });
});

test('options: maxReceiveBuffer of the Socket takes a non-negative integer', async (t) => {
  for (const value of [-1, 'x', 1.5, Number.NaN, null, '1048576']) {
    let socket;
    assert.throws(
      () => {
        socket = new Socket('ws://127.0.0.1:1', { maxReceiveBuffer: value, startClosed: true });
      },
      (err) => {
        assert.ok(err instanceof TypeError, `a TypeError, got ${err}`);
        assert.equal(err.code, 'ERR_INVALID_OPTION');
        assert.ok(err.message.includes('"maxReceiveBuffer"'), `"${err.message}" names maxReceiveBuffer`);
        return true;
      },
      `maxReceiveBuffer: ${String(value)} was accepted`
    );
    socket?.close();
  }
  const socket = makeSocket(t, 'ws://127.0.0.1:1', { maxReceiveBuffer: 256 * KiB, startClosed: true });
  assert.equal(socket.readyState, Socket.CLOSED);
});
