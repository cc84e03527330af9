'use strict';

// Small shared helpers for the tests that use real sockets, and the one
// place that starts our Server and plain clients for them (`startServer`,
// `openClient`, `connect`...; ./server-kit.js and ./socket-helpers.js build
// on these). Every wait has a short timeout that fails with a message
// saying what was awaited, so a broken feature fails the test instead of
// hanging it.

const { Blob, File } = require('node:buffer');

const WebSocket = require('ws');
const { WebSocket: UndiciWebSocket } = require('undici');

const { Server } = require('..');

// How long a wait for something that must happen may take before the test
// fails: events come in milliseconds, so this is a margin for a loaded
// machine, never a duration a test relies on.
const TIMEOUT = 10000;

// Per client: the messages received and not yet collected, and its close.
const inboxes = new WeakMap();

/**
 * Reject after `ms` with an error naming `what`; `promise` wins if it settles
 * first. The timer keeps the event loop alive, so a wait for an event that
 * never comes fails with this message rather than being cancelled.
 */
function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * The arguments of the next `event` of an EventEmitter (as an array), or the
 * event object of an EventTarget.
 */
function once(emitter, event, ms = TIMEOUT) {
  return within(
    new Promise((resolve) => {
      if (typeof emitter.once === 'function') {
        emitter.once(event, (...args) => resolve(args));
      } else {
        emitter.addEventListener(event, resolve, { once: true });
      }
    }),
    ms,
    `the '${event}' event`
  );
}

/**
 * Close a Server when the test ends (see `defer`: after the clients and
 * sockets registered later). The timeout's timer also holds the event loop
 * while it closes (a Server whose listen failed holds nothing itself).
 */
function closeAfter(t, server) {
  defer(t, () => within(server.close(), 7000, 'server.close()'));
}

/**
 * A standalone Server on 127.0.0.1, a port the OS picks (or `options.port`,
 * for a test that restarts a Server on the port of one it closed); closed
 * when the test ends (again, if the test closed it: a no-op then). The one
 * way the tests start a standalone Server of their own.
 */
async function startServer(t, options = {}) {
  const server = new Server({ port: 0, host: '127.0.0.1', ...options });
  closeAfter(t, server);
  await server.ready;
  return server;
}

/**
 * A Server attached to `httpServer` (the `server` option) with `options`;
 * closed when the test ends, like `startServer`'s. Returned at once, not
 * once `ready`: a test may attach to an http server that does not listen
 * yet. The one way the tests attach a Server of their own.
 */
function attachServer(t, httpServer, options = {}) {
  const server = new Server({ server: httpServer, ...options });
  closeAfter(t, server);
  return server;
}

function urlOf(server, path = '/') {
  return `ws://127.0.0.1:${server.address().port}${path}`;
}

/**
 * Record what a client receives from the moment it is created: `next()` reads
 * from this inbox, so no message is missed between 'open' and the read.
 */
function track(client) {
  const inbox = { messages: [], wake: () => {} };
  const onMessage = (data, binary) => {
    inbox.messages.push({ data, binary });
    inbox.wake();
  };
  if (client instanceof WebSocket) {
    client.on('message', (data, isBinary) => onMessage(isBinary ? data : data.toString(), isBinary));
    inbox.closed = new Promise((resolve) =>
      client.on('close', (code, reason) => resolve({ code, reason: reason.toString() }))
    );
  } else {
    client.addEventListener('message', ({ data }) =>
      typeof data === 'string' ? onMessage(data, false) : onMessage(Buffer.from(data), true)
    );
    inbox.closed = new Promise((resolve) =>
      client.addEventListener('close', ({ code, reason }) => resolve({ code, reason }))
    );
  }
  inboxes.set(client, inbox);
  return client;
}

/**
 * Open a `ws` client (`kind: 'ws'`, the default; other options go to `ws`)
 * or Node's WHATWG WebSocket from undici (`kind: 'undici'`, binary as
 * ArrayBuffer) and wait for 'open'. Terminated after the test.
 */
