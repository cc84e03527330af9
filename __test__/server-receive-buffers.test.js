'use strict';

// Inbound flow control of the Server: what the addon has read from a client
// and JS has not dispatched yet is bounded per connection
// (maxReceiveBuffer) and over all connections (maxReceiveBufferTotal); past
// those bounds the addon stops reading, and TCP slows the sender down.
// connection.pause()/resume() do the same on demand, and a connection
// emits 'drain' when what it has still to write falls back below half of
// maxBackpressure.

const assert = require('node:assert/strict');
const { test } = require('node:test');

const { openClient, connect, next, once, startServer, delay, defer, until } = require('./helpers');
const {
  rawWebSocket,
  floodPeer,
  busyWait,
  watchMemory,
  KiB,
  MiB,
  mib
} = require('./server-kit');

// --- A client faster than the handler --------------------------------------------

test('maxReceiveBuffer: a client flooding small messages faster than a slow handler takes them is slowed by TCP: RSS stays bounded, every message arrives in order, another client is still served', async (t) => {
  // Long enough that a control client starved until the flood ends would
  // wait longer than the bound on its echoes below.
  // Longer than the bound on a control echo below: a starved control client
  // would wait for the end of the flood.
  const FLOOD_MS = 6000;
  // Each message costs the handler this much, so JS takes some 10 MB/s
  // while the flooder could send over 1 GB/s.
  const HANDLER_US = 20;
  // The default maxReceiveBufferTotal (64 MiB) plus slack for the heap,
  // the allocator and the batches in flight.
  const BOUND = 64 * MiB + 64 * MiB;
  // Defaults: maxReceiveBuffer 1 MiB, maxReceiveBufferTotal 64 MiB.
  const server = await startServer(t);
  const control = await openClient(t, server);

  const memory = watchMemory(BOUND);
  defer(t, () => memory.stop());
  let expected = 0;
  let received = 0;
  let disorder = null;
  server.messages.forEach((message, connection) => {
    if (message.control !== undefined) {
      connection.send(message);
      return;
    }
    if (message.seq !== expected && disorder === null) {
      disorder = `expected seq ${expected}, got ${message.seq} (message #${received})`;
    }
    expected = message.seq + 1;
    received++;
    if ((received & 1023) === 0) memory.sample();
    // Once the bound is passed the test fails: stop being slow, so that
    // cleaning up does not take minutes.
    if (!memory.over) busyWait(HANDLER_US);
  });

  // The control client sends one message every 100 ms; each echo's delay
  // is measured from the moment it was really sent.
  const latencies = [];
  let controlsSent = 0;
  control.on('message', (data) => {
    const { control: i, at } = JSON.parse(data);
    latencies[i] = performance.now() - at;
  });
  const sendControl = () => control.send(JSON.stringify({ control: controlsSent++, at: performance.now() }));
  const controlTimer = setInterval(sendControl, 100);
  defer(t, () => clearInterval(controlTimer));

  const flooder = floodPeer(t, ['client', server.address().port, FLOOD_MS]);
  await flooder.waitFor('open');
  // The flooder's count once it stopped, or null if RSS passed the bound first.
  const stopped = await until(
    () => (memory.over ? 'over' : flooder.events.find((event) => event.type === 'done')),
    "the flooder's 'done'",
    FLOOD_MS + 10000,
    10
  );
  const done = stopped === 'over' ? null : stopped;
  if (done !== null) {
    // The rest: what the kernel buffers still held when the flooder stopped.
    await until(
      () => memory.over || disorder !== null || received >= done.sent,
      `all the flooder's messages (${received} of ${done.sent})`,
      15000,
      10
    );
  }
  clearInterval(controlTimer);
  if (done !== null) {
    await until(
      () => memory.over || latencies.filter((l) => l !== undefined).length === controlsSent,
      'the echoes of the control client',
      10000,
      10
    );
  }
  memory.sample();
  memory.stop();

  const echoed = latencies.filter((l) => l !== undefined);
  t.diagnostic(
    `RSS growth ${mib(memory.growth())} (bound ${mib(BOUND)}); ` +
      `${done?.sent ?? '?'} sent, ${received} received; ` +
      `${echoed.length} of ${controlsSent} control messages echoed` +
      (echoed.length > 0 ? `, the slowest after ${Math.max(...echoed).toFixed(0)} ms` : '')
  );
  assert.ok(
    memory.growth() < BOUND,
    `RSS grew by ${mib(memory.growth())} over ${mib(BOUND)} while a client flooded a slow handler`
  );
  assert.equal(disorder, null, 'messages in order, none missing');
  assert.equal(received, done.sent, 'every message the flooder sent arrived, no more');
  assert.equal(expected, done.sent);
  assert.ok(done.sent > 20000, `the flooder sent ${done.sent} messages`);

  // The other client was served all along: no echo took 5 s (some take a
  // few hundred ms on an idle machine, ten times that on an overloaded
  // one; a starved client's would wait for the end of the 6-s flood). (Its
  // timer runs between batches, so less often than every 100 ms.)
  assert.ok(controlsSent >= 5, `the control client sent ${controlsSent} messages`);
  for (let i = 0; i < controlsSent; i++) {
    assert.ok(latencies[i] !== undefined, `control message ${i} was echoed`);
    assert.ok(latencies[i] < 5000, `control message ${i} was echoed after ${latencies[i].toFixed(0)} ms`);
  }
  assert.equal(server.size, 2, 'both clients still connected');
});

