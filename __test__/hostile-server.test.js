'use strict';

// A Server under attack, while a control client exchanges a message with it
// every 20 ms: floods, garbage before and during the handshake, oversize and
// malformed frames, a thousand abrupt resets, connections idle mid-frame,
// half-open handshakes, a verifyClient that hangs or throws, user callbacks
// that throw, and a Server (or a Socket) in a worker thread terminated while
// open. After each attack (./hostile-kit.js, `scenario`): the control was
// served throughout, the open fds are back to the baseline, the RSS after a
// full GC is within 32 MiB of it, and 'remove' fired once per connection
// that was added.

const assert = require('node:assert/strict');
const path = require('node:path');
const { test } = require('node:test');
const { Worker } = require('node:worker_threads');

const WebSocket = require('ws');

const { within, until, defer, delay } = require('./helpers');
const { clientFrame, parseFrames, floodPeer, busyWait, watchMemory } = require('./server-kit');
const {
  KiB,
  MiB,
  scenario,
  rawConnection,
  rawUpgraded,
  requestHead,
  inBatches,
  flood,
  floodSettled
} = require('./hostile-kit');

const PKG = path.resolve(__dirname, '..');
const TEST = { timeout: 60_000 };

/** `{ code, reason }` of the first close frame a raw client received, or null. */
function closeSent(raw) {
  const bytes = raw.received();
  const end = bytes.indexOf('\r\n\r\n');
  const frames = parseFrames(end === -1 ? bytes : bytes.subarray(end + 4));
  const frame = frames.find(({ opcode }) => opcode === 0x8);
  if (frame === undefined) return null;
  return { code: frame.payload.readUInt16BE(0), reason: frame.payload.subarray(2).toString() };
}

/** The status line of what a raw client received, or '' if nothing. */
function statusLine(raw) {
  const text = raw.received().toString('latin1');
  return text.slice(0, Math.max(0, text.indexOf('\r\n')));
}

/** The connections the server added, by the raw client's local port. */
function byPort(target) {
  const connections = new Map();
  target.onAdd = (connection) => connections.set(connection.remotePort, connection);
  return connections;
}

/** Wait for 'remove' of every connection the attack got added. */
function allRemoved(target, what) {
  return until(
    () => [...target.seen.values()].every((entry) => entry.adds === 0 || entry.removes > 0 || entry.control),
    `${what}: 'remove' of every attacking connection`
  );
}

/** Wait until every raw client has been closed by the server; fail naming those that were not. */
async function allClosedByServer(raws, what, ms = 10000) {
  const outcomes = await within(
    Promise.all(raws.map((raw) => raw.closed)),
    ms,
    `${what}: the server to close all ${raws.length} connections`
  ).catch(async (err) => {
    const open = raws.filter((raw) => !raw.socket.destroyed);
    const names = [...new Set(open.map((raw) => raw.name ?? '?'))];
    throw new Error(`${err.message} (${open.length} still open: ${names.join('; ')})`);
  });
  assert.equal(outcomes.filter((o) => !o.byPeer).length, 0, `${what}: every connection was ended by the server`);
}

/** The head of a masked binary frame announcing `length` payload bytes (mask key 0). */
function announce(length, first = 0x82) {
  const head = Buffer.alloc(14);
  head[0] = first;
  head[1] = 0x80 | 127;
  head.writeBigUInt64BE(BigInt(length), 2);
  return head;
}

// --- Floods --------------------------------------------------------------------------

