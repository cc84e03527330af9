'use strict';

// lib/server-upgrade.js on its own, over a fake addon: the verdicts of
// verifyClient and handleProtocols, the contexts kept until a connection
// opens, and the refusal of an attached server's upgrade past
// maxConnections. End to end: server-verify.test.js and
// server-attach.test.js.

const assert = require('node:assert/strict');
const { describe, test } = require('node:test');

const ServerUpgrades = require('../lib/server-upgrade');

/**
 * The details the addon gives for a standalone server's upgrade: the
 * headers as names (lower case) and values, each followed by a NUL.
 */
const detail = () => ({
  url: '/chat?room=1',
  rawHeaders: 'host\0example.com\0sec-websocket-protocol\0a, b\0',
  remoteAddress: '10.0.0.1',
  remotePort: 5000
});

function upgrades(options, { waited = true, admitted = 0 } = {}) {
  const decided = [];
  const thrown = [];
  const native = {
    decide: (handle, verdict) => (decided.push([handle, verdict]), waited),
    admitted: () => admitted
  };
  const subject = new ServerUpgrades({ maxConnections: Infinity, handshakeTimeout: 1000, ...options }, native, {
    onUserError: (err) => thrown.push(err),
    isClosing: () => false
  });
  return { subject, decided, thrown };
}

describe('ServerUpgrades', () => {
  test("verify: verifyClient sees the request; what it accepts with is the context, kept until taken, and the protocol is handleProtocols'", async () => {
    let info;
    const { subject, decided } = upgrades({
      verifyClient: (seen) => ((info = seen), { user: 'ada' }),
      handleProtocols: (protocols) => [...protocols].at(-1)
    });
    await subject.verify(3, detail());
    assert.equal(info.url, '/chat?room=1');
    assert.equal(info.req.headers.host, 'example.com');
    assert.equal(info.remoteAddress, '10.0.0.1');
    assert.deepEqual(info.req.socket, { remoteAddress: '10.0.0.1', remotePort: 5000 });
    assert.equal(decided.length, 1);
    assert.equal(decided[0][0], 3);
    assert.equal(decided[0][1].accept, true);
    assert.equal(decided[0][1].protocol, 'b');
    assert.deepEqual(subject.takeContext(3), { user: 'ada' });
    assert.equal(subject.takeContext(3), undefined, 'taken once');
  });

  test('verify: no context is kept for a refused upgrade, or one that stopped waiting', async () => {
    const refusing = upgrades({ verifyClient: () => false });
    await refusing.subject.verify(1, detail());
    assert.equal(refusing.decided[0][1].accept, false);
    assert.equal(refusing.subject.takeContext(1), undefined);

    const late = upgrades({ verifyClient: () => 'x' }, { waited: false });
    await late.subject.verify(1, detail());
    assert.equal(late.subject.takeContext(1), undefined);
  });

  test('forget and forgetAll drop the contexts of upgrades that will not open', async () => {
    const { subject } = upgrades({ verifyClient: () => 'x' });
    await subject.verify(1, detail());
    await subject.verify(2, detail());
    subject.forget(1);
    assert.equal(subject.takeContext(1), undefined);
    subject.forgetAll();
    assert.equal(subject.takeContext(2), undefined);
  });

  test('a verifyClient that throws refuses the upgrade and is reported as user code', async () => {
    const { subject, decided, thrown } = upgrades({
      verifyClient: () => {
        throw new Error('bug');
      }
    });
    await subject.verify(1, detail());
    assert.equal(decided[0][1].accept, false);
    assert.deepEqual(thrown.map((err) => err.message), ['bug']);
  });

  test('upgrade: past maxConnections an attached server answers 503 with Retry-After, deciding nothing', async () => {
    let asked = false;
    const { subject } = upgrades({ maxConnections: 2, verifyClient: () => (asked = true) }, { admitted: 2 });
    const written = [];
    const socket = {
      writable: true,
      destroyed: false,
      pause() {},
      on() {},
      end: (data) => written.push(String(data)),
      destroy() {}
    };
    await subject.upgrade({ url: '/', headers: {}, socket: {} }, socket, Buffer.alloc(0));
    assert.equal(asked, false);
    assert.equal(written.length, 1);
    assert.match(written[0], /^HTTP\/1\.1 503 /);
    assert.match(written[0], /\r\nRetry-After: 5\r\n/);
  });
});
