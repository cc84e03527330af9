'use strict';

const { monitorEventLoopDelay } = require('node:perf_hooks');

// The Prometheus text exposition format, version 0.0.4.
const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
const PREFIX = 'mytosis_websocket_';

// One entry per metric taken from `server.stats()`: its name (without the
// prefix), type, help text and the field it reads.
const STATS_METRICS = [
  ['connections', 'gauge', 'WebSocket connections open now.', 'connections'],
  ['connections_accepted_total', 'counter', 'WebSocket connections accepted since the relay started.', 'accepted'],
  ['messages_received_total', 'counter', 'Messages received from clients.', 'messagesIn'],
  ['received_bytes_total', 'counter', 'Payload bytes of the messages received from clients.', 'bytesIn'],
  ['messages_sent_total', 'counter', 'Messages queued to clients, once per receiving connection.', 'messagesOut'],
  ['sent_bytes_total', 'counter', 'Payload bytes of the messages queued to clients.', 'bytesOut'],
  [
    'invalid_messages_total',
    'counter',
    'Messages refused: connections closed for a protocol violation (1002), text that is not UTF-8 (1007) or a message over --max-payload (1009).',
    'invalid'
  ],
  ['paused_connections', 'gauge', 'Connections open now that are not being read (held back by the receive buffers).', 'paused'],
  [
    'deflate_calls_total',
    'counter',
    'Messages run through deflate to be sent: a broadcast counts once per window size its receivers agreed on, not once per receiver.',
    'deflateCalls'
  ]
];

// With --redis only: the cluster's counters of `server.stats()`.
const CLUSTER_METRICS = [
  ['cluster_published_total', 'counter', 'Messages published to Redis for the other relays (--redis).', 'clusterPublished'],
  [
    'cluster_received_total',
    'counter',
    'Messages of other relays received from Redis and sent to this relay\'s clients.',
    'clusterReceived'
  ],
  [
    'cluster_lost_total',
    'counter',
    'Messages of this relay that reached no other relay because Redis was unreachable.',
    'clusterLost'
  ],
  ['cluster_missed_total', 'counter', 'Messages of other relays that never arrived here (gaps in their numbering).', 'clusterMissed']
];

// The event loop delay is reported as these quantiles of a summary.
const QUANTILES = [0.5, 0.9, 0.99];
// How often the event loop is sampled, in ms.
const LOOP_RESOLUTION = 20;

/**
 * The relay's /metrics: the counters of `server.stats()` and the delay of
 * the event loop, which every relayed message crosses; with --redis, the
 * cluster's counters and whether it is joined.
 */
class Metrics {
  static contentType = CONTENT_TYPE;

  // Samples the event loop from the relay's start; its timer does not keep
  // the process alive.
  #loopDelay = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION });
  #cluster;
  #clusterUp = false;

  /**
   * @param {Object} [options] `{ cluster }`: whether the relay joins others
   *     on Redis (--redis); then `setClusterState` tells its 'cluster' events
   */
  constructor({ cluster = false } = {}) {
    this.#cluster = cluster;
    this.#loopDelay.enable();
  }

  /** The state of the relay's last 'cluster' event: 'up' or 'down'. */
  setClusterState(state) {
    this.#clusterUp = state === 'up';
  }

  /**
   * The metrics in the text format.
   *
   * @param {Object} stats What `server.stats()` returned
   * @return {String} The exposition, ending with a line break
   */
  render(stats) {
    const lines = [];
    for (const [name, type, help, field] of STATS_METRICS) {
      family(lines, name, type, help, [['', {}, stats[field]]]);
    }
    const closes = Object.entries(stats.closes).map(([code, count]) => ['', { code }, count]);
    family(lines, 'closes_total', 'counter', 'Connections that ended, by close code.', closes);
    if (this.#cluster) {
      family(lines, 'cluster_up', 'gauge', 'Whether this relay is joined to the others on Redis now (1) or not (0).', [
        ['', {}, this.#clusterUp ? 1 : 0]
      ]);
      for (const [name, type, help, field] of CLUSTER_METRICS) {
        family(lines, name, type, help, [['', {}, stats[field]]]);
      }
    }
    this.#renderLoopDelay(lines);
    return `${lines.join('\n')}\n`;
  }

  stop() {
    this.#loopDelay.disable();
  }

  #renderLoopDelay(lines) {
    const delay = this.#loopDelay;
    // The histogram holds the nanoseconds between the sampling timer's
    // runs: the delay is what exceeds the timer's period. Before the
    // first sample its percentiles are 0 and its mean NaN.
    const seconds = (nanoseconds) =>
      Number.isFinite(nanoseconds) ? Math.max(0, nanoseconds / 1e9 - LOOP_RESOLUTION / 1000) : 0;
    const samples = QUANTILES.map((q) => ['', { quantile: String(q) }, seconds(delay.percentile(q * 100))]);
    samples.push(['_sum', {}, seconds(delay.mean) * delay.count], ['_count', {}, delay.count]);
    family(
      lines,
      'event_loop_delay_seconds',
      'summary',
      `Delay of the event loop, sampled every ${LOOP_RESOLUTION} ms since the relay started.`,
      samples
    );
    family(lines, 'event_loop_delay_max_seconds', 'gauge', 'Longest event loop delay seen since the relay started.', [
      ['', {}, seconds(delay.max)]
    ]);
  }
}

/**
 * Append one metric family: its HELP and TYPE lines, then its samples
 * `[suffix, labels, value]`.
 */
function family(lines, name, type, help, samples) {
  const fullName = PREFIX + name;
  lines.push(`# HELP ${fullName} ${escapeHelp(help)}`, `# TYPE ${fullName} ${type}`);
  for (const [suffix, labels, value] of samples) {
    const pairs = Object.entries(labels).map(([label, text]) => `${label}="${escapeLabel(text)}"`);
    const labelText = pairs.length > 0 ? `{${pairs.join(',')}}` : '';
    lines.push(`${fullName}${suffix}${labelText} ${value}`);
  }
}

function escapeHelp(text) {
  return text.replaceAll('\\', '\\\\').replaceAll('\n', '\\n');
}

function escapeLabel(text) {
  return escapeHelp(text).replaceAll('"', '\\"');
}

module.exports = Metrics;
