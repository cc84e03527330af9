'use strict';

// The `server` option: a Server attached to the user's http.Server or
// https.Server (an express app's included).

const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const { randomBytes } = require('node:crypto');
const http = require('node:http');
const https = require('node:https');
const { test } = require('node:test');

const express = require('express');
const WebSocket = require('ws');

const { Server } = require('..');
const helpers = require('./helpers');

const { within, once, track, attachServer, startServer, openClient, next, closed, collect } = helpers;
const { delay, defer, until, localPort } = helpers;
const {
  listenOn,
  upgradeRequest,
  httpGet,
  makeCertificate
} = require('./server-kit');

/** An http.Server answering every plain request with 200 'plain http'. */
function plainHttp() {
  return http.createServer((req, res) => res.end('plain http'));
}

test('server: an express app answers GET /health while clients use /ws on the same port, JSON both ways', async (t) => {
  const app = express();
  app.get('/health', (req, res) => res.json({ ok: true }));
  const httpServer = app.listen(0, '127.0.0.1');
  defer(t, () => {
    httpServer.closeAllConnections();
    return new Promise((resolve) => httpServer.close(() => resolve()));
  });
  const server = attachServer(t, httpServer, { path: '/ws' });
  const address = await server.ready;
  assert.equal(address.port, httpServer.address().port);

  const before = await httpGet(address.port, '/health');
  assert.equal(before.status, 200);
  assert.deepEqual(JSON.parse(before.body), { ok: true });

  const added = once(server, 'add');
  const client = await openClient(t, server, { path: '/ws' });
  const [connection] = await added;
  assert.equal(server.size, 1);

  // Client to server: a JSON value arrives decoded.
  const got = collect(server.messages, 1);
  client.send(JSON.stringify({ from: 'client', n: [1, 2] }));
  assert.deepEqual(await got, [[{ from: 'client', n: [1, 2] }, connection]]);

  // Server to client: JSON text.
  assert.equal(connection.send({ from: 'server', ok: true }), true);
  assert.deepEqual(await next(client), [
    { data: JSON.stringify({ from: 'server', ok: true }), binary: false }
  ]);

  // Plain HTTP still goes to express while the WebSocket is open.
  const during = await httpGet(address.port, '/health');
  assert.equal(during.status, 200);
  assert.deepEqual(JSON.parse(during.body), { ok: true });
  assert.equal((await httpGet(address.port, '/nothing-here')).status, 404);
  assert.equal(connection.offline, false);
});

test('server: two Servers on one http server with different paths each get only their clients', async (t) => {
  const httpServer = await listenOn(t, plainHttp());
  const a = attachServer(t, httpServer, { path: '/a' });
  const b = attachServer(t, httpServer, { path: '/b' });
  await Promise.all([a.ready, b.ready]);

  const addedA = [];
  const addedB = [];
  a.on('add', (connection) => addedA.push(connection));
  b.on('add', (connection) => addedB.push(connection));

  const clientsA = await Promise.all([1, 2].map(() => openClient(t, a, { path: '/a' })));
  const clientB = await openClient(t, b, { path: '/b?x=1' });
  await until(() => addedA.length >= 2 && addedB.length >= 1, "the 'add' events");
  const sizes = () => {
    assert.equal(a.size, 2);
    assert.equal(b.size, 1);
    assert.equal(addedA.length, 2);
    assert.equal(addedB.length, 1);
  };
  sizes();

  // Each server's broadcast reaches only its own clients.
  assert.equal(a.send('to a'), 2);
  assert.equal(b.send('to b'), 1);
  for (const client of clientsA) {
    assert.deepEqual(await next(client), [{ data: '"to a"', binary: false }]);
  }
  assert.deepEqual(await next(clientB), [{ data: '"to b"', binary: false }]);

  // And each gets only its clients' messages.
  const fromB = collect(b.messages, 1);
  const fromA = collect(a.messages, 1);
  clientB.send(JSON.stringify('from b'));
  clientsA[0].send(JSON.stringify('from a'));
  assert.deepEqual(await fromB, [['from b', addedB[0]]]);
  // The two clients of `a` opened together: find the first one's connection.
  const senderA = addedA.find((connection) => connection.remotePort === localPort(clientsA[0]));
  assert.deepEqual(await fromA, [['from a', senderA]]);
  // After these round trips, an 'add' on the wrong Server would be in.
  sizes();
});

