'use strict';

// Helpers for the Socket tests of the browser build and the retry policy:
// servers on 127.0.0.1 that the test closes, and waits that fail with a
// message instead of hanging.

const { once } = require('node:events');
const net = require('node:net');

const { WebSocketServer } = require('ws');

const { delay, defer, until } = require('./helpers');

/**
 * The next `event` from `emitter` whose first argument passes `filter`,
 * rejecting after `ms`.
 */
function next(emitter, event, filter = () => true, ms = 5000) {
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
 * Record a Socket's life-cycle events in order, each as `[name, value,
 * at]`; an error is recorded as its code.
 */
function lifeCycle(socket) {
  const events = [];
  for (const name of ['open', 'close', 'reconnecting', 'error']) {
    socket.on(name, (value) => events.push([name, name === 'error' ? value.code : value, Date.now()]));
  }
  return {
    events,
    names: () => events.map(([name, value]) => (name === 'error' ? `error ${value}` : name)),
    of: (name) => events.filter(([n]) => n === name).map(([, value]) => value)
  };
}

/**
 * A Socket of class `Class`, closed (and waited for) at the end of the test.
 */
function socketOf(Class) {
  return (t, url, options) => {
    const s = new Class(url, options);
    defer(t, async () => {
      if (s.readyState === Class.CLOSED) return;
      const closed = next(s, 'close', (e) => !e.willReconnect, 3000).catch(() => {});
      s.close();
      await closed;
    });
    return s;
  };
}

/**
 * A `ws` server on 127.0.0.1 recording what each connection receives:
 * `conns[i].received` holds `{ data: Buffer, isBinary }`, `conns[i].closed`
 * a Promise of `{ code, reason }`.
 */
async function wsServer(t, options = {}) {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', ...options });
  await once(wss, 'listening');
  const conns = [];
  wss.on('connection', (ws, req) => {
    ws.req = req;
    ws.received = [];
    ws.closed = new Promise((resolve) =>
      ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }))
    );
    ws.on('message', (data, isBinary) => ws.received.push({ data, isBinary }));
    conns.push(ws);
  });
  defer(t, async () => {
    for (const ws of wss.clients) ws.terminate();
    await new Promise((resolve) => wss.close(resolve));
  });
  return {
    wss,
    conns,
    url: `ws://127.0.0.1:${wss.address().port}`,
    connection: (i = 0) => until(() => conns[i], `ws connection #${i}`),
    texts: (ws) => ws.received.map(({ data }) => data.toString())
  };
}

/** A port on 127.0.0.1 nobody listens on. */
async function closedPort() {
  const srv = net.createServer();
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address();
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

/**
 * A TCP server that accepts connections and never answers: `sockets`
 * lists them, `closed` counts those the client closed.
 */
async function silentServer(t) {
  const sockets = [];
  const state = { sockets, closed: 0 };
  const srv = net.createServer((sock) => {
    sockets.push(sock);
    sock.on('close', () => state.closed++);
    sock.on('error', () => {});
    // Read and drop the upgrade request, so that the client's close is seen.
    sock.resume();
  });
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  defer(t, async () => {
    for (const sock of sockets) sock.destroy();
    await new Promise((resolve) => srv.close(resolve));
  });
  state.url = `ws://127.0.0.1:${srv.address().port}`;
  return state;
}

module.exports = {
  delay,
  defer,
  until,
  next,
  record,
  lifeCycle,
  socketOf,
  wsServer,
  closedPort,
  silentServer
};
