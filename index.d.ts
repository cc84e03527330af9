/// <reference types="node" />
import { EventEmitter } from 'node:events';

/** What `send` accepts: binary data, or (with `json: true`) any JSON value. */
export type BinaryData =
  | Buffer
  | ArrayBufferView
  | ArrayBuffer
  | SharedArrayBuffer
  | Blob;

export interface Subscription {
  /** Stop the callback; idempotent. */
  dispose(): void;
}

/** A lazy, cacheless stream of `(message, sender)` pairs. */
export declare class Stream<T = unknown, S = unknown> {
  constructor(
    publisher: (push: (message: T, sender: S) => void, complete: () => void) => void | (() => void),
    options?: { onError?: (err: unknown) => void }
  );
  /** The same as `new Stream(publisher, options)`. */
  static create<T = unknown, S = unknown>(
    publisher: (push: (message: T, sender: S) => void, complete: () => void) => void | (() => void),
    options?: { onError?: (err: unknown) => void }
  ): Stream<T, S>;
  /**
   * A stream of one event: the listener's first argument is the message, its
   * second the sender. Listens (`on` or `addEventListener`) only while observed.
   */
  static fromEvent<T = unknown, S = unknown>(
    emitter:
      | { on(event: any, listener: (...args: any[]) => void): unknown }
      | { addEventListener(event: any, listener: (...args: any[]) => void): unknown },
    event: string | symbol
  ): Stream<T, S>;
  /** Resolves when the stream completes; a push after that throws. */
  readonly complete: Promise<void>;
  forEach(callback: (message: T, sender: S) => void): Subscription;
}

/** A Mytosis connection: one peer. */
export interface Connection {
  readonly id: string;
  readonly type: 'websocket';
  readonly offline: boolean;
  readonly messages: Stream<unknown, Connection>;
  send(message: unknown, options?: SendOptions): boolean;
}

/** Per-message send options. */
export interface SendOptions {
  /** `false` sends the message uncompressed even where compression was agreed on. Default `true`. */
  compress?: boolean;
}

/** A set of connections keyed by id, and an event emitter of `'add'` and `'remove'`. */
export declare class ConnectionGroup<C extends Connection = Connection> extends EventEmitter {
  /** `network` when it is a group, else a new group holding it. */
  static ensure<N extends Connection>(network: ConnectionGroup<N> | N): ConnectionGroup<N>;
  readonly messages: Stream<unknown, C>;
  readonly size: number;
  /** Emits `'add'` unless a member has its id; returns the connection. */
  add<A extends C>(connection: A): A;
  /** Emits `'remove'` if a member has its id; returns the connection. */
  remove<R extends C>(connection: R, info?: unknown): R;
  /** Whether a member has the connection's id. */
  has(connection: C): boolean;
  id(key: string): C | null;
  /** A snapshot: the members that pass now. */
  filter(predicate: (connection: C) => unknown): ConnectionGroup<C>;
  /** A snapshot: the members of that type now. */
  type(name: string): ConnectionGroup<C>;
  /** Live: follows both groups' later adds and removes. */
  union<D extends Connection>(group: ConnectionGroup<D>): ConnectionGroup<C | D>;
  /** Returns how many connections the message was queued to. */
  send(message: unknown, options?: { except?: C | C[]; compress?: boolean }): number;
  [Symbol.iterator](): IterableIterator<C>;
}

export interface CloseInfo {
  code: number;
  reason: string;
  wasClean: boolean;
}

