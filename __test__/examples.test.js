'use strict';

// The README's examples ("With Mytosis" and "Without Mytosis") are the
// files of examples/: each one runs, in a child process, against the
// behaving stand-in `mytosis` (NODE_PATH=__test__/fixtures/mytosis-behaving,
// which our lib resolves it through) and does its round trip; each code
// block of those sections is its example file, verbatim.

const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { promisify } = require('node:util');
const { describe, test } = require('node:test');

const { Server } = require('..');
const { closeAfter } = require('./helpers');
const { makeCertificate } = require('./server-kit');

const run = promisify(execFile);

const ROOT = path.resolve(__dirname, '..');
const EXAMPLES = path.join(ROOT, 'examples');
const STANDIN_PATH = path.join(__dirname, 'fixtures', 'mytosis-behaving');
const TIMEOUT = { timeout: 30000 };

// The README sections whose code blocks are all example files.
const EXAMPLE_SECTIONS = ['With Mytosis', 'Without Mytosis'];

/**
 * A copy of examples/ whose node_modules links `mytosis-websocket` to this
 * package, `mytosis` to the stand-in and `express` to our dev dependency:
 * ES modules resolve bare names through node_modules only, never through
 * NODE_PATH.
 */
function examplesCopy(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mytosis-examples-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.cpSync(EXAMPLES, dir, { recursive: true });
  const modules = path.join(dir, 'node_modules');
  fs.mkdirSync(modules);
  fs.symlinkSync(ROOT, path.join(modules, 'mytosis-websocket'), 'dir');
  fs.symlinkSync(path.join(STANDIN_PATH, 'mytosis'), path.join(modules, 'mytosis'), 'dir');
  fs.symlinkSync(path.join(ROOT, 'node_modules', 'express'), path.join(modules, 'express'), 'dir');
  return dir;
}

/**
 * Run one example (or `script` as that file) to its end, in a copy of
 * examples/ holding `files` too (name to content), with `nodeArgs` before
 * the file and `args` after it; its output lines.
 */
async function runExample(t, file, { nodeArgs = [], args = [], script, files = {} } = {}) {
  const dir = examplesCopy(t);
  if (script !== undefined) fs.writeFileSync(path.join(dir, file), script);
  for (const [name, content] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), content);
  const { stdout, stderr } = await run(process.execPath, [...nodeArgs, file, ...args], {
    cwd: dir,
    env: { ...process.env, NODE_PATH: STANDIN_PATH },
    timeout: 15000
  });
  assert.equal(stderr, '', 'nothing on stderr');
  return stdout.trimEnd().split('\n');
}

