'use strict';

const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const { EventEmitter } = require('node:events');
const path = require('node:path');
const { describe, it } = require('node:test');

const ConnectionGroup = require('../lib/connection-group');
const Stream = require('../lib/stream');
const { kMembers, kNativeOwner } = require('../lib/symbols');

// Set when this file runs again against the stand-in `mytosis` (see the end).
const fixture = process.env.MYTOSIS_FIXTURE;

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

function record(group) {
  const events = [];
  group.on('add', (connection) => events.push(['add', connection.id]));
  group.on('remove', (connection, info) =>
    events.push(['remove', connection.id, info])
  );
  return events;
}

function collect(group) {
  const seen = [];
  const subscription = group.messages.forEach((message, sender) =>
    seen.push([message, sender.id])
  );
  return { seen, subscription };
}

describe('ConnectionGroup', () => {
  it('extends the base class picked at load', () => {
    const Base = fixture ? require('mytosis').ConnectionGroup : EventEmitter;
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

  describe('add and remove', () => {
    it('emit once each, and are idempotent', () => {
      const group = new ConnectionGroup();
      const events = record(group);
      const a = fakeConnection('a');

      assert.equal(group.add(a), true);
      assert.equal(group.add(a), false);
      assert.equal(group.remove(a), true);
      assert.equal(group.remove(a), false);

      assert.deepEqual(events, [
        ['add', 'a'],
        ['remove', 'a', undefined]
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

    it('keep the first of two connections sharing an id', () => {
      const first = fakeConnection('same');
      const second = fakeConnection('same');
      const group = groupOf(first);
      const events = record(group);

      assert.equal(group.add(second), false);
      assert.equal(group.has(second), false);
      assert.equal(group.remove(second), false);
      assert.equal(group.id('same'), first);
      assert.deepEqual(events, []);
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
    it('is live: follows later adds and removes of its source', () => {
      const keep = (connection) => connection.id.startsWith('keep');
      const kept = fakeConnection('keep-1');
      const source = groupOf(kept, fakeConnection('drop-1'));
      const result = source.filter(keep);
      const events = record(result);

      assert.ok(result instanceof ConnectionGroup);
      assert.deepEqual([...result], [kept]);

      const later = fakeConnection('keep-2');
      source.add(later);
      source.add(fakeConnection('drop-2'));
      source.remove(kept, { code: 1000 });

      assert.deepEqual([...result], [later]);
      assert.deepEqual(events, [
        ['add', 'keep-2'],
        ['remove', 'keep-1', { code: 1000 }]
      ]);
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

  it('type(name) is a live filter on the connection type', () => {
    const ws = fakeConnection('ws');
    const http = fakeConnection('http', { type: 'http' });
    const source = groupOf(ws, http);
    const result = source.type('websocket');

    assert.deepEqual([...result], [ws]);
    const later = fakeConnection('ws-2');
    source.add(later);
    assert.deepEqual([...result], [ws, later]);
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
        ['remove', 'b', undefined]
      ]);
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

describe(
  'ConnectionGroup on a stand-in mytosis',
  { skip: Boolean(fixture) },
  () => {
    const env = { ...process.env, NODE_PATH: path.join(__dirname, 'fixtures') };
    // Inherited from a `node --test` parent, it would change the child's output.
    delete env.NODE_TEST_CONTEXT;

    for (const variant of ['node', 'foreign']) {
      it(`passes this suite on a ${variant} emitter base`, () => {
        const child = spawnSync(process.execPath, ['--test', __filename], {
          env: { ...env, MYTOSIS_FIXTURE: variant },
          encoding: 'utf8'
        });
        assert.equal(child.status, 0, child.stdout + child.stderr);
      });

      it(`is seen as a group by ConnectionGroup.ensure on a ${variant} base`, () => {
        const script = `
        const assert = require('node:assert/strict');
        const Base = require('mytosis').ConnectionGroup;
        const ConnectionGroup = require(${JSON.stringify(require.resolve('../lib/connection-group'))});
        const group = new ConnectionGroup();
        for (const network of [group, group.filter(Boolean), group.type('x'), group.union(group)]) {
          assert.ok(network instanceof Base);
          assert.equal(Base.ensure(network), true);
        }
      `;
        const child = spawnSync(process.execPath, ['-e', script], {
          env: { ...env, MYTOSIS_FIXTURE: variant },
          encoding: 'utf8'
        });
        assert.equal(child.status, 0, child.stderr);
      });
    }

    it('lets a load error other than MODULE_NOT_FOUND propagate', () => {
      const script = `require(${JSON.stringify(require.resolve('../lib/connection-group'))})`;
      const child = spawnSync(process.execPath, ['-e', script], {
        env: { ...env, MYTOSIS_FIXTURE: 'broken' },
        encoding: 'utf8'
      });
      assert.notEqual(child.status, 0);
      assert.match(child.stderr, /mytosis failed to load/);
    });
  }
);
