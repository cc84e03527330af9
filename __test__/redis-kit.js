'use strict';

// A throwaway redis-server for the cluster tests (__test__/cluster.test.js):
// one per test, on a port the OS picked, without persistence, killed when
// the test ends. `restart()` brings it back on the same port (an outage);
// `stop()` and `start()` do the same in two steps, so that a test can act
// while Redis is away; `pause()` and `resume()` freeze it (SIGSTOP: its
// sockets stay open and nothing answers, like a partition). Readiness is a raw `PING` answered `+PONG`, so the
// tests need redis-server and nothing else (no redis-cli). .ci/run
// installs redis-server; without it the cluster tests are skipped.

const net = require('node:net');
const { spawn, execFileSync } = require('node:child_process');

const { defer } = require('./helpers');

/** Whether redis-server is installed; the cluster tests skip otherwise. */
function hasRedis() {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * A port nothing listens on now, picked by the OS (there is a small race
 * until redis-server binds it; a failed start says so).
 */
function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.unref();
    probe.on('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** Whether `PING` on 127.0.0.1:port is answered `+PONG` now. */
function pong(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let seen = '';
    socket.setTimeout(200, () => socket.destroy());
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      seen += chunk;
      if (seen.includes('\r\n')) {
        socket.destroy();
        resolve(seen.startsWith('+PONG'));
      }
    });
    socket.on('error', () => resolve(false));
    socket.on('close', () => resolve(false));
  });
}

/** Resolves once `PING` on 127.0.0.1:port answers `+PONG`; rejects after `ms`. */
async function waitForPong(port, ms = 5000) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await pong(port)) return;
    if (Date.now() > deadline) throw new Error(`redis-server on ${port} did not answer PING within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * Start redis-server on `port` (by default one the OS picks) and wait until
 * it answers; with `started: false`, only pick the port (`start()` later).
 * It is killed when the test ends (through `defer`: after the Servers
 * started later have closed).
 *
 * @return {Promise<Object>} `{ port, url, stop(signal = 'SIGKILL'),
 *     start(), restart(), pause(), resume() }`: `start` and `restart`
 *     resolve once the new redis-server answers `PING`
 */
async function startRedis(t, port, { started = true } = {}) {
  port ??= await freePort();
  let child = null;
  const running = () => child !== null && child.exitCode === null && child.signalCode === null;
  const start = async () => {
    if (running()) throw new Error(`redis-server on ${port} is already running`);
    child = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: 'ignore' }
    );
    const spawned = child;
    spawned.exited = new Promise((resolve) => spawned.once('exit', resolve));
    spawned.once('error', () => {}); // reported by the exit below
    await Promise.race([
      waitForPong(port),
      spawned.exited.then((code) => {
        throw new Error(`redis-server on ${port} exited with ${code} (port taken?)`);
      })
    ]);
  };
  const stop = async (signal = 'SIGKILL') => {
    if (child === null) return;
    if (running()) child.kill(signal);
    await child.exited;
  };
  defer(t, () => stop());
  if (started) await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}/0`,
    start,
    stop,
    restart: async () => {
      await stop();
      await start();
    },
    pause: () => child.kill('SIGSTOP'),
    resume: () => child.kill('SIGCONT')
  };
}

module.exports = { hasRedis, freePort, pong, startRedis, waitForPong };
