#!/usr/bin/env node
'use strict';

// `npm run bench`: mytosis-websocket against ws (with and without
// bufferutil) and uWebSockets.js, interleaved, with a Rust load generator on
// its own core. See bench/README.md.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const { Child, canPin } = require('./lib/child');
const proc = require('./lib/proc');
const { machineInfo, addonInfo, root } = require('./lib/machine');
const report = require('./lib/report');
// A free port and a redis-server's readiness, as the cluster tests find them.
const { freePort, pong } = require('../__test__/redis-kit');

const BENCH = __dirname;
const LOADGEN_DIR = path.join(BENCH, 'loadgen');
const LOADGEN = path.join(LOADGEN_DIR, 'target', 'release', 'loadgen');
const SERVER_CORE = 0;
const LOAD_CORE = 1;
const NOFILE = 65536;

// ---------------------------------------------------------------- options

const FULL = {
  rounds: 3,
  scenarios:
    'echo,fanout,idle,idle-listeners,big,client,echo-deflate,fanout-deflate,idle-deflate,' +
    'wss-echo-ecdsa,wss-echo-rsa,wss-big-ecdsa,wss-big-rsa,connrate,connrate-wss-ecdsa,connrate-wss-rsa,storm,cluster,leak',
  peers: 'ours,ws,ws+bufferutil,uWS.js,rust-echo',
  deflatePeers: 'ours,ws-no-takeover,ws-takeover,uWS.js-shared,uWS.js-dedicated,ours-off,ws-off,uWS.js-off',
  clients: 'ours,ws,ws+bufferutil,undici',
  echoConnections: 100,
  echoInflight: 16,
  echoWarmup: 1,
  echoSeconds: 10,
  fanoutReceivers: 1000,
  fanoutMessages: 2000,
  // Compressed fan-out: ws compresses for every receiver (2,000 updates
  // would take it minutes).
  fanoutDeflateMessages: 200,
  // cluster: broadcasts across processes through Redis.
  clusterPeers: 'ours-2-nodes,ours-1-node,socket.io-2-nodes',
  clusterReceivers: 1000,
  clusterMessages: 2000,
  // Then, on the same nodes, messages paced at this rate (per second; 0:
  // skip), for the latency below saturation.
  clusterRate: 50,
  clusterPacedMessages: 250,
  idleConnections: 10000,
  idleSettle: 2,
  // Past one and a half of our default heartbeat interval (30 s): every
  // connection has had its first ping, which wakes a dormant one for a
  // moment.
  idleHold: 48,
  bigConnections: 1,
  bigInflight: 2,
  bigSize: 1048576,
  bigWarmup: 1,
  bigSeconds: 5,
  clientConnections: 1,
  clientInflight: 64,
  clientWarmup: 1,
  clientSeconds: 5,
  // wss:// 1 MiB echo: two connections with one message in flight each
  // (uWS.js's SSLApp drops a connection with two of 512 KiB or more in
  // flight: see bench/README.md).
  wssBigConnections: 2,
  wssBigInflight: 1,
  // Connection rate: workers each connecting, echoing one message and
  // closing in a loop, from source addresses 127.0.0.2-9.
  connrateConcurrency: 50,
  connrateWarmup: 1,
  connrateSeconds: 10,
  connrateSources: '127.0.0.2-9',
  // Reconnect storm: clients (our Socket, default retry policy) in this many
  // Node processes; a run fails if they are not all back within the timeout.
  stormClients: 10000,
  stormProcesses: 2,
  stormTimeout: 60,
  leakSeconds: 60,
  leakEarly: 10,
  perf: false,
  perfSeconds: 5,
  oursDir: root,
  output: 'results',
  pin: true,
  install: true,
  build: 'auto',
  note: '',
  waitIdle: 900,
  busyLimit: 15,
  retryBusy: 2,
  verbose: false
};

const QUICK = {
  rounds: 1,
  scenarios:
    'echo,fanout,idle,idle-listeners,big,client,echo-deflate,fanout-deflate,idle-deflate,' +
    'wss-echo-ecdsa,wss-echo-rsa,wss-big-ecdsa,wss-big-rsa,connrate,connrate-wss-ecdsa,connrate-wss-rsa,storm',
  echoWarmup: 0.5,
  echoSeconds: 2,
  fanoutReceivers: 200,
  fanoutMessages: 500,
  fanoutDeflateMessages: 50,
  clusterMessages: 500,
  idleConnections: 2000,
  idleSettle: 0.5,
  idleHold: 0,
  bigWarmup: 0.5,
  bigSeconds: 2,
  clientWarmup: 0.5,
  clientSeconds: 2,
  connrateWarmup: 0.5,
  connrateSeconds: 2,
  stormClients: 2000,
  leakSeconds: 20,
  leakEarly: 5,
  output: 'results-quick'
};

const HELP = `usage: node bench/run.js [options]       (npm run bench -- [options])

  --quick               a smoke run of a few minutes: 1 round, short scenarios,
                        written to bench/results-quick.{md,svg}
  --leak                only the leak check: JSON echo against our server for
                        --leak-seconds (60), RSS at --leak-early (10) s and at the end
  --no-leak             skip the leak check (part of a full run)
  --perf                also profile our server (perf record) in an extra,
                        unmeasured run of echo, fanout and big; top frames go
                        into results.md
  --rounds N            rounds, interleaved A B A B ... (3)
  --scenarios LIST      echo,fanout,idle,idle-listeners,big,client,echo-deflate,fanout-deflate,
                        idle-deflate,wss-echo-ecdsa,wss-echo-rsa,wss-big-ecdsa,wss-big-rsa,
                        connrate,connrate-wss-ecdsa,connrate-wss-rsa,storm,cluster,leak
                        (cluster needs redis-server, else only its one-node setup
                        runs; not in --quick); "wss" stands for the four wss-*,
                        "connrate-wss" for both connrate-wss-*
  --peers LIST          servers: ours,ws,ws+bufferutil,uWS.js,rust-echo (the last
                        is a reference without JS, in echo and big only)
  --deflate-peers LIST  servers of the *-deflate scenarios: ours,ws-no-takeover,
                        ws-takeover,uWS.js-shared, and in idle-deflate only
                        uWS.js-dedicated and the same servers uncompressed:
                        ours-off,ws-off,uWS.js-off
  --clients LIST        clients: ours,ws,ws+bufferutil,undici
  --echo-seconds S, --echo-connections N, --echo-inflight K, --echo-warmup S
  --fanout-receivers R, --fanout-messages M, --fanout-deflate-messages M (200)
  --cluster-peers LIST  the cluster scenario's setups: ours-2-nodes,ours-1-node,
                        socket.io-2-nodes (socket.io 4 + @socket.io/redis-adapter)
  --cluster-receivers R, --cluster-messages M (1000, 2000)
  --cluster-rate N, --cluster-paced-messages M   then M (250) messages paced at
                        N (50) per second on the same nodes, for latency under
                        saturation (--cluster-rate 0: skip)
  --idle-connections N, --idle-settle S, --idle-hold S (0: skip the
                        second reading, after holding S seconds more)
  --big-seconds S, --big-connections N, --big-inflight K, --big-size BYTES
  --client-seconds S, --client-connections N, --client-inflight K
  --wss-big-connections N, --wss-big-inflight K   wss-big-*: N (2) connections
                        with K (1) messages in flight each
  --connrate-seconds S, --connrate-warmup S, --connrate-concurrency N (10, 1, 50)
  --connrate-sources A  source addresses of the connection rate's clients, in
                        turn: 127.0.0.2-9 (a range of the last octet), a list, or none
  --storm-clients N, --storm-processes P, --storm-timeout S   reconnect storm:
                        N (10000) Sockets in P (2) Node processes; fail after S (60) s
  --ours-dir DIR        the mytosis-websocket checkout to measure (the package root)
  --output NAME         write bench/NAME.md, NAME.svg, NAME.json (results)
  --no-pin              do not pin processes to cores
  --no-install          do not install the optional uWebSockets.js package
  --no-build            never build the load generator
  --build               rebuild the load generator first
  --wait-idle S         wait up to S seconds for a running cargo/rustc to end
                        before each run (900; 0: do not wait)
  --busy-limit P        a run during which other processes used over P% of a
                        core (15) is measured again, up to --retry-busy (2) times,
                        then kept with a warning
  --verbose             show the children's output
  --note TEXT           a note for the top of results.md (how ours was built, say)
  --render FILE.json    only write the report (NAME.md, NAME.svg) of an earlier run again
                        (with --note TEXT to add or replace the note)

Every option can also be set as BENCH_<NAME> in the environment, e.g.
BENCH_ROUNDS=5 or BENCH_ECHO_SECONDS=20.`;

function camel(flag) {
  return flag.replace(/-([a-z])/g, (_, c) => c.toUpperCase());
}

function snake(key) {
  return key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();
}

function coerce(key, value) {
  const def = FULL[key];
  if (typeof def === 'number') {
    const n = Number(value);
    if (!Number.isFinite(n)) throw new Error(`--${key}: not a number: ${value}`);
    return n;
  }
  if (typeof def === 'boolean') return value === true || value === 'true' || value === '1';
  return String(value);
}

function parseOptions(argv) {
  const flags = {};
  const quick = argv.includes('--quick') || process.env.BENCH_QUICK === '1';
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') {
      console.log(HELP);
      process.exit(0);
    }
    if (!arg.startsWith('--')) throw new Error(`unexpected argument ${arg}\n\n${HELP}`);
    let [name, value] = arg.slice(2).split(/=(.*)/s, 2);
    if (name === 'quick') continue;
    if (name === 'leak') {
      flags.scenarios = 'leak';
      continue;
    }
    if (name === 'no-leak') {
      flags.noLeak = true;
      continue;
    }
    if (name === 'build') {
      flags.build = 'always';
      continue;
    }
    if (name.startsWith('no-')) {
      const key = camel(name.slice(3));
      if (!(key in FULL)) throw new Error(`unknown option --${name}\n\n${HELP}`);
      flags[key] = key === 'build' ? 'never' : typeof FULL[key] === 'number' ? 0 : false;
      continue;
    }
    const key = camel(name);
    if (!(key in FULL)) throw new Error(`unknown option --${name}\n\n${HELP}`);
    if (value === undefined) {
      if (typeof FULL[key] === 'boolean') value = true;
      else value = argv[++i];
      if (value === undefined) throw new Error(`--${name} needs a value`);
    }
    flags[key] = coerce(key, value);
  }
  const options = { ...FULL, ...(quick ? QUICK : {}) };
  for (const key of Object.keys(FULL)) {
    const env = process.env[`BENCH_${snake(key)}`];
    if (env !== undefined && env !== '') options[key] = coerce(key, env);
  }
  Object.assign(options, flags);
  if (flags.noLeak) {
    options.scenarios = options.scenarios
      .split(',')
      .filter((s) => s !== 'leak')
      .join(',');
  }
  delete options.noLeak;
  options.quick = quick;
  options.list = (key) => options[key].split(',').map((s) => s.trim()).filter(Boolean);
  return options;
}

// --------------------------------------------------------------- helpers

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const log = (...args) => console.log(...args);
const warnings = [];
function warn(message) {
  warnings.push(message);
  console.log(`\n!! ${message}\n`);
}

function cargoRunning() {
  const r = spawnSync('pgrep', ['-x', 'cargo|rustc|cc1|cc1plus|ld'], { encoding: 'utf8' });
  return r.stdout
    .split('\n')
    .map((s) => s.trim())
    .filter((pid) => pid && Number(pid) !== process.pid);
}

/** Waits while a compiler runs: it would take a core from the measurement. */
async function waitForIdleMachine(options) {
  if (!options.waitIdle) return;
  let pids = cargoRunning();
  if (pids.length === 0) return;
  log(`   (a build is running, pids ${pids.join(' ')}: waiting up to ${options.waitIdle} s for it to end)`);
  const deadline = Date.now() + options.waitIdle * 1000;
  while (pids.length > 0 && Date.now() < deadline) {
    await sleep(2000);
    pids = cargoRunning();
  }
  if (pids.length > 0) warn(`a build (pids ${pids.join(' ')}) was still running during a measurement`);
  else await sleep(1000);
}

function loadgenSources() {
  const files = [path.join(LOADGEN_DIR, 'Cargo.toml'), path.join(LOADGEN_DIR, 'Cargo.lock')];
  for (const f of fs.readdirSync(path.join(LOADGEN_DIR, 'src'))) files.push(path.join(LOADGEN_DIR, 'src', f));
  return files.filter((f) => fs.existsSync(f));
}

