'use strict';

// The `cluster` option: Servers joined to one Redis pub/sub channel share
// their broadcasts (README, "Cluster: broadcast across processes and
// machines"). Each test starts its own redis-server (./redis-kit.js) on a
// port the OS picked, and Servers and ws clients on 127.0.0.1; the last
// tests run Servers in their own processes (fixtures/cluster-node.js):
// three on three ports, then two sharing one port (reusePort). .ci/run installs redis-server; without it the
// tests that need Redis are skipped, saying so.

const assert = require('node:assert/strict');
const { fork } = require('node:child_process');
const path = require('node:path');
const { describe, test } = require('node:test');

const { Server } = require('..');
const { closeAfter, connect, defer, delay, next, openClient, until, within } = require('./helpers');
const { hasRedis, freePort, startRedis } = require('./redis-kit');

const skip = hasRedis()
  ? false
  : 'redis-server is not installed (apt-get install -y redis-server; .ci/run does)';

const CHILD = path.join(__dirname, 'fixtures', 'cluster-node.js');

// How long a message that must not come is waited for.
const QUIET = 300;

// The README's promises, and bounds on them with a 5x margin for a loaded
// machine. A node rejoins after waiting 50 ms doubling to 1 s at most, so
// once Redis answers again it is 'up' within about REJOIN_MS; a Redis that
// stops answering misses a ping (sent every second, due within a second),
// so it is found within about DETECT_MS. Without the ping a frozen Redis
// would go unseen (its sockets stay open); without the rejoin, no 'up'.
const REJOIN_MS = 1000;
const DETECT_MS = 2000;
const MARGIN = 5;

let channels = 0;
/** A channel of its own for each test. */
const freshChannel = () => `mytosis-websocket-test-${process.pid}-${++channels}`;

/**
 * A Server on 127.0.0.1 joined to `redis` (a URL) on `channel`, closed when
 * the test ends. Its 'cluster' events and errors are recorded from the
 * start, in `node.states` (`{ state, lost }`) and `node.errors`.
 */
function startNode(t, redis, channel, { errorListener = true } = {}) {
  const server = new Server({ port: 0, host: '127.0.0.1', cluster: { redis, channel } });
  closeAfter(t, server);
  const node = { server, states: [], errors: [] };
  server.on('cluster', (event) => node.states.push(event));
  if (errorListener) server.on('error', (err) => node.errors.push(err));
  return node;
}

/** The `n`th (from 0) 'cluster' event of a node, once it came; it must be `state`. */
async function clusterEvent(node, n, state, ms = 10000) {
  await until(() => node.states.length > n, `'cluster' event #${n + 1} (${state})`, ms);
  assert.equal(node.states[n].state, state, `'cluster' event #${n + 1}: ${JSON.stringify(node.states)}`);
  return node.states[n];
}

/**
 * A redis-server, two Servers joined on a channel of their own (both up),
 * and a ws client on each.
 */
async function twoJoinedNodes(t) {
  const redis = await startRedis(t);
  const channel = freshChannel();
  const a = startNode(t, redis.url, channel);
  const b = startNode(t, redis.url, channel);
  await clusterEvent(a, 0, 'up');
  await clusterEvent(b, 0, 'up');
  await Promise.all([a.server.ready, b.server.ready]);
  const a1 = await openClient(t, a.server);
  const b1 = await openClient(t, b.server);
  await until(() => a.server.size === 1 && b.server.size === 1, 'a client on each Server');
  return { redis, a, b, a1, b1 };
}

/** The port-only stand-in for a Server that helpers.openClient needs. */
const at = (port) => ({ address: () => ({ port }) });

/** Parse the JSON text messages `next` returned. */
const parsed = (messages) =>
  messages.map(({ data, binary }) => {
    assert.equal(binary, false);
    return JSON.parse(data);
  });

/** Assert that none of `clients` receives anything within QUIET ms. */
async function quiet(clients) {
  await delay(QUIET);
  await Promise.all(
    clients.map((client, i) =>
      assert.rejects(next(client, 1, 0), /Timed out/, `client ${i} received a message too many`)
    )
  );
}

