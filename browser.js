'use strict';

// The browser build (package.json `browser` and the `browser` export
// condition): the same shape as index.js, with a pure-JS Socket over the
// global WebSocket and no native addon.
const Socket = require('./lib/browser-socket');
const Server = require('./browser-server');
const Stream = require('./lib/stream');
const ConnectionGroup = require('./lib/connection-group');

module.exports = Socket;
module.exports.Socket = Socket;
module.exports.Server = Server;
module.exports.Stream = Stream;
module.exports.ConnectionGroup = ConnectionGroup;
