'use strict';

// The Server against real clients on 127.0.0.1: the `ws` package's client and
// Node's WHATWG WebSocket (undici).

const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const { randomBytes } = require('node:crypto');
const { test } = require('node:test');
const WebSocket = require('ws');

const { Server } = require('..');
const {
  within,
  once,
  closeAfter,
  startServer,
  urlOf,
  openClients,
  connect,
  next,
  closed,
  collect,
  delay,
  binaryCases,
  mixedBurst,
  until
} = require('./helpers');

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const CLIENTS = ['ws', 'undici'];

// A ping answered means the server has read every frame sent before it.
async function roundTrip(client) {
  const pong = once(client, 'pong');
  client.ping();
  await pong;
}

// Values that JSON carries unchanged, nested ones included.
const JSON_VALUES = [
  { a: 1, b: 'two', c: [1, 2, { d: null }] },
  [1, 'two', null, [true, false], {}],
  'a string with "quotes" and ünïcødé',
  '',
  42,
  -1.5,
  0,
  null,
  true,
  { nested: { deeper: { deepest: [[[]]] } } }
];

// --- Listening -------------------------------------------------------------

test('new Server(options): ready resolves with address(), and listening fires', async (t) => {
  const server = new Server({ port: 0, host: '127.0.0.1' });
  closeAfter(t, server);
  const listening = once(server, 'listening');

  const address = await server.ready;
  assert.equal(address.address, '127.0.0.1');
  assert.equal(address.family, 'IPv4');
  assert.ok(Number.isInteger(address.port) && address.port > 0);
  assert.deepEqual(server.address(), address);
  await listening;
});

test('new Server(0) with a number listens like { port: 0 } on the default host', async (t) => {
  const server = new Server(0);
  closeAfter(t, server);

  const address = await server.ready;
  assert.deepEqual(server.address(), address);
  assert.ok(Number.isInteger(address.port) && address.port > 0);
  if (address.family === 'IPv6') assert.equal(address.address, '::');
  else assert.deepEqual([address.family, address.address], ['IPv4', '0.0.0.0']);
});

test('address() is null after close()', async (t) => {
  const server = await startServer(t);
  assert.notEqual(server.address(), null);
  await server.close();
  assert.equal(server.address(), null);
});

test('a port in use rejects ready and emits error with code, syscall and port', async (t) => {
  const first = await startServer(t);
  const { port } = first.address();

  const second = new Server({ port, host: '127.0.0.1' });
  closeAfter(t, second);
  const errorEvent = once(second, 'error');
  const expected = { code: 'EADDRINUSE', syscall: 'listen', port, address: '127.0.0.1' };

  await assert.rejects(second.ready, expected);
  const [err] = await errorEvent;
  assert.ok(err instanceof Error);
  assert.equal(err.code, 'EADDRINUSE');
  assert.equal(err.syscall, 'listen');
  assert.equal(err.port, port);
  assert.equal(err.address, '127.0.0.1');
  assert.equal(second.address(), null);
});

test('a port in use with only ready read rejects ready and throws nothing', async (t) => {
  const first = await startServer(t);
  const { port } = first.address();

  const second = new Server({ port, host: '127.0.0.1' });
  closeAfter(t, second);
  await assert.rejects(second.ready, { code: 'EADDRINUSE', syscall: 'listen', port });
  // An emitted 'error' without a listener would throw here, failing the test.
  // Nothing marks its absence: a short wait.
  await delay(20);
});

test('close() of a server whose listen failed resolves with nothing else running', () => {
  // In a child, so that nothing else holds the event loop: each of 50 rounds
  // closes the blocking server first, then awaits the failed one's close().
  // A close() that holds nothing lets the process exit before 'closed'.
  const script = `
    const { Server } = require(${JSON.stringify(require.resolve('..'))});
    (async () => {
      for (let round = 0; round < 50; round++) {
        const first = new Server({ port: 0, host: '127.0.0.1' });
        const { port } = await first.ready;
        const failed = new Server({ port, host: '127.0.0.1' });
        await failed.ready.catch(() => {});
        await first.close();
        await failed.close();
        console.log('closed');
      }
    })();
  `;
  const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 10000 });
  assert.equal(child.stderr, '');
  assert.equal(child.stdout, 'closed\n'.repeat(50));
});

