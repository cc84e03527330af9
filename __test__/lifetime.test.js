'use strict';

// Process lifetime: a listening Server or a live
// Socket keeps Node running, close() or unref() lets it exit, and a throw
// from user code reaches 'uncaughtException' only when nobody listens for
// 'error'. Each case runs in a child process.

const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const net = require('node:net');
const path = require('node:path');
const { describe, test } = require('node:test');

const { Server } = require('..');

const PKG = path.resolve(__dirname, '..');
const WS = require.resolve('ws');
const TIMEOUT = { timeout: 30000 };

// How long the child must stay up by itself, and how soon after close() it
// must be gone.
const STAY_MS = 1500;
const EXIT_MS = 2000;

/**
 * Run `script` in a child Node. Lines the child prints are timestamped as
 * the parent receives them: `lines` is `[{ text, at }]`. Resolves with
 * `{ code, signal, lines, stderr, exitedAt }`; the child is killed (and the
 * result has `killed: true`) if it is still running after `killAfter` ms.
 */
function run(script, { env = {}, killAfter = 15000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', script], {
      env: { ...process.env, ...env, PKG, WS },
      stdio: ['ignore', 'pipe', 'pipe']
    });
    const lines = [];
    let partial = '';
    let stderr = '';
    let killed = false;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      const at = Date.now();
      const parts = (partial + chunk).split('\n');
      partial = parts.pop();
      for (const text of parts) lines.push({ text, at });
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const timer = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, killAfter);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      const exitedAt = Date.now();
      clearTimeout(timer);
      // 'exit' may come before the last output; 'close' waits for it.
      child.on('close', () => {
        if (partial) lines.push({ text: partial, at: exitedAt });
        resolve({ code, signal, killed, lines, stderr, exitedAt });
      });
    });
  });
}

/** The line starting with `prefix`, or fail showing what the child said. */
function line(result, prefix) {
  const found = result.lines.find(({ text }) => text.startsWith(prefix));
  assert.ok(
    found,
    `the child did not print "${prefix}"; stdout: ${JSON.stringify(result.lines.map((l) => l.text))}, ` +
      `stderr: ${result.stderr}, code: ${result.code}, killed: ${result.killed}`
  );
  return found;
}

/**
 * The child printed CLOSING (so it was alive STAY_MS after it was ready),
 * exited cleanly, and within EXIT_MS of CLOSING.
 */
function assertStayedThenExited(result) {
  line(result, 'READY');
  const closing = line(result, 'CLOSING');
  assert.equal(result.killed, false, `still running ${EXIT_MS} ms after close(); stderr: ${result.stderr}`);
  assert.equal(result.code, 0, `exit code; stderr: ${result.stderr}`);
  const took = result.exitedAt - closing.at;
  assert.ok(took < EXIT_MS, `exited ${took} ms after close()`);
}

