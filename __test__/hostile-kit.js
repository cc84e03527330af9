'use strict';

// The harness of the hostile-input suites (hostile-server.test.js,
// hostile-socket.test.js): every attack runs as a *scenario* while a
// control client exchanges a message with its server every 20 ms, and
// after it the process must be as it was. A scenario
//
//   1. starts the server under attack (our Server, with an echo for the
//      control's messages and a record of every 'add' and 'remove') and
//      the control client, and waits for a few round trips;
//   2. takes the baseline: the process's open file descriptors, and its
//      RSS after a full garbage collection;
//   3. starts the control's exchange, runs the attack, and waits until the
//      server holds the control's connection alone;
//   4. checks that the control was served throughout (every echo came
//      back, in order, none more than CONTROL_GAP_MS after the one before),
//      that the open fds came back to the baseline, that the RSS after a
//      full GC is within RSS_SLACK of it, and that 'remove' fired exactly
//      once for every connection that was added.
//
// The control client is a `ws` client for the Server suite and our own
// Socket for the Socket suite (see `startControl`). In the Socket suite,
// each attacked Socket must likewise report every connection's end exactly
// once (`socketScenario`, `checkCloses`). Nothing here sleeps for
// correctness: every wait polls a condition against a generous deadline.

const assert = require('node:assert/strict');
const { randomBytes } = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const v8 = require('node:v8');
const vm = require('node:vm');

const WebSocket = require('ws');

const { Socket } = require('..');
const { startServer, defer, until, within, delay } = require('./helpers');

const KiB = 1024;
const MiB = 1024 * KiB;

// The RSS after a full GC may exceed the baseline by this much.
const RSS_SLACK = 32 * MiB;
// The longest a control echo may take after the previous one: far above
// the 20 ms period, for a loaded 2-core machine, far below "not served".
const CONTROL_GAP_MS = 2000;
// How often the control client sends.
const CONTROL_PERIOD_MS = 20;
// How long the process may take to let go of descriptors and connections
// after an attack: a margin for a loaded machine, never a wait relied on.
const SETTLE_MS = 15000;

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');

/** The number of open file descriptors of this process. */
function fdCount() {
  // The directory's own descriptor is counted too, every time alike.
  return fs.readdirSync('/proc/self/fd').length;
}

/** What each open descriptor is (`/proc/self/fd/N` -> target), for messages. */
function fdTargets() {
  const targets = new Map();
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      targets.set(fd, fs.readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      // The directory's own descriptor, closed by now.
    }
  }
  return targets;
}

/**
 * The RSS after a full GC: several collections, with turns of the event
 * loop between them so that finalizers (the addon's objects, Buffers'
 * backing stores) run and their memory is freed.
 */
