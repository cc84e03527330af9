'use strict';

// A build of the package whose addon can be made to panic on purpose, for
// the test that a panic in Rust costs one connection and nothing more.
//
// `cargo build --features panic-trigger` builds a debug addon in which a
// server connection that receives the text frame `__panic__` panics while
// handling it. `loadPanicBuild()` builds it, lays out a copy of the package
// around it in target/panic-trigger-package/ (target/ is not committed;
// from there Node finds the repository's node_modules) and loads that copy.
// The build takes a minute or more when little of it is cached.

const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.join(__dirname, '..');
const TARGET = path.join(ROOT, 'target');
const PACKAGE = path.join(TARGET, 'panic-trigger-package');
// What the package's JS is made of; the addon goes next to binding.js.
const FILES = ['index.js', 'server.js', 'binding.js', 'package.json'];
const ADDON_NAME = 'mytosis-websocket.linux-x64-gnu.node';
// Where cargo puts the debug build (CARGO_TARGET_DIR, if set, is honoured).
const CARGO_TARGET = process.env.CARGO_TARGET_DIR ? path.resolve(ROOT, process.env.CARGO_TARGET_DIR) : TARGET;
const BUILT_ADDON = path.join(CARGO_TARGET, 'debug', 'libmytosis_websocket.so');

/** Whether `cargo` can be run at all (a reason to skip, not to fail). */
function haveCargo() {
  return spawnSync('cargo', ['--version'], { stdio: 'ignore' }).status === 0;
}

/**
 * Run `cargo build --features panic-trigger` in the repository (debug
 * profile). Rejects with cargo's output when it fails.
 */
function buildAddon() {
  return new Promise((resolve, reject) => {
    const cargo = spawn(
      'cargo',
      ['build', '--features', 'panic-trigger', '--message-format=short'],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] }
    );
    let output = '';
    cargo.stdout.on('data', (chunk) => (output += chunk));
    cargo.stderr.on('data', (chunk) => (output += chunk));
    cargo.on('error', reject);
    cargo.on('close', (code, signal) => {
      if (code === 0) resolve(output);
      else reject(new Error(`cargo build --features panic-trigger failed (${code ?? signal}):\n${output.slice(-4000)}`));
    });
  });
}

/**
 * Lay out the package copy around `addon` (a built `.node`/`.so` file).
 * Replaced as a whole each time: no file of an earlier copy survives.
 *
 * @param {String} addon Path of the addon to put next to binding.js
 * @return {String} The copy's directory
 */
function makePackage(addon) {
  fs.rmSync(PACKAGE, { recursive: true, force: true });
  fs.mkdirSync(PACKAGE, { recursive: true });
  for (const file of FILES) fs.copyFileSync(path.join(ROOT, file), path.join(PACKAGE, file));
  fs.cpSync(path.join(ROOT, 'lib'), path.join(PACKAGE, 'lib'), { recursive: true });
  fs.copyFileSync(addon, path.join(PACKAGE, ADDON_NAME));
  return PACKAGE;
}

/**
 * Build the panic-trigger addon, make the package copy around it and
 * load it.
 *
 * @param {Object} [options]
 * @param {String} [options.addon] Use this addon file instead of building
 *     one (to check this harness against another build)
 * @return {Promise<Object>} What `require()` of the copy's index.js gives:
 *     the Socket, with `Server` and the rest on it
 */
async function loadPanicBuild({ addon } = {}) {
  if (addon === undefined) {
    await buildAddon();
    addon = BUILT_ADDON;
  }
  const dir = makePackage(addon);
  // binding.js would load this file instead of the copy's addon.
  delete process.env.NAPI_RS_NATIVE_LIBRARY_PATH;
  return require(path.join(dir, 'index.js'));
}

module.exports = { loadPanicBuild, haveCargo, PACKAGE, BUILT_ADDON };