test('server: an upgrade for a path no Server matches gets 400 when there is no other upgrade listener', async (t) => {
  const httpServer = await listenOn(t, plainHttp());
  const server = attachServer(t, httpServer, { path: '/ws' });
  const { port } = await server.ready;

  const answer = await upgradeRequest(port, '/elsewhere');
  assert.equal(answer.status, 400);
  assert.equal(server.size, 0);
  // The matching path is still upgraded.
  assert.equal((await upgradeRequest(port, '/ws?q=1')).status, 101);
});

test('server: an upgrade that is not a GET gets 400, attached as standalone', async (t) => {
  const httpServer = await listenOn(t, plainHttp());
  const attached = attachServer(t, httpServer, { path: '/ws' });
  const standalone = await startServer(t);
  const targets = [
    [attached, (await attached.ready).port, '/ws'],
    [standalone, standalone.address().port, '/']
  ];
  for (const [server, port, path] of targets) {
    const answer = await upgradeRequest(port, path, {}, 10000, { method: 'POST' });
    assert.equal(answer.status, 400);
    assert.match(answer.body, /GET/);
    assert.equal(server.size, 0);
    assert.equal((await upgradeRequest(port, path)).status, 101);
  }
});

test("server: an upgrade for a path no Server matches is left to the user's other 'upgrade' listener", async (t) => {
  for (const order of ['user listener first', 'user listener last']) {
    const httpServer = await listenOn(t, plainHttp());
    const seen = [];
    const userListener = (req, socket) => {
      seen.push(req.url);
      if (req.url.startsWith('/user')) {
        // The user's own answer, later: we must not have written anything.
        setTimeout(() => {
          socket.end('HTTP/1.1 418 I am a teapot\r\nConnection: close\r\nContent-Length: 6\r\n\r\nteapot');
        }, 50);
      }
    };
    if (order === 'user listener first') httpServer.on('upgrade', userListener);
    const server = attachServer(t, httpServer, { path: '/ws' });
    if (order === 'user listener last') httpServer.on('upgrade', userListener);
    const { port } = await server.ready;

    const answer = await upgradeRequest(port, '/user/thing');
    assert.equal(answer.status, 418, `${order}: the user's answer, not ours`);
    assert.equal(answer.body, 'teapot', order);
    assert.ok(seen.includes('/user/thing'), `${order}: the user's listener saw it`);
    assert.equal(server.size, 0, order);
  }
});

test('server: ready resolves once the http server listens, with its address, and at once if it already listens', async (t) => {
  // Not listening yet.
  const later = plainHttp();
  defer(t, () => {
    later.closeAllConnections();
    return new Promise((resolve) => later.close(() => resolve()));
  });
  const waiting = attachServer(t, later);
  let settled = false;
  waiting.ready.then(() => (settled = true));
  const listening = once(waiting, 'listening');
  // Nothing marks that ready has not settled: a short wait.
  await delay(50);
  assert.equal(settled, false, 'ready waits for the http server');
  assert.equal(waiting.address(), null);

  later.listen(0, '127.0.0.1');
  const address = await within(waiting.ready, 2000, 'ready');
  assert.deepEqual(address, later.address());
  assert.deepEqual(waiting.address(), later.address());
  await listening;

  // Already listening: ready resolves without waiting for anything.
  const already = await listenOn(t, plainHttp());
  const attached = attachServer(t, already);
  assert.deepEqual(await within(attached.ready, 100, 'ready at once'), already.address());
});

test("server: close() of our Server does not close the user's http server", async (t) => {
  const httpServer = await listenOn(t, plainHttp());
  const server = attachServer(t, httpServer, { path: '/ws' });
  const { port } = await server.ready;
  const client = await openClient(t, server, { path: '/ws' });

  await within(server.close(), 6000, 'server.close()');
  assert.equal((await closed(client)).code, 1001);
  assert.equal(httpServer.listening, true);
  const after = await httpGet(port, '/');
  assert.equal(after.status, 200);
  assert.equal(after.body, 'plain http');
  // No longer ours: /ws is not upgraded any more.
  assert.notEqual((await upgradeRequest(port, '/ws')).status, 101);
  assert.equal(server.size, 0);
});

