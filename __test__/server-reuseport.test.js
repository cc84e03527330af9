'use strict';

// reusePort: several processes serve one port (SO_REUSEPORT); without it
// the second gets EADDRINUSE. Each Server runs in its own child process
// (fixtures/reuse-port-server.js).

const assert = require('node:assert/strict');
const { fork } = require('node:child_process');
const path = require('node:path');
const { test } = require('node:test');

const WebSocket = require('ws');

const { within, defer } = require('./helpers');

const CHILD = path.join(__dirname, 'fixtures', 'reuse-port-server.js');

/**
 * Fork a child running a Server on `port`; killed after the test.
 *
 * @return {Object} `{ child, next(type) }`: `next` resolves with the next
 *     message of that type (or of any type in an array)
 */
function spawnServer(t, port, mode) {
  const child = fork(CHILD, [String(port), mode], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const inbox = [];
  const waiting = [];
  child.on('message', (message) => {
    const index = waiting.findIndex((w) => w.types.includes(message.type));
    if (index === -1) inbox.push(message);
    else waiting.splice(index, 1)[0].resolve(message);
  });
  defer(t, async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  });
  // The next message of `type` (or of any of an array of types).
  const next = (type, ms = 5000) => {
    const types = [type].flat();
    const index = inbox.findIndex((message) => types.includes(message.type));
    if (index !== -1) return Promise.resolve(inbox.splice(index, 1)[0]);
    return within(
      new Promise((resolve) => waiting.push({ types, resolve })),
      ms,
      `${types.join(' or ')} from the child on port ${port}`
    );
  };
  return { child, next };
}

/** Open a ws client; resolves when it is open. Terminated after the test. */
function openWs(t, port) {
  const client = new WebSocket(`ws://127.0.0.1:${port}`);
  defer(t, () => client.terminate());
  return within(
    new Promise((resolve, reject) => {
      client.once('open', () => resolve(client));
      client.once('error', reject);
    }),
    5000,
    'a client to open'
  );
}

async function counts(children) {
  return Promise.all(
    children.map(async ({ child, next }) => {
      child.send('count');
      return (await next('count')).added;
    })
  );
}

test('reusePort: true: two processes serve the same port and both get connections', async (t) => {
  const first = spawnServer(t, 0, 'reuse');
  const { port } = await first.next('listening');
  assert.ok(port > 0);
  const second = spawnServer(t, port, 'reuse');
  const listening = await second.next(['listening', 'ready-rejected']);
  assert.deepEqual(listening, { type: 'listening', port }, 'the second process binds the same port');

  const clients = [];
  for (let i = 0; i < 50; i++) clients.push(openWs(t, port));
  await Promise.all(clients);

  // 'add' may follow the client's 'open' by a moment: ask until all arrived.
  let got;
  const deadline = Date.now() + 3000;
  for (;;) {
    got = await counts([first, second]);
    if (got[0] + got[1] >= 50 || Date.now() > deadline) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.equal(got[0] + got[1], 50, `every connection reached a process: ${got}`);
  assert.ok(got[0] > 0 && got[1] > 0, `both processes got connections: ${got}`);
});

test('without reusePort the second process gets EADDRINUSE through ready and error', async (t) => {
  const first = spawnServer(t, 0, 'no-reuse');
  const { port } = await first.next('listening');
  const second = spawnServer(t, port, 'no-reuse');

  const rejected = await second.next('ready-rejected');
  assert.equal(rejected.code, 'EADDRINUSE');
  assert.equal(rejected.syscall, 'listen');
  assert.equal(rejected.port, port);
  const error = await second.next('error');
  assert.deepEqual(error, { type: 'error', code: 'EADDRINUSE', syscall: 'listen', port });

  // The first process still serves, and got the connection.
  await openWs(t, port);
  const deadline = Date.now() + 3000;
  let added;
  do {
    [added] = await counts([first]);
  } while (added < 1 && Date.now() < deadline);
  assert.equal(added, 1);
});

test('reusePort on only one side: the process without it gets EADDRINUSE', async (t) => {
  // Each process must set it: a listener with SO_REUSEPORT does not
  // share its port with one without, in either order.
  for (const [firstMode, secondMode] of [
    ['reuse', 'no-reuse'],
    ['no-reuse', 'reuse']
  ]) {
    const first = spawnServer(t, 0, firstMode);
    const { port } = await first.next('listening');
    const second = spawnServer(t, port, secondMode);
    const rejected = await second.next('ready-rejected');
    assert.equal(rejected.code, 'EADDRINUSE', `${firstMode} then ${secondMode}`);
    assert.equal((await second.next('error')).code, 'EADDRINUSE');
  }
});
