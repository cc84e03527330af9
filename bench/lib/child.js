'use strict';

// Child processes of the runner: pinned to a core with taskset, with the
// open-file limit raised, speaking JSON lines on stdout. Every child is
// killed when the runner exits, however it exits.

const { spawn, execFileSync } = require('node:child_process');
const { EventEmitter } = require('node:events');
const readline = require('node:readline');

const live = new Set();

function killAll(signal = 'SIGKILL') {
  for (const child of live) {
    try {
      process.kill(child.pid, signal);
    } catch {}
  }
}

process.on('exit', () => killAll());
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    killAll();
    process.stderr.write(`\nbench: ${signal}, stopped\n`);
    process.exit(130);
  });
}

let tasksetOk = null;
function canPin() {
  if (tasksetOk === null) {
    try {
      execFileSync('taskset', ['-c', '0', 'true'], { stdio: 'ignore' });
      execFileSync('taskset', ['-c', '1', 'true'], { stdio: 'ignore' });
      tasksetOk = true;
    } catch {
      tasksetOk = false;
    }
  }
  return tasksetOk;
}

/** process.env with `extra` on top; a null value removes a variable. */
function childEnv(extra = {}) {
  const env = { ...process.env };
  for (const [key, value] of Object.entries(extra)) {
    if (value === null || value === undefined) delete env[key];
    else env[key] = String(value);
  }
  return env;
}

class Child extends EventEmitter {
  /**
   * @param {String} name For messages
   * @param {String[]} argv The command
   * @param {Object} options `{ env, core, nofile, cwd, verbose }`
   */
  constructor(name, argv, options = {}) {
    super();
    this.name = name;
    this.lines = [];
    this.stderr = '';
    this.exitCode = undefined;
    const pin = options.core !== undefined && options.core !== null && canPin();
    // `exec` keeps the pid: it is the pid of the program itself.
    const script =
      `ulimit -n ${options.nofile || 'hard'} 2>/dev/null || ulimit -n hard 2>/dev/null; ` +
      (pin ? `exec taskset -c ${options.core} "$@"` : 'exec "$@"');
    this.proc = spawn('bash', ['-c', script, 'bash', ...argv], {
      cwd: options.cwd,
      env: childEnv(options.env),
      stdio: ['pipe', 'pipe', 'pipe']
    });
    this.pid = this.proc.pid;
    live.add(this);
    this.proc.stdin.on('error', () => {});
    readline.createInterface({ input: this.proc.stdout }).on('line', (line) => {
      let obj;
      try {
        obj = JSON.parse(line);
      } catch {
        if (options.verbose) process.stderr.write(`[${name}] ${line}\n`);
        return;
      }
      this.lines.push(obj);
      this.emit('line', obj);
    });
    this.proc.stderr.on('data', (chunk) => {
      this.stderr = (this.stderr + chunk).slice(-4000);
      if (options.verbose) process.stderr.write(`[${name}] ${chunk}`);
    });
    this.exited = new Promise((resolve) => {
      this.proc.on('exit', (code, signal) => {
        this.exitCode = code ?? signal;
        live.delete(this);
        this.emit('exit', this.exitCode);
        resolve(this.exitCode);
      });
    });
  }

  /**
   * Resolves with the first line whose `event` is `event`: among the lines
   * already read too, unless `fresh`.
   */
  waitFor(event, timeoutMs, { fresh = false } = {}) {
    const found = fresh ? undefined : this.lines.find((l) => l.event === event);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        this.off('line', onLine);
        this.off('exit', onExit);
      };
      const onLine = (obj) => {
        if (obj.event === event) {
          cleanup();
          resolve(obj);
        }
      };
      const onExit = (code) => {
        cleanup();
        reject(this.error(`exited (${code}) before "${event}"`));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(this.error(`no "${event}" within ${Math.round(timeoutMs / 1000)} s`));
      }, timeoutMs);
      this.on('line', onLine);
      this.on('exit', onExit);
      if (this.exitCode !== undefined) onExit(this.exitCode);
    });
  }

  error(what) {
    const tail = this.stderr.trim().split('\n').slice(-8).join('\n    ');
    return new Error(`${this.name} ${what}${tail ? `:\n    ${tail}` : ''}`);
  }

  send(line) {
    if (this.exitCode === undefined) this.proc.stdin.write(`${line}\n`);
  }

  /** End stdin (the children exit on that), then TERM, then KILL. */
  async stop(graceMs = 3000) {
    if (this.exitCode !== undefined) return this.exitCode;
    this.proc.stdin.end();
    const timeout = (ms) => new Promise((resolve) => setTimeout(resolve, ms).unref());
    await Promise.race([this.exited, timeout(graceMs)]);
    if (this.exitCode === undefined) {
      try {
        process.kill(this.pid, 'SIGTERM');
      } catch {}
      await Promise.race([this.exited, timeout(1000)]);
    }
    if (this.exitCode === undefined) {
      try {
        process.kill(this.pid, 'SIGKILL');
      } catch {}
      await Promise.race([this.exited, timeout(1000)]);
    }
    return this.exitCode;
  }
}

module.exports = { Child, killAll, canPin };
