'use strict';

// Nothing a peer sends is the user's error, and nothing it sends brings the
// process down: a text message too long for a JavaScript string is refused
// like one over maxPayload; the close frames we send for a peer's protocol
// errors carry short fixed reasons, never a library's internal text; a
// panic in the addon ends one connection (1011) and the rest keep going.

const assert = require('node:assert/strict');
const { createHash, randomBytes } = require('node:crypto');
const net = require('node:net');
const os = require('node:os');
const { test } = require('node:test');

const {
  within,
  once,
  openClient,
  next,
  closed,
  connect,
  until,
  startServer,
  delay,
  defer
} = require('./helpers');
const { rawWebSocket, clientFrame, parseFrames } = require('./server-kit');
const sockets = require('./socket-helpers');
const { loadPanicBuild, haveCargo } = require('./panic-build');

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

// V8 holds at most 2 ** 29 - 24 UTF-16 units in a string; one ASCII byte
// is one unit, so this many ASCII bytes cannot become a string.
const MAX_STRING_LENGTH = 2 ** 29 - 24;
const HUGE = 540_000_000;
assert.ok(HUGE > MAX_STRING_LENGTH);

// The huge-message tests need the receiver to hold the 540 MB message
// (perhaps twice, while it grows a buffer), in this one process; the
// sender holds 16 MiB at a time.
const skipHuge =
  os.totalmem() >= 8 * GiB
    ? false
    : `needs 8 GiB of memory for 540 MB messages, this machine has ${(os.totalmem() / GiB).toFixed(1)} GiB`;

/**
 * Resolve with what `promise` gives, or reject as soon as `emitter` emits
 * 'error' (naming that error), or after `ms`.
 */
function unlessError(emitter, promise, ms, what) {
  let onError;
  const failed = new Promise((resolve, reject) => {
    onError = (err) => reject(new Error(`'error' (${err?.code}: ${err?.message}) while waiting for ${what}`));
    emitter.on('error', onError);
  });
  return within(Promise.race([promise, failed]), ms, what).finally(() => emitter.off('error', onError));
}

/** Every frame the server sends a raw client, once the server has closed it. */
function framesUntilClosed(socket, ms = 5000) {
  const chunks = [];
  const ended = new Promise((resolve) => {
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('close', () => resolve(parseFrames(Buffer.concat(chunks))));
    socket.resume();
  });
  return within(ended, ms, 'the server to close the raw socket');
}

/** `{ code, reason }` of the close frame among `frames`, or null. */
function closeFrameOf(frames) {
  const frame = frames.find(({ opcode }) => opcode === 0x8);
  if (frame === undefined) return null;
  return { code: frame.payload.readUInt16BE(0), reason: frame.payload.subarray(2).toString() };
}

/**
 * The head of a text frame of `length` bytes: a client's (masked, with the
 * mask key 0,0,0,0, so the payload goes out as it is) or a server's
 * (unmasked).
 */
function textHead(length, { masked }) {
  const head = Buffer.alloc(masked ? 14 : 10);
  head[0] = 0x81;
  head[1] = (masked ? 0x80 : 0) | 127;
  head.writeBigUInt64BE(BigInt(length), 2);
  // A mask key, if any, stays 0.
  return head;
}

/**
 * Send one text frame of HUGE ASCII bytes on `socket`, so that its close
 * frame can be read whether the receiver refuses the frame from its header
 * alone or only once it has read it all. The header goes first, and the
 * payload only if the receiver has not answered a second later: bytes sent
 * after the receiver dropped the connection make it reset the connection,
 * and Node then drops the socket on the failed write, close frame unread.
 * The payload goes in chunks, so that we stop as soon as it answers (and
 * hold 16 MiB, not 540 MB).
 *
 * @param {net.Socket} socket A connected, flowing socket
 * @param {Boolean} masked A client's frame, or a server's
 * @param {Function} answered True once the receiver's close frame is in
 * @return {Promise<Number>} How many payload bytes were sent
 */
async function sendHugeText(socket, masked, answered) {
  socket.write(textHead(HUGE, { masked }));
  const deadline = Date.now() + 1000;
  while (Date.now() < deadline && !answered() && !socket.destroyed) await delay(10);
  const chunk = Buffer.alloc(16 * MiB, 0x61);
  let sent = 0;
  while (sent < HUGE && !answered() && !socket.destroyed) {
    const piece = Math.min(chunk.length, HUGE - sent);
    sent += piece;
    if (!socket.write(piece === chunk.length ? chunk : chunk.subarray(0, piece))) {
      await new Promise((resolve) => {
        socket.once('drain', resolve);
        socket.once('close', resolve);
      });
    }
  }
  return sent;
}

