'use strict';

// The client, `Socket`, against a `ws` server and against our own Server:
// the README's Socket section and, against our Server, its Messages.
// The messages through a `ws` server are in socket-messages.test.js and the
// life cycle in socket-lifecycle.test.js, both run against both builds.

const assert = require('node:assert/strict');
const { randomBytes } = require('node:crypto');
const { once } = require('node:events');
const http = require('node:http');
const { describe, test } = require('node:test');

const { Socket } = require('..');
const { binaryCases, delay, defer, until } = require('./helpers');
const { next, record, socket, openSocket, ourServer, wsServer, closedPort } = require('./socket-helpers');

const TIMEOUT = { timeout: 10000 };

// ---------------------------------------------------------------------------
// Helpers local to this file (the shared ones are imported above).

/**
 * An http server that answers every upgrade with 500 (an answer that is
 * retried; a 401 or 403 would end the retries); `upgrades` lists the
 * request URLs.
 */
async function refusing(t) {
  const upgrades = [];
  const httpServer = http.createServer((req, res) => res.end());
  httpServer.on('upgrade', (req, sock) => {
    sock.on('error', () => {}); // a reset once the client has read the answer
    upgrades.push(req.url);
    sock.end('HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
  });
  httpServer.listen(0, '127.0.0.1');
  await once(httpServer, 'listening');
  defer(t, () => new Promise((resolve) => httpServer.close(resolve)));
  return { upgrades, url: `ws://127.0.0.1:${httpServer.address().port}` };
}

// ---------------------------------------------------------------------------

describe('Socket: construction and state', () => {
  test('Socket.CONNECTING..CLOSED are 0..3', () => {
    assert.equal(Socket.CONNECTING, 0);
    assert.equal(Socket.OPEN, 1);
    assert.equal(Socket.CLOSING, 2);
    assert.equal(Socket.CLOSED, 3);
  });

  test("id is 'mytosis-websocket:' + url and type is 'websocket'", async (t) => {
    const { url } = await wsServer(t);
    const s = socket(t, url);
    assert.equal(s.id, 'mytosis-websocket:' + url);
    assert.equal(s.type, 'websocket');
    assert.equal(s.url, url);
  });

  test('two Sockets to one URL share an id', async (t) => {
    const { url } = await wsServer(t);
    assert.equal(socket(t, url).id, socket(t, url).id);
  });

  test('readyState goes 0 -> 1 -> 2 -> 3 and offline is true unless open', TIMEOUT, async (t) => {
    const { url } = await wsServer(t);
    const s = socket(t, url);
    assert.equal(s.readyState, Socket.CONNECTING);
    assert.equal(s.offline, true);

    await next(s, 'open');
    assert.equal(s.readyState, Socket.OPEN);
    assert.equal(s.offline, false);

    const closed = next(s, 'close');
    s.close();
    assert.equal(s.readyState, Socket.CLOSING);
    assert.equal(s.offline, true);
    await closed;
    assert.equal(s.readyState, Socket.CLOSED);
    assert.equal(s.offline, true);
  });

  test('a ws:// or wss:// string is required: anything else throws ERR_INVALID_URL', () => {
    for (const url of ['http://x', 'x', '', 42, undefined, null, { href: 'ws://x' }]) {
      assert.throws(() => new Socket(url), { name: 'TypeError', code: 'ERR_INVALID_URL' }, String(url));
    }
    assert.throws(() => new Socket('http://x'), /http:\/\/x/, 'the message names the URL');
  });

  test('an unknown option throws ERR_INVALID_OPTION naming it', () => {
    assert.throws(() => new Socket('ws://127.0.0.1:1', { reconnectDelay: 5, startClosed: true }), {
      name: 'TypeError',
      code: 'ERR_INVALID_OPTION',
      message: /reconnectDelay/
    });
  });

  test('an option of the wrong type throws ERR_INVALID_OPTION naming it', () => {
    const cases = {
      minReconnectionDelay: 'x',
      maxRetries: -1,
      jitter: 2,
      startClosed: 'yes',
      json: 1,
      protocols: 5,
      headers: { Authorization: 5 }
    };
    for (const [name, value] of Object.entries(cases)) {
      assert.throws(
        () => new Socket('ws://127.0.0.1:1', { startClosed: true, [name]: value }),
        (err) => {
          assert.equal(err.name, 'TypeError');
          assert.equal(err.code, 'ERR_INVALID_OPTION');
          assert.match(err.message, new RegExp(`"?${name}"?`));
          return true;
        },
        name
      );
    }
  });

  test('startClosed: true does not connect until reconnect()', TIMEOUT, async (t) => {
    const backend = await wsServer(t);
    const s = socket(t, backend.url, { startClosed: true });
    let opened = 0;
    s.on('open', () => opened++);
    assert.equal(s.readyState, Socket.CLOSED);
    assert.equal(s.offline, true);

    // A Socket made after it connects at once, as an attempt of this one
    // would have.
    await openSocket(t, `${backend.url}/after`);
    assert.deepEqual(backend.conns.map((ws) => ws.req.url), ['/after']);
    assert.equal(opened, 0);

    s.reconnect();
    assert.equal(s.readyState, Socket.CONNECTING);
    await next(s, 'open');
    assert.equal(backend.conns.length, 2);
    assert.equal(s.readyState, Socket.OPEN);
  });
});

describe('Socket against a ws server: reconnecting', () => {
  test("a connection the server closes is reconnected: 'close' willReconnect, 'reconnecting' with the exact delay, 'open'", TIMEOUT, async (t) => {
    const backend = await wsServer(t);
    const s = await openSocket(t, backend.url, { jitter: 0, minReconnectionDelay: 50 });
    const events = [];
    s.on('close', (e) => events.push(['close', e, s.readyState]));
    s.on('reconnecting', (e) => events.push(['reconnecting', e]));
    const reopened = next(s, 'open');

    // Measured from the server's close: the 'close' event reaches JS in a
    // batch, possibly late, while the addon's wait starts at once.
    const connection = await backend.connection(0);
    const closedAt = Date.now();
    connection.close(4000);
    await reopened;
    const elapsed = Date.now() - closedAt;

    assert.deepEqual(events, [
      ['close', { code: 4000, reason: '', wasClean: true, willReconnect: true }, Socket.CONNECTING],
      ['reconnecting', { attempt: 1, delay: 50 }]
    ]);
    assert.ok(elapsed >= 40, `waited ${elapsed} ms before reconnecting`);
    assert.equal(s.readyState, Socket.OPEN);
    assert.equal(backend.conns.length, 2);
  });

  test('a refused port is retried maxRetries times with growing delays, then the socket gives up', TIMEOUT, async (t) => {
    const port = await closedPort();
    const s = socket(t, `ws://127.0.0.1:${port}`, {
      maxRetries: 2,
      minReconnectionDelay: 10,
      jitter: 0,
      reconnectionDelayGrowFactor: 2
    });
    const events = [];
    s.on('open', () => events.push(['open']));
    s.on('error', (err) => events.push(['error', err]));
    s.on('reconnecting', (e) => events.push(['reconnecting', e]));
    const gaveUp = next(s, 'close');
    s.on('close', (e) => events.push(['close', e]));

    const final = await gaveUp;
    // Nothing marks the absence of a third retry: wait longer than its
    // delay (40 ms) would be.
    await delay(100);
    assert.equal(final.willReconnect, false);
    assert.equal(s.readyState, Socket.CLOSED);
    assert.deepEqual(
      events.map(([name, e]) => (name === 'error' ? [name, e.code] : [name, e])),
      [
        ['error', 'ERR_CONNECT'],
        ['reconnecting', { attempt: 1, delay: 10 }],
        ['error', 'ERR_CONNECT'],
        ['reconnecting', { attempt: 2, delay: 20 }],
        ['error', 'ERR_CONNECT'],
        ['close', final]
      ]
    );
    for (const [name, err] of events) {
      if (name === 'error') assert.ok(err.cause instanceof Error, 'ERR_CONNECT has a cause');
    }
  });

  test("a non-101 answer emits 'error' ERR_HANDSHAKE with err.status, then 'reconnecting'", TIMEOUT, async (t) => {
    const backend = await refusing(t);
    const s = socket(t, backend.url + '/x', { jitter: 0, minReconnectionDelay: 50 });
    let opened = false;
    let closes = 0;
    s.on('open', () => (opened = true));
    s.on('close', () => closes++);
    const error = next(s, 'error');
    const reconnecting = next(s, 'reconnecting');
    const err = await error;
    assert.equal(err.code, 'ERR_HANDSHAKE');
    assert.equal(err.status, 500);
    assert.deepEqual(await reconnecting, { attempt: 1, delay: 50 });
    assert.equal(opened, false);
    assert.equal(closes, 0, "a failed attempt never emits 'close'");
    assert.deepEqual(backend.upgrades.slice(0, 1), ['/x']);
  });

  test("close() in the 'error' listener stops the retries", TIMEOUT, async (t) => {
    const backend = await refusing(t);
    const s = socket(t, backend.url, { jitter: 0, minReconnectionDelay: 10 });
    s.on('error', () => s.close());
    const final = await next(s, 'close');
    // Nothing marks the absence of a retry: wait far longer than its delay
    // (10 ms) would be.
    await delay(200);
    assert.equal(final.willReconnect, false);
    assert.equal(s.readyState, Socket.CLOSED);
    assert.equal(backend.upgrades.length, 1, 'no second attempt');
  });

  test("after close() in the 'error' listener, no 'reconnecting' is emitted", TIMEOUT, async (t) => {
    const backend = await refusing(t);
    const s = socket(t, backend.url, { jitter: 0, minReconnectionDelay: 10 });
    const events = [];
    s.on('error', (err) => {
      events.push(['error', err.code]);
      s.close();
    });
    s.on('reconnecting', (e) => events.push(['reconnecting', e, s.readyState]));
    s.on('close', (e) => events.push(['close', e.willReconnect]));
    await next(s, 'close');
    // Nothing marks the absence of a retry: wait far longer than its delay
    // (10 ms) would be.
    await delay(100);
    assert.deepEqual(events, [
      ['error', 'ERR_HANDSHAKE'],
      ['close', false]
    ]);
  });

  test("after close(), a connection that drops emits no 'close' with willReconnect: true and no 'reconnecting'", TIMEOUT, async (t) => {
    const backend = await wsServer(t);
    // The reconnection delay is longer than this process may stall between
    // the drop and close() on a loaded machine: a reconnection made in
    // between would be one the user never hears of.
    const s = await openSocket(t, backend.url, { jitter: 0, minReconnectionDelay: 500 });
    const ws = await backend.connection();
    const events = [];
    s.on('close', (e) => events.push(['close', e.willReconnect]));
    s.on('reconnecting', (e) => events.push(['reconnecting', e]));
    s.on('open', () => events.push(['open']));

    // The peer drops the connection and the user closes the socket before
    // the socket has heard of the drop: the socket must not announce a
    // reconnection it will not make.
    ws.terminate();
    // Block JS (not the addon's threads) so that the transport sees the drop
    // before close() is called, while JS has not been told yet.
    const until50 = Date.now() + 50;
    while (Date.now() < until50);
    assert.equal(s.readyState, Socket.OPEN, 'the drop is not known to JS yet');
    s.close();
    await until(() => events.length > 0 && s.readyState === Socket.CLOSED, 'the final close');
    // Nothing marks the absence of a reconnection: wait one and a half
    // times its delay.
    await delay(750);
    assert.deepEqual(events, [['close', false]]);
    assert.equal(backend.conns.length, 1, 'no reconnection');
  });
});

describe('Socket against a ws server: handshake', () => {
  test('protocols are offered in order and socket.protocol is the one the server picked', TIMEOUT, async (t) => {
    let offered = null;
    const backend = await wsServer(t, {
      handleProtocols: (protocols) => {
        offered = [...protocols];
        return protocols.has('b') ? 'b' : false;
      }
    });
    const s = await openSocket(t, backend.url, { protocols: ['a', 'b'] });
    assert.deepEqual(offered, ['a', 'b']);
    assert.equal(s.protocol, 'b');
  });

  test('without protocols, socket.protocol is the empty string', TIMEOUT, async (t) => {
    const backend = await wsServer(t);
    const s = await openSocket(t, backend.url);
    assert.equal(s.protocol, '');
    assert.equal((await backend.connection()).req.headers['sec-websocket-protocol'], undefined);
  });

  test('headers reach the server in the handshake', TIMEOUT, async (t) => {
    const backend = await wsServer(t);
    await openSocket(t, backend.url, { headers: { Authorization: 'Bearer t', 'X-Extra': 'yes' } });
    const ws = await backend.connection();
    assert.equal(ws.req.headers.authorization, 'Bearer t');
    assert.equal(ws.req.headers['x-extra'], 'yes');
  });
});

describe('Socket against our own Server', () => {
  test('JSON goes both ways', TIMEOUT, async (t) => {
    const backend = await ourServer(t);
    const s = await openSocket(t, backend.url);
    const got = record(s.messages);
    const conn = await backend.connection();

    s.send({ a: [1, 'two'] });
    s.send('hi');
    await backend.received.count(2);
    assert.deepEqual(backend.received.messages(), [{ a: [1, 'two'] }, 'hi']);
    assert.equal(backend.received.list[0][1], conn);

    conn.send({ b: { c: null } });
    backend.server.send([1, 2, 3]);
    await got.count(2);
    assert.deepEqual(got.messages(), [{ b: { c: null } }, [1, 2, 3]]);
  });

  test('every binary type arrives at the Server as a Buffer of exactly its bytes', TIMEOUT, async (t) => {
    const backend = await ourServer(t);
    const s = await openSocket(t, backend.url);
    const cases = binaryCases();
    for (const [, value] of cases) s.send(value);
    await backend.received.count(cases.length);
    const got = backend.received.messages();
    cases.forEach(([name, , bytes], i) => {
      assert.ok(Buffer.isBuffer(got[i]), `${name} arrives as a Buffer`);
      assert.deepEqual(got[i], bytes, name);
    });
  });

  test('binary from the Server (Buffer, Uint8Array, ArrayBuffer) arrives as a Buffer', TIMEOUT, async (t) => {
    const backend = await ourServer(t);
    const s = await openSocket(t, backend.url);
    const got = record(s.messages);
    const conn = await backend.connection();
    conn.send(Buffer.from([1, 2]));
    conn.send(Uint8Array.from([3, 4]));
    backend.server.send(Uint8Array.from([5, 6]).buffer);
    await got.count(3);
    for (const message of got.messages()) assert.ok(Buffer.isBuffer(message));
    assert.deepEqual(got.messages(), [Buffer.from([1, 2]), Buffer.from([3, 4]), Buffer.from([5, 6])]);
  });

  test('a 1 MiB binary message goes both ways intact', TIMEOUT, async (t) => {
    const backend = await ourServer(t);
    const s = await openSocket(t, backend.url);
    const got = record(s.messages);
    const conn = await backend.connection();
    const up = randomBytes(1 << 20);
    const down = randomBytes(1 << 20);

    s.send(up);
    await backend.received.count(1);
    assert.ok(backend.received.messages()[0].equals(up), 'socket -> server bytes');

    conn.send(down);
    await got.count(1);
    assert.ok(Buffer.isBuffer(got.messages()[0]));
    assert.ok(got.messages()[0].equals(down), 'server -> socket bytes');
  });

  test('1,000 messages arrive in order both ways', TIMEOUT, async (t) => {
    const backend = await ourServer(t);
    const s = await openSocket(t, backend.url);
    const got = record(s.messages);
    const conn = await backend.connection();
    const expected = Array.from({ length: 1000 }, (_, i) => i);

    for (const i of expected) s.send({ i });
    await backend.received.count(1000);
    assert.deepEqual(backend.received.messages().map((m) => m.i), expected);

    for (const i of expected) conn.send({ i });
    await got.count(1000);
    assert.deepEqual(got.messages().map((m) => m.i), expected);
  });

  test("messages sent before 'open' arrive first, in order", TIMEOUT, async (t) => {
    const backend = await ourServer(t);
    const s = socket(t, backend.url);
    for (let i = 0; i < 5; i++) s.send(i);
    s.on('open', () => s.send('in-open'));
    await next(s, 'open');
    await backend.received.count(6);
    assert.deepEqual(backend.received.messages(), [0, 1, 2, 3, 4, 'in-open']);
  });

  test("close(4001, 'done') reaches the Server's 'remove'", TIMEOUT, async (t) => {
    const backend = await ourServer(t);
    const s = await openSocket(t, backend.url);
    const conn = await backend.connection();
    const closes = [];
    s.on('close', (e) => closes.push(e));
    s.close(4001, 'done');
    await until(() => backend.removed.length === 1 && closes.length === 1);
    const [removedConn, info] = backend.removed[0];
    assert.equal(removedConn, conn);
    assert.deepEqual(info, { code: 4001, reason: 'done', wasClean: true });
    assert.deepEqual(closes, [{ code: 4001, reason: 'done', wasClean: true, willReconnect: false }]);
  });

  test('a connection the Server closes is reconnected, and offline messages follow in order', TIMEOUT, async (t) => {
    const backend = await ourServer(t);
    const s = await openSocket(t, backend.url, { jitter: 0, minReconnectionDelay: 50 });
    const closes = [];
    const retries = [];
    s.on('close', (e) => {
      closes.push(e);
      if (e.willReconnect) for (let i = 0; i < 3; i++) s.send({ offline: i });
    });
    s.on('reconnecting', (e) => retries.push(e));
    const reopened = next(s, 'open');
    (await backend.connection(0)).close(4000, 'bye');
    await reopened;

    assert.deepEqual(closes, [{ code: 4000, reason: 'bye', wasClean: true, willReconnect: true }]);
    assert.deepEqual(retries, [{ attempt: 1, delay: 50 }]);
    const second = await backend.connection(1);
    await backend.received.count(3);
    assert.deepEqual(backend.received.messages(), [{ offline: 0 }, { offline: 1 }, { offline: 2 }]);
    assert.ok(backend.received.list.every(([, c]) => c === second));
  });

  test('protocols and headers reach the Server', TIMEOUT, async (t) => {
    const backend = await ourServer(t);
    const s = await openSocket(t, backend.url, {
      protocols: ['a', 'b'],
      headers: { Authorization: 'Bearer t' }
    });
    const conn = await backend.connection();
    assert.equal(conn.headers.authorization, 'Bearer t');
    assert.equal(conn.headers['sec-websocket-protocol'], 'a, b');
    // The Server picks the first protocol offered by default.
    assert.equal(conn.protocol, 'a');
    assert.equal(s.protocol, 'a');
  });
});
