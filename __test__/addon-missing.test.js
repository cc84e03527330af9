'use strict';

// Without a usable addon the package still loads: Server explains which
// file it looked for and how to build it, and a Socket runs over a
// WebSocket implementation with a one-time warning.

const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { promisify } = require('node:util');
const { test } = require('node:test');

const run = promisify(execFile);

const ROOT = path.resolve(__dirname, '..');

/**
 * A copy of the package without any `.node` file, under target/ so that
 * `ws` and `events` resolve from the repository's node_modules.
 */
function copyWithoutAddon(t) {
  const parent = path.join(ROOT, 'target');
  fs.mkdirSync(parent, { recursive: true });
  const dir = fs.mkdtempSync(path.join(parent, 'addon-missing-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  for (const file of ['index.js', 'server.js', 'binding.js', 'package.json']) {
    fs.copyFileSync(path.join(ROOT, file), path.join(dir, file));
  }
  fs.cpSync(path.join(ROOT, 'lib'), path.join(dir, 'lib'), { recursive: true });
  return dir;
}

/**
 * What `construct` (JS source using `Server` and `Socket` of the copy in
 * `dir`, run after `setup`) throws in a child process: `{ code, message }`,
 * or `null` when it throws nothing.
 */
async function thrownBy(dir, construct, setup = '') {
  const child = `
    const { Server, Socket } = require(process.argv[1]);
    ${setup}
    try {
      ${construct};
      process.stdout.write('null');
    } catch (err) {
      process.stdout.write(JSON.stringify({ code: err.code, message: err.message }));
    }
  `;
  const { stdout } = await run(process.execPath, ['-e', child, dir], { cwd: dir, timeout: 20000 });
  return JSON.parse(stdout);
}

const CHILD = `
'use strict';
const assert = require('node:assert/strict');
const { WebSocket, WebSocketServer } = require('ws');
const pkg = require(process.argv[1]);
const { Server, Socket } = pkg;
assert.equal(typeof Socket, 'function');

let serverError = null;
try {
  new Server(0);
} catch (err) {
  serverError = { message: err.message, code: err.code };
}

const wss = new WebSocketServer({ port: 0 }, () => {
  wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
  const url = 'ws://127.0.0.1:' + wss.address().port;
  const second = new Socket(url, { WebSocket, startClosed: true });
  const socket = new Socket(url, { WebSocket });
  socket.on('open', () => socket.send('ping'));
  socket.messages.forEach((data) => {
    socket.close();
    second.close();
    wss.close();
    process.stdout.write(JSON.stringify({ serverError, echoed: String(data) }));
  });
});
`;

test('without the .node file: require works, Server explains, Socket runs over ws', async (t) => {
  const dir = copyWithoutAddon(t);
  assert.equal(
    fs.readdirSync(dir).some((name) => name.endsWith('.node')),
    false
  );
  const { stdout, stderr } = await run(process.execPath, ['-e', CHILD, dir], {
    cwd: dir,
    timeout: 20000
  });
  const result = JSON.parse(stdout);
  assert.equal(result.echoed, 'ping');

  assert.ok(result.serverError, 'new Server(0) throws');
  assert.equal(result.serverError.code, 'ERR_ADDON_MISSING');
  assert.match(result.serverError.message, /mytosis-websocket\.[a-z0-9]+-[a-z0-9]+(-[a-z]+)?\.node/);
  assert.match(result.serverError.message, new RegExp(`${process.platform}-${process.arch}`));
  assert.match(result.serverError.message, /binding\.js/);
  assert.match(result.serverError.message, /npm run build/);
  assert.match(result.serverError.message, /Rust toolchain/);
  assert.doesNotMatch(result.serverError.message, /"tls" option/);

  const warnings = stderr.split('\n').filter((line) => line.includes('ERR_ADDON_MISSING'));
  assert.equal(warnings.length, 1, stderr);
  assert.match(warnings[0], /native addon/);
});

test('without the .node file and without any WebSocket, a Socket throws the explanation', async (t) => {
  const dir = copyWithoutAddon(t);
  const result = await thrownBy(dir, "new Socket('ws://127.0.0.1:1')", 'delete globalThis.WebSocket;');
  assert.equal(result?.code, 'ERR_ADDON_MISSING');
  assert.match(result.message, /\.node/);
});

test("without the .node file, a Socket without the option runs over the global WebSocket (Node 22's)", async (t) => {
  const dir = copyWithoutAddon(t);
  const child = `
    const { WebSocket, WebSocketServer } = require('ws');
    globalThis.WebSocket = WebSocket;
    const { Socket } = require(process.argv[1]);
    let headersError = null;
    try {
      new Socket('ws://127.0.0.1:1', { headers: { Authorization: 'x' }, startClosed: true });
    } catch (err) {
      headersError = err.code;
    }
    const wss = new WebSocketServer({ port: 0 }, () => {
      wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
      const socket = new Socket('ws://127.0.0.1:' + wss.address().port);
      socket.on('open', () => socket.send({ hello: 1 }));
      socket.messages.forEach((message) => {
        socket.close();
        wss.close();
        process.stdout.write(JSON.stringify({ headersError, message }));
      });
    });
  `;
  const { stdout, stderr } = await run(process.execPath, ['-e', child, dir], { cwd: dir, timeout: 20000 });
  const result = JSON.parse(stdout);
  assert.deepEqual(result.message, { hello: 1 });
  assert.equal(result.headersError, 'ERR_ADDON_MISSING', 'headers need the addon');
  assert.equal(stderr.split('\n').filter((line) => line.includes('ERR_ADDON_MISSING')).length, 1, stderr);
});

test('without binding.js at all, the package loads and Server explains', async (t) => {
  const dir = copyWithoutAddon(t);
  fs.rmSync(path.join(dir, 'binding.js'));
  const result = await thrownBy(dir, 'new Server(0)');
  assert.equal(result?.code, 'ERR_ADDON_MISSING');
  assert.match(result.message, /npm run build/);
});
