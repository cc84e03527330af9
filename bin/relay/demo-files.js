'use strict';

const fs = require('node:fs');
const path = require('node:path');

const DEMO_DIR = path.join(__dirname, '..', '..', 'demo');
// The browser build of Socket, bundled by scripts/build-page.js in
// `prepare` (so after `npm install` in a clone, and in a packed tarball).
const BROWSER_BUILD = path.join(DEMO_DIR, 'dist', 'mytosis-websocket.js');

const HTML = 'text/html; charset=utf-8';
const JAVASCRIPT = 'text/javascript; charset=utf-8';

// The demo page's files by URL pathname: the only files the relay serves.
const DEMO_FILES = {
  '/': ['index.html', HTML],
  '/app.js': ['app.js', JAVASCRIPT],
  '/chat-view.js': ['chat-view.js', JAVASCRIPT],
  '/framing.js': ['framing.js', JAVASCRIPT],
  '/names.js': ['names.js', JAVASCRIPT],
  '/style.css': ['style.css', 'text/css; charset=utf-8'],
  '/favicon.svg': ['favicon.svg', 'image/svg+xml']
};

// Where the page loads the browser build of Socket from.
const BROWSER_SCRIPT_PATH = '/mytosis-websocket.js';

// Everything comes from the relay; the page runs no inline script and
// shows images only from Blob URLs of its own making.
const PAGE_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' blob:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'"
].join('; ');

/**
 * The demo page's files, read once at start: pathname to
 * `{ body, headers }`. index.html gets the relay's settings the page
 * needs (the WebSocket path, the largest message) in its `<meta>` tags.
 * Throws, saying to run `npm run build:page`, when the browser build was
 * never bundled.
 *
 * @param {Object} settings `{ path, maxPayload }` of the relay
 * @return {Map<String, Object>} The files
 */
function demoFiles(settings) {
  const files = new Map();
  for (const [pathname, [name, contentType]] of Object.entries(DEMO_FILES)) {
    let body = fs.readFileSync(path.join(DEMO_DIR, name), 'utf8');
    const headers = { 'content-type': contentType };
    if (contentType === HTML) {
      body = body
        .replace('%WEBSOCKET_PATH%', escapeAttribute(settings.path))
        .replace('%MAX_PAYLOAD%', String(settings.maxPayload));
      headers['content-security-policy'] = PAGE_POLICY;
    }
    files.set(pathname, { body, headers });
  }
  files.set(BROWSER_SCRIPT_PATH, { body: readBrowserBuild(), headers: { 'content-type': JAVASCRIPT } });
  return files;
}

/**
 * The bundled browser build; missing after `npm install --ignore-scripts`
 * in a clone, which skips `prepare`. Its error says what to run.
 */
function readBrowserBuild() {
  try {
    return fs.readFileSync(BROWSER_BUILD, 'utf8');
  } catch (err) {
    if (err.code !== 'ENOENT') throw err;
    throw new Error(
      `the demo page's bundle ${BROWSER_BUILD} is missing: run \`npm run build:page\` in ${path.dirname(DEMO_DIR)} to build it`,
      { cause: err }
    );
  }
}

function escapeAttribute(text) {
  return text.replace(/[&"'<>]/g, (c) => `&#${c.charCodeAt(0)};`);
}

module.exports = demoFiles;
