'use strict';

// What every server under test shares: the scenario (and, in the
// compression scenarios, BENCH_DEFLATE: how to compress) from the environment,
// one JSON line on stdout when listening, and a tiny stdin protocol for the
// runner: `stats` answers `{"event":"stats","rss":...,"connections":...}`,
// `stats gc` does so after a full GC (when run with --expose-gc); the end of
// stdin ends the process. BENCH_TLS_CERT and BENCH_TLS_KEY (PEM files): serve
// wss:// with that certificate (each script in its own way: see ours.js,
// ws.js, uws.js).

const readline = require('node:readline');
const v8 = require('node:v8');

const scenario = process.env.BENCH_SCENARIO || 'echo';
// '' (off) or a mode each server script names: see ours.js, ws.js, uws.js.
const deflate = process.env.BENCH_DEFLATE || '';
const host = process.env.BENCH_HOST || '127.0.0.1';
const port = Number(process.env.BENCH_PORT || 0);
// wss://: the PEM files of the certificate and its key, else null.
const tls = process.env.BENCH_TLS_CERT
  ? { certFile: process.env.BENCH_TLS_CERT, keyFile: process.env.BENCH_TLS_KEY }
  : null;
// Largest message any server accepts: ours' default.
const MAX_PAYLOAD = 16 * 1024 * 1024;

function emit(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

function listening(port, info = {}) {
  emit({ event: 'listening', port, pid: process.pid, scenario, node: process.version, tls: Boolean(tls), ...info });
}

// The scripts set this to a function returning their connection count.
let countConnections = () => null;

function stats(gc) {
  if (gc && typeof global.gc === 'function') {
    global.gc();
    global.gc();
  }
  const mem = process.memoryUsage();
  emit({
    event: 'stats',
    rss: mem.rss,
    heapUsed: mem.heapUsed,
    external: mem.external,
    arrayBuffers: mem.arrayBuffers,
    cpu: process.cpuUsage(),
    connections: countConnections(),
    // V8's young generation grows in steps under load; the leak check shows
    // it beside RSS.
    newSpace: v8.getHeapSpaceStatistics().find((space) => space.space_name === 'new_space')
      ?.physical_space_size
  });
}

function serve(onEnd, connections) {
  if (connections) countConnections = connections;
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    const command = line.trim();
    if (command === 'stats') stats(false);
    else if (command === 'stats gc') stats(true);
  });
  rl.on('close', () => {
    Promise.resolve(onEnd && onEnd())
      .catch(() => {})
      .finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  });
  process.on('SIGTERM', () => process.exit(0));
}

function fail(err) {
  process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
}

process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);

module.exports = { scenario, deflate, host, port, tls, MAX_PAYLOAD, emit, listening, serve, fail };
