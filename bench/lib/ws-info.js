'use strict';

// Which `ws` runs, and whether it uses bufferutil: with bufferutil loaded,
// ws/lib/buffer-util.js replaces its JS mask/unmask by wrappers that call
// it (WS_NO_BUFFER_UTIL=1 prevents that). The file is not in ws's
// `exports`, so it is required by path: the same module instance ws uses.

const path = require('node:path');

// The package root's ws (a devDependency), not the copy socket.io brings
// into bench/node_modules.
const wsDir = path.dirname(require.resolve('ws/package.json', { paths: [path.join(__dirname, '..', '..')] }));

function wsInfo() {
  const { mask } = require(path.join(wsDir, 'lib', 'buffer-util.js'));
  const active = /bufferUtil\.mask|websocketMask/.test(mask.toString());
  let version = null;
  if (active) {
    try {
      version = require(require.resolve('bufferutil/package.json', { paths: [wsDir] })).version;
    } catch {}
  }
  return {
    ws: require(path.join(wsDir, 'package.json')).version,
    bufferutil: active,
    bufferutilVersion: version
  };
}

module.exports = { wsDir, wsInfo };
