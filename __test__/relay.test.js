'use strict';

// The relay server CLI, bin/mytosis-websocket.js, as a child process on a
// free port: its flags, what it relays (ws clients and our Socket), its
// http routes (/metrics read by the Prometheus client library's own
// parser, python3-prometheus-client), its shutdown on SIGTERM and
// SIGINT, and relays joined on a redis-server of their own (--redis;
// skipped without redis-server, see ./redis-kit.js).

const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const { describe, test } = require('node:test');

const WebSocket = require('ws');

const { Socket } = require('..');
const { runCli, startRelay, until, within } = require('./relay-kit');
const { hasRedis, startRedis } = require('./redis-kit');
const { STATS_FIELDS } = require('./helpers');

const TIMEOUT = 5000;
const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** `{ status, headers, body }` of a request to the relay; `target` is sent as it is. */
function request(relay, target, method = 'GET') {
  const { port } = new URL(relay.url);
  const done = new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: target, method, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (chunk) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
  return within(done, TIMEOUT, `${method} ${target}`);
}

async function stats(relay) {
  return JSON.parse((await request(relay, '/stats')).body);
}

/** A `ws` client whose messages and close are recorded from the start. */
async function wsClient(t, relay) {
  const ws = new WebSocket(relay.wsUrl);
  const client = { ws, received: [], closed: new Promise((resolve) => ws.on('close', (code) => resolve(code))) };
  ws.on('message', (data, isBinary) => client.received.push({ data, isBinary }));
  t.after(() => ws.terminate());
  await within(new Promise((resolve, reject) => ws.on('open', resolve).on('error', reject)), TIMEOUT, 'a ws client to open');
  return client;
}

/** Our Socket, `json: false`, recording its messages and close events. */
async function socketClient(t, relay) {
  const socket = new Socket(relay.wsUrl, { json: false });
  const client = { socket, received: [], closes: [] };
  socket.messages.forEach((message) => client.received.push(message));
  socket.on('close', (event) => client.closes.push(event));
  socket.on('error', () => {});
  t.after(() => socket.close());
  await within(new Promise((resolve) => socket.once('open', resolve)), TIMEOUT, 'our Socket to open');
  return client;
}

/** The python3 that has prometheus_client, or null. */
function findPrometheusParser() {
  for (const python of ['python3', '/usr/bin/python3']) {
    const probe = spawnSync(python, ['-c', 'import prometheus_client.parser'], { stdio: 'ignore' });
    if (probe.status === 0) return python;
  }
  return null;
}

const PARSE_METRICS = `
import json, sys
from prometheus_client.parser import text_string_to_metric_families
families = text_string_to_metric_families(sys.stdin.read())
print(json.dumps([
    {"name": f.name, "type": f.type, "help": f.documentation,
     "samples": [[s.name, s.labels, s.value] for s in f.samples]}
    for f in families
]))
`;

/** The families of /metrics as prometheus_client parses them. */
async function scrape(relay, python) {
  const response = await request(relay, '/metrics');
  assert.equal(response.status, 200);
  assert.equal(response.headers['content-type'], METRICS_CONTENT_TYPE);
  const parsed = spawnSync(python, ['-c', PARSE_METRICS], { input: response.body, encoding: 'utf8', timeout: 20000 });
  assert.equal(parsed.status, 0, `prometheus_client failed on:\n${response.body}\n${parsed.stderr}`);
  const families = new Map(JSON.parse(parsed.stdout).map((family) => [family.name, family]));
  // The value of one sample: by sample name and labels.
  const value = (name, labels = {}) =>
    [...families.values()]
      .flatMap((family) => family.samples)
      .find(([sample, sampleLabels]) => sample === name && JSON.stringify(sampleLabels) === JSON.stringify(labels))?.[2];
  return { families, value, text: response.body };
}

