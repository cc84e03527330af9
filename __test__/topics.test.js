'use strict';

// Topics: `connection.subscribe(topic)`, `unsubscribe(topic)` and
// `server.publish(topic, message, { except })` (README, "Topics"), on one
// Server with ws clients, and across the Servers of a cluster on a real
// redis-server (./redis-kit.js; skipped, saying so, without one).

const assert = require('node:assert/strict');
const { describe, test } = require('node:test');

const { Server } = require('..');
const { closeAfter, connect, delay, next, startServer, until } = require('./helpers');
const { hasRedis, startRedis } = require('./redis-kit');

// How long a message that must not come is waited for.
const QUIET = 300;

/** The JSON values of the text messages `next` returned. */
const parsed = (messages) => messages.map(({ data }) => JSON.parse(data));

/** Assert that none of `clients` receives anything within QUIET ms. */
async function quiet(clients) {
  await delay(QUIET);
  await Promise.all(clients.map((client) => assert.rejects(next(client, 1, 0), /Timed out/)));
}

/** `count` ws clients of `server`, with their server-side connections. */
async function clients(t, server, count) {
  const opened = [];
  for (let i = 0; i < count; i++) opened.push(await connect(t, server));
  return opened;
}

describe('topics on one Server', () => {
  test('publish reaches the subscribers only, but those in except, and returns how many', async (t) => {
    const server = await startServer(t);
    const [a, b, c] = await clients(t, server, 3);
    assert.equal(a.connection.subscribe('room'), true);
    assert.equal(a.connection.subscribe('room'), false, 'a member already');
    assert.equal(b.connection.subscribe('room'), true);
    assert.equal(c.connection.subscribe('other'), true);

    assert.equal(server.publish('room', { to: 'room' }), 2);
    assert.equal(server.publish('room', 'not a', { except: a.connection }), 1);
    assert.equal(server.publish('room', 'nobody', { except: [a.connection, b.connection] }), 0);
    assert.equal(server.publish('empty', 'nobody'), 0);
    assert.equal(server.publish('other', Buffer.from([1, 2])), 1);

    assert.deepEqual(parsed(await next(a.client)), [{ to: 'room' }]);
    assert.deepEqual(parsed(await next(b.client, 2)), [{ to: 'room' }, 'not a']);
    const [binary] = await next(c.client);
    assert.equal(binary.binary, true);
    assert.deepEqual(binary.data, Buffer.from([1, 2]));
    await quiet([a.client, b.client, c.client]);
  });

  test('unsubscribe leaves the topic; a connection that ends leaves all of its topics', async (t) => {
    const server = await startServer(t);
    const [a, b] = await clients(t, server, 2);
    for (const topic of ['x', 'y']) {
      a.connection.subscribe(topic);
      b.connection.subscribe(topic);
    }
    assert.equal(b.connection.unsubscribe('x'), true);
    assert.equal(b.connection.unsubscribe('x'), false, 'not a member any more');
    assert.equal(server.publish('x', 1), 1);
    assert.deepEqual(parsed(await next(a.client)), [1]);

    const removed = new Promise((resolve) => server.once('remove', resolve));
    a.client.close();
    await removed;
    await until(() => server.publish('y', 'who') === 1, 'the ended connection to leave y');
    assert.equal(server.publish('x', 'who'), 0);
    assert.equal(a.connection.subscribe('x'), false, 'an ended connection joins nothing');
  });

  test('a topic must be a non-empty string of at most 1024 UTF-8 bytes', async (t) => {
    const server = await startServer(t);
    const [{ connection }] = await clients(t, server, 1);
    for (const topic of [undefined, 7, null, {}]) {
      for (const call of [() => connection.subscribe(topic), () => server.publish(topic, 1)]) {
        assert.throws(call, (err) => err instanceof TypeError && err.code === 'ERR_INVALID_ARG_TYPE');
      }
    }
    for (const topic of ['', 'é'.repeat(513)]) {
      for (const call of [() => connection.unsubscribe(topic), () => server.publish(topic, 1)]) {
        assert.throws(call, (err) => err instanceof RangeError && err.code === 'ERR_INVALID_ARG_VALUE');
      }
    }
    assert.equal(connection.subscribe('é'.repeat(512)), true, '1024 bytes');
  });
});

describe('topics across a cluster', { skip: hasRedis() ? false : 'redis-server is not installed (.ci/run installs it)' }, () => {
  test("publish reaches each node's subscribers once; except stays on the publishing node", async (t) => {
    const redis = await startRedis(t);
    const channel = `mytosis-websocket-topics-${process.pid}`;
    const nodes = [0, 1].map(() => {
      const server = new Server({ port: 0, host: '127.0.0.1', cluster: { redis: redis.url, channel } });
      closeAfter(t, server);
      const up = new Promise((resolve) => server.once('cluster', resolve));
      return { server, up };
    });
    for (const { server, up } of nodes) {
      await server.ready;
      assert.equal((await up).state, 'up');
    }
    const [a, b] = nodes.map((node) => node.server);
    const [a1, a2] = await clients(t, a, 2);
    const [b1, b2] = await clients(t, b, 2);
    a1.connection.subscribe('room');
    a2.connection.subscribe('room');
    b1.connection.subscribe('room');
    const all = [a1, a2, b1, b2].map(({ client }) => client);

    assert.equal(a.publish('room', { n: 1 }, { except: a2.connection }), 1);
    assert.deepEqual(parsed(await next(a1.client)), [{ n: 1 }]);
    assert.deepEqual(parsed(await next(b1.client)), [{ n: 1 }]);
    await quiet(all);

    // From B, 100 in order; broadcasts and publications share one order.
    const sent = [];
    for (let i = 0; i < 100; i++) {
      sent.push(i);
      if (i % 10 === 0) b.send(i);
      else b.publish('room', i);
    }
    for (const { client } of [a1, a2, b1]) assert.deepEqual(parsed(await next(client, 100)), sent);
    assert.deepEqual(parsed(await next(b2.client, 10)), sent.filter((i) => i % 10 === 0));
    await quiet(all);
  });
});
