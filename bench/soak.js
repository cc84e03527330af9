'use strict';

// Soak: our Server under a churn of clients for N minutes, measured for
// growth. This process runs only the Server (127.0.0.1, port 0) and the
// measurement; the clients run in a child process (bench/soak-load.js), so
// their memory does not count in the RSS measured here.
//
//   npm run soak -- --minutes 10
//   node bench/soak.js --minutes 2 --clients 500 --interval 30 --warmup 60
//
// Every --interval seconds (30) it prints one line: elapsed time, the
// server process's RSS (after a full garbage collection, so that the figure
// is what the process holds, not garbage not yet collected), its V8 heap in
// use, its open file descriptors (/proc/self/fd), the
// connections open and accepted so far, and the messages in and out
// (server.stats()), with what the load generator did in the interval and
// its RSS (for information only). The
// sample taken at --warmup seconds (60) is the baseline; at the end the
// last sample's RSS and fds must be within 10% of it, else the exit status
// is 1.
//
// The Server's process runs with V8's young generation at its largest from
// the start: semi-spaces of 16 MiB (--min-semi-space-size, V8's default
// --max-semi-space-size on 64-bit); the "young" column is the new space's
// size. Left to itself, V8 grows it by doublings under this load, the last
// ones minutes into the run (16 MiB at about 75 s, 32 MiB at about 225 s),
// each a step of RSS that is no leak but would hide one.

const fs = require('node:fs');
const path = require('node:path');
const v8 = require('node:v8');
const vm = require('node:vm');
const { fork, spawn } = require('node:child_process');

const SEMI_SPACE_MIB = 16;
if (!process.execArgv.some((arg) => arg.startsWith('--min-semi-space-size'))) {
  // Run again, this time with the young generation at its size.
  const flags = [`--min-semi-space-size=${SEMI_SPACE_MIB}`, `--max-semi-space-size=${SEMI_SPACE_MIB}`];
  const child = spawn(process.execPath, [...process.execArgv, ...flags, __filename, ...process.argv.slice(2)], {
    stdio: 'inherit'
  });
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
  return;
}

const { Server } = require(path.join(__dirname, '..'));

const USAGE = `usage: node bench/soak.js [--minutes N] [--clients N] [--interval S] [--warmup S]
  --minutes N    how long to run (default 10)
  --clients N    clients connected at any time (default 500; a fifth are our Socket, the rest ws)
  --interval S   seconds between samples (default 30)
  --warmup S     the sample at this many seconds is the baseline (default 60)
  --tolerance F  allowed growth of RSS and fds, last sample against the baseline (default 0.1)`;

function parseArgs(argv) {
  const opts = { minutes: 10, clients: 500, interval: 30, warmup: 60, tolerance: 0.1 };
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i].replace(/^--/, '');
    if (name === 'help' || name === 'h') {
      console.log(USAGE);
      process.exit(0);
    }
    if (!(name in opts) || !argv[i].startsWith('--') || i + 1 >= argv.length) {
      console.error(`bad argument: ${argv[i]}\n${USAGE}`);
      process.exit(2);
    }
    const value = Number(argv[++i]);
    if (!Number.isFinite(value) || value <= 0) {
      console.error(`--${name} needs a positive number\n${USAGE}`);
      process.exit(2);
    }
    opts[name] = value;
  }
  return opts;
}

function rssBytes(pid = 'self') {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)[1]) * 1024;
  } catch {
    return NaN;
  }
}

function openFds() {
  // The directory read holds one descriptor of its own while it runs.
  return fs.readdirSync('/proc/self/fd').length - 1;
}

// A full garbage collection, with or without --expose-gc.
v8.setFlagsFromString('--expose-gc');
const gc = global.gc || vm.runInNewContext('gc');

