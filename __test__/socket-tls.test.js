'use strict';

// The Node Socket over wss:// (rustls): the `tls` option. A self-signed
// certificate is made with openssl for each run and
// served by an https.Server carrying a `ws` server.

const assert = require('node:assert/strict');
const { execFileSync, spawn } = require('node:child_process');
const { once } = require('node:events');
const fs = require('node:fs');
const https = require('node:https');
const os = require('node:os');
const path = require('node:path');
const { before, after, describe, test } = require('node:test');

const { WebSocketServer } = require('ws');

const { Socket } = require('..');
const { defer, until, within } = require('./helpers');
const { tcpRelay, tlsRecordTypes } = require('./server-kit');
const { next, lifecycle, socket, openSocket, wsServer } = require('./socket-helpers');

const TIMEOUT = { timeout: 10000 };
const MAIN = path.join(__dirname, '..');

let dir = null;
let skip = false;
const certs = {};

/**
 * A self-signed certificate (as `openssl req -x509` makes it: CA:TRUE) for
 * `altNames` (subjectAltName entries).
 */
function makeCert(name, cn, altNames) {
  const key = path.join(dir, `${name}-key.pem`);
  const cert = path.join(dir, `${name}-cert.pem`);
  execFileSync(
    'openssl',
    [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes',
      '-keyout', key, '-out', cert, '-days', '1',
      '-subj', `/CN=${cn}`, '-addext', `subjectAltName=${altNames}`
    ],
    { stdio: 'ignore' }
  );
  certs[name] = { key: fs.readFileSync(key, 'utf8'), cert: fs.readFileSync(cert, 'utf8'), certPath: cert };
}

/**
 * A server certificate (CA:FALSE, serverAuth) for `altNames`, signed by the
 * certificate `caName`.
 */
function makeLeaf(name, cn, altNames, caName) {
  const key = path.join(dir, `${name}-key.pem`);
  const csr = path.join(dir, `${name}.csr`);
  const cert = path.join(dir, `${name}-cert.pem`);
  const ext = path.join(dir, `${name}.ext`);
  fs.writeFileSync(
    ext,
    `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=${altNames}\n`
  );
  const quiet = { stdio: 'ignore' };
  execFileSync('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${cn}`], quiet);
  execFileSync(
    'openssl',
    [
      'x509', '-req', '-in', csr, '-CA', path.join(dir, `${caName}-cert.pem`),
      '-CAkey', path.join(dir, `${caName}-key.pem`), '-CAcreateserial',
      '-out', cert, '-days', '1', '-extfile', ext
    ],
    quiet
  );
  certs[name] = { key: fs.readFileSync(key, 'utf8'), cert: fs.readFileSync(cert, 'utf8'), certPath: cert };
}

before(() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
  } catch {
    skip = 'openssl is not installed: the wss:// tests need it to make a certificate';
    return;
  }
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mytosis-wss-'));
  makeCert('local', 'localhost', 'DNS:localhost,IP:127.0.0.1');
  // Another self-signed certificate, for a name this test never connects to.
  makeCert('other', 'other.test', 'DNS:other.test');
  // A private CA and server certificates it signed.
  makeCert('ca', 'mytosis test CA', 'DNS:ca.invalid');
  makeLeaf('leaf', 'localhost', 'DNS:localhost,IP:127.0.0.1', 'ca');
  makeLeaf('otherLeaf', 'other.test', 'DNS:other.test', 'ca');
});

after(() => {
  if (dir !== null) fs.rmSync(dir, { recursive: true, force: true });
});

/**
 * An https.Server with a `ws` server on 127.0.0.1, serving certificate
 * `name`. `conns` holds the ws connections (`received` texts, `req`).
 */