test('a client flooding as fast as TCP takes is paused by the receive buffer, then leaves', TEST, async (t) => {
  await scenario(
    t,
    { maxReceiveBuffer: 64 * KiB },
    async (target) => {
      // The handler costs 10 µs a message, far slower than TCP brings them.
      let expected = 0;
      let disorder = null;
      target.onMessage = (message) => {
        if (message.seq !== expected && disorder === null) disorder = `seq ${message.seq}, expected ${expected}`;
        expected = message.seq + 1;
        busyWait(10);
      };
      const flooder = floodPeer(t, ['client', target.port, 30_000]);
      await flooder.waitFor('open');
      await until(() => target.server.stats().paused >= 1, 'the receive buffer to pause the flooder', 15000, 5);
      t.diagnostic(`paused after ${expected} messages`);
      flooder.child.kill('SIGKILL');
      await within(new Promise((resolve) => flooder.child.once('exit', resolve)), 10000, 'the flooder to exit');
      await until(() => target.server.size === 1, 'the flooder to be removed', 15000, 10);
      assert.equal(disorder, null, 'the flood arrived in order');
    },
    { added: 1 }
  );
});

test('many clients flooding at once are paused by the receive buffers, then leave', TEST, async (t) => {
  const FLOODERS = 4;
  await scenario(
    t,
    { maxReceiveBuffer: 64 * KiB, maxPayload: 64 * KiB, maxReceiveBufferTotal: 256 * KiB },
    async (target) => {
      // Slower than the flood, so that the buffers fill, but quick enough
      // that what the buffers let through (256 KiB of 240-byte messages,
      // about 1,100) keeps JS busy for about 2 s at most: the control's
      // messages wait behind them. At 10 ms a message that was 11 s.
      target.onMessage = () => busyWait(2);
      const flooders = Array.from({ length: FLOODERS }, () => floodPeer(t, ['client', target.port, 30_000]));
      await Promise.all(flooders.map((flooder) => flooder.waitFor('open')));
      let most = 0;
      await until(
        () => (most = Math.max(most, target.server.stats().paused)) >= FLOODERS,
        `all ${FLOODERS} flooders paused at once (at most ${most} so far)`,
        15000,
        5
      );
      for (const flooder of flooders) flooder.child.kill('SIGKILL');
      await within(
        Promise.all(flooders.map((f) => f.child.exitCode !== null || new Promise((r) => f.child.once('exit', r)))),
        10000,
        'the flooders to exit'
      );
    },
    { added: FLOODERS }
  );
});

// tungstenite answers each ping with a pong in a write buffer without a
// bound: a peer that pings without reading would grow it without end. The
// connection stops reading once 64 KiB of pongs wait (README, "What a client
// cannot do to the server"); hostile-socket.test.js has the same for a Socket.
test('a client flooding pings and reading nothing: the server stops reading it instead of piling up pongs', TEST, async (t) => {
  const TOTAL = 256 * MiB;
  await scenario(
    t,
    { maxBackpressure: 1 * MiB },
    async (target) => {
      const memory = watchMemory(64 * MiB);
      defer(t, () => memory.stop());
      const raw = await rawUpgraded(target.port);
      defer(t, () => raw.destroy());
      raw.socket.pause();
      // 512 masked pings of 125 bytes a write, as long as TCP takes them.
      const ping = clientFrame(0x89, Buffer.alloc(125, 0x70));
      const burst = Buffer.concat(Array.from({ length: 512 }, () => ping));
      // The server reads every ping, or stops reading: both are fine, as
      // long as nothing piles up.
      const flooding = flood(raw.socket, burst, TOTAL, memory);
      await floodSettled(flooding, raw.socket, memory);
      const { written } = flooding;
      memory.sample();
      memory.stop();
      t.diagnostic(
        `${(written / MiB).toFixed(1)} MiB of pings written; RSS peak +${(memory.growth() / MiB).toFixed(1)} MiB; ` +
          `dropped: ${raw.socket.destroyed}`
      );
      raw.destroy();
      assert.equal(memory.over, false, `RSS grew by ${(memory.growth() / MiB).toFixed(1)} MiB under a flood of pings`);
    },
    { added: 1 }
  );
});

