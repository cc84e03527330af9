'use strict';

// mytosis-websocket's Server. JSON echo: `json: true` parses every text
// message in JS and `send` stringifies it again; binary stays binary.
// Fan-out: every message is sent to everybody but its sender, encoded once
// and fanned out in Rust. BENCH_DEFLATE=on: `perMessageDeflate: true` (a
// broadcast is then compressed once for all). BENCH_CLUSTER_REDIS (a
// redis:// URL) and BENCH_CLUSTER_CHANNEL: the `cluster` option, so that a
// broadcast reaches the clients of every node on the channel (the cluster
// scenario); the listening line waits for the first join. Idle with
// listeners: 'add' and 'remove' keep every connection in a Map by its id,
// as a Mytosis group does. BENCH_TLS_CERT/KEY: `tls: { cert, key }` (PEM).

const fs = require('node:fs');
const path = require('node:path');
const { scenario, deflate, host, port, tls, MAX_PAYLOAD, listening, serve, fail } = require('./common');

const { Server } = require(process.env.BENCH_OURS_DIR || path.join(__dirname, '..', '..'));

async function main() {
  const redis = process.env.BENCH_CLUSTER_REDIS;
  const cluster = redis ? { redis, channel: process.env.BENCH_CLUSTER_CHANNEL || 'mytosis-bench' } : undefined;
  const server = new Server({
    host,
    port,
    json: true,
    maxPayload: MAX_PAYLOAD,
    perMessageDeflate: deflate === 'on',
    ...(tls ? { tls: { cert: fs.readFileSync(tls.certFile, 'utf8'), key: fs.readFileSync(tls.keyFile, 'utf8') } } : {}),
    ...(cluster ? { cluster } : {})
  });
  server.on('error', (err) => {
    process.stderr.write(`server error: ${err.code || ''} ${err.message}\n`);
  });
  const joined = cluster
    ? new Promise((resolve) => {
        server.on('cluster', ({ state }) => {
          if (state === 'up') resolve();
        });
      })
    : null;
  if (scenario === 'idle-listeners') {
    const byId = new Map();
    server.on('add', (connection) => byId.set(connection.id, connection));
    server.on('remove', (connection) => byId.delete(connection.id));
  }
  if (scenario === 'fanout') {
    server.messages.forEach((message, connection) => {
      server.send(message, { except: connection });
    });
  } else {
    server.messages.forEach((message, connection) => connection.send(message));
  }
  const address = await server.ready;
  if (joined) await joined;
  serve(() => server.close(), () => server.size);
  listening(address.port, { peer: 'ours', cluster: Boolean(cluster) });
}

main().catch(fail);