test('maxReceiveBuffer: a single message larger than it is still read whole, up to maxPayload', async (t) => {
  // The bound applies to complete messages: one still arriving is read on,
  // or it could never complete.
  const server = await startServer(t, { maxReceiveBuffer: 64 * KiB, maxPayload: 8 * MiB });
  const received = [];
  server.messages.forEach((message) => {
    received.push(message);
    // Slow at first, so that the limit is reached.
    if (received.length === 1) busyWait(100 * 1000);
  });
  const { client, connection } = await connect(t, server);
  const big = Buffer.alloc(4 * MiB);
  for (let i = 0; i < big.length; i += 4) big.writeUInt32LE(i, i);
  client.send(JSON.stringify({ before: true }));
  client.send(big);
  client.send(JSON.stringify({ after: true }));
  await until(() => received.length === 3, `3 messages, got ${received.length}`);
  assert.deepEqual(received[0], { before: true });
  assert.ok(Buffer.isBuffer(received[1]));
  assert.equal(received[1].length, big.length);
  assert.ok(received[1].equals(big), 'the large message arrived intact');
  assert.deepEqual(received[2], { after: true });
  assert.equal(server.has(connection), true);
});

test('maxReceiveBuffer: messages nobody observes are dropped in Rust and never stop the reading, even while JS is busy', async (t) => {
  // Nothing subscribes to `messages`: what arrives is not waiting for JS,
  // so it counts against no limit and the client is read at full speed.
  const FLOOD_MS = 1000;
  const server = await startServer(t);
  const memory = watchMemory(64 * MiB);
  defer(t, () => memory.stop());
  const flooder = floodPeer(t, ['client', server.address().port, FLOOD_MS]);
  await flooder.waitFor('open');
  // JS is busy through the whole flood: had the messages been kept for it,
  // reading would stop after maxReceiveBuffer and TCP would hold the
  // flooder to what the kernel buffers take (about 5 MiB here, against
  // hundreds of MiB read and dropped).
  busyWait(FLOOD_MS * 1000);
  memory.sample();
  const done = await flooder.waitFor('done', 3000);
  memory.sample();
  memory.stop();
  t.diagnostic(`the flooder sent ${mib(done.bytes)} in ${FLOOD_MS} ms; RSS growth ${mib(memory.growth())}`);
  assert.ok(done.bytes > 32 * MiB, `the flooder could send only ${mib(done.bytes)} in ${FLOOD_MS} ms`);
  assert.ok(memory.growth() < 64 * MiB, `RSS grew by ${mib(memory.growth())}: messages were kept`);
  assert.equal(server.size, 1, 'the flooder is still connected');
  // Still read to the end: when the flooder goes away, the server sees it.
  flooder.child.kill('SIGKILL');
  await until(() => server.size === 0, 'the server to see the flooder gone');
});

// --- The total over all connections -----------------------------------------------

