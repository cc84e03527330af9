'use strict';

// verifyClient and handleProtocols, on a standalone Server (the addon reads
// the upgrade and asks JS) and on one attached to an http.Server (JS reads
// it), as the README's verifyClient paragraph says. Then failing closed: every
// refusal the user means is one, a mistaken status or header answers 500,
// and an upgrade not decided within handshakeTimeout is dropped; these run
// attached to an https.Server too.

const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const http = require('node:http');
const https = require('node:https');
const net = require('node:net');
const path = require('node:path');
const { test } = require('node:test');
const tls = require('node:tls');
const { setFlagsFromString } = require('node:v8');
const { runInNewContext } = require('node:vm');

const WebSocket = require('ws');

const { within, once, track, next, startServer, attachServer, delay, defer, until } = require('./helpers');
const {
  listenOn,
  upgradeHeaders,
  upgradeRequest,
  makeCertificate
} = require('./server-kit');

const MODES = ['standalone', 'attached'];
// 'https': attached to an https.Server (JS reads the upgrade over TLS and
// relays the bytes to the addon).
const ALL_MODES = [...MODES, 'https'];

/**
 * A Server in `mode` serving `/ws`, closed after the test: `{ server, port }`.
 */
async function start(t, mode, options) {
  if (mode === 'standalone') {
    const server = await startServer(t, { path: '/ws', ...options });
    return { server, port: server.address().port };
  }
  const httpServer = await listenOn(
    t,
    mode === 'https'
      ? https.createServer(makeCertificate(), (req, res) => res.end('plain https'))
      : http.createServer((req, res) => res.end('plain http'))
  );
  const server = attachServer(t, httpServer, { path: '/ws', ...options });
  await server.ready;
  return { server, port: httpServer.address().port };
}

/** A ws client to `path` that must open; terminated after the test. */
async function open(t, port, path = '/ws', options = {}, protocols = undefined) {
  const client = track(new WebSocket(`ws://127.0.0.1:${port}${path}`, protocols, options));
  defer(t, () => client.terminate());
  const [error] = await Promise.race([once(client, 'open'), once(client, 'error')]);
  if (error instanceof Error) throw error;
  return client;
}

/** Open a ws client and get the server's connection for it. */
async function connect(t, server, port, path, options, protocols) {
  const added = once(server, 'add');
  const client = await open(t, port, path, options, protocols);
  const [connection] = await added;
  return { client, connection };
}

