'use strict';

// The reconnect storm's clients (bench/run.js, scenario `storm`):
// BENCH_CLIENTS of the package's own Sockets to BENCH_URL, with the Socket's
// defaults (retry policy and jitter: minReconnectionDelay 1500, grow factor
// 1.3, jitter 0.25; the first retry after a drop waits minReconnectionDelay,
// shortened by the jitter). They open BENCH_BATCH at a time ({"event":
// "open"} once all are open); then every Socket whose connection drops is
// timed until it is open again: once all are back, one line {"event":
// "back", "dropped": [...], "back": [...]} with the wall-clock times
// (Date.now(), ms) at which each Socket saw its drop and was open again, and
// the count of its retries (`'reconnecting'` events). The end of stdin ends
// the process.

const path = require('node:path');
const readline = require('node:readline');

const Socket = require(process.env.BENCH_OURS_DIR || path.join(__dirname, '..', '..'));

const url = process.env.BENCH_URL;
const count = Number(process.env.BENCH_CLIENTS || 1000);
const batch = Number(process.env.BENCH_BATCH || 500);

const emit = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

const dropped = new Array(count).fill(null);
const back = new Array(count).fill(null);
// 'reconnecting' events after the drop, of all Sockets (the first retry of
// each included).
let retries = 0;
let errors = 0;
let backCount = 0;
const sockets = [];

function make(i) {
  return new Promise((resolve) => {
    const socket = new Socket(url);
    let opened = false;
    socket.on('error', () => {
      errors++;
    });
    socket.on('reconnecting', () => {
      if (opened) retries++;
    });
    socket.on('close', () => {
      if (opened && dropped[i] === null) dropped[i] = Date.now();
    });
    socket.on('open', () => {
      if (!opened) {
        opened = true;
        resolve();
      } else if (dropped[i] !== null && back[i] === null) {
        back[i] = Date.now();
        if (++backCount === count) {
          emit({ event: 'back', dropped, back, retries, errors });
        }
      }
    });
    sockets.push(socket);
  });
}

async function main() {
  const t0 = Date.now();
  for (let i = 0; i < count; i += batch) {
    const opening = [];
    for (let j = i; j < Math.min(count, i + batch); j++) opening.push(make(j));
    await Promise.all(opening);
  }
  // 'reconnecting' and 'error' of the opening phase are not the storm's.
  retries = 0;
  errors = 0;
  emit({ event: 'open', clients: count, seconds: (Date.now() - t0) / 1000, pid: process.pid });
}

readline.createInterface({ input: process.stdin }).on('close', () => {
  for (const socket of sockets) socket.close();
  setTimeout(() => process.exit(0), 500).unref();
});

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
