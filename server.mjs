import Server from './lib/server.js';

export default Server;