test('clients whose messages are still arriving fill maxReceiveBufferTotal: they are closed (1008 or 1006), the control is served', TEST, async (t) => {
  const CLIENTS = 8;
  const interval = 300;
  await scenario(
    t,
    {
      maxPayload: 1 * MiB,
      maxReceiveBuffer: 64 * KiB,
      maxReceiveBufferTotal: 2 * MiB,
      heartbeatInterval: interval
    },
    async (target) => {
      const raws = await inBatches(CLIENTS, CLIENTS, () => rawUpgraded(target.port));
      defer(t, () => raws.forEach((raw) => raw.destroy()));
      // Each announces a 1 MiB message and sends 900 KiB of it: 7 MiB in
      // messages that never complete, against a total of 2 MiB.
      const part = Buffer.alloc(900 * KiB, 0x5a);
      for (const raw of raws) raw.socket.write(Buffer.concat([announce(MiB), part]));
      await until(() => target.server.stats().paused >= 1, 'the total to pause a connection', 10000, 5);
      await allClosedByServer(raws, 'stalled clients', 15000);
      await allRemoved(target, 'stalled clients');
      const codes = [...target.seen.values()].filter((e) => e.removes > 0).map((e) => e.infos[0].code);
      t.diagnostic(`removed with ${codes}`);
      assert.equal(codes.length, CLIENTS);
      for (const code of codes) assert.ok(code === 1008 || code === 1006, `removed with ${code}`);
      assert.ok(codes.includes(1008), 'a client paused mid-message was closed with 1008');
      raws.forEach((raw) => raw.destroy());
    },
    { added: CLIENTS }
  );
});

// --- Garbage -------------------------------------------------------------------------

// What a client sends instead of an upgrade request.
const GARBAGE = [
  ['random bytes', () => Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919 + 13) & 0xff))],
  ['NUL bytes', () => Buffer.alloc(1024)],
  ['a TLS ClientHello', () => Buffer.from('160301020001000200303030303030303030', 'hex')],
  ['an HTTP/2 preface', () => Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')],
  ['an empty head', () => Buffer.from('\r\n\r\n')],
  ['a request line only', () => Buffer.from('GET / HTTP/1.1\r\n\r\n')],
  ['a 128 KiB line with no end', () => Buffer.alloc(128 * KiB, 0x41)],
  ['a binary request line', () => Buffer.concat([Buffer.from([0xff, 0xfe, 0x00, 0x01]), Buffer.from(' / HTTP/1.1\r\n\r\n')])],
  ['a frame before any handshake', () => clientFrame(0x81, Buffer.from('"hi"'))],
  ['HTTP/0.9', () => Buffer.from('GET /\r\n\r\n')]
];

/**
 * Five connections per case of `cases` (`[name, bytes]`), each writing with
 * `send(raw, bytes, port)` once connected: the server must close every one,
 * answering a 4xx or nothing, and upgrade none.
 */
async function garbageIsRefused(t, cases, send, what) {
  const ROUNDS = 5;
  await scenario(
    t,
    { handshakeTimeout: 1000 },
    async (target) => {
      const raws = [];
      for (let round = 0; round < ROUNDS; round++) {
        for (const [name, bytes] of cases) {
          const raw = rawConnection(target.port);
          raw.name = name;
          raw.connected.then(() => send(raw, bytes(), target.port), () => {});
          raws.push(raw);
        }
      }
      defer(t, () => raws.forEach((raw) => raw.destroy()));
      await allClosedByServer(raws, what);
      const answers = new Map();
      for (const raw of raws) answers.set(statusLine(raw), (answers.get(statusLine(raw)) ?? 0) + 1);
      t.diagnostic(`answers: ${JSON.stringify([...answers])}`);
      for (const [line] of answers) {
        assert.ok(line === '' || /^HTTP\/1\.1 4\d\d /.test(line), `answered ${JSON.stringify(line)}`);
      }
    },
    { added: 0 }
  );
}

test('garbage before the handshake: every connection is closed by the server, none upgraded', TEST, async (t) => {
  await garbageIsRefused(t, GARBAGE, (raw, bytes) => raw.socket.write(bytes), 'garbage senders');
});

