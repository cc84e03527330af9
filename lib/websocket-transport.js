'use strict';

const { invalidOption } = require('./options');

// Placeholder until the WHATWG WebSocket transport lands (issue 3).
class WebSocketTransport {
  constructor() {
    throw invalidOption('The "WebSocket" option of Socket is not supported yet');
  }
}

module.exports = WebSocketTransport;