async function openClient(t, server, { kind = 'ws', path = '/', ...options } = {}) {
  const url = urlOf(server, path);
  const client =
    kind === 'ws' ? new WebSocket(url, options) : new UndiciWebSocket(url);
  if (kind !== 'ws') client.binaryType = 'arraybuffer';
  track(client);
  t.after(() => (kind === 'ws' ? client.terminate() : client.close()));
  await once(client, 'open');
  return client;
}

/**
 * The next `n` messages a client receives, each `{ data, binary }`: `data` a
 * string for a text frame, a Buffer for a binary frame.
 */
async function next(client, n = 1, ms = TIMEOUT) {
  const inbox = inboxes.get(client);
  const arrived = new Promise((resolve) => {
    inbox.wake = () => {
      if (inbox.messages.length >= n) resolve();
    };
    inbox.wake();
  });
  await within(arrived, ms, `${n} message(s) at the client, got ${inbox.messages.length}`);
  return inbox.messages.splice(0, n);
}

/** Resolves with `{ code, reason }` when the client's connection closes. */
function closed(client, ms = TIMEOUT) {
  return within(inboxes.get(client).closed, ms, 'the client to close');
}

/**
 * Subscribe to a Stream now and resolve with the first `n` `[message,
 * sender]` pairs it delivers; the subscription is disposed then.
 */
function collect(stream, n = 1, ms = TIMEOUT) {
  const received = [];
  let subscription;
  const done = new Promise((resolve) => {
    subscription = stream.forEach((message, sender) => {
      received.push([message, sender]);
      if (received.length === n) resolve(received);
    });
  });
  return within(done, ms, `${n} message(s) on the stream, got ${received.length}`).finally(() =>
    subscription.dispose()
  );
}

/** Open a client (see `openClient`) and get the server's connection for it. */
async function connect(t, server, options) {
  const added = once(server, 'add');
  const client = await openClient(t, server, options);
  const [connection] = await added;
  return { client, connection };
}

/** Open `count` ws clients and wait until the server has added them all. */
async function openClients(t, server, count, optionsOf = () => ({})) {
  const added = new Promise((resolve) => {
    const onAdd = () => {
      if (server.size >= count) {
        server.off('add', onAdd);
        resolve();
      }
    };
    server.on('add', onAdd);
  });
  const clients = await Promise.all(
    Array.from({ length: count }, (_, i) => openClient(t, server, optionsOf(i)))
  );
  await within(added, TIMEOUT, `${count} 'add' events`);
  return clients;
}

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Run `fn` when the test ends, last registered first (clients and sockets
 * close before the servers they are connected to). A cleanup that fails
 * does not skip the others; the first failure fails the test.
 */
const cleanups = new WeakMap();
function defer(t, fn) {
  let stack = cleanups.get(t);
  if (stack === undefined) {
    stack = [];
    cleanups.set(t, stack);
    t.after(async () => {
      const failures = [];
      while (stack.length > 0) {
        try {
          await stack.pop()();
        } catch (err) {
          failures.push(err);
        }
      }
      if (failures.length > 0) throw failures[0];
    });
  }
  stack.push(fn);
}

/**
 * Resolve with `check()`'s first truthy result, polling every `every` ms;
 * reject after `ms`.
 */
async function until(check, what = 'condition', ms = TIMEOUT, every = 2) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`Timed out after ${ms} ms waiting for ${what}`);
    await delay(every);
  }
}

/**
 * Resolve with `connection.bufferedAmount` once the server's writes to a
 * peer that does not read have stalled: it is above 0 and the same in two
 * reads 20 ms apart (it falls as long as the kernel takes bytes).
 */
function stalled(connection) {
  let last = -1;
  return until(
    () => {
      const now = connection.bufferedAmount;
      const same = now > 0 && now === last;
      last = now;
      return same && now;
    },
    'the writes to a client that does not read to stall',
    10000,
    20
  );
}

/**
 * A burst of `count` messages as a peer sends them (`sent`) and as they must
 * arrive with `json` (`expected`): JSON texts, ASCII and not (characters of
 * two to four bytes in UTF-8), some of 70 KiB, between binary messages.
 * Under such a burst one batch holds more text than fits in the string its
 * texts share (lib/batch.js), so that texts reach JS both ways in one batch.
 */
