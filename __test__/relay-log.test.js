'use strict';

// The relay's log lines (bin/relay/log.js): the summary every 10 s, made
// from two readings of `server.stats()` by `formatSummary`, checked with
// concrete numbers; and `logSummaries` driven by mocked timers, so no test
// waits 10 s.

const assert = require('node:assert/strict');
const { describe, test } = require('node:test');

const { formatCluster, formatSummary, logSummaries } = require('../bin/relay/log');

/** A `server.stats()` reading: zeros but for `fields`. */
function stats(fields = {}) {
  return {
    connections: 0,
    accepted: 0,
    messagesIn: 0,
    bytesIn: 0,
    messagesOut: 0,
    bytesOut: 0,
    closes: {},
    invalid: 0,
    paused: 0,
    deflateCalls: 0,
    ...fields
  };
}

describe('formatSummary', () => {
  test('connections, then messages/s and bytes/s each way over the seconds between the readings, then the totals', () => {
    const previous = stats({ connections: 2, accepted: 5, messagesIn: 100, bytesIn: 10240, messagesOut: 180, bytesOut: 20480 });
    const current = stats({
      connections: 3,
      accepted: 7,
      messagesIn: 150, // 50 more in 10 s: 5 messages/s
      bytesIn: 10240 + 51200, // 50 KiB more: 5 KiB/s
      messagesOut: 280, // 100 more: 10 messages/s
      bytesOut: 20480 + 102400 // 100 KiB more: 10 KiB/s
    });
    assert.equal(
      formatSummary(previous, current, 10),
      'summary: connections 3 open, 2 new in 10 s; ' +
        'in 5 messages/s, 5.0 KiB/s; out 10 messages/s, 10.0 KiB/s ' +
        '(since the start: 7 accepted, in 150 messages, 60.0 KiB, out 280 messages, 120.0 KiB)'
    );
  });

  test('rates are divided by the seconds given, with one decimal; small byte rates are whole bytes', () => {
    const previous = stats({ messagesIn: 10, bytesIn: 100, messagesOut: 20, bytesOut: 200 });
    const current = stats({ connections: 1, accepted: 1, messagesIn: 17, bytesIn: 1100, messagesOut: 41, bytesOut: 3 * 1024 * 1024 + 200 });
    assert.equal(
      formatSummary(previous, current, 4),
      'summary: connections 1 open, 1 new in 4 s; ' +
        'in 1.8 messages/s, 250 B/s; out 5.3 messages/s, 768.0 KiB/s ' +
        '(since the start: 1 accepted, in 17 messages, 1.1 KiB, out 41 messages, 3.0 MiB)'
    );
    assert.match(formatSummary(previous, current, 10.0043), /new in 10 s; in 0.7 messages\/s, 100 B\/s; out 2.1 messages\/s, 307.1 KiB\/s /);
  });

  test('nothing moving, or no time between the readings: rates of 0', () => {
    const reading = stats({ connections: 4, accepted: 9, messagesIn: 3, bytesIn: 30, messagesOut: 9, bytesOut: 90 });
    const quiet = 'summary: connections 4 open, 0 new in 10 s; in 0 messages/s, 0 B/s; out 0 messages/s, 0 B/s ' +
      '(since the start: 9 accepted, in 3 messages, 30 B, out 9 messages, 90 B)';
    assert.equal(formatSummary(reading, reading, 10), quiet);
    const later = stats({ ...reading, messagesIn: 5 });
    assert.match(formatSummary(reading, later, 0), /new in 0 s; in 0 messages\/s, 0 B\/s;/);
  });
});

describe('logSummaries', () => {
  test('every 10 s, one line with the rates since the previous summary', (t) => {
    t.mock.timers.enable({ apis: ['setInterval'] });
    let clock = 1000;
    t.mock.method(performance, 'now', () => clock);

    const readings = [
      stats({ connections: 1, accepted: 1 }), // at the call
      stats({ connections: 2, accepted: 2, messagesIn: 20, bytesIn: 2048, messagesOut: 20, bytesOut: 2048 }),
      stats({ connections: 2, accepted: 2, messagesIn: 20, bytesIn: 2048, messagesOut: 20, bytesOut: 2048 })
    ];
    const server = { stats: () => readings.shift() };
    const lines = [];
    logSummaries(server, (line) => lines.push(line));
    assert.deepEqual(lines, [], 'nothing at the start');

    clock += 10000;
    t.mock.timers.tick(10000);
    assert.equal(lines.length, 1);
    assert.match(lines[0], /^summary: connections 2 open, 1 new in 10 s; in 2 messages\/s, 205 B\/s; out 2 messages\/s, 205 B\/s /);

    // A late timer: the rates are over the time that really passed.
    clock += 12500;
    t.mock.timers.tick(10000);
    assert.equal(lines.length, 2);
    assert.match(lines[1], /^summary: connections 2 open, 0 new in 12\.5 s; in 0 messages\/s, 0 B\/s; out 0 messages\/s, 0 B\/s /);
  });
});

describe('formatCluster', () => {
  test("one line per 'cluster' event: up with what was lost meanwhile, down", () => {
    assert.equal(formatCluster('mytosis-websocket', 'up', 0), 'cluster up: joined channel "mytosis-websocket"');
    assert.equal(
      formatCluster('chat', 'up', 1),
      'cluster up: joined channel "chat"; 1 message relayed meanwhile reached no other relay'
    );
    assert.equal(
      formatCluster('chat', 'up', 12),
      'cluster up: joined channel "chat"; 12 messages relayed meanwhile reached no other relay'
    );
    assert.equal(
      formatCluster('a "room"', 'down', 0),
      'cluster down: channel "a \\"room\\"" left, messages reach this relay\'s clients only until Redis is back'
    );
  });
});