async function ensureLoadgen(options) {
  const buildCmd = `cargo build --release --manifest-path ${path.relative(process.cwd(), path.join(LOADGEN_DIR, 'Cargo.toml'))}`;
  const exists = fs.existsSync(LOADGEN);
  const stale =
    exists && loadgenSources().some((f) => fs.statSync(f).mtimeMs > fs.statSync(LOADGEN).mtimeMs);
  const mayBuild =
    options.build === 'always' ||
    (options.build === 'auto' && process.env.npm_lifecycle_event === 'bench');
  if (exists && !stale && options.build !== 'always') return;
  if (!mayBuild) {
    if (exists) {
      warn(`the load generator is older than its sources; rebuild it with: ${buildCmd}`);
      return;
    }
    throw new Error(
      `the load generator is not built (${path.relative(process.cwd(), LOADGEN)} is missing).\n` +
        `Build it with:\n\n    ${buildCmd}\n\n` +
        'or run `npm run bench` (or `node bench/run.js --build`), which builds it first.'
    );
  }
  let pids = cargoRunning();
  if (pids.length > 0) {
    log(`Another build is running (pids ${pids.join(' ')}); waiting for it before building the load generator...`);
    while (pids.length > 0) {
      await sleep(2000);
      pids = cargoRunning();
    }
  }
  log(`Building the load generator: ${buildCmd}`);
  const r = spawnSync('cargo', ['build', '--release', '--manifest-path', path.join(LOADGEN_DIR, 'Cargo.toml')], {
    stdio: 'inherit',
    timeout: 20 * 60 * 1000
  });
  if (r.status !== 0 || !fs.existsSync(LOADGEN)) {
    throw new Error(`building the load generator failed (${r.error ? r.error.message : `exit ${r.status}`})`);
  }
}

/**
 * Whether optional packages load from bench/: `modules` are required and
 * the first one's version is read. With `options.install`, a missing one
 * is installed there first (`npm install` in bench/, announced as `what`).
 */
function optionalPackages(options, modules, what) {
  const code = `${modules.map((m) => `require('${m}');`).join(' ')} console.log(require('${modules[0]}/package.json').version)`;
  const probe = () => spawnSync(process.execPath, ['-e', code], { cwd: BENCH, encoding: 'utf8', timeout: 20000 });
  let r = probe();
  if (r.status !== 0 && options.install && /Cannot find module/.test(r.stderr)) {
    log(`Installing ${what} into bench/node_modules (npm install in bench/)...`);
    const npm = spawnSync('npm', ['install', '--no-audit', '--no-fund', '--no-save'], { cwd: BENCH, encoding: 'utf8', timeout: 180000 });
    if (npm.status !== 0) {
      return { ok: false, reason: `npm install in bench/ failed: ${(npm.stderr || '').trim().split('\n').slice(-3).join(' ')}` };
    }
    r = probe();
  }
  if (r.status !== 0) {
    return { ok: false, reason: (r.stderr || '').trim().split('\n').find((l) => /Error/.test(l)) || `exit ${r.status}` };
  }
  return { ok: true, version: r.stdout.trim() };
}

/** The optional uWebSockets.js package (bench/package.json). */
function uwsAvailability(options) {
  return optionalPackages(options, ['uwebsockets'], 'the optional uWebSockets.js package');
}

/** Whether the addon is a debug build: debug assertions leave their names. */
function addonBuildType(dir) {
  const file = fs.readdirSync(dir).find((f) => f.endsWith('.node'));
  if (!file) return { type: 'missing' };
  const data = fs.readFileSync(path.join(dir, file));
  // core's UB checks (`precondition_check`) exist only with debug
  // assertions; a release build with symbols kept has none.
  const debug = data.indexOf('precondition_check') !== -1;
  return { type: debug ? 'debug' : 'release', file: path.join(dir, file), bytes: data.length };
}

// ----------------------------------------------------------------- peers

const SERVER_PEERS = {
  ours: { script: 'ours.js', env: {} },
  ws: {
    script: 'ws.js',
    env: { WS_NO_BUFFER_UTIL: '1' },
    check: (info) => {
      if (info.bufferutil) throw new Error('bufferutil is active although WS_NO_BUFFER_UTIL=1');
    }
  },
  'ws+bufferutil': {
    script: 'ws.js',
    env: { WS_NO_BUFFER_UTIL: null },
    check: (info) => {
      if (!info.bufferutil) {
        throw new Error('bufferutil is not in use by ws: install the devDependencies (npm install at the package root)');
      }
    }
  },
  'uWS.js': { script: 'uws.js', env: {} },
  // A reference, not a peer: tokio-tungstenite alone (the load generator's
  // echo server, frames echoed as they came, no JS). Only where the work is
  // an echo.
  'rust-echo': { rust: true, scenarios: ['echo', 'big'] }
};

// The compression scenarios' servers (BENCH_DEFLATE: see servers/*.js). The
// uncompressed ones, in idle-deflate only, give what compression adds.
const wsNoBufferutil = SERVER_PEERS.ws;
const DEFLATE_PEERS = {
  ours: { script: 'ours.js', env: { BENCH_DEFLATE: 'on' } },
  'ws-no-takeover': { ...wsNoBufferutil, env: { ...wsNoBufferutil.env, BENCH_DEFLATE: 'no-takeover' } },
  'ws-takeover': { ...wsNoBufferutil, env: { ...wsNoBufferutil.env, BENCH_DEFLATE: 'takeover' } },
  'uWS.js-shared': { script: 'uws.js', env: { BENCH_DEFLATE: 'shared' } },
  'uWS.js-dedicated': { script: 'uws.js', env: { BENCH_DEFLATE: 'dedicated' }, scenarios: ['idle-deflate'] },
  'ours-off': { script: 'ours.js', env: {}, scenarios: ['idle-deflate'] },
  'ws-off': { ...wsNoBufferutil, scenarios: ['idle-deflate'] },
  'uWS.js-off': { script: 'uws.js', env: {}, scenarios: ['idle-deflate'] }
};

const CLIENT_PEERS = {
  ours: { script: 'ours.js', env: {} },
  ws: { script: 'ws.js', env: { WS_NO_BUFFER_UTIL: '1' } },
  'ws+bufferutil': { script: 'ws.js', env: { WS_NO_BUFFER_UTIL: null } },
  undici: { script: 'undici.js', env: {} }
};

// The cluster scenario's setups: `nodes` server processes (on the server
// core), on one Redis when more than one; the load generator's protocol.
const CLUSTER_PEERS = {
  'ours-2-nodes': { script: 'ours.js', env: {}, nodes: 2, protocol: 'ws' },
  'ours-1-node': { script: 'ours.js', env: {}, nodes: 1, protocol: 'ws' },
  'socket.io-2-nodes': { script: 'socketio.js', env: {}, nodes: 2, protocol: 'socketio', needs: 'socket.io' }
};

let runCounter = 0;

/**
 * A throwaway redis-server on a free port, without persistence, on the
 * server core; resolves once it answers PING. The caller stops it
 * (Child.stop: TERM, then KILL), and the runner kills it when it exits.
 */
async function startRedis(options) {
  const port = await freePort();
  const child = new Child('redis-server', ['redis-server', '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    core: options.pin ? SERVER_CORE : null,
    nofile: NOFILE,
    cwd: os.tmpdir(),
    verbose: options.verbose
  });
  const deadline = Date.now() + 10000;
  while (!(await pong(port))) {
    if (child.exitCode !== undefined) {
      throw child.error(`exited (${child.exitCode}) on port ${port}`);
    }
    if (Date.now() > deadline) {
      await child.stop();
      throw new Error(`redis-server on ${port} did not answer PING within 10 s`);
    }
    await sleep(20);
  }
  child.port = port;
  child.url = `redis://127.0.0.1:${port}/0`;
  return child;
}

/** The optional socket.io packages of the cluster scenario (bench/package.json). */
function socketioAvailability(options) {
  return optionalPackages(options, ['socket.io', '@socket.io/redis-adapter', 'redis'], 'socket.io, @socket.io/redis-adapter and redis');
}

// ---------------------------------------------------------- certificates