test('the constructor never emits synchronously', async (t) => {
  const first = await startServer(t);
  const emitted = [];
  // Shadow EventEmitter#emit while the constructors run.
  Server.prototype.emit = function (name, ...args) {
    emitted.push(name);
    return Object.getPrototypeOf(Server.prototype).emit.call(this, name, ...args);
  };
  let ok;
  let failed;
  try {
    ok = new Server({ port: 0, host: '127.0.0.1' });
    failed = new Server({ port: first.address().port, host: '127.0.0.1' });
  } finally {
    delete Server.prototype.emit;
  }
  closeAfter(t, ok);
  closeAfter(t, failed);
  assert.deepEqual(emitted, []);

  // Listeners attached right after the constructor still get the events.
  await Promise.all([once(ok, 'listening'), once(failed, 'error')]);
});

// --- Connections -----------------------------------------------------------

test("'add' gives a connection with a UUID v4 id, type, address, port and headers", async (t) => {
  const server = await startServer(t);
  const { connection } = await connect(t, server, {
    headers: { 'X-Test': 'a', 'X-Multi': ['one', 'two'], 'Set-Cookie': ['a=1', 'b=2'] }
  });

  assert.match(connection.id, UUID_V4);
  assert.equal(connection.type, 'websocket');
  assert.equal(connection.remoteAddress, '127.0.0.1');
  assert.ok(Number.isInteger(connection.remotePort) && connection.remotePort > 0);
  assert.equal(connection.offline, false);
  assert.equal(server.has(connection), true);
  assert.equal(server.id(connection.id), connection);

  const { headers } = connection;
  assert.equal(headers['x-test'], 'a');
  assert.equal(headers['X-Test'], undefined);
  assert.equal(headers.host, `127.0.0.1:${server.address().port}`);
  assert.equal(headers.upgrade.toLowerCase(), 'websocket');
  assert.equal(headers['x-multi'], 'one, two');
  assert.deepEqual(headers['set-cookie'], ['a=1', 'b=2']);
});

test('address, port, protocol and headers read the same after the end, read first then or before', async (t) => {
  const server = await startServer(t, { handleProtocols: (protocols) => protocols.at(-1) });
  const ended = [];
  server.on('remove', (connection) => ended.push(connection));
  const opened = [];
  for (let i = 0; i < 3; i++) {
    const added = once(server, 'add');
    const client = new WebSocket(urlOf(server), ['json', 'chat'], { headers: { 'X-Index': String(i) } });
    t.after(() => client.terminate());
    await once(client, 'open');
    const [connection] = await added;
    opened.push({ connection, port: client._socket.localPort, client });
  }
  const [first, second, third] = opened;
  // Read while open, and kept from then on.
  assert.equal(first.connection.remotePort, first.port);
  first.client.close();
  second.client.close();
  await until(() => ended.length === 2, "two 'remove' events");
  server.remove(third.connection);

  // The second and third are read for the first time after their end.
  for (const [i, { connection, port }] of opened.entries()) {
    assert.equal(connection.offline, true);
    assert.equal(connection.remoteAddress, '127.0.0.1', `connection ${i}`);
    assert.equal(connection.remotePort, port, `connection ${i}`);
    assert.equal(connection.protocol, 'chat', `connection ${i}`);
    assert.equal(connection.headers['x-index'], String(i), `connection ${i}`);
    assert.equal(connection.context, undefined);
  }
  assert.deepEqual(Object.keys(first.connection), ['id']);
});

test('two connections get different ids', async (t) => {
  const server = await startServer(t);
  const { connection: a } = await connect(t, server);
  const { connection: b } = await connect(t, server);
  assert.notEqual(a.id, b.id);
  assert.equal(server.size, 2);
});

test('remoteAddress is ::ffff:127.0.0.1 on a dual-stack listener', async (t) => {
  const server = new Server({ port: 0 });
  closeAfter(t, server);
  const { family } = await server.ready;
  const { connection } = await connect(t, server);
  assert.equal(connection.remoteAddress, family === 'IPv6' ? '::ffff:127.0.0.1' : '127.0.0.1');
});

test("a send from inside an 'add' listener reaches the client first", async (t) => {
  const server = await startServer(t);
  server.on('add', (connection) => connection.send({ welcome: connection.id }));
  const { client, connection } = await connect(t, server);

  const [first] = await next(client);
  assert.deepEqual(first, { data: JSON.stringify({ welcome: connection.id }), binary: false });
});

