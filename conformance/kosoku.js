'use strict';

// kosoku (PyPI), the Autobahn|Testsuite runner, in a virtualenv of this
// directory: conformance/.venv (git-ignored), made on first use with
// `python3 -m venv` and `pip install kosoku==VERSION`.

const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const VERSION = '0.1.0';
const VENV = path.join(__dirname, '.venv');
const BIN = path.join(VENV, 'bin', 'kosoku');
const PYTHON = path.join(VENV, 'bin', 'python');

function installedVersion() {
  if (!fs.existsSync(BIN)) return null;
  const r = spawnSync(PYTHON, ['-c', 'import importlib.metadata as m; print(m.version("kosoku"))'], {
    encoding: 'utf8'
  });
  return r.status === 0 ? r.stdout.trim() : null;
}

/** The path of the kosoku executable, installing it first when needed. */
function ensure() {
  if (installedVersion() === VERSION) return BIN;
  // `python3` may be a pyenv shim that cannot make a venv; Debian's is the fallback.
  for (const python of ['python3', '/usr/bin/python3']) {
    fs.rmSync(VENV, { recursive: true, force: true });
    console.error(`conformance: installing kosoku ${VERSION} into ${path.relative(process.cwd(), VENV)} (${python})`);
    const venv = spawnSync(python, ['-m', 'venv', VENV], { stdio: 'inherit' });
    if (venv.status !== 0) continue;
    const pip = spawnSync(
      path.join(VENV, 'bin', 'pip'),
      ['install', '--quiet', '--disable-pip-version-check', `kosoku==${VERSION}`],
      { stdio: 'inherit' }
    );
    if (pip.status === 0 && installedVersion() === VERSION) return BIN;
  }
  fs.rmSync(VENV, { recursive: true, force: true });
  throw new Error(
    `could not install kosoku ${VERSION}: needs python3 (3.10 or newer) with venv ` +
      '(Debian: apt-get install python3-venv) and access to PyPI'
  );
}

/**
 * kosoku's command line for a selection. kosoku 0.1.0 reads no config file
 * (`--spec` is not implemented), so the selection is its -i/-x flags.
 */
function args(mode, { cases, exclude, parallel, outdir, address }) {
  const out = ['-m', mode, '-o', outdir];
  for (const c of cases) out.push('-i', c);
  for (const c of exclude) out.push('-x', c);
  if (parallel > 1 && mode === 'fuzzingclient') out.push('-p', String(parallel));
  out.push(address);
  return out;
}

module.exports = { VERSION, ensure, args };