// The wss:// scenarios' certificates: self-signed for 127.0.0.1 and
// localhost (subjectAltName; CA:FALSE, serverAuth: a server certificate,
// trusted by the load generator as its only root through --ca), made with
// the openssl CLI once per run into a temporary directory, removed at exit.
const CERTS = {
  ecdsa: { label: 'ECDSA P-256', newkey: ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'] },
  rsa: { label: 'RSA 2048', newkey: ['-newkey', 'rsa:2048'] }
};
let certDir = null;
const certFiles = {};

function certificate(kind) {
  if (certFiles[kind]) return certFiles[kind];
  if (!certDir) {
    certDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mytosis-bench-tls-'));
    process.on('exit', () => fs.rmSync(certDir, { recursive: true, force: true }));
  }
  const cert = path.join(certDir, `${kind}-cert.pem`);
  const key = path.join(certDir, `${kind}-key.pem`);
  const r = spawnSync(
    'openssl',
    ['req', '-x509', ...CERTS[kind].newkey, '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-addext', 'basicConstraints=critical,CA:FALSE',
      '-addext', 'extendedKeyUsage=serverAuth'],
    { encoding: 'utf8', timeout: 30000 }
  );
  if (r.status !== 0) {
    throw new Error(`openssl could not make the ${CERTS[kind].label} certificate: ${r.error ? r.error.message : r.stderr.trim().split('\n').pop()}`);
  }
  certFiles[kind] = { cert, key };
  return certFiles[kind];
}

/** `--ca FILE` for the load generator when the server speaks wss://. */
function caArgs(server) {
  return server.tls ? ['--ca', server.tls.cert] : [];
}

async function startServer(options, peer, scenario, { gc = false, perfMap = false, deflate = false, spec: given, env = {}, name, tls } = {}) {
  const spec = given || (deflate ? DEFLATE_PEERS : SERVER_PEERS)[peer];
  if (spec.rust) {
    const child = new Child(`${peer} server`, [LOADGEN, 'client-echo', '--timeout', '3600'], {
      core: options.pin ? SERVER_CORE : null,
      nofile: NOFILE,
      verbose: options.verbose
    });
    try {
      const info = await child.waitFor('listening', 30000);
      child.info = { ...info, peer };
      child.url = `ws://127.0.0.1:${info.port}/`;
      return child;
    } catch (err) {
      await child.stop();
      throw err;
    }
  }
  const nodeArgs = [];
  if (gc) nodeArgs.push('--expose-gc');
  if (perfMap) nodeArgs.push('--perf-basic-prof-only-functions');
  // wss://: the certificate files of `tls` (a kind of CERTS).
  const files = tls ? certificate(tls) : null;
  const tlsEnv = files ? { BENCH_TLS_CERT: files.cert, BENCH_TLS_KEY: files.key } : {};
  const child = new Child(name || `${peer} server`, ['node', ...nodeArgs, path.join(BENCH, 'servers', spec.script)], {
    core: options.pin ? SERVER_CORE : null,
    nofile: NOFILE,
    // V8 may leave logs in the working directory.
    cwd: os.tmpdir(),
    env: { ...spec.env, ...tlsEnv, ...env, BENCH_SCENARIO: scenario, BENCH_OURS_DIR: options.oursDir },
    verbose: options.verbose
  });
  try {
    const info = await child.waitFor('listening', 30000);
    if (spec.check) spec.check(info);
    if (Boolean(info.tls) !== Boolean(files)) throw new Error(`the server ${files ? 'does not speak' : 'speaks'} wss://`);
    child.info = info;
    child.tls = files;
    child.url = `${files ? 'wss' : 'ws'}://127.0.0.1:${info.port}/`;
    return child;
  } catch (err) {
    await child.stop();
    throw err;
  }
}

function startLoadgen(options, args, timeoutS) {
  return new Child(`loadgen ${args[0]}`, [LOADGEN, ...args.map(String), '--timeout', String(Math.ceil(timeoutS))], {
    core: options.pin ? LOAD_CORE : null,
    nofile: NOFILE,
    verbose: options.verbose
  });
}

async function stats(server, gc) {
  const reply = server.waitFor('stats', 20000, { fresh: true });
  server.send(gc ? 'stats gc' : 'stats');
  return reply;
}

// ------------------------------------------------------------- scenarios

async function withServer(options, peer, scenario, fn, serverOpts) {
  await waitForIdleMachine(options);
  const server = await startServer(options, peer, scenario, serverOpts);
  const children = [server];
  try {
    const result = await fn(server, (child) => {
      children.push(child);
      return child;
    });
    return { ...result, serverInfo: server.info };
  } finally {
    for (const child of children.reverse()) await child.stop();
    // Let the kernel settle closed sockets between runs.
    await sleep(300);
  }
}

async function profile(options, server, seconds) {
  const data = path.join(os.tmpdir(), `mytosis-bench-perf-${process.pid}-${++runCounter}.data`);
  const rec = spawnSync(
    'perf',
    ['record', '-F', '499', '-g', '-p', String(server.pid), '-o', data, '--', 'sleep', String(seconds)],
    { encoding: 'utf8', timeout: (seconds + 30) * 1000 }
  );
  if (rec.status !== 0) return { error: (rec.stderr || rec.error?.message || 'perf record failed').trim().slice(0, 300) };
  const rep = spawnSync(
    'perf',
    ['report', '-i', data, '--stdio', '--no-children', '--sort', 'dso,sym', '-g', 'none', '--percent-limit', '0.7'],
    { encoding: 'utf8', timeout: 120000, maxBuffer: 64 * 1024 * 1024 }
  );
  fs.rmSync(data, { force: true });
  const lines = (rep.stdout || '')
    .split('\n')
    .filter((l) => /^\s+\d+\.\d+%/.test(l))
    .slice(0, 30)
    .map((l) => l.replace(/\s+$/, ''));
  return { lines };
}

/**
 * Opens `idleConnections` with `loadgen SUBCOMMAND` and reads the server's
 * RSS per connection, after a full GC, before and after (and again after
 * `hold` seconds, if not 0).
 */
function idleRun(options, peer, subcommand, { hold, deflate = false, serverScenario = 'idle' }) {
  const n = options.idleConnections;
  return withServer(
    options,
    peer,
    // The compressed connections exchange one message: an echo.
    deflate ? 'echo' : serverScenario,
    async (server, track) => {
      await sleep(500);
      const before = await stats(server, true);
      const lg = track(startLoadgen(options, [subcommand, '--url', server.url, '--connections', n], 600));
      const open = await lg.waitFor('open', 300000);
      const deadline = Date.now() + 60000;
      let seen = await stats(server, false);
      while (seen.connections !== null && seen.connections < n && Date.now() < deadline) {
        await sleep(250);
        seen = await stats(server, false);
      }
      if (seen.connections !== null && seen.connections < n) {
        throw new Error(`the server counts ${seen.connections} of ${n} connections after 60 s`);
      }
      await sleep(options.idleSettle * 1000);
      const after = await stats(server, true);
      let held = null;
      if (hold > 0) {
        await sleep(hold * 1000);
        held = await stats(server, true);
      }
      lg.send('stop');
      return checkNegotiated(peer, {
        connections: n,
        server_connections: after.connections,
        bytes_per_conn: (after.rss - before.rss) / n,
        held_bytes_per_conn: held && (held.rss - before.rss) / n,
        heap_per_conn: (after.heapUsed - before.heapUsed) / n,
        rss_before_mb: before.rss / 2 ** 20,
        rss_after_mb: after.rss / 2 ** 20,
        open_seconds: open.seconds,
        deflate: open.deflate
      });
    },
    { gc: true, deflate }
  );
}

/**
 * A compression scenario's result, once the server answered as its peer
 * should: with permessage-deflate, and ws-takeover without
 * server_no_context_takeover; the "-off" peers without it.
 */
function checkNegotiated(peer, result) {
  if (result.deflate === undefined) return result;
  const want = peer.endsWith('-off') ? 'none' : peer === 'ws-takeover' ? 'context_takeover' : null;
  const ok = want ? result.deflate === want : result.deflate !== 'none';
  if (!ok) throw new Error(`${peer}: the server answered permessage-deflate as "${result.deflate}"`);
  return result;
}

/**
 * A measured window of `loadgen ARGS` (echo, big) against a fresh server
 * (over wss:// with `tls`); with `perf`, a profile of the server taken once
 * the window started.
 */
function windowRun(options, peer, serverScenario, { args, seconds, warmup, perf, tls }) {
  return withServer(
    options,
    peer,
    serverScenario,
    async (server, track) => {
      const timeout = seconds + warmup + 120;
      const lg = track(startLoadgen(options, [...args(server), ...caArgs(server)], timeout));
      let prof;
      if (perf) {
        await lg.waitFor('start', 120000);
        prof = profile(options, server, options.perfSeconds);
      }
      const result = await lg.waitFor('result', timeout * 1000);
      if (tls && !result.tls) throw new Error('the load generator reports no TLS');
      return { ...result, profile: prof ? await prof : undefined };
    },
    { perfMap: perf, tls }
  );
}

/** JSON echo (scenarios echo and wss-echo-*). */
function echoRun(options, peer, { perf, tls } = {}) {
  const seconds = perf ? Math.max(options.echoSeconds, options.perfSeconds + 2) : options.echoSeconds;
  return windowRun(options, peer, 'echo', {
    seconds,
    warmup: options.echoWarmup,
    perf,
    tls,
    args: (server) => ['echo', '--url', server.url, '--connections', options.echoConnections, '--inflight', options.echoInflight,
      '--warmup', options.echoWarmup, '--duration', seconds, '--cpu-pid', server.pid]
  });
}

/** 1 MiB binary echo (scenarios big and wss-big-*). */
function bigRun(options, peer, { perf, tls, connections = options.bigConnections, inflight = options.bigInflight } = {}) {
  const seconds = perf ? Math.max(options.bigSeconds, options.perfSeconds + 2) : options.bigSeconds;
  return windowRun(options, peer, 'big', {
    seconds,
    warmup: options.bigWarmup,
    perf,
    tls,
    args: (server) => ['big', '--url', server.url, '--connections', connections, '--inflight', inflight,
      '--size', options.bigSize, '--warmup', options.bigWarmup, '--duration', seconds, '--cpu-pid', server.pid]
  });
}

/** Connection rate (scenarios connrate and connrate-wss-*). */
function connrateRun(options, peer, { tls } = {}) {
  return windowRun(options, peer, 'echo', {
    seconds: options.connrateSeconds,
    warmup: options.connrateWarmup,
    tls,
    args: (server) => ['connrate', '--url', server.url, '--concurrency', options.connrateConcurrency,
      '--warmup', options.connrateWarmup, '--duration', options.connrateSeconds, '--cpu-pid', server.pid,
      '--sources', options.connrateSources || 'none']
  }).then((result) => {
    // A few failures in a storm of connections are reported; more fail the run.
    if (result.failed > Math.max(10, result.connections / 100)) {
      throw new Error(`${result.failed} connections failed (${result.connections} completed): ${result.first_error}`);
    }
    return result;
  });
}

// The idle scenarios' readings.
const SCENARIOS_IDLE_METRICS = [
  { key: 'bytes_per_conn', label: 'RSS bytes/conn', short: 'bytes/conn', better: 'lower' },
  { key: 'held_bytes_per_conn', label: 'held RSS bytes/conn', better: 'lower' },
  { key: 'heap_per_conn', label: 'JS heap bytes/conn', better: 'lower' },
  { key: 'rss_before_mb', label: 'RSS before MB', digits: 1 },
  { key: 'rss_after_mb', label: 'RSS after MB', digits: 1 },
  { key: 'open_seconds', label: 'open s', digits: 2 }
];

const SCENARIOS = {
  echo: {
    title: 'JSON echo',
    kind: 'server',
    describe: (o) =>
      `${o.echoConnections} connections x ${o.echoInflight} messages in flight, ~45-byte JSON texts ({"type":"ping","seq":N,"t":T}), ` +
      `the server parses and re-stringifies each one in JS (rust-echo: echoed as is); ${o.echoWarmup} s warm-up, ${o.echoSeconds} s measured`,
    metrics: [
      { key: 'msgs_per_sec', label: 'msgs/s', short: 'msgs/s', better: 'higher' },
      { key: 'server_us_per_msg', label: 'server CPU us/msg', short: 'CPU/msg', better: 'lower', digits: 2 },
      { key: 'p50_us', label: 'p50 us', better: 'lower' },
      { key: 'p99_us', label: 'p99 us', better: 'lower' },
      { key: 'server_cpu_pct', label: 'server CPU %', digits: 0 },
      { key: 'loadgen_cpu_pct', label: 'loadgen CPU %', digits: 0 }
    ],
    ratios: ['msgs_per_sec', 'server_us_per_msg'],
    chart: [
      { key: 'msgs_per_sec', label: 'JSON echo\nmsgs/s', better: 'higher' },
      { key: 'server_us_per_msg', label: 'JSON echo\nCPU per msg', better: 'lower' }
    ],
    async run(options, peer, { perf } = {}) {
      return echoRun(options, peer, { perf });
    }
  },

  fanout: {
    title: 'Fan-out',
    kind: 'server',
    describe: (o) =>
      `${o.fanoutReceivers} receivers; one sender sends ${o.fanoutMessages} small JSON texts as fast as it can, ` +
      'the server parses each and broadcasts it to every other client; from the first send to the last delivery',
    metrics: [
      { key: 'delivered_per_sec', label: 'deliveries/s', short: 'deliveries/s', better: 'higher' },
      { key: 'last_delivery_ms', label: 'last delivery ms', better: 'lower' },
      { key: 'server_us_per_delivery', label: 'server CPU us/delivery', better: 'lower', digits: 3 },
      { key: 'server_cpu_pct', label: 'server CPU %', digits: 0 },
      { key: 'loadgen_cpu_pct', label: 'loadgen CPU %', digits: 0 }
    ],
    ratios: ['delivered_per_sec'],
    chart: [{ key: 'delivered_per_sec', label: 'fan-out\ndeliveries/s', better: 'higher' }],
    async run(options, peer, { perf } = {}) {
      return withServer(
        options,
        peer,
        'fanout',
        async (server, track) => {
          const lg = track(
            startLoadgen(
              options,
              ['fanout', '--url', server.url, '--receivers', options.fanoutReceivers,
                // A profile needs a longer burst than the measurement.
                '--messages', perf ? options.fanoutMessages * 10 : options.fanoutMessages,
                '--cpu-pid', server.pid, '--deliver-timeout', 240],
              360
            )
          );
          let prof;
          if (perf) {
            // perf starts during the sync phase, before the burst.
            await lg.waitFor('ready', 120000);
            prof = profile(options, server, options.perfSeconds);
          }
          const result = await lg.waitFor('result', 360 * 1000);
          return { ...result, profile: prof ? await prof : undefined };
        },
        { perfMap: perf }
      );
    }
  },

  cluster: {
    title: 'Cluster fan-out',
    kind: 'cluster',
    baselines: ['socket.io-2-nodes', 'ours-1-node'],
    describe: (o) =>
      `${o.clusterReceivers} receivers spread evenly over the nodes; one sender, connected to the first node, sends ` +
      `${o.clusterMessages} small JSON texts as fast as it can, which that node broadcasts: "ours-2-nodes" two processes ` +
      'with `cluster: { redis }` on one redis-server (`server.send(message, { except })`), "ours-1-node" one process ' +
      'alone with every receiver, "socket.io-2-nodes" socket.io 4 with @socket.io/redis-adapter on the same kind of Redis ' +
      "(`io.emit('message', data)`, clients on Engine.IO v4 over WebSocket). Every node and redis-server on the server core. " +
      'deliveries/s from the first send to the last delivery; latency from the send of a message to its receipt ' +
      '(a burst: most of it is queueing behind the earlier messages); server CPU is all nodes and Redis together' +
      (o.clusterRate > 0
        ? `. Then, on the same nodes with new connections, ${o.clusterPacedMessages} messages paced at ${o.clusterRate}/s ` +
          `(${o.clusterRate * o.clusterReceivers} deliveries/s): "paced" latency, below saturation`
        : ''),
    metrics: [
      { key: 'delivered_per_sec', label: 'deliveries/s', short: 'deliveries/s', better: 'higher' },
      { key: 'p50_ms', label: 'p50 latency ms', better: 'lower', digits: 1 },
      { key: 'p99_ms', label: 'p99 latency ms', better: 'lower', digits: 1 },
      { key: 'paced_p50_ms', label: 'paced p50 ms', better: 'lower', digits: 2 },
      { key: 'paced_p99_ms', label: 'paced p99 ms', better: 'lower', digits: 2 },
      { key: 'last_delivery_ms', label: 'last delivery ms', better: 'lower' },
      { key: 'server_us_per_delivery', label: 'server CPU us/delivery', better: 'lower', digits: 3 },
      { key: 'server_cpu_pct', label: 'server CPU %', digits: 0 },
      { key: 'loadgen_cpu_pct', label: 'loadgen CPU %', digits: 0 }
    ],
    ratios: ['delivered_per_sec'],
    async run(options, peer) {
      await waitForIdleMachine(options);
      const spec = CLUSTER_PEERS[peer];
      const children = [];
      try {
        let redis = null;
        if (spec.nodes > 1) {
          redis = await startRedis(options);
          children.push(redis);
        }
        const env = redis ? { BENCH_CLUSTER_REDIS: redis.url, BENCH_CLUSTER_CHANNEL: `mytosis-bench-${process.pid}-${++runCounter}` } : {};
        const nodes = [];
        for (let i = 0; i < spec.nodes; i++) {
          const node = await startServer(options, peer, 'fanout', { spec, env, name: `${peer} node ${i + 1}` });
          children.push(node);
          nodes.push(node);
        }
        const suffix = spec.protocol === 'socketio' ? 'socket.io/?EIO=4&transport=websocket' : '';
        const urls = nodes.map((n) => `ws://127.0.0.1:${n.info.port}/${suffix}`);
        const more = [...nodes.slice(1).map((n) => n.pid), ...(redis ? [redis.pid] : [])];
        const fanout = async (messages, rate) => {
          const lg = startLoadgen(
            options,
            ['fanout', '--url', urls.join(','), '--protocol', spec.protocol, '--receivers', options.clusterReceivers,
              '--messages', messages, '--rate', rate, '--latency', 1, '--cpu-pid', nodes[0].pid,
              ...(more.length ? ['--more-cpu-pids', more.join(',')] : []), '--deliver-timeout', 240],
            360
          );
          children.push(lg);
          const r = await lg.waitFor('result', 360 * 1000);
          await lg.stop();
          return r;
        };
        const result = await fanout(options.clusterMessages, 0);
        const out = { ...result, p50_ms: result.p50_us / 1000, p99_ms: result.p99_us / 1000, nodes: spec.nodes, serverInfo: nodes[0].info };
        if (options.clusterRate > 0) {
          // The first load generator's connections are gone: let the nodes see them close.
          await sleep(500);
          const paced = await fanout(options.clusterPacedMessages, options.clusterRate);
          Object.assign(out, {
            paced_p50_ms: paced.p50_us / 1000,
            paced_p99_ms: paced.p99_us / 1000,
            paced_max_ms: paced.max_us / 1000,
            paced_delivered_per_sec: paced.delivered_per_sec,
            paced_others_cpu_pct: paced.others_cpu_pct
          });
        }
        return out;
      } finally {
        for (const child of children.reverse()) await child.stop();
        await sleep(300);
      }
    }
  },

  idle: {
    title: 'Idle connections',
    kind: 'server',
    describe: (o) =>
      `${o.idleConnections} connections opened and held; server RSS after a full GC, ` +
      `(RSS with them - RSS before) / ${o.idleConnections}, ${o.idleSettle} s after they opened` +
      (o.idleHold > 0 ? ` and again ${o.idleHold} s later ("held")` : ''),
    metrics: SCENARIOS_IDLE_METRICS,
    ratios: ['bytes_per_conn'],
    chart: [{ key: 'bytes_per_conn', label: 'idle\nmemory/conn', better: 'lower' }],
    async run(options, peer) {
      return idleRun(options, peer, 'idle', { hold: options.idleHold });
    }
  },

  'idle-listeners': {
    title: 'Idle connections, kept by id in JS',
    kind: 'server',
    describe: (o) =>
      `${o.idleConnections} connections opened and held, as in "Idle connections", while JS keeps every connection in a ` +
      `Map by id, as a Mytosis group does (ours: 'add' and 'remove' listeners, by connection.id; uWS.js: open and close ` +
      `handlers, by a randomUUID(); ws: 'connection' and 'close', likewise)`,
    metrics: SCENARIOS_IDLE_METRICS,
    ratios: ['bytes_per_conn'],
    async run(options, peer) {
      return idleRun(options, peer, 'idle', { hold: options.idleHold, serverScenario: 'idle-listeners' });
    }
  },

  big: {
    title: '1 MiB binary echo',
    kind: 'server',
    describe: (o) =>
      `${o.bigConnections} connection(s) x ${o.bigInflight} binary messages of ${o.bigSize} bytes in flight, echoed; ` +
      `MB/s = 10^6 bytes of echoed payload per second, one direction; ${o.bigWarmup} s warm-up, ${o.bigSeconds} s measured`,
    metrics: [
      { key: 'mb_per_sec', label: 'MB/s', short: 'MB/s', better: 'higher' },
      { key: 'server_us_per_mb', label: 'server CPU us/MB', better: 'lower' },
      { key: 'server_cpu_pct', label: 'server CPU %', digits: 0 },
      { key: 'loadgen_cpu_pct', label: 'loadgen CPU %', digits: 0 }
    ],
    ratios: ['mb_per_sec'],
    chart: [{ key: 'mb_per_sec', label: '1 MiB echo\nMB/s', better: 'higher' }],
    async run(options, peer, { perf } = {}) {
      return bigRun(options, peer, { perf });
    }
  },

  client: {
    title: 'Client',
    kind: 'client',
    describe: (o) =>
      `each client in Node against the same Rust echo server (tokio-tungstenite, on the other core): ` +
      `${o.clientConnections} connection(s) x ${o.clientInflight} messages in flight, each reply parsed and answered ` +
      `by a new JSON message; ${o.clientWarmup} s warm-up, ${o.clientSeconds} s measured`,
    metrics: [
      { key: 'msgs_per_sec', label: 'msgs/s', short: 'msgs/s', better: 'higher' },
      { key: 'client_us_per_msg', label: 'client CPU us/msg', better: 'lower', digits: 2 },
      { key: 'client_cpu_pct', label: 'client CPU %', digits: 0 },
      { key: 'echo_cpu_pct', label: 'echo server CPU %', digits: 0 }
    ],
    ratios: ['msgs_per_sec'],
    chart: [{ key: 'msgs_per_sec', label: 'client\nmsgs/s', better: 'higher' }],
    async run(options, peer, { perf } = {}) {
      await waitForIdleMachine(options);
      const spec = CLIENT_PEERS[peer];
      const seconds = perf ? Math.max(options.clientSeconds, options.perfSeconds + 2) : options.clientSeconds;
      const echo = new Child('echo server', [LOADGEN, 'client-echo', '--timeout', String(options.clientSeconds + 300)], {
        core: options.pin ? LOAD_CORE : null,
        nofile: NOFILE,
        verbose: options.verbose
      });
      let client;
      try {
        const info = await echo.waitFor('listening', 20000);
        const nodeArgs = perf ? ['--perf-basic-prof-only-functions'] : [];
        client = new Child(`${peer} client`, ['node', ...nodeArgs, path.join(BENCH, 'clients', spec.script)], {
          core: options.pin ? SERVER_CORE : null,
          nofile: NOFILE,
          cwd: os.tmpdir(),
          env: {
            ...spec.env,
            BENCH_URL: `ws://127.0.0.1:${info.port}/`,
            BENCH_CONNS: options.clientConnections,
            BENCH_INFLIGHT: options.clientInflight,
            BENCH_WARMUP: options.clientWarmup,
            BENCH_DURATION: seconds,
            BENCH_ECHO_PID: echo.pid,
            BENCH_OURS_DIR: options.oursDir
          },
          verbose: options.verbose
        });
        let prof;
        if (perf) {
          await client.waitFor('ready', 60000);
          await sleep(options.clientWarmup * 1000);
          prof = profile(options, client, options.perfSeconds);
        }
        const result = await client.waitFor('result', (options.clientWarmup + seconds + 60) * 1000);
        if (prof) result.profile = await prof;
        if (peer === 'ws' && result.bufferutil) throw new Error('bufferutil is active although WS_NO_BUFFER_UTIL=1');
        if (peer === 'ws+bufferutil' && !result.bufferutil) throw new Error('bufferutil is not in use by the ws client');
        return result;
      } finally {
        if (client) await client.stop();
        await echo.stop();
        await sleep(300);
      }
    }
  },

  'echo-deflate': {
    title: 'JSON echo, compressed',
    kind: 'server',
    deflate: true,
    baselines: ['uWS.js-shared', 'ws-no-takeover', 'ws-takeover'],
    describe: (o) =>
      `permessage-deflate; ${o.echoConnections} connections x ${o.echoInflight} messages in flight, ~2 KB JSON graph updates ` +
      '(`loadgen/src/graph_update.rs`: 15 changes to node properties by 3 authors, each reply checked to be the text sent), ' +
      'the server parses and re-stringifies each one in JS; the load generator compresses each message on its own ' +
      `(client_no_context_takeover, level 6); ${o.echoWarmup} s warm-up, ${o.echoSeconds} s measured. ` +
      '"wire bytes/msg": frame bytes of one message and its echo; "server->client": of the echo alone (what the server compressed)',
    metrics: [
      { key: 'msgs_per_sec', label: 'msgs/s', short: 'msgs/s', better: 'higher' },
      { key: 'server_us_per_msg', label: 'server CPU us/msg', short: 'CPU/msg', better: 'lower', digits: 2 },
      { key: 'wire_bytes_per_msg', label: 'wire bytes/msg', better: 'lower' },
      { key: 'down_bytes_per_msg', label: 'server->client bytes/msg', short: 'bytes', better: 'lower', digits: 1 },
      { key: 'payload_bytes', label: 'JSON bytes', digits: 0 },
      { key: 'p50_us', label: 'p50 us', better: 'lower' },
      { key: 'server_cpu_pct', label: 'server CPU %', digits: 0 },
      { key: 'loadgen_cpu_pct', label: 'loadgen CPU %', digits: 0 }
    ],
    ratios: ['server_us_per_msg', 'down_bytes_per_msg'],
    async run(options, peer) {
      return withServer(
        options,
        peer,
        'echo',
        async (server, track) => {
          const seconds = options.echoSeconds;
          const lg = track(
            startLoadgen(
              options,
              ['echo-deflate', '--url', server.url, '--connections', options.echoConnections, '--inflight', options.echoInflight,
                '--warmup', options.echoWarmup, '--duration', seconds, '--cpu-pid', server.pid],
              seconds + options.echoWarmup + 120
            )
          );
          const result = await lg.waitFor('result', (seconds + options.echoWarmup + 120) * 1000);
          return checkNegotiated(peer, result);
        },
        { deflate: true }
      );
    }
  },

  'fanout-deflate': {
    title: 'Fan-out, compressed',
    kind: 'server',
    deflate: true,
    baselines: ['uWS.js-shared', 'ws-no-takeover', 'ws-takeover'],
    describe: (o) =>
      `permessage-deflate; ${o.fanoutReceivers} receivers; one sender sends ${o.fanoutDeflateMessages} ~2 KB JSON graph updates ` +
      'as fast as it can, the server parses each and broadcasts it to every other client (ours: `server.send`, compressed once; ' +
      'ws: compressed for each receiver; uWS.js: `publish`); receivers inflate one update in 16 and check it is the one due ' +
      '(every one when the server keeps a context); ' +
      'from the first send to the last delivery. "bytes/delivery": frame bytes of one delivered update',
    metrics: [
      { key: 'delivered_per_sec', label: 'deliveries/s', short: 'deliveries/s', better: 'higher' },
      { key: 'last_delivery_ms', label: 'last delivery ms', better: 'lower' },
      { key: 'server_us_per_delivery', label: 'server CPU us/delivery', better: 'lower', digits: 3 },
      { key: 'bytes_per_delivery', label: 'bytes/delivery', short: 'bytes', better: 'lower', digits: 1 },
      { key: 'server_cpu_pct', label: 'server CPU %', digits: 0 },
      { key: 'loadgen_cpu_pct', label: 'loadgen CPU %', digits: 0 }
    ],
    ratios: ['delivered_per_sec', 'bytes_per_delivery'],
    async run(options, peer) {
      return withServer(
        options,
        peer,
        'fanout',
        async (server, track) => {
          const lg = track(
            startLoadgen(
              options,
              ['fanout-deflate', '--url', server.url, '--receivers', options.fanoutReceivers,
                '--messages', options.fanoutDeflateMessages, '--cpu-pid', server.pid, '--deliver-timeout', 240],
              360
            )
          );
          const result = await lg.waitFor('result', 360 * 1000);
          return checkNegotiated(peer, result);
        },
        { deflate: true }
      );
    }
  },

  'idle-deflate': {
    title: 'Idle connections, compressed',
    kind: 'server',
    deflate: true,
    baselines: [],
    describe: (o) =>
      `${o.idleConnections} connections offering permessage-deflate, each of which sent one ~2 KB JSON graph update and ` +
      'got its echo, then held; server RSS after a full GC, (RSS with them - RSS before) / N, ' +
      `${o.idleSettle} s after they opened. The "-off" rows are the same servers without compression, for what it adds`,
    metrics: [
      { key: 'bytes_per_conn', label: 'RSS bytes/conn', short: 'bytes/conn', better: 'lower' },
      { key: 'heap_per_conn', label: 'JS heap bytes/conn', better: 'lower' },
      { key: 'rss_before_mb', label: 'RSS before MB', digits: 1 },
      { key: 'rss_after_mb', label: 'RSS after MB', digits: 1 },
      { key: 'open_seconds', label: 'open s', digits: 2 }
    ],
    ratios: ['bytes_per_conn'],
    async run(options, peer) {
      return idleRun(options, peer, 'idle-deflate', { hold: 0, deflate: true });
    }
  },

  leak: {
    title: 'Leak check',
    kind: 'leak',
    async run(options) {
      return withServer(options, 'ours', 'echo', async (server, track) => {
        const seconds = options.leakSeconds;
        const samples = [];
        const lg = track(
          startLoadgen(
            options,
            ['echo', '--url', server.url, '--connections', options.echoConnections, '--inflight', options.echoInflight,
              '--warmup', 0, '--duration', seconds, '--cpu-pid', server.pid, '--rss-every', 1],
            seconds + 120
          )
        );
        // V8's young generation, read every 5 s: a step in RSS that is its
        // one-time growth is not a leak.
        const newSpace = [];
        lg.on('line', (l) => {
          if (l.event === 'rss') {
            samples.push({ t: l.t, rss: l.rss });
            if (Math.round(l.t) % 10 === 0) log(`   t=${Math.round(l.t)} s  RSS ${(l.rss / 2 ** 20).toFixed(1)} MiB`);
            if (Math.round(l.t) % 5 === 0) {
              stats(server, false).then(
                (s) => newSpace.push({ t: l.t, bytes: s.newSpace }),
                () => {}
              );
            }
          }
        });
        const result = await lg.waitFor('result', (seconds + 120) * 1000);
        const at = (t) => samples.reduce((best, s) => (Math.abs(s.t - t) < Math.abs(best.t - t) ? s : best), samples[0]);
        const early = at(options.leakEarly);
        const late = samples[samples.length - 1];
        return {
          msgs_per_sec: result.msgs_per_sec,
          messages: result.messages,
          early_t: early.t,
          early_rss: early.rss,
          late_t: late.t,
          late_rss: late.rss,
          ratio: late.rss / early.rss,
          samples,
          new_space: newSpace
        };
      });
    }
  }
};

// The scenarios of wss:// and of connections: on ours, uWS.js and ws
// (which is ws on https.createServer in the wss:// ones), with ratios to
// uWS.js (the targets) and to ws.
const CONN_PEERS = ['ours', 'uWS.js', 'ws'];
const TLS_NOTE =
  'over wss:// (TLS 1.3, TLS13_AES_128_GCM_SHA256 and X25519, offered alone by the load generator (rustls with ring) so that every ' +
  'server runs the same; no session resumption): ours `new Server({ tls: { cert, key } })`, uWS.js `SSLApp`, ws on ' +
  '`https.createServer`, all with the same certificate';

for (const [kind, cert] of Object.entries(CERTS)) {
  SCENARIOS[`wss-echo-${kind}`] = {
    ...SCENARIOS.echo,
    title: `JSON echo over wss:// (${cert.label})`,
    peers: CONN_PEERS,
    baselines: ['uWS.js', 'ws'],
    describe: (o) => `${SCENARIOS.echo.describe(o).replace(' (rust-echo: echoed as is)', '')}; ${TLS_NOTE}, ${cert.label}`,
    chart: undefined,
    async run(options, peer) {
      return echoRun(options, peer, { tls: kind });
    }
  };
  SCENARIOS[`wss-big-${kind}`] = {
    ...SCENARIOS.big,
    title: `1 MiB binary echo over wss:// (${cert.label})`,
    peers: CONN_PEERS,
    baselines: ['uWS.js', 'ws'],
    describe: (o) =>
      SCENARIOS.big.describe({ ...o, bigConnections: o.wssBigConnections, bigInflight: o.wssBigInflight }) + `; ${TLS_NOTE}, ${cert.label}`,
    chart: undefined,
    async run(options, peer) {
      return bigRun(options, peer, { tls: kind, connections: options.wssBigConnections, inflight: options.wssBigInflight });
    }
  };
}

const CONNRATE = {
  kind: 'server',
  peers: CONN_PEERS,
  baselines: ['uWS.js', 'ws'],
  metrics: [
    { key: 'conns_per_sec', label: 'connections/s', short: 'conns/s', better: 'higher' },
    { key: 'server_us_per_conn', label: 'server CPU us/conn', short: 'CPU/conn', better: 'lower' },
    { key: 'p50_us', label: 'first echo p50 us', better: 'lower' },
    { key: 'p99_us', label: 'first echo p99 us', better: 'lower' },
    { key: 'open_p50_us', label: 'open p50 us', better: 'lower' },
    { key: 'failed', label: 'failed', digits: 0 },
    { key: 'server_cpu_pct', label: 'server CPU %', digits: 0 },
    { key: 'loadgen_cpu_pct', label: 'loadgen CPU %', digits: 0 }
  ],
  ratios: ['conns_per_sec', 'server_us_per_conn']
};
const connrateDescribe = (o) =>
  `${o.connrateConcurrency} workers, each in a loop: TCP connect (source addresses ${o.connrateSources || 'not bound'}, in turn), ` +
  'upgrade, one ~25-byte JSON text and its echo, close handshake, then the server\'s close of TCP awaited; ' +
  `connections completed per second over ${o.connrateSeconds} s after ${o.connrateWarmup} s of warm-up, server CPU per connection, ` +
  'time from the start of connect to the first echo ("first echo") and to the open WebSocket ("open")';
SCENARIOS.connrate = {
  ...CONNRATE,
  title: 'Connection rate',
  describe: (o) => `${connrateDescribe(o)}; ws://`,
  async run(options, peer) {
    return connrateRun(options, peer);
  }
};
for (const [kind, cert] of Object.entries(CERTS)) {
  SCENARIOS[`connrate-wss-${kind}`] = {
    ...CONNRATE,
    title: `Connection rate over wss:// (${cert.label})`,
    describe: (o) => `${connrateDescribe(o)}; ${TLS_NOTE}, ${cert.label}: a full TLS handshake per connection`,
    async run(options, peer) {
      return connrateRun(options, peer, { tls: kind });
    }
  };
}

// `--scenarios` shorthands.
const SCENARIO_GROUPS = {
  wss: Object.keys(CERTS).flatMap((kind) => [`wss-echo-${kind}`, `wss-big-${kind}`]),
  'connrate-wss': Object.keys(CERTS).map((kind) => `connrate-wss-${kind}`)
};

/** Peak and current resident set size of `pid` (VmHWM, VmRSS), in bytes. */
function memoryPeak(pid) {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field) => Number(new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, 'm').exec(status)?.[1]) * 1024;
    return { hwm: kb('VmHWM'), rss: kb('VmRSS') };
  } catch {
    return { hwm: null, rss: null };
  }
}