test('maxReceiveBufferTotal: clients stalled in the middle of large messages that together pass it are paused and closed with 1008; a small client is still served', async (t) => {
  const interval = 500;
  const server = await startServer(t, {
    maxPayload: 32 * MiB,
    maxReceiveBufferTotal: 64 * MiB,
    heartbeatInterval: interval
  });
  const removed = new Map();
  server.on('remove', (connection, info) => removed.set(connection, { info, at: performance.now() }));
  server.messages.forEach((message, connection) => connection.send(message));
  const { client: control, connection: controlConnection } = await connect(t, server);

  // Five clients each announce a 15 MiB binary message, send 13.5 MiB of
  // it and stop: 67.5 MiB in messages that never complete.
  const STALLED = 5;
  const connections = [];
  const onAdd = (connection) => connections.push(connection);
  server.on('add', onAdd);
  const raws = [];
  for (let i = 0; i < STALLED; i++) raws.push(await rawWebSocket(t, server.address().port));
  await until(() => connections.length === STALLED, `${STALLED} 'add' events`);
  server.off('add', onAdd);

  // FIN, binary; masked, a 64-bit length; then the mask key (zeros).
  const header = Buffer.alloc(14);
  header[0] = 0x82;
  header[1] = 0x80 | 127;
  header.writeBigUInt64BE(BigInt(15 * MiB), 2);
  // Payload bytes as they are once masked: their value does not matter.
  const part = Buffer.alloc(13.5 * MiB, 0x5a);
  const startedAt = performance.now();
  for (const { socket } of raws) {
    socket.write(header);
    socket.write(part);
  }

  // While the stalled clients hold the total, the control client is served:
  // a connection holding less than maxReceiveBuffer is never paused.
  // (Probes spread over the stall, not waits for anything. An echo comes
  // in milliseconds; a paused client's would not come before the stalled
  // clients are dropped, two intervals in.)
  for (let i = 0; i < 6; i++) {
    await delay(150);
    const sentAt = performance.now();
    control.send(JSON.stringify({ control: i }));
    const [echo] = await next(control, 1, 5000);
    assert.deepEqual(JSON.parse(echo.data), { control: i });
    assert.ok(performance.now() - sentAt < 1000, `echoed after ${performance.now() - sentAt} ms`);
  }

  // Paused in the middle of a message for two intervals: closed with 1008.
  await until(
    () => connections.every((connection) => removed.has(connection)),
    `the stalled clients to be removed (${removed.size} so far)`,
    8 * interval
  );
  const outcomes = connections.map((connection) => removed.get(connection));
  const codes = outcomes.map(({ info }) => info.code);
  const after = outcomes.map(({ at }) => Math.round(at - startedAt));
  t.diagnostic(`stalled clients removed with ${codes} after ${after} ms`);
  // Every stalled client was paused once the total was passed, and the
  // total cannot fall under half before three of them are gone: at least
  // three were still paused when their two intervals ran out. Those still
  // paused when it falls under half are read again; they then sit in the
  // middle of a message answering no ping, and the heartbeat drops them as
  // silent clients (1006).
  assert.ok(
    codes.filter((code) => code === 1008).length >= 3,
    `stalled clients removed with ${codes}, expected 1008`
  );
  for (const code of codes) assert.ok(code === 1008 || code === 1006, `removed with ${code}`);
  assert.ok(
    Math.min(...after) >= 2 * interval - 100,
    `the first stalled client was removed ${Math.min(...after)} ms after it stalled, before two intervals`
  );

  // The control client stays, and is still served.
  assert.equal(removed.has(controlConnection), false, 'the control client was not removed');
  assert.equal(server.has(controlConnection), true);
  control.send(JSON.stringify({ control: 'after' }));
  const [echo] = await next(control, 1, 5000);
  assert.deepEqual(JSON.parse(echo.data), { control: 'after' });
});

// --- Paused connections and the heartbeat -------------------------------------------

