'use strict';

// Helpers for the Server production tests (server-*.test.js): raw TCP
// clients that do the WebSocket handshake by hand (and then misbehave),
// plain-HTTP upgrade requests to read refusals, http servers to attach to, a
// self-signed certificate made with openssl, and a flooding peer with a
// memory watch. Our Server, ws clients, waits and `defer` are in
// ./helpers.js.

const { execFileSync } = require('node:child_process');
const { randomBytes } = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const { within, defer } = require('./helpers');

/**
 * Listen on 127.0.0.1 with a port from the OS; closed (with all its
 * connections) after the test.
 */
async function listenOn(t, httpServer) {
  defer(t, () => {
    httpServer.closeAllConnections?.();
    return new Promise((resolve) => httpServer.close(() => resolve()));
  });
  await new Promise((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(0, '127.0.0.1', () => {
      httpServer.off('error', reject);
      resolve();
    });
  });
  return httpServer;
}

/** The headers of a WebSocket upgrade request. */
function upgradeHeaders(port, extra = {}) {
  return {
    Host: `127.0.0.1:${port}`,
    Connection: 'Upgrade',
    Upgrade: 'websocket',
    'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
    'Sec-WebSocket-Version': '13',
    ...extra
  };
}

/**
 * Send a WebSocket upgrade request with Node's http client (https with
 * `tls`, trusting any certificate) and report the answer: `{ status,
 * headers, body }`; for a 101 the socket is destroyed and `body` is ''.
 * Rejects after `ms`.
 */
function upgradeRequest(port, requestPath = '/', extraHeaders = {}, ms = 10000, { tls = false, method = 'GET' } = {}) {
  const answer = new Promise((resolve, reject) => {
    const req = (tls ? https : http).request({
      method,
      host: '127.0.0.1',
      port,
      path: requestPath,
      headers: upgradeHeaders(port, extraHeaders),
      agent: false,
      rejectUnauthorized: false
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode, headers: res.headers, body: '' });
    });
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
  return within(answer, ms, `an answer to the upgrade of ${requestPath}`);
}

/** A plain GET with Node's http client: `{ status, headers, body }`. */
function httpGet(port, requestPath) {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: requestPath, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
      })
      .on('error', reject);
  });
}

/**
 * A raw TCP client that does the WebSocket handshake by hand and then does
 * nothing at all: it reads no more (the socket is paused, so once Node's
 * small buffer is full the kernel's fills and the server's writes stall),
 * answers no ping and no close frame. Destroyed after the test.
 *
 * @return {Promise<Object>} `{ socket, response }`: `response` is the
 *     server's answer head
 */
async function rawWebSocket(t, port, { path: requestPath = '/', ms = 10000 } = {}) {
  const socket = net.connect({ host: '127.0.0.1', port });
  defer(t, () => socket.destroy());
  socket.on('error', () => {});
  const response = await within(
    new Promise((resolve, reject) => {
      let received = Buffer.alloc(0);
      const onData = (chunk) => {
        received = Buffer.concat([received, chunk]);
        const end = received.indexOf('\r\n\r\n');
        if (end === -1) return;
        socket.off('data', onData);
        socket.pause();
        // Anything past the head (frames already sent) stays readable.
        if (end + 4 < received.length) socket.unshift(received.subarray(end + 4));
        resolve(received.subarray(0, end).toString('latin1'));
      };
      socket.on('data', onData);
      socket.on('close', () => reject(new Error('closed during the handshake')));
      socket.on('connect', () => {
        const headers = upgradeHeaders(port);
        let head = `GET ${requestPath} HTTP/1.1\r\n`;
        for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
        socket.write(`${head}\r\n`);
      });
    }),
    ms,
    'the 101 answer to a raw client'
  );
  if (!response.startsWith('HTTP/1.1 101')) throw new Error(`not upgraded: ${response}`);
  return { socket, response };
}

/**
 * A masked client frame, as a raw client sends it: `first` is the first
 * byte (FIN, reserved bits and opcode); `masked: false` leaves it unmasked,
 * which a server must refuse.
 */
