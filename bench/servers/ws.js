'use strict';

// The `ws` server, as its README uses it. WS_NO_BUFFER_UTIL=1 turns
// bufferutil off (ws reads it when lib/buffer-util.js loads); the listening
// line says whether it is in use.
//
// JSON echo: JSON.parse of the text, JSON.stringify back; binary echoed as
// is. Fan-out: parse + stringify once into a Buffer, then send it to every
// other open client (the README's broadcast loop).
//
// BENCH_DEFLATE: `no-takeover` is `perMessageDeflate: {
// serverNoContextTakeover: true }` (every message compressed on its own, as
// our broadcasts need), `takeover` is `perMessageDeflate: true` (ws's
// default, a compression context per connection kept across messages).
// Idle with listeners: every connection in a Map by a random UUID.
// BENCH_TLS_CERT/KEY: on an `https.createServer({ cert, key })` (wss://).

const { randomUUID } = require('node:crypto');
const fs = require('node:fs');
const https = require('node:https');

const { scenario, deflate, host, port, tls, MAX_PAYLOAD, listening, serve, fail } = require('./common');

const { wsInfo, wsDir } = require('../lib/ws-info');
const { WebSocketServer, WebSocket } = require(wsDir);

const DEFLATE = { '': false, 'no-takeover': { serverNoContextTakeover: true }, takeover: true };
if (!(deflate in DEFLATE)) fail(new Error(`BENCH_DEFLATE=${deflate}: not one of ${Object.keys(DEFLATE)}`));
const httpsServer = tls
  ? https.createServer({ cert: fs.readFileSync(tls.certFile), key: fs.readFileSync(tls.keyFile) })
  : null;
const wss = new WebSocketServer({
  ...(httpsServer ? { server: httpsServer } : { host, port }),
  perMessageDeflate: DEFLATE[deflate],
  maxPayload: MAX_PAYLOAD
});

if (scenario === 'idle-listeners') {
  const byId = new Map();
  wss.on('connection', (ws) => {
    const id = randomUUID();
    byId.set(id, ws);
    ws.on('close', () => byId.delete(id));
    ws.on('error', () => {});
  });
} else if (scenario === 'fanout') {
  wss.on('connection', (ws) => {
    ws.on('message', (data) => {
      const out = Buffer.from(JSON.stringify(JSON.parse(data)));
      for (const client of wss.clients) {
        if (client !== ws && client.readyState === WebSocket.OPEN) {
          client.send(out, { binary: false });
        }
      }
    });
    ws.on('error', () => {});
  });
} else {
  wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => {
      if (isBinary) {
        ws.send(data, { binary: true });
      } else {
        ws.send(JSON.stringify(JSON.parse(data)));
      }
    });
    ws.on('error', () => {});
  });
}

wss.on('error', fail);
// With `server`, ws re-emits the https server's 'listening'.
wss.on('listening', () => {
  serve(
    () => new Promise((resolve) => {
      wss.close(resolve);
      if (httpsServer) httpsServer.close();
    }),
    () => wss.clients.size
  );
  listening(wss.address().port, { peer: 'ws', ...wsInfo() });
});
if (httpsServer) {
  httpsServer.on('error', fail);
  httpsServer.listen(port, host);
}