for (const mode of MODES) {
  // --- verifyClient ----------------------------------------------------------

  test(`[${mode}] verifyClient returning false (sync, async, ws callback) answers 401`, async (t) => {
    const forms = {
      sync: () => false,
      async: async () => false,
      callback: (info, cb) => setTimeout(() => cb(false), 5)
    };
    for (const [form, verifyClient] of Object.entries(forms)) {
      const { server, port } = await start(t, mode, { verifyClient });
      const answer = await upgradeRequest(port, '/ws');
      assert.equal(answer.status, 401, form);
      // Nothing marks the absence of an 'add': a short wait.
      await delay(20);
      assert.equal(server.size, 0, form);
    }
  });

  test(`[${mode}] verifyClient returning { status: 403, reason: 'nope' } answers 403 with body 'nope'`, async (t) => {
    const forms = {
      sync: () => ({ status: 403, reason: 'nope' }),
      async: async () => ({ status: 403, reason: 'nope' }),
      // ws's form: cb(false, code, message)
      callback: (info, cb) => cb(false, 403, 'nope')
    };
    for (const [form, verifyClient] of Object.entries(forms)) {
      const { server, port } = await start(t, mode, { verifyClient });
      const answer = await upgradeRequest(port, '/ws');
      assert.equal(answer.status, 403, form);
      assert.equal(answer.body, 'nope', form);
      assert.equal(server.size, 0, form);
    }

    // Extra headers go out with the refusal; a client's ws sees the status.
    const { port } = await start(t, mode, {
      verifyClient: () => ({ status: 429, reason: 'slow down', headers: { 'Retry-After': '7' } })
    });
    const answer = await upgradeRequest(port, '/ws');
    assert.equal(answer.status, 429);
    assert.equal(answer.body, 'slow down');
    assert.equal(answer.headers['retry-after'], '7');

    const client = new WebSocket(`ws://127.0.0.1:${port}/ws`);
    defer(t, () => client.terminate());
    client.on('error', () => {});
    const [, response] = await once(client, 'unexpected-response');
    assert.equal(response.statusCode, 429);
  });

  test(`[${mode}] verifyClient throwing or rejecting answers 500 and emits 'error'`, async (t) => {
    const thrown = new Error('verifyClient broke');
    const forms = {
      sync: () => {
        throw thrown;
      },
      async: async () => {
        throw thrown;
      },
      rejection: () => Promise.reject(thrown),
      callback: () => {
        throw thrown;
      }
    };
    for (const [form, fn] of Object.entries(forms)) {
      // The callback form is recognised by its two parameters.
      const verifyClient = form === 'callback' ? (info, cb) => fn(info, cb) : fn;
      const { server, port } = await start(t, mode, { verifyClient });
      const errorEvent = once(server, 'error');
      const answer = await upgradeRequest(port, '/ws');
      assert.equal(answer.status, 500, form);
      const [err] = await errorEvent;
      assert.equal(err, thrown, `${form}: 'error' carries what was thrown`);
      assert.equal(server.size, 0, form);
    }
  });

  test(`[${mode}] verifyClient returning any other truthy value accepts and it becomes connection.context`, async (t) => {
    const contexts = {
      sync: { user: 'alice' },
      async: { user: 'bob', roles: ['admin'] },
      callback: { user: 'carol' },
      string: 'just a string',
      number: 42
    };
    for (const [form, context] of Object.entries(contexts)) {
      const verifyClient =
        form === 'async'
          ? async () => context
          : form === 'callback'
            ? (info, cb) => setTimeout(() => cb(context), 5)
            : () => context;
      const { server, port } = await start(t, mode, { verifyClient });
      const { client, connection } = await connect(t, server, port, '/ws');
      assert.equal(connection.context, context, `${form}: the very value`);
      // And the connection works.
      connection.send('hello');
      assert.deepEqual(await next(client), [{ data: '"hello"', binary: false }], form);
    }
  });

  test(`[${mode}] without verifyClient connection.context is undefined`, async (t) => {
    // Nothing accepted the client with a value (lib/connection.js: "What
    // verifyClient accepted the client with"); both modes must agree.
    const { server, port } = await start(t, mode, {});
    const { connection } = await connect(t, server, port, '/ws');
    assert.equal(connection.context, undefined);

    // handleProtocols alone gives no context either.
    const withProtocols = await start(t, mode, { handleProtocols: (protocols) => protocols[0] });
    const second = await connect(t, withProtocols.server, withProtocols.port, '/ws');
    assert.equal(second.connection.context, undefined);
  });

  test(`[${mode}] verifyClient with a token in the Authorization header`, async (t) => {
    const users = { 'Bearer s3cret': { user: 'alice' } };
    const { server, port } = await start(t, mode, {
      verifyClient: async ({ headers }) => {
        await delay(5);
        return users[headers.authorization] ?? false;
      }
    });

    const { connection } = await connect(t, server, port, '/ws', {
      headers: { Authorization: 'Bearer s3cret' }
    });
    assert.deepEqual(connection.context, { user: 'alice' });

    assert.equal(
      (await upgradeRequest(port, '/ws', { Authorization: 'Bearer wrong' })).status,
      401
    );
    assert.equal((await upgradeRequest(port, '/ws')).status, 401);
    assert.equal(server.size, 1);
  });

  test(`[${mode}] verifyClient with a token in the query string (info.url has path and query)`, async (t) => {
    const urls = [];
    const { server, port } = await start(t, mode, {
      verifyClient: (info) => {
        urls.push(info.url);
        const token = new URL(info.url, 'http://localhost').searchParams.get('token');
        return token === 'abc' ? { token } : false;
      }
    });

    const { connection } = await connect(t, server, port, '/ws?token=abc&x=1');
    assert.deepEqual(connection.context, { token: 'abc' });
    assert.equal((await upgradeRequest(port, '/ws?token=nope')).status, 401);
    assert.deepEqual(urls, ['/ws?token=abc&x=1', '/ws?token=nope']);
  });

  test(`[${mode}] verifyClient gets info with origin, lower-case headers, remoteAddress, url and req`, async (t) => {
    const infos = [];
    const { server, port } = await start(t, mode, {
      verifyClient: (info) => {
        infos.push(info);
        return true;
      }
    });

    await connect(t, server, port, '/ws?a=b', {
      origin: 'https://example.test',
      headers: { 'X-Custom-Header': 'Value' }
    });
    assert.equal(infos.length, 1);
    const [info] = infos;
    assert.equal(info.origin, 'https://example.test');
    assert.equal(info.headers['x-custom-header'], 'Value');
    assert.equal(info.headers['X-Custom-Header'], undefined, 'names are lower-case');
    assert.equal(info.headers.host, `127.0.0.1:${port}`);
    assert.equal(info.headers.upgrade.toLowerCase(), 'websocket');
    assert.ok(
      info.remoteAddress === '127.0.0.1' || info.remoteAddress === '::ffff:127.0.0.1',
      `remoteAddress ${info.remoteAddress}`
    );
    assert.equal(info.url, '/ws?a=b');
    assert.equal(typeof info.req, 'object');
    assert.equal(info.req.url, '/ws?a=b');
    assert.equal(info.req.method, 'GET');
    assert.equal(info.req.headers['x-custom-header'], 'Value');
    assert.equal(info.req.socket.remoteAddress, info.remoteAddress);
    if (mode === 'attached') assert.ok(info.req instanceof http.IncomingMessage);
  });

  // --- handleProtocols ---------------------------------------------------------

  test(`[${mode}] handleProtocols: its choice is connection.protocol and the client's protocol`, async (t) => {
    const calls = [];
    const { server, port } = await start(t, mode, {
      handleProtocols: (protocols, info) => {
        calls.push([protocols, info.url]);
        return 'b';
      }
    });
    const { client, connection } = await connect(t, server, port, '/ws?p=1', {}, ['a', 'b']);
    assert.equal(connection.protocol, 'b');
    assert.equal(client.protocol, 'b');
    assert.deepEqual(calls, [[['a', 'b'], '/ws?p=1']]);

    // Async handlers too, alongside verifyClient's context.
    const both = await start(t, mode, {
      verifyClient: () => ({ id: 7 }),
      handleProtocols: async (protocols) => protocols[protocols.length - 1]
    });
    const second = await connect(t, both.server, both.port, '/ws', {}, ['x', 'y', 'z']);
    assert.equal(second.connection.protocol, 'z');
    assert.equal(second.client.protocol, 'z');
    assert.deepEqual(second.connection.context, { id: 7 });
  });

  test(`[${mode}] handleProtocols returning false chooses no protocol`, async (t) => {
    const offered = [];
    const { server, port } = await start(t, mode, {
      handleProtocols: (protocols) => {
        offered.push(protocols);
        return false;
      }
    });
    // Clients that offered protocols (ws, WHATWG) fail an answer without
    // one, so the upgrade is made by hand: the 101 must carry no
    // Sec-WebSocket-Protocol, and the connection has protocol ''.
    const added = once(server, 'add');
    const answer = await upgradeRequest(port, '/ws', { 'Sec-WebSocket-Protocol': 'a, b' });
    assert.equal(answer.status, 101);
    assert.equal(answer.headers['sec-websocket-protocol'], undefined);
    const [connection] = await added;
    assert.equal(connection.protocol, '');
    assert.deepEqual(offered, [['a', 'b']]);

    // The ws client sees that no protocol was chosen (and refuses it).
    const client = new WebSocket(`ws://127.0.0.1:${port}/ws`, ['a', 'b']);
    defer(t, () => client.terminate());
    const [err] = await once(client, 'error');
    assert.match(err.message, /no subprotocol/);
  });

  // What a handler returns that the client did not offer is no choice.
  test(`[${mode}] handleProtocols returning a protocol that was not offered chooses none`, async (t) => {
    const { server, port } = await start(t, mode, { handleProtocols: () => 'c' });
    const added = once(server, 'add');
    const answer = await upgradeRequest(port, '/ws', { 'Sec-WebSocket-Protocol': 'a, b' });
    assert.equal(answer.status, 101);
    assert.equal(answer.headers['sec-websocket-protocol'], undefined);
    assert.equal((await added)[0].protocol, '');
  });

  test(`[${mode}] without handleProtocols the first offered protocol is chosen`, async (t) => {
    const { server, port } = await start(t, mode, {});
    const { client, connection } = await connect(t, server, port, '/ws', {}, ['a', 'b']);
    assert.equal(connection.protocol, 'a');
    assert.equal(client.protocol, 'a');

    // With none offered, none is chosen.
    const plain = await connect(t, server, port, '/ws');
    assert.equal(plain.connection.protocol, '');
    assert.equal(plain.client.protocol, '');
  });

  test(`[${mode}] handleProtocols throwing answers 500 and emits 'error'`, async (t) => {
    const thrown = new Error('handleProtocols broke');
    const { server, port } = await start(t, mode, {
      handleProtocols: () => {
        throw thrown;
      }
    });
    const errorEvent = once(server, 'error');
    const answer = await upgradeRequest(port, '/ws', { 'Sec-WebSocket-Protocol': 'a' });
    assert.equal(answer.status, 500);
    assert.equal((await errorEvent)[0], thrown);
    assert.equal(server.size, 0);
  });
}

