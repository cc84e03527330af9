'use strict';

const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const { EventEmitter, errorMonitor } = require('node:events');
const path = require('node:path');
const { describe, it } = require('node:test');

const ConnectionGroup = require('../lib/connection-group');
const Stream = require('../lib/stream');
const { kMembers, kNativeOwner } = require('../lib/symbols');
const { STAND_INS, envFor, fixture, runFileOn, runScriptOn } = require('./bases');
const {
  next,
  openClient,
  openInOrder,
  localPort,
  startServer,
  until
} = require('./helpers');

// Set when this file runs again on a stand-in `mytosis` (see the end): the
// base class our groups extend then.
const Base = fixture ? require('mytosis').ConnectionGroup : EventEmitter;

// A connection as the Mytosis interface describes it. `receive()` pushes a
// message as if it came from the peer; `observers` counts open subscriptions
// to its `messages`.
function fakeConnection(id, { type = 'websocket', owner } = {}) {
  let push = null;
  const connection = {
    id,
    type,
    sent: [],
    observers: 0,
    messages: new Stream((p) => {
      push = p;
      connection.observers++;
      return () => {
        push = null;
        connection.observers--;
      };
    }),
    send(message) {
      connection.sent.push(message);
      return true;
    },
    receive(message) {
      push?.(message, 'a sender that is not the connection');
    }
  };
  if (owner !== undefined) connection[kNativeOwner] = owner;
  return connection;
}

// A native Server as `send` sees it: `encode` refuses what `refuses` says
// (a BigInt by default), `sendTo` records its calls.
function fakeOwner(name, { refuses = (message) => typeof message === 'bigint' } = {}) {
  const owner = {
    name,
    calls: [],
    encode(message) {
      if (refuses(message)) throw new TypeError(`${name} cannot encode it`);
      return message;
    },
    sendTo(connections, payload) {
      owner.calls.push([connections.map((c) => c.id), payload]);
      return connections.length;
    }
  };
  return owner;
}

function groupOf(...connections) {
  const group = new ConnectionGroup();
  for (const connection of connections) group.add(connection);
  return group;
}

// The events of a group: ['add', id] and ['remove', id, ...the other
// arguments], so a listener given no details shows none.
function record(group) {
  const events = [];
  group.on('add', (connection) => events.push(['add', connection.id]));
  group.on('remove', (connection, ...details) =>
    events.push(['remove', connection.id, ...details])
  );
  return events;
}

// A script's stdout lines, run with `node -e` in this process's environment.
function runScript(script) {
  const env = { ...process.env };
  delete env.NODE_TEST_CONTEXT;
  const child = spawnSync(process.execPath, ['-e', script], { env, encoding: 'utf8' });
  assert.equal(child.stderr, '');
  return child.stdout.trim().split('\n');
}

const groupPath = JSON.stringify(require.resolve('../lib/connection-group'));

function collect(group) {
  const seen = [];
  const subscription = group.messages.forEach((message, sender) =>
    seen.push([message, sender.id])
  );
  return { seen, subscription };
}

