'use strict';

// The entry points, CommonJS and ESM; the packed tarball installed in an
// empty project, with the relay's command; the README's errors table
// against the typings.

const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { promisify } = require('node:util');
const { describe, test } = require('node:test');

const run = promisify(execFile);

const ROOT = path.resolve(__dirname, '..');
const manifest = require('../package.json');

/** The files (not the folders) of `dir`, a folder of the package, as paths from its root. */
function filesIn(dir) {
  return fs
    .readdirSync(path.join(ROOT, dir), { withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => `${dir}/${entry.name}`);
}

/** A temp directory removed when the test ends. */
function tempDir(t, prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * A project whose node_modules/mytosis-websocket links to this package, so
 * that imports go through the package name and its `exports`.
 */
function linkedProject(t) {
  const dir = tempDir(t, 'mytosis-entry-');
  fs.mkdirSync(path.join(dir, 'node_modules'));
  fs.symlinkSync(ROOT, path.join(dir, 'node_modules', 'mytosis-websocket'), 'dir');
  fs.writeFileSync(path.join(dir, 'package.json'), '{ "name": "consumer", "private": true }\n');
  return dir;
}

describe('entry points', () => {
  test("require('mytosis-websocket') is Socket, with Socket, Server, Stream and ConnectionGroup on it", () => {
    const pkg = require('..');
    const Socket = require('../lib/socket');
    assert.equal(pkg, Socket);
    assert.equal(pkg.Socket, Socket);
    assert.equal(pkg.Server, require('../lib/server'));
    assert.equal(pkg.Stream, require('../lib/stream'));
    assert.equal(pkg.ConnectionGroup, require('../lib/connection-group'));
    for (const name of ['Socket', 'Server', 'Stream', 'ConnectionGroup']) {
      assert.equal(typeof pkg[name], 'function', name);
    }
    assert.ok(pkg.Server.prototype instanceof pkg.ConnectionGroup, 'a Server is a ConnectionGroup');
  });

  test("require('mytosis-websocket/server') is Server", () => {
    assert.equal(require('../server'), require('..').Server);
  });

  test('the package name resolves through exports, CommonJS and ESM, to the same classes', async (t) => {
    const dir = linkedProject(t);
    fs.writeFileSync(
      path.join(dir, 'check.mjs'),
      `
      import { createRequire } from 'node:module';
      import Socket, { Socket as NamedSocket, Server, Stream, ConnectionGroup } from 'mytosis-websocket';
      import ServerDefault from 'mytosis-websocket/server';
      import manifest from 'mytosis-websocket/package.json' with { type: 'json' };

      const require = createRequire(import.meta.url);
      const cjs = require('mytosis-websocket');
      const cjsServer = require('mytosis-websocket/server');

      console.log(JSON.stringify({
        socketIsFunction: typeof Socket === 'function',
        socketName: Socket.name,
        serverName: Server.name,
        namedSocket: NamedSocket === Socket,
        cjsSocket: cjs === Socket,
        cjsServer: cjs.Server === Server,
        cjsStream: cjs.Stream === Stream,
        cjsGroup: cjs.ConnectionGroup === ConnectionGroup,
        serverDefault: ServerDefault === Server,
        cjsServerEntry: cjsServer === Server,
        streamIsFunction: typeof Stream === 'function',
        groupIsFunction: typeof ConnectionGroup === 'function',
        manifestName: manifest.name
      }));
      `
    );
    const { stdout } = await run(process.execPath, ['check.mjs'], { cwd: dir });
    assert.deepEqual(JSON.parse(stdout), {
      socketIsFunction: true,
      socketName: 'Socket',
      serverName: 'Server',
      namedSocket: true,
      cjsSocket: true,
      cjsServer: true,
      cjsStream: true,
      cjsGroup: true,
      serverDefault: true,
      cjsServerEntry: true,
      streamIsFunction: true,
      groupIsFunction: true,
      manifestName: 'mytosis-websocket'
    });
  });

  test('index.mjs and server.mjs, imported by path, give the same classes as the CommonJS entry', async () => {
    const script = `
      import Socket, { Server } from ${JSON.stringify(path.join(ROOT, 'index.mjs'))};
      import S2 from ${JSON.stringify(path.join(ROOT, 'server.mjs'))};
      import { createRequire } from 'node:module';
      const cjs = createRequire(${JSON.stringify(path.join(ROOT, 'x.js'))})('./index.js');
      console.log(JSON.stringify([Socket === cjs, Server === cjs.Server, S2 === cjs.Server]));
    `;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script]);
    assert.deepEqual(JSON.parse(stdout), [true, true, true]);
  });

  test('every file package.json points to exists', () => {
    const targets = new Set([manifest.main, manifest.types]);
    for (const entry of Object.values(manifest.exports)) {
      if (typeof entry === 'string') targets.add(entry);
      else for (const target of Object.values(entry)) targets.add(target);
    }
    const missing = [...targets].filter(
      (target) => target !== undefined && !fs.existsSync(path.join(ROOT, target))
    );
    assert.deepEqual(missing, []);
  });
});