describe('examples', () => {
  test('run where our ConnectionGroup extends the stand-in\'s, as with mytosis installed', TIMEOUT, async (t) => {
    const script = `
      import database, { ConnectionGroup } from 'mytosis'
      import { Server } from 'mytosis-websocket'
      const server = new Server({ port: 0, host: '127.0.0.1' })
      console.log(Server.prototype instanceof ConnectionGroup, database({ network: server }).network === server)
      await server.close()
    `;
    assert.deepEqual(await runExample(t, 'base.mjs', { script }), ['true true']);
  });

  test('server-plugin.mjs: the database writes to a client through the Server, and the client answers', TIMEOUT, async (t) => {
    assert.deepEqual(await runExample(t, 'server-plugin.mjs'), [
      'client got {"type":"write","key":"greeting","value":{"text":"hello"}}',
      'server got {"thanks":"greeting"} from a websocket connection'
    ]);
  });

  test('browser-client.mjs: the page reads through its Socket and gets the answer of its server', TIMEOUT, async (t) => {
    const server = new Server({ port: 0, host: '127.0.0.1', path: '/live' });
    closeAfter(t, server);
    const { port } = await server.ready;
    const received = [];
    server.messages.forEach((message, connection) => {
      received.push(message);
      connection.send({ key: message.key, value: { text: 'hello' } });
    });

    // The page's `location`, which Node does not have.
    const page = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'mytosis-page-')), 'location.cjs');
    t.after(() => fs.rmSync(path.dirname(page), { recursive: true, force: true }));
    fs.writeFileSync(page, `globalThis.location = new URL('http://127.0.0.1:${port}/');\n`);

    assert.deepEqual(await runExample(t, 'browser-client.mjs', { nodeArgs: ['--require', page] }), [
      'page got {"key":"greeting","value":{"text":"hello"}}'
    ]);
    assert.deepEqual(received, [{ type: 'read', key: 'greeting' }]);
  });

  test('both.mjs: one database writes to its own client and, through its Socket, to the hub', TIMEOUT, async (t) => {
    assert.deepEqual(await runExample(t, 'both.mjs'), [
      'hub got {"type":"write","key":"greeting","value":{"text":"hello"}}',
      'client got {"type":"write","key":"greeting","value":{"text":"hello"}}'
    ]);
  });

  test('client.mjs: a Socket to the server on its command line sends, prints the answer and closes', TIMEOUT, async (t) => {
    const server = new Server({ port: 0, host: '127.0.0.1' });
    closeAfter(t, server);
    const { port } = await server.ready;
    const received = [];
    const removed = new Promise((resolve) => server.on('remove', (connection, { code }) => resolve(code)));
    server.messages.forEach((message, connection) => {
      received.push(message);
      connection.send({ echo: message });
    });

    assert.deepEqual(await runExample(t, 'client.mjs', { args: [`ws://127.0.0.1:${port}`] }), [
      'client got {"echo":{"hello":"server"}}'
    ]);
    assert.deepEqual(received, [{ hello: 'server' }]);
    assert.equal(await removed, 1000, 'the client closed with 1000');
  });

  test('express-attach.mjs: an express route and WebSocket upgrades on one port, then everything closes', TIMEOUT, async (t) => {
    assert.deepEqual(await runExample(t, 'express-attach.mjs'), [
      'GET /health: 200 ok',
      'client got {"echo":{"hello":"express"}}'
    ]);
  });

  test('tls.mjs: wss:// with the certificate and key of ./cert.pem and ./key.pem (self-signed, made by openssl)', TIMEOUT, async (t) => {
    const { cert, key } = makeCertificate();
    assert.deepEqual(await runExample(t, 'tls.mjs', { files: { 'cert.pem': cert, 'key.pem': key } }), [
      'client got {"echo":{"hello":"over tls"}}'
    ]);
  });
});

describe('README', () => {
  test('every code block of "With Mytosis" and "Without Mytosis" is the example file it names, and every example is shown', () => {
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const shown = [];
    for (const title of EXAMPLE_SECTIONS) {
      const section = new RegExp(`^## ${title}$([\\s\\S]*?)(?=^## |(?![\\s\\S]))`, 'm').exec(readme);
      assert.ok(section, `the README has a "${title}" section`);

      // Each block, with the last examples/ file named before it.
      const pattern = /`examples\/([\w.-]+)`|^```js\n([\s\S]*?)^```$/gm;
      let named = null;
      for (const match of section[1].matchAll(pattern)) {
        if (match[1] !== undefined) {
          named = match[1];
          continue;
        }
        assert.ok(named, `a code block of "${title}" that names no example file:\n${match[2]}`);
        const file = fs.readFileSync(path.join(EXAMPLES, named), 'utf8');
        assert.equal(match[2], file, `the README's block for examples/${named} is that file`);
        shown.push(named);
        named = null;
      }
    }

    const files = fs.readdirSync(EXAMPLES).filter((name) => /\.[cm]?js$/.test(name));
    assert.deepEqual([...shown].sort(), [...files].sort(), 'every example file is shown once');
    for (const kind of ['server-plugin.mjs', 'client.mjs', 'express-attach.mjs', 'browser-client.mjs', 'tls.mjs']) {
      assert.ok(shown.includes(kind), `the README shows examples/${kind}`);
    }
  });
});