// What a client sends after a valid start of a request head.
const GARBAGE_IN_HEAD = [
  ['NUL bytes in a header line', () => Buffer.from('X-A: a\0b\r\n\r\n')],
  ['a header line with no colon', () => Buffer.from('this is not a header\r\n\r\n')],
  ['a header name with spaces', () => Buffer.from('Bad Name: x\r\n\r\n')],
  ['random binary', () => Buffer.concat([Buffer.from(Array.from({ length: 2048 }, (_, i) => (i * 31 + 7) & 0xff)), Buffer.from('\r\n\r\n')])],
  ['a 100 KiB header value', () => Buffer.from(`X-Big: ${'v'.repeat(100 * KiB)}\r\n\r\n`)],
  ['10,000 header lines', () => Buffer.from(`${'X-Many: 1\r\n'.repeat(10_000)}\r\n`)],
  ['endless header lines, no end', () => Buffer.from('X-More: 1\r\n'.repeat(20_000))]
];

test('garbage in the middle of the request head: every connection is refused or dropped, none upgraded', TEST, async (t) => {
  await garbageIsRefused(
    t,
    GARBAGE_IN_HEAD,
    (raw, bytes, port) => {
      // The head without its final blank line, then the garbage.
      raw.socket.write(requestHead(port).slice(0, -2));
      raw.socket.write(bytes);
    },
    'clients with garbage in the head'
  );
});

// --- Oversize and malformed frames ----------------------------------------------------

// [what the client sends, the frames, the close code the server must answer with]
const BAD_FRAMES = [
  ['a text message over maxPayload', () => [clientFrame(0x81, Buffer.alloc(8 * KiB, 0x61))], 1009],
  ['a fragmented message over maxPayload', () => [clientFrame(0x02, Buffer.alloc(3 * KiB)), clientFrame(0x80, Buffer.alloc(3 * KiB))], 1009],
  ['a frame announcing 2^63 - 1 bytes', () => [announce(2n ** 63n - 1n)], 1009],
  ['a reserved opcode (0x3)', () => [clientFrame(0x83, Buffer.from('x'))], 1002],
  ['a reserved control opcode (0xB)', () => [clientFrame(0x8b, Buffer.from('x'))], 1002],
  ['RSV1 set (no extension negotiated)', () => [clientFrame(0xc1, Buffer.from('"x"'))], 1002],
  ['RSV3 set', () => [clientFrame(0x91, Buffer.from('"x"'))], 1002],
  ['an unmasked frame', () => [clientFrame(0x81, Buffer.from('"x"'), { masked: false })], 1002],
  ['a ping of 126 bytes', () => [clientFrame(0x89, Buffer.alloc(126))], 1002],
  ['a fragmented ping', () => [clientFrame(0x09, Buffer.from('a')), clientFrame(0x80, Buffer.from('b'))], 1002],
  ['a continuation with no message started', () => [clientFrame(0x80, Buffer.from('x'))], 1002],
  ['a new message inside a fragmented one', () => [clientFrame(0x01, Buffer.from('"a')), clientFrame(0x81, Buffer.from('"b"'))], 1002],
  ['a close frame with a 1-byte payload', () => [clientFrame(0x88, Buffer.from([0x03]))], 1002],
  ['invalid UTF-8', () => [clientFrame(0x81, Buffer.from([0x22, 0xff, 0x22]))], 1007]
];

test('oversize and malformed frames: each connection is closed with 1009, 1002 or 1007 and removed with that code', TEST, async (t) => {
  const EACH = 3;
  await scenario(
    t,
    { maxPayload: 4 * KiB },
    async (target) => {
      const connections = byPort(target);
      const cases = BAD_FRAMES.flatMap((bad) => Array.from({ length: EACH }, () => bad));
      const raws = await inBatches(cases.length, 20, () => rawUpgraded(target.port));
      defer(t, () => raws.forEach((raw) => raw.destroy()));
      await until(() => connections.size === raws.length, `${raws.length} 'add' events`);
      raws.forEach((raw, i) => raw.socket.write(Buffer.concat(cases[i][1]())));
      await allClosedByServer(raws, 'clients that sent bad frames');
      await allRemoved(target, 'clients that sent bad frames');
      const wrong = [];
      raws.forEach((raw, i) => {
        const [what, , code] = cases[i];
        const sent = closeSent(raw)?.code;
        const connection = connections.get(raw.localPort);
        const info = target.seen.get(connection.id)?.infos[0];
        if (sent !== code || info?.code !== code || info?.wasClean !== false) {
          wrong.push(`${what}: sent close ${sent}, 'remove' ${JSON.stringify(info)}, expected ${code}`);
        }
      });
      assert.deepEqual(wrong, []);
    },
    { added: BAD_FRAMES.length * EACH }
  );
});

