'use strict';

// Large binary messages: a server writes them itself, straight from the
// sender's Buffer (src/direct_frame.rs), between frames tungstenite writes,
// and reads them itself too, past tungstenite (src/server_stream.rs).

const assert = require('node:assert/strict');
const { randomBytes } = require('node:crypto');
const { test } = require('node:test');

const { collect, connect, delay, next, once, startServer, stalled, until } = require('./helpers');
const { clientFrame, parseFrames, rawWebSocket } = require('./server-kit');

test('large binary messages arrive whole and in order among small ones', async (t) => {
  const server = await startServer(t);
  const { client, connection } = await connect(t, server);
  const big = randomBytes(1024 * 1024);
  const medium = randomBytes(200 * 1024);
  const sent = ['first', big, { between: true }, medium, medium, 'last'];
  for (const message of sent) connection.send(message);

  const received = await next(client, sent.length);
  assert.deepEqual(received.map(({ binary }) => binary), [false, true, false, true, true, false]);
  assert.equal(received[0].data, '"first"');
  assert.deepEqual(received[1].data, big);
  assert.equal(received[2].data, '{"between":true}');
  assert.deepEqual(received[3].data, medium);
  assert.deepEqual(received[4].data, medium);
  assert.equal(received[5].data, '"last"');
});

test('a reader that pauses gets every large message, and bufferedAmount drains', async (t) => {
  const server = await startServer(t);
  const { client, connection } = await connect(t, server);
  // Paused, the client stops reading: the kernel's buffers fill and the
  // server's writes of the 1 MiB frames are left partly done.
  client._socket.pause();
  const messages = Array.from({ length: 6 }, () => randomBytes(1024 * 1024));
  for (const message of messages) connection.send(message);
  connection.send('after them');
  await stalled(connection);
  client._socket.resume();

  const received = await next(client, messages.length + 1, 10000);
  for (let i = 0; i < messages.length; i++) assert.deepEqual(received[i].data, messages[i]);
  assert.equal(received.at(-1).data, '"after them"');
  await until(() => connection.bufferedAmount === 0, 'bufferedAmount to drain');
});

test('large binary messages from a client arrive whole, and small ones after them', async (t) => {
  const server = await startServer(t, { json: false });
  const { client } = await connect(t, server);
  // The first frame is large: the connection reads in large chunks.
  const big = randomBytes(3 * 1024 * 1024 + 5);
  const received = collect(server.messages, 3, 10000);
  client.send(big);
  client.send('small');
  client.send(big.subarray(0, 100000));
  const messages = (await received).map(([message]) => message);
  assert.deepEqual(messages[0], big);
  assert.equal(messages[1], 'small');
  assert.deepEqual(messages[2], big.subarray(0, 100000));
});

// --- Large binary frames read past tungstenite (src/server_stream.rs) ------

/** Everything the server sends a raw client until it closes the socket. */
function framesUntilClosed(socket) {
  return new Promise((resolve) => {
    const chunks = [];
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('close', () => resolve(parseFrames(Buffer.concat(chunks))));
    socket.resume();
  });
}

test('large binary frames keep their order among small frames, however the bytes are cut', async (t) => {
  const server = await startServer(t, { json: false });
  const { socket } = await rawWebSocket(t, server.address().port);
  // Lengths that are not a multiple of 4 check the unmasking of the tail.
  const first = randomBytes(100 * 1024 + 3);
  const second = randomBytes(64 * 1024);
  const bytes = Buffer.concat([
    clientFrame(0x81, Buffer.from('before')),
    clientFrame(0x82, first),
    clientFrame(0x89, Buffer.from('ping')),
    clientFrame(0x82, second),
    clientFrame(0x81, Buffer.from('after'))
  ]);
  for (const cuts of [[], [7, 9, 20, 70000, 102420, 102430], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]]) {
    const received = collect(server.messages, 4, 5000);
    let from = 0;
    for (const cut of [...cuts, bytes.length]) {
      socket.write(bytes.subarray(from, cut));
      from = cut;
      // Apart, so that the server reads the pieces one by one (a slow
      // machine only keeps them further apart).
      await delay(5);
    }
    const messages = (await received).map(([message]) => message);
    assert.equal(messages[0], 'before', `cut at ${cuts}`);
    assert.ok(first.equals(messages[1]), `first large frame, cut at ${cuts}`);
    assert.ok(second.equals(messages[2]), `second large frame, cut at ${cuts}`);
    assert.equal(messages[3], 'after', `cut at ${cuts}`);
  }
  const frames = framesUntilClosed(socket);
  socket.end(clientFrame(0x88, Buffer.from([0x03, 0xe8])));
  const pongs = (await frames).filter(({ opcode }) => opcode === 0xa);
  assert.deepEqual(pongs.map(({ payload }) => payload.toString()), ['ping', 'ping', 'ping']);
});

for (const [what, frames] of [
  ['with a reserved bit set', () => [clientFrame(0xc2, randomBytes(70000))]],
  ['unmasked', () => [clientFrame(0x82, randomBytes(70000), { masked: false })]],
  ['inside a fragmented message', () => [clientFrame(0x02, Buffer.from('open')), clientFrame(0x82, randomBytes(70000))]]
]) {
  test(`a large binary frame ${what} fails the connection with 1002`, async (t) => {
    const server = await startServer(t, { json: false });
    const { socket } = await rawWebSocket(t, server.address().port);
    const received = [];
    server.messages.forEach((message) => received.push(message));
    const removed = once(server, 'remove');
    const answer = framesUntilClosed(socket);
    socket.write(Buffer.concat(frames()));
    const close = (await answer).find(({ opcode }) => opcode === 0x8);
    assert.equal(close?.payload.readUInt16BE(0), 1002);
    const [, info] = await removed;
    assert.equal(info.code, 1002);
    assert.deepEqual(received, []);
  });
}

test('maxPayload holds for large binary frames: the limit is delivered, one byte more closes with 1009', async (t) => {
  const limit = 64 * 1024;
  const server = await startServer(t, { json: false, maxPayload: limit });
  const { socket } = await rawWebSocket(t, server.address().port);
  const atLimit = randomBytes(limit);
  const received = collect(server.messages, 1);
  socket.write(clientFrame(0x82, atLimit));
  assert.ok(atLimit.equals((await received)[0][0]));

  const removed = once(server, 'remove');
  const answer = framesUntilClosed(socket);
  socket.write(clientFrame(0x82, randomBytes(limit + 1)));
  const close = (await answer).find(({ opcode }) => opcode === 0x8);
  assert.equal(close?.payload.readUInt16BE(0), 1009);
  assert.equal((await removed)[1].code, 1009);
});

test('a client gone in the middle of a large binary frame is removed, and nothing is delivered', async (t) => {
  const server = await startServer(t, { json: false });
  const { socket } = await rawWebSocket(t, server.address().port);
  const received = [];
  server.messages.forEach((message) => received.push(message));
  const removed = once(server, 'remove');
  socket.write(clientFrame(0x82, randomBytes(200000)).subarray(0, 100000));
  // A moment for the server to read the half frame before the client goes
  // (nothing to wait for: the server answers nothing to it).
  await delay(50);
  socket.destroy();
  const [, info] = await removed;
  assert.equal(info.code, 1006);
  assert.equal(info.wasClean, false);
  assert.deepEqual(received, []);
});
