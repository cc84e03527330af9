'use strict';

// The Node Socket's heartbeat (`heartbeatInterval`): a ping every
// interval, any frame received is a sign of life, two silent intervals
// drop the connection
// (1006, wasClean false) and the socket reconnects.

const assert = require('node:assert/strict');
const { describe, test } = require('node:test');

const { Socket } = require('..');
const { delay, until } = require('./helpers');
const { next, lifecycle, wsServer, socket, openSocket, childServer } = require('./socket-helpers');

const TIMEOUT = { timeout: 15000 };

describe('Socket heartbeat', () => {
  test('a server process stopped with SIGSTOP is detected within two intervals: ERR_HEARTBEAT, then close 1006 wasClean false willReconnect true; after SIGCONT the socket reconnects', TIMEOUT, async (t) => {
    const INTERVAL = 200;
    const server = await childServer(t);
    const s = await openSocket(t, server.url, {
      heartbeatInterval: INTERVAL,
      connectionTimeout: 300,
      minReconnectionDelay: 50,
      maxReconnectionDelay: 200,
      jitter: 0
    });
    const events = lifecycle(s);

    // Freeze the server just after it answered a ping, so the client's last
    // sign of life is (about) the moment of the SIGSTOP.
    const pingsBefore = server.pings;
    await until(() => server.pings > pingsBefore, 'a ping at the server', 2000);
    server.child.kill('SIGSTOP');
    const stoppedAt = performance.now();

    const err = await next(s, 'error', (e) => e.code === 'ERR_HEARTBEAT', 3000);
    const detectedAfter = performance.now() - stoppedAt;
    const closeEvent = await until(() => events.of('close')[0], "'close'", 1000);
    t.diagnostic(`ERR_HEARTBEAT ${Math.round(detectedAfter)} ms after SIGSTOP`);

    assert.ok(detectedAfter > INTERVAL, `detected after ${detectedAfter} ms: not before one interval`);
    assert.ok(
      detectedAfter <= 3 * INTERVAL + 150,
      `detected after ${detectedAfter} ms: within two intervals (+ a check period and slack)`
    );
    assert.match(err.message, /heartbeat|ping/i);
    assert.deepEqual(closeEvent.value, { code: 1006, reason: '', wasClean: false, willReconnect: true });
    assert.equal(closeEvent.readyState, Socket.CONNECTING);
    const names = events.names();
    assert.ok(names.indexOf('error') < names.indexOf('close'), `ERR_HEARTBEAT before 'close': ${names}`);
    assert.equal(s.offline, true);

    // While the server is frozen, attempts time out and are retried.
    await next(s, 'reconnecting', () => true, 2000);
    await delay(400);
    assert.equal(s.readyState, Socket.CONNECTING, 'not open while the server is stopped');

    const reopened = next(s, 'open', () => true, 5000);
    server.child.kill('SIGCONT');
    const resumedAt = performance.now();
    await reopened;
    assert.ok(performance.now() - resumedAt < 2000, 'back within a few retries after SIGCONT');

    // The dropped connection had no closing handshake; the new one works.
    const oldClose = await server.waitFor('close', () => true, 3000);
    assert.equal(oldClose.code, 1006, 'the heartbeat drop sends no close frame');
    assert.equal(s.send({ after: 'resume' }), true);
    await until(() => server.messages.includes('{"after":"resume"}'), 'the message after the reconnection', 3000);
  });

  test('heartbeatInterval 0 disables pings: a server sees none in 1 s', TIMEOUT, async (t) => {
    const backend = await wsServer(t);
    const s = await openSocket(t, backend.url, { heartbeatInterval: 0 });
    const ws = await backend.connection();
    await delay(1000);
    assert.equal(ws.pings, 0);
    assert.equal(s.readyState, Socket.OPEN);
  });

  test('heartbeatInterval 100: the server sees a ping about every 100 ms', TIMEOUT, async (t) => {
    const backend = await wsServer(t);
    await openSocket(t, backend.url, { heartbeatInterval: 100 });
    const ws = await backend.connection();
    const before = ws.pings;
    await delay(1000);
    const pings = ws.pings - before;
    t.diagnostic(`${pings} pings in 1 s`);
    assert.ok(pings >= 6 && pings <= 13, `${pings} pings in 1 s`);
  });

  test('with a 200 ms interval, a server that neither answers pings nor sends anything is dropped after two intervals (1006 at the server, no close frame)', TIMEOUT, async (t) => {
    const backend = await wsServer(t, { autoPong: false });
    const s = socket(t, backend.url, { heartbeatInterval: 200, minReconnectionDelay: 5000, jitter: 0 });
    const events = lifecycle(s);
    await next(s, 'open');
    const openedAt = performance.now();
    const err = await next(s, 'error', (e) => e.code === 'ERR_HEARTBEAT', 2000);
    const after = performance.now() - openedAt;
    t.diagnostic(`ERR_HEARTBEAT ${Math.round(after)} ms after 'open'`);
    assert.ok(after >= 350 && after <= 750, `dropped after ${after} ms (2 intervals = 400)`);
    assert.equal(err.code, 'ERR_HEARTBEAT');
    const close = await until(() => events.of('close')[0], "'close'", 1000);
    assert.deepEqual(close.value, { code: 1006, reason: '', wasClean: false, willReconnect: true });
    const ws = await backend.connection();
    assert.equal((await ws.closed).code, 1006, 'terminated without a closing handshake');
    assert.ok(ws.pings >= 1, 'it was pinged');
  });

  test('any frame counts as a sign of life: a server that never answers pings but sends messages stays connected', TIMEOUT, async (t) => {
    const backend = await wsServer(t, { autoPong: false }, (ws) => {
      const timer = setInterval(() => ws.send('"tick"'), 100);
      ws.on('close', () => clearInterval(timer));
    });
    const s = await openSocket(t, backend.url, { heartbeatInterval: 200 });
    const events = lifecycle(s);
    await delay(1200);
    assert.deepEqual(events.list, [], 'no heartbeat error, no close');
    assert.equal(s.readyState, Socket.OPEN);
    assert.ok((await backend.connection()).pings >= 3, 'pings were sent and left unanswered');
  });
});
