'use strict';

// permessage-deflate (README, "Compression"): what is negotiated, that
// messages travel compressed and arrive byte for byte, once per broadcast,
// what is not compressed, and what a peer's bad compressed data gets.

const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const zlib = require('node:zlib');
const WebSocket = require('ws');

const { Server, Socket } = require('..');
const {
  startServer,
  openClient,
  connect,
  next,
  closed,
  collect,
  defer,
  once,
  until,
  openClients
} = require('./helpers');
const { upgradeHeaders, clientFrame, parseFrames } = require('./server-kit');

/** A JSON-like text that deflate shrinks a lot. */
function repetitive(bytes) {
  const unit = '{"id":"node-4f1c","path":"nodes.4f1c.props.title","value":"A title"},';
  return unit.repeat(Math.ceil(bytes / unit.length)).slice(0, bytes);
}

/** Raw deflate as a permessage-deflate sender makes it (sync flush, tail off). */
function deflated(payload, windowBits = 15) {
  const out = zlib.deflateRawSync(payload, { finishFlush: zlib.constants.Z_SYNC_FLUSH, windowBits });
  assert.deepEqual([...out.subarray(-4)], [0, 0, 0xff, 0xff]);
  return out.subarray(0, -4);
}

/** A raw client that offers `extensions` and collects what the server writes. */
async function rawClient(t, server, extensions) {
  const socket = net.connect({ host: '127.0.0.1', port: server.address().port });
  defer(t, () => socket.destroy());
  socket.on('error', () => {});
  let received = Buffer.alloc(0);
  socket.on('data', (chunk) => {
    received = Buffer.concat([received, chunk]);
  });
  await once(socket, 'connect');
  const headers = upgradeHeaders(server.address().port, extensions ? { 'Sec-WebSocket-Extensions': extensions } : {});
  socket.write(`GET / HTTP/1.1\r\n${Object.entries(headers).map(([n, v]) => `${n}: ${v}\r\n`).join('')}\r\n`);
  await until(() => received.includes('\r\n\r\n'), 'the 101 answer');
  const end = received.indexOf('\r\n\r\n') + 4;
  const response = received.subarray(0, end).toString('latin1');
  received = received.subarray(end);
  return {
    socket,
    response,
    extensions: /sec-websocket-extensions: ([^\r]*)/i.exec(response)?.[1] ?? null,
    /** Frames received so far, with their first byte. */
    frames() {
      const frames = [];
      let at = 0;
      for (const frame of parseFrames(received)) {
        frames.push({ ...frame, rsv1: (received[at] & 0x40) !== 0 });
        at += frameLength(received, at);
      }
      return frames;
    },
    ended: new Promise((resolve) => socket.on('close', resolve))
  };
}

/** The length of the (unmasked) frame at `at`. */
function frameLength(bytes, at) {
  let length = bytes[at + 1] & 0x7f;
  let start = at + 2;
  if (length === 126) {
    length = bytes.readUInt16BE(start);
    start += 2;
  } else if (length === 127) {
    length = Number(bytes.readBigUInt64BE(start));
    start += 8;
  }
  return start - at + length;
}

/** The close code in a server's close frame, if one came. */
function closeCodeOf(frames) {
  const close = frames.find((frame) => frame.opcode === 8);
  return close ? close.payload.readUInt16BE(0) : null;
}

function echo(server) {
  server.messages.forEach((message, connection) => connection.send(message));
}

