'use strict';

const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const { EventEmitter, getEventListeners } = require('node:events');
const path = require('node:path');
const { describe, it } = require('node:test');

const Stream = require('../lib/stream');
const ConnectionGroup = require('../lib/connection-group');
const { kComplete } = require('../lib/symbols');
const { STAND_INS, fixture, runFileOn } = require('./bases');

// A stream whose publisher records every opening: `opened` counts runs,
// `closed` counts cleanups, `push`/`complete` are the latest opening's.
function recorded() {
  const record = { opened: 0, closed: 0, push: null, complete: null };
  record.stream = new Stream((push, complete) => {
    record.opened++;
    record.push = push;
    record.complete = complete;
    return () => record.closed++;
  });
  return record;
}

describe('Stream', () => {
  it('throws a TypeError when the publisher is not a function', () => {
    for (const value of [undefined, null, 'publisher', {}]) {
      assert.throws(() => new Stream(value), {
        name: 'TypeError',
        code: 'ERR_INVALID_ARG_TYPE',
        message: 'The "publisher" argument must be a function'
      });
    }
  });

  it('throws a TypeError when onError is not a function', () => {
    assert.throws(() => new Stream(() => {}, { onError: 'log' }), {
      name: 'TypeError',
      message: 'The "onError" option must be a function'
    });
  });

  it('throws a TypeError when the forEach callback is not a function', () => {
    const record = recorded();
    assert.throws(() => record.stream.forEach(), {
      name: 'TypeError',
      message: 'The "callback" argument must be a function'
    });
    assert.equal(record.opened, 0);
  });

  it('runs the publisher on the first forEach only', () => {
    const record = recorded();
    assert.equal(record.opened, 0);

    record.stream.forEach(() => {});
    assert.equal(record.opened, 1);

    record.stream.forEach(() => {});
    assert.equal(record.opened, 1);
  });

  it('delivers a push made inside the publisher to the first subscriber', () => {
    const stream = new Stream((push) => push('hello', 'me'));
    const seen = [];
    stream.forEach((...args) => seen.push(args));
    assert.deepEqual(seen, [['hello', 'me']]);
  });

  it('pushes (message, sender) to every subscriber', () => {
    const record = recorded();
    const seen = [];
    record.stream.forEach((message, sender) =>
      seen.push(['a', message, sender])
    );
    record.stream.forEach((message, sender) =>
      seen.push(['b', message, sender])
    );

    const sender = { id: 'peer' };
    record.push({ n: 1 }, sender);

    assert.deepEqual(seen, [
      ['a', { n: 1 }, sender],
      ['b', { n: 1 }, sender]
    ]);
    assert.equal(seen[0][2], sender);
  });

  it('stops delivering to a disposed subscription', () => {
    const record = recorded();
    const seen = [];
    const subscription = record.stream.forEach((message) =>
      seen.push(`a${message}`)
    );
    record.stream.forEach((message) => seen.push(`b${message}`));

    record.push(1);
    subscription.dispose();
    record.push(2);

    assert.deepEqual(seen, ['a1', 'b1', 'b2']);
  });

  it('runs the cleanup when the last subscriber disposes, once', () => {
    const record = recorded();
    const first = record.stream.forEach(() => {});
    const second = record.stream.forEach(() => {});

    first.dispose();
    first.dispose();
    assert.equal(record.closed, 0, 'a repeated dispose must not count twice');

    second.dispose();
    assert.equal(record.closed, 1);
    second.dispose();
    assert.equal(record.closed, 1);
  });

  it('opens again with a fresh push after closing', () => {
    const record = recorded();
    record.stream.forEach(() => {}).dispose();
    const stalePush = record.push;

    const seen = [];
    record.stream.forEach((message) => seen.push(message));
    assert.equal(record.opened, 2);
    assert.notEqual(record.push, stalePush);

    stalePush('stale');
    record.push('fresh');
    assert.deepEqual(seen, ['fresh']);
  });

  it('drops pushes while nobody observes the stream', () => {
    const record = recorded();
    record.stream.forEach(() => {}).dispose();
    assert.doesNotThrow(() => record.push('lost'));
  });

  it('skips a subscriber disposed by an earlier callback of the same push', () => {
    const record = recorded();
    const seen = [];
    let second = null;
    record.stream.forEach((message) => {
      seen.push(`a${message}`);
      second.dispose();
    });
    second = record.stream.forEach((message) => seen.push(`b${message}`));

    record.push(1);
    assert.deepEqual(seen, ['a1']);
  });

  it('does not give the current message to a subscriber added during its push', () => {
    const record = recorded();
    const seen = [];
    record.stream.forEach((message) => {
      if (message === 1)
        record.stream.forEach((late) => seen.push(`late${late}`));
    });

    record.push(1);
    record.push(2);
    assert.deepEqual(seen, ['late2']);
  });

  it('undoes the subscription when the publisher throws', () => {
    let runs = 0;
    const stream = new Stream(() => {
      if (++runs === 1) throw new Error('publisher failed');
    });

    assert.throws(() => stream.forEach(() => {}), {
      message: 'publisher failed'
    });
    stream.forEach(() => {});
    assert.equal(runs, 2, 'the stream must not stay open after the throw');
  });

  describe('Stream.create', () => {
    it('is new Stream(publisher): lazy, with push and complete', async () => {
      let opened = 0;
      let push = null;
      let complete = null;
      const stream = Stream.create((p, c) => {
        opened++;
        push = p;
        complete = c;
      });
      assert.ok(stream instanceof Stream);
      assert.equal(opened, 0);

      const seen = [];
      stream.forEach((...args) => seen.push(args));
      assert.equal(opened, 1);
      push('hi', 'me');
      complete();
      await stream.complete;
      assert.deepEqual(seen, [['hi', 'me']]);
      assert.throws(() => push('late'), { message: /closed/ });
    });

    it('checks the publisher as the constructor does', () => {
      assert.throws(() => Stream.create('publisher'), {
        name: 'TypeError',
        code: 'ERR_INVALID_ARG_TYPE'
      });
    });
  });

  describe('Stream.fromEvent', () => {
    it('streams an EventEmitter event, listening only while observed', () => {
      const emitter = new EventEmitter();
      const stream = Stream.fromEvent(emitter, 'data');
      assert.equal(emitter.listenerCount('data'), 0, 'not before forEach');

      const seen = [];
      const first = stream.forEach((message, sender) => seen.push(['a', message, sender]));
      const second = stream.forEach((message) => seen.push(['b', message]));
      assert.equal(emitter.listenerCount('data'), 1, 'one listener for any subscribers');

      emitter.emit('data', 1, 'peer');
      first.dispose();
      assert.equal(emitter.listenerCount('data'), 1);
      emitter.emit('data', 2);
      second.dispose();
      assert.equal(emitter.listenerCount('data'), 0, 'none once nobody observes');
      emitter.emit('data', 'unobserved');

      assert.deepEqual(seen, [
        ['a', 1, 'peer'],
        ['b', 1],
        ['b', 2]
      ]);

      // Observed again, it listens again.
      stream.forEach((message) => seen.push(['c', message]));
      emitter.emit('data', 3);
      assert.deepEqual(seen.at(-1), ['c', 3]);
      assert.equal(emitter.listenerCount('data'), 1);
    });

    it('streams a group event, and stops listening to the group', () => {
      const group = new ConnectionGroup();
      const stream = Stream.fromEvent(group, 'add');
      const added = [];
      const subscription = stream.forEach((connection) => added.push(connection.id));
      group.add({ id: 'a' });
      subscription.dispose();
      group.add({ id: 'b' });
      assert.deepEqual(added, ['a']);
      assert.equal(group.listenerCount('add'), 0);
    });

    it('streams an EventTarget event with addEventListener and removeEventListener', () => {
      const target = new EventTarget();
      const stream = Stream.fromEvent(target, 'ping');
      const seen = [];
      const subscription = stream.forEach((event) => seen.push(event.type));
      assert.equal(getEventListeners(target, 'ping').length, 1);

      target.dispatchEvent(new Event('ping'));
      subscription.dispose();
      assert.equal(getEventListeners(target, 'ping').length, 0);
      target.dispatchEvent(new Event('ping'));
      assert.deepEqual(seen, ['ping']);
    });

    it('stops listening with off, or else removeListener', () => {
      for (const remover of ['off', 'removeListener']) {
        const calls = [];
        const listeners = new Set();
        const emitter = {
          on(event, listener) {
            calls.push(['on', event]);
            listeners.add(listener);
          },
          [remover](event, listener) {
            calls.push([remover, event]);
            listeners.delete(listener);
          }
        };
        const subscription = Stream.fromEvent(emitter, 'x').forEach(() => {});
        assert.equal(listeners.size, 1);
        subscription.dispose();
        assert.equal(listeners.size, 0, remover);
        assert.deepEqual(calls, [
          ['on', 'x'],
          [remover, 'x']
        ]);
      }
    });

    it("keeps a subscriber's throw from the emitter, rethrowing it asynchronously", () => {
      const script = `
        const { EventEmitter } = require('node:events');
        const Stream = require(${JSON.stringify(path.join(__dirname, '../lib/stream'))});
        const log = (line) => process.stdout.write(line + '\\n');
        process.on('uncaughtException', (err) => log('uncaught ' + err.message));

        const emitter = new EventEmitter();
        const stream = Stream.fromEvent(emitter, 'data');
        stream.forEach(() => { throw new Error('subscriber failed'); });
        stream.forEach((message) => log('delivered ' + message));
        emitter.on('data', () => log('next listener'));
        emitter.emit('data', 1);
        log('emit returned');
      `;
      const env = { ...process.env };
      delete env.NODE_TEST_CONTEXT;
      const child = spawnSync(process.execPath, ['-e', script], { env, encoding: 'utf8' });
      assert.equal(child.stderr, '');
      assert.deepEqual(child.stdout.trim().split('\n'), [
        'delivered 1',
        'next listener',
        'emit returned',
        'uncaught subscriber failed'
      ]);
    });

    it('rejects something that cannot be listened to', () => {
      for (const value of [undefined, null, {}, { on() {} }, 'emitter']) {
        assert.throws(() => Stream.fromEvent(value, 'x'), {
          name: 'TypeError',
          code: 'ERR_INVALID_ARG_TYPE'
        });
      }
    });
  });

  describe('complete', () => {
    it('is a promise that resolves when the publisher completes', async () => {
      const record = recorded();
      assert.ok(record.stream.complete instanceof Promise);

      let resolved = false;
      record.stream.complete.then(() => {
        resolved = true;
      });
      record.stream.forEach(() => {});
      await new Promise(setImmediate);
      assert.equal(resolved, false);

      record.complete();
      await record.stream.complete;
      assert.equal(resolved, true);
    });

    it('drops the subscribers and runs the cleanup', () => {
      const record = recorded();
      const seen = [];
      const subscription = record.stream.forEach((message) =>
        seen.push(message)
      );

      record.complete();
      assert.equal(record.closed, 1);
      subscription.dispose();
      assert.equal(record.closed, 1);
      assert.deepEqual(seen, []);
    });

    it('makes a later push throw, from any opening', () => {
      const record = recorded();
      record.stream.forEach(() => {}).dispose();
      const stalePush = record.push;
      record.stream.forEach(() => {});
      record.complete();

      for (const push of [record.push, stalePush]) {
        assert.throws(() => push('late'), {
          name: 'Error',
          code: 'ERR_CLOSED',
          message: /closed/
        });
      }
    });

    it('throws when completing twice', () => {
      const record = recorded();
      record.stream.forEach(() => {});
      record.complete();
      assert.throws(() => record.complete(), {
        name: 'Error',
        code: 'ERR_CLOSED',
        message: /closed/
      });
      assert.throws(() => record.stream[kComplete](), {
        code: 'ERR_CLOSED',
        message: /closed/
      });
    });

    it('lasts for the stream lifetime: forEach does not reopen it', () => {
      const record = recorded();
      record.stream.forEach(() => {});
      record.complete();

      const seen = [];
      const subscription = record.stream.forEach((message) =>
        seen.push(message)
      );
      assert.equal(record.opened, 1);
      subscription.dispose();
      assert.equal(record.closed, 1);
    });

    it('completes the stream from a closed opening too', async () => {
      const record = recorded();
      record.stream.forEach(() => {}).dispose();
      record.complete();
      await record.stream.complete;
      record.stream.forEach(() => {});
      assert.equal(record.opened, 1);
    });

    it('runs the cleanup when the publisher completes before returning it', async () => {
      let cleanups = 0;
      const stream = new Stream((push, complete) => {
        complete();
        return () => cleanups++;
      });
      stream.forEach(() => {});
      assert.equal(cleanups, 1);
      await stream.complete;
    });

    it('can be completed by the owner while nobody observes it', async () => {
      const record = recorded();
      record.stream[kComplete]();
      await record.stream.complete;
      assert.equal(record.closed, 0);

      record.stream.forEach(() => {});
      assert.equal(record.opened, 0);
    });

    it('can be completed by the owner while open, running the cleanup', () => {
      const record = recorded();
      record.stream.forEach(() => {});
      record.stream[kComplete]();
      assert.equal(record.closed, 1);
      assert.throws(() => record.push('late'), { code: 'ERR_CLOSED' });
    });
  });

  describe('a throwing subscriber', () => {
    it('does not skip the other subscribers, and goes to onError', () => {
      const errors = [];
      let push = null;
      const stream = new Stream(
        (p) => {
          push = p;
        },
        { onError: (err) => errors.push(err) }
      );
      const seen = [];
      stream.forEach((message) => seen.push(`a${message}`));
      stream.forEach(() => {
        throw new Error('second failed');
      });
      stream.forEach((message) => seen.push(`c${message}`));

      assert.doesNotThrow(() => push(1));
      assert.deepEqual(seen, ['a1', 'c1']);
      assert.deepEqual(
        errors.map((err) => err.message),
        ['second failed']
      );
    });

    it('is rethrown asynchronously without onError, or when onError throws', () => {
      const script = `
        const Stream = require(${JSON.stringify(path.join(__dirname, '../lib/stream'))});
        const log = (line) => process.stdout.write(line + '\\n');
        process.on('uncaughtException', (err) => log('uncaught ' + err.message));

        const run = (label, options) => {
          let push = null;
          const stream = new Stream((p) => { push = p; }, options);
          stream.forEach(() => { throw new Error(label + ' callback'); });
          stream.forEach((message) => log(label + ' delivered ' + message));
          push(1);
          log(label + ' push returned');
        };
        run('plain');
        run('sink', { onError: (err) => { throw new Error('sink got ' + err.message); } });
      `;
      const child = spawnSync(process.execPath, ['-e', script], {
        encoding: 'utf8'
      });

      assert.equal(child.stderr, '');
      assert.equal(child.status, 0);
      assert.deepEqual(child.stdout.trim().split('\n'), [
        'plain delivered 1',
        'plain push returned',
        'sink delivered 1',
        'sink push returned',
        'uncaught plain callback',
        'uncaught sink got sink callback'
      ]);
    });
  });
});

describe('Stream on a stand-in mytosis', { skip: Boolean(fixture) }, () => {
  for (const { variant } of STAND_INS) {
    it(`passes this suite on the ${variant} stand-in`, () => {
      const child = runFileOn(variant, __filename);
      assert.equal(child.status, 0, child.stdout + child.stderr);
    });
  }
});
