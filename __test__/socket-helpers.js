'use strict';

// Helpers for the Socket tests of both builds: Sockets closed when their
// test ends, records of what a Socket emits, and servers on 127.0.0.1 (a
// `ws` server, our own Server, one in a child process, one that never
// answers). The generic waits and `defer` are in ./helpers.js.

const assert = require('node:assert/strict');
const { fork } = require('node:child_process');
const { once } = require('node:events');
const net = require('node:net');
const path = require('node:path');

const WebSocket = require('ws');

const { WebSocketServer } = WebSocket;

const { Socket } = require('..');
const { defer, startServer, until, within } = require('./helpers');

/**
 * The next `event` from `emitter` whose first argument passes `filter`,
 * rejecting after `ms`.
 */
function next(emitter, event, filter = () => true, ms = 10000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, listener);
      reject(new Error(`Timed out after ${ms} ms waiting for '${event}'`));
    }, ms);
    function listener(value) {
      if (!filter(value)) return;
      clearTimeout(timer);
      emitter.off(event, listener);
      resolve(value);
    }
    emitter.on(event, listener);
  });
}

/** Everything `stream` delivers: `messages()` and `count(n)` to wait. */
function record(stream) {
  const list = [];
  const subscription = stream.forEach((message, sender) => list.push([message, sender]));
  return {
    list,
    subscription,
    messages: () => list.map(([message]) => message),
    count: (n, what = `${n} messages`) => until(() => list.length >= n, what)
  };
}

/**
 * Record a Socket's life-cycle events from now on: `list` holds
 * `{ name, value, error, at, readyState }` (for an 'error', `value` is its
 * code and `error` the Error). `names()` is the sequence of names;
 * `of(name)`, `values(name)` and `count(name)` give one event's entries,
 * their values and their number.
 */
function lifecycle(socket) {
  const list = [];
  for (const name of ['open', 'close', 'error', 'reconnecting']) {
    socket.on(name, (value) =>
      list.push({
        name,
        value: name === 'error' ? value.code : value,
        error: name === 'error' ? value : undefined,
        at: performance.now(),
        readyState: socket.readyState
      })
    );
  }
  const of = (name) => list.filter((e) => e.name === name);
  return {
    list,
    names: () => list.map((e) => e.name),
    of,
    values: (name) => of(name).map((e) => e.value),
    count: (name) => of(name).length
  };
}

/**
 * `socket(t, url, options)` and `openSocket(t, url, options)` (which also
 * waits for 'open') for Sockets of `Class`, with `options` over `defaults`;
 * each is closed, and waited for, when the test ends.
 */
function socketsOf(Class, defaults = {}) {
  function socket(t, url, options) {
    const s = new Class(url, { ...defaults, ...options });
    defer(t, () => closeForGood(s));
    return s;
  }
  async function openSocket(t, url, options) {
    const s = socket(t, url, options);
    await next(s, 'open');
    return s;
  }
  return { socket, openSocket };
}

/** Close `s` and wait for its final 'close'. */
async function closeForGood(s) {
  s.on('error', () => {}); // ERR_CLOSED if messages were still queued
  if (s.readyState === s.constructor.CLOSED) {
    // Stopped already (startClosed or gave up): close() only marks it.
    s.close();
    return;
  }
  const closed = next(s, 'close', (e) => !e.willReconnect, 3000).catch(() => {});
  s.close();
  await closed;
}

/**
 * The two builds of the Socket, for the tests both must pass: the Node
 * build (native transport) and the browser build (lib/websocket-transport.js,
 * over the `ws` package as its WebSocket). `defaults` are the options each
 * needs; `Binary` is what binary messages arrive as.
 */
const BUILDS = [
  { build: 'the Node build (native transport)', Socket, defaults: {}, Binary: Buffer },
  {
    build: 'the browser build (over ws)',
    Socket: require('../browser'),
    defaults: { WebSocket },
    Binary: ArrayBuffer
  }
];

/** `socket` and `openSocket` for the Node build's Socket. */
const { socket, openSocket } = socketsOf(Socket);

/**
 * Our own Server on 127.0.0.1 (`startServer` of ./helpers.js): `conns` in
 * order of `'add'`, `received` the `[message, connection]` pairs of
 * `server.messages`, `removed` the `[connection, info]` pairs of
 * `'remove'`; `connection(i)` waits for the i-th connection.
 */
async function ourServer(t, options = {}) {
  const server = await startServer(t, options);
  const { port } = server.address();
  const conns = [];
  const removed = [];
  server.on('add', (c) => conns.push(c));
  server.on('remove', (c, info) => removed.push([c, info]));
  const received = record(server.messages);
  return {
    server,
    conns,
    removed,
    received,
    url: `ws://127.0.0.1:${port}`,
    connection: (i = 0) => until(() => conns[i], `server connection #${i}`)
  };
}

