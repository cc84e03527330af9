'use strict';

const net = require('node:net');
const { STATUS_CODES } = require('node:http');

const { refusalResponse } = require('./native');

// One router per http server: it owns that server's single 'upgrade'
// listener and hands each upgrade to the Server whose path matches.
const routers = new WeakMap();

/**
 * Route upgrades of `httpServer` for `path` (any path when undefined) to
 * `onUpgrade(req, socket, head)`. An upgrade no attached Server matches is
 * left to the user's other 'upgrade' listeners, and answered 400 only if
 * there are none.
 *
 * @param {http.Server} httpServer The user's server
 * @param {(String|undefined)} path The pathname to serve
 * @param {Function} onUpgrade Called with `(req, socket, head)`
 * @return {Function} Detaches the route
 */
function attach(httpServer, path, onUpgrade) {
  let router = routers.get(httpServer);
  if (router === undefined) {
    router = createRouter(httpServer);
    routers.set(httpServer, router);
  }
  const route = { path, onUpgrade };
  router.routes.add(route);
  return () => {
    router.routes.delete(route);
    if (router.routes.size === 0) {
      httpServer.removeListener('upgrade', router.listener);
      routers.delete(httpServer);
    }
  };
}

function createRouter(httpServer) {
  const routes = new Set();
  const listener = (req, socket, head) => {
    const pathname = new URL(req.url ?? '/', 'http://localhost').pathname;
    for (const route of routes) {
      if (route.path === undefined || route.path === pathname) {
        route.onUpgrade(req, socket, head);
        return;
      }
    }
    if (httpServer.listenerCount('upgrade') === 1) refuseUpgrade(socket, 400);
  };
  httpServer.on('upgrade', listener);
  return { routes, listener };
}

/**
 * Answer an upgrade with an HTTP error and close the socket. The addon
 * writes the bytes, as it does for a standalone Server. Headers were
 * checked by the caller (lib/verify.js); should one still not be a valid
 * field, none is written and the answer is a 500.
 *
 * @param {net.Socket} socket The upgrade's socket
 * @param {Number} status The status code
 * @param {String} [body] The body
 * @param {String[]} [headers] More headers, `[name, value, ...]`
 */
function refuseUpgrade(socket, status, body = STATUS_CODES[status] ?? '', headers = []) {
  if (!socket.writable) return socket.destroy();
  socket.end(refusalResponse(status, body, headers));
}

/**
 * Hand an accepted upgrade's socket to the addon. A plain TCP socket goes
 * by file descriptor: the addon serves a duplicate and Node lets go of its
 * own. A socket whose bytes Node must keep handling (TLS terminated by an
 * `https.Server`) is relayed through a socket pair instead.
 *
 * Call it synchronously after reading anything the socket buffered: the
 * socket was paused when the upgrade arrived, so no byte is lost.
 *
 * @param {Object} native The NativeServer
 * @param {net.Socket} socket The upgrade's socket
 * @param {Buffer} head The bytes Node read past the request
 * @param {Object} request `{ url, headers, protocol, remoteAddress,
 *     remotePort }` for the addon
 * @return {Number} The connection's handle
 */
function handOver(native, socket, head, request) {
  const buffered = [];
  for (let chunk = socket.read(); chunk !== null; chunk = socket.read()) buffered.push(chunk);
  const bytes = buffered.length > 0 ? Buffer.concat([head, ...buffered]) : head;

  const fd = socket._handle?.fd;
  if (socket.encrypted || typeof fd !== 'number' || fd < 0) {
    const { handle, fd: relayFd } = native.adoptRelay(bytes, request);
    relay(socket, new net.Socket({ fd: relayFd, readable: true, writable: true }));
    return handle;
  }
  const handle = native.adopt(fd, bytes, request);
  socket.destroy();
  return handle;
}

function relay(socket, pipe) {
  const end = () => {
    socket.destroy();
    pipe.destroy();
  };
  socket.on('error', end).on('close', end);
  pipe.on('error', end).on('close', end);
  socket.pipe(pipe).pipe(socket);
}

module.exports = { attach, handOver, refuseUpgrade };
