'use strict';

// Our Socket against a malicious server, while a control Socket exchanges a
// message with a healthy Server of ours every 20 ms: a flood of frames, a
// 101 without the right accept key, endless headers, frames announcing
// huge lengths, masked and otherwise malformed server frames. After each
// attack (./hostile-kit.js, `socketScenario`): the control was served
// throughout, the attacked Socket reported each connection's end exactly
// once, the open fds are back to the baseline and the RSS after a full GC
// is within 32 MiB of it.

const assert = require('node:assert/strict');
const { createHash, randomBytes } = require('node:crypto');
const net = require('node:net');
const { test } = require('node:test');

const { Socket } = require('..');
const { within, until, defer } = require('./helpers');
const { floodPeer, busyWait, watchMemory, parseFrames } = require('./server-kit');
const { MiB, socketScenario, attackedSocket, flood, floodSettled } = require('./hostile-kit');

const TEST = { timeout: 60_000 };

/** The Sec-WebSocket-Accept value for a key. */
function acceptFor(key) {
  return createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
}

/** A 101 answer with `accept` as Sec-WebSocket-Accept (none if null). */
function switching(accept) {
  return (
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    (accept === null ? '' : `Sec-WebSocket-Accept: ${accept}\r\n`) +
    '\r\n'
  );
}

/**
 * A malicious server on a `net` server: it reads each connection's request
 * head and hands it to `onRequest(socket, { key, index, peer, upgrade })`;
 * `upgrade()` writes a proper 101 (the right accept key). `peers[i]`
 * records the i-th connection: `bytes()` what the client sent after its
 * head, `closed` a Promise resolved when the connection ends, `upgraded`
 * whether `upgrade()` answered it (what `attackedSocket` wants to know as
 * `() => server.peers`). `close()` destroys every connection and closes
 * the server.
 */
