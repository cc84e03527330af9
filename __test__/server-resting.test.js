'use strict';

// A quiet server connection drops its protocol state and makes it again when
// bytes arrive (src/connection_task.rs). These tests pause a client in the places
// where dropping the state would lose something: inside a frame's header,
// inside its payload, and between the fragments of one message.

const assert = require('node:assert/strict');
const { randomBytes } = require('node:crypto');
const { test } = require('node:test');

const { collect, connect, delay, next, once, startServer } = require('./helpers');
const { clientFrame, rawWebSocket, parseFrames } = require('./server-kit');

// Longer than the server needs to go quiet and rest. The pauses here (and
// DORMANT below) are the scenario itself, a client that says nothing for a
// while, not waits for something to happen: the server reports no event
// and keeps no counter when a connection rests or goes dormant. What is
// asserted (the bytes arrive whole, pings are answered) holds however long
// a pause lasts, so a slow machine only makes them longer.
const PAUSE = 50;

/** Writes `bytes` in pieces cut at `cuts`, pausing after each piece. */
async function writeInPieces(socket, bytes, cuts) {
  let from = 0;
  for (const cut of [...cuts, bytes.length]) {
    socket.write(bytes.subarray(from, cut));
    from = cut;
    await delay(PAUSE);
  }
}

test('a frame paused inside its header and its payload arrives whole', async (t) => {
  const server = await startServer(t, { json: false });
  const { socket } = await rawWebSocket(t, server.address().port);
  const payload = randomBytes(70000);
  const frame = clientFrame(0x82, payload);
  const received = collect(server.messages, 1);
  // 1 and 5 cut the 14-byte header, 5000 the payload.
  await writeInPieces(socket, frame, [1, 5, 5000]);
  const [[message]] = await received;
  assert.deepEqual(message, payload);
});

test('a message paused between its fragments arrives as one', async (t) => {
  const server = await startServer(t, { json: false });
  const { socket } = await rawWebSocket(t, server.address().port);
  const received = collect(server.messages, 2);
  socket.write(clientFrame(0x01, Buffer.from('one ')));
  await delay(PAUSE);
  // A ping between fragments, answered while the message is still open.
  socket.write(clientFrame(0x89, Buffer.from('between')));
  await delay(PAUSE);
  socket.write(clientFrame(0x00, Buffer.from('message, ')));
  await delay(PAUSE);
  socket.write(clientFrame(0x80, Buffer.from('three fragments')));
  socket.write(clientFrame(0x81, Buffer.from('and the next')));
  const messages = (await received).map(([message]) => message);
  assert.deepEqual(messages, ['one message, three fragments', 'and the next']);

  socket.write(clientFrame(0x88, Buffer.from([0x03, 0xe8])));
  const answered = await new Promise((resolve) => {
    const chunks = [];
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('close', () => resolve(Buffer.concat(chunks)));
    socket.resume();
  });
  const frames = parseFrames(answered);
  assert.equal(frames[0].opcode, 0xa, 'a pong first');
  assert.equal(frames[0].payload.toString(), 'between');
  assert.equal(frames.at(-1).opcode, 0x8, 'then the close answer');
});

test('a connection quiet for a while still reads, answers pings and sends', async (t) => {
  const server = await startServer(t);
  const { client, connection } = await connect(t, server);
  for (let round = 0; round < 3; round++) {
    await delay(PAUSE);
    const pong = once(client, 'pong');
    client.ping('still there');
    const [payload] = await pong;
    assert.equal(payload.toString(), 'still there');

    await delay(PAUSE);
    const received = collect(server.messages, 1);
    client.send(JSON.stringify({ round }));
    assert.deepEqual((await received)[0][0], { round });

    await delay(PAUSE);
    connection.send({ back: round });
    const [{ data }] = await next(client);
    assert.equal(data, JSON.stringify({ back: round }));
  }
});

// A connection that rested through a whole dormancy tick (src/dormancy.rs,
// one second) leaves tokio; a new connection does so after 20 ms of quiet,
// as in the test above, whose pauses are longer.
const DORMANT = 2500;

test('a connection dormant after being active still reads, answers pings, gets sends, and notices its client leave', async (t) => {
  const server = await startServer(t);
  const { client, connection } = await connect(t, server);
  for (let round = 0; round < 2; round++) {
    const received = collect(server.messages, 1);
    client.send(JSON.stringify({ round }));
    assert.deepEqual((await received)[0][0], { round });
    await delay(DORMANT);

    const pong = once(client, 'pong');
    client.ping('dormant');
    assert.equal((await pong)[0].toString(), 'dormant');
    await delay(DORMANT);

    connection.send({ back: round });
    const [{ data }] = await next(client);
    assert.equal(data, JSON.stringify({ back: round }));
    await delay(DORMANT);
  }
  const removed = once(server, 'remove');
  client.terminate();
  const [gone, info] = await removed;
  assert.equal(gone, connection);
  assert.equal(info.code, 1006);
});
