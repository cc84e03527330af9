'use strict';

// The browser build's Socket (browser.js) under Node, with the `ws` package
// as its WebSocket, against a `ws` server and our own Server: its
// construction and its messages (README, Messages). The life cycle is
// checked in both builds by __test__/socket-lifecycle.test.js and the
// waits by __test__/retry-delay.test.js; __test__/chromium.test.js runs the
// same client in Chromium.

const assert = require('node:assert/strict');
const { Blob } = require('node:buffer');
const { describe, test } = require('node:test');

const WebSocket = require('ws');

const Socket = require('../browser');
const { Socket: NodeSocket } = require('..');
const { until } = require('./helpers');
const { next, ourServer, record, socketsOf, wsServer } = require('./socket-helpers');

const TIMEOUT = { timeout: 10000 };
const FAST = { jitter: 0, minReconnectionDelay: 20, reconnectionDelayGrowFactor: 2 };

/** Browser-build Sockets over `ws`, closed at the end of the test. */
const { openSocket } = socketsOf(Socket, { WebSocket });

describe('browser Socket: construction', () => {
  test('the browser entry has the shape of index.js; its Server throws', () => {
    assert.equal(Socket.Socket, Socket);
    assert.equal(Socket.name, 'Socket');
    assert.equal(Socket.Stream, require('../lib/stream'));
    assert.equal(Socket.ConnectionGroup, require('../lib/connection-group'));
    assert.equal(Socket.Server, require('../browser-server'));
    assert.throws(() => new Socket.Server({ port: 0 }), {
      message: 'Server is not available in browsers'
    });
    assert.deepEqual([Socket.CONNECTING, Socket.OPEN, Socket.CLOSING, Socket.CLOSED], [0, 1, 2, 3]);
  });

  test('headers or tls throw ERR_INVALID_OPTION; heartbeatInterval is accepted (inert)', () => {
    for (const option of [{ headers: { Authorization: 'x' } }, { tls: { rejectUnauthorized: false } }]) {
      assert.throws(
        () => new Socket('ws://127.0.0.1:1', { WebSocket, startClosed: true, ...option }),
        { name: 'TypeError', code: 'ERR_INVALID_OPTION', message: new RegExp(Object.keys(option)[0]) }
      );
    }
    const s = new Socket('ws://127.0.0.1:1', {
      WebSocket,
      startClosed: true,
      headers: {},
      tls: {},
      heartbeatInterval: 10
    });
    assert.equal(s.readyState, Socket.CLOSED);
  });

  test('bad options and URLs throw as in the Node build', () => {
    assert.throws(() => new Socket('http://x', { WebSocket }), { code: 'ERR_INVALID_URL' });
    assert.throws(() => new Socket('ws://x', { WebSocket, maxRetries: -1 }), {
      code: 'ERR_INVALID_OPTION',
      message: /maxRetries/
    });
    assert.throws(() => new Socket('ws://x', { WebSocket, binaryType: 'nodebuffer' }), {
      code: 'ERR_INVALID_OPTION',
      message: /binaryType/
    });
  });

  test('without a global WebSocket or the option, it says to pass one', () => {
    const saved = Object.getOwnPropertyDescriptor(globalThis, 'WebSocket');
    delete globalThis.WebSocket;
    try {
      assert.throws(() => new Socket('ws://127.0.0.1:1', { startClosed: true }), {
        code: 'ERR_INVALID_OPTION',
        message: /WebSocket/
      });
    } finally {
      if (saved) Object.defineProperty(globalThis, 'WebSocket', saved);
    }
  });
});

describe('browser Socket: messages', () => {
  test('binary arrives as an ArrayBuffer, or a Blob with binaryType: blob', TIMEOUT, async (t) => {
    const backend = await wsServer(t);
    for (const [binaryType, check] of [
      [undefined, (m) => m instanceof ArrayBuffer],
      ['blob', (m) => m instanceof Blob]
    ]) {
      const s = await openSocket(t, backend.url, { binaryType });
      const got = record(s.messages);
      backend.conns.at(-1).send(Buffer.from([0, 1, 254, 255]));
      await got.count(1);
      const [message] = got.messages();
      assert.ok(check(message), `${binaryType}: ${Object.prototype.toString.call(message)}`);
      const bytes = message instanceof Blob ? await message.arrayBuffer() : message;
      assert.deepEqual([...new Uint8Array(bytes)], [0, 1, 254, 255]);
      s.close();
    }
  });

  test('protocols are offered and socket.protocol is the one the server picked', TIMEOUT, async (t) => {
    let offered = null;
    const backend = await wsServer(t, {
      handleProtocols: (protocols) => {
        offered = [...protocols];
        return 'b';
      }
    });
    const s = await openSocket(t, backend.url, { protocols: ['a', 'b'] });
    assert.deepEqual(offered, ['a', 'b']);
    assert.equal(s.protocol, 'b');
  });

});

describe('browser Socket against our Server', () => {
  test('JSON and binary go both ways', TIMEOUT, async (t) => {
    const backend = await ourServer(t);
    const s = await openSocket(t, backend.url);
    const got = record(s.messages);
    const conn = await backend.connection();

    s.send({ a: [1, 'two'] });
    s.send(Uint8Array.from([1, 2, 3]));
    s.send(new Blob(['blob']));
    await backend.received.count(3);
    const [json, bytes, blob] = backend.received.messages();
    assert.deepEqual(json, { a: [1, 'two'] });
    assert.deepEqual(bytes, Buffer.from([1, 2, 3]));
    assert.deepEqual(blob, Buffer.from('blob'));

    conn.send({ b: null });
    conn.send(Buffer.from([4, 5]));
    await got.count(2);
    const [text, binary] = got.messages();
    assert.deepEqual(text, { b: null });
    assert.ok(binary instanceof ArrayBuffer);
    assert.deepEqual([...new Uint8Array(binary)], [4, 5]);
  });

  test('a connection the Server closes is reconnected, and offline messages follow in order', TIMEOUT, async (t) => {
    const backend = await ourServer(t);
    const s = await openSocket(t, backend.url, FAST);
    s.on('close', (e) => {
      if (e.willReconnect) for (let i = 0; i < 3; i++) s.send({ offline: i });
    });
    const reopened = next(s, 'open');
    (await backend.connection(0)).close(4000, 'bye');
    await reopened;
    await backend.received.count(3);
    assert.deepEqual(backend.received.messages(), [{ offline: 0 }, { offline: 1 }, { offline: 2 }]);
  });
});

describe('Node Socket with the WebSocket option', () => {
  test('runs over the given WebSocket; binary arrives as a Buffer; headers throw', TIMEOUT, async (t) => {
    const backend = await wsServer(t);
    const s = socketsOf(NodeSocket).socket(t, backend.url, { WebSocket, binaryType: 'blob' });
    const got = record(s.messages);
    s.send(new Blob(['blob']));
    s.send('after');
    await next(s, 'open');
    const ws = await backend.connection();
    await until(() => ws.received.length === 2);
    assert.deepEqual(ws.received.map(({ data }) => data.toString()), ['blob', '"after"']);
    ws.send(Buffer.from([7, 8]));
    await got.count(1);
    assert.ok(Buffer.isBuffer(got.messages()[0]));
    assert.deepEqual(got.messages()[0], Buffer.from([7, 8]));

    assert.throws(() => new NodeSocket(backend.url, { WebSocket, headers: { A: 'b' } }), {
      code: 'ERR_INVALID_OPTION'
    });
  });
});
