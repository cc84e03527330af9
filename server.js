'use strict';

// `require('mytosis-websocket/server')` is the Server.
module.exports = require('./lib/server');