describe('the cluster option', () => {
  const bad = [
    ['a URL string instead of an object', 'redis://redis.example:6379'],
    ['null', null],
    ['an array', ['redis://redis.example:6379']],
    ['no redis', {}],
    ['redis not a string', { redis: 6379 }],
    ['redis not a URL', { redis: 'redis.example:6379' }],
    ['redis with another protocol', { redis: 'http://redis.example:6379' }],
    ['redis without a host', { redis: 'redis:///0' }],
    // Refused by the addon's Redis client.
    ['redis with a database that is not a number', { redis: 'redis://redis.example:6379/zero' }],
    ['an empty channel', { redis: 'redis://redis.example:6379', channel: '' }],
    ['a channel not a string', { redis: 'redis://redis.example:6379', channel: 7 }],
    ['an unknown key', { redis: 'redis://redis.example:6379', db: 2 }]
  ];
  for (const [name, cluster] of bad) {
    test(`refuses ${name} at construction`, () => {
      assert.throws(
        () => new Server({ port: 0, host: '127.0.0.1', cluster }),
        (err) => err instanceof TypeError && err.code === 'ERR_INVALID_OPTION' && /cluster/.test(err.message)
      );
    });
  }

  test('never quotes the URL, which may carry a password', () => {
    for (const cluster of ['redis://:hunter2@127.0.0.1', { redis: 'http://:hunter2@127.0.0.1' }]) {
      assert.throws(
        () => new Server({ port: 0, cluster }),
        (err) => err.code === 'ERR_INVALID_OPTION' && !err.message.includes('hunter2')
      );
    }
  });
});

