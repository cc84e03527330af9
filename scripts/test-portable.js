#!/usr/bin/env node
'use strict';

// The Server and Socket test suites on the portable build: the addon as
// every platform but Linux builds it (cargo feature `portable`: quiet server
// connections stay tokio tasks; README, "Platforms"), so that path is
// tested here, on Linux, where it is not the default.
//
// Builds with the `test-release` cargo profile (release code without LTO,
// so it builds in about a minute) into target/test-release/, then runs
// __test__/server*.test.js and __test__/socket*.test.js with binding.js
// pointed at that addon (NAPI_RS_NATIVE_LIBRARY_PATH).

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.join(__dirname, '..');
const TARGET = process.env.CARGO_TARGET_DIR ? path.resolve(ROOT, process.env.CARGO_TARGET_DIR) : path.join(ROOT, 'target');
const BUILT = path.join(TARGET, 'test-release', 'libmytosis_websocket.so');
// `require` loads an addon by its extension.
const ADDON = path.join(TARGET, 'test-release', 'mytosis-websocket.node');

function run(command, args, env = process.env) {
  const { status, signal } = spawnSync(command, args, { cwd: ROOT, stdio: 'inherit', env });
  if (status !== 0) {
    console.error(`${command} ${args.join(' ')} failed (${status ?? signal})`);
    process.exit(1);
  }
}

run('cargo', ['build', '--profile', 'test-release', '--features', 'portable']);
fs.copyFileSync(BUILT, ADDON);

const suites = fs
  .readdirSync(path.join(ROOT, '__test__'))
  .filter((name) => /^(server|socket).*\.test\.js$/.test(name))
  .map((name) => path.join('__test__', name));
run('node', ['--test', '--test-concurrency=1', ...suites], { ...process.env, NAPI_RS_NATIVE_LIBRARY_PATH: ADDON });