test('connection.pause(): the connection is not read, still pinged and not dropped for silence; resume() delivers what was sent meanwhile, in order', async (t) => {
  const interval = 200;
  const server = await startServer(t, { heartbeatInterval: interval });
  const removes = [];
  server.on('remove', (connection, info) => removes.push(info));
  const received = [];
  server.messages.forEach((message, connection) => {
    if (message.other !== undefined) connection.send(message);
    else received.push(message);
  });
  const { client, connection } = await connect(t, server);
  const { client: other } = await connect(t, server);

  connection.pause();
  // The server's own count: the connection no longer reads.
  await until(() => server.stats().paused === 1, 'the connection to stop reading');
  let pings = 0;
  client.on('ping', () => pings++);
  // For five intervals the client sends a message every 100 ms (and its
  // pongs, which the server does not read either).
  for (let i = 0; i < 10; i++) {
    client.send(JSON.stringify({ seq: i }));
    await delay(100);
  }
  assert.deepEqual(received, [], 'nothing was read while paused');
  assert.ok(pings >= 3, `pinged ${pings} times in 1 s while paused`);
  assert.deepEqual(removes, [], 'not dropped for silence while paused');
  assert.equal(server.has(connection), true);
  assert.equal(client.readyState, client.OPEN);
  // Another connection is read as usual meanwhile.
  other.send(JSON.stringify({ other: 1 }));
  assert.deepEqual(JSON.parse((await next(other, 1, 5000))[0].data), { other: 1 });

  connection.resume();
  await until(() => received.length === 10, `10 messages after resume(), got ${received.length}`);
  assert.deepEqual(
    received.map((m) => m.seq),
    [...Array(10).keys()]
  );
  // Read again, it answers pings and stays: three more pings, over more
  // than two intervals.
  const pingsBefore = pings;
  await until(() => pings >= pingsBefore + 3, 'three more pings');
  assert.deepEqual(removes, []);
  assert.equal(server.has(connection), true);
  connection.send('still here');
  assert.deepEqual(await next(client), [{ data: '"still here"', binary: false }]);
});

test('maxReceiveBuffer: a connection paused because JS is busy is still pinged and not dropped for silence; everything arrives in order afterwards', async (t) => {
  const interval = 200;
  const BLOCK_MS = 1200;
  const COUNT = 2000;
  const server = await startServer(t, { heartbeatInterval: interval, maxReceiveBuffer: 64 * KiB });
  const removes = [];
  server.on('remove', (connection, info) => removes.push(info));
  const seqs = [];
  let blockedUntil = 0;
  server.messages.forEach((message) => {
    seqs.push(message.seq);
    if (seqs.length === 1) {
      // JS is busy for six intervals: neither the handler nor the client
      // (in this process too, so it cannot answer pings) runs.
      busyWait(BLOCK_MS * 1000);
      blockedUntil = performance.now();
    }
  });
  const { client, connection } = await connect(t, server);
  let pings = 0;
  client.on('ping', () => pings++);

  // 2 MiB of 1 KiB messages: far more than maxReceiveBuffer.
  const pad = 'p'.repeat(1000);
  for (let i = 0; i < COUNT; i++) client.send(JSON.stringify({ seq: i, pad }));
  await until(() => blockedUntil > 0, 'the handler to block');
  // The pings sent while JS was blocked wait in the client's socket: the
  // pong to a ping of the client's own comes after them.
  const pong = once(client, 'pong');
  client.ping();
  await pong;
  const pingsAfterBlock = pings;

  await until(() => seqs.length === COUNT || removes.length > 0, `${COUNT} messages, got ${seqs.length}`, 15000);
  assert.deepEqual(removes, [], 'not dropped for silence while paused');
  assert.ok(pingsAfterBlock >= 3, `pinged ${pingsAfterBlock} times while JS was blocked ${BLOCK_MS} ms`);
  assert.equal(seqs.length, COUNT);
  assert.ok(
    seqs.every((seq, i) => seq === i),
    'every message arrived, in order'
  );
  // Two more pings, over more than an interval of reading again.
  const pingsNow = pings;
  await until(() => pings >= pingsNow + 2, 'two more pings');
  assert.deepEqual(removes, []);
  assert.equal(server.has(connection), true);
  assert.equal(client.readyState, client.OPEN);
});

// --- pause()/resume() around async work ---------------------------------------------

test('pause()/resume() around an async handler: messages are handled one at a time, in order, none lost', async (t) => {
  const server = await startServer(t);
  const written = [];
  let writing = 0;
  let mostAtOnce = 0;
  // A write that takes 20 ms, such as a database insert.
  async function slowWrite(message) {
    writing++;
    mostAtOnce = Math.max(mostAtOnce, writing);
    await delay(20);
    written.push(message.seq);
    writing--;
  }
  server.messages.forEach(async (message, connection) => {
    connection.pause();
    await slowWrite(message);
    connection.resume();
  });
  const { client, connection } = await connect(t, server);

  // All at once, in one TCP write: the server reads them together, so they
  // are in JS's hands before the first handler pauses.
  const COUNT = 50;
  client._socket.cork();
  for (let i = 0; i < COUNT; i++) client.send(JSON.stringify({ seq: i }));
  client._socket.uncork();
  const started = performance.now();
  await until(() => written.length === COUNT, `${COUNT} writes, got ${written.length}`, 15000);
  const elapsed = performance.now() - started;
  assert.equal(mostAtOnce, 1, `${mostAtOnce} writes ran at once`);
  assert.deepEqual(written, [...Array(COUNT).keys()]);
  assert.ok(elapsed >= COUNT * 20 - 50, `${COUNT} writes of 20 ms, one at a time, took ${elapsed.toFixed(0)} ms`);
  assert.equal(server.has(connection), true);
});

