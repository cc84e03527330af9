'use strict';

const path = require('node:path');

// The addon, through the loader `napi build` generates (binding.js), which
// picks the `.node` file built for this platform.
//
// Without a usable addon (an unsupported platform, a failed build, the
// `.node` file missing), the package still loads: `NativeServer` and
// `NativeSocket` throw an error that says which file was looked for and how
// to build it, and the Socket falls back to a WHATWG `WebSocket` when one
// is available (see `fallbackWebSocket`).

const ROOT = path.join(__dirname, '..');
const CODE = 'ERR_ADDON_MISSING';

let binding = null;
let loadError = null;
try {
  binding = require('../binding.js');
} catch (err) {
  loadError = err;
}

/**
 * The name of the `.node` file `napi build --platform` writes for this
 * platform, as binding.js looks for it.
 *
 * @return {String} e.g. `mytosis-websocket.linux-x64-gnu.node`
 */
function addonFileName() {
  const { platform, arch } = process;
  let abi = '';
  if (platform === 'linux') {
    const libc = isMusl() ? 'musl' : 'gnu';
    abi = arch === 'arm' ? `-${libc}eabihf` : `-${libc}`;
  } else if (platform === 'android' && arch === 'arm') {
    abi = '-eabi';
  } else if (platform === 'win32') {
    abi = arch === 'ia32' || arch === 'x64' || arch === 'arm64' ? '-msvc' : '';
  }
  return `mytosis-websocket.${platform}-${arch}${abi}.node`;
}

function isMusl() {
  try {
    const { header } = process.report.getReport();
    return !header.glibcVersionRuntime;
  } catch {
    return false;
  }
}

/**
 * The error `NativeServer` and `NativeSocket` throw without the addon.
 *
 * @return {Error} With `code` `ERR_ADDON_MISSING` and the loader's error as
 *     `cause`
 */
function missingAddonError() {
  const file = addonFileName();
  const err = new Error(
    `mytosis-websocket's native addon could not be loaded: it looked for ${file} ` +
      `next to ${path.join(ROOT, 'binding.js')} (platform ${process.platform}-${process.arch}). ` +
      'Build it from source with a Rust toolchain (https://rustup.rs): `npm install` runs ' +
      '`napi build` for this platform, or run `npm run build` in the package directory. ' +
      'Without it, only a Socket over a WebSocket implementation (the global WebSocket ' +
      'of Node 22, or the "WebSocket" option) works.'
  );
  err.code = CODE;
  err.file = file;
  err.cause = loadError;
  return err;
}

class MissingNativeServer {
  constructor() {
    throw missingAddonError();
  }
}

class MissingNativeSocket {
  constructor() {
    throw missingAddonError();
  }
}

let warned = false;

/**
 * The WebSocket constructor a Socket uses when the addon is missing and no
 * `WebSocket` option is given: the global one (Node 22). Throws the
 * explanation when there is none.
 *
 * @return {Function} A WHATWG-style WebSocket constructor
 */
function fallbackWebSocket() {
  const { WebSocket } = globalThis;
  if (typeof WebSocket !== 'function') throw missingAddonError();
  return WebSocket;
}

/**
 * Warn, once per process, that a Socket runs over a WebSocket
 * implementation because the addon is missing. Does nothing when the addon
 * loaded.
 */
function warnFallback() {
  if (loadError === null || warned) return;
  warned = true;
  process.emitWarning(
    `mytosis-websocket's native addon (${addonFileName()}) could not be loaded; ` +
      'Socket runs over a WebSocket implementation instead, without custom headers, ' +
      'TLS options or pings. Build the addon with `npm run build` (needs a Rust toolchain).',
    { type: 'Warning', code: CODE }
  );
}

module.exports = {
  NativeServer: binding === null ? MissingNativeServer : binding.NativeServer,
  NativeSocket: binding === null ? MissingNativeSocket : binding.NativeSocket,
  // Only an attached Server calls it, and there is none without the addon.
  refusalResponse: binding?.refusalResponse,
  // How many low bits of a server connection's handle name its slot.
  HANDLE_SLOT_BITS: binding?.HANDLE_SLOT_BITS,
  // The loader's error, or null when the addon loaded.
  loadError,
  addonFileName,
  missingAddonError,
  fallbackWebSocket,
  warnFallback
};
