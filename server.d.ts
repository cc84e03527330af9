import { Server } from './index';

export * from './index';
export default Server;
