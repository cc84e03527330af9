'use strict';

// Runs the Autobahn|Testsuite cases (kosoku, conformance/kosoku.js) against
// our Server (conformance/echo-server.js) and our Socket
// (conformance/client.js), on 127.0.0.1, and prints each side's verdicts.
//
//   npm run conformance                          # every case, both sides (minutes: 12.* and 13.* compress)
//   npm run conformance -- --cases '1.* 2.*'     # only these (ids or globs, space-separated)
//   npm run conformance -- --side server --exclude '9.*'
//
// Reports (index.html, index.json, one file per case, kosoku's log) go to
// target/conformance/server and target/conformance/client. Exit status: 0
// when no case FAILED, is an ERROR or ended without a good closing
// handshake, 1 otherwise, 2 on a bad command line.

const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');
const { spawn } = require('node:child_process');
const kosoku = require('./kosoku');
const { summarize, line } = require('./summary');

const ROOT = path.join(__dirname, '..');
const USAGE = `usage: node conformance/run.js [options]
  --cases 'IDS'     case ids or globs to run, space-separated (default: all, 12.* and 13.* (compression) included)
  --exclude 'IDS'   case ids or globs to leave out
  --side S          server, client or both (default both)
  --parallel N      cases run at once against the Server (default 1)
  --out DIR         reports directory (default target/conformance)
  --timeout S       limit for each side's run in seconds (default 1800)`;

function parseArgs(argv) {
  const opts = { cases: [], exclude: [], side: 'both', parallel: 1, out: path.join(ROOT, 'target', 'conformance'), timeout: 1800 };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (flag === '--help' || flag === '-h') {
      console.log(USAGE);
      process.exit(0);
    }
    const value = argv[++i];
    if (value === undefined) usage(`${flag} needs a value`);
    const list = value.split(/[\s,]+/).filter(Boolean);
    if (flag === '--cases') opts.cases = list;
    else if (flag === '--exclude') opts.exclude.push(...list);
    else if (flag === '--side' && ['server', 'client', 'both'].includes(value)) opts.side = value;
    else if (flag === '--parallel' && Number(value) >= 1) opts.parallel = Math.floor(Number(value));
    else if (flag === '--timeout' && Number(value) > 0) opts.timeout = Number(value);
    else if (flag === '--out') opts.out = path.resolve(value);
    else usage(`bad argument: ${flag} ${value}`);
  }
  return opts;
}

function usage(message) {
  console.error(`${message}\n${USAGE}`);
  process.exit(2);
}

const children = new Set();
function start(command, args, log) {
  const child = spawn(command, args, {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PYTHONUNBUFFERED: '1' }
  });
  children.add(child);
  child.exited = new Promise((resolve) =>
    child.on('close', (code, signal) => {
      children.delete(child);
      resolve(code ?? signal);
    })
  );
  child.stdout.pipe(log, { end: false });
  child.stderr.pipe(log, { end: false });
  return child;
}
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    for (const child of children) child.kill('SIGKILL');
    process.exit(130);
  });
}

// The first match of `pattern` in a line of `child`'s stdout or stderr
// (kosoku says where it listens on stderr), or an error once it exits or
// `ms` pass.
function waitFor(child, pattern, ms) {
  return new Promise((resolve, reject) => {
    const readers = [child.stdout, child.stderr].map((input) => readline.createInterface({ input }));
    const timer = setTimeout(() => reject(new Error(`no ${pattern} within ${ms} ms`)), ms);
    for (const lines of readers) {
      lines.on('line', (text) => {
        const m = pattern.exec(text);
        if (m) {
          clearTimeout(timer);
          for (const r of readers) r.close();
          // Closing a reader pauses its stream; the log still reads it.
          child.stdout.resume();
          child.stderr.resume();
          resolve(m[0]);
        }
      });
    }
    child.exited.then((code) => reject(new Error(`exited (${code}) before printing ${pattern}`)));
  });
}