describe('a cluster on one Redis', { skip }, () => {
  test('send reaches the clients of both Servers once; except and group sends stay local', async (t) => {
    const redis = await startRedis(t);
    const channel = freshChannel();
    const a = startNode(t, redis.url, channel);
    const b = startNode(t, redis.url, channel);
    assert.deepEqual(await clusterEvent(a, 0, 'up'), { state: 'up', lost: 0 });
    assert.deepEqual(await clusterEvent(b, 0, 'up'), { state: 'up', lost: 0 });
    await Promise.all([a.server.ready, b.server.ready]);

    const { client: a1, connection: onA1 } = await connect(t, a.server);
    const a2 = await openClient(t, a.server);
    const b1 = await openClient(t, b.server);
    const b2 = await openClient(t, b.server);
    await until(() => a.server.size === 2 && b.server.size === 2, 'two clients on each Server');
    const all = [a1, a2, b1, b2];

    // The local count; every client of both once.
    assert.equal(a.server.send({ n: 1 }), 2);
    for (const client of all) assert.deepEqual(parsed(await next(client)), [{ n: 1 }]);
    await quiet(all);
    // size and 'add' stay local.
    assert.equal(a.server.size, 2);
    assert.equal(b.server.size, 2);

    // except skips that member of A only.
    assert.equal(a.server.send({ n: 2 }, { except: onA1 }), 1);
    for (const client of [a2, b1, b2]) assert.deepEqual(parsed(await next(client)), [{ n: 2 }]);
    await quiet(all);

    // Binary, from B this time.
    const bytes = Buffer.from([1, 2, 3, 0, 255]);
    assert.equal(b.server.send(bytes), 2);
    for (const client of all) {
      const [message] = await next(client);
      assert.equal(message.binary, true);
      assert.deepEqual(message.data, bytes);
    }
    await quiet(all);

    // A group's send (filter), and a connection's, stay on their node.
    assert.equal(a.server.filter(() => true).send({ n: 'group' }), 2);
    onA1.send({ n: 'one' });
    assert.deepEqual(parsed(await next(a1, 2)), [{ n: 'group' }, { n: 'one' }]);
    assert.deepEqual(parsed(await next(a2)), [{ n: 'group' }]);
    await quiet(all);

    // 200 sends from A arrive in order, once, at B's clients (and A's).
    const sent = [];
    for (let i = 0; i < 200; i++) {
      sent.push({ i });
      assert.equal(a.server.send({ i }), 2);
    }
    for (const client of all) assert.deepEqual(parsed(await next(client, 200)), sent);
    await quiet(all);

    // The counters: A published its 1 + 1 + 200 broadcasts, B its one.
    // (published is counted once Redis has answered the publisher).
    await until(() => b.server.stats().clusterReceived === 202, 'B to count 202 received');
    await until(() => a.server.stats().clusterPublished === 202, 'A to count 202 published');
    await until(() => b.server.stats().clusterPublished === 1, 'B to count 1 published');
    const stats = a.server.stats();
    assert.equal(stats.clusterReceived, 1);
    assert.equal(stats.clusterLost, 0);
    assert.equal(stats.clusterMissed, 0);
    assert.deepEqual(a.errors, []);
    assert.deepEqual(b.errors, []);
    assert.equal(a.states.length, 1, 'no other cluster event');
  });

  test('a Redis restart: ERR_CLUSTER and down, then up; local sends go on meanwhile', async (t) => {
    const { redis, a, b, a1, b1 } = await twoJoinedNodes(t);

    // restart(): back on the same port.
    await redis.restart();
    let answering = Date.now();
    for (const node of [a, b]) {
      await clusterEvent(node, 1, 'down');
      assert.deepEqual(node.states[1], { state: 'down', lost: 0 });
      assert.deepEqual(await clusterEvent(node, 2, 'up'), { state: 'up', lost: 0 });
      assert.equal(node.errors.length, 1, 'one error per outage');
      assert.equal(node.errors[0].code, 'ERR_CLUSTER');
      assert.ok(node.errors[0] instanceof Error);
      assert.equal(typeof node.errors[0].message, 'string');
    }
    assert.ok(
      Date.now() - answering < REJOIN_MS * MARGIN,
      `up ${Date.now() - answering} ms after Redis answered`
    );
    assert.equal(a.server.send({ after: 'restart' }), 1);
    for (const client of [a1, b1]) assert.deepEqual(parsed(await next(client, 1, 2000)), [{ after: 'restart' }]);
    await quiet([a1, b1]);

    // stop(), then start() later: what A sends meanwhile reaches its own
    // client, not B's, and is counted as lost on the next 'up'.
    await redis.stop();
    await clusterEvent(a, 3, 'down');
    await clusterEvent(b, 3, 'down');
    assert.equal(a.server.send({ during: 'outage' }), 1);
    assert.deepEqual(parsed(await next(a1)), [{ during: 'outage' }]);
    await redis.start();
    answering = Date.now();
    assert.deepEqual(await clusterEvent(a, 4, 'up'), { state: 'up', lost: 1 });
    assert.deepEqual(await clusterEvent(b, 4, 'up'), { state: 'up', lost: 0 });
    assert.equal(a.errors.length, 2);
    assert.equal(b.errors.length, 2);
    // B's send after 'up' reaches A's client within the rejoin bound of
    // Redis answering.
    assert.equal(b.server.send({ after: 'outage' }), 1);
    await within(
      Promise.all([a1, b1].map((client) => next(client))),
      Math.max(0, REJOIN_MS * MARGIN - (Date.now() - answering)),
      'the broadcast after the outage'
    ).then((received) => {
      for (const messages of received) assert.deepEqual(parsed(messages), [{ after: 'outage' }]);
    });
    await quiet([a1, b1]);
    assert.equal(a.server.stats().clusterLost, 1);
    assert.equal(b.server.stats().clusterLost, 0);
    // B sees the one A lost as a gap once A's next broadcast arrives.
    assert.equal(a.server.send({ after: 'outage', from: 'a' }), 1);
    for (const client of [a1, b1]) {
      assert.deepEqual(parsed(await next(client)), [{ after: 'outage', from: 'a' }]);
    }
    assert.equal(b.server.stats().clusterMissed, 1);
    assert.equal(a.server.stats().clusterMissed, 0);
  });

  test('a Redis that stops answering (SIGSTOP) is an outage, found by the ping', async (t) => {
    const { redis, a, b, a1, b1 } = await twoJoinedNodes(t);

    // Its sockets stay open: only the missing answers tell (a ping every
    // second, answered within a second).
    redis.pause();
    const paused = Date.now();
    await clusterEvent(a, 1, 'down', DETECT_MS * MARGIN);
    await clusterEvent(b, 1, 'down', DETECT_MS * MARGIN);
    assert.ok(Date.now() - paused < DETECT_MS * MARGIN, `down ${Date.now() - paused} ms after Redis froze`);
    assert.deepEqual(
      [...a.errors, ...b.errors].map((err) => err.code),
      ['ERR_CLUSTER', 'ERR_CLUSTER']
    );
    // Local delivery never waits for Redis.
    assert.equal(a.server.send({ n: 'frozen' }), 1);
    assert.deepEqual(parsed(await next(a1, 1, 1000)), [{ n: 'frozen' }]);

    redis.resume();
    await clusterEvent(a, 2, 'up', REJOIN_MS * MARGIN);
    await clusterEvent(b, 2, 'up', REJOIN_MS * MARGIN);
    assert.equal(a.server.send({ n: 'thawed' }), 1);
    assert.deepEqual(parsed(await next(a1)), [{ n: 'thawed' }]);
    // 'frozen' reached B only if A's join attempt that Redis had left
    // hanging succeeded on resume: at most once, and in order.
    let [atB] = parsed(await next(b1));
    if (atB.n === 'frozen') [atB] = parsed(await next(b1));
    assert.deepEqual(atB, { n: 'thawed' });
    await quiet([a1, b1]);
  });

  test('a Redis absent at start: the Server serves, reports the outage and joins later', async (t) => {
    const redis = await startRedis(t, await freePort(), { started: false });
    const channel = freshChannel();
    const warnings = [];
    const onWarning = (warning) => warnings.push(warning);
    process.on('warning', onWarning);
    defer(t, () => process.off('warning', onWarning));
    const a = startNode(t, redis.url, channel);
    const b = startNode(t, redis.url, channel);
    // Without an 'error' listener, ERR_CLUSTER is a process warning.
    const c = startNode(t, redis.url, channel, { errorListener: false });

    await a.server.ready;
    assert.deepEqual(await clusterEvent(a, 0, 'down'), { state: 'down', lost: 0 });
    await clusterEvent(b, 0, 'down');
    await clusterEvent(c, 0, 'down');
    assert.deepEqual(
      a.errors.map((err) => err.code),
      ['ERR_CLUSTER']
    );
    await until(() => warnings.some((w) => w.code === 'ERR_CLUSTER'), 'the ERR_CLUSTER warning');

    const a1 = await openClient(t, a.server);
    await until(() => a.server.size === 1, "A's client");
    assert.equal(a.server.send({ n: 'alone' }), 1);
    assert.deepEqual(parsed(await next(a1)), [{ n: 'alone' }]);

    // Still retrying: a while later, still one error and one event each.
    await delay(1500);
    assert.equal(a.errors.length, 1);
    assert.equal(a.states.length, 1);

    await redis.start();
    assert.deepEqual(await clusterEvent(a, 1, 'up', 3000), { state: 'up', lost: 1 });
    await clusterEvent(b, 1, 'up', 3000);
    await clusterEvent(c, 1, 'up', 3000);
    const b1 = await openClient(t, b.server);
    await until(() => b.server.size === 1, "B's client");
    assert.equal(a.server.send({ n: 'together' }), 1);
    for (const client of [a1, b1]) assert.deepEqual(parsed(await next(client)), [{ n: 'together' }]);
    await quiet([a1, b1]);
  });

  test('three Server processes and 30 clients: every broadcast once, in order; a killed node costs only its own', async (t) => {
    const redis = await startRedis(t);
    const channel = freshChannel();
    const nodes = ['n0', 'n1', 'n2'].map((name) => spawnNode(t, redis.url, channel, name));
    for (const node of nodes) {
      node.port = (await node.next('listening')).port;
      assert.deepEqual(await node.next('cluster'), { type: 'cluster', state: 'up', lost: 0 });
    }

    // 30 clients, 10 on each node.
    const clients = [];
    for (let i = 0; i < 30; i++) {
      const node = nodes[i % 3];
      const client = await openClient(t, at(node.port));
      client.node = node.name;
      // A killed node's sockets may be reset: that is not this test's point.
      client.on('error', () => {});
      clients.push(client);
    }
    for (const node of nodes) {
      const deadline = Date.now() + 10000;
      for (;;) {
        node.child.send({ type: 'size' });
        const { size } = await node.next('size');
        if (size === 10) break;
        assert.ok(Date.now() < deadline, `10 clients on ${node.name}, ${size} so far`);
        await delay(10);
      }
    }

    // Each node broadcasts 100 messages, all at once.
    const COUNT = 100;
    for (const node of nodes) node.child.send({ type: 'broadcast', count: COUNT });
    for (const node of nodes) {
      const { counts } = await node.next('sent');
      assert.deepEqual(counts, Array(COUNT).fill(10), `${node.name}'s sends return its local count`);
    }
    await Promise.all(clients.map((client) => expectFrom(client, nodes, COUNT)));
    await quiet(clients);

    // SIGKILL one node: the other two keep delivering to their clients.
    const [alive0, killed, alive1] = nodes;
    await killed.kill();
    const survivors = clients.filter((client) => client.node !== killed.name);
    for (const node of [alive0, alive1]) node.child.send({ type: 'broadcast', count: COUNT });
    await Promise.all(survivors.map((client) => expectFrom(client, [alive0, alive1], COUNT)));
    await quiet(survivors);
    for (const node of [alive0, alive1]) assert.equal(node.inbox.filter((m) => m.type === 'error').length, 0);
  });

  test('two processes on one port (reusePort) and one channel: every client gets every broadcast of both once', async (t) => {
    const redis = await startRedis(t);
    const channel = freshChannel();
    // The first takes a port the OS picks, with SO_REUSEPORT; the second
    // binds the same one.
    const first = spawnNode(t, redis.url, channel, 'p0', 0);
    const { port } = await first.next('listening');
    const second = spawnNode(t, redis.url, channel, 'p1', port);
    assert.equal((await second.next('listening')).port, port);
    const nodes = [first, second];
    for (const node of nodes) assert.deepEqual(await node.next('cluster'), { type: 'cluster', state: 'up', lost: 0 });

    // The kernel spreads the connections to the port over both processes
    // (by a hash of each connection's addresses): 20 clients, and 20 more
    // while one process has none.
    const clients = [];
    let sizes;
    for (let round = 1; ; round++) {
      while (clients.length < 20 * round) {
        const client = await openClient(t, at(port));
        client.node = `port ${port}`; // which process: the kernel's choice
        client.on('error', () => {});
        clients.push(client);
      }
      const deadline = Date.now() + 10000;
      for (;;) {
        sizes = await Promise.all(nodes.map((node) => sizeOf(node)));
        if (sizes[0] + sizes[1] === clients.length) break;
        assert.ok(Date.now() < deadline, `${clients.length} clients over both processes, ${sizes} so far`);
        await delay(10);
      }
      if (sizes.every((size) => size > 0)) break;
      assert.ok(round < 5, `${clients.length} clients, all on one process: ${sizes}`);
    }

    // Each process broadcasts 50 messages, at once; its sends return its
    // own count of clients, and every client of both gets all 100.
    const COUNT = 50;
    for (const node of nodes) node.child.send({ type: 'broadcast', count: COUNT });
    for (const [i, node] of nodes.entries()) {
      const { counts } = await node.next('sent');
      assert.deepEqual(counts, Array(COUNT).fill(sizes[i]), `${node.name}'s sends return its local count`);
    }
    await Promise.all(clients.map((client) => expectFrom(client, nodes, COUNT)));
    await quiet(clients);
    for (const node of nodes) assert.deepEqual(node.inbox.filter((m) => m.type === 'error'), []);
  });
});

