'use strict';

// socket.io 4 with @socket.io/redis-adapter (node-redis v4 clients), for
// the cluster scenario: every node on the same Redis, each 'message' event
// of a client broadcast by `io.emit('message', data)`, which the adapter
// publishes to the other nodes. Clients speak Engine.IO v4 over WebSocket
// only (the load generator's `--protocol socketio`). BENCH_CLUSTER_REDIS (a
// redis:// URL) is required; BENCH_CLUSTER_CHANNEL is the adapter's key
// prefix. The listening line waits until both Redis clients are connected.

const http = require('node:http');
const { scenario, host, port, MAX_PAYLOAD, listening, serve, fail } = require('./common');

const { Server } = require('socket.io');
const { createAdapter } = require('@socket.io/redis-adapter');
const { createClient } = require('redis');

async function main() {
  const redis = process.env.BENCH_CLUSTER_REDIS;
  const pubClient = redis ? createClient({ url: redis }) : null;
  const subClient = pubClient ? pubClient.duplicate() : null;
  if (pubClient) {
    pubClient.on('error', (err) => process.stderr.write(`redis error: ${err.message}\n`));
    subClient.on('error', (err) => process.stderr.write(`redis error: ${err.message}\n`));
    await Promise.all([pubClient.connect(), subClient.connect()]);
  }
  const httpServer = http.createServer();
  const io = new Server(httpServer, {
    transports: ['websocket'],
    maxHttpBufferSize: MAX_PAYLOAD,
    perMessageDeflate: false,
    serveClient: false,
    ...(pubClient
      ? { adapter: createAdapter(pubClient, subClient, { key: process.env.BENCH_CLUSTER_CHANNEL || 'socket.io' }) }
      : {})
  });
  io.on('connection', (socket) => {
    if (scenario === 'fanout') {
      socket.on('message', (data) => io.emit('message', data));
    } else {
      socket.on('message', (data) => socket.emit('message', data));
    }
  });
  await new Promise((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(port, host, resolve);
  });
  serve(
    async () => {
      io.close();
      if (pubClient) await Promise.allSettled([pubClient.quit(), subClient.quit()]);
    },
    () => io.engine.clientsCount
  );
  listening(httpServer.address().port, {
    peer: 'socket.io',
    socketio: require('socket.io/package.json').version,
    adapter: pubClient ? require('@socket.io/redis-adapter/package.json').version : null
  });
}

main().catch(fail);
