'use strict';

// What the standalone Server answers to upgrade requests that RFC 6455
// (4.2.1-2, 4.4) says to refuse; nothing is added for them.

const assert = require('node:assert/strict');
const { randomBytes } = require('node:crypto');
const net = require('node:net');
const { test } = require('node:test');

const { within, startServer } = require('./helpers');
const { upgradeRequest } = require('./server-kit');

/** Sends a raw request head and resolves with the answer, as text, once its body (if any) is in. */
function rawAnswer(port, head) {
  const socket = net.connect({ host: '127.0.0.1', port });
  let received = '';
  const answered = new Promise((resolve, reject) => {
    socket.on('data', (chunk) => {
      received += chunk.toString('latin1');
      const end = received.indexOf('\r\n\r\n');
      const length = Number(/content-length: (\d+)/i.exec(received)?.[1] ?? 0);
      if (end !== -1 && received.length >= end + 4 + length) resolve(received);
    });
    socket.on('error', reject);
  });
  socket.write(head);
  return within(answered, 3000, 'the answer to a raw request').finally(() => socket.destroy());
}

test('a version other than 13 gets 426 naming version 13', async (t) => {
  const server = await startServer(t);
  const answer = await upgradeRequest(server.address().port, '/', { 'Sec-WebSocket-Version': '8' });
  assert.equal(answer.status, 426);
  assert.equal(answer.headers['sec-websocket-version'], '13');
  assert.equal(server.size, 0);
});

test('a request without Host, or with two Sec-WebSocket-Keys, gets 400', async (t) => {
  const server = await startServer(t);
  const { port } = server.address();
  const key = () => randomBytes(16).toString('base64');
  const head = (lines) => `GET / HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`;
  const common = ['Connection: Upgrade', 'Upgrade: websocket', 'Sec-WebSocket-Version: 13'];

  const noHost = await rawAnswer(port, head([...common, `Sec-WebSocket-Key: ${key()}`]));
  assert.match(noHost, /^HTTP\/1\.1 400 /);
  assert.match(noHost, /one Host header/);

  const twoKeys = await rawAnswer(
    port,
    head([`Host: 127.0.0.1:${port}`, ...common, `Sec-WebSocket-Key: ${key()}`, `Sec-WebSocket-Key: ${key()}`])
  );
  assert.match(twoKeys, /^HTTP\/1\.1 400 /);
  assert.match(twoKeys, /one Sec-WebSocket-Key header/);

  // The same request with one Host and one key is upgraded.
  const valid = await rawAnswer(port, head([`Host: 127.0.0.1:${port}`, ...common, `Sec-WebSocket-Key: ${key()}`]));
  assert.match(valid, /^HTTP\/1\.1 101 /);
});
