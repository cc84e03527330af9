'use strict';

// The `ws` client (WS_NO_BUFFER_UTIL=1 for the run without bufferutil).

const { run } = require('./driver');
const { wsInfo, wsDir } = require('../lib/ws-info');

const WebSocket = require(wsDir);

run(
  'ws',
  (url, onMessage) =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { perMessageDeflate: false });
      ws.on('error', reject);
      ws.on('message', (data) => onMessage(JSON.parse(data)));
      ws.once('open', () => resolve({ send: (obj) => ws.send(JSON.stringify(obj)) }));
    }),
  wsInfo()
);