test('negotiation: the server answers server_no_context_takeover and, by default, client_no_context_takeover', async (t) => {
  const server = await startServer(t, { perMessageDeflate: true });
  // What browsers offer.
  const browser = await rawClient(t, server, 'permessage-deflate; client_max_window_bits');
  assert.equal(browser.extensions, 'permessage-deflate; server_no_context_takeover; client_no_context_takeover');

  const raw = await rawClient(t, server, 'permessage-deflate; server_max_window_bits=10; client_max_window_bits');
  assert.equal(raw.extensions, 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10');
});

test('negotiation: offers the server cannot read are declined, not failed; the first one it can read wins', async (t) => {
  const server = await startServer(t, { perMessageDeflate: true });
  for (const offer of [
    'permessage-deflate; server_max_window_bits=7',
    'permessage-deflate; unknown_parameter',
    'permessage-deflate; client_no_context_takeover; client_no_context_takeover',
    'x-webkit-deflate-frame'
  ]) {
    const raw = await rawClient(t, server, offer);
    assert.match(raw.response, /^HTTP\/1\.1 101/, offer);
    assert.equal(raw.extensions, null, offer);
  }
  const raw = await rawClient(t, server, 'permessage-deflate; bogus, permessage-deflate; server_max_window_bits=12');
  assert.match(raw.extensions, /server_max_window_bits=12/);
});

test('negotiation: clientMaxWindowBits limits clients that allow it; clientNoContextTakeover: false lets them keep context', async (t) => {
  const server = await startServer(t, { perMessageDeflate: { clientMaxWindowBits: 10, clientNoContextTakeover: false } });
  const raw = await rawClient(t, server, 'permessage-deflate; client_max_window_bits');
  assert.equal(raw.extensions, 'permessage-deflate; server_no_context_takeover; client_max_window_bits=10');
  const fixed = await rawClient(t, server, 'permessage-deflate; client_max_window_bits=9');
  assert.equal(fixed.extensions, 'permessage-deflate; server_no_context_takeover; client_max_window_bits=9');
  // A client that did not say it can be limited is not.
  const unlimited = await rawClient(t, server, 'permessage-deflate');
  assert.equal(unlimited.extensions, 'permessage-deflate; server_no_context_takeover');
});

test('perMessageDeflate options are checked: wrong types and unknown keys throw ERR_INVALID_OPTION', () => {
  const bad = [
    { level: 10 },
    { level: 1.5 },
    { clientMaxWindowBits: 7 },
    { clientMaxWindowBits: 16 },
    { threshold: -1 },
    { clientNoContextTakeover: 'yes' },
    { serverMaxWindowBits: 10 },
    []
  ];
  for (const perMessageDeflate of bad) {
    assert.throws(() => new Server({ port: 0, perMessageDeflate }), { code: 'ERR_INVALID_OPTION' }, JSON.stringify(perMessageDeflate));
  }
  assert.throws(() => new Socket('ws://127.0.0.1:1', { perMessageDeflate: { level: 3 } }), { code: 'ERR_INVALID_OPTION' });
  assert.throws(() => new Socket('ws://127.0.0.1:1', { perMessageDeflate: { serverMaxWindowBits: 20 } }), { code: 'ERR_INVALID_OPTION' });
});

// Every window size and both context modes, with ws as the peer.
for (const windowBits of [9, 10, 11, 12, 13, 14, 15]) {
  for (const takeover of [false, true]) {
    test(`ws clients at window bits ${windowBits}, client context ${takeover ? 'kept' : 'reset'}: byte-identical echoes, compressed both ways`, async (t) => {
      const server = await startServer(t, {
        json: false,
        perMessageDeflate: { threshold: 0, clientNoContextTakeover: !takeover }
      });
      echo(server);
      const client = await openClient(t, server, {
        perMessageDeflate: {
          clientMaxWindowBits: windowBits,
          serverMaxWindowBits: windowBits,
          clientNoContextTakeover: !takeover,
          threshold: 0
        }
      });
      // What ws agreed to (its own record of the answer).
      const { params } = client._extensions['permessage-deflate'];
      assert.equal(Number(params.server_max_window_bits), windowBits);
      assert.equal(params.client_no_context_takeover === true, !takeover);
      const text = repetitive(100_000);
      const binary = Buffer.from(repetitive(70_000).replace(/o/g, '\u00f6'));
      for (let round = 0; round < 3; round++) {
        client.send(text);
        client.send(binary);
        const [a, b] = await next(client, 2);
        assert.equal(a.data, text);
        assert.deepEqual(b.data, binary);
        assert.equal(b.binary, true);
      }
      // Both ways compressed: the wire carried far fewer bytes than the text.
      assert.ok(client._socket.bytesRead < 60_000, `read ${client._socket.bytesRead} bytes for 510 kB of echoes`);
      assert.ok(client._socket.bytesWritten < 60_000, `wrote ${client._socket.bytesWritten} bytes`);
    });
  }
}

test('threshold: shorter messages, and those deflate does not shrink, go out uncompressed', async (t) => {
  const server = await startServer(t, { json: false, perMessageDeflate: { threshold: 100 } });
  const added = once(server, 'add');
  const raw = await rawClient(t, server, 'permessage-deflate');
  const [connection] = await added;
  connection.send('x'.repeat(99));
  connection.send('x'.repeat(100));
  connection.send(require('node:crypto').randomBytes(4000));
  await until(() => raw.frames().length === 3, 'three frames');
  assert.deepEqual(raw.frames().map((frame) => frame.rsv1), [false, true, false]);
  const tail = Buffer.from([0, 0, 0xff, 0xff]);
  const inflated = zlib.inflateRawSync(Buffer.concat([raw.frames()[1].payload, tail]), {
    finishFlush: zlib.constants.Z_SYNC_FLUSH
  });
  assert.equal(inflated.toString(), 'x'.repeat(100));
});

test('compress: false on connection.send, server.send and group sends sends that message uncompressed', async (t) => {
  const server = await startServer(t, { json: false, perMessageDeflate: { threshold: 0 } });
  const added = once(server, 'add');
  const raw = await rawClient(t, server, 'permessage-deflate');
  const [connection] = await added;
  const big = repetitive(5000);
  connection.send(big, { compress: false });
  connection.send(big);
  server.send(big, { compress: false });
  server.send(big);
  const { ConnectionGroup } = require('..');
  const group = new ConnectionGroup();
  group.add(connection);
  group.send(big, { compress: false });
  group.send(big);
  await until(() => raw.frames().length === 6, 'six frames');
  assert.deepEqual(raw.frames().map((frame) => frame.rsv1), [false, true, false, true, false, true]);
});

test('a broadcast to 100 members deflates once (stats().deflateCalls), and the ones that did not agree get it plain', async (t) => {
  const server = await startServer(t, { perMessageDeflate: true });
  const compressing = await openClients(t, server, 100, () => ({ perMessageDeflate: true }));
  const plain = await openClient(t, server, { perMessageDeflate: false });
  await until(() => server.size === 101, 'all 101 added');
  const before = server.stats().deflateCalls;
  const message = { graph: repetitive(4000) };
  assert.equal(server.send(message), 101);
  for (const client of [...compressing, plain]) {
    assert.deepEqual(JSON.parse((await next(client))[0].data), message);
  }
  assert.equal(server.stats().deflateCalls - before, 1);
  // A group of the same members also compresses once.
  const group = new (require('..').ConnectionGroup)();
  for (const connection of server) group.add(connection);
  group.send(message);
  for (const client of compressing) await next(client);
  assert.equal(server.stats().deflateCalls - before, 2);
});

test('members that asked for different windows get one compressed form per window size', async (t) => {
  const server = await startServer(t, { perMessageDeflate: true });
  const clients = [];
  for (const bits of [10, 10, 15, 15]) {
    clients.push(await openClient(t, server, { perMessageDeflate: { serverMaxWindowBits: bits } }));
  }
  await until(() => server.size === 4, 'all added');
  const before = server.stats().deflateCalls;
  const message = { graph: repetitive(4000) };
  server.send(message);
  for (const client of clients) assert.deepEqual(JSON.parse((await next(client))[0].data), message);
  assert.equal(server.stats().deflateCalls - before, 2);
});

test('inbound: a decompression bomb closes with 1009 after at most maxPayload inflated bytes, and the server keeps serving', async (t) => {
  const maxPayload = 64 * 1024;
  const server = await startServer(t, { maxPayload, perMessageDeflate: true });
  const removed = once(server, 'remove');
  const raw = await rawClient(t, server, 'permessage-deflate');
  // 64 MiB of zeros, about 64 KiB compressed, sent as three fragments.
  const bomb = deflated(Buffer.alloc(64 * 1024 * 1024));
  const rss = process.memoryUsage().rss;
  const third = Math.ceil(bomb.length / 3);
  raw.socket.write(clientFrame(0x42, bomb.subarray(0, third))); // binary, RSV1, not final
  raw.socket.write(clientFrame(0x00, bomb.subarray(third, 2 * third)));
  raw.socket.write(clientFrame(0x80, bomb.subarray(2 * third)));
  const [, info] = await removed;
  assert.equal(info.code, 1009);
  await raw.ended;
  assert.equal(closeCodeOf(raw.frames()), 1009);
  assert.ok(process.memoryUsage().rss - rss < 32 * 1024 * 1024, 'no 64 MiB inflated');
  const client = await openClient(t, server, { perMessageDeflate: true });
  client.send('"still serving"');
  await until(() => server.stats().messagesIn >= 1, 'a message after the bomb');
});

test('inbound: compressed bytes that are not deflate close with 1007; RSV1 on a continuation frame with 1002; RSV1 without agreement with 1002', async (t) => {
  const server = await startServer(t, { perMessageDeflate: true });
  const cases = [
    ['permessage-deflate', [clientFrame(0xc1, Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff]))], 1007],
    ['permessage-deflate', [clientFrame(0x41, deflated('ab')), clientFrame(0xc0, deflated('c'))], 1002],
    [null, [clientFrame(0xc1, deflated('{"a":1}'))], 1002]
  ];
  for (const [offer, frames, code] of cases) {
    const raw = await rawClient(t, server, offer);
    for (const frame of frames) raw.socket.write(frame);
    await raw.ended;
    assert.equal(closeCodeOf(raw.frames()), code, `${offer}: ${frames.length} frame(s)`);
  }
});

