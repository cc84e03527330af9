'use strict';

// The client under test: the Autobahn client loop with our Socket.
//   node conformance/client.js ws://127.0.0.1:PORT [AGENT]
// asks the fuzzing server for the case count, runs every case with a Socket
// of its own (`maxRetries: 0`: a case's connection is closed by the server,
// and a reconnect would run the case again) that echoes every message as it
// came, then asks for the reports, which ends the fuzzing server's run.

const path = require('node:path');
const Socket = require(path.join(__dirname, '..'));

const [base, agent = 'mytosis-websocket'] = process.argv.slice(2);
// Compression with no threshold: every echo of a compressed message is
// compressed (the suite's 12.* and 13.* cases).
const options = { json: false, maxRetries: 0, heartbeatInterval: 0, perMessageDeflate: { threshold: 0 } };

// Opens one Socket, calls `onMessage(message, socket)` for every message and
// resolves once the Socket has stopped for good.
function connect(url, onMessage) {
  return new Promise((resolve) => {
    const socket = new Socket(url, options);
    socket.on('error', () => {}); // a failing case ends with 'close' all the same
    socket.messages.forEach((message) => onMessage(message, socket));
    socket.on('close', ({ willReconnect }) => {
      if (!willReconnect) resolve();
    });
  });
}

async function main() {
  let count = NaN;
  await connect(`${base}/getCaseCount`, (message) => {
    count = Number(message);
  });
  if (!Number.isInteger(count)) throw new Error('the fuzzing server gave no case count');
  const who = encodeURIComponent(agent);
  for (let i = 1; i <= count; i++) {
    await connect(`${base}/runCase?case=${i}&agent=${who}`, (message, socket) => socket.send(message));
  }
  await connect(`${base}/updateReports?agent=${who}`, () => {});
  console.log(`ran ${count} cases`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