// --- failing closed ----------------------------------------------------------

/**
 * An upgrade request over http or, in 'https' mode, over TLS; answers as
 * upgradeRequest does: `{ status, headers, body }`.
 */
function ask(mode, port, requestPath = '/ws', extraHeaders = {}) {
  return upgradeRequest(port, requestPath, extraHeaders, 3000, { tls: mode === 'https' });
}

/**
 * Send an upgrade request on a raw TCP (or TLS) socket. `ended` resolves,
 * once the server closes the socket, with every byte it sent (as latin1
 * text) and how many ms after the request that was.
 */
async function rawUpgrade(t, mode, port, extraHeaders = {}) {
  const socket =
    mode === 'https'
      ? tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false })
      : net.connect({ host: '127.0.0.1', port });
  defer(t, () => socket.destroy());
  socket.on('error', () => {});
  await once(socket, mode === 'https' ? 'secureConnect' : 'connect');
  const chunks = [];
  socket.on('data', (chunk) => chunks.push(chunk));
  const closed = new Promise((resolve) => socket.on('close', resolve));
  const headers = Object.entries(upgradeHeaders(port, extraHeaders));
  socket.write(`GET /ws HTTP/1.1\r\n${headers.map(([n, v]) => `${n}: ${v}\r\n`).join('')}\r\n`);
  const sentAt = Date.now();
  const ended = within(closed, 10000, 'the server to close the raw socket').then(() => ({
    text: Buffer.concat(chunks).toString('latin1'),
    after: Date.now() - sentAt
  }));
  return { socket, ended };
}