// --- Resets ---------------------------------------------------------------------------

test('1,000 abrupt resets: right after connecting, during the handshake and after the upgrade', TEST, async (t) => {
  const RESETS = 1000;
  let upgraded = 0;
  await scenario(
    t,
    {},
    async (target) => {
      await inBatches(RESETS, 50, async (i) => {
        const raw = rawConnection(target.port);
        try {
          await raw.connected;
        } catch {
          return;
        }
        switch (i % 4) {
          case 0: // as soon as it is connected
            raw.reset();
            break;
          case 1: // halfway through the request head
            raw.socket.write(requestHead(target.port).slice(0, 60), () => raw.reset());
            break;
          case 2: // the whole request, without waiting for the answer
            raw.socket.write(requestHead(target.port), () => raw.reset());
            break;
          default: {
            // After the upgrade, in the middle of a frame or between two.
            raw.socket.write(requestHead(target.port));
            await until(() => raw.received().includes('\r\n\r\n') || raw.socket.destroyed, 'the 101', 10000, 2);
            upgraded++;
            if (i % 8 === 3) raw.socket.write(clientFrame(0x81, Buffer.from('{"half":')).subarray(0, 9));
            raw.reset();
          }
        }
        await raw.closed;
      });
      t.diagnostic(`${upgraded} resets after the upgrade`);
      assert.equal(upgraded, RESETS / 4);
    },
    // Those reset after their 101, and perhaps some that sent the whole
    // request before theirs was written.
    { added: [RESETS / 4, RESETS / 2] }
  );
});

// --- Idle in the middle of a frame ------------------------------------------------------

// How far into a message a client stops, for good.
const IDLE_MID_FRAME = [
  ['after the first byte of a header', () => Buffer.from([0x81])],
  ['after a header, before its extended length', () => Buffer.from([0x82, 0x80 | 126])],
  ['after a header, before its mask key', () => Buffer.from([0x82, 0x80 | 100, 0, 0])],
  ['after 10 of 1,000 payload bytes', () => clientFrame(0x82, Buffer.alloc(1000)).subarray(0, 8 + 10)],
  ['after 50 KiB of a 100 KiB binary frame', () => clientFrame(0x82, Buffer.alloc(100 * KiB)).subarray(0, 14 + 50 * KiB)],
  ['between the fragments of a message', () => clientFrame(0x01, Buffer.from('"frag'))]
];

test('connections idle mid-frame are dropped by the heartbeat (1006) after two intervals', TEST, async (t) => {
  const interval = 200;
  const EACH = 3;
  await scenario(
    t,
    { heartbeatInterval: interval },
    async (target) => {
      const connections = byPort(target);
      const cases = IDLE_MID_FRAME.flatMap((c) => Array.from({ length: EACH }, () => c));
      const raws = await inBatches(cases.length, 20, () => rawUpgraded(target.port));
      defer(t, () => raws.forEach((raw) => raw.destroy()));
      await until(() => connections.size === raws.length, `${raws.length} 'add' events`);
      const startedAt = performance.now();
      raws.forEach((raw, i) => raw.socket.write(cases[i][1]()));
      await allClosedByServer(raws, 'clients idle mid-frame');
      const elapsed = performance.now() - startedAt;
      await allRemoved(target, 'clients idle mid-frame');
      const wrong = [];
      raws.forEach((raw, i) => {
        const info = target.seen.get(connections.get(raw.localPort).id).infos[0];
        if (info?.code !== 1006 || info.wasClean !== false) wrong.push(`${cases[i][0]}: ${JSON.stringify(info)}`);
      });
      assert.deepEqual(wrong, [], 'removed as silent clients: 1006, not clean');
      // The first ping comes half an interval in, and a client is dropped
      // two intervals after it last answered.
      assert.ok(elapsed >= 1.5 * interval, `all dropped ${Math.round(elapsed)} ms after they stopped`);
    },
    { added: IDLE_MID_FRAME.length * EACH }
  );
});

