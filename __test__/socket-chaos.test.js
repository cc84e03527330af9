'use strict';

// Chaos (the offline queue): a `ws` server in a child
// process is killed with SIGKILL while the Node Socket keeps sending a
// numbered message every 5 ms; a second later a new server process starts on
// the same port. Every message sent while the client was offline arrives at
// the new server exactly once and in order, nothing arrives twice, and the
// client is back within maxReconnectionDelay.
//
// Messages sent just before the kill, while the client still believed it
// was open, may be lost: frames already handed to the kernel are not
// queued again (README, Socket).

const assert = require('node:assert/strict');
const { test } = require('node:test');

const { Socket } = require('..');
const { until } = require('./helpers');
const { next, openSocket, childServer } = require('./socket-helpers');

test('chaos: a server killed with SIGKILL and restarted on the same port a second later gets every message sent while the client was offline, exactly once and in order; the client is back within maxReconnectionDelay', { timeout: 60000 }, async (t) => {
  const MAX_DELAY = 500;
  const first = await childServer(t); // the OS picks the port
  // Delays grow tenfold (50, 500, 5000 ms... without the cap), so only
  // maxReconnectionDelay brings the client back soon after the restart.
  const s = await openSocket(t, first.url, {
    minReconnectionDelay: 50,
    maxReconnectionDelay: MAX_DELAY,
    reconnectionDelayGrowFactor: 10,
    jitter: 0
  });
  const errors = [];
  s.on('error', (err) => errors.push(err.code));
  const closes = [];
  s.on('close', (e) => closes.push(e));

  // A numbered message every 5 ms, with the state the socket was in.
  const sent = []; // { n, readyState, at }
  let n = 0;
  const sender = setInterval(() => {
    const readyState = s.readyState;
    assert.equal(s.send(n), true, `send(${n})`);
    sent.push({ n, readyState, at: performance.now() });
    n++;
  }, 5);
  t.after(() => clearInterval(sender));

  // Let some messages go through the first server, then kill it.
  await until(() => first.messages.length >= 40, '40 messages at the first server');
  const killedAt = performance.now();
  first.child.kill('SIGKILL');
  await first.exited;
  const dropped = await until(() => closes[0], "'close' after the kill");
  assert.equal(dropped.willReconnect, true);
  assert.equal(dropped.wasClean, false);

  // A second later (and once 50 messages were sent offline and two
  // attempts refused, however slowly this machine runs), a new server
  // process on the same port.
  const sentOffline = () => sent.filter((m) => m.at > killedAt && m.readyState !== Socket.OPEN).length;
  await until(
    () => performance.now() - killedAt >= 1000 && sentOffline() >= 50 && errors.length >= 2,
    'a second offline, 50 messages sent and two refused attempts',
    30000,
    10
  );
  const offlineBeforeRestart = sentOffline();
  assert.ok(offlineBeforeRestart >= 50, `${offlineBeforeRestart} messages sent while offline`);
  const reopened = next(s, 'open', () => true, 15000);
  const second = await childServer(t, first.port);
  assert.equal(second.port, first.port, 'the same port');
  await reopened;
  const reopenedAt = performance.now();
  const backAfter = reopenedAt - second.listeningAt;
  t.diagnostic(`open ${Math.round(backAfter)} ms after the new server listened; ${offlineBeforeRestart}+ sent offline`);

  // Keep sending a little while open on the new server (20 messages), then
  // stop.
  await until(
    () => sent.filter((m) => m.at > reopenedAt && m.readyState === Socket.OPEN).length >= 20,
    '20 messages sent on the new connection'
  );
  clearInterval(sender);
  const last = sent.at(-1).n;
  await until(
    () => second.messages.length > 0 && JSON.parse(second.messages.at(-1)) === last,
    `the last message (${last}) at the new server`
  );
  // A last message after them all: once it is in, anything sent before it
  // (a message arriving twice, say) would have arrived too.
  s.send('end');
  await until(() => second.messages.at(-1) === '"end"', 'the end marker at the new server');

  const atFirst = first.messages.map(Number);
  const atSecond = second.messages.slice(0, -1).map(Number);
  const all = [...atFirst, ...atSecond];

  // Nothing twice, across both servers, and in increasing order overall.
  assert.equal(new Set(all).size, all.length, 'no message arrived twice');
  for (let i = 1; i < all.length; i++) {
    assert.ok(all[i] > all[i - 1], `in order: ${all[i - 1]} then ${all[i]}`);
  }

  // Every message sent after the kill while the client knew it was offline
  // arrived at the new server exactly once and in order.
  const offline = sent.filter((m) => m.at > killedAt && m.readyState !== Socket.OPEN).map((m) => m.n);
  assert.ok(offline.length >= offlineBeforeRestart);
  const missing = offline.filter((m) => !atSecond.includes(m));
  assert.deepEqual(missing, [], 'messages sent while offline that never arrived');
  const offlineAtSecond = atSecond.filter((m) => offline.includes(m));
  assert.deepEqual(offlineAtSecond, offline, 'offline messages arrive exactly once, in order');

  // From the first offline message on, nothing is missing: the queue, then
  // what was sent after the reconnection.
  const fromFirstOffline = atSecond.filter((m) => m >= offline[0]);
  assert.deepEqual(
    fromFirstOffline,
    Array.from({ length: last - offline[0] + 1 }, (_, i) => offline[0] + i),
    'everything from the first offline message to the last one sent'
  );

  const lost = sent.filter((m) => m.n < offline[0] && !all.includes(m.n)).map((m) => m.n);
  t.diagnostic(`${lost.length} message(s) sent before the drop was known were lost: ${lost}`);

  // Back within maxReconnectionDelay of the new server listening.
  // (5x the idle margin; without the cap the next attempt would come
  // seconds later.)
  assert.ok(backAfter <= 5 * (MAX_DELAY + 150), `open again ${backAfter} ms after the server came back`);
  assert.equal(s.readyState, Socket.OPEN);
  assert.deepEqual(closes.map((e) => e.willReconnect), [true]);
  assert.ok(errors.every((code) => code === 'ERR_CONNECT'), `only refused attempts: ${errors}`);
});
