'use strict';

// Admission: `maxConnections` turns upgrades away with 503 and a
// Retry-After while the server is full, standalone and attached; running
// out of file descriptors while accepting is reported as 'error' (EMFILE),
// costs no CPU while it lasts, and accepting resumes once descriptors are
// free again (tested in a child process with a low `ulimit -n`).

const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const path = require('node:path');
const { test } = require('node:test');

const WebSocket = require('ws');

const { Server } = require('..');
const { within, once, openClient, next, startServer, attachServer, delay, defer, until } = require('./helpers');
const { listenOn, upgradeRequest } = require('./server-kit');

/**
 * How a ws client's attempt to `url` ends: `{ opened: true }`, or
 * `{ status, headers }` for an HTTP answer other than 101. Terminated after
 * the test.
 */
function attempt(t, url) {
  const client = new WebSocket(url);
  defer(t, () => client.terminate());
  client.on('error', () => {});
  return within(
    new Promise((resolve) => {
      client.on('open', () => resolve({ opened: true }));
      client.on('unexpected-response', (req, res) => {
        resolve({ status: res.statusCode, headers: res.headers });
        req.destroy();
      });
      client.on('error', (err) => resolve({ error: err.code ?? err.message }));
    }),
    3000,
    'the connection attempt to end'
  );
}

/** A refusal because the server is full: 503 with Retry-After in whole seconds (at least 1). */
function assertFull(answer, what) {
  assert.equal(answer.status, 503, `${what}: answered ${JSON.stringify(answer)}`);
  const retryAfter = answer.headers['retry-after'];
  assert.match(String(retryAfter), /^[1-9][0-9]*$/, `${what}: Retry-After is ${retryAfter}`);
}

/**
 * The checks common to a standalone and an attached Server with
 * `maxConnections: 2`, reached at `url`.
 */
async function fillAndFree(t, server, port, url) {
  const adds = [];
  server.on('add', (connection) => adds.push(connection));
  const first = await openClient(t, server, { path: new URL(url).pathname });
  const second = await openClient(t, server, { path: new URL(url).pathname });
  await until(() => adds.length === 2, "two 'add' events");

  // Full: a plain upgrade request and a ws client are both turned away.
  assertFull(await upgradeRequest(port, new URL(url).pathname), 'an upgrade request to a full server');
  assertFull(await attempt(t, url), 'a ws client to a full server');

  // The two that are in still work; once a message sent after the refusals
  // has made the round trip, an 'add' for a refused client would be in.
  first.send(JSON.stringify('first'));
  assert.deepEqual(await next(first), [{ data: '"first"', binary: false }]);
  assert.equal(adds.length, 2, "no 'add' for a refused client");
  assert.equal(server.size, 2);

  // One leaves: there is room again.
  const removed = once(server, 'remove');
  first.close();
  await removed;
  assert.deepEqual(await attempt(t, url), { opened: true }, 'a client once there is room');
  await until(() => adds.length === 3, "the newcomer's 'add'");
  // Full again.
  assertFull(await upgradeRequest(port, new URL(url).pathname), 'an upgrade request to a full server again');
  second.send(JSON.stringify('second'));
  assert.deepEqual(await next(second), [{ data: '"second"', binary: false }]);
}

function echo(server) {
  server.messages.forEach((message, connection) => connection.send(message));
}

test('maxConnections (standalone): a full server answers upgrades 503 with Retry-After, and admits again once a connection closes', async (t) => {
  const server = await startServer(t, { maxConnections: 2 });
  echo(server);
  const { port } = server.address();
  await fillAndFree(t, server, port, `ws://127.0.0.1:${port}/`);
});

test('maxConnections (attached to an http.Server): a full server answers upgrades 503 with Retry-After, and admits again once a connection closes', async (t) => {
  const httpServer = await listenOn(
    t,
    http.createServer((req, res) => res.end('plain http'))
  );
  const server = attachServer(t, httpServer, { path: '/ws', maxConnections: 2 });
  await server.ready;
  echo(server);
  const { port } = httpServer.address();
  await fillAndFree(t, server, port, `ws://127.0.0.1:${port}/ws`);
});

test('maxConnections: connections JS has not met yet (no listener) count too', async (t) => {
  // Without an 'add' or 'remove' listener the addon tells JS of a
  // connection only when it must; it still counts towards the limit.
  const server = await startServer(t, { maxConnections: 2 });
  await openClient(t, server);
  await openClient(t, server);
  await until(() => server.size === 2, 'two connections');
  assertFull(await upgradeRequest(server.address().port), 'an upgrade request to a full server');
  assert.equal(server.size, 2);
});

test('maxConnections: 0 refuses every upgrade; Infinity (the default) refuses none', async (t) => {
  const none = await startServer(t, { maxConnections: 0 });
  assertFull(await upgradeRequest(none.address().port), 'an upgrade with maxConnections: 0');
  assert.equal(none.size, 0);

  const any = await startServer(t, { maxConnections: Infinity });
  for (let i = 0; i < 20; i++) await openClient(t, any);
  await until(() => any.size === 20, '20 connections');
  assert.equal((await upgradeRequest(any.address().port)).status, 101);
});

test('maxConnections: anything but a non-negative integer or Infinity throws TypeError ERR_INVALID_OPTION naming it', async (t) => {
  for (const value of [-1, 1.5, 'x', Number.NaN, -Infinity, null]) {
    let server;
    assert.throws(
      () => {
        server = new Server({ port: 0, host: '127.0.0.1', maxConnections: value });
      },
      (err) => {
        assert.ok(err instanceof TypeError, `a TypeError for ${String(value)}, got ${err}`);
        assert.equal(err.code, 'ERR_INVALID_OPTION');
        assert.match(err.message, /"maxConnections"/);
        return true;
      },
      `maxConnections: ${String(value)} was accepted`
    );
    server?.close();
  }
  // Good values are accepted, standalone and attached.
  for (const value of [0, 1, 1000, Infinity]) await startServer(t, { maxConnections: value });
  const httpServer = await listenOn(t, http.createServer());
  await attachServer(t, httpServer, { maxConnections: 5 }).ready;
});