// --- Handshakes that do not end ---------------------------------------------------------

test('half-open handshakes are dropped after handshakeTimeout, with no answer', TEST, async (t) => {
  const CLIENTS = 60;
  const timeout = 300;
  await scenario(
    t,
    { handshakeTimeout: timeout },
    async (target) => {
      const startedAt = performance.now();
      const raws = await inBatches(CLIENTS, CLIENTS, async (i) => {
        const raw = rawConnection(target.port);
        await raw.connected;
        // A third send nothing at all, the others half a request head.
        if (i % 3 !== 0) raw.socket.write(requestHead(target.port).slice(0, 40 + i));
        return raw;
      });
      defer(t, () => raws.forEach((raw) => raw.destroy()));
      await allClosedByServer(raws, 'half-open handshakes');
      const elapsed = performance.now() - startedAt;
      assert.ok(elapsed >= timeout - 50, `dropped after ${Math.round(elapsed)} ms`);
      assert.deepEqual(raws.filter((raw) => raw.received().length > 0).map(statusLine), [], 'no answer');
    },
    { added: 0 }
  );
});

test('a verifyClient that never answers: the upgrades are dropped after handshakeTimeout, and late verdicts are ignored', TEST, async (t) => {
  const CLIENTS = 20;
  const pending = [];
  await scenario(
    t,
    {
      handshakeTimeout: 300,
      verifyClient: (info, cb) => {
        if (info.url.endsWith('?control')) cb(true);
        else pending.push(cb);
      }
    },
    async (target) => {
      const raws = await inBatches(CLIENTS, CLIENTS, async () => {
        const raw = rawConnection(target.port);
        await raw.connected;
        raw.socket.write(requestHead(target.port));
        return raw;
      });
      defer(t, () => raws.forEach((raw) => raw.destroy()));
      await allClosedByServer(raws, 'upgrades verifyClient never answered');
      assert.equal(pending.length, CLIENTS, 'verifyClient was asked for each');
      assert.deepEqual(raws.filter((raw) => raw.received().length > 0).map(statusLine), [], 'no answer');
      // Accepting now, after the timeout, lets nobody in.
      for (const cb of pending) cb(true);
      await delay(50);
      assert.equal(target.server.size, 1);
    },
    { added: 0 }
  );
});

test('a verifyClient that throws or rejects: each upgrade is answered 500 and the throw emitted as error', TEST, async (t) => {
  const CLIENTS = 20;
  let asked = 0;
  const target = await scenario(
    t,
    {
      verifyClient: async (info) => {
        if (info.url.endsWith('?control')) return true;
        asked++;
        if (info.url.endsWith('?reject')) await Promise.reject(new Error('verify rejects'));
        throw new Error('verify throws');
      }
    },
    async (target) => {
      const raws = await inBatches(CLIENTS, CLIENTS, async (i) => {
        const raw = rawConnection(target.port);
        await raw.connected;
        raw.socket.write(requestHead(target.port, i % 2 === 0 ? '/?reject' : '/'));
        return raw;
      });
      defer(t, () => raws.forEach((raw) => raw.destroy()));
      await until(() => raws.every((raw) => raw.received().includes('\r\n\r\n')), 'an answer to every upgrade');
      assert.deepEqual(
        [...new Set(raws.map(statusLine))],
        ['HTTP/1.1 500 Internal Server Error'],
        'every upgrade answered 500'
      );
      raws.forEach((raw) => raw.destroy());
      await until(() => target.errors.length === CLIENTS, `${CLIENTS} 'error' events`);
    },
    { added: 0, allowError: (err) => err.message === 'verify throws' || err.message === 'verify rejects' }
  );
  assert.equal(asked, CLIENTS);
  assert.deepEqual(
    target.errors.map((err) => err.message).sort(),
    [...Array(CLIENTS / 2).fill('verify rejects'), ...Array(CLIENTS / 2).fill('verify throws')]
  );
});