test('server: attached, our Server holds no process handle: the process exits when the http server closes', () => {
  // In a child: nothing but the http server may keep it running. Our Server
  // is not closed; the child must still exit once the http server is.
  const script = `
    const http = require('node:http');
    const { Server } = require(${JSON.stringify(require.resolve('..'))});
    const httpServer = http.createServer((req, res) => res.end('x'));
    httpServer.listen(0, '127.0.0.1', async () => {
      const server = new Server({ server: httpServer, path: '/ws' });
      await server.ready;
      httpServer.close(() => console.log('http closed'));
    });
  `;
  const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 10000 });
  assert.equal(child.signal, null, 'the process exited by itself');
  assert.equal(child.stderr, '');
  assert.equal(child.stdout, 'http closed\n');
  assert.equal(child.status, 0);
});

test('server: passing an express app itself throws TypeError ERR_INVALID_OPTION mentioning app.listen()', () => {
  const app = express();
  assert.throws(() => new Server({ server: app }), (err) => {
    assert.ok(err instanceof TypeError);
    assert.equal(err.code, 'ERR_INVALID_OPTION');
    assert.match(err.message, /app\.listen\(\)/);
    return true;
  });
});

test('server: combined with port (or host, tls, reusePort) throws TypeError ERR_INVALID_OPTION', () => {
  const httpServer = plainHttp();
  const { cert, key } = makeCertificate();
  for (const [name, value] of [
    ['port', 0],
    ['host', '127.0.0.1'],
    ['tls', { cert, key }],
    ['reusePort', true]
  ]) {
    assert.throws(
      () => new Server({ server: httpServer, [name]: value }),
      (err) => {
        assert.ok(err instanceof TypeError, name);
        assert.equal(err.code, 'ERR_INVALID_OPTION', name);
        assert.ok(err.message.includes(`"${name}"`), `${name}: ${err.message}`);
        return true;
      }
    );
  }
  assert.equal(httpServer.listenerCount('upgrade'), 0, 'a refused Server attached nothing');
});

test('server: attached to an https.Server (TLS relay), the ws client exchanges messages both ways', async (t) => {
  const { cert, key } = makeCertificate();
  const httpsServer = await listenOn(
    t,
    https.createServer({ cert, key }, (req, res) => res.end('secure http'))
  );
  const server = attachServer(t, httpsServer, { path: '/ws' });
  const { port } = await server.ready;

  const added = once(server, 'add');
  const client = track(
    new WebSocket(`wss://127.0.0.1:${port}/ws`, { rejectUnauthorized: false })
  );
  defer(t, () => client.terminate());
  await once(client, 'open');
  const [connection] = await added;

  const up = randomBytes(256 * 1024);
  const got = collect(server.messages, 2);
  client.send(JSON.stringify({ over: 'tls' }));
  client.send(up);
  const received = await got;
  assert.deepEqual(received[0], [{ over: 'tls' }, connection]);
  assert.ok(Buffer.isBuffer(received[1][0]) && received[1][0].equals(up), 'binary up');

  const down = randomBytes(256 * 1024);
  connection.send({ back: 'over tls' });
  connection.send(down);
  const [text, binary] = await next(client, 2);
  assert.deepEqual(text, { data: '{"back":"over tls"}', binary: false });
  assert.equal(binary.binary, true);
  assert.ok(binary.data.equals(down), 'binary down');

  // Plain HTTPS requests still reach the user's handler.
  const body = await new Promise((resolve, reject) => {
    https
      .get({ host: '127.0.0.1', port, path: '/', rejectUnauthorized: false, agent: false }, (res) => {
        let text = '';
        res.on('data', (chunk) => (text += chunk));
        res.on('end', () => resolve(text));
      })
      .on('error', reject);
  });
  assert.equal(body, 'secure http');

  const removed = once(server, 'remove');
  client.close(4000, 'bye');
  const [, info] = await removed;
  assert.deepEqual(info, { code: 4000, reason: 'bye', wasClean: true });
});