test('server.messages gives (message, member connection) from every client', async (t) => {
  const server = await startServer(t);
  const { client: a, connection: connA } = await connect(t, server);
  const { client: b, connection: connB } = await connect(t, server);

  const got = collect(server.messages, 2);
  a.send(JSON.stringify('from a'));
  await roundTrip(a);
  b.send(JSON.stringify('from b'));
  const [[m1, s1], [m2, s2]] = await got;
  assert.equal(m1, 'from a');
  assert.equal(s1, connA);
  assert.equal(m2, 'from b');
  assert.equal(s2, connB);
  assert.notEqual(s1, server);
});

test("connection.messages gives only that connection's messages", async (t) => {
  const server = await startServer(t);
  const { client: a, connection: connA } = await connect(t, server);
  const { client: b } = await connect(t, server);

  const got = collect(connA.messages, 2);
  b.send(JSON.stringify('b1'));
  await roundTrip(b);
  a.send(JSON.stringify('a1'));
  await roundTrip(a);
  b.send(JSON.stringify('b2'));
  await roundTrip(b);
  a.send(JSON.stringify('a2'));
  assert.deepEqual(await got, [
    ['a1', connA],
    ['a2', connA]
  ]);
});

test('a burst of texts, ASCII and not, between binary messages arrives whole and in order', async (t) => {
  const server = await startServer(t);
  const { client } = await connect(t, server);
  const { sent, expected } = mixedBurst();

  const got = collect(server.messages, sent.length);
  for (const message of sent) client.send(message);
  assert.deepEqual(
    (await got).map(([message]) => message),
    expected
  );
});

// --- Messages, with both clients -------------------------------------------

for (const kind of CLIENTS) {
  test(`[${kind}] JSON values arrive decoded at the server`, async (t) => {
    const server = await startServer(t);
    const { client, connection } = await connect(t, server, { kind });

    const got = collect(server.messages, JSON_VALUES.length);
    for (const value of JSON_VALUES) client.send(JSON.stringify(value));
    const received = await got;
    assert.deepEqual(
      received.map(([message]) => message),
      JSON_VALUES
    );
    for (const [, sender] of received) assert.equal(sender, connection);
  });

  test(`[${kind}] send() JSON-encodes values into text frames`, async (t) => {
    const server = await startServer(t);
    const { client, connection } = await connect(t, server, { kind });

    for (const value of JSON_VALUES) assert.equal(connection.send(value), true);
    const received = await next(client, JSON_VALUES.length);
    assert.deepEqual(
      received,
      JSON_VALUES.map((value) => ({ data: JSON.stringify(value), binary: false }))
    );
  });

  test(`[${kind}] send('hi') arrives as the text "hi" with quotes`, async (t) => {
    const server = await startServer(t);
    const { client, connection } = await connect(t, server, { kind });
    connection.send('hi');
    assert.deepEqual(await next(client), [{ data: '"hi"', binary: false }]);
  });

  test(`[${kind}] every binary type goes out as one binary frame of exactly its bytes`, async (t) => {
    const server = await startServer(t);
    const { client, connection } = await connect(t, server, { kind });

    const cases = binaryCases();
    for (const [name, value] of cases) assert.equal(connection.send(value), true, name);
    const received = await next(client, cases.length);
    cases.forEach(([name, , bytes], i) => {
      assert.equal(received[i].binary, true, `${name} is a binary frame`);
      assert.deepEqual(received[i].data, bytes, `${name} bytes`);
    });
  });

  test(`[${kind}] binary from the client arrives as a Buffer`, async (t) => {
    const server = await startServer(t);
    const { client } = await connect(t, server, { kind });

    const got = collect(server.messages, 1);
    client.send(new Uint8Array([1, 2, 3, 0, 255]));
    const [[message]] = await got;
    assert.ok(Buffer.isBuffer(message), 'a Buffer');
    assert.deepEqual(message, Buffer.from([1, 2, 3, 0, 255]));
  });

  test(`[${kind}] a 1 MiB binary message arrives byte-exact both ways`, async (t) => {
    const server = await startServer(t);
    const { client, connection } = await connect(t, server, { kind });
    const up = randomBytes(1024 * 1024);
    const down = randomBytes(1024 * 1024);

    const got = collect(server.messages, 1);
    client.send(up);
    const [[message]] = await got;
    assert.ok(Buffer.isBuffer(message));
    assert.equal(message.length, up.length);
    assert.ok(message.equals(up), 'client to server bytes differ');

    connection.send(down);
    const [{ data, binary }] = await next(client);
    assert.equal(binary, true);
    assert.equal(data.length, down.length);
    assert.ok(data.equals(down), 'server to client bytes differ');
  });

  test(`[${kind}] connection.close(4000, 'bye') reaches the client and 'remove' gets the code`, async (t) => {
    const server = await startServer(t);
    const { client, connection } = await connect(t, server, { kind });
    const removed = once(server, 'remove');

    connection.close(4000, 'bye');
    assert.deepEqual(await closed(client), { code: 4000, reason: 'bye' });
    // 'remove' reports the close frame received (RFC 6455 7.1.5): the
    // client's echo, which carries the code; whether it repeats the reason is
    // up to the client (ws does, undici does not).
    const [gone, info] = await removed;
    assert.equal(gone, connection);
    assert.equal(info.code, 4000);
    assert.equal(info.wasClean, true);
    assert.equal(typeof info.reason, 'string');
    assert.equal(connection.closeCode, 4000);
    assert.equal(connection.closeReason, info.reason);
    assert.equal(server.has(connection), false);
  });
}