describe('ConnectionGroup', () => {
  it('extends the base class picked at load', () => {
    assert.ok(new ConnectionGroup() instanceof Base);
  });

  it('keeps Node EventEmitter semantics', () => {
    const group = new ConnectionGroup();
    const order = [];
    group.on('newListener', (name) => order.push(`new ${name}`));
    group.on('x', () => order.push('on'));
    group.prependListener('x', () => order.push('prepended'));
    group.once('x', () => order.push('once'));
    group.emit('x');
    group.emit('x');

    assert.deepEqual(order, [
      'new x',
      'new x',
      'new x',
      'prepended',
      'on',
      'once',
      'prepended',
      'on'
    ]);
    assert.equal(group.setMaxListeners(1), group);
    assert.throws(() => group.emit('error', new Error('unhandled')), {
      message: 'unhandled'
    });
  });

  it('emit passes the arguments and `this`, and tells whether anybody listened', () => {
    const group = new ConnectionGroup();
    const calls = [];
    group.on('x', function (...args) {
      calls.push([this, args]);
    });
    const monitored = [];
    group.on(errorMonitor, (err) => monitored.push(err));
    group.on('error', () => {});

    assert.equal(group.emit('x', 1, 2), true);
    assert.equal(group.emit('nobody'), false);
    assert.deepEqual(calls, [[group, [1, 2]]]);
    const err = new Error('watched');
    group.emit('error', err);
    assert.deepEqual(monitored, [err]);
  });

  describe('emit with a throwing listener', () => {
    it("calls every listener, then reports each throw to 'error'", () => {
      const group = new ConnectionGroup();
      const log = [];
      group.on('x', () => {
        log.push('first');
        throw new Error('first failed');
      });
      group.on('x', () => log.push('second'));
      group.on('x', () => {
        log.push('third');
        throw new Error('third failed');
      });
      group.on('error', (err) => log.push(`error: ${err.message}`));

      assert.equal(group.emit('x'), true);
      assert.deepEqual(log, [
        'first',
        'second',
        'third',
        'error: first failed',
        'error: third failed'
      ]);
    });

    it('does not keep groups made later from hearing of members', () => {
      const a = fakeConnection('a');
      const source = new ConnectionGroup();
      const errors = [];
      source.on('error', (err) => errors.push(err.message));
      source.on('add', () => {
        throw new Error('user listener failed');
      });
      const union = source.union(new ConnectionGroup());
      const { seen } = collect(source);

      assert.equal(source.add(a), a);
      assert.equal(union.has(a), true, 'the union heard of the member');
      a.receive('hello');
      assert.deepEqual(seen, [['hello', 'a']], 'the messages stream follows it');
      assert.deepEqual(errors, ['user listener failed']);
    });

    it("rethrows asynchronously without an 'error' listener, and a throwing 'error' listener", () => {
      const lines = runScript(`
        const ConnectionGroup = require(${groupPath});
        const log = (line) => process.stdout.write(line + '\\n');
        process.on('uncaughtException', (err) => log('uncaught ' + err.message));

        const group = new ConnectionGroup();
        group.on('add', () => { throw new Error('first'); });
        group.on('add', (connection) => log('second heard ' + connection.id));
        group.add({ id: 'a' });
        log('add returned');

        const other = new ConnectionGroup();
        other.on('error', (err) => { throw new Error('error listener got ' + err.message); });
        other.on('remove', () => { throw new Error('remove'); });
        other.add({ id: 'b' });
        other.remove({ id: 'b' });
        log('remove returned');
      `);
      assert.deepEqual(lines, [
        'second heard a',
        'add returned',
        'remove returned',
        'uncaught first',
        'uncaught error listener got remove'
      ]);
    });
  });

  describe('add and remove', () => {
    it('return the connection, emit once each, and are idempotent', () => {
      const group = new ConnectionGroup();
      const events = record(group);
      const a = fakeConnection('a');

      assert.equal(group.add(a), a);
      assert.equal(group.add(a), a);
      assert.equal(group.remove(a), a);
      assert.equal(group.remove(a), a);

      // A plain group's 'remove' listeners get the connection alone.
      assert.deepEqual(events, [
        ['add', 'a'],
        ['remove', 'a']
      ]);
    });

    it('pass the remove details on to the listeners', () => {
      const a = fakeConnection('a');
      const group = groupOf(a);
      const events = record(group);
      const info = { code: 1001, reason: 'going away', wasClean: true };

      group.remove(a, info);
      assert.equal(events[0][2], info);
    });

    it('key the members by id: the first of two sharing an id stays', () => {
      const first = fakeConnection('same');
      const second = fakeConnection('same');
      const group = groupOf(first);
      const removed = [];
      group.on('remove', (connection) => removed.push(connection));

      assert.equal(group.add(second), second);
      assert.equal(group.id('same'), first);
      assert.deepEqual([...group], [first]);
      assert.equal(group.has(second), true);
      assert.equal(group.has({ id: 'same' }), true);

      assert.equal(group.remove(second), second);
      assert.deepEqual(removed, [first], "'remove' tells of the member");
      assert.equal(group.has(first), false);
      assert.equal(group.size, 0);
    });

    it('remove ignores what is not a member', () => {
      const group = groupOf(fakeConnection('a'));
      const events = record(group);
      const stranger = fakeConnection('b');

      assert.equal(group.remove(stranger), stranger);
      assert.equal(group.remove(null), null);
      assert.equal(group.remove(undefined), undefined);
      assert.deepEqual(events, []);
      assert.equal(group.size, 1);
    });

    it('reject a connection without a string id', () => {
      const group = new ConnectionGroup();
      for (const value of [undefined, null, {}, { id: 7 }]) {
        assert.throws(() => group.add(value), {
          name: 'TypeError',
          code: 'ERR_INVALID_ARG_TYPE',
          message:
            'The "connection" argument must be an object with a string "id"'
        });
      }
    });
  });

  it('has, id, size and iteration reflect the members', () => {
    const a = fakeConnection('a');
    const b = fakeConnection('b');
    const c = fakeConnection('c');
    const group = groupOf(a, b, c);
    group.remove(b);

    assert.equal(group.has(a), true);
    assert.equal(group.has(b), false);
    assert.equal(group.has(null), false);
    assert.equal(group.id('c'), c);
    assert.equal(group.id('b'), null);
    assert.equal(group.size, 2);
    assert.deepEqual([...group], [a, c]);
  });

  it('id(key) is null for any key that is no member id', () => {
    const group = groupOf(fakeConnection('a'));
    for (const key of ['toString', 'constructor', '__proto__', 'hasOwnProperty', 'valueOf', '', undefined]) {
      assert.equal(group.id(key), null, String(key));
    }
  });

  describe('ensure', () => {
    it('returns a group as it is', () => {
      class Subclass extends ConnectionGroup {}
      for (const group of [new ConnectionGroup(), new Subclass(), groupOf(fakeConnection('a'))]) {
        assert.equal(ConnectionGroup.ensure(group), group);
      }
    });

    it('wraps a connection in a new group of ours', () => {
      const a = fakeConnection('a');
      const group = ConnectionGroup.ensure(a);

      assert.ok(group instanceof ConnectionGroup);
      assert.ok(group instanceof Base);
      assert.deepEqual([...group], [a]);
      assert.equal(group.add(a), a);
      assert.equal(group.size, 1);
    });

    it('returns a group of the base class as it is, and the base sees ours as groups', { skip: fixture !== 'behaving' }, () => {
      const theirs = new Base();
      assert.equal(ConnectionGroup.ensure(theirs), theirs);
      const ours = new ConnectionGroup();
      assert.equal(Base.ensure(ours), ours);
      assert.equal(Base.ensure(ours.filter(Boolean)).constructor, ConnectionGroup);
    });
  });

  it('gives subclasses the members under kMembers', () => {
    const a = fakeConnection('a');
    assert.deepEqual([...groupOf(a)[kMembers]], [['a', a]]);
  });

  describe('messages', () => {
    it('observes no member until it is observed itself', () => {
      const a = fakeConnection('a');
      const group = groupOf(a);
      assert.equal(a.observers, 0);

      const { subscription } = collect(group);
      assert.equal(a.observers, 1);

      subscription.dispose();
      assert.equal(a.observers, 0);
    });

    it('delivers (message, member) from current and later members', () => {
      const a = fakeConnection('a');
      const b = fakeConnection('b');
      const group = groupOf(a);
      const { seen } = collect(group);

      group.add(b);
      a.receive(1);
      b.receive(2);

      assert.deepEqual(seen, [
        [1, 'a'],
        [2, 'b']
      ]);
    });

    it('stops following a member that leaves', () => {
      const a = fakeConnection('a');
      const group = groupOf(a);
      const { seen } = collect(group);

      group.remove(a);
      assert.equal(a.observers, 0);
      a.receive('after');
      assert.deepEqual(seen, []);
    });

    it('follows the members again when reopened', () => {
      const a = fakeConnection('a');
      const group = groupOf(a);
      collect(group).subscription.dispose();

      const { seen } = collect(group);
      a.receive('again');
      assert.deepEqual(seen, [['again', 'a']]);
    });

    it("sends a subscriber's throw to 'error' when the group has a listener", () => {
      const a = fakeConnection('a');
      const group = groupOf(a);
      const errors = [];
      group.on('error', (err) => errors.push(err.message));
      group.messages.forEach(() => {
        throw new Error('subscriber failed');
      });
      const { seen } = collect(group);

      a.receive(1);
      assert.deepEqual(errors, ['subscriber failed']);
      assert.deepEqual(seen, [[1, 'a']]);
    });

    it("rethrows a subscriber's throw asynchronously without an 'error' listener", () => {
      const script = `
        const ConnectionGroup = require(${JSON.stringify(require.resolve('../lib/connection-group'))});
        const Stream = require(${JSON.stringify(require.resolve('../lib/stream'))});
        process.on('uncaughtException', (err) => console.log('uncaught ' + err.message));
        let push = null;
        const group = new ConnectionGroup();
        group.add({ id: 'a', messages: new Stream((p) => { push = p; }) });
        group.messages.forEach(() => { throw new Error('subscriber failed'); });
        group.messages.forEach(() => console.log('delivered'));
        push(1);
        console.log('push returned');
      `;
      const child = spawnSync(process.execPath, ['-e', script], {
        encoding: 'utf8'
      });
      assert.equal(child.stderr, '');
      assert.deepEqual(child.stdout.trim().split('\n'), [
        'delivered',
        'push returned',
        'uncaught subscriber failed'
      ]);
    });
  });

  describe('filter', () => {
    it('is a snapshot: it neither follows its source nor listens to it', () => {
      const keep = (connection) => connection.id.startsWith('keep');
      const kept = fakeConnection('keep-1');
      const source = groupOf(kept, fakeConnection('drop-1'));
      const result = source.filter(keep);
      const events = record(result);

      assert.ok(result instanceof ConnectionGroup);
      assert.deepEqual([...result], [kept]);
      assert.deepEqual(source.eventNames(), []);

      source.add(fakeConnection('keep-2'));
      source.remove(kept);
      assert.deepEqual([...result], [kept]);
      assert.deepEqual(events, []);
    });

    it('calls the predicate once per member, with the member', () => {
      const members = ['a', 'b', 'c'].map((id) => fakeConnection(id));
      const seen = [];
      const result = groupOf(...members).filter((connection) => {
        seen.push(connection);
        return connection.id !== 'b';
      });
      assert.deepEqual(seen, members);
      assert.deepEqual([...result], [members[0], members[2]]);
    });

    it('leaves nothing behind on its source, however often it is made', async () => {
      const warnings = [];
      const onWarning = (warning) => warnings.push(warning);
      process.on('warning', onWarning);
      try {
        const source = groupOf(fakeConnection('a'), fakeConnection('b'));
        for (let i = 0; i < 2000; i++) {
          assert.equal(source.filter((connection) => connection.id === 'a').size, 1);
          assert.equal(source.type('websocket').size, 2);
        }
        assert.deepEqual(source.eventNames(), []);
        await new Promise(setImmediate);
        assert.deepEqual(warnings, []);
      } finally {
        process.off('warning', onWarning);
      }
    });

    it('rejects a predicate that is not a function', () => {
      assert.throws(() => new ConnectionGroup().filter('websocket'), {
        name: 'TypeError',
        message: 'The "predicate" argument must be a function'
      });
    });

    it('returns a plain ConnectionGroup from a subclass', () => {
      class Subclass extends ConnectionGroup {}
      const result = new Subclass().filter(() => true);
      assert.equal(result.constructor, ConnectionGroup);
    });
  });

  it('type(name) is a snapshot of the members of that type', () => {
    const ws = fakeConnection('ws');
    const http = fakeConnection('http', { type: 'http' });
    const source = groupOf(ws, http);
    const result = source.type('websocket');

    assert.deepEqual([...result], [ws]);
    source.add(fakeConnection('ws-2'));
    source.remove(ws);
    assert.deepEqual([...result], [ws]);
    assert.deepEqual(source.eventNames(), []);
  });

  describe('union', () => {
    it('is live: follows later adds and removes of both sides', () => {
      const a = fakeConnection('a');
      const b = fakeConnection('b');
      const shared = fakeConnection('shared');
      const left = groupOf(a, shared);
      const right = groupOf(b, shared);
      const result = left.union(right);
      const events = record(result);

      assert.deepEqual([...result], [a, shared, b]);

      const c = fakeConnection('c');
      const d = fakeConnection('d');
      left.add(c);
      right.add(d);
      left.remove(shared);
      assert.equal(result.has(shared), true, 'still in the right side');
      right.remove(shared, { code: 1001 });
      right.remove(b);

      assert.deepEqual([...result], [a, c, d]);
      assert.deepEqual(events, [
        ['add', 'c'],
        ['add', 'd'],
        ['remove', 'shared', { code: 1001 }],
        ['remove', 'b']
      ]);
    });

    it("delivers both sides' messages with their sender, members added later included", () => {
      const a = fakeConnection('a');
      const b = fakeConnection('b');
      const right = groupOf(b);
      const union = groupOf(a).union(right);
      const { seen } = collect(union);

      const c = fakeConnection('c');
      right.add(c);
      a.receive(1);
      b.receive(2);
      c.receive(3);
      right.remove(b);
      b.receive('after');

      assert.deepEqual(seen, [
        [1, 'a'],
        [2, 'b'],
        [3, 'c']
      ]);
    });

    it('follows a group of the base class, and the base class follows ours', { skip: fixture !== 'behaving' }, () => {
      const a = fakeConnection('a');
      const b = fakeConnection('b');
      const ours = groupOf(a);
      const theirs = new Base();
      theirs.add(b);

      const union = ours.union(theirs);
      const theirUnion = theirs.union(ours);
      assert.ok(union instanceof ConnectionGroup);
      assert.deepEqual(new Set(union), new Set([a, b]));
      assert.deepEqual(new Set(theirUnion), new Set([a, b]));

      const c = fakeConnection('c');
      theirs.add(c);
      ours.remove(a);
      assert.deepEqual(new Set(union), new Set([b, c]));
      assert.deepEqual(new Set(theirUnion), new Set([b, c]));
      const { seen } = collect(union);
      c.receive('from theirs');
      assert.deepEqual(seen, [['from theirs', 'c']]);
    });

    it('rejects something that is not a group', () => {
      assert.throws(() => new ConnectionGroup().union([]), {
        name: 'TypeError',
        message: 'The "group" argument must be a ConnectionGroup'
      });
    });
  });

  describe('send', () => {
    it('sends to every member and returns how many accepted it', () => {
      const a = fakeConnection('a');
      const b = fakeConnection('b');
      b.send = () => false;
      const group = groupOf(a, b, fakeConnection('c'));

      assert.equal(group.send({ hi: 1 }), 2);
      assert.deepEqual(a.sent, [{ hi: 1 }]);
    });

    it('skips one excepted connection', () => {
      const a = fakeConnection('a');
      const b = fakeConnection('b');
      const group = groupOf(a, b);

      assert.equal(group.send('x', { except: a }), 1);
      assert.deepEqual(a.sent, []);
      assert.deepEqual(b.sent, ['x']);
    });

    it('skips an array of excepted connections', () => {
      const [a, b, c] = ['a', 'b', 'c'].map((id) => fakeConnection(id));
      const group = groupOf(a, b, c);

      assert.equal(group.send('x', { except: [a, c] }), 1);
      assert.deepEqual([a.sent, b.sent, c.sent], [[], ['x'], []]);
    });

    it('hands native members to their owner in one call per owner', () => {
      const one = fakeOwner('one');
      const two = fakeOwner('two');
      const a1 = fakeConnection('a1', { owner: one });
      const b = fakeConnection('b');
      const a2 = fakeConnection('a2', { owner: one });
      const c1 = fakeConnection('c1', { owner: two });
      const skipped = fakeConnection('skipped', { owner: one });
      const group = groupOf(a1, b, a2, c1, skipped);

      assert.equal(group.send('x', { except: skipped }), 4);
      assert.deepEqual(one.calls, [[['a1', 'a2'], 'x']]);
      assert.deepEqual(two.calls, [[['c1'], 'x']]);
      assert.deepEqual(
        [a1.sent, a2.sent, c1.sent, b.sent],
        [[], [], [], ['x']]
      );
    });

    it('uses the native path through derived groups too', () => {
      const owner = fakeOwner('server');
      const a = fakeConnection('a', { owner });
      const b = fakeConnection('b', { owner });
      const result = groupOf(a).union(groupOf(b)).type('websocket');

      assert.equal(result.send('x'), 2);
      assert.deepEqual(owner.calls, [[['a', 'b'], 'x']]);
    });

    it('throws an encoding error before sending anything, whichever owner refuses', () => {
      const accepting = fakeOwner('accepting', { refuses: () => false });
      const refusing = fakeOwner('refusing');
      const plain = fakeConnection('plain');
      const group = groupOf(
        fakeConnection('first', { owner: accepting }),
        plain,
        fakeConnection('native', { owner: refusing })
      );

      assert.throws(() => group.send(1n), { name: 'TypeError' });
      assert.deepEqual(plain.sent, []);
      assert.deepEqual(accepting.calls, []);
      assert.deepEqual(refusing.calls, []);
    });
  });
});

