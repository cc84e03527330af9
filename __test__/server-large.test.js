'use strict';

// Large binary messages: a server writes them itself, straight from the
// sender's Buffer (src/direct_frame.rs), between frames tungstenite writes.

const assert = require('node:assert/strict');
const { randomBytes } = require('node:crypto');
const { test } = require('node:test');

const { collect, connect, delay, next, startServer, until } = require('./helpers');

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
  await until(() => connection.bufferedAmount > 0, 'bytes waiting for the reader');
  await delay(200);
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