// --- User callbacks that throw ----------------------------------------------------------

/** `count` ws clients to `url`; each sends `{ control: 'probe' }` and waits for it back. */
async function probingClients(t, url, count) {
  const clients = await inBatches(count, count, async () => {
    const client = new WebSocket(url);
    client.on('error', () => {});
    defer(t, () => client.terminate());
    await within(new Promise((resolve) => client.once('open', resolve)), 10000, 'a client to open');
    return client;
  });
  await Promise.all(
    clients.map((client) => {
      const back = new Promise((resolve) => client.once('message', resolve));
      client.send(JSON.stringify({ control: 'probe' }));
      return within(back, 10000, "a client's echo");
    })
  );
  return clients;
}

test("a throwing 'add' listener: every throw is emitted as 'error', the other listeners run, and serving goes on", TEST, async (t) => {
  const CLIENTS = 20;
  let later = 0;
  const target = await scenario(
    t,
    {},
    async (target) => {
      target.server.on('add', () => {
        throw new Error('add listener throws');
      });
      target.server.on('add', () => later++);
      // Every client is served after its 'add' threw: its probe comes back.
      const clients = await probingClients(t, target.url, CLIENTS);
      assert.equal(later, CLIENTS, "the listener after the throwing one heard every 'add'");
      for (const client of clients) client.close();
    },
    { added: CLIENTS, allowError: (err) => err.message === 'add listener throws' }
  );
  assert.equal(target.errors.length, CLIENTS);
});

test("a throwing messages.forEach callback: every throw is emitted as 'error', the other subscribers get every message", TEST, async (t) => {
  const CLIENTS = 10;
  const EACH = 20;
  let counted = 0;
  const target = await scenario(
    t,
    {},
    async (target) => {
      const throwing = target.server.messages.forEach((message) => {
        if ('boom' in message) throw new Error('forEach throws');
      });
      const counting = target.server.messages.forEach((message) => {
        if ('boom' in message) counted++;
      });
      defer(t, () => {
        throwing.dispose();
        counting.dispose();
      });
      const clients = await probingClients(t, target.url, CLIENTS);
      for (const client of clients) {
        for (let i = 0; i < EACH; i++) client.send(JSON.stringify({ boom: i }));
      }
      await until(() => counted === CLIENTS * EACH, `${CLIENTS * EACH} messages at the other subscriber`);
      // And the throwing subscriber's own clients are still served.
      await probingClients(t, target.url, 1).then(([client]) => client.close());
      for (const client of clients) client.close();
    },
    { added: CLIENTS + 1, allowError: (err) => err.message === 'forEach throws' }
  );
  assert.equal(target.errors.length, CLIENTS * EACH);
});

// --- Worker threads ---------------------------------------------------------------------

// The addon's runtime is shared by the whole process: a Server or Socket
// of a terminated worker must end with it (src/teardown.rs), not keep
// serving or reconnecting.

