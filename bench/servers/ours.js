'use strict';

// mytosis-websocket's Server. JSON echo: `json: true` parses every text
// message in JS and `send` stringifies it again; binary stays binary.
// Fan-out: every message is sent to everybody but its sender, encoded once
// and fanned out in Rust. BENCH_DEFLATE=on: `perMessageDeflate: true` (a
// broadcast is then compressed once for all).

const path = require('node:path');
const { scenario, deflate, host, port, MAX_PAYLOAD, listening, serve, fail } = require('./common');

const { Server } = require(process.env.BENCH_OURS_DIR || path.join(__dirname, '..', '..'));

async function main() {
  const server = new Server({ host, port, json: true, maxPayload: MAX_PAYLOAD, perMessageDeflate: deflate === 'on' });
  server.on('error', (err) => {
    process.stderr.write(`server error: ${err.code || ''} ${err.message}\n`);
  });
  if (scenario === 'fanout') {
    server.messages.forEach((message, connection) => {
      server.send(message, { except: connection });
    });
  } else {
    server.messages.forEach((message, connection) => connection.send(message));
  }
  const address = await server.ready;
  serve(() => server.close(), () => server.size);
  listening(address.port, { peer: 'ours' });
}

main().catch(fail);
