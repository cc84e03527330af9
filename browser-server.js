'use strict';

/**
 * The browser build's `Server`: a stand-in, since a browser cannot listen.
 */
class Server {
  /**
   * @throws {Error} Always
   */
  constructor() {
    throw new Error('Server is not available in browsers');
  }
}

module.exports = Server;
