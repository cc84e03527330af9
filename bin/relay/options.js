'use strict';

const { parseArgs } = require('node:util');
const { checkCluster } = require('../../lib/server-options');

const USAGE = `Usage: mytosis-websocket [options]

A WebSocket relay: every message one client sends goes to every other
client, text byte for byte and binary as it is. The same port serves a
demo chat at /, and /health, /stats (JSON) and /metrics (Prometheus).
Put a TLS proxy in front of it for wss://.

Options:
  --port N          port to listen on (default 8080; 0 picks a free one)
  --host H          address to bind (default :: where IPv6 exists, else 0.0.0.0)
  --path P          pathname of the WebSocket endpoint (default /)
  --max-payload N   largest message in bytes; larger ones close the
                    connection with 1009 (default 16777216)
  --redis URL       join the other relays on this Redis (redis:// or
                    rediss://): a message reaches the clients of every
                    relay on the channel (default: none, this relay alone)
  --channel NAME    the Redis pub/sub channel of --redis (default
                    mytosis-websocket)
  --quiet           no connection log and no summary on stderr
  -h, --help        print this help and exit
`;

const MAX_PORT = 65535;
// The Server's default maxPayload, and the most it accepts.
const DEFAULT_MAX_PAYLOAD = 16 * 1024 * 1024;
const MAX_PAYLOAD_LIMIT = 0xffffffff;

/** A command line the relay cannot run with; its message says why. */
class UsageError extends Error {}

/**
 * The relay's settings from its command-line arguments.
 *
 * @param {String[]} args The arguments after the script's path
 * @return {Object} `{ help }`, or `{ port, host, path, maxPayload, cluster,
 *     quiet }` with `host` undefined for the default (dual-stack where it
 *     can) and `cluster` `{ redis, channel }`, or undefined without --redis
 * @throws {UsageError} For an unknown flag, a positional or a bad value
 */
function parseOptions(args) {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        port: { type: 'string' },
        host: { type: 'string' },
        path: { type: 'string' },
        'max-payload': { type: 'string' },
        redis: { type: 'string' },
        channel: { type: 'string' },
        quiet: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' }
      }
    }));
  } catch (err) {
    throw new UsageError(err.message);
  }
  if (values.help) return { help: true };

  if (values.host === '') throw new UsageError('--host must not be empty');
  const path = values.path ?? '/';
  if (!path.startsWith('/')) throw new UsageError('--path must start with /');
  return {
    help: false,
    port: integerOption('--port', values.port ?? '8080', 0, MAX_PORT),
    host: values.host,
    path,
    maxPayload: integerOption('--max-payload', values['max-payload'] ?? String(DEFAULT_MAX_PAYLOAD), 1, MAX_PAYLOAD_LIMIT),
    cluster: clusterOption(values.redis, values.channel),
    quiet: values.quiet ?? false
  };
}

/** A decimal integer from `min` to `max`; no sign, exponent or hex. */
function integerOption(flag, text, min, max) {
  const value = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!(value >= min && value <= max)) {
    throw new UsageError(`${flag} must be an integer from ${min} to ${max}, not ${JSON.stringify(text)}`);
  }
  return value;
}

/**
 * The Server's `cluster` option from --redis and --channel, checked by the
 * Server's own rules so that a bad value is a usage error (a database part
 * that is not a number passes; the Server refuses it when the relay
 * starts, and that is a usage error too). The Server's messages never
 * quote the URL: it may carry a password.
 */
function clusterOption(redis, channel) {
  if (redis === undefined) {
    if (channel !== undefined) throw new UsageError('--channel needs --redis');
    return undefined;
  }
  try {
    return checkCluster(channel === undefined ? { redis } : { redis, channel });
  } catch (err) {
    throw new UsageError(`--redis/--channel: ${err.message}`);
  }
}

module.exports = { parseOptions, UsageError, USAGE };