async function rssAfterGc() {
  for (let i = 0; i < 4; i++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
  return process.memoryUsage.rss();
}

/** `{ fds, targets, rss }` now. */
async function takeBaseline() {
  const rss = await rssAfterGc();
  return { fds: fdCount(), targets: fdTargets(), rss };
}

/**
 * Wait until the open fds are back to the baseline (no fixed slack: every
 * descriptor an attack opened must be closed), then check the RSS after a
 * full GC. Reports the growth as a diagnostic.
 */
async function checkResources(t, baseline, what) {
  const deadline = Date.now() + SETTLE_MS;
  while (fdCount() > baseline.fds && Date.now() < deadline) await delay(20);
  const fds = fdCount();
  if (fds > baseline.fds) {
    const now = fdTargets();
    const extra = [...now].filter(([fd, target]) => baseline.targets.get(fd) !== target);
    assert.fail(
      `${what}: ${fds} open fds, ${baseline.fds} before the attack; new ones: ` +
        extra.map(([fd, target]) => `${fd} -> ${target}`).join(', ')
    );
  }
  const rss = await rssAfterGc();
  const growth = rss - baseline.rss;
  t.diagnostic(
    `${what}: fds ${baseline.fds} -> ${fds}; RSS after GC ${(baseline.rss / MiB).toFixed(1)} -> ` +
      `${(rss / MiB).toFixed(1)} MiB (${growth >= 0 ? '+' : ''}${(growth / MiB).toFixed(1)} MiB)`
  );
  assert.ok(
    growth <= RSS_SLACK,
    `${what}: RSS after a full GC grew by ${(growth / MiB).toFixed(1)} MiB, more than ${RSS_SLACK / MiB} MiB`
  );
}

/**
 * The server under attack: our Server on 127.0.0.1 with `options`, which
 * echoes every message of the form `{ control: n }` and hands the others to
 * `target.onMessage` (ignored unless a test sets it). It records, per
 * connection id, how many 'add' and 'remove' events it saw, and every
 * 'error'. `controlled(url)`: a control request carries `?control` in its
 * URL, so that a verifyClient can tell it apart.
 */
async function startTarget(t, options = {}) {
  const server = await startServer(t, options);
  const target = {
    server,
    port: server.address().port,
    url: `ws://127.0.0.1:${server.address().port}/`,
    controlUrl: `ws://127.0.0.1:${server.address().port}/?control`,
    // id -> { adds, removes, infos, connection }
    seen: new Map(),
    errors: [],
    onMessage: () => {},
    onAdd: () => {}
  };
  server.on('error', (err) => target.errors.push(err));
  server.on('add', (connection) => {
    const entry = entryOf(target, connection);
    entry.adds++;
    target.onAdd(connection);
  });
  server.on('remove', (connection, info) => {
    const entry = entryOf(target, connection);
    entry.removes++;
    entry.infos.push(info);
  });
  server.messages.forEach((message, connection) => {
    if (message !== null && typeof message === 'object' && 'control' in message) {
      connection.send(message);
      return;
    }
    target.onMessage(message, connection);
  });
  return target;
}

function entryOf(target, connection) {
  let entry = target.seen.get(connection.id);
  if (entry === undefined) {
    entry = { adds: 0, removes: 0, infos: [], connection };
    target.seen.set(connection.id, entry);
  }
  return entry;
}

/**
 * The control client: `kind` 'ws' (a `ws` client) or 'socket' (our
 * Socket), connected to `url`. Once `start()`ed it sends `{ control: n }`
 * every CONTROL_PERIOD_MS and checks that each comes back, in order.
 * `stop()` stops sending, waits for the echoes still on their way, and
 * fails unless every one came back with no gap over CONTROL_GAP_MS.
 */
async function startControl(t, url, kind = 'ws') {
  const echoes = [];
  let onEcho = () => {};
  let client;
  if (kind === 'ws') {
    client = new WebSocket(url);
    client.on('error', () => {});
    defer(t, () => client.terminate());
    client.on('message', (data) => onEcho(JSON.parse(data.toString())));
    await within(new Promise((resolve, reject) => {
      client.once('open', resolve);
      client.once('close', () => reject(new Error('the control client closed before opening')));
    }), 10000, 'the control client to open');
  } else {
    client = new Socket(url, { minReconnectionDelay: 60_000 });
    defer(t, () => {
      client.on('error', () => {});
      client.close();
    });
    client.messages.forEach((message) => onEcho(message));
    await within(new Promise((resolve) => client.once('open', resolve)), 10000, 'the control Socket to open');
  }
  const send = (message) => client.send(kind === 'ws' ? JSON.stringify(message) : message);

  // A few round trips before the baseline, so that everything the control
  // uses exists already.
  for (let i = 0; i < 3; i++) {
    const back = new Promise((resolve) => (onEcho = resolve));
    send({ control: -1 - i });
    await within(back, 10000, 'a warm-up echo to the control client');
  }

  let sent = 0;
  let timer = null;
  // Stopped when the test ends, whether or not it got to stop().
  defer(t, () => clearInterval(timer));
  let lastAt = 0;
  let maxGap = 0;
  let startedAt = 0;
  const disorder = [];
  onEcho = (message) => {
    const now = performance.now();
    const expected = echoes.length;
    if (message?.control !== expected) disorder.push(`got ${JSON.stringify(message)}, expected ${expected}`);
    echoes.push(now);
    maxGap = Math.max(maxGap, now - lastAt);
    lastAt = now;
  };
  const control = {
    client,
    get echoed() {
      return echoes.length;
    },
    start() {
      startedAt = lastAt = performance.now();
      timer = setInterval(() => send({ control: sent++ }), CONTROL_PERIOD_MS);
    },
    async stop(what) {
      // A few exchanges at least, however short the attack was.
      await until(() => echoes.length >= 3, `${what}: three control echoes`, CONTROL_GAP_MS * 2, 5).catch(() => {});
      clearInterval(timer);
      const stoppedAt = performance.now();
      await until(
        () => echoes.length >= sent || disorder.length > 0,
        `${what}: the control's echoes (${echoes.length} of ${sent})`,
        CONTROL_GAP_MS * 2,
        5
      ).catch(() => {});
      const gapAtEnd = echoes.length > 0 ? stoppedAt - lastAt : stoppedAt - startedAt;
      t.diagnostic(
        `${what}: control sent ${sent} over ${Math.round(stoppedAt - startedAt)} ms, ` +
          `${echoes.length} echoed, longest gap ${Math.round(Math.max(maxGap, gapAtEnd))} ms`
      );
      assert.deepEqual(disorder, [], `${what}: the control's echoes came out of order`);
      assert.equal(echoes.length, sent, `${what}: every control message was echoed`);
      assert.ok(sent >= 2, `${what}: the control sent ${sent} messages`);
      assert.ok(
        maxGap <= CONTROL_GAP_MS,
        `${what}: the control client waited ${Math.round(maxGap)} ms for an echo (more than ${CONTROL_GAP_MS} ms)`
      );
    }
  };
  return control;
}

/**
 * Run `attack(target)` against a Server started with `options` (see
 * `startTarget`), as the header of this file says. `expect`:
 * - `allowError(err)`: which 'error' events the attack may cause (none by
 *   default);
 * - `added`: how many connections, besides the control's, the attack must
 *   have got added (a number, or `[min, max]`); any count by default.
 * Resolves with the target, for checks of what the attack did.
 */
async function scenario(t, options, attack, expect = {}) {
  const what = t.name;
  const target = await startTarget(t, options);
  const control = await startControl(t, target.controlUrl, 'ws');
  await until(() => target.seen.size === 1, "the control's connection");
  const controlId = [...target.seen.keys()][0];
  target.seen.get(controlId).control = true;
  const baseline = await takeBaseline();

  control.start();
  await attack(target, control);
  // Back to the control's connection alone, in the addon and in JS, and
  // every connection added has been removed.
  const others = () => [...target.seen].filter(([id]) => id !== controlId).map(([, entry]) => entry);
  await until(
    () =>
      target.server.stats().connections === 1 &&
      target.server.size === 1 &&
      others().every((entry) => entry.removes >= entry.adds),
    `${what}: the server to hold the control's connection alone`,
    SETTLE_MS,
    10
  ).catch((err) => {
    const pending = others().filter((entry) => entry.removes < entry.adds).length;
    throw new Error(
      `${err.message}: stats().connections ${target.server.stats().connections}, size ` +
        `${target.server.size}, ${pending} added and not removed`
    );
  });
  await control.stop(what);

  // 'remove' exactly once per connection that was added, and the control's
  // connection neither removed nor added twice.
  const wrong = others().filter((entry) => entry.adds !== 1 || entry.removes !== 1);
  assert.deepEqual(
    wrong.map(({ adds, removes, infos }) => ({ adds, removes, infos })),
    [],
    `${what}: every attacking connection was added once and removed once`
  );
  const controlEntry = target.seen.get(controlId);
  assert.deepEqual([controlEntry.adds, controlEntry.removes], [1, 0], `${what}: the control's connection`);
  if (expect.added !== undefined) {
    const [min, max] = Array.isArray(expect.added) ? expect.added : [expect.added, expect.added];
    const added = others().length;
    assert.ok(added >= min && added <= max, `${what}: ${added} connections added, expected ${min}-${max}`);
  }
  const allowError = expect.allowError ?? (() => false);
  const unexpected = target.errors.filter((err) => !allowError(err));
  assert.deepEqual(
    unexpected.map((err) => `${err?.code}: ${err?.message}`),
    [],
    `${what}: no unexpected 'error'`
  );
  await checkResources(t, baseline, what);
  return target;
}

// Per test of a running socketScenario: the Sockets attackedSocket made.
const attackedSockets = new WeakMap();

/**
 * The same for a Socket attacked by a malicious server: a healthy Server
 * of ours and a control Socket exchanging messages with it, started before
 * the baseline. `attack(control)` must close every Socket it made (with
 * `attackedSocket`), and every server, before it returns; then each of
 * those Sockets must have reported the end of each of its connections
 * exactly once (`checkCloses`), as the Server's 'remove' is checked in
 * `scenario`.
 */
async function socketScenario(t, attack) {
  const what = t.name;
  const target = await startTarget(t, {});
  const control = await startControl(t, target.controlUrl, 'socket');
  const baseline = await takeBaseline();
  const attacked = [];
  attackedSockets.set(t, attacked);
  control.start();
  try {
    await attack(control);
  } finally {
    attackedSockets.delete(t);
  }
  await control.stop(what);
  assert.ok(attacked.length > 0, `${what}: the attack made a Socket with attackedSocket`);
  attacked.forEach((socket, i) => checkCloses(t, `${what}, attacked Socket ${i + 1}`, socket));
  assert.equal(target.server.size, 1, `${what}: the control Socket's connection stayed`);
  assert.deepEqual(target.errors.map((err) => err.code), [], `${what}: no 'error' on the healthy server`);
  await checkResources(t, baseline, what);
}

/**
 * A Socket to `url` with `options`, made by a `socketScenario`'s attack,
 * whose events are recorded: `events` in order (`{ name, value, at }`, an
 * error's value is its code), `of(name)` the values of one event, and
 * `stopped`, a Promise of its final 'close'. `connections()` is what the
 * malicious server saw: one `{ upgraded }` per connection it accepted, in
 * order, `upgraded` when it answered with a proper 101. Closed for good
 * when the test ends.
 */
function attackedSocket(t, url, options, connections) {
  const attacked = attackedSockets.get(t);
  assert.ok(attacked !== undefined, 'attackedSocket is for the attack of a socketScenario');
  const socket = new Socket(url, options);
  const events = [];
  for (const name of ['open', 'close', 'error', 'reconnecting']) {
    socket.on(name, (value) => events.push({ name, value: name === 'error' ? value.code : value, at: performance.now() }));
  }
  const stopped = new Promise((resolve) => socket.on('close', (e) => !e.willReconnect && resolve(e)));
  defer(t, () => socket.close());
  const record = {
    socket,
    events,
    stopped,
    connections,
    of: (name) => events.filter((e) => e.name === name).map((e) => e.value)
  };
  attacked.push(record);
  return record;
}

/**
 * That an attacked Socket that has stopped reported each connection's end
 * exactly once. The README (Socket) has it that a connection that opened
 * ends with one 'close'; an attempt that fails before opening emits none
 * (an 'error', then 'reconnecting' or giving up); a connection's 'close'
 * is the final one (`willReconnect: false`) when no retry follows it
 * (close(), or maxRetries used up); and a Socket that stops while not
 * connected (it gave up after a failed attempt) emits one final 'close'
 * of its own. So, against the connections the malicious server saw (the
 * attacks here stop a Socket during its last attempt or connection): an
 * 'open' and a 'close' per connection it upgraded, one more 'close' when
 * its last connection was not upgraded, and exactly one final 'close',
 * after which the Socket neither opens nor announces a retry.
 */
function checkCloses(t, what, attacked) {
  const seen = attacked.connections();
  const upgraded = seen.filter((connection) => connection.upgraded).length;
  const stoppedOffline = seen.length === 0 || !seen.at(-1).upgraded;
  const lifecycle = attacked.events.filter(({ name }) => name !== 'error');
  const closes = attacked.of('close');
  const summary =
    `the server saw ${seen.length} connection(s), upgraded ${upgraded}; the Socket's events: ` +
    lifecycle
      .map(({ name, value }) => (name === 'close' ? `close(${value.willReconnect ? 'reconnecting' : 'final'})` : name))
      .join(', ');
  t.diagnostic(`${what}: ${summary}`);
  assert.equal(attacked.of('open').length, upgraded, `${what}: one 'open' per upgraded connection; ${summary}`);
  assert.equal(
    closes.length,
    upgraded + (stoppedOffline ? 1 : 0),
    `${what}: one 'close' per connection that opened${stoppedOffline ? ', and the final one' : ''}; ${summary}`
  );
  assert.equal(closes.filter((e) => !e.willReconnect).length, 1, `${what}: one final 'close'; ${summary}`);
  const last = lifecycle.at(-1);
  assert.ok(last?.name === 'close' && !last.value.willReconnect, `${what}: the final 'close' comes last; ${summary}`);
}

// --- Raw TCP peers ----------------------------------------------------------------

/**
 * A raw TCP connection to 127.0.0.1:port that records what it receives
 * (`received()`), and `closed`, a Promise resolved when it closes (by
 * either side) with `{ byPeer }`: whether the other side ended it first.
 * Its errors (ECONNRESET) are expected and ignored.
 */
function rawConnection(port) {
  const socket = net.connect({ host: '127.0.0.1', port });
  const chunks = [];
  let destroyedByUs = false;
  socket.on('error', () => {});
  socket.on('data', (chunk) => chunks.push(chunk));
  const connected = new Promise((resolve, reject) => {
    socket.once('connect', () => {
      // Kept: a destroyed socket no longer tells its port.
      raw.localPort = socket.localPort;
      resolve();
    });
    socket.once('close', () => reject(new Error('closed before connecting')));
  });
  connected.catch(() => {});
  const closed = new Promise((resolve) =>
    socket.once('close', () => resolve({ byPeer: !destroyedByUs }))
  );
  const raw = {
    socket,
    localPort: undefined,
    connected,
    closed,
    received: () => Buffer.concat(chunks),
    destroy() {
      if (!socket.destroyed) destroyedByUs = true;
      socket.destroy();
    },
    reset() {
      if (!socket.destroyed) destroyedByUs = true;
      socket.resetAndDestroy();
    }
  };
  return raw;
}

/** The head of an upgrade request for `port`, as a string. */
function requestHead(port, requestPath = '/') {
  return (
    `GET ${requestPath} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: Upgrade\r\n` +
    `Upgrade: websocket\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\n` +
    'Sec-WebSocket-Version: 13\r\n\r\n'
  );
}

/**
 * A raw client that upgrades by hand and resolves once the 101 has
 * arrived, reading on (and recording) what follows.
 */
async function rawUpgraded(port, ms = 10000) {
  const raw = rawConnection(port);
  await raw.connected;
  raw.socket.write(requestHead(port));
  await within(
    until(() => raw.received().includes('\r\n\r\n') || raw.socket.destroyed, 'the 101', ms, 5),
    ms,
    'the answer to a raw upgrade'
  );
  const head = raw.received().toString('latin1');
  if (!head.startsWith('HTTP/1.1 101')) throw new Error(`not upgraded: ${head.split('\r\n')[0]}`);
  raw.head = head.slice(0, head.indexOf('\r\n\r\n') + 4);
  return raw;
}

/** Run `fn(i)` for i in [0, count), at most `width` at a time. */
async function inBatches(count, width, fn) {
  const results = [];
  for (let start = 0; start < count; start += width) {
    const batch = [];
    for (let i = start; i < Math.min(count, start + width); i++) batch.push(fn(i));
    results.push(...(await Promise.all(batch)));
  }
  return results;
}

/**
 * Write `burst` to `socket` again and again, as fast as TCP takes it, until
 * `total` bytes went, the socket is gone or `memory` is over its bound.
 * Returns the flood's state, `{ written, finished }`, as it goes on.
 */
function flood(socket, burst, total, memory) {
  const state = { written: 0, finished: false };
  const pump = () => {
    while (!socket.destroyed && state.written < total && !memory.over) {
      state.written += burst.length;
      if (!socket.write(burst)) {
        socket.once('drain', pump);
        return;
      }
    }
    state.finished = true;
  };
  pump();
  return state;
}

/**
 * Resolves once a `flood` has finished or stalled (the other side stopped
 * reading), `socket` is gone or `memory` is over; samples `memory` meanwhile.
 */
function floodSettled(state, socket, memory) {
  let last = -1;
  return until(
    () => {
      memory.sample();
      const stalled = state.written === last;
      last = state.written;
      return state.finished || stalled || socket.destroyed || memory.over;
    },
    'the flood to be read or to stall',
    30000,
    250
  );
}

module.exports = {
  flood,
  floodSettled,
  KiB,
  MiB,
  RSS_SLACK,
  CONTROL_GAP_MS,
  SETTLE_MS,
  gc,
  fdCount,
  rssAfterGc,
  takeBaseline,
  checkResources,
  startTarget,
  startControl,
  scenario,
  socketScenario,
  attackedSocket,
  rawConnection,
  rawUpgraded,
  requestHead,
  inBatches
};