/** A worker running `source` (CommonJS, `PKG` and `workerData` in scope); its messages in `messages`. */
function startWorker(t, source, workerData = {}) {
  const worker = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
    const PKG = workerData.PKG;
    ${source}`,
    { eval: true, workerData: { ...workerData, PKG } }
  );
  const messages = [];
  worker.on('message', (message) => messages.push(message));
  const errors = [];
  worker.on('error', (err) => errors.push(err));
  const exited = new Promise((resolve) => worker.once('exit', resolve));
  defer(t, () => worker.terminate());
  return {
    worker,
    messages,
    errors,
    exited,
    waitFor: (type, ms = 10000) =>
      until(() => messages.find((m) => m.type === type), `'${type}' from the worker`, ms, 5)
  };
}

test('a Server in a worker thread terminated while its connections are open: its clients see the end, the process goes on', TEST, async (t) => {
  await scenario(
    t,
    {},
    async () => {
      const inWorker = startWorker(
        t,
        `const { Server } = require(PKG);
        const server = new Server({ port: 0, host: '127.0.0.1', heartbeatInterval: 100 });
        server.messages.forEach((message, connection) => connection.send(message));
        server.on('add', () => parentPort.postMessage({ type: 'add' }));
        server.ready.then(({ port }) => parentPort.postMessage({ type: 'listening', port }));`
      );
      const { port } = await inWorker.waitFor('listening');
      const url = `ws://127.0.0.1:${port}/`;
      // Clients exchanging messages, one in the middle of a frame, one in
      // the middle of its handshake.
      const clients = await probingClients(t, url, 3);
      const closes = clients.map((client) => new Promise((resolve) => client.once('close', resolve)));
      const midFrame = await rawUpgraded(port);
      midFrame.socket.write(clientFrame(0x82, Buffer.alloc(1000)).subarray(0, 100));
      const midHandshake = rawConnection(port);
      await midHandshake.connected;
      midHandshake.socket.write(requestHead(port).slice(0, 50));
      defer(t, () => [midFrame, midHandshake].forEach((raw) => raw.destroy()));
      await until(() => inWorker.messages.filter((m) => m.type === 'add').length === 4, "the worker's 4 'add' events");
      // Busy while terminated: a flood of echoes on its way.
      for (const client of clients) for (let i = 0; i < 100; i++) client.send(JSON.stringify({ i }));

      const code = await inWorker.worker.terminate();
      t.diagnostic(`the worker exited with ${code}`);
      await within(Promise.all(closes), 5000, "the worker's clients to see their connections end");
      await within(Promise.all([midFrame.closed, midHandshake.closed]), 5000, 'the raw clients to be closed');
      // Nothing listens on the port any more.
      const probe = rawConnection(port);
      await assert.rejects(probe.connected, 'the port is closed');
      assert.deepEqual(inWorker.errors, []);
    },
    { added: 0 }
  );
});

test('a Socket in a worker thread terminated while open: the server removes its connection once', TEST, async (t) => {
  await scenario(
    t,
    {},
    async (target) => {
      const inWorker = startWorker(
        t,
        `const { Socket } = require(PKG);
        for (let i = 0; i < 2; i++) {
          const socket = new Socket(workerData.url, { minReconnectionDelay: 10 });
          socket.messages.forEach((message) => {
            if (message.ping) socket.send({ control: 'from the worker' });
            else if (message.control !== undefined) parentPort.postMessage({ type: 'echo', i });
          });
          socket.on('open', () => parentPort.postMessage({ type: 'open', i }));
        }`,
        { url: target.url }
      );
      const adds = [];
      target.onAdd = (connection) => adds.push(connection);
      await until(() => adds.length === 2, "the worker's two connections");
      // Each Socket answers the server, and the server's echo reaches it.
      for (const connection of adds) connection.send({ ping: true });
      await until(() => inWorker.messages.filter((m) => m.type === 'echo').length === 2, 'round trips to the worker');

      // The server floods them while the worker is terminated.
      for (let i = 0; i < 200; i++) for (const connection of adds) connection.send({ i });
      const code = await inWorker.worker.terminate();
      t.diagnostic(`the worker exited with ${code}`);
      await until(() => adds.every((c) => target.seen.get(c.id).removes > 0), "'remove' for the worker's connections", 5000);
      t.diagnostic(`removed with ${adds.map((c) => JSON.stringify(target.seen.get(c.id).infos[0]))}`);
      assert.deepEqual(inWorker.errors, []);
    },
    { added: 2 }
  );
});