describe('the command line', () => {
  test('--help prints the usage to stdout and exits 0', async () => {
    for (const flag of ['--help', '-h']) {
      const { code, stdout, stderr } = await runCli([flag]);
      assert.equal(code, 0);
      assert.match(stdout, /^Usage: mytosis-websocket \[options\]/);
      for (const option of ['--port', '--host', '--path', '--max-payload', '--redis', '--channel', '--quiet', '--help']) {
        assert.ok(stdout.includes(option), `the usage names ${option}`);
      }
      assert.equal(stderr, '');
    }
  });

  test('a bad flag or value prints why and the usage to stderr and exits 2', async () => {
    for (const [args, why] of [
      [['--nope'], /--nope/],
      [['--port', '70000'], /--port must be an integer from 0 to 65535/],
      [['--port', '80a'], /--port/],
      [['--port', '-1'], /--port/],
      [['--port'], /--port/],
      [['--max-payload', '0'], /--max-payload/],
      [['--max-payload', '1e6'], /--max-payload/],
      [['--path', 'live'], /--path must start with \//],
      [['--host', ''], /--host/],
      [['--quiet=yes'], /--quiet/],
      [['extra'], /extra/],
      [['--redis'], /--redis/],
      [['--redis', ''], /--redis\/--channel: .*redis:\/\/ or rediss:\/\/ URL/],
      [['--redis', 'redis.example:6379'], /--redis\/--channel: .*redis:\/\/ or rediss:\/\/ URL/],
      [['--redis', 'http://:hunter2@redis.example:6379'], /--redis\/--channel: .*redis:\/\/ or rediss:\/\/ URL/],
      [['--redis', 'redis:///0'], /--redis\/--channel: .*URL with a host/],
      [['--redis', 'redis://:hunter2@redis.example:6379/zero'], /"cluster" option of Server is not usable/],
      [['--redis', 'redis://redis.example:6379', '--channel', ''], /--redis\/--channel: .*non-empty string/],
      [['--channel', 'chat'], /--channel needs --redis/]
    ]) {
      const { code, stdout, stderr } = await runCli(args);
      assert.equal(code, 2, args.join(' '));
      assert.equal(stdout, '', args.join(' '));
      assert.match(stderr, why, args.join(' '));
      assert.match(stderr, /Usage: mytosis-websocket \[options\]/, args.join(' '));
      // A Redis URL may carry a password: never quoted.
      assert.ok(!stderr.includes('hunter2'), args.join(' '));
    }
  });

  test('the port already taken: a message on stderr, exit 1', async (t) => {
    const relay = await startRelay(['--quiet']);
    t.after(relay.kill);
    const { code, stdout, stderr } = await runCli(['--port', String(relay.port), '--host', '127.0.0.1']);
    assert.equal(code, 1);
    assert.equal(stdout, '');
    assert.match(stderr, /EADDRINUSE/);
  });

  test('the demo page never bundled: a message naming the missing file and `npm run build:page`, exit 1', async (t) => {
    // The package as `npm install --ignore-scripts` leaves a clone: bin/
    // and demo/ copied without demo/dist, everything else linked.
    const ROOT = path.join(__dirname, '..');
    const copy = fs.mkdtempSync(path.join(os.tmpdir(), 'mytosis-relay-unbuilt-'));
    t.after(() => fs.rmSync(copy, { recursive: true, force: true }));
    for (const name of fs.readdirSync(ROOT)) {
      if (name === 'bin' || name.startsWith('.')) continue;
      if (name === 'demo') {
        fs.cpSync(path.join(ROOT, name), path.join(copy, name), {
          recursive: true,
          filter: (source) => source !== path.join(ROOT, 'demo', 'dist')
        });
      } else {
        fs.symlinkSync(path.join(ROOT, name), path.join(copy, name));
      }
    }
    fs.cpSync(path.join(ROOT, 'bin'), path.join(copy, 'bin'), { recursive: true });
    const bundle = path.join(copy, 'demo', 'dist', 'mytosis-websocket.js');
    assert.ok(!fs.existsSync(bundle));

    const { code, stdout, stderr } = await runCli(
      ['--port', '0', '--host', '127.0.0.1'],
      undefined,
      path.join(copy, 'bin', 'mytosis-websocket.js')
    );
    assert.equal(code, 1, stderr);
    assert.equal(stdout, '');
    assert.ok(stderr.startsWith(`mytosis-websocket: the demo page's bundle ${bundle} is missing`), stderr);
    assert.match(stderr, /run `npm run build:page`/);
    assert.doesNotMatch(stderr, /ENOENT|\n\s+at /, 'no bare system error or stack trace');
  });
});

describe('relaying', () => {
  test('text goes to every other client byte for byte, never back to its sender', async (t) => {
    const relay = await startRelay(['--quiet']);
    t.after(relay.kill);
    const [a, b] = [await wsClient(t, relay), await wsClient(t, relay)];
    const c = await socketClient(t, relay);
    // Not JSON, not ASCII: the relay passes text on without reading it.
    const text = 'héllo {not json} 😀 \u0000 end';
    a.ws.send(text);
    await until(() => b.received.length === 1 && c.received.length === 1, 'the text at both other clients');
    assert.deepEqual(b.received[0], { data: Buffer.from(text), isBinary: false });
    assert.equal(c.received[0], text);

    // Sent after b has the first text, so an echo of it would reach a first.
    b.ws.send('second');
    await until(() => a.received.length === 1, 'the second text at a');
    assert.deepEqual(a.received[0], { data: Buffer.from('second'), isBinary: false });
  });

  test('binary goes to every other client as it is', async (t) => {
    const relay = await startRelay(['--quiet']);
    t.after(relay.kill);
    const [a, b] = [await wsClient(t, relay), await wsClient(t, relay)];
    const c = await socketClient(t, relay);
    const bytes = Buffer.from(Array.from({ length: 512 }, (_, i) => (i * 7) % 256));
    c.socket.send(bytes);
    await until(() => a.received.length === 1 && b.received.length === 1, "our Socket's binary at a and b");
    a.ws.send(Buffer.from('{"as":"binary"}'), { binary: true });
    await until(() => b.received.length === 2 && c.received.length === 1, "a's binary at b and our Socket");
    assert.deepEqual(a.received, [{ data: bytes, isBinary: true }]);
    assert.deepEqual(b.received, [
      { data: bytes, isBinary: true },
      { data: Buffer.from('{"as":"binary"}'), isBinary: true }
    ]);
    assert.deepEqual(c.received, [Buffer.from('{"as":"binary"}')]);
  });

  test('--max-payload bounds what a client may send: larger closes it with 1009', async (t) => {
    const relay = await startRelay(['--quiet', '--max-payload', '1024']);
    t.after(relay.kill);
    const [a, b] = [await wsClient(t, relay), await wsClient(t, relay)];
    a.ws.send(Buffer.alloc(1024, 1));
    await until(() => b.received.length === 1, 'a message of exactly --max-payload bytes');
    a.ws.send(Buffer.alloc(1025, 2));
    assert.equal(await within(a.closed, TIMEOUT, 'the sender to be closed'), 1009);
    assert.equal(b.received.length, 1);
    await until(async () => (await stats(relay)).invalid === 1, 'the invalid counter at 1');
  });
});

describe('http routes', () => {
  test('/health answers ok; the demo page and its scripts are served; anything else is 404', async (t) => {
    const relay = await startRelay(['--quiet']);
    t.after(relay.kill);
    const health = await request(relay, '/health');
    assert.equal(health.status, 200);
    assert.equal(health.body, 'ok');
    assert.equal((await request(relay, '/health?probe=1')).body, 'ok');

    const page = await request(relay, '/');
    assert.equal(page.status, 200);
    assert.equal(page.headers['content-type'], 'text/html; charset=utf-8');
    assert.match(page.headers['content-security-policy'], /default-src 'none'/);
    assert.match(page.body, /<meta name="websocket-path" content="\/">/);
    assert.match(page.body, /<meta name="max-payload" content="16777216">/);
    for (const file of ['/app.js', '/chat-view.js', '/framing.js', '/names.js', '/mytosis-websocket.js']) {
      const response = await request(relay, file);
      assert.equal(response.status, 200, file);
      assert.equal(response.headers['content-type'], 'text/javascript; charset=utf-8', file);
    }
    assert.equal((await request(relay, '/style.css')).status, 200);
    assert.equal((await request(relay, '/favicon.svg')).status, 200);

    for (const target of ['/nope', '/../package.json', '/%2e%2e/package.json', '/lib/server.js', '/browser.js', '/demo/app.js', '/index.html', '//etc/passwd']) {
      const response = await request(relay, target);
      assert.equal(response.status, 404, target);
      assert.equal(response.body, 'Not Found', target);
    }
    assert.equal((await request(relay, '/health', 'POST')).status, 405);
    const head = await request(relay, '/health', 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
  });

  test('the page gets the WebSocket path and the largest message from the flags', async (t) => {
    const relay = await startRelay(['--quiet', '--path', '/live"<x>', '--max-payload', '65536']);
    t.after(relay.kill);
    const page = await request(relay, '/');
    assert.match(page.body, /<meta name="websocket-path" content="\/live&#34;&#60;x&#62;">/);
    assert.match(page.body, /<meta name="max-payload" content="65536">/);
  });

  test('/mytosis-websocket.js is the bundled browser build, which gives the page Socket', async (t) => {
    const relay = await startRelay(['--quiet']);
    t.after(relay.kill);
    const response = await request(relay, '/mytosis-websocket.js');
    assert.equal(response.status, 200);
    assert.match(response.headers['content-type'], /^text\/javascript/);
    // The script declares the page's global `MytosisWebSocket`; run as in a
    // page, where there is no `process`.
    const bundle = new Function('process', `${response.body}\nreturn MytosisWebSocket;`)(undefined);
    assert.equal(typeof bundle.Socket, 'function');
  });

  test('/stats is server.stats() as JSON, and its counters move', async (t) => {
    const relay = await startRelay(['--quiet']);
    t.after(relay.kill);
    const response = await request(relay, '/stats');
    assert.equal(response.status, 200);
    assert.equal(response.headers['content-type'], 'application/json');
    const before = JSON.parse(response.body);
    assert.deepEqual(Object.keys(before).sort(), [...STATS_FIELDS].sort());
    for (const field of STATS_FIELDS) {
      if (field !== 'closes') assert.equal(typeof before[field], 'number', field);
    }
    assert.equal(typeof before.closes, 'object');
    assert.equal(before.connections, 0);

    const [a, b, c] = [await wsClient(t, relay), await wsClient(t, relay), await wsClient(t, relay)];
    a.ws.send('12345');
    a.ws.send(Buffer.alloc(10));
    await until(() => b.received.length === 2 && c.received.length === 2, 'two messages at b and c');
    const during = await stats(relay);
    assert.equal(during.connections, 3);
    assert.equal(during.accepted - before.accepted, 3);
    assert.equal(during.messagesIn - before.messagesIn, 2);
    assert.equal(during.bytesIn - before.bytesIn, 15);
    assert.equal(during.messagesOut - before.messagesOut, 4);
    assert.equal(during.bytesOut - before.bytesOut, 30);

    a.ws.close(1000);
    b.ws.close(4000);
    await until(async () => (await stats(relay)).connections === 1, 'two clients gone');
    const after = await stats(relay);
    assert.equal((after.closes['1000'] ?? 0) - (before.closes['1000'] ?? 0), 1);
    assert.equal((after.closes['4000'] ?? 0) - (before.closes['4000'] ?? 0), 1);
  });

  const python = findPrometheusParser();
  const noParser = python === null
    ? 'python3 with prometheus_client is not installed (apt-get install -y python3-prometheus-client)'
    : false;

  test('/metrics is the Prometheus text format: every family with HELP and TYPE; values move', { skip: noParser }, async (t) => {
    const relay = await startRelay(['--quiet']);
    t.after(relay.kill);
    const before = await scrape(relay, python);
    for (const family of before.families.values()) {
      assert.notEqual(family.type, 'unknown', `${family.name} has a TYPE`);
      assert.ok(family.help.length > 0, `${family.name} has a HELP`);
    }
    // prometheus_client names a counter's family without `_total`.
    const expected = {
      mytosis_websocket_connections: 'gauge',
      mytosis_websocket_connections_accepted: 'counter',
      mytosis_websocket_messages_received: 'counter',
      mytosis_websocket_received_bytes: 'counter',
      mytosis_websocket_messages_sent: 'counter',
      mytosis_websocket_sent_bytes: 'counter',
      mytosis_websocket_closes: 'counter',
      mytosis_websocket_invalid_messages: 'counter',
      mytosis_websocket_paused_connections: 'gauge',
      mytosis_websocket_deflate_calls: 'counter',
      mytosis_websocket_event_loop_delay_seconds: 'summary',
      mytosis_websocket_event_loop_delay_max_seconds: 'gauge'
    };
    for (const [name, type] of Object.entries(expected)) {
      assert.equal(before.families.get(name)?.type, type, `${name}: ${before.text}`);
    }
    // The cluster's families come with --redis only.
    assert.deepEqual([...before.families.keys()].filter((name) => name.includes('cluster')), []);
    assert.equal(before.value('mytosis_websocket_connections'), 0);
    assert.equal(before.value('mytosis_websocket_event_loop_delay_seconds', { quantile: '0.99' }) >= 0, true);

    const [a, b] = [await wsClient(t, relay), await wsClient(t, relay)];
    a.ws.send('abc');
    await until(() => b.received.length === 1, 'the message at b');
    b.ws.close(1000);
    await within(b.closed, TIMEOUT, 'b to close');
    await until(async () => (await stats(relay)).connections === 1, 'b gone at the relay');

    const after = await scrape(relay, python);
    assert.equal(after.value('mytosis_websocket_connections'), 1);
    assert.equal(after.value('mytosis_websocket_connections_accepted_total'), 2);
    assert.equal(after.value('mytosis_websocket_messages_received_total'), 1);
    assert.equal(after.value('mytosis_websocket_received_bytes_total'), 3);
    assert.equal(after.value('mytosis_websocket_messages_sent_total'), 1);
    assert.equal(after.value('mytosis_websocket_sent_bytes_total'), 3);
    assert.equal(after.value('mytosis_websocket_closes_total', { code: '1000' }), 1);
    assert.ok(after.value('mytosis_websocket_event_loop_delay_seconds_count') > 0);
    // 'abc' is under the compression threshold.
    assert.equal(after.value('mytosis_websocket_deflate_calls_total'), 0);

    // The relay compresses for clients that offer it (ws does): a long
    // message is deflated once.
    const c = await wsClient(t, relay);
    c.ws.send('relayed '.repeat(500));
    await until(() => a.received.length === 1, 'the long message at a');
    const compressed = await scrape(relay, python);
    assert.equal(compressed.value('mytosis_websocket_deflate_calls_total'), 1);
  });
});

describe('logging and shutdown', () => {
  for (const signal of ['SIGTERM', 'SIGINT']) {
    test(`${signal}: every client gets 1001, the process exits 0 within 6 s, stdout has one line`, async (t) => {
      const relay = await startRelay();
      t.after(relay.kill);
      const a = await wsClient(t, relay);
      const c = await socketClient(t, relay);
      await until(() => relay.stderr().split('\n').filter((line) => / \+ /.test(line)).length === 2, "two 'add' lines on stderr");

      const { code, signal: killedBy, ms } = await relay.stop(signal);
      assert.deepEqual({ code, killedBy }, { code: 0, killedBy: null });
      assert.ok(ms < 6000, `exited after ${ms} ms`);
      assert.equal(await within(a.closed, TIMEOUT, 'the ws client to close'), 1001);
      await until(() => c.closes.length === 1, "our Socket's 'close'");
      assert.equal(c.closes[0].code, 1001);

      assert.equal(relay.stdout(), `listening on ${relay.url}\n`);
      const log = relay.stderr();
      assert.match(log, / \+ [0-9a-f-]{36} from 127\.0\.0\.1:\d+ \(1 open\)\n/);
      assert.match(log, / - [0-9a-f-]{36} from 127\.0\.0\.1:\d+ closed with 1001 /);
      assert.match(log, new RegExp(`${signal}: closing`));
    });
  }

  test('--quiet: nothing on stderr, still one line on stdout', async (t) => {
    const relay = await startRelay(['--quiet']);
    t.after(relay.kill);
    const a = await wsClient(t, relay);
    const b = await wsClient(t, relay);
    a.ws.send('hi');
    await until(() => b.received.length === 1, 'the message at b');
    const { code } = await relay.stop('SIGTERM');
    assert.equal(code, 0);
    assert.equal(relay.stderr(), '');
    assert.equal(relay.stdout(), `listening on ${relay.url}\n`);
  });
});

describe('relays joined on Redis (--redis)', () => {
  const noRedis = hasRedis() ? false : 'redis-server is not installed (apt-get install -y redis-server; .ci/run does)';
  const python = findPrometheusParser();

  /** The relay's log lines (stderr) that match `pattern`. */
  const logLines = (relay, pattern) => relay.stderr().split('\n').filter((line) => pattern.test(line));
  const UP = / cluster up: joined channel "([^"]*)"/;
  const DOWN = / cluster down: channel "([^"]*)" left/;

  /** A relay with `args`, once its log says it joined the channel; killed after the test. */
  async function joinedRelay(t, args) {
    const relay = await startRelay(args);
    t.after(relay.kill);
    await until(() => logLines(relay, UP).length === 1, `"cluster up" in the log of a relay with ${args.join(' ')}`, 10000);
    return relay;
  }

  test('a message to one relay reaches the clients of the others on the channel, byte for byte, never its sender', { skip: noRedis }, async (t) => {
    const redis = await startRedis(t);
    // A and B on the default channel, C on another one on the same Redis.
    const a = await joinedRelay(t, ['--redis', redis.url]);
    const b = await joinedRelay(t, ['--redis', redis.url]);
    const c = await joinedRelay(t, ['--redis', redis.url, '--channel', 'elsewhere']);
    assert.deepEqual(
      [a, b, c].map((relay) => UP.exec(logLines(relay, UP)[0])[1]),
      ['mytosis-websocket', 'mytosis-websocket', 'elsewhere']
    );
    const [a1, a2, b1, c1] = [await wsClient(t, a), await wsClient(t, a), await wsClient(t, b), await wsClient(t, c)];
    const socket = await socketClient(t, b);

    // Not JSON, not ASCII: passed on without being read, on every relay.
    const text = 'héllo {not json} 😀 \u0000 end';
    a1.ws.send(text);
    await until(() => a2.received.length === 1 && b1.received.length === 1 && socket.received.length === 1, 'the text at the other clients of A and B');
    for (const client of [a2, b1]) assert.deepEqual(client.received, [{ data: Buffer.from(text), isBinary: false }]);
    assert.deepEqual(socket.received, [text]);

    // Binary the other way; sent after the text arrived, so an echo of the
    // text to a1 would be there first.
    const bytes = Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 13) % 256));
    b1.ws.send(bytes);
    await until(() => a1.received.length === 1 && a2.received.length === 2 && socket.received.length === 2, "B's binary at A's clients");
    assert.deepEqual(a1.received, [{ data: bytes, isBinary: true }]);
    assert.deepEqual(a2.received[1], { data: bytes, isBinary: true });
    assert.deepEqual(socket.received[1], bytes);
    // Nothing more anywhere, and nothing at all on the other channel.
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual(
      [a1, a2, b1, socket, c1].map((client) => client.received.length),
      [1, 2, 1, 2, 0]
    );

    // Each relay counts its own: A published 1 and received 1, B the same.
    await until(async () => (await stats(a)).clusterPublished === 1 && (await stats(b)).clusterPublished === 1, 'both publications counted');
    for (const relay of [a, b]) {
      const { clusterPublished, clusterReceived, clusterLost, clusterMissed, messagesIn, messagesOut } = await stats(relay);
      assert.deepEqual({ clusterPublished, clusterReceived, clusterLost, clusterMissed, messagesIn }, {
        clusterPublished: 1,
        clusterReceived: 1,
        clusterLost: 0,
        clusterMissed: 0,
        messagesIn: 1
      });
      // Two messages, each to the two clients of this relay but the sender.
      assert.equal(messagesOut, 3);
    }
    assert.equal((await stats(c)).clusterReceived, 0);

    if (python !== null) {
      const metrics = await scrape(a, python);
      const expected = {
        mytosis_websocket_cluster_up: 'gauge',
        mytosis_websocket_cluster_published: 'counter',
        mytosis_websocket_cluster_received: 'counter',
        mytosis_websocket_cluster_lost: 'counter',
        mytosis_websocket_cluster_missed: 'counter'
      };
      for (const [name, type] of Object.entries(expected)) {
        const family = metrics.families.get(name);
        assert.equal(family?.type, type, `${name}: ${metrics.text}`);
        assert.ok(family.help.length > 0, `${name} has a HELP`);
      }
      assert.equal(metrics.value('mytosis_websocket_cluster_up'), 1);
      assert.equal(metrics.value('mytosis_websocket_cluster_published_total'), 1);
      assert.equal(metrics.value('mytosis_websocket_cluster_received_total'), 1);
      assert.equal(metrics.value('mytosis_websocket_cluster_lost_total'), 0);
      assert.equal(metrics.value('mytosis_websocket_cluster_missed_total'), 0);
    }
    // The URL is never logged (it may carry a password).
    for (const relay of [a, b, c]) assert.ok(!relay.stderr().includes(`:${redis.port}`), relay.stderr());
  });

  test('Redis going away and coming back: logged down and up, relaying stays local meanwhile', { skip: noRedis }, async (t) => {
    const redis = await startRedis(t);
    const a = await joinedRelay(t, ['--redis', redis.url, '--channel', 'room']);
    const b = await joinedRelay(t, ['--redis', redis.url, '--channel', 'room']);
    const [a1, a2, b1] = [await wsClient(t, a), await wsClient(t, a), await wsClient(t, b)];

    await redis.stop();
    for (const relay of [a, b]) {
      await until(() => logLines(relay, DOWN).length === 1, '"cluster down" in the log');
      assert.equal(DOWN.exec(logLines(relay, DOWN)[0])[1], 'room');
      // Why first (the error), then the state.
      const lines = relay.stderr().split('\n');
      const error = lines.findIndex((line) => / error: ERR_CLUSTER /.test(line));
      assert.ok(error !== -1 && error < lines.findIndex((line) => DOWN.test(line)), relay.stderr());
      assert.equal(logLines(relay, / error: ERR_CLUSTER /).length, 1, relay.stderr());
      if (python !== null) assert.equal((await scrape(relay, python)).value('mytosis_websocket_cluster_up'), 0);
    }
    // Meanwhile A's clients still talk to each other; B's hears nothing.
    a1.ws.send('while apart');
    await until(() => a2.received.length === 1, 'the message at the other client of A');

    await redis.start();
    for (const relay of [a, b]) {
      await until(() => logLines(relay, UP).length === 2, 'a second "cluster up" in the log', 10000);
    }
    // A's message of the outage reached no other relay: said when it is up.
    assert.match(logLines(a, UP)[1], /; 1 message relayed meanwhile reached no other relay$/);
    assert.doesNotMatch(logLines(b, UP)[1], /reached no other relay/);
    a1.ws.send('together again');
    await until(() => b1.received.length === 1 && a2.received.length === 2, 'the message after the outage');
    assert.deepEqual(b1.received, [{ data: Buffer.from('together again'), isBinary: false }]);
    assert.equal(a1.received.length, 0);
  });
});
