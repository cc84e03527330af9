'use strict';

// The load generator of bench/soak.js, in a process of its own:
//   node bench/soak-load.js URL CLIENTS
// keeps CLIENTS clients connected to URL, a fifth of them our Socket and the
// rest `ws`. Each one lives 2 to 10 s: it sends a small JSON message, waits
// for its echo, pauses 100-1000 ms and sends the next, then closes, and a
// new client takes its slot. Counts go to the parent once a second.

const path = require('node:path');
const WebSocket = require('ws');

const Socket = require(path.join(__dirname, '..'));

const [url, clientsArg] = process.argv.slice(2);
const CLIENTS = Number(clientsArg) || 500;
const SOCKETS = Math.round(CLIENTS / 5);

const counts = { opened: 0, closed: 0, failed: 0, echoes: 0, ticks: 0 };
let stopping = false;
const live = new Set();

const between = (min, max) => min + Math.random() * (max - min);
const payload = (seq) => ({ type: 'ping', seq, t: Date.now(), pad: 'x'.repeat(Math.floor(between(10, 400))) });

// One client's life, over any transport: `send`, `close` and the callbacks.
function life(client, onEnd) {
  let seq = 0;
  let pause = null;
  const lifetime = setTimeout(() => client.close(), between(2000, 10000));
  const next = () => {
    pause = null;
    client.send(payload(++seq));
  };
  return {
    open() {
      counts.opened++;
      next();
    },
    message(message) {
      if (message && message.type === 'tick') {
        counts.ticks++;
      } else if (message && message.type === 'ping') {
        counts.echoes++;
        pause = setTimeout(next, between(100, 1000));
      }
    },
    end(failed) {
      clearTimeout(lifetime);
      if (pause) clearTimeout(pause);
      if (failed) counts.failed++;
      else counts.closed++;
      onEnd(failed);
    }
  };
}

function startWs(slot) {
  const ws = new WebSocket(url);
  let opened = false;
  const client = {
    send: (obj) => ws.readyState === WebSocket.OPEN && ws.send(JSON.stringify(obj)),
    close: () => ws.close(1000)
  };
  const l = life(client, (failed) => replace(slot, ws, failed));
  live.add(ws);
  ws.on('open', () => {
    opened = true;
    l.open();
  });
  ws.on('message', (data) => l.message(JSON.parse(data)));
  ws.on('error', () => {});
  ws.on('close', () => l.end(!opened));
}

function startSocket(slot) {
  const socket = new Socket(url, { maxRetries: 0 });
  let opened = false;
  const client = { send: (obj) => !socket.offline && socket.send(obj), close: () => socket.close(1000) };
  const l = life(client, (failed) => replace(slot, socket, failed));
  live.add(socket);
  socket.on('error', () => {});
  socket.on('open', () => {
    opened = true;
    l.open();
  });
  socket.messages.forEach((message) => l.message(message));
  socket.on('close', ({ willReconnect }) => {
    if (!willReconnect) l.end(!opened);
  });
}

function start(slot) {
  if (slot < SOCKETS) startSocket(slot);
  else startWs(slot);
}

function replace(slot, old, failed) {
  live.delete(old);
  if (stopping) {
    if (live.size === 0) process.exit(0);
    return;
  }
  // A failed client is replaced after a short pause, not in a tight loop.
  if (failed) setTimeout(() => start(slot), 100);
  else setImmediate(() => start(slot));
}

const report = setInterval(() => process.send({ type: 'counts', counts }), 1000);

process.on('message', (m) => {
  if (m.type !== 'stop') return;
  stopping = true;
  clearInterval(report);
  process.send({ type: 'counts', counts });
  if (live.size === 0) process.exit(0);
  for (const client of live) client.close(1000);
  setTimeout(() => process.exit(0), 5000).unref();
});
process.on('disconnect', () => process.exit(0));

for (let slot = 0; slot < CLIENTS; slot++) start(slot);
