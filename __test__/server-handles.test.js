'use strict';

// A connection's handle names a slot in the addon, and a slot serves another
// connection once JS has let go of the last one (src/server/slots.rs). These
// tests make the slots turn over and check that nothing reaches the wrong
// client: not an ended connection's calls, not an echo, not an upgrade's
// verdict.

const assert = require('node:assert/strict');
const { test } = require('node:test');
const WebSocket = require('ws');

const { HANDLE_SLOT_BITS } = require('../lib/native');
const { kHandle } = require('../lib/symbols');
const { next, once, openClient, startServer, until, urlOf } = require('./helpers');

const slotOf = (handle) => handle & (2 ** HANDLE_SLOT_BITS - 1);

test("an ended connection's object reaches nothing once its slot serves another client", async (t) => {
  const server = await startServer(t);
  const added = [];
  server.on('add', (connection) => added.push([connection, connection[kHandle]]));
  const removed = once(server, 'remove');

  const first = await openClient(t, server);
  await until(() => added.length === 1, "the first 'add'");
  const [ended, endedHandle] = added[0];
  first.close();
  await removed;
  const second = await openClient(t, server);
  await until(() => added.length === 2, "the second 'add'");
  const [current, currentHandle] = added[1];
  assert.equal(slotOf(currentHandle), slotOf(endedHandle), 'the slot was reused');
  assert.notEqual(currentHandle, endedHandle, 'under another handle');

  assert.equal(ended.send({ to: 'the first' }), false);
  ended.pause();
  ended.close(4000, 'stale');
  ended.terminate();
  assert.equal(ended.bufferedAmount, 0);
  assert.equal(server.has(ended), false);

  current.send({ to: 'the second' });
  assert.deepEqual(await next(second), [{ data: '{"to":"the second"}', binary: false }]);
  assert.equal(current.offline, false);
  assert.equal(second.readyState, WebSocket.OPEN);
});

test('echoes reach their own client while slots turn over, announced lazily or not', async (t) => {
  for (const listening of [false, true]) {
    const server = await startServer(t);
    if (listening) server.on('add', () => {});
    const handles = new Set();
    server.messages.forEach((message, connection) => {
      handles.add(connection[kHandle]);
      connection.send(message);
    });
    for (let i = 0; i < 40; i++) {
      const client = await openClient(t, server);
      client.send(JSON.stringify({ client: i }));
      assert.deepEqual(await next(client), [{ data: `{"client":${i}}`, binary: false }], `client ${i}`);
      const gone = once(client, 'close');
      client.close();
      await gone;
      await until(() => server.size === 0, 'the server to see the close');
    }
    const slots = new Set([...handles].map(slotOf));
    assert.equal(handles.size, 40, `one handle per connection (listening: ${listening})`);
    assert.ok(slots.size <= 3, `${slots.size} slots for 40 connections in turn (listening: ${listening})`);
  }
});

test('refused upgrades give their slot back, and a late verdict reaches no later upgrade', async (t) => {
  const verdicts = [];
  const server = await startServer(t, {
    verifyClient: (info) => {
      if (info.headers['x-verdict'] === 'now') return info.headers['x-accept'] === 'yes';
      // Answered after the handshake timed out: JS may still call it.
      return new Promise((resolve) => verdicts.push(resolve));
    },
    handshakeTimeout: 200
  });
  const handles = [];
  server.on('add', (connection) => handles.push(connection[kHandle]));

  for (let i = 0; i < 10; i++) {
    const client = new WebSocket(urlOf(server), { headers: { 'x-verdict': 'now', 'x-accept': 'no' } });
    const [, response] = await once(client, 'unexpected-response');
    assert.equal(response.statusCode, 401);
  }
  // One upgrade JS never answers in time.
  const slow = new WebSocket(urlOf(server), { headers: { 'x-verdict': 'later' } });
  slow.on('error', () => {});
  await until(() => verdicts.length === 1, 'the slow verdict to be asked');
  await once(slow, 'close');

  const accepted = new WebSocket(urlOf(server), { headers: { 'x-verdict': 'now', 'x-accept': 'yes' } });
  t.after(() => accepted.terminate());
  await once(accepted, 'open');
  await until(() => handles.length === 1, "the accepted connection's 'add'");
  assert.ok(slotOf(handles[0]) <= 3, `slot ${slotOf(handles[0])} after 11 upgrades that never opened`);

  // The slow upgrade's verdict comes now: it opens nothing and closes nothing.
  verdicts[0](true);
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(server.size, 1);
  assert.equal(accepted.readyState, WebSocket.OPEN);
});