/**
 * A `ws` server on 127.0.0.1 that records what each connection receives:
 * `conns[i].received` holds `{ data: Buffer, isBinary }`, `conns[i].req`
 * the upgrade request, `conns[i].closed` a Promise of `{ code, reason }`,
 * `conns[i].pings` how many pings arrived, `conns[i].openedAt` when.
 * `onConnection(ws, req)` runs for each new connection.
 */
async function wsServer(t, options = {}, onConnection = () => {}) {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', ...options });
  await once(wss, 'listening');
  const conns = [];
  wss.on('connection', (ws, req) => {
    ws.req = req;
    ws.received = [];
    ws.pings = 0;
    ws.openedAt = performance.now();
    ws.closed = new Promise((resolve) =>
      ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }))
    );
    ws.on('message', (data, isBinary) => ws.received.push({ data, isBinary }));
    ws.on('ping', () => ws.pings++);
    conns.push(ws);
    onConnection(ws, req);
  });
  defer(t, async () => {
    for (const ws of wss.clients) ws.terminate();
    await new Promise((resolve) => wss.close(resolve));
  });
  return {
    wss,
    conns,
    port: wss.address().port,
    url: `ws://127.0.0.1:${wss.address().port}`,
    connection: (i = 0, ms = 10000) => until(() => conns[i], `ws connection #${i}`, ms),
    /** The text messages `ws` received, in order; a binary one fails. */
    texts: (ws) =>
      ws.received.map(({ data, isBinary }) => {
        assert.equal(isBinary, false, 'expected a text frame');
        return data.toString();
      })
  };
}

/** Listen on 127.0.0.1 with a port the OS picks. */
function listenLocally(srv) {
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
}

/** A port on 127.0.0.1 nobody listens on. */
async function closedPort() {
  const srv = net.createServer();
  await listenLocally(srv);
  const { port } = srv.address();
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

/**
 * A TCP server that accepts connections and never answers: an upgrade
 * request sent to it waits forever. `sockets` lists the accepted
 * net.Sockets (`closed` once the client dropped one).
 */
async function silentServer(t) {
  const sockets = [];
  const srv = net.createServer((sock) => {
    sock.on('error', () => {});
    sock.resume(); // read, so that the client's FIN is seen
    sockets.push(sock);
  });
  await listenLocally(srv);
  defer(t, async () => {
    for (const sock of sockets) sock.destroy();
    await new Promise((resolve) => srv.close(resolve));
  });
  return { sockets, url: `ws://127.0.0.1:${srv.address().port}` };
}

/**
 * A `ws` server in a child process (fixtures/ws-child.js) on `port` (0: the
 * OS picks one). Resolves once it listens, with `{ child, port, url,
 * listeningAt, messages, pings, events, waitFor(type, filter, ms), exited }`:
 * `messages` the texts received in order, `pings` a count, `events` every
 * report. The child is killed after the test if it still runs.
 */
async function childServer(t, port = 0) {
  const child = fork(path.join(__dirname, 'fixtures', 'ws-child.js'), [String(port)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc']
  });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  let alive = true;
  exited.then(() => (alive = false));
  defer(t, async () => {
    if (!alive) return;
    child.kill('SIGCONT');
    child.kill('SIGKILL');
    await exited;
  });

  const server = {
    child,
    port: 0,
    url: '',
    messages: [],
    pings: 0,
    events: [],
    exited,
    waitFor(type, filter = () => true, ms = 10000) {
      const found = server.events.find((e) => e.type === type && filter(e));
      if (found) return Promise.resolve(found);
      return within(
        new Promise((resolve) => {
          const onMessage = (e) => {
            if (e.type !== type || !filter(e)) return;
            child.off('message', onMessage);
            resolve(e);
          };
          child.on('message', onMessage);
        }),
        ms,
        `'${type}' from the child server`
      );
    }
  };
  child.on('message', (e) => {
    e.at = performance.now();
    server.events.push(e);
    if (e.type === 'message') server.messages.push(e.data);
    if (e.type === 'ping') server.pings++;
  });
  const first = await within(
    new Promise((resolve, reject) => {
      child.on('message', (e) => {
        if (e.type === 'listening' || e.type === 'listen-error') resolve(e);
      });
      exited.then(({ code, signal }) => reject(new Error(`child server exited (${code ?? signal})`)));
    }),
    10000,
    'the child server to listen'
  );
  if (first.type === 'listen-error') throw new Error(`child server could not listen: ${first.code}`);
  server.port = first.port;
  server.url = `ws://127.0.0.1:${first.port}`;
  server.listeningAt = first.at;
  return server;
}

module.exports = {
  BUILDS,
  next,
  record,
  lifecycle,
  socketsOf,
  socket,
  openSocket,
  ourServer,
  wsServer,
  closedPort,
  silentServer,
  childServer
};
