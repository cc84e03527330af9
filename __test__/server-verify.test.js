'use strict';

// verifyClient and handleProtocols, on a standalone Server (the addon reads
// the upgrade and asks JS) and on one attached to an http.Server (JS reads
// it). SPEC section 5, issue 4 items 2 and 3.

const assert = require('node:assert/strict');
const http = require('node:http');
const net = require('node:net');
const { test } = require('node:test');
const { setFlagsFromString } = require('node:v8');
const { runInNewContext } = require('node:vm');

const WebSocket = require('ws');

const { Server } = require('..');
const { within, once, track, next } = require('./helpers');
const {
  delay,
  defer,
  serve,
  until,
  listenOn,
  upgradeHeaders,
  upgradeRequest
} = require('./server-kit');

const MODES = ['standalone', 'attached'];

/**
 * A Server in `mode` serving `/ws`, closed after the test: `{ server, port }`.
 */
async function start(t, mode, options) {
  if (mode === 'standalone') {
    const server = await serve(t, { path: '/ws', ...options });
    return { server, port: server.address().port };
  }
  const httpServer = await listenOn(
    t,
    http.createServer((req, res) => res.end('plain http'))
  );
  const server = new Server({ server: httpServer, path: '/ws', ...options });
  defer(t, () => within(server.close(), 7000, 'server.close()'));
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

test('[standalone] the context of an upgrade that never opens is let go', async (t) => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc');
  const collected = new Set();
  const registry = new FinalizationRegistry((url) => collected.add(url));
  let answered = 0;
  const { port } = await start(t, 'standalone', {
    handshakeTimeout: 300,
    // '/ws?late' is answered after its handshake timed out; '/ws?gone'
    // after its client reset the connection, so the 101 cannot be written.
    verifyClient: async ({ req }) => {
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
      await delay(20);
      socket.resetAndDestroy();
    }
  }
  await until(() => answered === 2, 'both verdicts', 3000);
  for (let i = 0; i < 50 && collected.size < 2; i++) {
    await delay(20);
    gc();
  }
  assert.deepEqual([...collected].sort(), ['/ws?gone', '/ws?late']);
});
