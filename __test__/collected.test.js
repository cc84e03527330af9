'use strict';

// What the user drops is collected: the addon keeps each Server's and
// Socket's event callback alive, and that callback must not keep the
// Server or Socket itself (lib/batch.js).

const { test } = require('node:test');
const v8 = require('node:v8');
const vm = require('node:vm');

const { Server, Socket } = require('..');
const { startServer, until, once } = require('./helpers');

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');

/** Collects until `collected()` holds, giving finalizers their turns. */
async function collectUntil(collected, what) {
  await until(
    () => {
      gc();
      return collected();
    },
    what,
    10000,
    20
  );
}

test('closed Sockets are collected once the user drops them', async (t) => {
  const server = await startServer(t, { json: false });
  const url = `ws://127.0.0.1:${server.address().port}`;
  let finalized = 0;
  const registry = new FinalizationRegistry(() => finalized++);
  const COUNT = 20;
  await Promise.all(
    Array.from({ length: COUNT }, async () => {
      const socket = new Socket(url, { json: false });
      registry.register(socket, null);
      socket.messages.forEach(() => {});
      await once(socket, 'open');
      socket.send('hello');
      socket.close();
      await once(socket, 'close');
    })
  );
  await collectUntil(() => finalized === COUNT, `all ${COUNT} closed Sockets to be collected`);
});

test('a closed Server is collected once the user drops it', async () => {
  let finalized = false;
  const registry = new FinalizationRegistry(() => (finalized = true));
  await (async () => {
    const server = new Server({ port: 0, host: '127.0.0.1' });
    registry.register(server, null);
    server.messages.forEach(() => {});
    server.on('add', () => {});
    await server.ready;
    await server.close();
  })();
  await collectUntil(() => finalized, 'the closed Server to be collected');
});
