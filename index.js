'use strict';

const Socket = require('./lib/socket');
const Server = require('./lib/server');
const Stream = require('./lib/stream');
const ConnectionGroup = require('./lib/connection-group');

// `require('mytosis-websocket')` is the client, as in the original plugin;
// everything else hangs off it.
module.exports = Socket;
module.exports.Socket = Socket;
module.exports.Server = Server;
module.exports.Stream = Stream;
module.exports.ConnectionGroup = ConnectionGroup;