function clientFrame(first, payload, { masked = true } = {}) {
  const maskBit = masked ? 0x80 : 0;
  let head;
  if (payload.length < 126) {
    head = Buffer.from([first, maskBit | payload.length]);
  } else if (payload.length < 0x10000) {
    head = Buffer.alloc(4);
    head.writeUInt8(first, 0);
    head.writeUInt8(maskBit | 126, 1);
    head.writeUInt16BE(payload.length, 2);
  } else {
    head = Buffer.alloc(10);
    head.writeUInt8(first, 0);
    head.writeUInt8(maskBit | 127, 1);
    head.writeBigUInt64BE(BigInt(payload.length), 2);
  }
  if (!masked) return Buffer.concat([head, payload]);
  const mask = randomBytes(4);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i] ^= mask[i % 4];
  return Buffer.concat([head, mask, body]);
}

/**
 * Read frames off raw bytes: those a server sent to a raw client
 * (unmasked), or those a client sent (masked; unmasked here):
 * `[{ opcode, payload }]`. Stops at an incomplete frame.
 */
function parseFrames(bytes) {
  const frames = [];
  let at = 0;
  while (at + 2 <= bytes.length) {
    const opcode = bytes[at] & 0x0f;
    const masked = (bytes[at + 1] & 0x80) !== 0;
    let length = bytes[at + 1] & 0x7f;
    let start = at + 2;
    if (length === 126) {
      if (start + 2 > bytes.length) break;
      length = bytes.readUInt16BE(start);
      start += 2;
    } else if (length === 127) {
      if (start + 8 > bytes.length) break;
      length = Number(bytes.readBigUInt64BE(start));
      start += 8;
    }
    const mask = masked ? bytes.subarray(start, start + 4) : null;
    if (masked) start += 4;
    if (start + length > bytes.length) break;
    let payload = bytes.subarray(start, start + length);
    if (mask !== null) {
      payload = Buffer.from(payload);
      for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i % 4];
    }
    frames.push({ opcode, payload });
    at = start + length;
  }
  return frames;
}

/** Everything a (paused) raw socket still has to read, until it ends. */
function drain(socket, ms = 10000) {
  const chunks = [];
  const ended = new Promise((resolve) => {
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('close', () => resolve(Buffer.concat(chunks)));
    socket.resume();
  });
  return within(ended, ms, 'the raw socket to end');
}

let certificate = null;

/**
 * A self-signed certificate for localhost and 127.0.0.1, made once per
 * process with openssl: `{ cert, key }` as PEM strings.
 */
