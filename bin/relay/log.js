'use strict';

const SUMMARY_INTERVAL = 10000;

/**
 * Log each connection as it opens and ends, and the Server's errors (a
 * bug of ours on one connection, accepting failing for want of file
 * descriptors), one line each.
 *
 * @param {Server} server The relay's Server
 * @param {Function} writeLine Writes one line to the log
 */
function logConnections(server, writeLine) {
  server.on('add', (connection) => {
    writeLine(`+ ${connection.id} from ${peerOf(connection)} (${server.size} open)`);
  });
  server.on('remove', (connection, { code }) => {
    writeLine(`- ${connection.id} from ${peerOf(connection)} closed with ${code} (${server.size} open)`);
  });
  server.on('error', (err) => writeLine(`error: ${err.code ?? ''} ${err.message}`));
}

/**
 * Log a summary of `server.stats()` every 10 s.
 *
 * @param {Server} server The relay's Server
 * @param {Function} writeLine Writes one line to the log
 */
function logSummaries(server, writeLine) {
  const timer = setInterval(() => {
    const { connections, accepted, messagesIn, bytesIn, messagesOut, bytesOut } = server.stats();
    writeLine(
      `summary: ${connections} open, ${accepted} accepted; ` +
        `in ${messagesIn} messages (${formatBytes(bytesIn)}), out ${messagesOut} messages (${formatBytes(bytesOut)})`
    );
  }, SUMMARY_INTERVAL);
  // The summaries alone never keep the relay running.
  timer.unref();
}

function peerOf(connection) {
  const address = connection.remoteAddress;
  return `${address.includes(':') ? `[${address}]` : address}:${connection.remotePort}`;
}

function formatBytes(bytes) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

module.exports = { logConnections, logSummaries };