/** Count the server's 'add' events and 'error' events from now on. */
function watch(server) {
  const seen = { added: 0, errors: [] };
  server.on('add', () => seen.added++);
  server.on('error', (err) => seen.errors.push(err));
  return seen;
}

for (const mode of ALL_MODES) {
  const wsUrl = (port) => `${mode === 'https' ? 'wss' : 'ws'}://127.0.0.1:${port}/ws`;

  test(`[${mode}] verifyClient cb(false, 302, 'Found', { Location }) redirects and never opens`, async (t) => {
    const { server, port } = await start(t, mode, {
      verifyClient: (info, cb) => cb(false, 302, 'Found', { Location: '/login' })
    });
    const seen = watch(server);

    const answer = await ask(mode, port);
    assert.equal(answer.status, 302);
    assert.equal(answer.headers.location, '/login');
    assert.equal(answer.body, 'Found');

    // A ws client sees the redirect and does not open.
    const client = new WebSocket(wsUrl(port), { rejectUnauthorized: false });
    defer(t, () => client.terminate());
    let opened = false;
    client.on('open', () => (opened = true));
    client.on('error', () => {});
    const [, response] = await once(client, 'unexpected-response');
    assert.equal(response.statusCode, 302);
    assert.equal(response.headers.location, '/login');

    // Returned, a 3xx is a redirect too.
    const returned = await start(t, mode, {
      verifyClient: async () => ({ status: 307, headers: { Location: '/elsewhere' } })
    });
    const seenReturned = watch(returned.server);
    const redirect = await ask(mode, returned.port);
    assert.equal(redirect.status, 307);
    assert.equal(redirect.headers.location, '/elsewhere');

    // Nothing marks the absence of an 'add' or an 'open': a short wait.
    await delay(50);
    assert.equal(opened, false, 'the ws client never opened');
    for (const watched of [seen, seenReturned]) {
      assert.equal(watched.added, 0, "no 'add'");
      assert.deepEqual(watched.errors, []);
    }
    assert.equal(server.size + returned.server.size, 0);
  });

  test(`[${mode}] verifyClient cb(false, code) always refuses: with code when it is an integer 300-599, else 401`, async (t) => {
    const calls = {
      'cb(false, 0)': (cb) => cb(false, 0),
      "cb(false, '403')": (cb) => cb(false, '403'),
      'cb(false, 200)': (cb) => cb(false, 200),
      'cb(false, 101)': (cb) => cb(false, 101),
      'cb(false, 600)': (cb) => cb(false, 600),
      'cb(false, 403.5)': (cb) => cb(false, 403.5),
      'cb(false, null)': (cb) => cb(false, null),
      'cb(false)': (cb) => cb(false),
      'cb(0, 200) (async)': (cb) => setTimeout(() => cb(0, 200), 5)
    };
    for (const [call, answer] of Object.entries(calls)) {
      const { server, port } = await start(t, mode, { verifyClient: (info, cb) => answer(cb) });
      const seen = watch(server);
      const { status } = await ask(mode, port);
      assert.equal(status, 401, call);
      // Nothing marks the absence of an 'add': a short wait.
      await delay(10);
      assert.equal(seen.added, 0, `${call}: no 'add'`);
      assert.equal(server.size, 0, call);
      assert.deepEqual(seen.errors, [], `${call}: a refusal is no error`);
    }

    const { server, port } = await start(t, mode, { verifyClient: (info, cb) => cb(false, 403) });
    const seen = watch(server);
    const refused = await ask(mode, port);
    assert.equal(refused.status, 403);
    assert.equal(refused.body, 'Forbidden', "without a message the body is the status's text");
    assert.equal(seen.added, 0);
  });

  test(`[${mode}] verifyClient returning an own status that is no refusal answers 500 and emits 'error'`, async (t) => {
    const verdicts = {
      '{ status: 200 }': () => ({ status: 200, user: 'alice' }),
      "{ status: '403' }": async () => ({ status: '403' }),
      '{ status: 101 }': () => ({ status: 101 }),
      '{ status: 600 }': () => ({ status: 600 }),
      '{ status: undefined }': async () => ({ status: undefined, user: 'alice' }),
      '{ status: null }': () => ({ status: null })
    };
    for (const [verdict, verifyClient] of Object.entries(verdicts)) {
      const { server, port } = await start(t, mode, { verifyClient });
      const seen = watch(server);
      const answer = await ask(mode, port);
      assert.equal(answer.status, 500, verdict);
      await until(() => seen.errors.length > 0, `${verdict}: 'error'`, 2000);
      const [err] = seen.errors;
      assert.ok(err instanceof RangeError, verdict);
      assert.equal(err.code, 'ERR_INVALID_ARG_VALUE', verdict);
      assert.match(err.message, /status/, verdict);
      assert.equal(seen.errors.length, 1, verdict);
      assert.equal(seen.added, 0, `${verdict}: no 'add'`);
      assert.equal(server.size, 0, verdict);
    }

    // An integer status from 300 to 599 is a refusal: `reason` is the body.
    const { server, port } = await start(t, mode, {
      verifyClient: () => ({ status: 451, reason: 'x' })
    });
    const seen = watch(server);
    const answer = await ask(mode, port);
    assert.equal(answer.status, 451);
    assert.equal(answer.body, 'x');
    assert.deepEqual(seen.errors, []);
    assert.equal(seen.added, 0);
  });

  test(`[${mode}] refusal headers with a bad name or a CR/LF/NUL value answer 500, are never written, and emit 'error'`, async (t) => {
    // Each header carries a marker that must appear nowhere in the answer.
    const bad = {
      'a leading space': { ' X-Leading-Space': 'marker' },
      'a space inside': { 'Bad Name': 'marker' },
      'a colon': { 'X:y': 'marker' },
      'no name': { '': 'marker' },
      'a non-ASCII name': { 'X-Ünicode': 'marker' },
      'CR LF in the value': { 'X-Fine': 'marker\r\nX-Injected: evil' },
      'LF in the value': { 'X-Fine': 'marker\nX-Injected: evil' },
      'CR in the value': { 'X-Fine': 'marker\rX-Injected: evil' },
      'NUL in the value': { 'X-Fine': 'marker\0evil' }
    };
    for (const [what, headers] of Object.entries(bad)) {
      // Next to a good header, which is not written either.
      const all = { 'Retry-After': 'marker', ...headers };
      const forms = {
        returned: () => ({ status: 429, reason: 'slow down', headers: all }),
        callback: (info, cb) => cb(false, 429, 'slow down', all)
      };
      for (const [form, verifyClient] of Object.entries(forms)) {
        const label = `${what} (${form})`;
        const { server, port } = await start(t, mode, { verifyClient });
        const seen = watch(server);
        const { ended } = await rawUpgrade(t, mode, port);
        const { text } = await ended;
        assert.match(text, /^HTTP\/1\.1 500 /, label);
        assert.ok(!text.includes('marker'), `${label}: no header written, got ${JSON.stringify(text)}`);
        assert.ok(!text.includes('evil'), label);
        assert.ok(!text.includes('X-Injected'), label);
        assert.ok(!text.includes('slow down'), label);
        for (const name of Object.keys(all)) {
          if (name !== '') assert.ok(!text.includes(name.trim()), `${label}: ${name}`);
        }
        assert.ok(!/\r\n:/.test(text), `${label}: no nameless header`);
        await until(() => seen.errors.length > 0, `${label}: 'error'`, 2000);
        assert.equal(seen.errors[0].code, 'ERR_INVALID_ARG_VALUE', label);
        assert.match(seen.errors[0].message, /header/, label);
        assert.equal(seen.added, 0, label);
      }
    }

    // Good headers are written, through the http client too.
    const { port } = await start(t, mode, {
      verifyClient: () => ({ status: 429, headers: { 'Retry-After': 7, "X-Odd!#$%&'*+-.^_`|~1": 'a b\tc' } })
    });
    const answer = await ask(mode, port);
    assert.equal(answer.status, 429);
    assert.equal(answer.headers['retry-after'], '7');
    assert.equal(answer.headers["x-odd!#$%&'*+-.^_`|~1"], 'a b\tc');
  });

  const hanging = {
    'a verifyClient promise': (late) => ({
      verifyClient: () => new Promise((resolve) => late.push(() => resolve({ user: 'late' })))
    }),
    'a verifyClient callback': (late) => ({
      verifyClient: (info, cb) => late.push(() => cb(true))
    }),
    'a handleProtocols promise': (late) => ({
      handleProtocols: (protocols) => new Promise((resolve) => late.push(() => resolve(protocols[0])))
    })
  };
  for (const [what, optionsOf] of Object.entries(hanging)) {
    test(`[${mode}] handshakeTimeout: ${what} that never answers: the socket is closed, a later verdict opens nothing`, async (t) => {
      const late = [];
      const { server, port } = await start(t, mode, { handshakeTimeout: 500, ...optionsOf(late) });
      const seen = watch(server);
      const { ended } = await rawUpgrade(t, mode, port, { 'Sec-WebSocket-Protocol': 'chat' });
      const { text, after } = await ended;
      assert.equal(late.length, 1, 'the user code was asked');
      assert.ok(after >= 400, `closed after ${after} ms, not before the timeout`);
      assert.ok(after <= 2500, `closed after ${after} ms`);
      assert.ok(!text.includes('101'), `no 101: ${JSON.stringify(text)}`);

      // The verdict comes at last: nothing opens.
      late[0]();
      // Nothing marks the absence of an 'add': a short wait.
      await delay(200);
      assert.equal(seen.added, 0, "no 'add'");
      assert.equal(server.size, 0);
      assert.deepEqual(seen.errors, []);

      // The server still serves clients that are decided in time.
      late.length = 0;
      const pending = ask(mode, port, '/ws', { 'Sec-WebSocket-Protocol': 'chat' });
      await until(() => late.length === 1, 'the next upgrade to be asked about', 2000);
      late[0]();
      assert.equal((await pending).status, 101);
    });
  }
}