/** How many clients a node of spawnNode has now. */
async function sizeOf(node) {
  node.child.send({ type: 'size' });
  return (await node.next('size')).size;
}

/**
 * `count` messages `{ from, seq }` from each of `nodes` at `client`, in any
 * interleaving but each node's in order 0..count-1, and nothing else.
 */
async function expectFrom(client, nodes, count) {
  const messages = parsed(await next(client, nodes.length * count, 15000));
  for (const node of nodes) {
    assert.deepEqual(
      messages.filter((m) => m.from === node.name).map((m) => m.seq),
      Array.from({ length: count }, (_, i) => i),
      `${node.name}'s messages at a client of ${client.node}`
    );
  }
}

/**
 * Fork fixtures/cluster-node.js, on `port` with reusePort when it is given;
 * killed after the test.
 *
 * @return {Object} `{ name, child, inbox, next(type), kill() }`: `next`
 *     resolves with the next message of that type
 */
function spawnNode(t, redis, channel, name, port) {
  const args = [redis, channel, name, ...(port === undefined ? [] : [String(port)])];
  const child = fork(CHILD, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const inbox = [];
  const waiting = [];
  child.on('message', (message) => {
    const index = waiting.findIndex((w) => w.type === message.type);
    if (index === -1) inbox.push(message);
    else waiting.splice(index, 1)[0].resolve(message);
  });
  const kill = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  };
  defer(t, kill);
  const next = (type, ms = 10000) => {
    const index = inbox.findIndex((message) => message.type === type);
    if (index !== -1) return Promise.resolve(inbox.splice(index, 1)[0]);
    return within(new Promise((resolve) => waiting.push({ type, resolve })), ms, `${type} from ${name}`);
  };
  return { name, child, inbox, next, kill };
}