/**
 * A WebSocket server written by hand on a `net` server, for a Socket to
 * connect to: it answers every upgrade with 101 and then hands the socket
 * to `onConnection(socket, index)`. `peers[i]` records the i-th
 * connection: `bytes()` what the client sent after its request, `ended`
 * a Promise of the same once the client has gone.
 */
async function handmadeServer(t, onConnection) {
  const peers = [];
  const srv = net.createServer((socket) => {
    socket.on('error', () => {});
    const chunks = [];
    let upgraded = false;
    const peer = {
      socket,
      bytes: () => Buffer.concat(chunks),
      ended: new Promise((resolve) => socket.on('close', () => resolve(Buffer.concat(chunks))))
    };
    const index = peers.push(peer) - 1;
    let head = Buffer.alloc(0);
    socket.on('data', (chunk) => {
      if (upgraded) {
        chunks.push(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) return;
      upgraded = true;
      if (end + 4 < head.length) chunks.push(head.subarray(end + 4));
      const key = /^sec-websocket-key:\s*(\S+)/im.exec(head.toString('latin1'))?.[1] ?? '';
      const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
      socket.write(
        'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
          `Sec-WebSocket-Accept: ${accept}\r\n\r\n`
      );
      onConnection(socket, index);
    });
  });
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  defer(t, async () => {
    for (const { socket } of peers) socket.destroy();
    await new Promise((resolve) => srv.close(resolve));
  });
  return { peers, url: `ws://127.0.0.1:${srv.address().port}` };
}

// --- A text message longer than a string can be ------------------------------

test(
  'Server: a text message longer than a JavaScript string can hold closes the connection with 1009, with no error, and the server keeps serving',
  { timeout: 60_000, skip: skipHuge },
  async (t) => {
    const server = await startServer(t, { maxPayload: 600 * MiB });
    const errors = [];
    server.on('error', (err) => errors.push(err));
    const received = [];
    server.messages.forEach((message, connection) => {
      received.push(typeof message === 'string' ? message.length : message);
      connection.send(message);
    });

    const addedA = once(server, 'add');
    const a = await rawWebSocket(t, server.address().port);
    const [connectionA] = await addedA;
    const b = await openClient(t, server);
    await until(() => server.size === 2, "the second client's connection", 2000);

    const removed = new Promise((resolve) => server.once('remove', (...args) => resolve(args)));
    const fromServer = [];
    a.socket.on('data', (chunk) => fromServer.push(chunk));
    const gotClose = new Promise((resolve) => a.socket.once('close', resolve));
    a.socket.resume();
    const answer = () => closeFrameOf(parseFrames(Buffer.concat(fromServer)));
    const sent = await unlessError(
      server,
      sendHugeText(a.socket, true, () => answer() !== null),
      40_000,
      'the server to read the 540 MB text frame or refuse it'
    );
    t.diagnostic(`the server answered after ${sent} bytes of the payload`);

    const [gone, info] = await unlessError(server, removed, 10_000, "'remove' of the client that sent 540 MB of text");
    assert.equal(gone, connectionA);
    assert.equal(info.code, 1009);
    assert.equal(info.wasClean, false);
    await within(gotClose, 5000, 'the server to drop the raw client');
    assert.equal(answer()?.code, 1009, 'the peer was sent close 1009');
    assert.deepEqual(received, [], 'nothing was delivered');

    // Still serving: the other client echoes, and a new one too.
    b.send(JSON.stringify('still there'));
    assert.deepEqual(await next(b, 1, 5000), [{ data: '"still there"', binary: false }]);
    const c = await openClient(t, server);
    c.send(JSON.stringify('newcomer'));
    assert.deepEqual(await next(c, 1, 5000), [{ data: '"newcomer"', binary: false }]);
    // An 'error' for the dropped peer would have come before these round
    // trips; the short wait is for one emitted asynchronously later.
    await delay(100);
    assert.deepEqual(
      errors.map((err) => `${err.code}: ${err.message}`),
      [],
      "no 'error': a peer's message is no user error"
    );
  }
);

test(
  'Socket: a text message longer than a JavaScript string can hold closes the connection with 1009, with no error, and it connects again',
  { timeout: 60_000, skip: skipHuge },
  async (t) => {
    const peer = await handmadeServer(t, async (socket, index) => {
      if (index === 0) {
        const answered = () => closeFrameOf(parseFrames(peer.peers[0].bytes())) !== null;
        await sendHugeText(socket, false, answered);
      } else {
        // A later connection gets one small message.
        const text = Buffer.from('{"small":true}');
        socket.write(Buffer.concat([Buffer.from([0x81, text.length]), text]));
      }
    });
    const s = sockets.socket(t, peer.url, {
      maxPayload: 600 * MiB,
      // It reconnects when told to, not by itself during the test.
      minReconnectionDelay: 60_000
    });
    const events = sockets.lifecycle(s);
    const messages = sockets.record(s.messages);

    const closing = new Promise((resolve) => s.once('close', resolve));
    const closeEvent = await unlessError(s, closing, 50_000, "the Socket's 'close' after 540 MB of text");
    assert.equal(closeEvent.code, 1009);
    assert.equal(closeEvent.wasClean, false);
    const answer = parseFrames(await within(peer.peers[0].ended, 10_000, 'the Socket to drop the connection'));
    assert.equal(closeFrameOf(answer)?.code, 1009, 'the server was sent close 1009');
    assert.deepEqual(messages.list, [], 'nothing was delivered');

    // The process and the Socket go on.
    s.reconnect();
    await sockets.next(s, 'open', () => true, 5000);
    await messages.count(1, 'a message on the new connection');
    assert.deepEqual(messages.messages(), [{ small: true }]);
    assert.deepEqual(
      events.of('error').map(({ error }) => `${error.code}: ${error.message}`),
      [],
      "no 'error': a peer's message is no user error"
    );
  }
);

// --- Close reasons: short fixed texts -------------------------------------------

// [what the client does, Server options, the frames it sends, the close code
// and reason the server must answer with]
const PROTOCOL_ERRORS = [
  ['invalid UTF-8 in a text frame', {}, () => [clientFrame(0x81, Buffer.from([0x61, 0xff, 0x62]))], 1007, 'invalid UTF-8'],
  [
    'invalid UTF-8 across the fragments of a text message',
    {},
    () => [clientFrame(0x01, Buffer.from([0x61, 0xe2])), clientFrame(0x80, Buffer.from([0x28]))],
    1007,
    'invalid UTF-8'
  ],
  [
    'a text message that ends inside a character',
    {},
    () => [clientFrame(0x01, Buffer.from([0x61, 0xe2, 0x82])), clientFrame(0x80, Buffer.alloc(0))],
    1007,
    'invalid UTF-8'
  ],
  ['a text message over maxPayload', { maxPayload: 1024 }, () => [clientFrame(0x81, Buffer.alloc(2048, 0x61))], 1009, 'message too big'],
  [
    'a fragmented message over maxPayload',
    { maxPayload: 1024 },
    () => [clientFrame(0x01, Buffer.alloc(600, 0x61)), clientFrame(0x80, Buffer.alloc(600, 0x61))],
    1009,
    'message too big'
  ],
  [
    'a large binary frame over maxPayload',
    { maxPayload: 64 * KiB },
    () => [clientFrame(0x82, randomBytes(64 * KiB + 1))],
    1009,
    'message too big'
  ],
  ['a frame with the reserved opcode 0x3', {}, () => [clientFrame(0x83, Buffer.from('x'))], 1002, 'protocol error'],
  ['a frame with the reserved control opcode 0xB', {}, () => [clientFrame(0x8b, Buffer.from('x'))], 1002, 'protocol error'],
  ['a frame with a reserved bit set', {}, () => [clientFrame(0xc1, Buffer.from('x'))], 1002, 'protocol error'],
  ['an unmasked frame', {}, () => [clientFrame(0x81, Buffer.from('x'), { masked: false })], 1002, 'protocol error'],
  ['a large binary frame with a reserved bit set', {}, () => [clientFrame(0xc2, randomBytes(70000))], 1002, 'protocol error']
];

for (const [what, options, frames, code, reason] of PROTOCOL_ERRORS) {
  test(`Server: ${what} is answered with close ${code} '${reason}', and 'remove' reports that reason`, async (t) => {
    const server = await startServer(t, options);
    server.messages.forEach(() => {});
    const errors = [];
    server.on('error', (err) => errors.push(err));
    const added = once(server, 'add');
    const { socket } = await rawWebSocket(t, server.address().port);
    const [connection] = await added;
    const removed = once(server, 'remove', 5000);
    const answer = framesUntilClosed(socket);
    socket.write(Buffer.concat(frames()));

    assert.deepEqual(closeFrameOf(await answer), { code, reason });
    const [gone, info] = await removed;
    assert.equal(gone, connection);
    assert.deepEqual(info, { code, reason, wasClean: false });
    assert.deepEqual(errors, []);
  });
}

// What a `ws` server does to a Socket, and the close code and reason the
// Socket must answer with (and report in its own 'close').
const SOCKET_PROTOCOL_ERRORS = [
  [
    'invalid UTF-8 in a text frame',
    {},
    (ws) => ws.send(Buffer.from([0x61, 0xff, 0x62]), { binary: false }),
    1007,
    'invalid UTF-8'
  ],
  ['a text message over maxPayload', { maxPayload: 1024 }, (ws) => ws.send('x'.repeat(2048)), 1009, 'message too big'],
  // Written under ws, which has no way to send a reserved opcode.
  ['a frame with the reserved opcode 0x3', {}, (ws) => ws._socket.write(Buffer.from([0x83, 0x01, 0x78])), 1002, 'protocol error']
];

for (const [what, options, misbehave, code, reason] of SOCKET_PROTOCOL_ERRORS) {
  test(`Socket: ${what} from the server is answered with close ${code} '${reason}'`, async (t) => {
    const peer = await sockets.wsServer(t, {}, (ws) => misbehave(ws));
    const s = sockets.socket(t, peer.url, { ...options, minReconnectionDelay: 60_000 });
    const events = sockets.lifecycle(s);
    s.messages.forEach(() => {});
    const [closeEvent] = await once(s, 'close', 5000);
    assert.equal(closeEvent.code, code);
    assert.equal(closeEvent.reason, reason);
    const ws = await peer.connection(0);
    assert.deepEqual(await within(ws.closed, 3000, 'the server to see the close'), { code, reason });
    assert.deepEqual(events.values('error'), []);
  });
}

// --- A panic in the addon -------------------------------------------------------

test(
  'Server: a panic in Rust while serving a connection closes that connection with 1011, emits ERR_INTERNAL, and the server keeps serving',
  {
    timeout: 5 * 60_000,
    skip: haveCargo() ? false : 'cargo is not available to build the panic-trigger addon'
  },
  async (t) => {
    // A debug build made with `--features panic-trigger`: in it, a server
    // connection that receives the text `__panic__` panics while handling it.
    const { Server } = await loadPanicBuild();
    const server = new Server({ port: 0, host: '127.0.0.1', json: false });
    defer(t, () => within(server.close(), 7000, 'server.close()'));
    await server.ready;
    const errors = [];
    server.on('error', (err) => errors.push(err));
    server.messages.forEach((message, connection) => connection.send(message));
    const removes = [];
    server.on('remove', (connection, info) => removes.push([connection, info]));

    const a = await connect(t, server);
    const b = await connect(t, server);
    b.client.send('before');
    assert.deepEqual(await next(b.client), [{ data: 'before', binary: false }]);

    const erred = within(
      new Promise((resolve) => server.once('error', resolve)),
      5000,
      "the server's 'error' for the panic"
    );
    erred.catch(() => {}); // awaited below, after the close
    a.client.send('__panic__');
    // Its connection ends: with a close frame 1011 when the addon could
    // still send one, else without one.
    const { code } = await closed(a.client, 5000);
    assert.ok([1011, 1006].includes(code), `the panicking connection ended with ${code}`);
    const err = await erred;
    assert.equal(err.code, 'ERR_INTERNAL');
    assert.ok(err instanceof Error);
    const [, infoA] = await until(
      () => removes.find(([connection]) => connection === a.connection),
      "'remove' of the panicking connection",
      3000
    );
    assert.equal(infoA.code, 1011);
    assert.equal(server.has(a.connection), false);

    // The other connection and the server are unharmed.
    assert.equal(server.has(b.connection), true);
    b.client.send('after');
    assert.deepEqual(await next(b.client), [{ data: 'after', binary: false }]);
    const c = await connect(t, server);
    c.client.send('newcomer');
    assert.deepEqual(await next(c.client), [{ data: 'newcomer', binary: false }]);
    assert.deepEqual(
      errors.map((e) => e.code),
      ['ERR_INTERNAL'],
      'one error, for the panic'
    );
  }
);
