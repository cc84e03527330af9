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
 * Log the relay's joins to the other relays on Redis (--redis), one line
 * per 'cluster' event: up (with what was lost while it was down), and
 * down. Why it went down is the 'error' line (ERR_CLUSTER) just before.
 * Never the Redis URL: it may carry a password.
 *
 * @param {Server} server The relay's Server, with the `cluster` option
 * @param {String} channel Its Redis channel
 * @param {Function} writeLine Writes one line to the log
 */
function logCluster(server, channel, writeLine) {
  server.on('cluster', ({ state, lost }) => writeLine(formatCluster(channel, state, lost)));
}

/** The log line of one 'cluster' event. */
function formatCluster(channel, state, lost) {
  if (state === 'down') {
    return `cluster down: channel ${JSON.stringify(channel)} left, messages reach this relay's clients only until Redis is back`;
  }
  const losses = lost > 0 ? `; ${lost} message${lost === 1 ? '' : 's'} relayed meanwhile reached no other relay` : '';
  return `cluster up: joined channel ${JSON.stringify(channel)}${losses}`;
}

/**
 * Log a summary every 10 s: the connections, and the messages and bytes
 * per second each way since the previous summary (the first one: since
 * the call).
 *
 * @param {Server} server The relay's Server
 * @param {Function} writeLine Writes one line to the log
 */
function logSummaries(server, writeLine) {
  let previous = server.stats();
  let since = performance.now();
  const timer = setInterval(() => {
    const current = server.stats();
    const now = performance.now();
    writeLine(formatSummary(previous, current, (now - since) / 1000));
    previous = current;
    since = now;
  }, SUMMARY_INTERVAL);
  // The summaries alone never keep the relay running.
  timer.unref();
}

/**
 * One summary line from two readings of `server.stats()` taken `seconds`
 * apart: the connections open now and accepted meanwhile, the rates of
 * messages and payload bytes received ("in") and sent ("out") over those
 * seconds, and the totals since the start.
 *
 * @param {Object} previous The earlier `server.stats()`
 * @param {Object} current The later `server.stats()`
 * @param {Number} seconds The time between the two; rates are 0 unless it is above 0
 * @return {String} The line, without a line break
 */
function formatSummary(previous, current, seconds) {
  const rate = (field) => (seconds > 0 ? Math.max(0, current[field] - previous[field]) / seconds : 0);
  const newConnections = Math.max(0, current.accepted - previous.accepted);
  return (
    `summary: connections ${current.connections} open, ${newConnections} new in ${formatSeconds(seconds)}; ` +
    `in ${formatRate(rate('messagesIn'))} messages/s, ${formatBytes(rate('bytesIn'))}/s; ` +
    `out ${formatRate(rate('messagesOut'))} messages/s, ${formatBytes(rate('bytesOut'))}/s ` +
    `(since the start: ${current.accepted} accepted, ` +
    `in ${current.messagesIn} messages, ${formatBytes(current.bytesIn)}, ` +
    `out ${current.messagesOut} messages, ${formatBytes(current.bytesOut)})`
  );
}

/** A rate with one decimal, without a trailing `.0`. */
function formatRate(value) {
  return String(Number(value.toFixed(1)));
}

function formatSeconds(seconds) {
  return `${formatRate(seconds)} s`;
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
  return unit === 0 ? `${Math.round(value)} B` : `${value.toFixed(1)} ${units[unit]}`;
}

module.exports = { logConnections, logCluster, logSummaries, formatSummary, formatCluster };