describe('ConnectionGroup: a Server', () => {
  it('filter and type take every connection, met by JS or not, and leave no listener', async (t) => {
    const server = await startServer(t);
    const clients = await openInOrder(t, server, 3);
    assert.deepEqual(server.eventNames(), []);

    const all = server.filter(() => true);
    assert.equal(all.size, 3);
    assert.deepEqual(
      [...all].map((connection) => connection.remotePort).sort(),
      clients.map(localPort).sort()
    );
    assert.equal(server.type('websocket').size, 3);
    assert.equal(server.filter((connection) => connection.remotePort === localPort(clients[1])).size, 1);
    for (let i = 0; i < 2000; i++) server.filter((connection) => !connection.offline);
    assert.deepEqual(server.eventNames(), [], 'no listener on the Server');

    // A snapshot: a later client does not join it.
    await openClient(t, server);
    await until(() => server.size === 4, 'server.size 4');
    assert.equal(all.size, 3);
    assert.equal(all.send('to the snapshot'), 3);
    for (const client of clients) {
      assert.deepEqual(await next(client), [{ data: '"to the snapshot"', binary: false }]);
    }
  });

  it("ensure returns it; its 'remove' listeners get the close details", async (t) => {
    const server = await startServer(t);
    assert.equal(ConnectionGroup.ensure(server), server);
    if (fixture === 'behaving') assert.equal(Base.ensure(server), server);
    if (fixture === 'node' || fixture === 'foreign') assert.equal(Base.ensure(server), true);

    const [client] = await openInOrder(t, server, 1);
    const removed = [];
    server.on('remove', (...args) => removed.push(args));
    const port = localPort(client);
    client.close(4001, 'bye');
    await until(() => removed.length === 1, "'remove'");
    const [connection, info] = removed[0];
    assert.equal(connection.remotePort, port);
    assert.deepEqual(info, { code: 4001, reason: 'bye', wasClean: true });
    assert.equal(server.remove(connection), connection, 'remove returns the connection');
  });

  it("its first 'add' listener's replay goes on past a throwing listener", async (t) => {
    const server = await startServer(t);
    const clients = await openInOrder(t, server, 3);
    const errors = [];
    server.on('error', (err) => errors.push(err.message));
    const heard = [];
    server.on('add', (connection) => {
      throw new Error(`first listener failed on ${connection.remotePort}`);
    });
    server.on('add', (connection) => heard.push(connection.remotePort));
    const union = server.union(new ConnectionGroup());

    await until(() => heard.length === 3, "'add' for every connection");
    assert.deepEqual(heard.sort(), clients.map(localPort).sort());
    assert.equal(errors.length, 3);
    assert.equal(union.size, 3);
  });

  it('a union with another group delivers each message with its sender', async (t) => {
    const server = await startServer(t);
    const clients = await openInOrder(t, server, 2);
    const fake = fakeConnection('fake');
    const union = server.union(groupOf(fake));
    const seen = [];
    union.messages.forEach((message, sender) => seen.push([message, sender]));

    clients[1].send(JSON.stringify('from the second'));
    await until(() => seen.length === 1, 'the first message');
    fake.receive('from the fake');
    clients[0].send(JSON.stringify('from the first'));
    await until(() => seen.length === 3, 'three messages');

    assert.deepEqual(
      seen.map(([message]) => message),
      ['from the second', 'from the fake', 'from the first']
    );
    assert.equal(seen[0][1].remotePort, localPort(clients[1]));
    assert.equal(seen[1][1], fake);
    assert.equal(seen[2][1].remotePort, localPort(clients[0]));
    for (const [, sender] of seen) assert.equal(union.id(sender.id), sender);

    // The senders are the members: a reply reaches the right client.
    seen[2][1].send('reply');
    assert.deepEqual(await next(clients[0]), [{ data: '"reply"', binary: false }]);
  });

  it("a union made by the base class's own group delivers the Server's messages", { skip: fixture !== 'behaving' }, async (t) => {
    const server = await startServer(t);
    const [client] = await openInOrder(t, server, 1);
    const union = new Base().union(server);
    const seen = [];
    union.messages.forEach((message, sender) => seen.push([message, sender]));

    client.send(JSON.stringify({ hello: 'theirs' }));
    await until(() => seen.length === 1, 'the message');
    assert.deepEqual(seen[0][0], { hello: 'theirs' });
    assert.equal(seen[0][1].remotePort, localPort(client));
    assert.equal(server.id(seen[0][1].id), seen[0][1]);
  });
});

