'use strict';

// uWebSockets.js, from the registry package `uwebsockets` (an unofficial
// build: the official one is not published on npm), installed into
// bench/node_modules. JSON echo: JSON.parse of the text, JSON.stringify back;
// binary echoed as is. Fan-out: every client subscribes to one topic and a
// message is published with `ws.publish` (the WebSocket's publish, which
// skips the sender), uWS's natural broadcast. Idle with listeners: `open` and
// `close` keep every connection in a Map by a random UUID, as a Mytosis
// group would.
//
// BENCH_DEFLATE: `shared` is `compression: uWS.SHARED_COMPRESSOR`, `dedicated`
// `uWS.DEDICATED_COMPRESSOR` (a 256 KB window and state per connection);
// both inflate with uWS's default, shared decompressor. uWS compresses a
// message only when `send`/`publish` is asked to (their last argument).
//
// BENCH_TLS_CERT/KEY: `uWS.SSLApp({ cert_file_name, key_file_name })`.
// uSockets sets SO_REUSEADDR and SO_REUSEPORT on its listening socket only
// for a given port (BENCH_PORT), not for port 0: only then can a new
// process listen on the port while the old one's connections are in
// TIME_WAIT (the storm scenario gives the port).

const { randomUUID } = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { scenario, deflate, host, port, tls, MAX_PAYLOAD, listening, serve, fail } = require('./common');

const pkgDir = path.dirname(require.resolve('uwebsockets/package.json'));
const uWS = require('uwebsockets');

function buildInfo() {
  const pkg = require('uwebsockets/package.json');
  const file = `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`;
  let commit = null;
  try {
    commit = fs.readFileSync(path.join(pkgDir, 'source_commit'), 'utf8').trim();
  } catch {}
  return { package: `${pkg.name}@${pkg.version}`, file, sourceCommit: commit };
}

const COMPRESSION = { '': uWS.DISABLED, shared: uWS.SHARED_COMPRESSOR, dedicated: uWS.DEDICATED_COMPRESSOR };
if (!(deflate in COMPRESSION)) fail(new Error(`BENCH_DEFLATE=${deflate}: not one of ${Object.keys(COMPRESSION)}`));
const compress = deflate !== '';

const TOPIC = 'all';
const behavior = {
  compression: COMPRESSION[deflate],
  maxPayloadLength: MAX_PAYLOAD,
  // Never drop a message for backpressure (the default 64 KiB would drop
  // 1 MiB echoes and fan-out bursts).
  maxBackpressure: 1024 * 1024 * 1024,
  idleTimeout: 0
};

// A count for the runner (`stats`), in every scenario.
let connections = 0;
behavior.close = () => {
  connections--;
};

if (scenario === 'fanout') {
  behavior.open = (ws) => {
    connections++;
    ws.subscribe(TOPIC);
  };
  behavior.message = (ws, message) => {
    const obj = JSON.parse(Buffer.from(message).toString());
    ws.publish(TOPIC, JSON.stringify(obj), false, compress);
  };
} else if (scenario === 'idle-listeners') {
  const byId = new Map();
  behavior.open = (ws) => {
    connections++;
    ws.id = randomUUID();
    byId.set(ws.id, ws);
  };
  behavior.close = (ws) => {
    connections--;
    byId.delete(ws.id);
  };
} else {
  behavior.open = () => {
    connections++;
  };
  behavior.message = (ws, message, isBinary) => {
    if (isBinary) {
      ws.send(message, true, compress);
    } else {
      const obj = JSON.parse(Buffer.from(message).toString());
      ws.send(JSON.stringify(obj), false, compress);
    }
  };
}

let listenSocket = null;
(tls ? uWS.SSLApp({ cert_file_name: tls.certFile, key_file_name: tls.keyFile }) : uWS.App())
  .ws('/*', behavior)
  .listen(host, port, (token) => {
    if (!token) fail(new Error(`uWS could not listen on ${host}:${port}`));
    listenSocket = token;
    serve(
      () => {
        if (listenSocket) uWS.us_listen_socket_close(listenSocket);
      },
      () => connections
    );
    listening(uWS.us_socket_local_port(token), { peer: 'uws', uws: buildInfo() });
  });
