'use strict';

// mytosis-websocket's Socket: JSON in and out is done by the Socket itself.

const path = require('node:path');
const { run } = require('./driver');

const Socket = require(process.env.BENCH_OURS_DIR || path.join(__dirname, '..', '..'));

run('ours', (url, onMessage) =>
  new Promise((resolve, reject) => {
    const socket = new Socket(url, { maxRetries: 0 });
    socket.on('error', reject);
    socket.messages.forEach((message) => onMessage(message));
    socket.once('open', () => resolve({ send: (obj) => socket.send(obj) }));
  })
);
