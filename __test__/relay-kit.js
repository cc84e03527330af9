'use strict';

// The relay CLI (bin/mytosis-websocket.js) as its users run it, for
// __test__/relay.test.js and __test__/relay-chromium.test.js: a child
// process on 127.0.0.1, and waits that fail with a message saying what was
// awaited instead of hanging.

const { spawn } = require('node:child_process');
const path = require('node:path');

const BIN = path.join(__dirname, '..', 'bin', 'mytosis-websocket.js');
// Starting takes a fraction of a second; this leaves a wide margin.
const START_TIMEOUT = 10000;

/** Reject after `ms` with an error naming `what`, unless `promise` settles first. */
function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Resolve with `check()`'s first truthy result, polling; reject after `ms`. */
async function until(check, what, ms = 5000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`Timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * Run the CLI with `args` to its end: `{ code, signal, stdout, stderr }`.
 * `bin` runs another copy of bin/mytosis-websocket.js.
 */
function runCli(args, ms = START_TIMEOUT, bin = BIN) {
  const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const output = collect(child);
  const ended = new Promise((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal, ...output() }))
  );
  return within(ended, ms, `mytosis-websocket ${args.join(' ')} to exit`).finally(() => child.kill('SIGKILL'));
}

/**
 * Start the relay on 127.0.0.1 and resolve once it has printed where it
 * listens.
 *
 * @param {String[]} [args] More flags
 * @param {Number} [port=0] The port; 0 lets the OS pick
 * @return {Promise<Object>} `{ port, url, wsUrl, stdout(), stderr(),
 *     stop(signal), kill() }`; `stop` sends the signal and resolves with
 *     `{ code, signal, ms }` once the process has exited
 */
async function startRelay(args = [], port = 0) {
  const child = spawn(process.execPath, [BIN, '--port', String(port), '--host', '127.0.0.1', ...args], {
    stdio: ['ignore', 'pipe', 'pipe']
  });
  const output = collect(child);
  const exited = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  const kill = () => child.kill('SIGKILL');

  const firstLine = new Promise((resolve, reject) => {
    child.stdout.on('data', () => output().stdout.includes('\n') && resolve(output().stdout.split('\n')[0]));
    exited.then(({ code }) => reject(new Error(`the relay exited with ${code}: ${output().stderr}`)));
  });
  let line;
  try {
    line = await within(firstLine, START_TIMEOUT, "the relay's listening line");
  } catch (err) {
    kill();
    throw err;
  }
  const match = /^listening on http:\/\/127\.0\.0\.1:(\d+)$/.exec(line);
  if (match === null) {
    kill();
    throw new Error(`unexpected first line on stdout: ${JSON.stringify(line)}`);
  }
  const listeningPort = Number(match[1]);

  return {
    port: listeningPort,
    url: `http://127.0.0.1:${listeningPort}`,
    wsUrl: `ws://127.0.0.1:${listeningPort}/`,
    stdout: () => output().stdout,
    stderr: () => output().stderr,
    kill,
    async stop(signal, ms = 30000) {
      const start = Date.now();
      child.kill(signal);
      const result = await within(exited, ms, `the relay to exit after ${signal}`);
      return { ...result, ms: Date.now() - start };
    }
  };
}

/** What a child writes, as text, from now on. */
function collect(child) {
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk) => (stderr += chunk));
  return () => ({ stdout, stderr });
}

module.exports = { runCli, startRelay, until, within };
