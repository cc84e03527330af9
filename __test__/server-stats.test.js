'use strict';

// server.stats(): the counters the addon keeps (README, "Server
// statistics"), moved by real clients.

const assert = require('node:assert/strict');
const { test } = require('node:test');

const { STATS_FIELDS, startServer, openClient, next, closed, once, until } = require('./helpers');


test('a new server reports every field, all zero', async (t) => {
  const server = await startServer(t);
  const stats = server.stats();
  assert.deepEqual(Object.keys(stats).sort(), [...STATS_FIELDS].sort());
  for (const field of STATS_FIELDS.filter((name) => name !== 'closes')) {
    assert.equal(stats[field], 0, field);
  }
  assert.deepEqual(stats.closes, {});
});

test('messages and bytes in and out, connections open and accepted', async (t) => {
  const server = await startServer(t, { json: false });
  server.messages.forEach((text, sender) => server.send(text, { except: sender }));
  const [a, b] = [await openClient(t, server), await openClient(t, server)];
  await until(() => server.stats().connections === 2, 'two connections');

  a.send('hello'); // 5 bytes in, 5 out (to b only)
  assert.equal((await next(b))[0].data, 'hello');
  b.send(Buffer.alloc(1000)); // binary: 1000 bytes in, 1000 out
  await next(a);

  const stats = server.stats();
  assert.equal(stats.accepted, 2);
  assert.equal(stats.connections, 2);
  assert.equal(stats.messagesIn, 2);
  assert.equal(stats.bytesIn, 1005);
  assert.equal(stats.messagesOut, 2);
  assert.equal(stats.bytesOut, 1005);

  // A broadcast counts once per connection that took it.
  assert.equal(server.send('to all'), 2);
  assert.equal(server.stats().messagesOut, 4);
  assert.equal(server.stats().bytesOut, 1005 + 2 * 'to all'.length);
});

test('closes by code, and invalid input counted once per refusal', async (t) => {
  const server = await startServer(t, { maxPayload: 100 });
  // Text that is not JSON is reported, and counted, only when it would
  // have been delivered.
  server.messages.forEach(() => {});
  server.on('error', () => {});

  const polite = await openClient(t, server);
  polite.close(4001);
  await closed(polite);

  const notJson = await openClient(t, server);
  const reported = once(server, 'error');
  notJson.send('{ not json');
  assert.equal((await reported)[0].code, 'ERR_INVALID_JSON');

  const tooBig = await openClient(t, server);
  tooBig.send(JSON.stringify('x'.repeat(200)));
  assert.equal((await closed(tooBig)).code, 1009);

  const dropped = await openClient(t, server);
  dropped.terminate();

  const stats = await until(() => {
    const now = server.stats();
    return now.accepted === 4 && now.connections === 1 ? now : null;
  }, 'three ends counted');
  assert.deepEqual(stats.closes, { 1006: 1, 1009: 1, 4001: 1 });
  // The text that was not JSON, and the message over maxPayload.
  assert.equal(stats.invalid, 2);
});

test('paused counts the connections that do not read now', async (t) => {
  const server = await startServer(t);
  const [added] = await Promise.all([once(server, 'add'), openClient(t, server)]);
  const connection = added[0];
  connection.pause();
  assert.equal(server.stats().paused, 1);
  connection.resume();
  assert.equal(server.stats().paused, 0);
});