async function closedPort() {
  const srv = net.createServer();
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address();
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

// The child's timer is unref'd: if nothing else holds the process, the
// child exits before it fires and never prints CLOSING.
const CLOSE_LATER = `
  function closeLater(close) {
    setTimeout(() => {
      console.log('CLOSING');
      close();
    }, ${STAY_MS}).unref();
  }
`;

describe('process lifetime', () => {
  test('a listening Server keeps the process alive and close() lets it exit', TIMEOUT, async () => {
    const result = await run(`
      const { Server } = require(process.env.PKG);
      ${CLOSE_LATER}
      const server = new Server({ port: 0, host: '127.0.0.1' });
      server.ready.then(({ port }) => {
        console.log('READY ' + port);
        closeLater(() => server.close());
      });
    `, { killAfter: STAY_MS + EXIT_MS + 3000 });
    assertStayedThenExited(result);
  });

  test('an open Socket keeps the process alive and close() lets it exit', TIMEOUT, async (t) => {
    const server = new Server({ port: 0, host: '127.0.0.1' });
    t.after(() => server.close());
    const { port } = await server.ready;
    const removed = new Promise((resolve) => server.once('remove', (c, info) => resolve(info)));

    const result = await run(`
      const { Socket } = require(process.env.PKG);
      ${CLOSE_LATER}
      const socket = new Socket('ws://127.0.0.1:${port}');
      socket.on('open', () => {
        console.log('READY');
        closeLater(() => socket.close());
      });
      socket.on('error', (err) => console.log('ERROR ' + err.code));
    `, { killAfter: STAY_MS + EXIT_MS + 3000 });
    assertStayedThenExited(result);
    assert.equal((await removed).code, 1000, 'the socket closed its connection with 1000');
  });

  test('a Socket retrying a closed port keeps the process alive and close() lets it exit', TIMEOUT, async () => {
    const port = await closedPort();
    const result = await run(`
      const { Socket } = require(process.env.PKG);
      ${CLOSE_LATER}
      const socket = new Socket('ws://127.0.0.1:${port}', { minReconnectionDelay: 50, jitter: 0, reconnectionDelayGrowFactor: 1 });
      let errors = 0;
      socket.on('error', () => errors++);
      console.log('READY');
      closeLater(() => {
        console.log('ERRORS ' + errors);
        socket.close();
      });
    `, { killAfter: STAY_MS + EXIT_MS + 3000 });
    assertStayedThenExited(result);
    const errors = Number(line(result, 'ERRORS').text.split(' ')[1]);
    assert.ok(errors >= 5, `it kept retrying (${errors} failed attempts)`);
  });

  test('a Server after unref() does not keep the process alive', TIMEOUT, async () => {
    const started = Date.now();
    const result = await run(`
      const { Server } = require(process.env.PKG);
      const server = new Server({ port: 0, host: '127.0.0.1' });
      console.log('UNREF ' + (server.unref() === server));
      server.ready.then(({ port }) => console.log('READY ' + port));
    `, { killAfter: 5000 });
    assert.equal(result.killed, false, 'the child did not exit by itself');
    assert.equal(result.code, 0, result.stderr);
    assert.equal(line(result, 'UNREF').text, 'UNREF true', 'unref() returns the server');
    line(result, 'READY');
    assert.ok(result.exitedAt - started < 3000);
  });

  test('a Socket after unref() does not keep the process alive', TIMEOUT, async () => {
    const port = await closedPort();
    const result = await run(`
      const { Socket } = require(process.env.PKG);
      const socket = new Socket('ws://127.0.0.1:${port}', { minReconnectionDelay: 50 });
      console.log('UNREF ' + (socket.unref() === socket));
    `, { killAfter: 5000 });
    assert.equal(result.killed, false, 'the child did not exit by itself');
    assert.equal(result.code, 0, result.stderr);
    assert.equal(line(result, 'UNREF').text, 'UNREF true', 'unref() returns the socket');
  });

  test("a throw from an 'add' listener with no 'error' listener reaches 'uncaughtException'", TIMEOUT, async () => {
    const result = await run(`
      const WebSocket = require(process.env.WS);
      const { Server } = require(process.env.PKG);
      process.on('uncaughtException', (err) => {
        console.log('UNCAUGHT ' + err.message);
        process.exit(7);
      });
      const server = new Server({ port: 0, host: '127.0.0.1' });
      server.on('add', () => {
        throw new Error('boom from add');
      });
      server.ready.then(({ port }) => {
        console.log('READY');
        new WebSocket('ws://127.0.0.1:' + port).on('error', () => {});
      });
    `);
    assert.equal(result.killed, false, `the child hung; stdout: ${JSON.stringify(result.lines)}`);
    assert.equal(line(result, 'UNCAUGHT').text, 'UNCAUGHT boom from add');
    assert.equal(result.code, 7);
  });

  test("a throw from an 'add' listener with an 'error' listener goes to 'error' and the server keeps serving", TIMEOUT, async () => {
    const result = await run(`
      const WebSocket = require(process.env.WS);
      const { Server } = require(process.env.PKG);
      process.on('uncaughtException', (err) => {
        console.log('UNCAUGHT ' + err.message);
        process.exit(7);
      });
      const server = new Server({ port: 0, host: '127.0.0.1' });
      const errors = [];
      server.on('error', (err) => errors.push(err.message));
      server.on('add', () => {
        throw new Error('boom from add');
      });
      server.messages.forEach((message, connection) => connection.send({ echo: message }));

      function client(port, n) {
        return new Promise((resolve, reject) => {
          const ws = new WebSocket('ws://127.0.0.1:' + port);
          ws.on('error', reject);
          ws.on('open', () => ws.send(JSON.stringify(n)));
          ws.on('message', (data) => {
            ws.close();
            resolve(data.toString());
          });
        });
      }

      server.ready.then(async ({ port }) => {
        console.log('READY');
        // Both clients are served although every 'add' listener throws.
        console.log('ECHO ' + (await client(port, 1)));
        console.log('ECHO ' + (await client(port, 2)));
        console.log('ERRORS ' + JSON.stringify(errors));
        await server.close();
        console.log('CLOSED');
      });
    `);
    assert.equal(result.killed, false, `the child hung; stdout: ${JSON.stringify(result.lines)}`);
    assert.deepEqual(
      result.lines.map(({ text }) => text),
      ['READY', 'ECHO {"echo":1}', 'ECHO {"echo":2}', 'ERRORS ["boom from add","boom from add"]', 'CLOSED']
    );
    assert.equal(result.code, 0, result.stderr);
  });
});