// --- Order ----------------------------------------------------------------

test('1,000 messages from one client arrive at the server in order', async (t) => {
  const server = await startServer(t);
  const { client } = await connect(t, server);
  const count = 1000;

  const got = collect(server.messages, count, 5000);
  for (let i = 0; i < count; i++) client.send(JSON.stringify(i));
  const received = (await got).map(([message]) => message);
  assert.deepEqual(
    received,
    Array.from({ length: count }, (_, i) => i)
  );
});

test('1,000 messages from the server arrive at the client in order', async (t) => {
  const server = await startServer(t);
  const { client, connection } = await connect(t, server);
  const count = 1000;

  for (let i = 0; i < count; i++) connection.send(i);
  const received = (await next(client, count, 5000)).map(({ data }) => JSON.parse(data));
  assert.deepEqual(
    received,
    Array.from({ length: count }, (_, i) => i)
  );
});

// Sends gathered in one tick cross to the addon in chunks (lib/outbox.js);
// text and binary, interleaved over two connections, keep their order
// across the chunk boundaries.
test('1,000 mixed text and binary sends on two connections arrive in order', async (t) => {
  const server = await startServer(t);
  const [a, b] = await openClients(t, server, 2, (i) => ({ headers: { 'X-Index': String(i) } }));
  const byIndex = [];
  for (const connection of server) byIndex[Number(connection.headers['x-index'])] = connection;
  const [first, second] = byIndex;
  const count = 500;

  for (let i = 0; i < count; i++) {
    first.send(i % 3 === 0 ? Buffer.from([i % 256]) : i);
    second.send(i % 5 === 0 ? Buffer.from([i % 256]) : -i);
  }
  const asSent = (connection, i) => {
    if (connection === first) return i % 3 === 0 ? `binary ${i % 256}` : `text ${i}`;
    return i % 5 === 0 ? `binary ${i % 256}` : `text ${-i}`;
  };
  const asReceived = ({ data, binary }) => (binary ? `binary ${data[0]}` : `text ${JSON.parse(data)}`);
  for (const [client, connection] of [
    [a, first],
    [b, second]
  ]) {
    const clientOf = (await next(client, count, 5000)).map(asReceived);
    const expected = Array.from({ length: count }, (_, i) => asSent(connection, i));
    assert.deepEqual(clientOf, expected);
  }
});

// --- Broadcast --------------------------------------------------------------

// 50 clients; `byIndex[i]` is the server's connection for `clients[i]`.
async function fiftyClients(t) {
  const server = await startServer(t);
  const clients = await openClients(t, server, 50, (i) => ({ headers: { 'X-Index': String(i) } }));
  const byIndex = [];
  for (const connection of server) byIndex[Number(connection.headers['x-index'])] = connection;
  assert.equal(server.size, 50);
  return { server, clients, byIndex };
}

// Ends with a marker message: a client that got `expected(i)` and then the
// marker got each message once and nothing else.
async function assertReceived(server, clients, expected) {
  assert.equal(server.send('end'), clients.length);
  await Promise.all(
    clients.map(async (client, i) => {
      const want = [...expected(i), 'end'];
      const got = await next(client, want.length);
      assert.deepEqual(
        got.map(({ data }) => JSON.parse(data)),
        want,
        `client ${i}`
      );
    })
  );
}