SCENARIOS.storm = {
  title: 'Reconnect storm',
  kind: 'server',
  peers: CONN_PEERS,
  baselines: ['ws', 'uWS.js'],
  describe: (o) =>
    `${o.stormClients} clients, our Socket with its defaults (retry after a drop: 1,500 ms shortened by up to 25% of jitter, ` +
    `then x1.3 per retry), in ${o.stormProcesses} Node process(es) on the load generator's core, connected to the server; ` +
    'then the server process is killed (SIGKILL: the kernel drops every connection at once) and a new one started on the same ' +
    'port, as in a deploy. "all back": from the kill until the last Socket is open again (p50/p99 over the Sockets); ' +
    '"last drop seen": from the kill until the last Socket saw its connection drop (the clients\' own pace); ' +
    '"new server listening": from the kill; "peak RSS": the new server\'s VmHWM once all are back, against its RSS then and ' +
    'the old server\'s with every client connected; "retries": attempts beyond the first one per Socket (refused or timed out); ' +
    'server CPU: the new server\'s, from its start until all are back',
  metrics: [
    { key: 'all_back_ms', label: 'all back ms', short: 'all back', better: 'lower' },
    { key: 'back_p50_ms', label: 'back p50 ms', better: 'lower' },
    { key: 'back_p99_ms', label: 'back p99 ms', better: 'lower' },
    { key: 'last_drop_seen_ms', label: 'last drop seen ms' },
    { key: 'listen_ms', label: 'new server listening ms', better: 'lower' },
    { key: 'peak_rss_mb', label: 'peak RSS MB', short: 'peak RSS', better: 'lower', digits: 1 },
    { key: 'rss_after_mb', label: 'RSS after MB', digits: 1 },
    { key: 'rss_steady_mb', label: 'RSS before the kill MB', digits: 1 },
    { key: 'retries', label: 'retries', digits: 0 },
    { key: 'server_cpu_ms', label: 'server CPU ms', better: 'lower' }
  ],
  ratios: ['all_back_ms', 'peak_rss_mb'],
  async run(options, peer) {
    await waitForIdleMachine(options);
    const children = [];
    try {
      // A port of the OS's choosing, given to both processes: the new one
      // listens where the clients come back to (and uWS.js sets
      // SO_REUSEADDR only on a given port).
      const port = await freePort();
      const first = await startServer(options, peer, 'echo', { env: { BENCH_PORT: port } });
      children.push(first);
      const n = options.stormClients;
      const processes = Math.max(1, Math.min(options.stormProcesses, n));
      const clients = [];
      for (let i = 0; i < processes; i++) {
        const count = Math.floor(n / processes) + (i < n % processes ? 1 : 0);
        const client = new Child(`storm clients ${i + 1}`, ['node', path.join(BENCH, 'clients', 'storm.js')], {
          core: options.pin ? LOAD_CORE : null,
          nofile: NOFILE,
          cwd: os.tmpdir(),
          env: { BENCH_URL: first.url, BENCH_CLIENTS: count, BENCH_OURS_DIR: options.oursDir },
          verbose: options.verbose
        });
        children.push(client);
        clients.push(client);
      }
      await Promise.all(clients.map((c) => c.waitFor('open', 300000)));
      const deadline = Date.now() + 60000;
      let seen = await stats(first, false);
      while (seen.connections < n && Date.now() < deadline) {
        await sleep(250);
        seen = await stats(first, false);
      }
      if (seen.connections < n) throw new Error(`the server counts ${seen.connections} of ${n} connections after 60 s`);
      await sleep(1000);
      const steady = memoryPeak(first.pid);
      const dropAt = Date.now();
      process.kill(first.pid, 'SIGKILL');
      await first.exited;
      const next = await startServer(options, peer, 'echo', { env: { BENCH_PORT: port }, name: `${peer} server (restarted)` });
      const listenMs = Date.now() - dropAt;
      children.push(next);
      const reports = await Promise.all(clients.map((c) => c.waitFor('back', options.stormTimeout * 1000)));
      const cpu = proc.cpu(next.pid);
      const mem = memoryPeak(next.pid);
      const back = reports.flatMap((r) => r.back).map((t) => t - dropAt).sort((a, b) => a - b);
      const at = (p) => back[Math.min(back.length - 1, Math.ceil((p / 100) * back.length) - 1)];
      const dropped = reports.flatMap((r) => r.dropped).map((t) => t - dropAt);
      const after = await stats(next, false);
      if (after.connections !== null && after.connections < n) {
        throw new Error(`the restarted server counts ${after.connections} of ${n} connections once every Socket is back`);
      }
      return {
        clients: n,
        processes,
        all_back_ms: back[back.length - 1],
        first_back_ms: back[0],
        back_p50_ms: at(50),
        back_p99_ms: at(99),
        listen_ms: listenMs,
        last_drop_seen_ms: Math.max(...dropped),
        peak_rss_mb: mem.hwm / 1e6,
        rss_after_mb: mem.rss / 1e6,
        rss_steady_mb: steady.rss / 1e6,
        // Every Socket's first retry is its return when it succeeds.
        retries: reports.reduce((sum, r) => sum + r.retries, 0) - n,
        client_errors: reports.reduce((sum, r) => sum + r.errors, 0),
        // Its start-up included: the new process began at the kill.
        server_cpu_ms: cpu ? cpu.ns / 1e6 : null,
        server_connections: after.connections,
        serverInfo: next.info
      };
    } finally {
      for (const child of children.reverse()) await child.stop();
      await sleep(300);
    }
  }
};

