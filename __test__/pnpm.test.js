'use strict';

// Under a strict installer a package resolves only what it declares, so our
// lib finds the application's `mytosis` only through the optional peer
// dependency in package.json. Without it our ConnectionGroup falls back to
// Node's EventEmitter and Mytosis's `ensure` wraps a Server as a single
// connection. This installs the packed tarball with pnpm 10 (isolated
// linker, its packages kept outside the project) next to the behaving
// stand-in `mytosis`, and checks that a Server is a group of that
// `mytosis`; a copy of the tarball without the peer dependency is the
// control: it must not be.

const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { promisify } = require('node:util');
const { test } = require('node:test');

const run = promisify(execFile);

const ROOT = path.resolve(__dirname, '..');
const STANDIN = path.join(__dirname, 'fixtures', 'mytosis-behaving', 'mytosis');
const PNPM = ['--yes', 'pnpm@10'];

// Failures that mean the registry is out of reach, not that the install is
// wrong.
const OFFLINE = /ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|FETCH_FAIL/;

// Run in each project: what our lib resolves `mytosis` to, and whether a
// Server is a group of the application's `mytosis`.
const CHECK = `
const path = require('node:path');
const { Server } = require('mytosis-websocket');
const mytosis = require('mytosis');

let seenByLib = null;
try {
  const lib = path.dirname(require.resolve('mytosis-websocket'));
  seenByLib = require(require.resolve('mytosis', { paths: [lib] }));
} catch (err) {
  if (err.code !== 'MODULE_NOT_FOUND') throw err;
}

const server = new Server({ port: 0, host: '127.0.0.1' });
server.ready.then(async () => {
  console.log(JSON.stringify({
    libSeesMytosis: seenByLib === mytosis,
    serverIsGroup: Server.prototype instanceof mytosis.ConnectionGroup,
    ensureKeepsServer: mytosis.ConnectionGroup.ensure(server) === server
  }));
  await server.close();
});
`;

/** The first line of a failed command's stderr that says what went wrong. */
function firstError(err) {
  const lines = String(err.stderr ?? '').split('\n').map((line) => line.trim());
  return lines.find((line) => /err/i.test(line)) || err.message;
}

function tempDir(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mytosis-pnpm-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** `npm pack` without scripts (the addon is built); the tarball's path. */
async function pack(cwd, dest) {
  const { stdout } = await run(
    'npm',
    ['pack', '--json', '--ignore-scripts', '--pack-destination', dest],
    { cwd, maxBuffer: 64 * 1024 * 1024, timeout: 30000 }
  );
  return path.join(dest, JSON.parse(stdout)[0].filename);
}

/** The tarball again, its package.json without the peer dependency. */
async function packUndeclared(tarball, dir) {
  const unpacked = path.join(dir, 'unpacked');
  fs.mkdirSync(unpacked);
  await run('tar', ['-xzf', tarball, '-C', unpacked], { timeout: 30000 });
  const source = path.join(unpacked, 'package');
  const manifest = JSON.parse(fs.readFileSync(path.join(source, 'package.json'), 'utf8'));
  assert.deepEqual(manifest.peerDependencies, { mytosis: '^1.11.0' });
  delete manifest.peerDependencies;
  delete manifest.peerDependenciesMeta;
  fs.writeFileSync(path.join(source, 'package.json'), JSON.stringify(manifest, null, 2));
  const dest = path.join(dir, 'repacked');
  fs.mkdirSync(dest);
  return pack(source, dest);
}

/** A project depending on `tarball` and the stand-in, installed by pnpm. */
async function installProject(dir, name, tarball, store) {
  const project = path.join(dir, name);
  fs.mkdirSync(project);
  fs.writeFileSync(
    path.join(project, 'package.json'),
    JSON.stringify({
      name,
      private: true,
      dependencies: {
        'mytosis-websocket': `file:${tarball}`,
        mytosis: `file:${STANDIN}`
      }
    })
  );
  fs.writeFileSync(path.join(project, 'check.js'), CHECK);
  await run(
    'npx',
    [
      ...PNPM,
      'install',
      '--no-frozen-lockfile',
      '--config.node-linker=isolated',
      // Outside the project, as in a monorepo where the application is
      // not the workspace root: from our lib's real path, walking up never
      // reaches the application's node_modules.
      `--config.virtual-store-dir=${path.join(dir, `${name}-packages`)}`,
      `--config.store-dir=${store}`
    ],
    { cwd: project, timeout: 60000 }
  );
  const { stdout } = await run(process.execPath, ['check.js'], { cwd: project, timeout: 15000 });
  return JSON.parse(stdout);
}

test('installed by pnpm, a Server is a ConnectionGroup of the application\'s mytosis', { timeout: 90000 }, async (t) => {
  const dir = tempDir(t);
  try {
    // No retries: offline, this fails at once instead of after a minute.
    await run('npx', [...PNPM, '--version'], {
      cwd: dir,
      env: { ...process.env, npm_config_fetch_retries: '0' },
      timeout: 60000
    });
  } catch (err) {
    t.skip(`pnpm 10 could not be fetched from the npm registry (${firstError(err)}); this test needs it`);
    return;
  }

  const tarball = await pack(ROOT, dir);
  const undeclared = await packUndeclared(tarball, dir);
  const store = path.join(dir, 'store');
  let declaredResult;
  let undeclaredResult;
  try {
    declaredResult = await installProject(dir, 'declared', tarball, store);
    undeclaredResult = await installProject(dir, 'undeclared', undeclared, store);
  } catch (err) {
    if (OFFLINE.test(String(err.stderr) + String(err.stdout))) {
      t.skip(`pnpm could not reach the npm registry (${firstError(err)}); this test needs it`);
      return;
    }
    throw err;
  }

  assert.deepEqual(declaredResult, {
    libSeesMytosis: true,
    serverIsGroup: true,
    ensureKeepsServer: true
  });
  // The control: the layout is strict, so without the peer dependency our
  // lib cannot see the application's mytosis.
  assert.deepEqual(undeclaredResult, {
    libSeesMytosis: false,
    serverIsGroup: false,
    ensureKeepsServer: false
  });
});
