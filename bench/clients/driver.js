'use strict';

// The client scenario's driver, shared by every client under test: open
// BENCH_CONNS connections to the Rust echo server, keep BENCH_INFLIGHT small
// JSON messages in flight on each (every reply is parsed, its seq checked,
// and answered by a new message), warm up, then count replies for
// BENCH_DURATION seconds. Prints one JSON line: msgs/s, this process's CPU
// and the echo server's (BENCH_ECHO_PID).

const proc = require('../lib/proc');

const url = process.env.BENCH_URL;
const conns = Number(process.env.BENCH_CONNS || 1);
const inflight = Number(process.env.BENCH_INFLIGHT || 16);
const warmupMs = Number(process.env.BENCH_WARMUP || 1) * 1000;
const durationMs = Number(process.env.BENCH_DURATION || 5) * 1000;
const echoPid = Number(process.env.BENCH_ECHO_PID || 0);

function emit(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

function fail(err) {
  process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
}
process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);
setTimeout(() => fail(new Error('client timed out')), warmupMs + durationMs + 30000).unref();

/**
 * @param {String} name What is measured
 * @param {Function} open `open(url, onMessage)` resolves to `{ send(obj) }`
 *     once the connection is open; `onMessage(obj)` gets each parsed reply
 * @param {Object} [info] Extra fields for the result line
 */
async function run(name, open, info = {}) {
  let measuring = false;
  let replies = 0;
  const conns_ = [];
  for (let i = 0; i < conns; i++) {
    const state = { conn: null, sent: 0, expected: 0 };
    state.conn = await open(url, (message) => {
      if (message.seq !== state.expected) {
        fail(new Error(`expected seq ${state.expected}, got ${JSON.stringify(message)}`));
      }
      state.expected++;
      if (measuring) replies++;
      state.conn.send({ type: 'ping', seq: state.sent++, t: Date.now() });
    });
    conns_.push(state);
  }
  emit({ event: 'ready' });
  for (const state of conns_) {
    for (let j = 0; j < inflight; j++) {
      state.conn.send({ type: 'ping', seq: state.sent++, t: Date.now() });
    }
  }
  await new Promise((resolve) => setTimeout(resolve, warmupMs));
  const busyBefore = proc.machineBusyMs();
  const ownBefore = process.cpuUsage();
  const echoBefore = echoPid ? proc.cpu(echoPid) : null;
  const t0 = process.hrtime.bigint();
  measuring = true;
  await new Promise((resolve) => setTimeout(resolve, durationMs));
  measuring = false;
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const own = process.cpuUsage(ownBefore);
  const echo = echoPid ? proc.cpuDelta(echoBefore, proc.cpu(echoPid)) : null;
  const others = proc.machineBusyMs() - busyBefore - (own.user + own.system) / 1000 - (echo ? echo.ns / 1e6 : 0);
  const count = replies;
  emit({
    event: 'result',
    client: name,
    ...info,
    connections: conns,
    inflight,
    messages: count,
    seconds,
    msgs_per_sec: count / seconds,
    client_cpu_ns: (own.user + own.system) * 1000,
    client_user_ms: own.user / 1000,
    client_sys_ms: own.system / 1000,
    client_us_per_msg: (own.user + own.system) / count,
    client_cpu_pct: ((own.user + own.system) / 1e4) / seconds,
    echo_cpu_ns: echo ? echo.ns : null,
    echo_cpu_pct: echo ? echo.ns / 1e7 / seconds : null,
    others_cpu_pct: others / 10 / seconds
  });
  process.exit(0);
}

module.exports = { run, fail };
