'use strict';

// The browser build end to end: browser.js bundled by esbuild into one
// script, loaded by a page in headless Chromium (Debian's `chromium`, driven
// by playwright-core), talking to our Rust Server. .ci/run installs
// chromium; without it these tests are skipped, saying so.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const { after, before, describe, test } = require('node:test');

const esbuild = require('esbuild');

const { startServer } = require('./helpers');

const CHROMIUM = '/usr/bin/chromium';
const GLOBAL = 'MytosisWebSocket';
const TIMEOUT = { timeout: 20000 };
const skip = fs.existsSync(CHROMIUM)
  ? false
  : `Chromium is not installed at ${CHROMIUM} (apt-get install -y chromium; .ci/run does)`;

/** Bundle browser.js into `dir` as an IIFE setting `window[GLOBAL]`. */
async function bundle(dir) {
  const outfile = path.join(dir, 'bundle.js');
  const result = await esbuild.build({
    entryPoints: [path.join(__dirname, '..', 'browser.js')],
    bundle: true,
    format: 'iife',
    globalName: GLOBAL,
    platform: 'browser',
    outfile,
    metafile: true,
    logLevel: 'silent'
  });
  return { outfile, inputs: Object.keys(result.metafile.inputs) };
}

/** Serve the page and the bundle on 127.0.0.1. */
async function servePage(bundleFile) {
  const page = `<!doctype html><meta charset="utf-8"><title>mytosis-websocket</title>
<script src="/bundle.js"></script>`;
  const server = http.createServer((req, res) => {
    if (req.url === '/bundle.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      fs.createReadStream(bundleFile).pipe(res);
    } else {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(page);
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${server.address().port}/` };
}

/** Resolve with `check()`'s first truthy result; reject after `ms`. */
async function until(check, what, ms = 5000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * Our Server (helpers' startServer: closed when the test ends) on `port`
 * (0: one the OS picks), recording its messages and connections.
 */
async function startBackend(t, port = 0) {
  const server = await startServer(t, { port });
  const address = server.address();
  const received = [];
  const conns = [];
  server.on('add', (c) => conns.push(c));
  server.messages.forEach((message) => received.push(message));
  return { server, received, conns, port: address.port, url: `ws://127.0.0.1:${address.port}` };
}

describe('the browser bundle', () => {
  test('browser.js bundles for the browser without the addon or Node built-ins', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mytosis-bundle-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const { inputs } = await bundle(dir);
    const forbidden = inputs.filter((file) =>
      /(^|\/)(binding\.js|lib\/(native|native-transport|encode|socket|server|connection)\.js)$|^node:/.test(file)
    );
    assert.deepEqual(forbidden, []);
    assert.ok(inputs.some((file) => file.endsWith('lib/websocket-transport.js')));
    assert.ok(inputs.some((file) => file.includes('node_modules/events/')), 'the events package');
  });

  test("a bundler resolves the package name and '/server' to the browser build", async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mytosis-consumer-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    fs.mkdirSync(path.join(dir, 'node_modules'));
    fs.symlinkSync(path.join(__dirname, '..'), path.join(dir, 'node_modules', 'mytosis-websocket'), 'dir');
    for (const [kind, contents] of [
      ['import', "import Socket from 'mytosis-websocket'; import Server from 'mytosis-websocket/server'; console.log(Socket, Server);"],
      ['require', "console.log(require('mytosis-websocket'), require('mytosis-websocket/server'));"]
    ]) {
      const result = await esbuild.build({
        stdin: { contents, resolveDir: dir },
        bundle: true,
        platform: 'browser',
        write: false,
        metafile: true,
        logLevel: 'silent'
      });
      const inputs = Object.keys(result.metafile.inputs).map((file) => path.basename(file));
      assert.ok(inputs.includes('browser.js'), `${kind}: ${inputs}`);
      assert.ok(inputs.includes('browser-server.js'), `${kind}: ${inputs}`);
      assert.ok(!inputs.includes('index.js') && !inputs.includes('binding.js'), `${kind}: ${inputs}`);
    }
  });
});

describe('the browser build in headless Chromium', { skip }, () => {
  let dir;
  let site;
  let context;
  let page;
  const consoleLines = [];

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mytosis-chromium-'));
    const { outfile } = await bundle(dir);
    site = await servePage(outfile);
    const { chromium } = require('playwright-core');
    context = await chromium.launchPersistentContext(path.join(dir, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-quic',
        '--no-first-run',
        '--disable-component-update',
        '--disable-sync'
      ]
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.on('console', (message) => consoleLines.push(message.text()));
    page.on('pageerror', (err) => consoleLines.push(`pageerror: ${err.message}`));
    await page.goto(site.url);
  });

  after(async () => {
    await context?.close();
    await new Promise((resolve) => (site ? site.server.close(resolve) : resolve()));
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Evaluate in the page, showing its console when that fails. */
  async function inPage(fn, arg) {
    try {
      return await page.evaluate(fn, arg);
    } catch (err) {
      err.message += `\npage console:\n${consoleLines.join('\n')}`;
      throw err;
    }
  }

  test('the bundle loads: the same exports, a Server that throws, no Buffer', TIMEOUT, async () => {
    const shape = await inPage((name) => {
      const pkg = window[name];
      let serverError = null;
      try {
        new pkg.Server({ port: 0 });
      } catch (err) {
        serverError = err.message;
      }
      return {
        socket: typeof pkg === 'function' && pkg.Socket === pkg,
        names: ['Stream', 'ConnectionGroup', 'Server'].map((n) => typeof pkg[n]),
        serverError,
        buffer: typeof Buffer
      };
    }, GLOBAL);
    assert.deepEqual(shape, {
      socket: true,
      names: ['function', 'function', 'function'],
      serverError: 'Server is not available in browsers',
      buffer: 'undefined'
    });
  });

  test("a text that is not JSON: 'error' ERR_INVALID_JSON with the text, and the socket stays open", TIMEOUT, async (t) => {
    const server = await startServer(t, { json: false });
    server.messages.forEach((message, connection) => connection.send(message === '"hello"' ? '{not json' : message));
    const url = `ws://127.0.0.1:${server.address().port}`;
    const seen = await inPage(
      ([name, serverUrl]) =>
        new Promise((resolve) => {
          const s = new window[name](serverUrl);
          const errors = [];
          s.on('error', (err) => errors.push({ code: err.code, data: err.data }));
          s.messages.forEach((message) => {
            resolve({ errors, message });
            s.close();
          });
          s.send('hello');
          s.send('still open');
        }),
      [GLOBAL, url]
    );
    assert.deepEqual(seen, { errors: [{ code: 'ERR_INVALID_JSON', data: '{not json' }], message: 'still open' });
  });

  test('JSON and binary go both ways with our Server', TIMEOUT, async (t) => {
    const backend = await startBackend(t);
    await inPage(
      ([name, url]) =>
        new Promise((resolve) => {
          const Socket = window[name];
          window.got = [];
          window.gotBlob = [];
          const record = (list) => (m) =>
            list.push(
              m instanceof ArrayBuffer ? { arrayBuffer: [...new Uint8Array(m)] }
              : m instanceof Blob ? { blob: m }
              : m
            );
          window.s1 = new Socket(url, { jitter: 0, minReconnectionDelay: 100 });
          window.s1.messages.forEach(record(window.got));
          window.s2 = new Socket(url, { binaryType: 'blob' });
          window.s2.messages.forEach(record(window.gotBlob));
          let open = 0;
          for (const s of [window.s1, window.s2]) s.on('open', () => ++open === 2 && resolve());
          window.s1.send({ hello: ['from', 'chromium'] });
          window.s1.send(new Uint8Array([1, 2, 3]));
          window.s1.send(new Uint8Array([9, 8, 7, 6]).buffer);
          window.s1.send(new DataView(new Uint8Array([5, 6, 7, 8]).buffer, 1, 2));
          window.s1.send(new Blob(['blob!']));
          window.s1.send('last');
        }),
      [GLOBAL, backend.url]
    );

    await until(() => backend.received.length >= 6, 'six messages at the Server');
    assert.deepEqual(backend.received, [
      { hello: ['from', 'chromium'] },
      Buffer.from([1, 2, 3]),
      Buffer.from([9, 8, 7, 6]),
      Buffer.from([6, 7]),
      Buffer.from('blob!'),
      'last'
    ]);

    backend.server.send({ to: 'everyone' });
    backend.server.send(Buffer.from([0, 255, 1]));
    await until(
      () => inPage(() => window.got.length >= 2 && window.gotBlob.length >= 2),
      'two messages on each page socket'
    );
    const got = await inPage(async () => ({
      got: window.got,
      blob: await Promise.all(
        window.gotBlob.map(async (m) => (m.blob ? { blob: [...new Uint8Array(await m.blob.arrayBuffer())] } : m))
      )
    }));
    assert.deepEqual(got, {
      got: [{ to: 'everyone' }, { arrayBuffer: [0, 255, 1] }],
      blob: [{ to: 'everyone' }, { blob: [0, 255, 1] }]
    });
    await inPage(() => [window.s1, window.s2].forEach((s) => s.close()));
  });

  test('messages queued while the Server is down arrive in order after it restarts on the same port', TIMEOUT, async (t) => {
    let backend = await startBackend(t);
    const { port } = backend;
    await inPage(
      ([name, url]) =>
        new Promise((resolve) => {
          window.s3 = new window[name](url, { jitter: 0, minReconnectionDelay: 100, maxReconnectionDelay: 200 });
          window.s3Events = [];
          window.s3Retries = 0;
          window.s3.on('close', (e) => window.s3Events.push(['close', e.willReconnect]));
          window.s3.on('reconnecting', (e) => (window.s3Retries = e.attempt));
          window.s3.on('open', () => {
            window.s3Events.push(['open']);
            resolve();
          });
        }),
      [GLOBAL, backend.url]
    );
    await until(() => backend.conns.length === 1, 'the page socket at the Server');

    await backend.server.close();
    await until(() => inPage(() => window.s3.readyState !== 1), 'the page socket to go offline');
    const sent = await inPage(() =>
      Array.from({ length: 50 }, (_, i) => window.s3.send({ offline: i }))
    );
    assert.ok(sent.every(Boolean), 'every offline send was accepted');
    assert.ok((await inPage(() => window.s3.bufferedAmount)) > 0, 'bufferedAmount counts the queue');
    // The queue outlives attempts that fail while the Server is down: a
    // second retry means the first one failed.
    await until(() => inPage(() => window.s3Retries >= 2), 'an attempt to fail while the Server is down');

    backend = await startBackend(t, port);
    await until(() => backend.received.length >= 50, '50 queued messages at the new Server');
    assert.deepEqual(backend.received, Array.from({ length: 50 }, (_, i) => ({ offline: i })));
    const events = await inPage(() => window.s3Events);
    assert.deepEqual(events.slice(0, 2), [['open'], ['close', true]]);
    assert.deepEqual(events.at(-1), ['open']);
    await inPage(() => window.s3.close());
  });

  test('a Server closing with 1012 (restart) is given at least minReconnectionDelay, whatever the jitter', TIMEOUT, async (t) => {
    const backend = await startBackend(t);
    await inPage(
      ([name, url]) =>
        new Promise((resolve) => {
          // jitter 1: without the floor, the wait is anywhere from 0 to 200 ms.
          window.s4 = new window[name](url, { jitter: 1, minReconnectionDelay: 200, reconnectionDelayGrowFactor: 1 });
          window.s4Events = [];
          window.s4.on('close', (e) => window.s4Events.push(['close', e.code]));
          window.s4.on('reconnecting', (e) => window.s4Events.push(['reconnecting', e]));
          window.s4.on('error', () => {});
          window.s4.once('open', resolve);
        }),
      [GLOBAL, backend.url]
    );
    await until(() => backend.conns.length === 1, 'the page socket at the Server');
    await backend.server.close({ code: 1012, reason: 'restart' });
    await until(() => inPage(() => window.s4Events.length >= 2), "'close' and 'reconnecting' in the page");
    const events = await inPage(() => window.s4Events);
    assert.deepEqual(events.slice(0, 2), [['close', 1012], ['reconnecting', { attempt: 1, delay: 200 }]]);
    await inPage(() => window.s4.close());
  });

  test("Chromium's own WebSocket and a compressing Server: compressed both ways, byte for byte", TIMEOUT, async (t) => {
    const server = await startServer(t, { json: false, perMessageDeflate: { threshold: 0 } });
    const { port } = server.address();
    server.messages.forEach((message, connection) => connection.send(message));
    const result = await inPage(
      (url) =>
        new Promise((resolve, reject) => {
          const text = '{"id":"node-4f1c","path":"nodes.4f1c.props.title","value":"A title"},'.repeat(1500);
          const binary = new TextEncoder().encode(text.slice(0, 40000).replace(/o/g, 'é'));
          const ws = new WebSocket(url);
          ws.binaryType = 'arraybuffer';
          const echoes = [];
          ws.onerror = () => reject(new Error('the WebSocket failed'));
          ws.onopen = () => {
            for (let round = 0; round < 3; round++) {
              ws.send(text);
              ws.send(binary);
            }
          };
          ws.onmessage = ({ data }) => {
            echoes.push(data);
            if (echoes.length < 6) return;
            const same = (a, b) => a.length === b.length && a.every((byte, i) => byte === b[i]);
            resolve({
              extensions: ws.extensions,
              texts: echoes.filter((e) => typeof e === 'string').every((e) => e === text),
              binaries: echoes.filter((e) => typeof e !== 'string').every((e) => same(new Uint8Array(e), binary)),
              kinds: echoes.map((e) => typeof e)
            });
            ws.close();
          };
        }),
      `ws://127.0.0.1:${port}/`
    );
    assert.match(result.extensions, /^permessage-deflate/);
    assert.deepEqual(result.kinds, ['string', 'object', 'string', 'object', 'string', 'object']);
    assert.equal(result.texts, true);
    assert.equal(result.binaries, true);
    assert.equal(server.stats().deflateCalls, 6);
  });
});
