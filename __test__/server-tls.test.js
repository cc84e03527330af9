'use strict';

// `tls: { cert, key }`: wss:// served by the addon itself (rustls), with a
// self-signed certificate made in the test by openssl.

const assert = require('node:assert/strict');
const { randomBytes } = require('node:crypto');
const net = require('node:net');
const { test } = require('node:test');
const tls = require('node:tls');

const WebSocket = require('ws');

const { Server, Socket } = require('..');
const { within, once, track, next, collect, startServer, defer, until } = require('./helpers');
const { makeCertificate, tcpRelay, tlsRecordTypes } = require('./server-kit');

function assertInvalidTls(tls, what) {
  assert.throws(
    () => {
      const server = new Server({ port: 0, host: '127.0.0.1', tls });
      // Only reached when the check is broken: do not leave it listening.
      server.close();
    },
    (err) => {
      assert.ok(err instanceof TypeError, `${what}: a TypeError, got ${err}`);
      assert.equal(err.code, 'ERR_INVALID_OPTION', what);
      assert.match(err.message, /tls/, `${what}: the message names the option`);
      return true;
    },
    what
  );
}

test('tls: { cert, key } serves wss:// and the ws client (ca) exchanges messages both ways', async (t) => {
  const { cert, key } = makeCertificate();
  const server = await startServer(t, { tls: { cert, key } });
  const { port } = server.address();

  const added = once(server, 'add');
  const client = track(new WebSocket(`wss://127.0.0.1:${port}`, { ca: cert }));
  defer(t, () => client.terminate());
  await once(client, 'open');
  const [connection] = await added;
  assert.equal(server.size, 1);

  const up = randomBytes(300 * 1024);
  const got = collect(server.messages, 2);
  client.send(JSON.stringify({ hello: 'over tls' }));
  client.send(up);
  const received = await got;
  assert.deepEqual(received[0], [{ hello: 'over tls' }, connection]);
  assert.ok(Buffer.isBuffer(received[1][0]) && received[1][0].equals(up), 'binary up');

  const down = randomBytes(300 * 1024);
  connection.send({ reply: 'over tls' });
  connection.send(down);
  const [text, binary] = await next(client, 2);
  assert.deepEqual(text, { data: '{"reply":"over tls"}', binary: false });
  assert.ok(binary.binary && binary.data.equals(down), 'binary down');

  // By name too: the certificate is for localhost.
  const byName = track(
    new WebSocket(`wss://localhost:${port}`, { ca: cert, family: 4 })
  );
  defer(t, () => byName.terminate());
  await once(byName, 'open');

  const removed = once(server, 'remove');
  client.close(4000, 'done');
  const [gone, info] = await removed;
  assert.equal(gone, connection);
  assert.deepEqual(info, { code: 4000, reason: 'done', wasClean: true });
});

test('tls: our Socket with tls.ca exchanges messages both ways with a wss:// Server', async (t) => {
  const { cert, key } = makeCertificate();
  const server = await startServer(t, { tls: { cert, key } });
  const { port } = server.address();

  const added = once(server, 'add');
  const socket = new Socket(`wss://127.0.0.1:${port}`, { tls: { ca: cert } });
  defer(t, () => socket.close());
  const errors = [];
  socket.on('error', (err) => errors.push(err));
  const inbox = [];
  socket.messages.forEach((message) => inbox.push(message));

  await within(once(socket, 'open', 3000), 3000, "the Socket's 'open'");
  const [connection] = await added;

  const got = collect(server.messages, 2);
  socket.send({ from: 'socket' });
  socket.send(Buffer.from([1, 2, 3, 250]));
  const received = await got;
  assert.deepEqual(received[0], [{ from: 'socket' }, connection]);
  assert.deepEqual(received[1][0], Buffer.from([1, 2, 3, 250]));

  connection.send({ from: 'server' });
  connection.send(new Uint8Array([9, 8, 7]));
  await until(() => inbox.length >= 2, 'two messages at the Socket', 2000);
  assert.deepEqual(inbox[0], { from: 'server' });
  assert.deepEqual(Buffer.from(inbox[1]), Buffer.from([9, 8, 7]));
  assert.deepEqual(errors, []);
});

/**
 * A WebSocket upgrade over a `node:tls` connection, whose session tickets
 * can be kept and offered again (`session`): resolves once the answer's
 * head came, with the tickets received by then.
 */
async function upgradeOverTls(t, port, ca, session) {
  const socket = tls.connect({ host: '127.0.0.1', port, ca, session });
  defer(t, () => socket.destroy());
  const tickets = [];
  socket.on('session', (ticket) => tickets.push(ticket));
  await once(socket, 'secureConnect');
  const key = randomBytes(16).toString('base64');
  socket.write(
    'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`
  );
  let head = '';
  socket.setEncoding('latin1');
  socket.on('data', (chunk) => (head += chunk));
  await until(() => head.includes('\r\n\r\n'), 'the answer to the upgrade', 3000);
  return { socket, tickets, head };
}

