'use strict';

// lib/server-connections.js on its own: the registry of a Server's
// connection objects and the JS half of the lazy-announce rule, over a fake
// addon. The rule end to end is in server-unannounced.test.js.

const assert = require('node:assert/strict');
const { describe, test } = require('node:test');

const ServerConnections = require('../lib/server-connections');
const { kClosing, kHandle } = require('../lib/symbols');

class FakeConnection {
  constructor(handle, context) {
    this[kHandle] = handle;
    this.id = `connection-${handle}`;
    Object.assign(this, { context, closing: false });
  }

  [kClosing]() {
    this.closing = true;
  }
}

/** A registry over a fake addon where `unmet` are the handles of connections JS has not met. */
function registry({ unmet = [], contexts = new Map(), closing = false } = {}) {
  const calls = [];
  const native = {
    announceOpens: () => (calls.push('announceOpens'), unmet.splice(0)),
    announceAll: () => (calls.push('announceAll'), unmet.splice(0)),
    unannouncedCount: () => unmet.length
  };
  const members = new Map();
  const connections = new ServerConnections({
    native,
    Connection: FakeConnection,
    members,
    takeContext: (handle) => {
      const context = contexts.get(handle);
      contexts.delete(handle);
      return context;
    },
    isClosing: () => closing
  });
  return { connections, members, calls, contexts };
}

describe('ServerConnections', () => {
  test('meet makes the object with its context and registers it, without making it a member', () => {
    const { connections, members, contexts } = registry({ contexts: new Map([[7, { user: 'ada' }]]) });
    const connection = connections.meet(7);
    assert.ok(connection instanceof FakeConnection);
    assert.equal(connection[kHandle], 7);
    assert.deepEqual(connection.context, { user: 'ada' });
    assert.equal(contexts.size, 0, 'the context is taken');
    assert.equal(connections.get(7), connection);
    assert.ok(connections.owns(connection));
    assert.deepEqual([...connections.values()], [connection]);
    assert.equal(members.size, 0);
    assert.equal(connection.closing, false);
  });

  test('a connection met while the server closes is closing at once', () => {
    const { connections } = registry({ closing: true });
    assert.equal(connections.meet(1).closing, true);
  });

  test('owns only the registered object of a handle; delete forgets it', () => {
    const { connections } = registry();
    const connection = connections.meet(1);
    assert.equal(connections.owns(new FakeConnection(1)), false);
    assert.equal(connections.owns({ [kHandle]: 1 }), false);
    assert.equal(connections.owns(null), false);
    connections.delete(1);
    assert.equal(connections.get(1), undefined);
    assert.equal(connections.owns(connection), false);
  });

  test('unmetCount is what the addon has not announced', () => {
    const { connections } = registry({ unmet: [1, 2] });
    assert.equal(connections.unmetCount, 2);
  });

  test('joinAll: the unmet connections join the members, and are registered', () => {
    const { connections, members, calls } = registry({ unmet: [1, 2] });
    connections.joinAll();
    assert.deepEqual(calls, ['announceAll']);
    assert.deepEqual([...members.keys()], ['connection-1', 'connection-2']);
    assert.equal(connections.get(2), members.get('connection-2'));
    assert.equal(connections.unmetCount, 0);
  });

  test("startAnnouncing: only the first 'add' or 'remove' listener asks the addon, and gets those that joined", () => {
    for (const event of ['add', 'remove']) {
      const { connections, members, calls } = registry({ unmet: [1] });
      assert.deepEqual(connections.startAnnouncing('message'), []);
      assert.deepEqual(connections.startAnnouncing('close'), []);
      assert.deepEqual(calls, [], 'other events leave the addon alone');
      const joined = connections.startAnnouncing(event);
      assert.deepEqual(joined, [members.get('connection-1')]);
      assert.deepEqual(connections.startAnnouncing('add'), []);
      assert.deepEqual(connections.startAnnouncing('remove'), []);
      assert.deepEqual(calls, ['announceOpens'], event);
    }
  });
});
