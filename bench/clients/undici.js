'use strict';

// Node's WebSocket: the undici implementation (Node 20's global WebSocket is
// behind --experimental-websocket; Node 22 ships it), from the undici
// devDependency.

const { run } = require('./driver');
const { WebSocket } = require('undici');

run(
  'undici',
  (url, onMessage) =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.onerror = (event) => reject(event.error || new Error('undici WebSocket error'));
      ws.onmessage = (event) => onMessage(JSON.parse(event.data));
      ws.onopen = () => resolve({ send: (obj) => ws.send(JSON.stringify(obj)) });
    }),
  { undici: require('undici/package.json').version }
);