test('server.send() reaches every client once and returns the count', async (t) => {
  const { server, clients } = await fiftyClients(t);
  assert.equal(server.send({ to: 'all' }), 50);
  await assertReceived(server, clients, () => [{ to: 'all' }]);
});

test('a broadcast sent as a client reads the 101 reaches it: the server knows a connection before answering it', async (t) => {
  // The client's 'open' handler runs as soon as its 101 has arrived; the
  // server must already count the connection among the broadcast's members.
  const server = await startServer(t);
  for (let i = 0; i < 200; i++) {
    const client = new WebSocket(urlOf(server));
    const received = new Promise((resolve, reject) => {
      client.on('message', (data) => resolve(JSON.parse(data)));
      client.on('error', reject);
    });
    client.on('open', () => server.send(i));
    assert.equal(await within(received, 5000, `the broadcast to client ${i}`), i);
    client.terminate();
  }
});

test('server.send() with except skips that connection, or each of an array', async (t) => {
  const { server, clients, byIndex } = await fiftyClients(t);
  assert.equal(server.send('not 0', { except: byIndex[0] }), 49);
  assert.equal(server.send('not 1, 2', { except: [byIndex[1], byIndex[2]] }), 48);
  await assertReceived(server, clients, (i) => [
    ...(i === 0 ? [] : ['not 0']),
    ...(i === 1 || i === 2 ? [] : ['not 1, 2'])
  ]);
});

test('a group made by server.filter() sends only to its members', async (t) => {
  const { server, clients } = await fiftyClients(t);
  const group = server.filter((connection) => Number(connection.headers['x-index']) % 5 === 0);
  assert.equal(group.size, 10);
  assert.equal(group.send('fives'), 10);
  await assertReceived(server, clients, (i) => (i % 5 === 0 ? ['fives'] : []));
});

test('server.send(blob) reaches every member but except, in order, and returns the count', async (t) => {
  const server = await startServer(t);
  const clients = await openClients(t, server, 3, (i) => ({ headers: { 'X-Index': String(i) } }));
  const skipped = [...server].find((connection) => connection.headers['x-index'] === '0');

  assert.equal(server.send(new Blob(['blob bytes']), { except: skipped }), 2);
  assert.equal(server.send('after'), 3);
  assert.deepEqual(await next(clients[0]), [{ data: '"after"', binary: false }]);
  for (const client of clients.slice(1)) {
    assert.deepEqual(await next(client, 2), [
      { data: Buffer.from('blob bytes'), binary: true },
      { data: '"after"', binary: false }
    ]);
  }
});

// --- Bad input ---------------------------------------------------------------

test("bad JSON emits 'error' ERR_INVALID_JSON and the connection stays open", async (t) => {
  const server = await startServer(t);
  const { client, connection } = await connect(t, server);
  const errorEvent = once(server, 'error');

  const got = collect(server.messages, 1);
  client.send('not json');
  const [err] = await errorEvent;
  assert.equal(err.code, 'ERR_INVALID_JSON');
  assert.equal(err.data, 'not json');
  assert.equal(err.connection, connection);

  client.send(JSON.stringify({ still: 'open' }));
  const [[message, sender]] = await got;
  assert.deepEqual(message, { still: 'open' });
  assert.equal(sender, connection);
  assert.equal(connection.send('reply'), true);
  assert.deepEqual(await next(client), [{ data: '"reply"', binary: false }]);
});

test("bad JSON with no 'error' listener does not crash the process", async (t) => {
  const server = await startServer(t);
  const { client, connection } = await connect(t, server);
  assert.equal(server.listenerCount('error'), 0);

  const got = collect(server.messages, 1);
  client.send('not json');
  client.send(JSON.stringify('after'));
  assert.deepEqual(await got, [['after', connection]]);
  // An uncaught throw would fail this test while it still runs. (It would
  // have come before 'after', in order; the short wait is for a throw
  // rethrown asynchronously.)
  await delay(20);
  assert.equal(connection.offline, false);
});