function makeCertificate() {
  if (certificate !== null) return certificate;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mytosis-ws-tls-'));
  try {
    const keyFile = path.join(dir, 'k');
    const certFile = path.join(dir, 'c');
    execFileSync(
      'openssl',
      [
        'req', '-x509', '-newkey', 'rsa:2048', '-nodes',
        '-keyout', keyFile, '-out', certFile, '-days', '1',
        '-subj', '/CN=localhost',
        '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'
      ],
      { stdio: 'ignore' }
    );
    certificate = {
      cert: fs.readFileSync(certFile, 'utf8'),
      key: fs.readFileSync(keyFile, 'utf8')
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return certificate;
}

module.exports = {
  listenOn,
  upgradeHeaders,
  upgradeRequest,
  httpGet,
  rawWebSocket,
  clientFrame,
  parseFrames,
  drain,
  makeCertificate
};

/**
 * A peer in a child process (fixtures/flood.js) that sends small JSON
 * messages as fast as TCP takes them: `floodPeer(t, ['client', port, ms])`
 * connects to a server, `floodPeer(t, ['server', ms])` listens for one
 * client. `events` holds its reports in order; `waitFor(type, ms)` the
 * first report of a type (rejecting on 'failed' or its exit). Killed after
 * the test if it still runs.
 */
function floodPeer(t, args) {
  const { fork } = require('node:child_process');
  const child = fork(path.join(__dirname, 'fixtures', 'flood.js'), args.map(String), {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc']
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  let alive = true;
  exited.then(() => (alive = false));
  defer(t, async () => {
    if (!alive) return;
    child.kill('SIGKILL');
    await exited;
  });
  const events = [];
  const waiters = new Set();
  child.on('message', (event) => {
    events.push(event);
    for (const waiter of waiters) waiter(event);
  });
  return {
    child,
    events,
    waitFor(type, ms = 10000) {
      const found = events.find((event) => event.type === type);
      if (found !== undefined) return Promise.resolve(found);
      let waiter;
      const arrived = new Promise((resolve, reject) => {
        waiter = (event) => {
          if (event.type === type) resolve(event);
          else if (event.type === 'failed') reject(new Error(`the flood peer failed: ${event.message}`));
        };
        waiters.add(waiter);
        exited.then(() => reject(new Error(`the flood peer exited before '${type}'`)));
      });
      return within(arrived, ms, `'${type}' from the flood peer`).finally(() => waiters.delete(waiter));
    }
  };
}

module.exports.floodPeer = floodPeer;

/** Keep the JS thread busy for `us` microseconds, as slow synchronous work does. */
function busyWait(us) {
  const end = performance.now() + us / 1000;
  while (performance.now() < end);
}

const KiB = 1024;
const MiB = 1024 * KiB;

/** `bytes` in MiB, for a message. */
const mib = (bytes) => `${(bytes / MiB).toFixed(1)} MiB`;

/**
 * The peak RSS of this process from now on, as growth over now: sampled
 * every 50 ms by a timer, and whenever `sample()` is called (from a busy
 * handler, when timers run late). `over` turns true once the growth passes
 * `bound`, so a test can stop early instead of eating all memory.
 */
function watchMemory(bound) {
  const baseline = process.memoryUsage.rss();
  const watch = {
    peak: baseline,
    over: false,
    sample() {
      const rss = process.memoryUsage.rss();
      if (rss > watch.peak) watch.peak = rss;
      if (rss - baseline > bound) watch.over = true;
    },
    growth: () => watch.peak - baseline,
    stop: () => clearInterval(timer)
  };
  const timer = setInterval(() => watch.sample(), 50);
  return watch;
}

module.exports.busyWait = busyWait;
module.exports.watchMemory = watchMemory;
module.exports.KiB = KiB;
module.exports.MiB = MiB;
module.exports.mib = mib;

/**
 * A TCP relay on 127.0.0.1 to `port`, for one connection, that keeps the
 * bytes each way: `fromClient()` and `fromServer()`. `clientEnded` and
 * `serverEnded` resolve when that side's FIN came through (each is passed
 * on, so either side may half-close). Closed after the test.
 */
async function tcpRelay(t, port) {
  const client = [];
  const server = [];
  let clientEnded;
  let serverEnded;
  const ended = [new Promise((resolve) => (clientEnded = resolve)), new Promise((resolve) => (serverEnded = resolve))];
  const sockets = [];
  const relay = net.createServer({ allowHalfOpen: true }, (downstream) => {
    relay.close();
    const upstream = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    sockets.push(downstream, upstream);
    const pass = (from, to, kept, done) => {
      from.on('data', (bytes) => {
        kept.push(bytes);
        to.write(bytes);
      });
      from.on('end', () => {
        done();
        to.end();
      });
      from.on('error', () => to.destroy());
    };
    pass(downstream, upstream, client, clientEnded);
    pass(upstream, downstream, server, serverEnded);
  });
  defer(t, () => {
    for (const socket of sockets) socket.destroy();
    relay.close();
  });
  await new Promise((resolve) => relay.listen(0, '127.0.0.1', resolve));
  return {
    port: relay.address().port,
    fromClient: () => Buffer.concat(client),
    fromServer: () => Buffer.concat(server),
    clientEnded: ended[0],
    serverEnded: ended[1]
  };
}

/** The content types of the TLS records in `bytes` (21 is an alert, 23 application data). */
function tlsRecordTypes(bytes) {
  const types = [];
  for (let at = 0; at + 5 <= bytes.length; at += 5 + bytes.readUInt16BE(at + 3)) types.push(bytes[at]);
  return types;
}

module.exports.tcpRelay = tcpRelay;
module.exports.tlsRecordTypes = tlsRecordTypes;