/** A client of a `Server`. */
export interface ServerConnection extends Connection {
  readonly messages: Stream<unknown, ServerConnection>;
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** Like Node's `IncomingMessage.headers`. */
  readonly headers: Record<string, string | string[]>;
  readonly protocol: string;
  readonly context: unknown;
  readonly bufferedAmount: number;
  readonly closeCode: number | undefined;
  readonly closeReason: string | undefined;
  /** `code` is 1000 or 3000-4999; `reason` at most 123 UTF-8 bytes. */
  close(code?: number, reason?: string): void;
  terminate(): void;
  /** Stop reading and delivering this connection's messages until `resume()`. */
  pause(): this;
  /** Deliver what waited, then read again. */
  resume(): this;
  /** Join `topic` (a non-empty string of at most 1024 UTF-8 bytes); false if a member already, or closing. */
  subscribe(topic: string): boolean;
  /** Leave `topic`; false if not a member. */
  unsubscribe(topic: string): boolean;
  /** `'drain'`: `bufferedAmount` fell under half of `maxBackpressure` after passing it. */
  on(event: 'drain', listener: () => void): this;
  once(event: 'drain', listener: () => void): this;
  off(event: 'drain', listener: () => void): this;
}

export interface VerifyClientInfo {
  origin: string | undefined;
  headers: Record<string, string | string[]>;
  remoteAddress: string;
  /** Path and query. */
  url: string;
  /** The request: Node's IncomingMessage when attached, a plain object standalone. */
  req: unknown;
}

export interface VerifyClientRefusal {
  /** An integer from 300 to 599 (a 3xx with a `Location` header redirects); any other `status` answers 500. */
  status: number;
  reason?: string;
  headers?: Record<string, string>;
}

export interface ServerOptions {
  /** `0` picks a free port; required unless `server`. */
  port?: number;
  /** Default `::` (dual-stack), or `0.0.0.0` without IPv6. */
  host?: string;
  /** An http.Server or https.Server to attach to (what express's `app.listen()` returns). */
  server?: import('node:http').Server | import('node:https').Server;
  /** A falsy result answers 401, a refusal its status, anything else accepts and becomes `connection.context`. */
  verifyClient?:
    | ((info: VerifyClientInfo) => unknown)
    | ((info: VerifyClientInfo, cb: (result: unknown, code?: number, message?: string, headers?: Record<string, string>) => void) => void);
  /** Returns one of the offered protocols, or `false`. */
  handleProtocols?: (protocols: string[], info: VerifyClientInfo) => string | false | Promise<string | false>;
  /** PEM certificate chain and key: serve `wss://` from the addon. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Ping period in ms; 0 disables. Default 30000. */
  heartbeatInterval?: number;
  /** Unsent bytes after which a connection is dropped (1008). Default 16 MiB. */
  maxBackpressure?: number;
  /** Bytes of one connection's messages waiting for JS before it stops being read. Default 1 MiB. */
  maxReceiveBuffer?: number;
  /** The same across all connections, messages still arriving included. Default 64 MiB. */
  maxReceiveBufferTotal?: number;
  /** Upgrades past this many open connections are answered 503. Default `Infinity`. */
  maxConnections?: number;
  /** SO_REUSEPORT (Linux, macOS). */
  reusePort?: boolean;
  /** Only upgrade this path (the query is ignored). */
  path?: string;
  /** Default `true`. */
  json?: boolean;
  /** Bytes; default 16 MiB. Larger messages close the connection with 1009. */
  maxPayload?: number;
  /** Milliseconds; default 10000. Bounds `verifyClient` and `handleProtocols` too, attached or standalone. */
  handshakeTimeout?: number;
  /** permessage-deflate for clients that offer it (README, "Compression"). Default `false`. */
  perMessageDeflate?: boolean | ServerDeflateOptions;
  /** Join a Redis pub/sub channel: `send` reaches the clients of every Server on it (README, "Cluster"). */
  cluster?: ClusterOptions;
}

/** The `cluster` option of a Server: an existing Redis (the package never starts one). */
export interface ClusterOptions {
  /** `redis://` or `rediss://` (TLS) URL; its `/db` part does not matter to pub/sub. */
  redis: string;
  /** The pub/sub channel: the Servers that share it share their broadcasts. Default `'mytosis-websocket'`. */
  channel?: string;
}

