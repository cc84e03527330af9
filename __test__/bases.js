'use strict';

// The base classes ConnectionGroup can be built on, and how a test file runs
// itself again on each of them. Without `mytosis` the base is Node's
// EventEmitter; with it, Mytosis's own ConnectionGroup. Two stand-ins for
// the `mytosis` package are found through NODE_PATH:
// - fixtures/mytosis: its group's every member throws (our class must
//   override them all), on a Node emitter ('node') or on an emitter with its
//   own `_events` format ('foreign');
// - fixtures/mytosis-behaving/mytosis: it behaves as Mytosis does ('behaving').
// A run on a stand-in has MYTOSIS_FIXTURE set to the variant.

const { spawnSync } = require('node:child_process');
const path = require('node:path');

const fixtures = path.join(__dirname, 'fixtures');

const STAND_INS = [
  { variant: 'node', nodePath: fixtures },
  { variant: 'foreign', nodePath: fixtures },
  { variant: 'behaving', nodePath: path.join(fixtures, 'mytosis-behaving') }
];

/** The stand-in variant this process runs on, or undefined. */
const fixture = process.env.MYTOSIS_FIXTURE;

/** The environment of a child process on a stand-in `mytosis`. */
function envFor(variant) {
  // 'broken' too: the first stand-in, made to fail loading.
  const standIn = STAND_INS.find((entry) => entry.variant === variant) ?? STAND_INS[0];
  const env = { ...process.env, NODE_PATH: standIn.nodePath, MYTOSIS_FIXTURE: variant };
  // Inherited from a `node --test` parent, it would change the child's output.
  delete env.NODE_TEST_CONTEXT;
  return env;
}

/** Run a test file on a stand-in; returns spawnSync's result. */
function runFileOn(variant, file) {
  return spawnSync(process.execPath, ['--test', '--test-concurrency=1', file], {
    env: envFor(variant),
    encoding: 'utf8',
    timeout: 120_000
  });
}

/** Run a script (`node -e`) on a stand-in; returns spawnSync's result. */
function runScriptOn(variant, script) {
  return spawnSync(process.execPath, ['-e', script], {
    env: envFor(variant),
    encoding: 'utf8',
    timeout: 30_000
  });
}

module.exports = { STAND_INS, fixture, envFor, runFileOn, runScriptOn };