// ------------------------------------------------------------------ main

function summarize(scenarioId, result) {
  const f = report.fmt;
  // The wss:// scenarios read as their ws:// ones.
  const id = scenarioId.replace(/^wss-(echo|big)-.*$/, '$1').replace(/^connrate-wss-.*$/, 'connrate');
  const tls = result.tls ? ` [${result.tls}]` : '';
  switch (id) {
    case 'connrate':
      return `${f(result.conns_per_sec)} connections/s, ${f(result.server_us_per_conn)} us server CPU/conn, first echo p50 ${f(result.p50_us)} us, p99 ${f(result.p99_us)} us, ${result.failed} failed (CPU: server ${f(result.server_cpu_pct)}%, loadgen ${f(result.loadgen_cpu_pct)}%)${tls}`;
    case 'storm':
      return `all ${f(result.clients)} back after ${f(result.all_back_ms)} ms (p50 ${f(result.back_p50_ms)}, p99 ${f(result.back_p99_ms)}; new server listening at ${f(result.listen_ms)} ms), peak RSS ${f(result.peak_rss_mb, 1)} MB (then ${f(result.rss_after_mb, 1)}; before the kill ${f(result.rss_steady_mb, 1)}), ${f(result.retries)} retries, server CPU ${f(result.server_cpu_ms)} ms`;
    case 'echo':
      return `${f(result.msgs_per_sec)} msgs/s, ${f(result.server_us_per_msg, 2)} us server CPU/msg, p50 ${f(result.p50_us)} us, p99 ${f(result.p99_us)} us (CPU: server ${f(result.server_cpu_pct)}%, loadgen ${f(result.loadgen_cpu_pct)}%)${tls}`;
    case 'cluster':
      return `${f(result.delivered_per_sec)} deliveries/s over ${result.nodes} node(s), p50 ${f(result.p50_ms)} ms, p99 ${f(result.p99_ms)} ms, last after ${f(result.last_delivery_ms)} ms (CPU: servers and Redis ${f(result.server_cpu_pct)}%, loadgen ${f(result.loadgen_cpu_pct)}%)` +
        (result.paced_p99_ms !== undefined ? `; paced: p50 ${f(result.paced_p50_ms, 2)} ms, p99 ${f(result.paced_p99_ms, 2)} ms` : '');
    case 'fanout':
      return `${f(result.delivered_per_sec)} deliveries/s, last after ${f(result.last_delivery_ms)} ms, ${f(result.server_us_per_delivery, 3)} us/delivery (CPU: server ${f(result.server_cpu_pct)}%, loadgen ${f(result.loadgen_cpu_pct)}%)`;
    case 'idle':
    case 'idle-listeners':
      return `${f(result.bytes_per_conn)} bytes/conn (RSS ${f(result.rss_before_mb, 1)} -> ${f(result.rss_after_mb, 1)} MiB, opened in ${f(result.open_seconds, 2)} s)`;
    case 'big':
      return `${f(result.mb_per_sec)} MB/s (CPU: server ${f(result.server_cpu_pct)}%, loadgen ${f(result.loadgen_cpu_pct)}%)${tls}`;
    case 'client':
      return `${f(result.msgs_per_sec)} msgs/s, ${f(result.client_us_per_msg, 2)} us client CPU/msg (CPU: client ${f(result.client_cpu_pct)}%, echo server ${f(result.echo_cpu_pct)}%)`;
    case 'echo-deflate':
      return `${f(result.msgs_per_sec)} msgs/s, ${f(result.server_us_per_msg, 2)} us server CPU/msg, ${f(result.wire_bytes_per_msg)} wire bytes/msg (server->client ${f(result.down_bytes_per_msg, 1)}) for ${f(result.payload_bytes)} bytes of JSON, ${result.deflate} (CPU: server ${f(result.server_cpu_pct)}%, loadgen ${f(result.loadgen_cpu_pct)}%)`;
    case 'fanout-deflate':
      return `${f(result.delivered_per_sec)} deliveries/s, last after ${f(result.last_delivery_ms)} ms, ${f(result.bytes_per_delivery, 1)} bytes/delivery, ${result.deflate} (CPU: server ${f(result.server_cpu_pct)}%, loadgen ${f(result.loadgen_cpu_pct)}%)`;
    case 'idle-deflate':
      return `${f(result.bytes_per_conn)} bytes/conn (RSS ${f(result.rss_before_mb, 1)} -> ${f(result.rss_after_mb, 1)} MiB, opened in ${f(result.open_seconds, 2)} s), ${result.deflate}`;
    case 'leak':
      return `RSS ${f(result.early_rss / 2 ** 20, 1)} MiB at ${f(result.early_t)} s, ${f(result.late_rss / 2 ** 20, 1)} MiB at ${f(result.late_t)} s: ${result.ratio.toFixed(3)}x (${f(result.msgs_per_sec)} msgs/s)`;
    default:
      return JSON.stringify(result);
  }
}