test('tls: the Server sends one stateless session ticket, which resumes after 300 other clients came', async (t) => {
  const { cert, key } = makeCertificate();
  const server = await startServer(t, { tls: { cert, key } });
  const { port } = server.address();

  const first = await upgradeOverTls(t, port, cert);
  assert.match(first.head, /^HTTP\/1\.1 101 /);
  assert.equal(first.socket.isSessionReused(), false);
  assert.equal(first.tickets.length, 1, 'one ticket, sent before the 101');
  first.socket.destroy();

  // More clients than a session cache of 256 would remember come between.
  for (let round = 0; round < 10; round++) {
    await Promise.all(
      Array.from({ length: 30 }, async () => {
        const other = tls.connect({ host: '127.0.0.1', port, ca: cert });
        defer(t, () => other.destroy());
        await once(other, 'session');
        other.destroy();
      })
    );
  }

  const second = await upgradeOverTls(t, port, cert, first.tickets[0]);
  assert.match(second.head, /^HTTP\/1\.1 101 /);
  assert.equal(second.socket.isSessionReused(), true, 'the session was resumed');
  assert.equal(second.tickets.length, 1, 'a resumed handshake hands out the next ticket');
  await until(() => server.size === 1, 'the first connection gone and the second served');
});

test('tls: after a clean close the Server sends TLS close_notify, then closes TCP', async (t) => {
  const { cert, key } = makeCertificate();
  const server = await startServer(t, { tls: { cert, key } });
  const relay = await tcpRelay(t, server.address().port);
  // TLS 1.2, where a record's type (an alert or data) is not encrypted.
  const client = track(new WebSocket(`wss://127.0.0.1:${relay.port}`, { ca: cert, maxVersion: 'TLSv1.2' }));
  defer(t, () => client.terminate());
  await once(client, 'open');
  client.close(4000, 'done');
  const [code] = await once(client, 'close');
  assert.equal(code, 4000);
  await within(relay.serverEnded, 5000, 'the Server closing TCP');
  const types = tlsRecordTypes(relay.fromServer());
  assert.equal(types.filter((type) => type === 21).length, 1, `one alert among the records ${types}`);
  assert.equal(types.at(-1), 21, `the alert comes last, after the close frame: ${types}`);
});

test('tls: a plain-TCP (ws://) client to a wss:// Server is not served and the Server keeps serving', async (t) => {
  const { cert, key } = makeCertificate();
  const server = await startServer(t, { tls: { cert, key }, handshakeTimeout: 500 });
  const { port } = server.address();

  const plain = new WebSocket(`ws://127.0.0.1:${port}`);
  defer(t, () => plain.terminate());
  plain.on('error', () => {});
  await within(
    new Promise((resolve) => plain.on('close', resolve)),
    3000,
    'the plain client to be dropped'
  );
  assert.equal(server.size, 0);

  const secure = new WebSocket(`wss://127.0.0.1:${port}`, { ca: cert });
  defer(t, () => secure.terminate());
  await once(secure, 'open');
});

test('tls: a client that connects and never starts TLS is dropped after handshakeTimeout', async (t) => {
  const { cert, key } = makeCertificate();
  const server = await startServer(t, { tls: { cert, key }, handshakeTimeout: 300 });
  const socket = net.connect({ host: '127.0.0.1', port: server.address().port });
  defer(t, () => socket.destroy());
  socket.on('error', () => {});
  await once(socket, 'connect');
  const start = Date.now();
  socket.resume();
  await within(once(socket, 'close', 10000), 10000, 'the server to drop the socket');
  const elapsed = Date.now() - start;
  assert.ok(elapsed >= 250 && elapsed < 2000, `dropped after ${elapsed} ms`);
});

test('tls: invalid PEM throws TypeError ERR_INVALID_OPTION', () => {
  const { cert, key } = makeCertificate();
  assertInvalidTls({ cert: 'not a certificate', key }, 'a cert that is not PEM');
  assertInvalidTls({ cert, key: 'not a key' }, 'a key that is not PEM');
  assertInvalidTls({ cert: key, key }, 'a key given as the cert');
  assertInvalidTls({ cert, key: cert }, 'a cert given as the key');
  assertInvalidTls(
    { cert: '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n', key },
    'a PEM block that is no certificate'
  );
  assertInvalidTls({ cert }, 'no key');
  assertInvalidTls({ cert: 5, key }, 'a number as cert');
  assertInvalidTls('cert and key', 'a string');
  // Buffers are accepted, as strings are.
  const server = new Server({
    port: 0,
    host: '127.0.0.1',
    tls: { cert: Buffer.from(cert), key: Buffer.from(key) }
  });
  return server.ready.then(() => server.close());
});