test('[attached] a client that resets its socket while verifyClient decides does not crash the process', async (t) => {
  let answered = 0;
  let asked = 0;
  const forms = {
    accept: async () => {
      asked++;
      await delay(200);
      answered++;
      return { user: 'gone' };
    },
    refuse: async () => {
      asked++;
      await delay(200);
      answered++;
      return { status: 403, reason: 'x'.repeat(100000) };
    }
  };
  for (const [form, verifyClient] of Object.entries(forms)) {
    const { server, port } = await start(t, 'attached', { verifyClient });
    const seen = watch(server);
    const { socket } = await rawUpgrade(t, 'attached', port);
    await until(() => asked > 0, `${form}: verifyClient to be asked`);
    socket.resetAndDestroy();
    await until(() => answered > 0, `${form}: the verdict`);
    answered = 0;
    asked = 0;
    // An unhandled 'error' on the upgrade's socket would have ended the
    // test process by now.
    await delay(100);
    assert.equal(seen.added, 0, `${form}: no 'add' for a client that left`);
    assert.equal(server.size, 0, form);
  }
});

test('[attached] an upgrade decided in time leaves no timer that holds the process', async () => {
  // A child with an attached Server and a long handshakeTimeout: one client
  // is accepted, then everything is closed. Any timer the upgrade left
  // would keep the child alive for a minute.
  const script = `
    const http = require('node:http');
    const WebSocket = require(process.env.WS);
    const { Server } = require(process.env.PKG);
    const httpServer = http.createServer();
    const server = new Server({
      server: httpServer,
      handshakeTimeout: 60000,
      verifyClient: async () => ({ user: 'alice' }),
      handleProtocols: async (protocols) => protocols[0]
    });
    httpServer.listen(0, '127.0.0.1', () => {
      const client = new WebSocket('ws://127.0.0.1:' + httpServer.address().port, ['chat']);
      client.on('open', async () => {
        client.terminate();
        await server.close();
        httpServer.close();
        console.log('CLOSED');
      });
    });
  `;
  const child = spawn(process.execPath, ['-e', script], {
    env: { ...process.env, PKG: path.resolve(__dirname, '..'), WS: require.resolve('ws') },
    stdio: ['ignore', 'pipe', 'pipe']
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    const code = await within(exited, 8000, 'the child to exit');
    assert.equal(code, 0, stderr);
    assert.match(stdout, /CLOSED/);
  } finally {
    child.kill('SIGKILL');
  }
});

test('[standalone] the context of an upgrade that never opens is let go', async (t) => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc');
  const collected = new Set();
  const registry = new FinalizationRegistry((url) => collected.add(url));
  let answered = 0;
  const asked = new Set();
  const { port } = await start(t, 'standalone', {
    handshakeTimeout: 300,
    // '/ws?late' is answered after its handshake timed out; '/ws?gone'
    // after its client reset the connection, so the 101 cannot be written.
    verifyClient: async ({ req }) => {
      asked.add(req.url);
      await delay(req.url.endsWith('late') ? 600 : 100);
      answered++;
      const context = { url: req.url };
      registry.register(context, req.url);
      return context;
    }
  });
  for (const which of ['late', 'gone']) {
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => {});
    await once(socket, 'connect');
    const headers = Object.entries(upgradeHeaders(port)).map(([name, value]) => `${name}: ${value}\r\n`);
    socket.write(`GET /ws?${which} HTTP/1.1\r\n${headers.join('')}\r\n`);
    if (which === 'gone') {
      await until(() => asked.has('/ws?gone'), 'verifyClient to be asked');
      socket.resetAndDestroy();
    }
  }
  await until(() => answered === 2, 'both verdicts');
  for (let i = 0; i < 50 && collected.size < 2; i++) {
    await delay(20);
    gc();
  }
  assert.deepEqual([...collected].sort(), ['/ws?gone', '/ws?late']);
});
