'use strict';

// The Node Socket's heartbeat (`heartbeatInterval`): a ping every
// interval, any frame received is a sign of life, two silent intervals
// drop the connection
// (1006, wasClean false) and the socket reconnects.

const assert = require('node:assert/strict');
const { describe, test } = require('node:test');

const { Socket } = require('..');
const { until } = require('./helpers');
const { next, lifecycle, wsServer, socket, openSocket, childServer } = require('./socket-helpers');

const TIMEOUT = { timeout: 30000 };

// Upper bounds on how long something takes are this many times what it
// takes on an idle machine, so that a run five times slower still meets them.
const SLOW = 5;

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
    await until(() => server.pings > pingsBefore, 'a ping at the server');
    server.child.kill('SIGSTOP');
    const stoppedAt = performance.now();

    const err = await next(s, 'error', (e) => e.code === 'ERR_HEARTBEAT', 15000);
    const detectedAfter = performance.now() - stoppedAt;
    const closeEvent = await until(() => events.of('close')[0], "'close'");
    t.diagnostic(`ERR_HEARTBEAT ${Math.round(detectedAfter)} ms after SIGSTOP`);

    assert.ok(detectedAfter > INTERVAL, `detected after ${detectedAfter} ms: not before one interval`);
    assert.ok(
      detectedAfter <= SLOW * (3 * INTERVAL + 150),
      `detected after ${detectedAfter} ms: within two intervals (+ a check period and slack, ${SLOW}x)`
    );
    assert.match(err.message, /heartbeat|ping/i);
    assert.deepEqual(closeEvent.value, { code: 1006, reason: '', wasClean: false, willReconnect: true });
    assert.equal(closeEvent.readyState, Socket.CONNECTING);
    const names = events.names();
    assert.ok(names.indexOf('error') < names.indexOf('close'), `ERR_HEARTBEAT before 'close': ${names}`);
    assert.equal(s.offline, true);

    // While the server is frozen, attempts time out and are retried: an
    // attempt that ended (ERR_TIMEOUT) and the retry after it, and no 'open'.
    await until(() => {
      const i = events.list.findIndex((e) => e.name === 'error' && e.value === 'ERR_TIMEOUT');
      return i !== -1 && events.list.slice(i).some((e) => e.name === 'reconnecting');
    }, 'an attempt that timed out, and its retry');
    assert.equal(events.count('open'), 0, 'not open while the server is stopped');
    assert.equal(s.readyState, Socket.CONNECTING, 'not open while the server is stopped');

    const reopened = next(s, 'open', () => true, 15000);
    server.child.kill('SIGCONT');
    const resumedAt = performance.now();
    await reopened;
    assert.ok(performance.now() - resumedAt < SLOW * 2000, 'back within a few retries after SIGCONT');

    // The dropped connection had no closing handshake; the new one works.
    const oldClose = await server.waitFor('close');
    assert.equal(oldClose.code, 1006, 'the heartbeat drop sends no close frame');
    assert.equal(s.send({ after: 'resume' }), true);
    await until(() => server.messages.includes('{"after":"resume"}'), 'the message after the reconnection');
  });

  test('heartbeatInterval 0 disables pings: a server sees none while another Socket is pinged five times', TIMEOUT, async (t) => {
    const backend = await wsServer(t);
    const s = await openSocket(t, backend.url, { heartbeatInterval: 0 });
    const ws = await backend.connection(0);
    // A Socket opened after it, pinged every 100 ms: once it has had five
    // pings, a Socket with pings enabled would have had some too.
    await openSocket(t, backend.url, { heartbeatInterval: 100 });
    const pinged = await backend.connection(1);
    await until(() => pinged.pings >= 5, 'five pings to the other Socket');
    assert.equal(ws.pings, 0);
    assert.equal(s.readyState, Socket.OPEN);
  });

  test('heartbeatInterval 100: the server sees a ping about every 100 ms', TIMEOUT, async (t) => {
    const backend = await wsServer(t);
    await openSocket(t, backend.url, { heartbeatInterval: 100 });
    const ws = await backend.connection();
    const before = ws.pings;
    const startedAt = performance.now();
    await until(() => ws.pings >= before + 30, 'thirty more pings', SLOW * 3300);
    const elapsed = performance.now() - startedAt;
    t.diagnostic(`30 pings in ${Math.round(elapsed)} ms`);
    // Thirty pings span twenty-nine intervals (2900 ms). Pings sent while
    // this process was stalled are read together as the count starts, so
    // the lower bound leaves 1400 ms for that; pinging twice per interval
    // would still fall under it.
    assert.ok(elapsed >= 1500, `30 pings in ${elapsed} ms: not more than one per interval`);
    assert.ok(elapsed <= SLOW * 3300, `30 pings in ${elapsed} ms: about one per interval`);
  });

  test('with a 200 ms interval, a server that neither answers pings nor sends anything is dropped after two intervals (1006 at the server, no close frame)', TIMEOUT, async (t) => {
    const backend = await wsServer(t, { autoPong: false });
    const s = socket(t, backend.url, { heartbeatInterval: 200, minReconnectionDelay: 5000, jitter: 0 });
    const events = lifecycle(s);
    await next(s, 'open');
    const openedAt = performance.now();
    const err = await next(s, 'error', (e) => e.code === 'ERR_HEARTBEAT', 15000);
    const after = performance.now() - openedAt;
    t.diagnostic(`ERR_HEARTBEAT ${Math.round(after)} ms after 'open'`);
    assert.ok(after >= 350, `dropped after ${after} ms, before two intervals (400)`);
    assert.ok(after <= SLOW * 750, `dropped after ${after} ms (2 intervals = 400)`);
    assert.equal(err.code, 'ERR_HEARTBEAT');
    const close = await until(() => events.of('close')[0], "'close'");
    assert.deepEqual(close.value, { code: 1006, reason: '', wasClean: false, willReconnect: true });
    const ws = await backend.connection();
    assert.equal((await ws.closed).code, 1006, 'terminated without a closing handshake');
    assert.ok(ws.pings >= 1, 'it was pinged');
  });

  test('any frame counts as a sign of life: a server that never answers pings but sends messages stays connected', TIMEOUT, async (t) => {
    // A message every 50 ms, well inside the two intervals (800 ms) of
    // silence that drop a connection, even when this process runs late.
    const backend = await wsServer(t, { autoPong: false }, (ws) => {
      const timer = setInterval(() => ws.send('"tick"'), 50);
      ws.on('close', () => clearInterval(timer));
    });
    const s = await openSocket(t, backend.url, { heartbeatInterval: 400 });
    const events = lifecycle(s);
    // Four unanswered pings: the Socket has watched for silence over more
    // than two intervals (the first ping comes half an interval in).
    const ws = await backend.connection();
    await until(() => ws.pings >= 4, 'four pings, left unanswered');
    assert.deepEqual(events.list, [], 'no heartbeat error, no close');
    assert.equal(s.readyState, Socket.OPEN);
  });
});
