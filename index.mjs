import Socket from './index.js';

export const { Server, Stream, ConnectionGroup } = Socket;
export { Socket };
export default Socket;