// --- 'drain' --------------------------------------------------------------------------

test("connection 'drain': once, when bufferedAmount falls below half of maxBackpressure after passing it; never while it stays below", async (t) => {
  const limit = 4 * MiB;
  const half = limit / 2;
  const server = await startServer(t, { maxBackpressure: limit });
  const removes = [];
  server.on('remove', (connection, info) => removes.push(info));
  const { client, connection } = await connect(t, server);
  let receivedBytes = 0;
  client.on('message', (data) => (receivedBytes += data.length));
  const drains = [];
  connection.on('drain', () => drains.push(connection.bufferedAmount));

  // A client that reads: 4 MiB in bursts of 1 MiB, never half the limit
  // unsent at once.
  const small = Buffer.alloc(64 * KiB, 1);
  let sent = 0;
  for (let burst = 0; burst < 4; burst++) {
    for (let i = 0; i < 16; i++) {
      connection.send(small);
      sent += small.length;
    }
    assert.ok(connection.bufferedAmount <= 1 * MiB);
    await until(() => receivedBytes === sent, 'the client to read the burst');
  }
  // Nothing marks the absence of a 'drain': a short wait.
  await delay(50);
  assert.deepEqual(drains, [], "no 'drain' while bufferedAmount never passed half");

  // The client stops reading; the server sends until more than half stays
  // unsent. (The kernel may still take some after a write stalled: sends go
  // on, one chunk at a time, until the amount holds still.)
  client._socket.pause();
  const chunk = Buffer.alloc(256 * KiB, 2);
  const deadline = performance.now() + 5000;
  let stalled = 0;
  for (;;) {
    const before = connection.bufferedAmount;
    if (before <= half) {
      connection.send(chunk);
      sent += chunk.length;
      await delay(1);
    } else {
      await delay(100);
      stalled = connection.bufferedAmount;
      if (stalled === before) break;
    }
    assert.ok(performance.now() < deadline, `bufferedAmount ${before} after sending ${mib(sent)} to a client that does not read`);
  }
  assert.ok(stalled > half && stalled < limit, `bufferedAmount ${stalled}`);
  // Drains while it settled (the kernel took more) were right; from here
  // on it holds still above half.
  const drainsBefore = drains.length;
  // Nothing marks the absence of a 'drain': a short wait.
  await delay(100);
  assert.equal(drains.length, drainsBefore, "no 'drain' while the client does not read");

  client._socket.resume();
  await until(() => drains.length > drainsBefore, "'drain' once the client reads");
  await until(() => receivedBytes === sent, 'the client to read everything');
  // No more sends: a second 'drain' would need bufferedAmount to pass half
  // again.
  await until(() => connection.bufferedAmount === 0, 'bufferedAmount 0');
  assert.equal(connection.bufferedAmount, 0);
  assert.equal(drains.length, drainsBefore + 1, `'drain' emitted ${drains.length - drainsBefore} times once the client read`);
  for (const amount of drains) {
    assert.ok(amount < half, `bufferedAmount ${amount} at 'drain', not below half of maxBackpressure`);
  }
  assert.deepEqual(removes, []);
});

// --- Options --------------------------------------------------------------------------

// Bad values of both are in server-limits.test.js, with every option's.
test('options: maxReceiveBuffer and maxReceiveBufferTotal take Infinity, and sizes', async (t) => {
  const server = await startServer(t, { maxReceiveBuffer: Infinity, maxReceiveBufferTotal: Infinity });
  const { client } = await connect(t, server);
  server.messages.forEach((message, connection) => connection.send(message));
  client.send(JSON.stringify('hi'));
  assert.deepEqual(await next(client), [{ data: '"hi"', binary: false }]);
  const sized = await startServer(t, { maxReceiveBuffer: 256 * KiB, maxReceiveBufferTotal: 8 * MiB });
  assert.ok(sized.address().port > 0);
});
