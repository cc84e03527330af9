'use strict';

// Buffers that cross between JS and the addon are freed: they are not
// copied at the boundary, and must not leak.

const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const path = require('node:path');
const { test } = require('node:test');
const { promisify } = require('node:util');

const run = promisify(execFile);

test('Buffers received from and sent to the addon are collected once unused', async () => {
  const rounds = 200;
  const script = path.join(__dirname, 'fixtures', 'buffer-lifetimes.js');
  const { stdout } = await run(process.execPath, ['--expose-gc', script, String(rounds)], {
    timeout: 60_000
  });
  const { received, collected, before, after } = JSON.parse(stdout);

  // 200 x (1 KiB + 256 KiB) went each way: about 100 MiB in all.
  assert.equal(received, rounds * 2);
  // Every received Buffer was also sent back, so the addon held it until
  // written: both directions must have let go of it.
  assert.ok(collected >= received * 0.95, `${collected} of ${received} Buffers collected`);
  assert.ok(after - before < 8 * 2 ** 20, `${after - before} bytes of ArrayBuffers left over`);
});