test('inbound: a compressed message in fragments with a ping between them arrives whole, and the ping is answered', async (t) => {
  const server = await startServer(t, { json: false, perMessageDeflate: true });
  const got = collect(server.messages, 1);
  const raw = await rawClient(t, server, 'permessage-deflate');
  const text = repetitive(3000);
  const compressed = deflated(text);
  const cut = Math.floor(compressed.length / 2);
  raw.socket.write(clientFrame(0x41, compressed.subarray(0, cut))); // text, RSV1, not final
  raw.socket.write(clientFrame(0x89, Buffer.from('ping')));
  // The last fragment's header split across writes.
  const last = clientFrame(0x80, compressed.subarray(cut));
  raw.socket.write(last.subarray(0, 1));
  await new Promise((resolve) => setTimeout(resolve, 20));
  raw.socket.write(last.subarray(1));
  const [[message]] = await got;
  assert.equal(message, text);
  await until(() => raw.frames().some((frame) => frame.opcode === 0xa), 'the pong');
  assert.equal(raw.frames().find((frame) => frame.opcode === 0xa).payload.toString(), 'ping');
});

test('inbound: a large compressed frame arriving over many reads is read whole, its bytes never taken for frames', async (t) => {
  const server = await startServer(t, { json: false, perMessageDeflate: true });
  const got = collect(server.messages, 2);
  const raw = await rawClient(t, server, 'permessage-deflate');
  // Random bytes do not shrink: about 300 kB of compressed payload, in
  // which any byte may look like a frame header.
  const binary = require('node:crypto').randomBytes(300_000);
  const frame = clientFrame(0xc2, deflated(binary));
  for (let at = 0; at < frame.length; at += 16_384) {
    raw.socket.write(frame.subarray(at, at + 16_384));
    await new Promise((resolve) => setImmediate(resolve));
  }
  raw.socket.write(clientFrame(0x81, Buffer.from('after')));
  const [[first], [second]] = await got;
  assert.deepEqual(first, binary);
  assert.equal(second, 'after');
});