/** The `'cluster'` event: the Redis backplane joined (`'up'`) or was lost (`'down'`). */
export interface ClusterEvent {
  state: 'up' | 'down';
  /** On `'up'`: this node's broadcasts that reached no other node while it was not joined; 0 on `'down'`. */
  lost: number;
}

export interface AddressInfo {
  address: string;
  family: string;
  port: number;
}

/** Errors the package creates carry one of these codes. */
export type ErrorCode =
  | 'ERR_INVALID_OPTION'
  | 'ERR_INVALID_URL'
  | 'ERR_INVALID_ARG_TYPE'
  | 'ERR_INVALID_ARG_VALUE'
  | 'ERR_CLOSED'
  | 'ERR_QUEUE_FULL'
  | 'ERR_INVALID_JSON'
  | 'ERR_CONNECT'
  | 'ERR_TIMEOUT'
  | 'ERR_HANDSHAKE'
  | 'ERR_TLS'
  | 'ERR_HEARTBEAT'
  | 'ERR_BLOB_READ'
  | 'ERR_INTERNAL'
  | 'ERR_CLUSTER'
  | 'ERR_ADDON_MISSING';

export interface MytosisWebSocketError extends Error {
  code: ErrorCode | string;
  /** `ERR_INVALID_JSON`: the raw text. */
  data?: string;
  /** `ERR_INVALID_JSON`: the connection it came on. */
  connection?: Connection;
  /** `ERR_HANDSHAKE`: the HTTP status of the answer. */
  status?: number;
  /** `ERR_CLOSED` from `close()`: how many queued messages were dropped. */
  dropped?: number;
}

/** A WebSocket server served by the addon; the group of its connections. */
/** What `server.stats()` reports (README, "Server statistics"). */
export interface ServerStats {
  /** Connections open now. */
  connections: number;
  /** Connections accepted since the server started. */
  accepted: number;
  /** Data messages received, and their payload bytes. */
  messagesIn: number;
  bytesIn: number;
  /** Data messages queued to connections (a broadcast counts once per connection), and their payload bytes. */
  messagesOut: number;
  bytesOut: number;
  /** Connections that ended, by close code (`'1000'`, `'1006'`, ...). */
  closes: Record<string, number>;
  /** Messages refused: text that is not JSON (with `json`), and connections closed with 1002, 1007 or 1009. */
  invalid: number;
  /** Connections open now that do not read (`pause()`, or the receive buffers). */
  paused: number;
  /** Times a message was deflated to be sent: once per broadcast (per window size), once per single send. */
  deflateCalls: number;
  /** With `cluster`: broadcasts this server published to Redis. */
  clusterPublished: number;
  /** With `cluster`: broadcasts from other nodes this server delivered to its connections. */
  clusterReceived: number;
  /** With `cluster`: broadcasts of this server that reached no other node (Redis unreachable). */
  clusterLost: number;
  /** With `cluster`: other nodes' broadcasts that never arrived here (gaps in their sequence, outages included). */
  clusterMissed: number;
}