describe('packaging', () => {
  test('the packed tarball installs in an empty project without install scripts and loads', { timeout: 120000 }, async (t) => {
    const dest = tempDir(t, 'mytosis-pack-');
    // The addon is built already; --ignore-scripts keeps `prepare` from
    // rebuilding it.
    const { stdout } = await run(
      'npm',
      ['pack', '--json', '--ignore-scripts', '--pack-destination', dest],
      { cwd: ROOT, maxBuffer: 64 * 1024 * 1024, timeout: 120000 }
    );
    const [packed] = JSON.parse(stdout);
    const files = packed.files.map((f) => f.path);
    for (const file of [
      'mytosis-websocket.linux-x64-gnu.node',
      'binding.js',
      'index.js',
      'index.mjs',
      'server.js',
      'server.mjs',
      'lib/server.js',
      'lib/socket.js',
      'index.d.ts',
      'server.d.ts',
      'browser.js',
      'browser-server.js',
      'lib/browser-socket.js',
      'package.json',
      // The relay (`npx mytosis-websocket`) and its demo page, with the
      // bundle `prepare` builds (npm run build:page).
      'bin/mytosis-websocket.js',
      ...filesIn('bin/relay'),
      'demo/index.html',
      ...filesIn('demo'),
      'demo/dist/mytosis-websocket.js'
    ]) {
      assert.ok(files.includes(file), `the tarball holds ${file}`);
    }
    for (const file of files) {
      assert.doesNotMatch(file, /^(src|target|__test__|node_modules|examples)\//, `the tarball leaves out ${file}`);
    }
    const tarball = path.join(dest, packed.filename);
    assert.ok(fs.existsSync(tarball));

    const project = path.join(dest, 'project');
    fs.mkdirSync(project);
    await run('npm', ['init', '-y'], { cwd: project, timeout: 60000 });
    await run('npm', ['install', tarball, '--no-audit', '--no-fund'], {
      cwd: project,
      timeout: 120000
    });

    const installed = JSON.parse(
      fs.readFileSync(path.join(project, 'node_modules', 'mytosis-websocket', 'package.json'), 'utf8')
    );
    const scripts = installed.scripts ?? {};
    for (const hook of ['preinstall', 'install', 'postinstall']) {
      assert.equal(scripts[hook], undefined, `no ${hook} script (npm would need approval to run it)`);
    }

    const { stdout: loaded } = await run(
      process.execPath,
      [
        '-e',
        `const Socket = require('mytosis-websocket');
         const Server = require('mytosis-websocket/server');
         const s = new Server({ port: 0, host: '127.0.0.1' });
         s.ready.then(async ({ port }) => {
           console.log(typeof Socket, Server === Socket.Server, port > 0);
           await s.close();
         });`
      ],
      { cwd: project, timeout: 30000 }
    );
    assert.equal(loaded.trim(), 'function true true');

    // The relay's command as npm linked it; execFile rejects unless it exits 0.
    const { stdout: usage } = await run(path.join(project, 'node_modules', '.bin', 'mytosis-websocket'), ['--help'], {
      cwd: project,
      timeout: 30000
    });
    assert.match(usage, /^Usage: mytosis-websocket \[options\]/);
  });
});

describe('README', () => {
  test("the errors table lists exactly the codes of index.d.ts's ErrorCode", () => {
    const typings = fs.readFileSync(path.join(ROOT, 'index.d.ts'), 'utf8');
    const union = /export type ErrorCode\s*=([^;]*);/.exec(typings);
    assert.ok(union, 'index.d.ts declares the ErrorCode union');
    const declared = [...union[1].matchAll(/'([^']+)'/g)].map((match) => match[1]);
    assert.ok(declared.length > 0, 'ErrorCode lists codes');

    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const section = /^## Errors$([\s\S]*?)(?=^## |(?![\s\S]))/m.exec(readme);
    assert.ok(section, 'the README has an Errors section');
    const lines = section[1].split('\n');
    const header = lines.findIndex((line) => /^\|\s*code\s*\|/.test(line));
    assert.notEqual(header, -1, 'the Errors section has a table headed "code"');
    const rows = [];
    for (const line of lines.slice(header + 2)) {
      if (!line.startsWith('|')) break;
      const cell = /^\|\s*`([^`]+)`\s*\|/.exec(line);
      assert.ok(cell, `a row of the errors table names one code: ${line}`);
      rows.push(cell[1]);
    }

    assert.deepEqual(
      rows.filter((code, i) => rows.indexOf(code) !== i),
      [],
      'no code has two rows'
    );
    assert.deepEqual(
      declared.filter((code) => !rows.includes(code)),
      [],
      'every ErrorCode has a row in the README'
    );
    assert.deepEqual(
      rows.filter((code) => !declared.includes(code)),
      [],
      'every code in the README is in ErrorCode'
    );
  });
});
