'use strict';

// The server under test: our Server on 127.0.0.1 (port 0), echoing every
// message as it came, text as text and binary as binary (`json: false`
// hands JS text as strings and sends strings as text). No heartbeat, so
// that no ping of ours lands in a case's frames. Compression with no
// threshold, so that every echo of a compressed message is compressed (the
// suite's 12.* and 13.* cases). Prints its URL on stdout.

const path = require('node:path');
const { Server } = require(path.join(__dirname, '..'));

const server = new Server({
  port: 0,
  host: '127.0.0.1',
  json: false,
  heartbeatInterval: 0,
  perMessageDeflate: { threshold: 0 }
});
server.on('error', (err) => console.error(`server error: ${err.code || ''} ${err.message}`));
server.messages.forEach((message, connection) => connection.send(message));
server.ready.then(({ port }) => console.log(`ws://127.0.0.1:${port}/`));

process.on('SIGTERM', () => server.close({ timeout: 1000 }).then(() => process.exit(0)));
