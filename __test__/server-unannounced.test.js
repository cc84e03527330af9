'use strict';

// A Server nobody listens to for 'add' or 'remove' makes a connection's JS
// object only when it is needed: at the connection's first message that JS
// observes, or when JS lists the connections (lib/server.js, `#watch`).
// Until then the connection is still a member in every way JS can see.

const assert = require('node:assert/strict');
const { test } = require('node:test');

const { Worker } = require('node:worker_threads');

const { ConnectionGroup } = require('..');

const {
  collect,
  closed,
  next,
  openClient,
  openInOrder,
  localPort,
  startServer,
  until
} = require('./helpers');

/** Keep the JS thread busy for `ms` while the addon's thread goes on. */
function busy(ms) {
  const end = Date.now() + ms;
  while (Date.now() < end);
}

test('connections nobody listened for are counted, listed in order and fully described', async (t) => {
  const server = await startServer(t);
  const clients = await openInOrder(t, server, 3, ['chat', 'other']);

  const listed = [...server];
  assert.deepEqual(
    listed.map((connection) => connection.remotePort),
    clients.map(localPort),
    'one per client, in the order they connected'
  );
  assert.equal(new Set(listed.map((connection) => connection.id)).size, 3);
  for (const connection of listed) {
    assert.equal(connection.remoteAddress, '127.0.0.1');
    assert.equal(connection.protocol, 'chat');
    assert.equal(connection.headers['sec-websocket-protocol'], 'chat,other');
    assert.equal(connection.offline, false);
    assert.equal(server.has(connection), true);
    assert.equal(server.id(connection.id), connection);
  }
  assert.deepEqual([...server], listed, 'listing again gives the same objects');
  assert.equal(server.size, 3);

  listed[1].send({ to: 'the second' });
  assert.deepEqual(await next(clients[1]), [{ data: '{"to":"the second"}', binary: false }]);
});

test("the first 'add' listener hears of the connections JS had not met, on the next tick", async (t) => {
  const server = await startServer(t);
  const [early] = await openInOrder(t, server, 1);

  const added = [];
  const removed = [];
  server.on('add', (connection) => added.push(connection));
  assert.equal(added.length, 0, 'not from within on()');
  assert.equal(server.size, 1, 'a member from the call on');
  const [member] = server;
  server.on('remove', (connection, info) => removed.push([connection, info]));
  await until(() => added.length === 1, "'add' for the first client");
  assert.equal(added[0], member);
  assert.equal(added[0].remotePort, localPort(early));
  assert.equal(server.has(added[0]), true);

  const late = await openClient(t, server);
  await until(() => added.length === 2, "'add' for the second client");
  assert.equal(added[1].remotePort, localPort(late));
  assert.equal(server.size, 2);

  early.close(4001, 'bye');
  await until(() => removed.length === 1, "'remove' for the first client");
  const [connection, info] = removed[0];
  assert.equal(connection, added[0]);
  assert.deepEqual(info, { code: 4001, reason: 'bye', wasClean: true });
  assert.equal(connection.closeCode, 4001);
  assert.equal(connection.headers.upgrade, 'websocket', 'headers still readable after the end');
  assert.equal(server.has(connection), false);
  assert.equal(server.size, 1);
});

test("a 'remove' listener alone hears the end of a connection JS never met", async (t) => {
  const server = await startServer(t);
  const [client] = await openInOrder(t, server, 1);
  const removed = [];
  server.on('remove', (connection, info) => removed.push([connection, info]));
  const port = localPort(client);
  client.close(4002);
  await until(() => removed.length === 1, "'remove'");
  assert.equal(removed[0][0].remotePort, port);
  assert.equal(removed[0][1].code, 4002);
  assert.equal(server.size, 0);
});

test('a union made while a connection JS had not met is being told of still gets it', async (t) => {
  const server = await startServer(t);
  const [client] = await openInOrder(t, server, 1);
  const received = collect(server.messages, 1);
  client.send(JSON.stringify('hello'));
  // Hold the JS thread while the addon tells of the connection, so that
  // the news is on its way while the groups list the server.
  busy(200);
  const union = server.union(new ConnectionGroup());
  const [[, sender]] = await received;
  assert.equal(union.has(sender), true);
  assert.equal(union.size, 1);
  // A filter is a snapshot: made now, it has the connection.
  assert.equal(server.filter(() => true).has(sender), true);
});

test('a filter is a snapshot: a connection that opens while it lists the server is not in it, and the server has it', async (t) => {
  const server = await startServer(t);
  await openInOrder(t, server, 1);
  // A raw upgrade from another thread arrives while the predicate below
  // holds the JS thread, between the listing and the group's listener.
  const opener = new Worker(
    `const net = require('node:net');
    const { workerData: port, parentPort } = require('node:worker_threads');
    parentPort.once('message', () => {
      const socket = net.connect(port, '127.0.0.1', () => socket.write(
        'GET / HTTP/1.1\\r\\nHost: x\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n'));
      socket.on('data', () => parentPort.postMessage('upgraded'));
    });`,
    { eval: true, workerData: server.address().port }
  );
  t.after(() => opener.terminate());
  const upgraded = new Promise((resolve) => opener.once('message', resolve));
  const group = server.filter(() => {
    opener.postMessage('go');
    busy(300);
    return true;
  });
  await upgraded;
  await until(() => server.size === 2, 'both connections in the server');
  assert.equal(group.size, 1);
  assert.equal(server.filter(() => true).size, 2);
});

test('a message from a connection JS had not heard of comes with its member connection', async (t) => {
  const server = await startServer(t);
  const [first, second] = await openInOrder(t, server, 2);
  const errors = [];
  server.on('error', (err) => errors.push(err));

  const received = collect(server.messages, 1);
  second.send(JSON.stringify({ hello: 'server' }));
  const [[message, sender]] = await received;
  assert.deepEqual(message, { hello: 'server' });
  assert.equal(sender.remotePort, localPort(second));
  assert.equal(server.has(sender), true);
  const listed = [...server];
  assert.equal(listed.length, 2);
  assert.equal(listed.filter((connection) => connection === sender).length, 1);

  sender.send('reply');
  assert.deepEqual(await next(second), [{ data: '"reply"', binary: false }]);

  // Invalid JSON is reported with the connection too.
  const listening = server.messages.forEach(() => {});
  t.after(() => listening.dispose());
  first.send('not json');
  await until(() => errors.length === 1, 'ERR_INVALID_JSON');
  assert.equal(errors[0].code, 'ERR_INVALID_JSON');
  assert.equal(errors[0].connection, listed.find((c) => c.remotePort === localPort(first)));
});

test('connections nobody heard of end without a trace, and the count follows', async (t) => {
  const server = await startServer(t);
  const clients = await openInOrder(t, server, 3);
  clients[0].close(1000);
  clients[1].terminate();
  await until(() => server.size === 1, 'server.size 1');
  const listed = [...server];
  assert.equal(listed.length, 1);
  assert.equal(listed[0].remotePort, localPort(clients[2]));
});

test('close() closes connections nobody heard of; listed while closing, they are offline', async (t) => {
  const server = await startServer(t);
  const clients = await openInOrder(t, server, 2);
  const closing = server.close();
  const listed = [...server];
  assert.equal(listed.length, 2);
  assert.deepEqual(
    listed.map((connection) => connection.offline),
    [true, true]
  );
  const codes = await Promise.all(clients.map((client) => closed(client)));
  assert.deepEqual(
    codes.map(({ code }) => code),
    [1001, 1001]
  );
  await closing;
  assert.equal(server.size, 0);
});
