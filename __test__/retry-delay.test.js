'use strict';

// The retry policy (README, Socket), checked in both builds against one
// table: __test__/fixtures/retry-delays.json lists `{ options, attempts,
// delays }`, `delays[i]` being the wait before retry `attempts[i]`. With
// `random` given, it is the exact wait when Math.random() gives that; without
// it, the wait before jitter, and the real wait lies in
// [delays[i] * (1 - jitter), delays[i]]. Vectors marked `live` are short
// enough to run against a closed port: in the Node build (the native
// transport) and the browser build (lib/websocket-transport.js over `ws`).

const assert = require('node:assert/strict');
const { describe, test } = require('node:test');

const retryDelay = require('../lib/retry-delay');
const vectors = require('./fixtures/retry-delays.json');
const { BUILDS, closedPort, lifecycle, next, socketsOf } = require('./socket-helpers');

const TIMEOUT = { timeout: 10000 };
// Rust's powi and JS's ** may differ in the last bit.
const EPSILON = 1e-6;
// How early a timer may seem to fire: Node counts timers in whole ms from a
// clock read at the start of each event-loop turn.
const TIMER_SLOP = 2;

const name = ({ options, random }) =>
  `min ${options.minReconnectionDelay}, factor ${options.reconnectionDelayGrowFactor}, ` +
  `max ${options.maxReconnectionDelay}, jitter ${options.jitter}` +
  (random === undefined ? '' : `, random() = ${random}`);

function assertDelay(actual, expected, jitter, what) {
  const low = expected * (1 - jitter) - EPSILON;
  assert.ok(
    actual >= low && actual <= expected + EPSILON,
    `${what}: ${actual} ms, expected ${jitter === 0 ? expected : `${low}..${expected}`}`
  );
}

describe('lib/retry-delay.js against the vectors', () => {
  for (const vector of vectors) {
    test(name(vector), () => {
      const { options, attempts, delays, random } = vector;
      attempts.forEach((attempt, i) => {
        const actual = retryDelay(options, attempt, random === undefined ? Math.random : () => random);
        const jitter = random === undefined ? options.jitter : 0;
        assertDelay(actual, delays[i], jitter, `retry ${attempt}`);
      });
    });
  }

  test('jitter only ever shortens the wait, by at most that fraction', () => {
    const options = {
      minReconnectionDelay: 1000,
      reconnectionDelayGrowFactor: 1,
      maxReconnectionDelay: 1000,
      jitter: 0.25
    };
    const seen = Array.from({ length: 1000 }, () => retryDelay(options, 1));
    assert.ok(seen.every((d) => d > 750 && d <= 1000), 'all within (750, 1000]');
    assert.ok(new Set(seen).size > 1, 'the waits differ');
  });
});

for (const { build, Socket, defaults } of BUILDS) {
  const { socket } = socketsOf(Socket, defaults);

  describe(`the waits between attempts in ${build}`, () => {
    for (const vector of vectors.filter((v) => v.live)) {
      test(`a closed port, ${name(vector)}`, TIMEOUT, async (t) => {
        const { options, attempts, delays } = vector;
        const port = await closedPort();
        const start = performance.now();
        const s = socket(t, `ws://127.0.0.1:${port}`, { ...options, maxRetries: attempts.length });
        const life = lifecycle(s);
        const gaveUp = next(s, 'close');
        assert.equal((await gaveUp).willReconnect, false);
        assert.equal(s.readyState, Socket.CLOSED);

        const expected = attempts.flatMap(() => ['error', 'reconnecting']);
        assert.deepEqual(life.names(), [...expected, 'error', 'close']);
        assert.deepEqual(life.values('error'), Array(attempts.length + 1).fill('ERR_CONNECT'));
        let waited = 0;
        life.values('reconnecting').forEach(({ attempt, delay }, i) => {
          assert.equal(attempt, attempts[i]);
          assertDelay(delay, delays[i], options.jitter, `retry ${attempt}`);
          // Each attempt fails at once (the port is closed), so its error
          // comes no sooner than the waits before it add up to. Measured
          // from the start: the addon reports in batches, a little late.
          waited += delay;
          const failedAt = life.list[2 * i + 2].at;
          assert.ok(
            failedAt - start >= waited - TIMER_SLOP,
            `retry ${attempt} failed ${failedAt - start} ms after the start, before the ${waited} ms of waits`
          );
        });
      });
    }
  });
}