test("Node's WebSocket (undici) against the Server: compressed both ways, byte-identical", async (t) => {
  const server = await startServer(t, { json: false, perMessageDeflate: { threshold: 0 } });
  echo(server);
  const client = await openClient(t, server, { kind: 'undici' });
  assert.match(client.extensions, /^permessage-deflate/);
  const text = repetitive(50_000);
  const binary = Buffer.from(repetitive(30_000));
  client.send(text);
  client.send(binary);
  const [a, b] = await next(client, 2);
  assert.equal(a.data, text);
  assert.deepEqual(b.data, binary);
});

/**
 * A ws echo server with `perMessageDeflate`, and an open Socket (our
 * Node build, `json: false`, `socketDeflate` as its offer) connected to it:
 * `{ socket, peer, received }`, `peer` being ws's end of the connection.
 */
async function socketToWs(t, perMessageDeflate, socketDeflate = true) {
  const wss = new WebSocket.Server({ port: 0, host: '127.0.0.1', perMessageDeflate });
  await once(wss, 'listening');
  defer(t, () => new Promise((resolve) => wss.close(resolve)));
  let peer;
  wss.on('connection', (ws) => {
    peer = ws;
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  const socket = new Socket(`ws://127.0.0.1:${wss.address().port}`, { json: false, perMessageDeflate: socketDeflate });
  defer(t, () => socket.close());
  await once(socket, 'open');
  const received = [];
  socket.messages.forEach((message) => received.push(message));
  return { socket, peer, received };
}

test('the Socket offers compression by default against a ws server, and messages arrive byte for byte both ways', async (t) => {
  const { socket, peer, received } = await socketToWs(t, { threshold: 0 });
  assert.match(peer.extensions, /^permessage-deflate/);
  const text = repetitive(80_000);
  const binary = Buffer.from(repetitive(20_000));
  socket.send(text);
  socket.send(binary);
  socket.send(text, { compress: false });
  await until(() => received.length === 3, 'three echoes');
  assert.equal(received[0], text);
  assert.deepEqual(received[1], binary);
  assert.equal(received[2], text);
  // Compressed both ways but for the one sent with compress: false.
  assert.ok(peer._socket.bytesRead < text.length + 20_000, `the server read ${peer._socket.bytesRead} bytes`);
  assert.ok(peer._socket.bytesWritten < 20_000, `the server wrote ${peer._socket.bytesWritten} bytes`);
});

// Our Socket against ws servers at every window size, both context modes.
for (const windowBits of [9, 10, 11, 12, 13, 14, 15]) {
  for (const takeover of [false, true]) {
    test(`the Socket against a ws server at window bits ${windowBits}, server context ${takeover ? 'kept' : 'reset'}: byte-identical echoes`, async (t) => {
      const wsDeflate = {
        threshold: 0,
        serverNoContextTakeover: !takeover,
        serverMaxWindowBits: windowBits,
        clientMaxWindowBits: windowBits
      };
      const { socket, peer, received } = await socketToWs(t, wsDeflate, { threshold: 0 });
      const { params } = peer._extensions['permessage-deflate'];
      assert.equal(Number(params.client_max_window_bits), windowBits);
      assert.equal(params.server_no_context_takeover === true, !takeover);
      const text = repetitive(60_000);
      const binary = Buffer.from(repetitive(30_000).replace(/o/g, '\u00f6'));
      for (let round = 0; round < 3; round++) {
        socket.send(text);
        socket.send(binary);
      }
      await until(() => received.length === 6, 'six echoes');
      for (let i = 0; i < 6; i += 2) {
        assert.equal(received[i], text);
        assert.deepEqual(received[i + 1], binary);
      }
      assert.ok(peer._socket.bytesRead < 60_000, `the server read ${peer._socket.bytesRead} bytes`);
      assert.ok(peer._socket.bytesWritten < 60_000, `the server wrote ${peer._socket.bytesWritten} bytes`);
    });
  }
}

test('the Socket with perMessageDeflate: false offers nothing; a server answer it did not ask for fails the attempt', async (t) => {
  const wss = new WebSocket.Server({ port: 0, host: '127.0.0.1', perMessageDeflate: true });
  await once(wss, 'listening');
  defer(t, () => new Promise((resolve) => wss.close(resolve)));
  const offers = [];
  wss.on('headers', (headers, request) => offers.push(request.headers['sec-websocket-extensions'] ?? null));
  const socket = new Socket(`ws://127.0.0.1:${wss.address().port}`, { perMessageDeflate: false });
  defer(t, () => socket.close());
  await once(socket, 'open');
  assert.deepEqual(offers, [null]);

  // A server that answers with an extension nobody offered.
  const liar = net.createServer((conn) => {
    conn.once('data', (head) => {
      const key = /sec-websocket-key: (\S+)/i.exec(head.toString())[1];
      const accept = require('node:crypto').createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
      conn.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n`);
    });
    conn.on('error', () => {});
  });
  await new Promise((resolve) => liar.listen(0, '127.0.0.1', resolve));
  defer(t, () => liar.close());
  const fooled = new Socket(`ws://127.0.0.1:${liar.address().port}`, { perMessageDeflate: false, maxRetries: 0 });
  defer(t, () => fooled.close());
  const [err] = await once(fooled, 'error');
  assert.equal(err.code, 'ERR_HANDSHAKE');
  assert.match(err.message, /extensions we did not offer/);
});

test('a Server connection that agreed on compression still rests and goes dormant, and is served after', async (t) => {
  const server = await startServer(t, { json: false, perMessageDeflate: { threshold: 0 } });
  echo(server);
  const { client } = await connect(t, server, { perMessageDeflate: true });
  client.send(repetitive(2000));
  await next(client);
  // Two dormancy ticks of quiet.
  await new Promise((resolve) => setTimeout(resolve, 2500));
  const text = repetitive(5000);
  client.send(text);
  assert.equal((await next(client))[0].data, text);
  client.close();
  assert.equal((await closed(client)).code, 1005);
});

test('a frame header cut short keeps the connection waiting, not busy, until the rest arrives', async (t) => {
  const server = await startServer(t, { json: false, perMessageDeflate: true });
  const got = collect(server.messages, 1);
  const raw = await rawClient(t, server, 'permessage-deflate');
  const frame = clientFrame(0xc1, deflated(repetitive(2000)));
  raw.socket.write(frame.subarray(0, 1));
  // The server runs in this process: a connection that spun while it waits
  // would take a whole core for the half second.
  const before = process.cpuUsage();
  await new Promise((resolve) => setTimeout(resolve, 500));
  const { user, system } = process.cpuUsage(before);
  assert.ok(user + system < 200_000, `${((user + system) / 1000).toFixed(0)} ms of CPU in 500 ms of waiting`);
  raw.socket.write(frame.subarray(1));
  const [[message]] = await got;
  assert.equal(message, repetitive(2000));
});

test('maxReceiveBufferTotal counts inflated bytes: clients stalled in compressed messages that inflate past it are closed with 1008', async (t) => {
  const MiB = 1024 * 1024;
  const interval = 500;
  const server = await startServer(t, {
    maxPayload: 32 * MiB,
    maxReceiveBufferTotal: 64 * MiB,
    heartbeatInterval: interval,
    perMessageDeflate: true
  });
  const removed = new Map();
  server.on('remove', (connection, info) => removed.set(connection, info.code));
  // Five clients each send the first fragment of a compressed message that
  // inflates to 13.5 MiB (13 KiB on the wire) and stop: 67.5 MiB inflated,
  // 65 KiB received.
  const fragment = clientFrame(0x42, deflated(Buffer.alloc(13.5 * MiB)));
  const raws = [];
  for (let i = 0; i < 5; i++) raws.push(await rawClient(t, server, 'permessage-deflate'));
  await until(() => server.size === 5, "five 'add' events");
  const connections = [...server];
  for (const { socket } of raws) socket.write(fragment);
  await until(() => connections.every((c) => removed.has(c)), 'the stalled clients to be removed', 8 * interval);
  const codes = connections.map((c) => removed.get(c));
  // As in the uncompressed case (server-receive-buffers.test.js): those
  // still paused when two intervals pass get 1008, any read again once the
  // total fell under half are dropped as silent (1006).
  assert.ok(codes.filter((code) => code === 1008).length >= 3, `removed with ${codes}`);
});

test('attached to an http.Server, the Server negotiates compression too', async (t) => {
  const httpServer = require('node:http').createServer((req, res) => res.end('plain http'));
  await new Promise((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
  defer(t, () => new Promise((resolve) => httpServer.close(resolve)));
  const server = new Server({ server: httpServer, json: false, perMessageDeflate: { threshold: 0 } });
  defer(t, () => server.close());
  await server.ready;
  echo(server);
  const client = await openClient(t, server, { perMessageDeflate: true });
  assert.equal(client._extensions['permessage-deflate'].params.server_no_context_takeover, true);
  const text = repetitive(50_000);
  client.send(text);
  assert.equal((await next(client))[0].data, text);
  assert.ok(client._socket.bytesRead < 10_000, `read ${client._socket.bytesRead} bytes`);
  assert.equal(server.stats().deflateCalls, 1);
});