test('send() of a value JSON cannot encode throws a TypeError and sends nothing', async (t) => {
  const server = await startServer(t);
  const { client, connection } = await connect(t, server);
  const cyclic = { name: 'loop' };
  cyclic.self = cyclic;

  for (const value of [undefined, () => {}, Symbol('s'), 10n, cyclic]) {
    assert.throws(() => connection.send(value), TypeError);
    assert.throws(() => server.send(value), TypeError);
    assert.throws(() => server.filter(() => true).send(value), TypeError);
  }
  connection.send('next');
  assert.deepEqual(await next(client), [{ data: '"next"', binary: false }]);
});

test("a group's send() across two Servers sends nothing when either cannot encode the message", async (t) => {
  const jsonServer = await startServer(t);
  const textServer = await startServer(t, { json: false });
  const { client: jsonClient } = await connect(t, jsonServer);
  const { client: textClient } = await connect(t, textServer);
  // Both orders: the Server that refuses may come first or second.
  for (const group of [jsonServer.union(textServer), textServer.union(jsonServer)]) {
    assert.throws(() => group.send({ object: 'json: false refuses it' }), TypeError);
  }
  assert.equal(jsonServer.union(textServer).send('a string both take'), 2);
  assert.deepEqual(await next(jsonClient), [{ data: '"a string both take"', binary: false }]);
  assert.deepEqual(await next(textClient), [{ data: 'a string both take', binary: false }]);
});

test('send() encodes the object as it is at the call', async (t) => {
  const server = await startServer(t);
  const { client, connection } = await connect(t, server);
  const value = { n: 1 };
  connection.send(value);
  value.n = 2;
  assert.deepEqual(await next(client), [{ data: '{"n":1}', binary: false }]);
});

test('json: false passes text through unchanged both ways and rejects objects', async (t) => {
  const server = await startServer(t, { json: false });
  const { client, connection } = await connect(t, server);
  const errors = [];
  server.on('error', (err) => errors.push(err));

  const got = collect(server.messages, 2);
  client.send('not json, {exactly}');
  client.send('"quoted"');
  assert.deepEqual(await got, [
    ['not json, {exactly}', connection],
    ['"quoted"', connection]
  ]);
  assert.deepEqual(errors, []);

  assert.throws(() => connection.send({ a: 1 }), TypeError);
  assert.throws(() => connection.send(42), TypeError);
  assert.throws(() => server.send(null), TypeError);
  connection.send('raw');
  connection.send(Buffer.from([1, 2]));
  assert.deepEqual(await next(client, 2), [
    { data: 'raw', binary: false },
    { data: Buffer.from([1, 2]), binary: true }
  ]);
});

// --- Closing ----------------------------------------------------------------

test('connection.send() returns false from close() on and never throws', async (t) => {
  const server = await startServer(t);
  const { client, connection } = await connect(t, server);
  const removed = once(server, 'remove');

  connection.send('before');
  connection.close(4000, 'bye');
  assert.equal(connection.offline, true);
  assert.equal(connection.send('after close()'), false);
  await removed;
  assert.equal(connection.send('after remove'), false);
  assert.equal(server.send('to nobody'), 0);

  assert.deepEqual(await next(client), [{ data: '"before"', binary: false }]);
  await closed(client);
  await assert.rejects(next(client, 1, 100), /Timed out/, 'nothing after the close frame');
});

test('connection.close() throws a RangeError for a bad code or a reason over 123 bytes', async (t) => {
  const server = await startServer(t);
  const { client, connection } = await connect(t, server);

  assert.throws(() => connection.close(1001), RangeError);
  assert.throws(() => connection.close(2999), RangeError);
  assert.throws(() => connection.close(5000), RangeError);
  assert.throws(() => connection.close(4000, 'x'.repeat(124)), RangeError);
  assert.throws(() => connection.close(4000, 'é'.repeat(62)), RangeError);
  assert.equal(connection.offline, false);

  connection.close(4000, 'x'.repeat(123));
  assert.deepEqual(await closed(client), { code: 4000, reason: 'x'.repeat(123) });
});