// Resolves with the exit code, or kills `child` after `ms` and resolves null.
async function within(child, ms) {
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(resolve, ms, 'timeout');
  });
  const result = await Promise.race([child.exited, timeout]);
  clearTimeout(timer);
  if (result !== 'timeout') return result;
  child.kill('SIGKILL');
  await child.exited;
  return null;
}

// Suite in fuzzingclient mode against our Server.
async function runServer(bin, opts, outdir, log) {
  const server = start(process.execPath, [path.join(__dirname, 'echo-server.js')], log);
  const url = await waitFor(server, /^ws:\/\/\S+/, 10000);
  const suite = start(bin, kosoku.args('fuzzingclient', { ...opts, outdir, address: url }), log);
  const code = await within(suite, opts.timeout * 1000);
  if (code === null) log.write(`kosoku stopped after ${opts.timeout} s\n`);
  server.kill('SIGTERM');
  await within(server, 5000);
}

// Suite in fuzzingserver mode, with our Socket as the client.
async function runClient(bin, opts, outdir, log) {
  const suite = start(bin, kosoku.args('fuzzingserver', { ...opts, outdir, address: '127.0.0.1:0' }), log);
  const url = await waitFor(suite, /ws:\/\/[\d.]+:\d+/, 30000);
  const client = start(process.execPath, [path.join(__dirname, 'client.js'), url, 'mytosis-websocket'], log);
  if ((await within(client, opts.timeout * 1000)) === null) log.write(`client stopped after ${opts.timeout} s\n`);
  // The client's last request (updateReports) ends the fuzzing server's run.
  if ((await within(suite, 15000)) === null) log.write('kosoku did not finish after the client\n');
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const bin = kosoku.ensure();
  const sides = opts.side === 'both' ? ['server', 'client'] : [opts.side];
  const selection = [opts.cases.length ? opts.cases.join(' ') : 'all', ...opts.exclude.map((c) => `-${c}`)].join(' ');
  console.log(`conformance: kosoku ${kosoku.VERSION}, cases ${selection}; reports in ${path.relative(ROOT, opts.out)}/`);
  let failed = false;
  for (const side of sides) {
    const outdir = path.join(opts.out, side);
    fs.rmSync(outdir, { recursive: true, force: true });
    fs.mkdirSync(outdir, { recursive: true });
    const log = fs.createWriteStream(path.join(outdir, 'run.log'));
    const t0 = Date.now();
    try {
      await (side === 'server' ? runServer : runClient)(bin, opts, outdir, log);
    } catch (err) {
      log.write(`${err.stack}\n`);
      console.error(`${side}: ${err.message}`);
    }
    // What a failed run left behind (kosoku waiting for a client, say).
    const left = [...children];
    for (const child of left) child.kill('SIGKILL');
    await Promise.all(left.map((child) => child.exited));
    await new Promise((resolve) => log.end(resolve));
    const seconds = ((Date.now() - t0) / 1000).toFixed(1);
    const label = side === 'server' ? 'Server' : 'Socket';
    const s = summarize(outdir);
    if (!s || s.total === 0) {
      const tail = fs.readFileSync(path.join(outdir, 'run.log'), 'utf8').trim().split('\n').slice(-3);
      console.log(`${label}: no report, ${seconds} s; the end of ${path.relative(ROOT, outdir)}/run.log:`);
      for (const text of tail) console.log(`  ${text}`);
      failed = true;
      continue;
    }
    for (const b of s.bad.slice(0, 50)) {
      console.log(`  ${label} ${b.id}: ${b.behavior}, closing handshake ${b.behaviorClose}, close code ${b.remoteCloseCode}`);
    }
    if (s.bad.length > 50) console.log(`  ... and ${s.bad.length - 50} more`);
    console.log(`${label}: ${line(s)} (${seconds} s)`);
    if (s.counts.FAILED || s.counts.ERROR || s.closeNotOk) failed = true;
  }
  process.exit(failed ? 1 : 0);
}

main().catch((err) => {
  console.error(err.message);
  process.exit(1);
});
