#!/usr/bin/env node
'use strict';

// Bundles the browser build (browser.js) into the one script the relay's
// demo page loads, demo/dist/mytosis-websocket.js, which sets
// `window.MytosisWebSocket`. Runs in `prepare`, so a clone has it after
// `npm install` and a packed tarball carries it; the relay only reads it.

const path = require('node:path');

const esbuild = require('esbuild');

const ROOT = path.join(__dirname, '..');

esbuild.buildSync({
  entryPoints: [path.join(ROOT, 'browser.js')],
  bundle: true,
  format: 'iife',
  globalName: 'MytosisWebSocket',
  platform: 'browser',
  target: 'es2022',
  outfile: path.join(ROOT, 'demo', 'dist', 'mytosis-websocket.js'),
  logLevel: 'warning'
});