async function wssServer(t, name = 'local', onConnection = () => {}, tlsOptions = {}) {
  const server = https.createServer({ cert: certs[name].cert, key: certs[name].key, ...tlsOptions });
  const wss = new WebSocketServer({ server });
  const conns = [];
  const tlsErrors = [];
  server.on('tlsClientError', (err) => tlsErrors.push(err));
  wss.on('connection', (ws, req) => {
    ws.req = req;
    ws.received = [];
    ws.on('message', (data) => ws.received.push(data.toString()));
    conns.push(ws);
    onConnection(ws);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  defer(t, async () => {
    for (const ws of wss.clients) ws.terminate();
    wss.close();
    server.closeAllConnections?.();
    await new Promise((resolve) => server.close(resolve));
  });
  const { port } = server.address();
  return {
    conns,
    tlsErrors,
    port,
    url: `wss://127.0.0.1:${port}`,
    localhostUrl: `wss://localhost:${port}`,
    connection: (i = 0) => until(() => conns[i], `wss connection #${i}`)
  };
}

/** JSON both ways over an open socket and its server connection. */
async function exchange(s, ws) {
  const got = [];
  const subscription = s.messages.forEach((m) => got.push(m));
  try {
    assert.equal(s.send({ up: [1, 'two'], secure: true }), true);
    await until(() => ws.received.length === 1, 'the message at the server');
    assert.deepEqual(JSON.parse(ws.received[0]), { up: [1, 'two'], secure: true });
    ws.send(JSON.stringify({ down: { n: 3 } }));
    await until(() => got.length === 1, 'the message at the socket');
    assert.deepEqual(got, [{ down: { n: 3 } }]);
  } finally {
    subscription.dispose();
  }
}

describe('Socket over wss:// (rustls)', () => {
  test('default options: a self-signed certificate is not trusted: ERR_TLS, then a retry', TIMEOUT, async (t) => {
    if (skip) return t.skip(skip);
    const backend = await wssServer(t);
    const s = socket(t, backend.url, { jitter: 0, minReconnectionDelay: 50 });
    const events = lifecycle(s);
    await until(() => events.count('reconnecting') >= 2, 'two retries', 3000);
    assert.deepEqual(events.names().slice(0, 4), ['error', 'reconnecting', 'error', 'reconnecting']);
    const err = events.list[0].error;
    assert.equal(err.code, 'ERR_TLS');
    assert.match(err.message, /certificate|UnknownIssuer|issuer/i);
    assert.deepEqual(events.list[1].value, { attempt: 1, delay: 50 });
    assert.equal(events.count('open'), 0);
    assert.equal(backend.conns.length, 0);
  });

  for (const [label, ca] of [
    ['a PEM string', () => certs.local.cert],
    ['a Buffer', () => Buffer.from(certs.local.cert)],
    ['an array of PEMs', () => [certs.other.cert, certs.local.cert]]
  ]) {
    test(`tls.ca as ${label} trusts a self-signed server certificate: the socket connects and JSON goes both ways`, TIMEOUT, async (t) => {
      if (skip) return t.skip(skip);
      const backend = await wssServer(t);
      const s = await openSocket(t, backend.url, { tls: { ca: ca() } });
      assert.equal(s.readyState, Socket.OPEN);
      await exchange(s, await backend.connection());
    });
  }

  test('tls.ca works with a host name in the URL (wss://localhost)', TIMEOUT, async (t) => {
    if (skip) return t.skip(skip);
    const backend = await wssServer(t);
    const s = await openSocket(t, backend.localhostUrl, { tls: { ca: certs.local.cert } });
    await exchange(s, await backend.connection());
  });

  test('tls.ca holding a private CA trusts the server certificates it signed', TIMEOUT, async (t) => {
    if (skip) return t.skip(skip);
    const backend = await wssServer(t, 'leaf');
    const s = await openSocket(t, backend.url, { tls: { ca: certs.ca.cert } });
    await exchange(s, await backend.connection());
  });

  test('tls.ca holding a private CA: a certificate it signed for another name is refused with ERR_TLS', TIMEOUT, async (t) => {
    if (skip) return t.skip(skip);
    const backend = await wssServer(t, 'otherLeaf');
    const s = socket(t, backend.url, { tls: { ca: certs.ca.cert }, maxRetries: 0 });
    const events = lifecycle(s);
    await until(() => events.list.length > 0, "'open' or 'error'", 3000);
    assert.equal(events.list[0].name, 'error', `refused, not ${events.list[0].name}`);
    assert.equal(events.list[0].value, 'ERR_TLS');
    assert.match(events.list[0].error.message, /name|NotValidForName/i);
    assert.equal(backend.conns.length, 0);
  });

  test('tls.ca holding a self-signed certificate does not make it acceptable for another name: ERR_TLS (as Node checks the host name)', TIMEOUT, async (t) => {
    if (skip) return t.skip(skip);
    // The server presents the self-signed certificate for other.test, at
    // 127.0.0.1; Node's https with the same ca fails with
    // ERR_TLS_CERT_ALTNAME_INVALID.
    const backend = await wssServer(t, 'other');
    const s = socket(t, backend.url, { tls: { ca: certs.other.cert }, maxRetries: 0 });
    const events = lifecycle(s);
    await until(() => events.list.length > 0, "'open' or 'error'", 3000);
    assert.equal(events.list[0].name, 'error', `refused, not ${events.list[0].name}`);
    assert.equal(events.list[0].value, 'ERR_TLS');
    assert.equal(backend.conns.length, 0);
  });

  test('tls.ca with an unrelated certificate does not trust the server: ERR_TLS', TIMEOUT, async (t) => {
    if (skip) return t.skip(skip);
    const backend = await wssServer(t);
    const s = socket(t, backend.url, { tls: { ca: certs.other.cert }, maxRetries: 0 });
    assert.equal((await next(s, 'error')).code, 'ERR_TLS');
    assert.equal(backend.conns.length, 0);
  });

  test('tls.rejectUnauthorized: false accepts a self-signed certificate: the socket connects and JSON goes both ways', TIMEOUT, async (t) => {
    if (skip) return t.skip(skip);
    const backend = await wssServer(t, 'other'); // not even for this name
    const s = await openSocket(t, backend.url, { tls: { rejectUnauthorized: false } });
    await exchange(s, await backend.connection());
  });

  test('over wss://, offline messages survive a reconnect and headers go out in every handshake', TIMEOUT, async (t) => {
    if (skip) return t.skip(skip);
    const backend = await wssServer(t);
    const s = await openSocket(t, backend.url, {
      tls: { ca: certs.local.cert },
      headers: { Authorization: 'Bearer x', 'X-Custom': 'over tls' },
      jitter: 0,
      minReconnectionDelay: 50
    });
    s.on('close', (e) => {
      if (e.willReconnect) s.send('queued');
    });
    const reopened = next(s, 'open');
    (await backend.connection(0)).close(4000);
    await reopened;
    const ws = await backend.connection(1);
    await until(() => ws.received.length === 1);
    assert.deepEqual(ws.received, ['"queued"']);
    for (const conn of backend.conns) {
      assert.equal(conn.req.headers.authorization, 'Bearer x');
      assert.equal(conn.req.headers['x-custom'], 'over tls');
    }
  });

  test('after a clean close the Socket sends TLS close_notify before closing TCP', TIMEOUT, async (t) => {
    if (skip) return t.skip(skip);
    // TLS 1.2, where a record's type (an alert or data) is not encrypted.
    const backend = await wssServer(t, 'local', () => {}, { maxVersion: 'TLSv1.2' });
    const relay = await tcpRelay(t, backend.port);
    const s = await openSocket(t, `wss://127.0.0.1:${relay.port}`, { tls: { ca: certs.local.cert } });
    s.close(4000, 'done');
    assert.deepEqual((await next(s, 'close')).code, 4000);
    await within(relay.clientEnded, 5000, 'the Socket closing TCP');
    const types = tlsRecordTypes(relay.fromClient());
    assert.equal(types.filter((type) => type === 21).length, 1, `one alert among the records ${types}`);
    assert.equal(types.at(-1), 21, `the alert comes last, after the close frame: ${types}`);
  });

  test('wss:// to a server that does not speak TLS fails with ERR_TLS', TIMEOUT, async (t) => {
    if (skip) return t.skip(skip);
    const plain = await wsServer(t);
    const s = socket(t, `wss://127.0.0.1:${plain.port}`, { maxRetries: 0, tls: { rejectUnauthorized: false } });
    assert.equal((await next(s, 'error')).code, 'ERR_TLS');
  });

  /**
   * Run a child that opens a Socket to `url` with default options and
   * NODE_EXTRA_CA_CERTS set to `caPath` ('' for none): one JSON line for
   * 'open' or the error code.
   */
  function childWithExtraCa(url, caPath) {
    const code = `
      const { Socket } = require(${JSON.stringify(MAIN)});
      const s = new Socket(process.argv[1], { maxRetries: 0 });
      s.on('error', (err) => console.log(JSON.stringify({ error: err.code, message: err.message })));
      s.on('open', () => {
        console.log(JSON.stringify({ open: true }));
        s.send({ from: 'child' });
        s.close();
      });
    `;
    return new Promise((resolve) => {
      const child = spawn(process.execPath, ['-e', code, url], {
        env: { ...process.env, NODE_EXTRA_CA_CERTS: caPath },
        stdio: ['ignore', 'pipe', 'inherit']
      });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      const timer = setTimeout(() => child.kill('SIGKILL'), 8000);
      child.on('close', (exitCode) => {
        clearTimeout(timer);
        resolve({ exitCode, lines: out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) });
      });
    });
  }

  test('NODE_EXTRA_CA_CERTS naming a private CA is trusted (in a child process started with it)', TIMEOUT, async (t) => {
    if (skip) return t.skip(skip);
    const backend = await wssServer(t, 'leaf');
    const [trusted, untrusted] = await Promise.all([
      childWithExtraCa(backend.url, certs.ca.certPath),
      childWithExtraCa(backend.url, '')
    ]);
    assert.deepEqual(trusted.lines, [{ open: true }]);
    assert.equal(trusted.exitCode, 0);
    assert.equal(untrusted.lines.length, 1);
    assert.equal(untrusted.lines[0].error, 'ERR_TLS');
    await until(() => backend.conns.some((ws) => ws.received.includes('{"from":"child"}')), "the child's message");
  });

  test('NODE_EXTRA_CA_CERTS naming a self-signed server certificate is trusted, as Node trusts it (and as tls.ca does)', TIMEOUT, async (t) => {
    if (skip) return t.skip(skip);
    const backend = await wssServer(t, 'local');
    const trusted = await childWithExtraCa(backend.url, certs.local.certPath);
    assert.deepEqual(trusted.lines, [{ open: true }]);
    assert.equal(trusted.exitCode, 0);
  });
});