export declare class Server extends ConnectionGroup<ServerConnection> {
  constructor(portOrOptions: number | ServerOptions);
  /** Resolves with `address()` once listening. */
  readonly ready: Promise<AddressInfo>;
  address(): AddressInfo | null;
  /** Counted in the addon; cheap enough to poll every second. */
  stats(): ServerStats;
  /** Close every connection with `code` (1001) and `reason`; drop those still open after `timeout` ms (5000). */
  close(options?: { code?: number; reason?: string; timeout?: number }): Promise<void>;
  /** Send to the connections subscribed to `topic` (on every node of a cluster); returns how many here. */
  publish(topic: string, message: unknown, options?: { except?: ServerConnection | ServerConnection[]; compress?: boolean }): number;
  ref(): this;
  unref(): this;
  on(event: 'add', listener: (connection: ServerConnection) => void): this;
  on(event: 'remove', listener: (connection: ServerConnection, info: CloseInfo) => void): this;
  on(event: 'error', listener: (err: MytosisWebSocketError) => void): this;
  on(event: 'listening' | 'close', listener: () => void): this;
  on(event: 'cluster', listener: (event: ClusterEvent) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
}

export interface ServerDeflateOptions {
  /** Messages shorter than this many bytes go out uncompressed. Default 1024. */
  threshold?: number;
  /** zlib level, 0-9. Default 6. */
  level?: number;
  /** The largest window (8-15) for clients that allow it to be limited. */
  clientMaxWindowBits?: number;
  /** Ask clients to compress each message on its own (no inflater kept per connection). Default `true`. */
  clientNoContextTakeover?: boolean;
}

/** The Socket's permessage-deflate offer; the server decides. */
export interface SocketDeflateOptions {
  /** Messages shorter than this many bytes go out uncompressed. Default 1024. */
  threshold?: number;
  /** Default `true` (the Socket never keeps context anyway). */
  clientNoContextTakeover?: boolean;
  /** Default `false`. */
  serverNoContextTakeover?: boolean;
  clientMaxWindowBits?: number;
  serverMaxWindowBits?: number;
}

export interface SocketOptions {
  protocols?: string | string[];
  /** A WHATWG-style WebSocket constructor to use instead of the addon. */
  WebSocket?: new (url: string, protocols?: string | string[]) => unknown;
  /** For `wss://`: extra trusted certificates (PEM), or accept any certificate. */
  tls?: { ca?: string | Buffer | Array<string | Buffer>; rejectUnauthorized?: boolean };
  minReconnectionDelay?: number;
  reconnectionDelayGrowFactor?: number;
  maxReconnectionDelay?: number;
  jitter?: number;
  connectionTimeout?: number;
  maxRetries?: number;
  minUptime?: number;
  maxEnqueuedMessages?: number;
  startClosed?: boolean;
  debug?: boolean;
  json?: boolean;
  binaryType?: 'arraybuffer' | 'blob';
  maxPayload?: number;
  /** Bytes of messages waiting for JS before the socket stops reading (Node build). Default 1 MiB. */
  maxReceiveBuffer?: number;
  /**
   * Extra handshake headers (Node build), or a function, possibly async,
   * called before every attempt to give them (a fresh token on reconnect).
   */
  headers?: Record<string, string> | (() => Record<string, string> | Promise<Record<string, string>>);
  heartbeatInterval?: number;
  /** The permessage-deflate offer (Node build; browsers make their own). Default `true`. */
  perMessageDeflate?: boolean | SocketDeflateOptions;
}

export interface SocketCloseEvent extends CloseInfo {
  willReconnect: boolean;
}

/** A reconnecting WebSocket client; a Mytosis connection. */
export declare class Socket extends EventEmitter implements Connection {
  static readonly CONNECTING: 0;
  static readonly OPEN: 1;
  static readonly CLOSING: 2;
  static readonly CLOSED: 3;
  /** `url` may also be a function giving the URL (or a Promise of it) before every attempt. */
  constructor(url: string | (() => string | Promise<string>), options?: SocketOptions);
  readonly id: string;
  readonly type: 'websocket';
  readonly offline: boolean;
  readonly messages: Stream<unknown, Socket>;
  readonly readyState: 0 | 1 | 2 | 3;
  readonly url: string;
  readonly protocol: string;
  readonly retryCount: number;
  readonly bufferedAmount: number;
  send(message: unknown, options?: SendOptions): boolean;
  close(code?: number, reason?: string): void;
  reconnect(code?: number, reason?: string): void;
  ref(): this;
  unref(): this;
  on(event: 'open', listener: () => void): this;
  on(event: 'close', listener: (event: SocketCloseEvent) => void): this;
  on(event: 'reconnecting', listener: (event: { attempt: number; delay: number }) => void): this;
  on(event: 'error', listener: (err: MytosisWebSocketError) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
}

export default Socket;