async function maliciousServer(t, onRequest) {
  const peers = [];
  const srv = net.createServer((socket) => {
    socket.on('error', () => {});
    const chunks = [];
    let head = Buffer.alloc(0);
    let answered = false;
    const peer = {
      socket,
      bytes: () => Buffer.concat(chunks),
      closed: new Promise((resolve) => socket.once('close', resolve)),
      upgraded: false
    };
    const index = peers.push(peer) - 1;
    socket.on('data', (chunk) => {
      if (answered) {
        chunks.push(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) return;
      answered = true;
      if (end + 4 < head.length) chunks.push(head.subarray(end + 4));
      const key = /^sec-websocket-key:\s*(\S+)/im.exec(head.toString('latin1'))?.[1] ?? '';
      const upgrade = () => {
        peer.upgraded = true;
        socket.write(switching(acceptFor(key)));
      };
      onRequest(socket, { key, index, peer, upgrade });
    });
  });
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const close = async () => {
    for (const { socket } of peers) socket.destroy();
    await new Promise((resolve) => srv.close(resolve));
  };
  let closed = null;
  const server = {
    peers,
    url: `ws://127.0.0.1:${srv.address().port}/`,
    close: () => (closed ??= close())
  };
  defer(t, () => server.close());
  return server;
}

/** Close a Socket for good and wait for its final 'close'. */
async function closeSocket(attacked) {
  if (attacked.socket.readyState !== Socket.CLOSED) attacked.socket.close();
  await within(attacked.stopped, 10000, "the attacked Socket's final 'close'");
}

/** `{ code, reason }` of the close frame a client sent (masked frames), or null. */
function closeFrom(peer) {
  const frame = parseFrames(peer.bytes()).find(({ opcode }) => opcode === 0x8);
  if (frame === undefined) return null;
  return { code: frame.payload.readUInt16BE(0), reason: frame.payload.subarray(2).toString() };
}

/** An unmasked server frame header announcing `length` (a BigInt) payload bytes. */
function serverHead(first, length) {
  const head = Buffer.alloc(10);
  head[0] = first;
  head[1] = 127;
  head.writeBigUInt64BE(length, 2);
  return head;
}

// --- A flood ---------------------------------------------------------------------------

test('a server flooding frames as fast as TCP takes: the Socket stops reading past maxReceiveBuffer, memory stays bounded', TEST, async (t) => {
  await socketScenario(t, async () => {
    const FLOOD_MS = 1500;
    const MESSAGE_BYTES = 244; // 240 of payload, 4 of header (fixtures/flood.js)
    const flooder = floodPeer(t, ['server', FLOOD_MS]);
    const { port } = await flooder.waitFor('listening');
    const memory = watchMemory(256 * MiB);
    defer(t, () => memory.stop());
    // The flooder upgrades one client (it says 'open' then) and refuses
    // any other; maxRetries 0 makes no other.
    const upgrades = () => flooder.events.filter((e) => e.type === 'open').map(() => ({ upgraded: true }));
    const attacked = attackedSocket(
      t,
      `ws://127.0.0.1:${port}/`,
      { maxReceiveBuffer: 64 * 1024, maxRetries: 0 },
      upgrades
    );
    let received = 0;
    let disorder = null;
    attacked.socket.messages.forEach((message) => {
      if (message.seq !== received && disorder === null) disorder = `seq ${message.seq}, expected ${received}`;
      received++;
      if ((received & 255) === 0) memory.sample();
      // The handler takes 10 µs a message: some 24 MB/s, against a flooder
      // that could send over 1 GB/s.
      if (!memory.over) busyWait(10);
    });
    const done = await flooder.waitFor('done', FLOOD_MS + 15000);
    // What was sent and not yet delivered is what the kernel buffers and
    // the Socket's receive buffer hold: a few MiB. A Socket that read on
    // regardless would hold nearly all of the flood.
    const lag = done.bytes - received * MESSAGE_BYTES;
    memory.stop();
    t.diagnostic(
      `flooder sent ${(done.bytes / MiB).toFixed(1)} MiB; ${(lag / MiB).toFixed(1)} MiB not yet delivered; ` +
        `RSS peak +${(memory.growth() / MiB).toFixed(1)} MiB`
    );
    assert.equal(memory.over, false, 'RSS grew by more than 256 MiB');
    assert.ok(lag < 32 * MiB, `${(lag / MiB).toFixed(1)} MiB sent and not delivered`);
    await until(() => received * MESSAGE_BYTES >= done.bytes || disorder !== null, 'the rest of the flood', 15000, 10);
    assert.equal(disorder, null, 'the flood arrived in order');
    await closeSocket(attacked);
    flooder.child.kill('SIGKILL');
    await within(
      new Promise((resolve) => (flooder.child.exitCode !== null ? resolve() : flooder.child.once('exit', resolve))),
      10000,
      'the flooder to exit'
    );
    assert.deepEqual(attacked.of('error'), []);
  });
});

// tungstenite answers each ping with a pong in a write buffer without a
// bound; the Socket stops reading once 64 KiB of pongs wait for a server
// that reads nothing. hostile-server.test.js has the same for a Server.

test('a server flooding pings and never reading: the Socket does not pile up pongs, memory stays bounded', TEST, async (t) => {
  const TOTAL = 256 * MiB;
  await socketScenario(t, async () => {
    const memory = watchMemory(64 * MiB);
    defer(t, () => memory.stop());
    let flooded = null;
    const server = await maliciousServer(t, (socket, { upgrade }) => {
      upgrade();
      // 512 pings of 125 bytes a write, as long as TCP takes them, up to
      // TOTAL; the Socket's pongs are never read, so it cannot write them.
      const ping = Buffer.concat([Buffer.from([0x89, 125]), Buffer.alloc(125, 0x70)]);
      const burst = Buffer.concat(Array.from({ length: 512 }, () => ping));
      socket.pause();
      flooded = { socket, state: flood(socket, burst, TOTAL, memory) };
    });
    const attacked = attackedSocket(t, server.url, { maxRetries: 0 }, () => server.peers);
    attacked.socket.messages.forEach(() => {});
    await within(new Promise((resolve) => attacked.socket.once('open', resolve)), 10000, 'the Socket to open');
    // Either the Socket reads every ping, answering (at most) the latest,
    // or it stops reading: both are fine, as long as nothing piles up.
    await floodSettled(flooded.state, flooded.socket, memory);
    const { written, finished } = flooded.state;
    memory.stop();
    t.diagnostic(
      `${(written / MiB).toFixed(1)} MiB of pings written (${finished ? 'all' : 'then stalled'}); ` +
        `RSS peak +${(memory.growth() / MiB).toFixed(1)} MiB`
    );
    assert.equal(memory.over, false, `RSS grew by ${(memory.growth() / MiB).toFixed(1)} MiB under a flood of pings`);
    assert.equal(attacked.socket.readyState, Socket.OPEN, 'still open');
    await closeSocket(attacked);
    await server.close();
  });
});

// --- Handshakes ---------------------------------------------------------------------------

test('a 101 without the right Sec-WebSocket-Accept: every attempt fails, the Socket retries per its options and gives up', TEST, async (t) => {
  await socketScenario(t, async () => {
    // Each attempt gets a different wrong answer.
    const answers = [
      () => switching(randomBytes(20).toString('base64')),
      () => switching(null),
      () => switching(acceptFor(randomBytes(16).toString('base64')))
    ];
    const server = await maliciousServer(t, (socket, { index }) => {
      socket.write(answers[index % answers.length]());
    });
    const attacked = attackedSocket(
      t,
      server.url,
      { maxRetries: 2, minReconnectionDelay: 20, maxReconnectionDelay: 50 },
      () => server.peers
    );
    const final = await within(attacked.stopped, 10000, 'the Socket to give up');
    assert.equal(final.willReconnect, false);
    assert.equal(attacked.socket.readyState, Socket.CLOSED);
    assert.deepEqual(attacked.of('open'), [], 'never open');
    t.diagnostic(`errors: ${attacked.of('error')}`);
    assert.equal(attacked.of('error').length, 3, 'one error per attempt');
    for (const code of attacked.of('error')) assert.ok(['ERR_CONNECT', 'ERR_HANDSHAKE'].includes(code), code);
    assert.deepEqual(attacked.of('reconnecting').map((e) => e.attempt), [1, 2]);
    assert.equal(server.peers.length, 3);
    await within(Promise.all(server.peers.map((peer) => peer.closed)), 5000, 'the Socket to drop each connection');
    await server.close();
  });
});

test('endless headers: the attempt fails within connectionTimeout, without buffering them', TEST, async (t) => {
  const TIMEOUT_MS = 1000;
  await socketScenario(t, async () => {
    const written = [];
    const server = await maliciousServer(t, (socket, { index }) => {
      written[index] = 0;
      socket.write('HTTP/1.1 101 Switching Protocols\r\n');
      if (index === 0) {
        // As fast as TCP takes them.
        const lines = Buffer.from(Array.from({ length: 1000 }, (_, i) => `X-Filler-${i}: ${'a'.repeat(50)}\r\n`).join(''));
        const pump = () => {
          while (!socket.destroyed && written[index] < 512 * MiB) {
            written[index] += lines.length;
            if (!socket.write(lines)) {
              socket.once('drain', pump);
              return;
            }
          }
        };
        pump();
      } else {
        // Slowly: a header line every 20 ms, forever.
        const timer = setInterval(() => {
          written[index] += 12;
          socket.write('X-Slow: 1\r\n');
        }, 20);
        socket.once('close', () => clearInterval(timer));
      }
    });
    const attacked = attackedSocket(
      t,
      server.url,
      { connectionTimeout: TIMEOUT_MS, maxRetries: 1, minReconnectionDelay: 20, maxReconnectionDelay: 50 },
      () => server.peers
    );
    const startedAt = performance.now();
    await within(attacked.stopped, TIMEOUT_MS * 2 + 5000, 'the Socket to give up');
    const elapsed = performance.now() - startedAt;
    const errors = attacked.events.filter((e) => e.name === 'error');
    t.diagnostic(
      `errors ${errors.map((e) => `${e.value} after ${Math.round(e.at - startedAt)} ms`)}; ` +
        `headers written: ${written.map((n) => `${(n / 1024).toFixed(0)} KiB`)}`
    );
    assert.deepEqual(attacked.of('open'), []);
    assert.equal(errors.length, 2, 'one error per attempt');
    for (const { value } of errors) assert.ok(['ERR_CONNECT', 'ERR_TIMEOUT'].includes(value), value);
    // Each attempt ended within its connectionTimeout (and a margin for a
    // loaded machine); the two with the retry's wait between them.
    assert.ok(elapsed < 2 * TIMEOUT_MS + 2000, `gave up after ${Math.round(elapsed)} ms`);
    assert.ok(written[0] < 512 * MiB, 'the Socket read 512 MiB of headers');
    await within(Promise.all(server.peers.map((peer) => peer.closed)), 5000, 'the Socket to drop each connection');
    await server.close();
  });
});

// --- Frames --------------------------------------------------------------------------------

/**
 * A server that upgrades properly, then sends connection `i` the frames of
 * `cases[i]`; the Socket reconnects after each. Checks that each connection
 * was closed by the Socket with the expected code, that nothing was
 * delivered, and that no 'error' came of it.
 */
async function badFrames(t, cases, options = {}) {
  await socketScenario(t, async () => {
    const server = await maliciousServer(t, (socket, { index, upgrade }) => {
      upgrade();
      if (index < cases.length) socket.write(cases[index][1]());
    });
    const attacked = attackedSocket(
      t,
      server.url,
      { maxRetries: cases.length - 1, minReconnectionDelay: 20, maxReconnectionDelay: 50, ...options },
      () => server.peers
    );
    const delivered = [];
    attacked.socket.messages.forEach((message) => delivered.push(message));
    await within(attacked.stopped, 15000, 'the Socket to give up after the last bad server');
    await within(Promise.all(server.peers.map((peer) => peer.closed)), 5000, 'the Socket to drop each connection');
    const closes = attacked.of('close');
    const wrong = [];
    cases.forEach(([what, , code], i) => {
      const codes = [code].flat();
      const sent = closeFrom(server.peers[i])?.code;
      const reported = closes[i]?.code;
      if (!codes.includes(sent) || reported !== sent || closes[i]?.wasClean !== false) {
        wrong.push(`${what}: sent close ${sent}, 'close' ${JSON.stringify(closes[i])}, expected ${code}`);
      }
    });
    assert.deepEqual(wrong, []);
    assert.equal(attacked.of('open').length, cases.length, 'each connection opened');
    assert.deepEqual(delivered, [], 'nothing was delivered');
    assert.deepEqual(attacked.of('error'), [], "a server's bad frames are no 'error'");
    await server.close();
  });
}

test('frames announcing huge lengths are refused with 1009 from their header, nothing allocated', TEST, async (t) => {
  await badFrames(
    t,
    [
      ['a binary frame of 2^63 - 1 bytes', () => serverHead(0x82, 2n ** 63n - 1n), 1009],
      ['a text frame of 2^40 bytes', () => serverHead(0x81, 2n ** 40n), 1009],
      ['a binary frame of 2^32 bytes', () => serverHead(0x82, 2n ** 32n), 1009],
      ['a first fragment of 2^62 bytes', () => serverHead(0x02, 2n ** 62n), 1009],
      // RFC 6455 5.2: the top bit of a 64-bit length must be 0. Either
      // refusal is right: it is a protocol error, and larger than any
      // maxPayload.
      ['a frame length with its top bit set', () => serverHead(0x82, 2n ** 64n - 1n), [1009, 1002]]
    ],
    { maxPayload: 1 * MiB }
  );
});

test('masked and otherwise malformed server frames are refused with 1002', TEST, async (t) => {
  const masked = (first, payload) => {
    const mask = randomBytes(4);
    const body = Buffer.from(payload);
    for (let i = 0; i < body.length; i++) body[i] ^= mask[i % 4];
    return Buffer.concat([Buffer.from([first, 0x80 | body.length]), mask, body]);
  };
  const frame = (first, payload) => Buffer.concat([Buffer.from([first, payload.length]), payload]);
  await badFrames(t, [
    ['a masked text frame', () => masked(0x81, Buffer.from('"hi"')), 1002],
    ['a masked ping', () => masked(0x89, Buffer.from('p')), 1002],
    ['a reserved opcode', () => frame(0x83, Buffer.from('x')), 1002],
    ['RSV1 set', () => frame(0xc1, Buffer.from('"x"')), 1002],
    ['a fragmented ping', () => frame(0x09, Buffer.from('p')), 1002],
    ['a continuation with no message started', () => frame(0x80, Buffer.from('x')), 1002]
  ]);
});