describe(
  'ConnectionGroup under a Mytosis database',
  { skip: Boolean(fixture) },
  () => {
    it('10,000 reads and writes on a Server leave its listeners and the heap as they were', () => {
      const operations = 10_000;
      const child = spawnSync(
        process.execPath,
        ['--expose-gc', path.join(__dirname, 'fixtures', 'database-load.js'), String(operations), '3'],
        { env: envFor('behaving'), encoding: 'utf8', timeout: 120_000 }
      );
      assert.equal(child.status, 0, child.stderr);
      assert.doesNotMatch(child.stderr, /MaxListenersExceededWarning/);
      assert.doesNotMatch(child.stderr, /Warning/);
      const result = JSON.parse(child.stdout);

      assert.equal(result.sameNetwork, true, 'the database kept the Server as its network');
      // The Server's listeners, before the database and after each thousand
      // operations: the same all along.
      const [before, ...later] = result.counts.map(({ after, ...counts }) => counts);
      assert.equal(later.length, operations / 1000);
      for (const counts of later) assert.deepEqual(counts, before);

      const growth = result.heapAtEnd - result.heapAtFirstStep;
      assert.ok(growth < 3 * 2 ** 20, `the heap grew by ${growth} bytes from 1,000 to 10,000 operations`);

      // Every member got every request, in order.
      assert.equal(result.sent, operations * 3);
      assert.deepEqual(result.received, [operations, operations, operations]);
      for (const first of result.first) {
        assert.deepEqual(first, [
          { type: 'read', key: 'key-1' },
          { type: 'write', key: 'key-2', value: { op: 2 } }
        ]);
      }
      assert.deepEqual(result.errors, []);
    });
  }
);