// --- Out of file descriptors ---------------------------------------------------

const FIXTURE = path.join(__dirname, 'fixtures', 'emfile-server.js');
// Node and the addon take about 25 descriptors to start; the rest is
// room for about 55 connections.
const FD_LIMIT = 80;

/**
 * Start the fixture under `ulimit -n FD_LIMIT`; killed after the test.
 * `lines` holds its reports; `waitFor(filter, ms, what)` the first that
 * passes `filter`.
 */
function startChild(t) {
  const child = spawn('/bin/sh', ['-c', `ulimit -n ${FD_LIMIT} && exec "${process.execPath}" "${FIXTURE}"`], {
    stdio: ['pipe', 'pipe', 'inherit']
  });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  let alive = true;
  exited.then(() => (alive = false));
  defer(t, async () => {
    if (!alive) return;
    child.stdin.end();
    child.kill('SIGKILL');
    await exited;
  });
  const lines = [];
  const waiters = new Set();
  let rest = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk) => {
    rest += chunk;
    let end;
    while ((end = rest.indexOf('\n')) !== -1) {
      const line = JSON.parse(rest.slice(0, end));
      rest = rest.slice(end + 1);
      line.at = Date.now();
      lines.push(line);
      for (const waiter of waiters) waiter();
    }
  });
  function waitFor(filter, ms, what) {
    return within(
      new Promise((resolve, reject) => {
        const check = () => {
          const found = lines.find(filter);
          if (found !== undefined) {
            waiters.delete(check);
            resolve(found);
          }
        };
        waiters.add(check);
        check();
        exited.then(({ code, signal }) => reject(new Error(`the child exited (${code ?? signal}) before ${what}`)));
      }),
      ms,
      what
    );
  }
  return { child, lines, waitFor };
}

/** CPU time (user + system) the process `pid` has used, in clock ticks. */
function cpuTicks(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces), from field 3 on.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime, stime
}

// Clock ticks per second, as /proc counts them: 100 on Linux.
const TICKS_PER_SECOND = 100;

/** A plain TCP connection to `port`; destroyed after the test. */
function tcpConnect(t, port) {
  const socket = net.connect({ host: '127.0.0.1', port });
  defer(t, () => socket.destroy());
  socket.on('error', () => {});
  return within(
    new Promise((resolve) => socket.once('connect', () => resolve(socket))),
    3000,
    'a TCP connection'
  );
}

test(
  'out of file descriptors: accepting reports EMFILE as an error, backs off without spinning, and resumes once descriptors are free',
  { skip: process.platform === 'linux' ? false : 'reads /proc and uses ulimit' },
  async (t) => {
    const { child, lines, waitFor } = startChild(t);
    const listening = await waitFor((line) => line.type === 'listening', 10_000, 'the child to listen');
    t.diagnostic(`the child listens with ${listening.fds} descriptors open of ${listening.limit}`);
    assert.equal(listening.limit, FD_LIMIT);
    assert.ok(listening.fds < FD_LIMIT - 20, `room for connections: ${listening.fds} of ${FD_LIMIT} used`);
    const { port } = listening;

    // More connections than the child has descriptors for: the kernel
    // completes them all (the listen backlog holds them), the child can
    // accept only some.
    const sockets = [];
    for (let i = 0; i < 100; i++) sockets.push(await tcpConnect(t, port));
    const emfile = await waitFor(
      (line) => line.type === 'error' && line.code === 'EMFILE',
      5000,
      "the child's 'error' with code EMFILE"
    );
    t.diagnostic(`error: ${JSON.stringify(emfile)}`);
    assert.ok(
      lines.filter((line) => line.type === 'error').every((line) => line.code === 'EMFILE'),
      `only EMFILE errors: ${JSON.stringify(lines.filter((line) => line.type === 'error'))}`
    );

    // Still out of descriptors (connections wait in the backlog): it waits
    // instead of retrying in a loop.
    const errorsBefore = lines.filter((line) => line.type === 'error').length;
    const ticksBefore = cpuTicks(child.pid);
    const start = Date.now();
    // A window to measure the child's CPU use over, not a wait for anything.
    await delay(1000);
    const seconds = (Date.now() - start) / 1000;
    const cpu = (cpuTicks(child.pid) - ticksBefore) / TICKS_PER_SECOND / seconds;
    const errorsDuring = lines.filter((line) => line.type === 'error').length - errorsBefore;
    t.diagnostic(`while out of descriptors: ${(cpu * 100).toFixed(1)}% of a core, ${errorsDuring} errors in ${seconds.toFixed(2)} s`);
    assert.ok(cpu < 0.3, `the child used ${(cpu * 100).toFixed(1)}% of a core while out of descriptors`);

    // Descriptors come back: the connections it took are dropped, and a
    // WebSocket client is served again.
    for (const socket of sockets.splice(0, 90)) socket.destroy();
    const client = new WebSocket(`ws://127.0.0.1:${port}`);
    defer(t, () => client.terminate());
    client.on('error', () => {});
    await once(client, 'open', 5000);
    const echoed = once(client, 'message', 3000);
    client.send('back');
    const [data] = await echoed;
    assert.equal(data.toString(), 'back');
  }
);