/** `--render FILE.json`: write the report of an earlier run again. */
function rerender(file) {
  const saved = JSON.parse(fs.readFileSync(file, 'utf8'));
  const options = { ...FULL, ...saved.options };
  const noteAt = process.argv.indexOf('--note');
  if (noteAt !== -1) options.note = process.argv[noteAt + 1];
  warnings.push(...(saved.warnings || []));
  const addon = { type: saved.machine.addon.type, file: saved.machine.addon.file, bytes: saved.machine.addon.bytes };
  const label = addon.type === 'debug' ? 'ours [debug addon]' : 'ours';
  const out = render(options, saved.machine, saved.uws, addon, saved.results, saved.profiles || {}, saved.elapsed || 0, label);
  const base = path.join(BENCH, options.output);
  fs.writeFileSync(`${base}.md`, out.markdown);
  if (out.svg) fs.writeFileSync(`${base}.svg`, out.svg);
  log(`${out.text}\n\nwrote ${base}.md and .svg`);
}

async function main() {
  const renderAt = process.argv.indexOf('--render');
  if (renderAt !== -1) return rerender(process.argv[renderAt + 1]);
  const options = parseOptions(process.argv.slice(2));
  const started = Date.now();
  const scenarios = options.list('scenarios').flatMap((s) => SCENARIO_GROUPS[s] || [s]);
  for (const s of scenarios) if (!SCENARIOS[s]) throw new Error(`unknown scenario ${s}`);

  await ensureLoadgen(options);
  if (!canPin()) {
    options.pin = false;
    warn('taskset cannot pin to cores 0 and 1 here: processes are not pinned');
  }

  const hard = Number(spawnSync('bash', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).stdout.trim());
  if (scenarios.includes('idle') || scenarios.includes('idle-listeners')) {
    if (Number.isFinite(hard) && hard < options.idleConnections + 200) {
      warn(`the open-file limit is ${hard}: the idle scenario needs ${options.idleConnections + 200} (fewer with --idle-connections)`);
    }
  }
  if (scenarios.includes('storm') && Number.isFinite(hard) && hard < options.stormClients + 200) {
    warn(`the open-file limit is ${hard}: the storm scenario's server needs ${options.stormClients + 200} (fewer with --storm-clients)`);
  }
  const machine = machineInfo(options.oursDir);
  const addon = addonBuildType(options.oursDir);
  machine.addon = { ...(addonInfo(options.oursDir) || {}), type: addon.type, dir: options.oursDir };
  let oursLabel = 'ours';
  if (addon.type === 'missing') throw new Error(`no .node addon in ${options.oursDir}: run \`npm run build\` there`);
  if (addon.type === 'debug') {
    warn(
      `the addon ${addon.file} is a DEBUG build (${(addon.bytes / 2 ** 20).toFixed(0)} MiB, debug assertions on): ` +
        'our numbers are not representative. Build a release addon with `npm run build`.'
    );
    oursLabel = 'ours [debug addon]';
  }

  let serverPeers = options.list('peers');
  let clientPeers = options.list('clients');
  let deflatePeers = options.list('deflatePeers');
  for (const p of serverPeers) if (!SERVER_PEERS[p]) throw new Error(`unknown server peer ${p}`);
  for (const p of deflatePeers) if (!DEFLATE_PEERS[p]) throw new Error(`unknown --deflate-peers peer ${p}`);
  for (const p of clientPeers) if (!CLIENT_PEERS[p]) throw new Error(`unknown client ${p}`);
  let clusterPeers = options.list('clusterPeers');
  for (const p of clusterPeers) if (!CLUSTER_PEERS[p]) throw new Error(`unknown --cluster-peers setup ${p}`);
  const socketio = { ok: false, reason: 'not requested' };
  if (scenarios.includes('cluster')) {
    machine.redis = spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).stdout?.trim().split(' ').slice(0, 3).join(' ') || null;
    machine.nodeRedis = spawnSync(process.execPath, ['-p', "require('redis/package.json').version"], { cwd: BENCH, encoding: 'utf8' }).stdout?.trim() || null;
    if (spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).status !== 0) {
      warn('redis-server is not installed: the cluster scenario measures "ours-1-node" only');
      clusterPeers = clusterPeers.filter((p) => CLUSTER_PEERS[p].nodes === 1);
    }
    if (clusterPeers.some((p) => CLUSTER_PEERS[p].needs === 'socket.io')) {
      Object.assign(socketio, socketioAvailability(options));
      if (!socketio.ok) {
        warn(`socket.io is not available (${socketio.reason}): it is left out`);
        clusterPeers = clusterPeers.filter((p) => CLUSTER_PEERS[p].needs !== 'socket.io');
      }
    }
  }

  const uws = { ok: false, reason: 'not requested' };
  const wantsUws =
    (serverPeers.includes('uWS.js') && scenarios.some((s) => SCENARIOS[s].kind === 'server' && !SCENARIOS[s].deflate)) ||
    (deflatePeers.some((p) => p.startsWith('uWS.js')) && scenarios.some((s) => SCENARIOS[s].deflate));
  if (wantsUws) {
    Object.assign(uws, uwsAvailability(options));
    if (!uws.ok) {
      warn(`uWebSockets.js is not available (${uws.reason}): it is left out`);
      serverPeers = serverPeers.filter((p) => p !== 'uWS.js');
      deflatePeers = deflatePeers.filter((p) => !p.startsWith('uWS.js'));
    }
  }

  log(`mytosis-websocket bench: ${options.quick ? 'QUICK mode (not representative)' : 'full run'}, ${options.rounds} round(s), scenarios ${scenarios.join(', ')}`);
  log(`machine: ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}; pinning: ${options.pin ? `servers and Node clients on core ${SERVER_CORE}, load generator on core ${LOAD_CORE}` : 'off'}`);
  log(`ours: ${options.oursDir} (${machine.addon.file}, ${addon.type} build, sha256 ${machine.addon.sha256}, built ${machine.addon.built}${machine.commit ? `, commit ${machine.commit}` : ''})`);

  const results = {};
  let lastAddon = machine.addon.sha256;
  for (const id of scenarios) {
    const scenario = SCENARIOS[id];
    const inScenario = (table) => (p) => !table[p].scenarios || table[p].scenarios.includes(id);
    const peers =
      scenario.kind === 'client'
        ? clientPeers
        : scenario.kind === 'cluster'
          ? clusterPeers
          : scenario.kind === 'leak'
          ? ['ours']
          : scenario.deflate
            ? deflatePeers.filter(inScenario(DEFLATE_PEERS))
            : serverPeers.filter(inScenario(SERVER_PEERS)).filter((p) => !scenario.peers || scenario.peers.includes(p));
    const rounds = scenario.kind === 'leak' ? 1 : options.rounds;
    const data = (results[id] = { peers, runs: {}, errors: {} });
    log(`\n== ${scenario.title}${scenario.describe ? `: ${scenario.describe(options)}` : ''}`);
    for (let round = 1; round <= rounds; round++) {
      for (const peer of peers) {
        const label = `[${id} ${round}/${rounds}] ${peer}`;
        const checkAddon = () => {
          if (peer !== 'ours') return;
          const sha = addonInfo(options.oursDir)?.sha256;
          if (sha !== lastAddon) {
            warn(`the addon was rebuilt during the bench (sha256 ${lastAddon}... became ${sha}... by ${label}): runs of "ours" mix builds`);
            lastAddon = sha;
          }
        };
        try {
          let result = await scenario.run(options, peer);
          // Another process took a core from the measurement: measure again.
          for (let retry = 1; retry <= options.retryBusy && result.others_cpu_pct > options.busyLimit; retry++) {
            log(`   (${label}: other processes used ${Math.round(result.others_cpu_pct)}% of a core; measuring again in 5 s)`);
            await sleep(5000);
            result = await scenario.run(options, peer);
          }
          checkAddon();
          if (result.others_cpu_pct > options.busyLimit) {
            warn(`${label}: other processes used ${Math.round(result.others_cpu_pct)}% of a core during the measured window`);
          }
          (data.runs[peer] ||= []).push(result);
          if (peer.startsWith('uWS.js') && result.serverInfo?.uws) uws.build = result.serverInfo.uws;
          if (peer.startsWith('socket.io') && result.serverInfo?.socketio) {
            machine.socketio = { socketio: result.serverInfo.socketio, adapter: result.serverInfo.adapter };
          }
          log(`${label}: ${summarize(id, result)}`);
        } catch (err) {
          checkAddon();
          (data.errors[peer] ||= []).push(err.message);
          log(`${label}: FAILED: ${err.message}`);
        }
      }
    }
  }

  const profiles = {};
  if (options.perf) {
    for (const id of ['echo', 'fanout', 'big', 'client']) {
      if (!scenarios.includes(id)) continue;
      log(`\n== perf profile of our ${id === 'client' ? 'Socket' : 'server'}: ${id} (extra run, not counted)`);
      try {
        const result = await SCENARIOS[id].run(options, 'ours', { perf: true });
        profiles[id] = result.profile;
        if (result.profile?.error) log(`   perf failed: ${result.profile.error}`);
        else log(result.profile.lines.slice(0, 15).join('\n'));
      } catch (err) {
        profiles[id] = { error: err.message };
        log(`   FAILED: ${err.message}`);
      }
    }
  }

  const elapsed = (Date.now() - started) / 1000;
  const out = render(options, machine, uws, addon, results, profiles, elapsed, oursLabel);
  log(`\n${out.text}`);
  const base = path.join(BENCH, options.output);
  fs.writeFileSync(`${base}.md`, out.markdown);
  if (out.svg) fs.writeFileSync(`${base}.svg`, out.svg);
  fs.writeFileSync(
    `${base}.json`,
    JSON.stringify({ options: { ...options, list: undefined }, machine, uws, results, profiles, warnings, elapsed }, null, 1)
  );
  log(`\nwrote ${path.relative(process.cwd(), `${base}.md`)}${out.svg ? `, ${path.relative(process.cwd(), `${base}.svg`)}` : ''} and ${path.relative(process.cwd(), `${base}.json`)} (${Math.round(elapsed)} s)`);
  const failures = Object.values(results).reduce((n, d) => n + Object.values(d.errors).flat().length, 0);
  if (failures > 0) {
    log(`${failures} run(s) failed`);
    process.exitCode = 1;
  }
}

