#!/usr/bin/env node
'use strict';

// Long differential fuzzing of a server connection's path for untrusted
// bytes against tokio-tungstenite (src/differential_tests.rs; README,
// "Differential fuzzing"): `npm run fuzz -- --minutes 60` runs batches of
// random cases, each with a fresh seed, until the time is up or a case
// fails (proptest then prints the smallest failing case it found, and keeps
// it in proptest-regressions/ so that `npm test` runs it from then on).

const { spawnSync } = require('node:child_process');
const path = require('node:path');
const { parseArgs } = require('node:util');

const ROOT = path.join(__dirname, '..');
const CASES_PER_BATCH = 20000;
// Both property tests match: the plain cases and the compressed ones, each
// PROPTEST_CASES per batch.
const TEST = 'differential_tests::a_server_connection';
const CARGO_TEST = ['test', '--profile', 'test-release', '--lib'];

const { values } = parseArgs({ options: { minutes: { type: 'string', default: '60' } } });
const minutes = Number(values.minutes);
if (!(minutes > 0)) {
  console.error('usage: npm run fuzz -- --minutes N (N > 0)');
  process.exit(2);
}

/**
 * Build the tests and return the test binary's path. The batches run it
 * directly: through cargo, each would hold cargo's lock on target/ while
 * it runs.
 */
function buildTests() {
  const built = spawnSync('cargo', [...CARGO_TEST, '--no-run', '--message-format=json-render-diagnostics'], {
    cwd: ROOT,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 64 * 1024 * 1024
  });
  if (built.status !== 0) process.exit(1);
  const artifacts = built.stdout
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line))
    .filter((message) => message.reason === 'compiler-artifact' && message.executable && message.profile.test);
  return artifacts.at(-1).executable;
}

const binary = buildTests();
const started = Date.now();
const deadline = started + minutes * 60_000;
let cases = 0;
while (Date.now() < deadline) {
  const { status } = spawnSync(binary, [TEST, '--quiet'], {
    cwd: ROOT,
    env: { ...process.env, PROPTEST_CASES: String(CASES_PER_BATCH) },
    stdio: ['ignore', 'inherit', 'inherit']
  });
  if (status !== 0) {
    console.error(`a case failed after ${cases} passing cases`);
    process.exit(1);
  }
  cases += CASES_PER_BATCH;
  const elapsed = ((Date.now() - started) / 60_000).toFixed(1);
  console.log(`${cases} cases of each test (plain and compressed) passed in ${elapsed} min`);
}
console.log(`done: ${cases} cases of each test in ${minutes} min, no difference found`);
