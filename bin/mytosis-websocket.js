#!/usr/bin/env node
'use strict';

// The relay server: flags in, the relay started, its logging wired, and
// a graceful stop on SIGINT and SIGTERM. `mytosis-websocket --help` says
// what it does. Its only line on stdout is where it listens; everything
// else goes to stderr.

const { parseOptions, UsageError, USAGE } = require('./relay/options');
const startRelay = require('./relay/relay');
const { logConnections, logCluster, logSummaries } = require('./relay/log');

const NAME = 'mytosis-websocket';
// A shutdown that has not finished by then is cut short (it closes every
// client within 4 s, so this is a backstop).
const SHUTDOWN_DEADLINE = 5500;

function writeLog(line) {
  process.stderr.write(`${new Date().toISOString()} ${line}\n`);
}

async function main(args) {
  let options;
  try {
    options = parseOptions(args);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`${NAME}: ${err.message}\n\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  if (options.help) {
    process.stdout.write(USAGE);
    return;
  }

  const log = options.quiet ? () => {} : writeLog;
  let relay;
  try {
    relay = await startRelay({ ...options, onError: (err) => log(`http error: ${err.stack}`) });
  } catch (err) {
    if (err.code === 'ERR_INVALID_OPTION') {
      // A --redis URL the Server refused although options.js let it through.
      process.stderr.write(`${NAME}: ${err.message}\n\n${USAGE}`);
      process.exit(2);
    }
    process.stderr.write(`${NAME}: ${err.message}\n`);
    // An http server that failed to listen, or a demo page never bundled
    // (the message says to run `npm run build:page`), leaves nothing to close.
    process.exit(1);
  }
  if (!options.quiet) {
    logConnections(relay.server, log);
    if (options.cluster !== undefined) logCluster(relay.server, options.cluster.channel, log);
    logSummaries(relay.server, log);
  }
  process.stdout.write(`listening on ${relay.url}\n`);

  // `once`: a second Ctrl-C finds no handler and ends the process at once.
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.once(signal, async () => {
      log(`${signal}: closing every connection with 1001`);
      setTimeout(() => {
        process.stderr.write(`${NAME}: shutdown took over ${SHUTDOWN_DEADLINE} ms\n`);
        process.exit(1);
      }, SHUTDOWN_DEADLINE).unref();
      await relay.close();
      process.exit(0);
    });
  }
}

main(process.argv.slice(2));