// ---------------------------------------------------------------- report

const TARGETS = [
  {
    what: 'JSON echo: server CPU per message no more than uWebSockets.js',
    need: ['echo', 'ours', 'uWS.js'],
    eval: (m) => {
      const ours = m.echo.ours.server_us_per_msg;
      const uws = m.echo['uWS.js'].server_us_per_msg;
      return { measured: `${ours.toFixed(2)} us vs ${uws.toFixed(2)} us`, ok: ours <= uws, by: `${(ours / uws).toFixed(2)}x the CPU of uWS.js` };
    }
  },
  {
    what: 'fan-out: at least 1.5x uWebSockets.js',
    need: ['fanout', 'ours', 'uWS.js'],
    eval: (m) => {
      const r = m.fanout.ours.delivered_per_sec / m.fanout['uWS.js'].delivered_per_sec;
      return { measured: `${r.toFixed(2)}x uWS.js`, ok: r >= 1.5, by: `${(1.5 / r).toFixed(2)}x short of 1.5x` };
    }
  },
  {
    what: 'cluster fan-out: at least 5x socket.io + redis-adapter',
    need: ['cluster', 'ours-2-nodes', 'socket.io-2-nodes'],
    eval: (m) => {
      const ours = m.cluster['ours-2-nodes'];
      const sio = m.cluster['socket.io-2-nodes'];
      const r = ours.delivered_per_sec / sio.delivered_per_sec;
      const paced = ours.paced_p99_ms != null && sio.paced_p99_ms != null ? `; paced p99 ${report.fmt(ours.paced_p99_ms, 2)} vs ${report.fmt(sio.paced_p99_ms, 2)} ms` : '';
      const p99 = `burst p99 ${report.fmt(ours.p99_ms, 1)} vs ${report.fmt(sio.p99_ms, 1)} ms${paced}`;
      return { measured: `${r.toFixed(2)}x socket.io (${p99})`, ok: r >= 5, by: `${(5 / r).toFixed(2)}x short of 5x` };
    }
  },
  {
    what: 'idle: at most 1,000 bytes per connection',
    need: ['idle', 'ours'],
    eval: (m) => {
      // The worse of the two readings, when the connections were held.
      const { bytes_per_conn: first, held_bytes_per_conn: held } = m.idle.ours;
      const b = Math.max(first, held ?? first);
      const measured = held === null ? `${report.fmt(b)} bytes` : `${report.fmt(first)}; held ${report.fmt(held)} bytes`;
      return { measured, ok: b <= 1000, by: `${(b / 1000).toFixed(1)}x the target` };
    }
  },
  {
    what: 'idle, JS keeping connections by id: at most 0.6x uWebSockets.js bytes per connection',
    need: ['idle-listeners', 'ours', 'uWS.js'],
    eval: (m) => {
      // Each server's worse reading, when the connections were held.
      const worst = ({ bytes_per_conn: first, held_bytes_per_conn: held }) => Math.max(first, held ?? first);
      const ours = worst(m['idle-listeners'].ours);
      const uws = worst(m['idle-listeners']['uWS.js']);
      const r = ours / uws;
      return { measured: `${report.fmt(ours)} vs ${report.fmt(uws)} bytes: ${r.toFixed(2)}x`, ok: r <= 0.6, by: `${(r / 0.6).toFixed(2)}x the target` };
    }
  },
  {
    what: '1 MiB echo: at least 1,500 MB/s',
    need: ['big', 'ours'],
    eval: (m) => {
      const v = m.big.ours.mb_per_sec;
      return { measured: `${report.fmt(v)} MB/s`, ok: v >= 1500, by: `${(1500 / v).toFixed(2)}x short` };
    }
  },
  {
    what: 'client: at least 3x the ws client',
    need: ['client', 'ours', 'ws'],
    eval: (m) => {
      const r = m.client.ours.msgs_per_sec / m.client.ws.msgs_per_sec;
      return { measured: `${r.toFixed(2)}x ws`, ok: r >= 3, by: `${(3 / r).toFixed(2)}x short of 3x` };
    }
  },
  {
    what: 'compressed JSON echo: server CPU per message no more than uWebSockets.js (SHARED_COMPRESSOR)',
    need: ['echo-deflate', 'ours', 'uWS.js-shared'],
    eval: (m) => {
      const ours = m['echo-deflate'].ours.server_us_per_msg;
      const uws = m['echo-deflate']['uWS.js-shared'].server_us_per_msg;
      return { measured: `${ours.toFixed(2)} us vs ${uws.toFixed(2)} us`, ok: ours <= uws, by: `${(ours / uws).toFixed(2)}x the CPU of uWS.js` };
    }
  },
  {
    what: 'compressed fan-out: at least 10x uWebSockets.js (SHARED_COMPRESSOR)',
    need: ['fanout-deflate', 'ours', 'uWS.js-shared'],
    eval: (m) => {
      const r = m['fanout-deflate'].ours.delivered_per_sec / m['fanout-deflate']['uWS.js-shared'].delivered_per_sec;
      return { measured: `${r.toFixed(2)}x uWS.js`, ok: r >= 10, by: `${(10 / r).toFixed(2)}x short of 10x` };
    }
  },
  {
    // Judged on what the server compressed: the echo, server to client.
    what: 'compressed bytes on the wire (echo, server to client): at most 1.05x ws with serverNoContextTakeover',
    need: ['echo-deflate', 'ours', 'ws-no-takeover'],
    eval: (m) => {
      const e = m['echo-deflate'];
      const r = e.ours.down_bytes_per_msg / e['ws-no-takeover'].down_bytes_per_msg;
      const takeover = e['ws-takeover']?.down_bytes_per_msg;
      const gap = takeover ? `; ${(e.ours.down_bytes_per_msg / takeover).toFixed(2)}x ws with context takeover (${report.fmt(takeover, 1)} bytes)` : '';
      return {
        measured: `${report.fmt(e.ours.down_bytes_per_msg, 1)} vs ${report.fmt(e['ws-no-takeover'].down_bytes_per_msg, 1)} bytes: ${r.toFixed(3)}x${gap}`,
        ok: r <= 1.05,
        by: `${(r / 1.05).toFixed(3)}x over 1.05x`
      };
    }
  },
  ...Object.entries(CERTS).flatMap(([kind, cert]) => [
    {
      what: `wss:// JSON echo (${cert.label}): server CPU per message at most 1.0x uWebSockets.js SSLApp`,
      need: [`wss-echo-${kind}`, 'ours', 'uWS.js'],
      eval: (m) => {
        const e = m[`wss-echo-${kind}`];
        const r = e.ours.server_us_per_msg / e['uWS.js'].server_us_per_msg;
        return {
          measured: `${e.ours.server_us_per_msg.toFixed(2)} us vs ${e['uWS.js'].server_us_per_msg.toFixed(2)} us: ${r.toFixed(2)}x`,
          ok: r <= 1,
          by: `${r.toFixed(2)}x the CPU of uWS.js`
        };
      }
    },
    {
      what: `wss:// 1 MiB echo (${cert.label}): at least 1.0x uWebSockets.js SSLApp MB/s`,
      need: [`wss-big-${kind}`, 'ours', 'uWS.js'],
      eval: (m) => {
        const b = m[`wss-big-${kind}`];
        const r = b.ours.mb_per_sec / b['uWS.js'].mb_per_sec;
        return {
          measured: `${report.fmt(b.ours.mb_per_sec)} vs ${report.fmt(b['uWS.js'].mb_per_sec)} MB/s: ${r.toFixed(2)}x`,
          ok: r >= 1,
          by: `${(1 / r).toFixed(2)}x short`
        };
      }
    }
  ]),
  ...['connrate', ...Object.keys(CERTS).map((kind) => `connrate-wss-${kind}`)].map((id) => ({
    what: `${SCENARIOS[id].title}: connections/s at least uWebSockets.js's`,
    need: [id, 'ours', 'uWS.js'],
    eval: (m) => {
      const c = m[id];
      const r = c.ours.conns_per_sec / c['uWS.js'].conns_per_sec;
      const p99 = `first echo p99 ${report.fmt(c.ours.p99_us / 1000, 1)} vs ${report.fmt(c['uWS.js'].p99_us / 1000, 1)} ms`;
      return {
        measured: `${report.fmt(c.ours.conns_per_sec)} vs ${report.fmt(c['uWS.js'].conns_per_sec)}/s: ${r.toFixed(2)}x (${p99})`,
        ok: r >= 1,
        by: `${(1 / r).toFixed(2)}x short`
      };
    }
  })),
  {
    what: 'no leak: RSS after 60 s of JSON echo within 10% of RSS at 10 s',
    need: ['leak', 'ours'],
    eval: (m) => {
      const r = m.leak.ours.ratio;
      return { measured: `${r.toFixed(3)}x`, ok: r <= 1.1, by: `+${((r - 1.1) * 100).toFixed(1)} points over +10%` };
    }
  }
];