function mixedBurst(count = 3000) {
  const sent = [];
  const expected = [];
  for (let i = 0; i < count; i++) {
    if (i % 7 === 0) {
      const bytes = Buffer.from([i & 255, i >> 8, 0xff]);
      sent.push(bytes);
      expected.push(bytes);
      continue;
    }
    let value = { seq: i };
    if (i % 500 === 1) value = { big: 'x'.repeat(70 * 1024), i };
    else if (i % 5 === 0) value = { text: `é€𝄞 ${i}`, i };
    sent.push(JSON.stringify(value));
    expected.push(value);
  }
  return { sent, expected };
}

/**
 * Every kind of binary data `send` takes (README, Messages), as `[name,
 * value, the exact bytes that must go out in one binary frame]`: views over
 * part of a buffer included. Made afresh for each test (Blobs are read once).
 */
function binaryCases() {
  const backing = Uint8Array.from([9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
  const int16 = Int16Array.from([1, -2, 300]);
  const int32 = Int32Array.from([1, -1, 0x01020304]);
  const float64 = Float64Array.from([Math.PI, -0, Infinity]);
  const shared = new SharedArrayBuffer(3);
  new Uint8Array(shared).set([31, 32, 33]);
  return [
    ['Buffer', Buffer.from([1, 2, 3, 255]), Buffer.from([1, 2, 3, 255])],
    ['Buffer slice of a larger buffer', Buffer.from('hello world').subarray(6), Buffer.from('world')],
    ['Uint8Array', Uint8Array.from([4, 5, 6]), Buffer.from([4, 5, 6])],
    ['Uint8Array at an offset', new Uint8Array(backing.buffer, 1, 4), Buffer.from([8, 7, 6, 5])],
    ['Int16Array', int16, Buffer.from(int16.buffer)],
    ['Int32Array', int32, Buffer.from(int32.buffer)],
    ['Float64Array', float64, Buffer.from(float64.buffer)],
    ['DataView over part of a buffer', new DataView(backing.buffer, 2, 3), Buffer.from([7, 6, 5])],
    ['ArrayBuffer', Uint8Array.from([10, 11, 12]).buffer, Buffer.from([10, 11, 12])],
    ['SharedArrayBuffer', shared, Buffer.from([31, 32, 33])],
    ['view of a SharedArrayBuffer', new Uint8Array(shared, 1, 2), Buffer.from([32, 33])],
    ['Blob', new Blob([Uint8Array.from([20, 21]), 'xyz']), Buffer.from([20, 21, 0x78, 0x79, 0x7a])],
    ['File', new File([Uint8Array.from([40, 41])], 'f.bin'), Buffer.from([40, 41])]
  ];
}

/**
 * Open `count` ws clients, offering `protocols`, one after the other; wait
 * until the server counts them.
 */
async function openInOrder(t, server, count, protocols) {
  const clients = [];
  for (let i = 0; i < count; i++) {
    const client = track(new WebSocket(urlOf(server), protocols));
    t.after(() => client.terminate());
    await once(client, 'open');
    clients.push(client);
  }
  await until(() => server.size === count, `server.size ${count}`);
  return clients;
}

/** The local port of a ws client: its connection's `remotePort` on the server. */
const localPort = (client) => client._socket.localPort;

/** The fields of `server.stats()` (README, "Server statistics"). */
const STATS_FIELDS = Object.freeze([
  'connections',
  'accepted',
  'messagesIn',
  'messagesOut',
  'bytesIn',
  'bytesOut',
  'closes',
  'invalid',
  'paused',
  'deflateCalls',
  'clusterPublished',
  'clusterReceived',
  'clusterLost',
  'clusterMissed'
]);

module.exports = {
  TIMEOUT,
  STATS_FIELDS,
  openInOrder,
  localPort,
  binaryCases,
  mixedBurst,
  within,
  once,
  closeAfter,
  startServer,
  attachServer,
  urlOf,
  track,
  openClient,
  openClients,
  connect,
  next,
  closed,
  collect,
  delay,
  defer,
  until,
  stalled
};
