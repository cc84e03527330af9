'use strict';

// What ran where: the machine, the toolchains, and which build of every
// peer.

const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const root = path.join(__dirname, '..', '..');

function run(cmd, args, opts = {}) {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], ...opts }).trim();
  } catch {
    return null;
  }
}

function version(pkg, from = root) {
  try {
    return require(require.resolve(`${pkg}/package.json`, { paths: [from] })).version;
  } catch {
    return null;
  }
}

/** The addon file that `require('..')` loads, with its hash and time. */
function addonInfo(dir = root) {
  const file = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.node'))
    .map((f) => path.join(dir, f))
    .sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs)[0];
  if (!file) return null;
  const data = fs.readFileSync(file);
  return {
    file: path.basename(file),
    sha256: crypto.createHash('sha256').update(data).digest('hex').slice(0, 16),
    built: fs.statSync(file).mtime.toISOString(),
    bytes: data.length
  };
}

function cargoLockVersion(lockFile, name) {
  try {
    const text = fs.readFileSync(lockFile, 'utf8');
    const m = new RegExp(`name = "${name}"\\nversion = "([^"]+)"`).exec(text);
    return m ? m[1] : null;
  } catch {
    return null;
  }
}

function machineInfo(oursDir = root) {
  const cpus = os.cpus();
  const inRepo = fs.existsSync(path.join(oursDir, '.git'));
  const commit = inRepo ? run('git', ['-C', oursDir, 'rev-parse', '--short', 'HEAD']) : null;
  const dirty = inRepo
    ? run('git', ['-C', oursDir, 'status', '--porcelain', '--', 'src', 'lib', 'Cargo.toml', 'Cargo.lock'])
    : null;
  const lock = path.join(__dirname, '..', 'loadgen', 'Cargo.lock');
  return {
    date: new Date().toISOString(),
    cpu: cpus[0] ? cpus[0].model.trim() : 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    kernel: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    rustc: run('rustc', ['--version']),
    commit: commit ? `${commit}${dirty ? ' (with uncommitted changes in src/ or lib/)' : ''}` : null,
    addon: addonInfo(),
    loadgen: {
      tokio: cargoLockVersion(lock, 'tokio'),
      tokioTungstenite: cargoLockVersion(lock, 'tokio-tungstenite')
    },
    ws: version('ws'),
    bufferutil: version('bufferutil'),
    undici: version('undici')
  };
}

module.exports = { machineInfo, addonInfo, root };