test("a client's close fires 'remove' once with its code and completes messages", async (t) => {
  const server = await startServer(t);
  const { client, connection } = await connect(t, server);
  const removes = [];
  server.on('remove', (conn, info) => removes.push([conn, info]));
  const { messages } = connection;

  client.close(4001, 'done');
  await within(messages.complete, 2000, 'connection.messages.complete');
  assert.equal(removes.length, 1, "'remove' fired before complete resolved");
  assert.equal(removes[0][0], connection);
  assert.deepEqual(removes[0][1], { code: 4001, reason: 'done', wasClean: true });
  assert.equal(connection.closeCode, 4001);
  assert.equal(connection.offline, true);

  // Another client comes and goes: once its 'remove' is in, a second one
  // for the first client would have come too.
  const other = await connect(t, server);
  other.client.close(4002, 'also done');
  await until(() => removes.length >= 2, "the other client's 'remove'");
  assert.equal(removes.filter(([conn]) => conn === connection).length, 1, "'remove' fired exactly once");
  assert.equal(removes[1][0], other.connection);
  assert.equal(server.size, 0);
});

test("connection.messages first read after 'remove' is already complete", async (t) => {
  const server = await startServer(t);
  const { client, connection } = await connect(t, server);
  const removed = once(server, 'remove');
  client.close();
  await removed;
  await within(connection.messages.complete, 500, 'connection.messages.complete');
});

test('server.close() closes every client with 1001, removes each, then emits close', async (t) => {
  const server = await startServer(t);
  const clients = await openClients(t, server, 3);
  const events = [];
  server.on('remove', (connection, info) => events.push(['remove', info.code]));
  server.on('close', () => events.push(['close']));

  const closing = server.close();
  assert.ok(closing instanceof Promise);
  assert.equal(server.close(), closing, 'a second call returns the same Promise');
  await within(closing, 6000, 'server.close()');

  for (const client of clients) assert.equal((await closed(client)).code, 1001);
  await until(() => events.some(([name]) => name === 'close'), "'close'");
  assert.deepEqual(events, [['remove', 1001], ['remove', 1001], ['remove', 1001], ['close']]);
  assert.equal(server.size, 0);
  assert.equal(server.address(), null);
});

// --- Options ----------------------------------------------------------------

test("path: '/ws' upgrades /ws with a query and answers 400 elsewhere", async (t) => {
  const server = await startServer(t, { path: '/ws' });
  const { connection } = await connect(t, server, { path: '/ws?x=1' });
  assert.equal(server.size, 1);
  assert.equal(server.has(connection), true);

  const other = new WebSocket(urlOf(server, '/other'));
  other.on('error', () => {});
  t.after(() => other.terminate());
  const [, response] = await once(other, 'unexpected-response');
  assert.equal(response.statusCode, 400);
  // A client on /ws after it is added: the refused one would have been
  // added before it.
  const { connection: later } = await connect(t, server, { path: '/ws' });
  assert.equal(server.size, 2);
  assert.deepEqual([...server].map((c) => c.id).sort(), [connection.id, later.id].sort());
});

test('maxPayload: a larger message closes the connection with 1009', async (t) => {
  const server = await startServer(t, { maxPayload: 1024 });
  const { client, connection } = await connect(t, server);
  const removed = once(server, 'remove');
  const received = [];
  server.messages.forEach((message) => received.push(message));

  client.send(Buffer.alloc(1024, 1));
  client.send(Buffer.alloc(2048, 2));
  assert.equal((await closed(client)).code, 1009);
  const [gone, info] = await removed;
  assert.equal(gone, connection);
  assert.equal(info.code, 1009);
  assert.deepEqual(received, [Buffer.alloc(1024, 1)]);
});

// --- Lazy streams -----------------------------------------------------------

for (const [name, streamOf] of [
  ['server.messages', (server) => server.messages],
  ['connection.messages', (server, connection) => connection.messages]
]) {
  test(`messages sent while ${name} is unobserved are dropped, bad JSON too`, async (t) => {
    const server = await startServer(t);
    const { client, connection } = await connect(t, server);
    const stream = streamOf(server, connection);
    const errors = [];
    server.on('error', (err) => errors.push(err));

    // Before the first subscriber, then again once the last one has gone
    // (the collect() of the first round disposes of its subscription).
    for (const round of ['before', 'after dispose']) {
      client.send(JSON.stringify(`unobserved ${round}`));
      client.send(`not json ${round}`);
      // The pong: the server has read them (unobserved). A bad JSON 'error'
      // would come before the observed message below, and is checked after it.
      await roundTrip(client);
      const observed = collect(stream, 1);
      client.send(JSON.stringify(`observed ${round}`));
      assert.deepEqual(await observed, [[`observed ${round}`, connection]]);
    }
    assert.deepEqual(errors, []);
  });
}