describe(
  'ConnectionGroup on a stand-in mytosis',
  { skip: Boolean(fixture) },
  () => {
    for (const { variant } of STAND_INS) {
      it(`passes this suite on the ${variant} stand-in`, () => {
        const child = runFileOn(variant, __filename);
        assert.equal(child.status, 0, child.stdout + child.stderr);
      });

      it(`is seen as a group by the ${variant} stand-in's ConnectionGroup.ensure`, () => {
        const script = `
        const assert = require('node:assert/strict');
        const Base = require('mytosis').ConnectionGroup;
        const ConnectionGroup = require(${groupPath});
        const { Server } = require(${JSON.stringify(path.join(__dirname, '..'))});
        const group = new ConnectionGroup();
        const server = new Server({ port: 0, host: '127.0.0.1' });
        for (const network of [group, group.filter(Boolean), group.type('x'), group.union(group), server]) {
          assert.ok(network instanceof Base);
          // The throwing stand-in's ensure answers whether it is a group;
          // the behaving one's returns it.
          assert.equal(Base.ensure(network), ${JSON.stringify(variant)} === 'behaving' ? network : true);
          assert.equal(ConnectionGroup.ensure(network), network);
        }
        server.close();
      `;
        const child = runScriptOn(variant, script);
        assert.equal(child.status, 0, child.stderr);
      });
    }

    it('lets a load error other than MODULE_NOT_FOUND propagate', () => {
      const script = `require(${groupPath})`;
      const child = runScriptOn('broken', script);
      assert.notEqual(child.status, 0);
      assert.match(child.stderr, /mytosis failed to load/);
    });
  }
);
