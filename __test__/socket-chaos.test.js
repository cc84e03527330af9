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
const { delay, until } = require('./helpers');
const { next, openSocket, childServer } = require('./socket-helpers');

test('chaos: a server killed with SIGKILL and restarted on the same port a second later gets every message sent while the client was offline, exactly once and in order; the client is back within maxReconnectionDelay', { timeout: 20000 }, async (t) => {
  const MAX_DELAY = 500;
  const first = await childServer(t); // the OS picks the port
  const s = await openSocket(t, first.url, {
    minReconnectionDelay: 50,
    maxReconnectionDelay: MAX_DELAY,
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
  await until(() => first.messages.length >= 40, '40 messages at the first server', 5000);
  const killedAt = performance.now();
  first.child.kill('SIGKILL');
  await first.exited;
  const dropped = await until(() => closes[0], "'close' after the kill", 3000);
  assert.equal(dropped.willReconnect, true);
  assert.equal(dropped.wasClean, false);

  // A second later, a new server process on the same port.
  await delay(Math.max(0, 1000 - (performance.now() - killedAt)));
  const offlineBeforeRestart = sent.filter((m) => m.at > killedAt && m.readyState !== Socket.OPEN).length;
  assert.ok(offlineBeforeRestart >= 50, `${offlineBeforeRestart} messages sent while offline`);
  const reopened = next(s, 'open', () => true, 5000);
  const second = await childServer(t, first.port);
  assert.equal(second.port, first.port, 'the same port');
  await reopened;
  const reopenedAt = performance.now();
  const backAfter = reopenedAt - second.listeningAt;
  t.diagnostic(`open ${Math.round(backAfter)} ms after the new server listened; ${offlineBeforeRestart}+ sent offline`);

  // Keep sending a little while open on the new server, then stop.
  await delay(200);
  clearInterval(sender);
  const last = sent.at(-1).n;
  await until(
    () => second.messages.length > 0 && JSON.parse(second.messages.at(-1)) === last,
    `the last message (${last}) at the new server`,
    5000
  );
  await delay(100);

  const atFirst = first.messages.map(Number);
  const atSecond = second.messages.map(Number);
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
  assert.ok(backAfter <= MAX_DELAY + 150, `open again ${backAfter} ms after the server came back`);
  assert.equal(s.readyState, Socket.OPEN);
  assert.deepEqual(closes.map((e) => e.willReconnect), [true]);
  assert.ok(errors.every((code) => code === 'ERR_CONNECT'), `only refused attempts: ${errors}`);
});
