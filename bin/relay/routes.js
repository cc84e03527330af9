'use strict';

const Metrics = require('./metrics');

const COMMON_HEADERS = { 'x-content-type-options': 'nosniff' };

/**
 * The relay's http handler: the demo page's files, and what operators
 * ask of it: /health, /stats (`server.stats()` as JSON) and /metrics.
 * Any other pathname is 404; only GET and HEAD are answered.
 *
 * @param {Object} relay `{ server, metrics, files, onError }`: the
 *     WebSocket Server, a Metrics, the demo's files (demo-files.js), and
 *     what to tell of an answer that failed (it is a 500; the relay runs on)
 * @return {Function} `(req, res)` for an http server's 'request'
 */
function createRoutes({ server, metrics, files, onError }) {
  const answers = {
    '/health': () => ({ body: 'ok', type: 'text/plain; charset=utf-8' }),
    '/stats': () => ({ body: JSON.stringify(server.stats()), type: 'application/json' }),
    '/metrics': () => ({ body: metrics.render(server.stats()), type: Metrics.contentType })
  };

  return (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return send(res, 405, 'Method Not Allowed', { 'content-type': 'text/plain; charset=utf-8', allow: 'GET, HEAD' });
    }
    // The query does not matter; the pathname is only ever a key of a
    // fixed table, never a file path.
    const pathname = req.url.split('?', 1)[0];
    if (Object.hasOwn(answers, pathname)) {
      let answer;
      try {
        answer = answers[pathname]();
      } catch (err) {
        onError(err);
        return send(res, 500, 'Internal Server Error', { 'content-type': 'text/plain; charset=utf-8' });
      }
      return send(res, 200, answer.body, { 'content-type': answer.type, 'cache-control': 'no-store' });
    }
    const file = files.get(pathname);
    if (file !== undefined) return send(res, 200, file.body, { ...file.headers, 'cache-control': 'no-cache' });
    return send(res, 404, 'Not Found', { 'content-type': 'text/plain; charset=utf-8' });
  };
}

/** Answer in full; Node leaves the body out for HEAD. */
function send(res, status, body, headers) {
  res.writeHead(status, { ...COMMON_HEADERS, ...headers, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

module.exports = createRoutes;