const mib = (bytes) => (bytes / 1048576).toFixed(1);
const pad = (value, width) => String(value).padStart(width);

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const durationMs = opts.minutes * 60000;

  const server = new Server({ port: 0, host: '127.0.0.1' });
  server.on('error', (err) => console.error(`server error: ${err.code || ''} ${err.message}`));
  server.messages.forEach((message, connection) => connection.send(message));
  // A broadcast every second reaches every connected client too.
  let ticks = 0;
  const broadcast = setInterval(() => server.send({ type: 'tick', n: ++ticks }), 1000);
  const { port } = await server.ready;

  const load = fork(path.join(__dirname, 'soak-load.js'), [
    `ws://127.0.0.1:${port}`,
    String(opts.clients)
  ], { execArgv: [] });
  let loadCounts = { opened: 0, closed: 0, failed: 0, echoes: 0, ticks: 0 };
  load.on('message', (m) => {
    if (m.type === 'counts') loadCounts = m.counts;
  });
  const loadExit = new Promise((resolve) => load.once('exit', resolve));
  let stopping = false;
  load.once('exit', (code) => {
    if (!stopping) {
      console.error(`load generator exited early (${code})`);
      process.exit(1);
    }
  });

  console.log(
    `soak: ${opts.minutes} min, ${opts.clients} clients (${Math.round(opts.clients / 5)} Socket, ` +
      `${opts.clients - Math.round(opts.clients / 5)} ws) churning against our Server on 127.0.0.1:${port}; ` +
      `server pid ${process.pid}, load generator pid ${load.pid}; node ${process.version}; ${new Date().toISOString()}`
  );
  console.log(
    `baseline: the sample at ${opts.warmup} s (warm-up); pass if the last sample's RSS and fds are within ` +
      `${opts.tolerance * 100}% of it`
  );
  console.log(
    '  time  RSS MiB heap MiB young MiB   fds  open  accepted  msgs in  msgs out  | interval: opened closed failed echoes ticks load RSS'
  );

  const start = Date.now();
  const samples = [];
  let previous = { ...loadCounts };
  await new Promise((resolve) => {
    const timer = setInterval(() => {
      const elapsed = Math.round((Date.now() - start) / 1000);
      const stats = server.stats();
      gc();
      const heap = process.memoryUsage().heapUsed;
      const young = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size;
      const sample = { elapsed, rss: rssBytes(), heap, young, fds: openFds(), ...stats };
      samples.push(sample);
      const d = {};
      for (const key of Object.keys(loadCounts)) d[key] = loadCounts[key] - (previous[key] || 0);
      previous = { ...loadCounts };
      console.log(
        `${pad(elapsed, 5)}s ${pad(mib(sample.rss), 8)} ${pad(mib(heap), 8)} ${pad(mib(young), 9)} ${pad(sample.fds, 5)} ${pad(stats.connections, 5)} ` +
          `${pad(stats.accepted, 9)} ${pad(stats.messagesIn, 8)} ${pad(stats.messagesOut, 9)}  | ` +
          `${pad(d.opened, 15)} ${pad(d.closed, 6)} ${pad(d.failed, 6)} ${pad(d.echoes, 6)} ${pad(d.ticks, 5)} ${pad(mib(rssBytes(load.pid)), 8)}`
      );
      if (Date.now() - start >= durationMs - 500) {
        clearInterval(timer);
        resolve();
      }
    }, opts.interval * 1000);
  });

  stopping = true;
  load.send({ type: 'stop' });
  await Promise.race([loadExit, new Promise((r) => setTimeout(r, 10000))]);
  if (load.exitCode === null) load.kill();
  clearInterval(broadcast);
  await server.close({ timeout: 2000 });

  const base = samples.find((s) => s.elapsed >= opts.warmup - opts.interval / 2) || samples[0];
  const last = samples[samples.length - 1];
  const growth = (a, b) => (b - a) / a;
  const rssGrowth = growth(base.rss, last.rss);
  const fdGrowth = growth(base.fds, last.fds);
  const ok = Math.abs(rssGrowth) <= opts.tolerance && Math.abs(fdGrowth) <= opts.tolerance;
  const pct = (x) => `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)}%`;
  const closes = Object.entries(last.closes || {})
    .map(([code, n]) => `${code}: ${n}`)
    .join(', ');
  console.log(
    `totals: ${last.accepted} connections accepted, ${last.messagesIn} messages in, ` +
      `${last.messagesOut} out; load generator: ${loadCounts.opened} opened, ${loadCounts.failed} failed; ` +
      `closes by code {${closes}}`
  );
  console.log(
    `RSS ${mib(base.rss)} MiB at ${base.elapsed} s -> ${mib(last.rss)} MiB at ${last.elapsed} s (${pct(rssGrowth)}); ` +
      `fds ${base.fds} -> ${last.fds} (${pct(fdGrowth)})`
  );
  console.log(
    ok
      ? `PASS: within ${opts.tolerance * 100}% of the sample at ${base.elapsed} s`
      : `FAIL: more than ${opts.tolerance * 100}% from the sample at ${base.elapsed} s`
  );
  process.exit(ok ? 0 : 1);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