/** idle-deflate: each compressed row's bytes per connection minus its server's uncompressed row. */
function compressionCost(med) {
  const off = { ours: 'ours-off', 'ws-no-takeover': 'ws-off', 'ws-takeover': 'ws-off', 'uWS.js-shared': 'uWS.js-off', 'uWS.js-dedicated': 'uWS.js-off' };
  return Object.entries(off)
    .filter(([on, base]) => med[on]?.bytes_per_conn != null && med[base]?.bytes_per_conn != null)
    .map(([on, base]) => `${on} ${report.fmt(med[on].bytes_per_conn - med[base].bytes_per_conn)}`);
}

function render(options, machine, uws, addon, results, profiles, elapsed, oursLabel) {
  const text = [];
  const md = [];
  const medians = {};
  const chartGroups = [];
  const mode = options.quick ? 'quick mode (1 round, short scenarios: a smoke test, not representative)' : `${options.rounds} rounds, peers interleaved`;

  md.push('# mytosis-websocket benchmark', '');
  md.push(`Written by \`npm run bench\` (bench/run.js) on ${machine.date}: ${mode}, ${Math.round(elapsed)} s in all.`);
  md.push('Medians over the rounds; ratios are the peer\'s median divided by the baseline\'s (for "us/msg" and "bytes", lower is better).', '');
  if (options.note) md.push(`> Note: ${options.note}`, '');
  if (addon.type === 'debug') {
    md.push(`> **Warning: our addon was a DEBUG build** (${path.basename(addon.file)}, ${(addon.bytes / 2 ** 20).toFixed(0)} MiB). Our numbers are not representative: build it with \`npm run build\` and run the bench again.`, '');
  }
  for (const w of warnings) md.push(`> Warning: ${w}`, '');

  md.push('## Machine and builds', '');
  md.push(`- machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, ${machine.kernel}`);
  md.push(`- pinning: ${options.pin ? `every server and every Node client on core ${SERVER_CORE}, the load generator (and the client scenario's echo server) on core ${LOAD_CORE} (taskset)` : 'none'}`);
  md.push(`- Node.js ${machine.node}; ${machine.rustc || 'rustc ?'}`);
  md.push(`- ours: mytosis-websocket from ${options.oursDir === root ? 'this checkout' : options.oursDir}${machine.commit ? ` at ${machine.commit}` : ''}, addon ${machine.addon.file} (${addon.type} build, ${(machine.addon.bytes / 2 ** 20).toFixed(1)} MiB, sha256 ${machine.addon.sha256}..., built ${machine.addon.built})`);
  md.push(`- ws ${machine.ws}; bufferutil ${machine.bufferutil || 'not installed'}: off in "ws" (WS_NO_BUFFER_UTIL=1), on in "ws+bufferutil" (checked in each run through ws/lib/buffer-util.js)`);
  if (uws.ok && uws.build) {
    md.push(`- uWebSockets.js: ${uws.build.package} from the npm registry, file ${uws.build.file} (an unofficial build of uWebSockets.js; source commit ${uws.build.sourceCommit || 'unknown'}); the official package is not on the registry`);
  } else {
    md.push(`- uWebSockets.js: not measured (${uws.reason || 'not available'})`);
  }
  if (results.cluster) {
    const b = machine.socketio;
    md.push(`- cluster: ${machine.redis || 'redis-server ?'} (one per run, no persistence); socket.io ${b ? `${b.socketio}, @socket.io/redis-adapter ${b.adapter}` : '(not measured)'} with node-redis ${machine.nodeRedis || '?'} clients, from bench/node_modules; every node and Redis on the server core`);
  }
  md.push(`- Node's WebSocket: undici ${machine.undici} (Node 20's global WebSocket is behind --experimental-websocket)`);
  md.push('- rust-echo: tokio-tungstenite alone (`loadgen client-echo` on the server core: frames echoed as they came, no JS, no JSON), a reference for what the transport costs without Node; in JSON echo and 1 MiB echo only');
  md.push(`- load generator: bench/loadgen (Rust, tokio ${machine.loadgen.tokio} current-thread runtime, tokio-tungstenite ${machine.loadgen.tokioTungstenite})`);
  md.push('- CPU: user+system time of each process over the measured window, from the per-thread /proc/PID/task/*/schedstat (ns); "CPU %" is of one core', '');
  md.push('![Ratios against ws](' + `${options.output}.svg` + ')', '');

  for (const [id, data] of Object.entries(results)) {
    const scenario = SCENARIOS[id];
    if (scenario.kind === 'leak') continue;
    const baselines = (scenario.baselines || ['ws', 'ws+bufferutil']).filter(
      (b) => data.peers.includes(b) && (data.runs[b] || []).length
    );
    if (id === 'echo' || id === 'fanout') {
      if ((data.runs['uWS.js'] || []).length) baselines.push('uWS.js');
    }
    const t = report.scenarioTable({ ...scenario, baselines }, data);
    t.rows.forEach((row) => {
      if (row[0] === 'ours' && oursLabel !== 'ours') row[0] = oursLabel;
    });
    medians[id] = t.med;
    const heading = `${scenario.title}: ${scenario.describe(options)}`;
    text.push(`${heading}\n${report.textTable(t.header, t.rows)}`);
    md.push(`## ${scenario.title}`, '', scenario.describe(options) + '.', '', report.markdownTable(t.header, t.rows), '');
    const errs = Object.entries(data.errors);
    for (const [peer, list] of errs) md.push(`- ${peer} failed ${list.length} time(s): ${list[0].split('\n')[0]}`);
    const loaded = data.peers.filter((p) => (t.med[p].loadgen_cpu_pct ?? 0) > 90);
    if (loaded.length) md.push(`- the load generator used over 90% of its core with ${loaded.join(', ')}: there it may bound the result`);
    // Rounds that disagree by more than 15% of the median.
    const noisy = [];
    for (const key of scenario.ratios) {
      const metric = scenario.metrics.find((m) => m.key === key);
      for (const peer of data.peers) {
        const values = (data.runs[peer] || []).map((r) => r[key]).filter(Number.isFinite);
        const med = t.med[peer][key];
        if (values.length < 2 || !med) continue;
        const lo = Math.min(...values);
        const hi = Math.max(...values);
        if ((hi - lo) / med > 0.15) {
          noisy.push(`${peer} ${metric.label} ${values.map((v) => report.fmt(v, metric.digits ?? 0)).join(', ')}`);
        }
      }
    }
    if (noisy.length) md.push(`- rounds disagree by over 15% of the median: ${noisy.join('; ')}`);
    // What the wss:// runs negotiated.
    const tlsSeen = [...new Set(Object.values(data.runs).flat().map((r) => r.tls).filter(Boolean))];
    if (tlsSeen.length) md.push(`- TLS negotiated: ${tlsSeen.join('; ')}`);
    const added = id === 'idle-deflate' ? compressionCost(t.med) : [];
    if (added.length) md.push(`- what compression adds per connection (RSS bytes/conn minus the same server's "-off" row): ${added.join('; ')}`);
    if (errs.length || loaded.length || noisy.length || added.length || tlsSeen.length) md.push('');
    if (scenario.chart && data.peers.includes('ws') && t.med.ws) {
      for (const c of scenario.chart) {
        const base = t.med.ws[c.key];
        if (!base) continue;
        chartGroups.push({
          label: c.label,
          baseline: 'ws',
          bars: data.peers
            .filter((p) => p !== 'ws' && t.med[p][c.key])
            .map((p) => ({
              peer: p,
              raw: report.fmt(t.med[p][c.key], 2),
              factor: c.better === 'lower' ? base / t.med[p][c.key] : t.med[p][c.key] / base
            }))
        });
      }
    }
  }

  if (results.leak) {
    const leak = (results.leak.runs.ours || [])[0];
    md.push('## Leak check', '');
    if (leak) {
      medians.leak = { ours: leak };
      const line = `JSON echo against our server for ${options.leakSeconds} s: RSS ${report.fmt(leak.early_rss / 2 ** 20, 1)} MiB at ${leak.early_t.toFixed(0)} s, ${report.fmt(leak.late_rss / 2 ** 20, 1)} MiB at ${leak.late_t.toFixed(0)} s: ${leak.ratio.toFixed(3)}x (${report.fmt(leak.msgs_per_sec)} msgs/s).`;
      text.push(`Leak check: ${line}`);
      md.push(line, '');
      const every = leak.samples.filter((s) => Math.round(s.t) % 5 === 0);
      const rows = [['RSS MiB', ...every.map((s) => (s.rss / 2 ** 20).toFixed(1))]];
      const young = leak.new_space ?? [];
      if (young.length > 0) {
        const nearest = (t) => young.reduce((best, y) => (Math.abs(y.t - t) < Math.abs(best.t - t) ? y : best));
        rows.push(['V8 new space MiB', ...every.map((s) => (nearest(s.t).bytes / 2 ** 20).toFixed(1))]);
      }
      md.push(report.markdownTable(['t (s)', ...every.map((s) => s.t.toFixed(0))], rows), '');
    } else {
      md.push(`Failed: ${(results.leak.errors.ours || ['?'])[0]}`, '');
    }
  }

  // The performance targets (TARGETS).
  const targetRows = [];
  for (const target of TARGETS) {
    const [sid, ...peers] = target.need;
    const have = medians[sid] && peers.every((p) => medians[sid][p] && Object.values(medians[sid][p]).some((v) => v !== null));
    if (!have) {
      targetRows.push([target.what, 'not measured', '-']);
      continue;
    }
    const r = target.eval(medians);
    targetRows.push([target.what, r.measured, r.ok ? 'met' : `missed: ${r.by}`]);
  }
  text.push(`Targets\n${report.textTable(['target', 'measured', 'status'], targetRows)}`);
  const targetsMd = ['## Targets', '', report.markdownTable(['target', 'measured', 'status'], targetRows), ''];
  // What bounds the targets we miss is written by hand in bench/analysis.md.
  const analysisPath = path.join(__dirname, 'analysis.md');
  if (fs.existsSync(analysisPath)) targetsMd.push(fs.readFileSync(analysisPath, 'utf8').trim(), '');
  const firstSection = md.findIndex((l) => l.startsWith('![Ratios'));
  md.splice(firstSection + 2, 0, ...targetsMd);

  if (Object.keys(profiles).length) {
    md.push('## Profiles of our server and Socket', '');
    md.push('`perf record -F 499 -g` on the server (or, for the client scenario, the client) process during an extra run (not counted above), `perf report --no-children --sort dso,sym`: self time by DSO and symbol, over 0.7%. The default release profile strips the addon (`strip = "symbols"`), and then its frames show as addresses: build with `CARGO_PROFILE_RELEASE_STRIP=none` for names. JS frames are named through `--perf-basic-prof-only-functions`.', '');
    for (const [id, p] of Object.entries(profiles)) {
      md.push(`### ${SCENARIOS[id].title}`, '');
      if (!p || p.error) md.push(`perf failed: ${p ? p.error : '?'}`, '');
      else md.push('```', ...p.lines, '```', '');
    }
  }

  md.push('## How to run', '');
  md.push('```sh');
  md.push('npm run bench                 # full run (builds bench/loadgen first if needed), ~35 min');
  md.push('npm run bench -- --scenarios cluster --output results-cluster   # only the cluster fan-out');
  md.push('npm run bench -- --scenarios wss,connrate,connrate-wss,storm --output results-conn   # wss://, connection rate, reconnect storm');
  md.push('npm run bench -- --quick      # smoke run, a few minutes, writes bench/results-quick.md');
  md.push('npm run bench -- --leak       # only the 60 s leak check');
  md.push('npm run bench -- --perf       # also profile our server with perf');
  md.push('node bench/run.js --help      # every option');
  md.push('```', '');

  let svg = null;
  if (chartGroups.length) {
    svg = report.svgChart(chartGroups, {
      title: 'mytosis-websocket vs ws, ws+bufferutil, uWebSockets.js, undici',
      subtitle: `Times better than ws without bufferutil (1x line; log scale; throughput: peer/ws, costs: ws/peer). ${options.quick ? 'QUICK MODE. ' : ''}${machine.date.slice(0, 10)}, ${machine.cores} cores, Node ${machine.node}${addon.type === 'debug' ? ', DEBUG addon' : ''}`
    });
  }
  // No chart (no scenario with ws ran, e.g. cluster alone): no image.
  if (!svg) {
    const image = md.findIndex((l) => l.startsWith('![Ratios'));
    if (image !== -1) md.splice(image, 2);
  }
  return { text: text.join('\n\n'), markdown: md.join('\n'), svg };
}

main().catch((err) => {
  console.error(`\nbench: ${err.message}`);
  process.exitCode = 1;
});
