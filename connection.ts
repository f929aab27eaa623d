// Copyright 2026 the @rfc6455/websocket authors. MIT license.
// This module is browser compatible: it uses the Web platform only, and does
// I/O only through the byte streams it is given.

/**
 * One open WebSocket over any byte duplex: message assembly from fragments,
 * fail-fast UTF-8 validation, automatic pongs, keepalive pings, the close
 * handshake with a timeout, limits and backpressure. {@linkcode connect} and
 * {@linkcode serve} build it on sockets; tests and custom transports build it
 * on any pair of byte streams.
 *
 * @example Two connections over an in-memory pair
 * ```ts
 * import { WebSocketConnection } from "@rfc6455/websocket/connection";
 * import assert from "node:assert/strict";
 *
 * const a = new TransformStream<Uint8Array, Uint8Array>();
 * const b = new TransformStream<Uint8Array, Uint8Array>();
 * const client = new WebSocketConnection(
 *   { readable: a.readable, writable: b.writable },
 *   { role: "client", pingInterval: 0 },
 * );
 * const server = new WebSocketConnection(
 *   { readable: b.readable, writable: a.writable },
 *   { role: "server", pingInterval: 0 },
 * );
 * await client.send("hello");
 * for await (const message of server) {
 *   assert.equal(message, "hello");
 *   break;
 * }
 * await client.close(1000, "done");
 * assert.deepEqual(await server.closed, { code: 1000, reason: "done", wasClean: true });
 * ```
 *
 * @module
 */

import { concat, copyOf, isOwned, POOL_LIMIT } from "./_alloc.ts";
import { setFrameQueue } from "./_broadcast.ts";
import { isLentView, MAX_READ_BUFFER, ReadBuffer } from "./_readbuffer.ts";
import { messageReadable, messageWritable, sizeOf } from "./_streams.ts";
import { ConnectionClosedError, ProtocolError } from "./errors.ts";
import { type Frame, FrameDecoder } from "./frame.ts";
import { FrameWriter, handled, randomMask, RESOLVED } from "./_writer.ts";

/**
 * A bidirectional byte stream a WebSocket runs over. A `Deno.Conn` or
 * `Deno.TlsConn` is one; so is any `{ readable, writable }` pair. When the
 * optional `read`, `write` and `close` methods exist (as on `Deno.Conn`),
 * the connection uses them directly, which is faster than the streams.
 *
 * @example An in-memory transport pair
 * ```ts
 * import type { WebSocketTransport } from "@rfc6455/websocket/connection";
 * import assert from "node:assert/strict";
 *
 * const a = new TransformStream<Uint8Array, Uint8Array>();
 * const b = new TransformStream<Uint8Array, Uint8Array>();
 * const transport: WebSocketTransport = { readable: a.readable, writable: b.writable };
 * assert.equal(transport.read, undefined); // streams only: the generic path
 * ```
 */
export interface WebSocketTransport {
  /** The bytes from the peer. */
  readable: ReadableStream<Uint8Array>;
  /** The bytes to the peer. */
  writable: WritableStream<Uint8Array>;
  /** Reads into `buffer`; resolves with the count, or `null` at the end. */
  read?(buffer: Uint8Array): Promise<number | null>;
  /** Writes some of `data`; resolves with the count written. */
  write?(data: Uint8Array): Promise<number>;
  /** Closes the transport in both directions. */
  close?(): void;
}

/**
 * The per-message compression a connection uses when an extension such as
 * permessage-deflate was negotiated: `PerMessageDeflate` from
 * `@rfc6455/websocket/deflate` is one. Calls are made in message order.
 *
 * @example permessage-deflate is one
 * ```ts
 * import type { MessageCompression } from "@rfc6455/websocket/connection";
 * import { PerMessageDeflate } from "@rfc6455/websocket/deflate";
 * import assert from "node:assert/strict";
 *
 * const params = { serverNoContextTakeover: false, clientNoContextTakeover: false, serverMaxWindowBits: 15, clientMaxWindowBits: 15 };
 * const compression: MessageCompression = new PerMessageDeflate(params, "server");
 * assert.equal(compression.shouldCompress(10), false);
 * compression.close();
 * ```
 */
export interface MessageCompression {
  /** Whether a message of `size` bytes should be compressed. */
  shouldCompress(size: number): boolean;
  /** Compresses one whole message payload. */
  compress(data: Uint8Array): Promise<Uint8Array>;
  /**
   * Decompresses one whole message payload; rejects with a `ProtocolError`
   * (1009 too big, 1007 corrupt).
   */
  decompress(data: Uint8Array): Promise<Uint8Array<ArrayBuffer>>;
  /** Frees the compression contexts. */
  close(): void;
}

/**
 * The API of one open WebSocket, whatever runs it: a
 * {@linkcode WebSocketConnection} over a socket, or the adapter over
 * `Deno.upgradeWebSocket` that `serve` handlers get on edge platforms.
 *
 * @example A handler written against the interface
 * ```ts
 * import type { WebSocketSession } from "@rfc6455/websocket/connection";
 *
 * async function echo(ws: WebSocketSession): Promise<void> {
 *   for await (const message of ws) await ws.send(message);
 * }
 * void echo;
 * ```
 */
export interface WebSocketSession extends AsyncIterable<WebSocketMessage> {
  /** The subprotocol selected in the handshake ("" when none). */
  readonly protocol: string;
  /** The extensions negotiated in the handshake ("" when none). */
  readonly extensions: string;
  /** The URL of the connection ("" when not known). */
  readonly url: string;
  /** Whether the connection is open for sending. */
  readonly isOpen: boolean;
  /** The bytes queued by `send()` and not yet handed to the transport. */
  readonly bufferedAmount: number;
  /** Resolves with how the connection ended; never rejects. */
  readonly closed: Promise<CloseInfo>;
  /** The received messages as a stream. */
  readonly readable: ReadableStream<WebSocketMessage>;
  /** A stream whose chunks are sent as messages. */
  readonly writable: WritableStream<WebSocketData>;
  /**
   * Iterates the messages; with `{ copy: false }` binary messages may be
   * views valid until the next one is asked for.
   */
  messages(options?: MessagesOptions): AsyncIterableIterator<WebSocketMessage>;
  /** Sends one message; resolves when the sender may go on. */
  send(data: WebSocketData, options?: SendOptions): Promise<void>;
  /** Sends a ping; resolves with the round-trip time in milliseconds. */
  ping(data?: WebSocketData): Promise<number>;
  /** Starts the close handshake; resolves once closed. */
  close(code?: number, reason?: string): Promise<CloseInfo>;
}

/**
 * A received message: `string` for text, `Uint8Array` for binary.
 *
 * @example Telling text from binary
 * ```ts
 * import type { WebSocketMessage } from "@rfc6455/websocket/connection";
 * import assert from "node:assert/strict";
 *
 * function describe(message: WebSocketMessage): string {
 *   return typeof message === "string" ? `text of ${message.length} characters` : `${message.length} bytes`;
 * }
 * assert.equal(describe(new Uint8Array(3)), "3 bytes");
 * ```
 */
export type WebSocketMessage = string | Uint8Array<ArrayBuffer>;

/**
 * Data that {@linkcode WebSocketConnection.send} takes.
 *
 * @example What send() takes
 * ```ts
 * import type { WebSocketData } from "@rfc6455/websocket/connection";
 * import assert from "node:assert/strict";
 *
 * const data: WebSocketData[] = ["text", new Uint8Array(2), new ArrayBuffer(2), new DataView(new ArrayBuffer(2))];
 * assert.equal(data.length, 4);
 * ```
 */
export type WebSocketData = string | ArrayBufferView | ArrayBuffer;

/**
 * How a connection ended: `closed` resolves with it.
 *
 * @example A clean close
 * ```ts
 * import type { CloseInfo } from "@rfc6455/websocket/connection";
 * import assert from "node:assert/strict";
 *
 * const info: CloseInfo = { code: 1000, reason: "done", wasClean: true };
 * assert.ok(info.wasClean);
 * ```
 */
export interface CloseInfo {
  /**
   * The close code the peer sent; 1005 when its close frame had no code,
   * 1006 when the connection ended without a close handshake.
   */
  code: number;
  /** The close reason the peer sent ("" when none). */
  reason: string;
  /** Whether the closing handshake completed (both close frames exchanged). */
  wasClean: boolean;
}

/**
 * Options of {@linkcode WebSocketConnection.messages}.
 *
 * @example Taking binary messages as views
 * ```ts
 * import type { MessagesOptions } from "@rfc6455/websocket/connection";
 * import assert from "node:assert/strict";
 *
 * const options: MessagesOptions = { copy: false };
 * assert.equal(options.copy, false);
 * ```
 */
export interface MessagesOptions {
  /**
   * `false` lets a binary message over 4 KiB be a view of the
   * connection's read buffer, valid until the iterator is asked for the
   * next message or left: no allocation and no copy per message.
   *
   * @default {true}
   */
  copy?: boolean;
}

/**
 * Options of one {@linkcode WebSocketConnection.send} call.
 *
 * @example Bytes as text, uncompressed
 * ```ts
 * import type { SendOptions } from "@rfc6455/websocket/connection";
 * import assert from "node:assert/strict";
 *
 * const options: SendOptions = { binary: false, compress: false };
 * assert.equal(options.binary, false);
 * ```
 */
export interface SendOptions {
  /**
   * Send a string as a binary message (its UTF-8 bytes), or bytes as a text
   * message (they must be UTF-8). By default strings are text and bytes are
   * binary.
   *
   * @default {undefined}
   */
  binary?: boolean;
  /**
   * Compress this message when permessage-deflate was negotiated. `false`
   * sends it uncompressed whatever its size.
   *
   * @default {true}
   */
  compress?: boolean;
}

/**
 * The limits and timeouts of a connection, the same on both sides; `connect()`
 * and `serve()` take them too. Times are in milliseconds, sizes in bytes.
 *
 * @example Tight limits for an untrusted peer
 * ```ts
 * import type { ConnectionLimits } from "@rfc6455/websocket/connection";
 * import assert from "node:assert/strict";
 *
 * const limits: ConnectionLimits = { maxMessageSize: 1 << 20, maxFragments: 100, closeTimeout: 2_000 };
 * assert.equal(limits.maxFragments, 100);
 * ```
 */
export interface ConnectionLimits {
  /**
   * The largest message accepted, in bytes, after decompression. A larger
   * message closes the connection with 1009 without being buffered whole.
   *
   * @default {67108864} (64 MiB)
   */
  maxMessageSize?: number;
  /**
   * The largest frame payload accepted, in bytes. A larger frame closes the
   * connection with 1009 from its header alone.
   *
   * @default {maxMessageSize}
   */
  maxFrameSize?: number;
  /**
   * The most frames one fragmented message may have. More closes the
   * connection with 1009, so that a flood of tiny continuation frames cannot
   * pin CPU and memory.
   *
   * @default {10000}
   */
  maxFragments?: number;
  /**
   * How often to send a keepalive ping, in milliseconds; 0 disables
   * keepalive.
   *
   * @default {20000}
   */
  pingInterval?: number;
  /**
   * How long to wait for the pong of a keepalive ping, in milliseconds,
   * before closing the connection with 1011; 0 waits forever (and pings
   * every `pingInterval` all the same, answered or not).
   *
   * @default {20000}
   */
  pingTimeout?: number;
  /**
   * How long the close handshake may take, in milliseconds: after sending a
   * close frame, the wait for the peer's; after that, the wait for the
   * transport to end. Then the transport is closed regardless.
   *
   * @default {5000}
   */
  closeTimeout?: number;
  /**
   * `send()` resolves at once while at most this many bytes wait to be
   * written, and otherwise when the queue drains below it: awaiting `send()`
   * is the backpressure.
   *
   * @default {65536} (64 KiB)
   */
  writeHighWaterMark?: number;
  /**
   * The most bytes that may wait to be written. A `send()` beyond it (by a
   * sender that does not await) rejects with a `RangeError` and sends
   * nothing; a single message is always accepted by an empty queue.
   *
   * @default {16777216} (16 MiB)
   */
  maxBufferedAmount?: number;
}

/**
 * Options of a {@linkcode WebSocketConnection}. Times are in milliseconds, sizes in bytes.
 *
 * @example Tight limits for an untrusted peer
 * ```ts
 * import type { ConnectionOptions } from "@rfc6455/websocket/connection";
 * import assert from "node:assert/strict";
 *
 * const options: ConnectionOptions = {
 *   role: "server",
 *   maxMessageSize: 1 << 20,
 *   pingInterval: 10_000,
 *   closeTimeout: 2_000,
 * };
 * assert.equal(options.role, "server");
 * ```
 */
export interface ConnectionOptions extends ConnectionLimits {
  /**
   * The side of this endpoint: a `"client"` masks every frame it sends and
   * rejects masked frames; a `"server"` the reverse (RFC 6455 §5.1).
   */
  role: "client" | "server";
  /** The negotiated subprotocol ("" when none). @default {""} */
  protocol?: string;
  /** The negotiated extensions, as the `Sec-WebSocket-Extensions` value. @default {""} */
  extensions?: string;
  /** The URL of the connection (the client's target). @default {""} */
  url?: string;
  /**
   * The permessage-deflate session negotiated in the handshake; absent, no
   * compression.
   *
   * @default {undefined}
   */
  deflate?: MessageCompression;
  /**
   * Bytes that arrived after the handshake and belong to the WebSocket
   * stream (a peer may send frames right behind its handshake).
   *
   * @default {undefined}
   */
  head?: Uint8Array;
  /**
   * Aborting it closes the connection with 1001 (going away).
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
  /**
   * Makes the masking key of each frame a client sends. Only for tests: the
   * default draws a fresh key for every frame from `crypto.getRandomValues`,
   * as RFC 6455 §5.3 requires.
   *
   * @default {undefined}
   */
  maskGenerator?: () => Uint8Array;
}

/**
 * The default of {@linkcode ConnectionOptions.maxMessageSize}: 64 MiB.
 *
 * @example The value
 * ```ts
 * import { DEFAULT_MAX_MESSAGE_SIZE } from "@rfc6455/websocket/connection";
 * import assert from "node:assert/strict";
 *
 * assert.equal(DEFAULT_MAX_MESSAGE_SIZE, 64 * 1024 * 1024);
 * ```
 */
export const DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024;

const OPEN = 0;
const CLOSING = 1;
const CLOSED = 2;

// Reading from the transport pauses while READ_QUEUE_LIMIT messages or
// READ_QUEUE_SIZE bytes (UTF-16 code units for text) wait to be consumed,
// also between the frames of one read. A closing connection reads on to find
// the peer's close and queues what fits in CLOSING_QUEUE_LIMIT messages and
// CLOSING_QUEUE_SIZE bytes; data beyond that is dropped.
const READ_QUEUE_LIMIT = 16;
const READ_QUEUE_SIZE = 1024 * 1024;
const CLOSING_QUEUE_LIMIT = 4096;
const CLOSING_QUEUE_SIZE = 16 * 1024 * 1024;

const encoder = new TextEncoder();

// Keeps a received payload that views the read buffer (which the next read
// overwrites) or a much larger buffer (which it would pin).
function own(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return isOwned(bytes) ? bytes : copyOf(bytes);
}

// Encoding a string into a new array costs an allocation (about a
// microsecond in Deno); encoding into a reused buffer does not.
let scratch = new Uint8Array(64 * 1024);
const SCRATCH_LIMIT = 1024 * 1024;
function encodeToScratch(text: string): Uint8Array {
  // UTF-8 takes at most 3 bytes per UTF-16 code unit.
  const most = text.length * 3;
  if (most > SCRATCH_LIMIT) return encoder.encode(text);
  if (most > scratch.length) scratch = new Uint8Array(SCRATCH_LIMIT);
  const { written } = encoder.encodeInto(text, scratch);
  return scratch.subarray(0, written);
}

function toBytes(data: WebSocketData): Uint8Array {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) {
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
  throw new TypeError(
    `Cannot send message: data is ${typeof data}, expected string, ArrayBuffer or ArrayBufferView`,
  );
}

/**
 * Whether a close code may be sent in a close frame (RFC 6455 §7.4): 1000 to
 * 1003, 1007 to 1014, and 3000 to 4999.
 */
function isSendableCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
    (code >= 3000 && code <= 4999);
}

/**
 * The one place that maps a failure to the close code sent for it (RFC 6455
 * §7.4.1): a {@linkcode ProtocolError} carries its own; a timeout of the
 * keepalive is 1011; anything else is an internal error, 1011, sent without
 * details.
 */
function closeCodeFor(error: unknown): number {
  if (error instanceof ProtocolError) return error.closeCode;
  return 1011;
}

function closeReasonFor(error: unknown): string {
  if (!(error instanceof ProtocolError)) return "";
  // A close reason holds at most 123 bytes of UTF-8 (§5.5): cut whole
  // characters until it fits.
  let reason = error.message;
  while (encoder.encode(reason).length > 123) {
    reason = Array.from(reason).slice(0, -1).join("");
  }
  return reason;
}

interface Waiter {
  resolve(result: IteratorResult<WebSocketMessage>): void;
  reject(error: unknown): void;
  /** The consumer of `messages({ copy: false })`; absent for copies. */
  held: Borrower | undefined;
}

/** An iterator of `messages({ copy: false })`: the views it took. */
interface Borrower {
  views: Uint8Array[];
  /** False once it was left: what it still gets is copied. */
  active: boolean;
}

interface PendingPing {
  resolve(rtt: number): void;
  reject(error: unknown): void;
  start: number;
}

/**
 * One open WebSocket (RFC 6455) over a {@linkcode WebSocketTransport}.
 *
 * Messages arrive through async iteration (`for await (const message of
 * ws)`) or the {@linkcode WebSocketConnection.readable} stream; `string` for
 * text, `Uint8Array` for binary. Iteration ends when the close handshake
 * completes, whatever the code, and throws when the connection failed: a
 * {@linkcode ProtocolError} for a peer that broke the protocol or a limit, a
 * {@linkcode ConnectionClosedError} (code 1006) for a transport that ended
 * without a close handshake. Reading pauses while 16 received messages wait
 * to be consumed, so a slow consumer slows the peer instead of filling
 * memory.
 *
 * `send()` queues a message and resolves when it was written, or at once
 * while the queue is under `writeHighWaterMark`: `await ws.send(...)` is the
 * backpressure. Messages sent before `close()` are delivered before the
 * close frame. `closed` always resolves (never rejects) with the close code,
 * reason and whether the close was clean; after it settles no timer, read or
 * write is left pending.
 *
 * @example An echo over an in-memory pair
 * ```ts
 * import { WebSocketConnection } from "@rfc6455/websocket/connection";
 * import assert from "node:assert/strict";
 *
 * const a = new TransformStream<Uint8Array, Uint8Array>();
 * const b = new TransformStream<Uint8Array, Uint8Array>();
 * const client = new WebSocketConnection({ readable: a.readable, writable: b.writable }, { role: "client" });
 * const server = new WebSocketConnection({ readable: b.readable, writable: a.writable }, { role: "server" });
 * const echo = (async () => {
 *   for await (const message of server) await server.send(message);
 * })();
 * await client.send(new Uint8Array([1, 2, 3]));
 * await client.send("héllo");
 * const received = [];
 * for await (const message of client) {
 *   received.push(message);
 *   if (received.length === 2) break;
 * }
 * assert.deepEqual(received, [new Uint8Array([1, 2, 3]), "héllo"]);
 * const rtt = await client.ping();
 * assert.ok(rtt >= 0);
 * await client.close();
 * await echo;
 * assert.equal((await server.closed).code, 1000);
 * ```
 */
export class WebSocketConnection implements WebSocketSession {
  readonly #transport: WebSocketTransport;
  readonly #role: "client" | "server";
  readonly #decoder: FrameDecoder;
  readonly #deflate: MessageCompression | undefined;
  readonly #maxMessageSize: number;
  readonly #maxFragments: number;
  readonly #pingInterval: number;
  readonly #pingTimeout: number;
  readonly #closeTimeout: number;
  readonly #maxBufferedAmount: number;
  readonly #protocol: string;
  readonly #extensions: string;
  readonly #url: string;

  #state = OPEN;
  #closeSent = false;
  #closeReceived = false;
  #closeInfo: CloseInfo | undefined;
  #error: unknown;
  #discard = false;
  readonly #closed: Promise<CloseInfo>;
  #resolveClosed!: (info: CloseInfo) => void;

  // Receiving.
  #messages: WebSocketMessage[] = [];
  #queuedSize = 0;
  #waiters: Waiter[] = [];
  #resume: (() => void) | undefined;
  #readLoop: Promise<void> | undefined;
  #reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  #fragmentOpcode = 0;
  #fragmentCompressed = false;
  #fragments: Uint8Array[] = [];
  #fragmentCount = 0;
  #fragmentSize = 0;
  #textParts: string[] = [];
  readonly #utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

  #viewsReadBuffer = false;
  // The read buffer, when the transport has read(): binary messages are
  // lent from it to iterators of messages({ copy: false }).
  #buffer: ReadBuffer | undefined;
  #borrowers = 0;

  // Sending.
  readonly #out: FrameWriter;
  #sendChain: Promise<void> = RESOLVED;
  #compressing = 0;

  // Pings.
  #pings = new Map<number, PendingPing>();
  #pingCounter = 0;
  #keepaliveTimer: ReturnType<typeof setTimeout> | undefined;
  // The payload of the keepalive ping still unanswered (pingTimeout 0).
  #keepalivePayload: Uint8Array | undefined;
  #pongTimer: ReturnType<typeof setTimeout> | undefined;
  #closeTimer: ReturnType<typeof setTimeout> | undefined;
  #signal: AbortSignal | undefined;
  #onAbort: (() => void) | undefined;

  /**
   * Starts a WebSocket session over an open transport, after the opening
   * handshake.
   *
   * @param transport The byte duplex: a `Deno.Conn`, or any
   * `{ readable, writable }`.
   * @param options The role, limits, timeouts and negotiated parameters.
   * @throws {RangeError} If a size or count is not a non-negative integer, a
   * timeout is negative or not finite, or a
   * timeout is over 2^31 - 1 ms (what a timer can wait).
   */
  constructor(transport: WebSocketTransport, options: ConnectionOptions) {
    // The defaults are valid: only what the caller gave is checked.
    checkConnectionLimits(options);
    this.#transport = transport;
    this.#role = options.role;
    this.#maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    this.#maxFragments = options.maxFragments ?? 10_000;
    this.#pingInterval = options.pingInterval ?? 20_000;
    this.#pingTimeout = options.pingTimeout ?? 20_000;
    this.#closeTimeout = options.closeTimeout ?? 5_000;
    this.#maxBufferedAmount = options.maxBufferedAmount ?? 16 * 1024 * 1024;
    this.#out = new FrameWriter(
      transport,
      options.writeHighWaterMark ?? 64 * 1024,
      {
        mask: this.#role === "client"
          ? options.maskGenerator ?? randomMask
          : undefined,
        isOpen: () => this.#state === OPEN,
        hasUnread: () => this.#messages.length > 0,
        onError: (error) => this.#onWriteError(error),
      },
    );
    this.#protocol = options.protocol ?? "";
    this.#extensions = options.extensions ?? "";
    this.#url = options.url ?? "";
    this.#deflate = options.deflate;
    this.#decoder = new FrameDecoder({
      role: this.#role,
      // A frame is never larger than its message (compressed sizes count
      // against maxMessageSize too), so a frame over either limit is refused
      // from its header (§10.4).
      maxPayloadSize: Math.min(
        options.maxFrameSize ?? this.#maxMessageSize,
        this.#maxMessageSize,
      ),
      allowRsv1: this.#deflate !== undefined,
    });
    this.#closed = new Promise((resolve) => this.#resolveClosed = resolve);
    if (options.signal !== undefined) {
      const signal = options.signal;
      this.#signal = signal;
      this.#onAbort = () => this.#closeInternal(1001, "");
      if (signal.aborted) queueMicrotask(this.#onAbort);
      else signal.addEventListener("abort", this.#onAbort, { once: true });
    }
    this.#readLoop = this.#read(options.head);
    this.#scheduleKeepalive();
  }

  /** The subprotocol selected in the handshake ("" when none). */
  get protocol(): string {
    return this.#protocol;
  }

  /** The extensions negotiated in the handshake, as the header value ("" when none). */
  get extensions(): string {
    return this.#extensions;
  }

  /** The URL of the connection ("" when not known). */
  get url(): string {
    return this.#url;
  }

  /** Whether the connection is open for sending: `close()` was not called and no close arrived. */
  get isOpen(): boolean {
    return this.#state === OPEN;
  }

  /** The number of bytes queued by `send()` and not yet handed to the transport. */
  get bufferedAmount(): number {
    return this.#out.queuedBytes;
  }

  /**
   * Resolves with the close code, reason and cleanliness once the connection
   * is closed and its transport released. It never rejects.
   */
  get closed(): Promise<CloseInfo> {
    return this.#closed;
  }

  /**
   * Sends one message: a string as text, bytes as binary (unless
   * `options.binary` says otherwise). Resolves once the message is handed to
   * the transport, or at once while fewer than `writeHighWaterMark` bytes
   * wait: await it for backpressure. A rejected send that nobody awaits does
   * not end the process.
   *
   * @param data The message.
   * @param options Binary or text, and compression.
   * @returns A promise that resolves when the sender may go on.
   * @throws {ConnectionClosedError} (rejects) If the connection is closing or
   * closed.
   * @throws {RangeError} (rejects) If `maxBufferedAmount` bytes already wait.
   * @throws {TypeError} If `data` is not a string or bytes.
   */
  send(data: WebSocketData, options: SendOptions = {}): Promise<void> {
    if (this.#state !== OPEN) return this.#rejected(this.#closedError());
    const text = options.binary === undefined
      ? typeof data === "string"
      : !options.binary;
    // A string sent at once is encoded into a scratch buffer that the frame
    // encoder copies from; one that waits behind compression needs its own.
    const waits = this.#compressing > 0 ||
      (this.#deflate !== undefined && options.compress !== false);
    let payload = typeof data === "string"
      ? (waits ? encoder.encode(data) : encodeToScratch(data))
      : toBytes(data);
    // A lent view (of this connection or another one: a relay) may be read
    // over once its iterator moves on: what waits for compression gets a
    // copy (the frame encoder copies the rest now).
    if (waits && isLentView(payload)) payload = payload.slice();
    if (
      this.#out.queuedBytes > 0 &&
      this.#out.queuedBytes + payload.length > this.#maxBufferedAmount
    ) {
      return this.#rejected(
        new RangeError(
          `Cannot send message: ${this.#out.queuedBytes} bytes already wait to be written, limit is ${this.#maxBufferedAmount}`,
        ),
      );
    }
    const opcode = text ? 0x1 : 0x2;
    const deflate = this.#deflate;
    if (
      deflate !== undefined && options.compress !== false &&
      deflate.shouldCompress(payload.length)
    ) {
      // Compression is asynchronous: later sends queue behind it in order.
      this.#compressing++;
      const done = this.#sendChain.then(async () => {
        let compressed: Uint8Array;
        try {
          compressed = await deflate.compress(payload);
        } catch (error) {
          // The connection ended meanwhile (its compression closed with
          // it): the send fails as every send on a closed connection does.
          if (this.#state === CLOSED) throw this.#closedError();
          this.#fail(error);
          throw error;
        } finally {
          this.#compressing--;
        }
        // Accepted while open: it goes out before our close frame. If the
        // peer's close was answered meanwhile, the send fails: it is not
        // dropped in silence.
        if (this.#closeSent || this.#state === CLOSED) {
          throw this.#closedError();
        }
        this.#out.enqueue(opcode, compressed, true);
      });
      this.#sendChain = done.catch(() => {});
      return handled(done.then(() => this.#out.drained()));
    }
    if (this.#compressing > 0) {
      const done = this.#sendChain.then(() => {
        // Accepted while open: it goes out before the close frame.
        if (this.#closeSent || this.#state === CLOSED) {
          throw this.#closedError();
        }
        this.#out.enqueue(opcode, payload, false);
      });
      this.#sendChain = done.catch(() => {});
      return handled(done.then(() => this.#out.drained()));
    }
    this.#out.enqueue(opcode, payload, false);
    return this.#out.drained();
  }

  static {
    // broadcast.ts hands one frame, encoded once, to many connections
    // (through _broadcast.ts): queued here as send() would queue its own.
    setFrameQueue((ws, frame, payloadSize, compress) => {
      if (ws.#state !== OPEN) return "closed";
      if (
        ws.#role === "client" || ws.#compressing > 0 ||
        (compress && ws.#deflate?.shouldCompress(payloadSize) === true)
      ) {
        return "send";
      }
      const queued = ws.#out.queuedBytes;
      if (queued > 0 && queued + frame.length > ws.#maxBufferedAmount) {
        return "full";
      }
      ws.#out.enqueueEncoded(frame);
      return "queued";
    });
  }

  /**
   * Sends a ping and resolves with the round-trip time in milliseconds when
   * its pong arrives (RFC 6455 §5.5.2). A pong also answers every ping sent
   * before it.
   *
   * @param data At most 125 bytes of payload; by default a 4-byte counter.
   * @returns The round-trip time in milliseconds.
   * @throws {ConnectionClosedError} (rejects) If the connection closes before
   * the pong arrives.
   * @throws {RangeError} (rejects) If `data` is over 125 bytes.
   */
  ping(data?: WebSocketData): Promise<number> {
    if (this.#state !== OPEN) return this.#rejected(this.#closedError());
    const id = ++this.#pingCounter;
    let payload: Uint8Array;
    if (data === undefined) {
      payload = new Uint8Array(4);
      new DataView(payload.buffer).setUint32(0, id);
    } else {
      payload = typeof data === "string" ? encoder.encode(data) : toBytes(data);
      if (payload.length > 125) {
        return this.#rejected(
          new RangeError(
            `Cannot send ping: payload is ${payload.length} bytes, limit is 125`,
          ),
        );
      }
    }
    const { promise, resolve, reject } = Promise.withResolvers<number>();
    this.#pings.set(id, { resolve, reject, start: performance.now() });
    const key = pingKey(payload);
    const ids = this.#pingKeys.get(key);
    if (ids === undefined) this.#pingKeys.set(key, [id]);
    else ids.push(id);
    this.#out.enqueue(0x9, payload, false);
    return handled(promise);
  }

  // The pending pings by payload, oldest first: a pong answers the oldest
  // ping with its payload (two pings may carry the same one).
  #pingKeys = new Map<string, number[]>();

  /**
   * Starts the close handshake (RFC 6455 §7.1.2): sends a close frame after
   * every message already sent, waits up to `closeTimeout` for the peer's,
   * then closes the transport. Calling it again, or after the peer closed,
   * just waits.
   *
   * @param code A close code that may be sent: 1000 to 1003, 1007 to 1014, or
   * 3000 to 4999.
   * @param reason At most 123 bytes of UTF-8.
   * @returns The connection's {@linkcode CloseInfo}, once closed.
   * @throws {RangeError} If the code may not be sent or the reason is too
   * long.
   */
  close(code = 1000, reason = ""): Promise<CloseInfo> {
    if (!Number.isInteger(code) || !isSendableCode(code)) {
      throw new RangeError(
        `Cannot close WebSocket: code ${code} is not 1000-1003, 1007-1014 or 3000-4999`,
      );
    }
    const size = encoder.encode(reason).length;
    if (size > 123) {
      throw new RangeError(
        `Cannot close WebSocket: reason is ${size} bytes, limit is 123`,
      );
    }
    this.#closeInternal(code, reason);
    return this.#closed;
  }

  /**
   * The received messages as a `ReadableStream` (the shape of WHATWG
   * `WebSocketStream`). Cancelling it closes the connection with 1000.
   * Reading it and iterating the connection share one queue.
   */
  get readable(): ReadableStream<WebSocketMessage> {
    this.#readable ??= messageReadable(
      () => this.#next(undefined),
      () => this.#closeInternal(1000, ""),
    );
    return this.#readable;
  }
  #readable: ReadableStream<WebSocketMessage> | undefined;

  /**
   * A `WritableStream` that sends each chunk as a message (strings as text,
   * bytes as binary), with backpressure. Closing it closes the connection
   * with 1000.
   */
  get writable(): WritableStream<WebSocketData> {
    this.#writable ??= messageWritable(
      (chunk) => this.send(chunk),
      () => {
        this.#closeInternal(1000, "");
        return this.#closed;
      },
    );
    return this.#writable;
  }
  #writable: WritableStream<WebSocketData> | undefined;

  /**
   * Iterates the received messages until the connection closes. Each binary
   * message is an array of its own (one over 256 KiB, read from a socket, is
   * a view of the buffer its frame was read into, which nothing reads into
   * again: its `byteOffset` is not 0, and its `buffer` also holds the frame
   * header and up to 4 KiB of the frames after it); see
   * {@linkcode WebSocketConnection.messages} for views without a copy.
   *
   * @returns An async iterator of messages.
   */
  [Symbol.asyncIterator](): AsyncIterableIterator<WebSocketMessage> {
    return this.messages();
  }

  /**
   * Iterates the received messages until the connection closes, like
   * `for await (const message of ws)`. With `{ copy: false }` a binary
   * message over 4 KiB may be a view of the connection's read buffer
   * instead of an array of its own (smaller ones are copied out of a shared
   * slab, which costs less): it is valid until this iterator is asked for
   * the next message or left, and then its bytes may be read over. That saves an
   * allocation and a copy per message (at 64 KiB, most of what a message
   * costs): an echo, a relay or a parser that is done with each message
   * before taking the next should use it; keep a message longer with
   * `message.slice()`. `send()` may be given such a view: it copies what it
   * keeps. Text messages are strings either way, and other readers of the
   * connection (another iterator, `readable`) still get arrays of their own
   * (over 256 KiB, views of their frame's own buffer, as above).
   *
   * @example An echo without a copy per message
   * ```ts
   * import { WebSocketConnection } from "@rfc6455/websocket/connection";
   * import assert from "node:assert/strict";
   *
   * const a = new TransformStream<Uint8Array, Uint8Array>();
   * const b = new TransformStream<Uint8Array, Uint8Array>();
   * const client = new WebSocketConnection({ readable: a.readable, writable: b.writable }, { role: "client" });
   * const server = new WebSocketConnection({ readable: b.readable, writable: a.writable }, { role: "server" });
   * const echo = (async () => {
   *   for await (const message of server.messages({ copy: false })) await server.send(message);
   * })();
   * await client.send(new Uint8Array([1, 2, 3]));
   * for await (const message of client) {
   *   assert.deepEqual(message, new Uint8Array([1, 2, 3]));
   *   break;
   * }
   * await client.close();
   * await echo;
   * ```
   *
   * @param options `copy: false` to take binary messages as views.
   * @returns An async iterator of messages.
   */
  messages(
    options: MessagesOptions = {},
  ): AsyncIterableIterator<WebSocketMessage> {
    if (options.copy !== false) {
      const iterator: AsyncIterableIterator<WebSocketMessage> = {
        next: () => this.#next(undefined),
        return: () =>
          Promise.resolve({ value: undefined, done: true } as IteratorResult<
            WebSocketMessage
          >),
        [Symbol.asyncIterator]: () => iterator,
      };
      return iterator;
    }
    // The views this iterator handed out, given back at its next call. A
    // loop that runs to the end of the connection leaves the count of
    // borrowers as it is: nothing is lent after the end.
    const held: Borrower = { views: [], active: true };
    this.#borrowers++;
    const release = () => {
      for (const view of held.views) this.#buffer?.release(view);
      held.views.length = 0;
    };
    const iterator: AsyncIterableIterator<WebSocketMessage> = {
      next: () => {
        release();
        if (!held.active) {
          return Promise.resolve(
            { value: undefined, done: true } as IteratorResult<
              WebSocketMessage
            >,
          );
        }
        return this.#next(held);
      },
      return: () => {
        if (held.active) {
          // A next() still pending gets a copy: nobody gives a view back.
          held.active = false;
          this.#borrowers--;
          release();
        }
        return Promise.resolve(
          { value: undefined, done: true } as IteratorResult<
            WebSocketMessage
          >,
        );
      },
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }

  // ---- receiving ----

  // `held` receives the views taken by a consumer that borrows.
  #next(
    held: Borrower | undefined,
  ): Promise<IteratorResult<WebSocketMessage>> {
    if (this.#messages.length > 0) {
      const value = this.#messages.shift()!;
      this.#queuedSize -= sizeOf(value);
      if (this.#resume !== undefined && !this.#queueFull()) {
        const resume = this.#resume;
        this.#resume = undefined;
        resume();
      }
      return Promise.resolve({
        value: this.#take(value, held),
        done: false,
      });
    }
    if (
      this.#closeInfo !== undefined || this.#readDone ||
      this.#error !== undefined
    ) {
      return this.#endOfMessages();
    }
    return new Promise((resolve, reject) =>
      this.#waiters.push({ resolve, reject, held })
    );
  }

  // A message leaves the queue: a lent view stays lent to a consumer that
  // borrows (until its next call), and is copied for any other.
  #take(
    message: WebSocketMessage,
    held: Borrower | undefined,
  ): WebSocketMessage {
    const buffer = this.#buffer;
    if (
      typeof message === "string" || buffer === undefined ||
      !buffer.isLent(message)
    ) {
      return message;
    }
    if (held !== undefined && held.active) {
      held.views.push(message);
      return message;
    }
    buffer.release(message);
    return copyOf(message);
  }

  #readDone = false;

  #endOfMessages(): Promise<IteratorResult<WebSocketMessage>> {
    if (this.#error !== undefined) return Promise.reject(this.#error);
    return Promise.resolve({ value: undefined, done: true });
  }

  #deliver(message: WebSocketMessage): void {
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) {
      waiter.resolve({
        value: this.#take(message, waiter.held),
        done: false,
      });
      return;
    }
    const size = sizeOf(message);
    // Nobody consumes and close() was called: what arrives while we wait
    // for the peer's close is bounded (an open connection pauses instead).
    if (
      this.#state !== OPEN &&
      (this.#messages.length >= CLOSING_QUEUE_LIMIT ||
        this.#queuedSize + size > CLOSING_QUEUE_SIZE)
    ) {
      return;
    }
    this.#messages.push(message);
    this.#queuedSize += size;
  }

  async #read(head: Uint8Array | undefined): Promise<void> {
    const transport = this.#transport;
    try {
      if (transport.read !== undefined) {
        // One buffer, decoded in place: a frame that a read cuts stays in
        // it and the next read appends to it, so payloads are views of the
        // buffer (copied, or lent, before the bytes are read over).
        const buffer = new ReadBuffer(head);
        this.#buffer = buffer;
        this.#viewsReadBuffer = true;
        let frameSize = 0;
        let count: number | null = buffer.pending.length;
        while (true) {
          if (count > 0) {
            const decoded = this.#decodeBuffer(buffer);
            frameSize = decoded.frameSize;
            if (decoded.pending !== undefined) await decoded.pending;
          }
          if (this.#readDone) break;
          if (this.#mustPause()) await this.#paused();
          const room = buffer.room(frameSize);
          count = await transport.read(room);
          if (count === null) break;
          buffer.filled(count, room.length);
        }
      } else {
        if (head !== undefined && head.length > 0) {
          await this.#receive(head.slice());
        }
        const reader = transport.readable.getReader();
        this.#reader = reader;
        while (!this.#readDone) {
          if (this.#mustPause()) await this.#paused();
          const { value, done } = await reader.read();
          if (done) break;
          const pending = this.#receive(value);
          if (pending !== undefined) await pending;
        }
      }
      if (!this.#readDone) this.#onEnd(undefined);
    } catch (error) {
      if (!this.#readDone) this.#onEnd(error);
    } finally {
      this.#readDone = true;
      if (this.#reader !== undefined) {
        try {
          this.#reader.releaseLock();
        } catch {
          // A pending read keeps the lock; the transport is closed anyway.
        }
      }
    }
  }

  // An open connection pauses reading while its queue is full; a closing
  // one reads on (for at most closeTimeout) to find the peer's close frame,
  // even when nobody consumes the messages.
  #mustPause(): boolean {
    return this.#state === OPEN && this.#queueFull();
  }

  #queueFull(): boolean {
    return this.#messages.length >= READ_QUEUE_LIMIT ||
      this.#queuedSize >= READ_QUEUE_SIZE;
  }

  #paused(): Promise<void> {
    return new Promise((resolve) => this.#resume = resolve);
  }

  #resumeReading(): void {
    const resume = this.#resume;
    this.#resume = undefined;
    resume?.();
  }

  // The transport ended (or failed) on the peer's side.
  #onEnd(error: unknown): void {
    this.#readDone = true;
    if (this.#state === CLOSED) return;
    if (!this.#closeReceived && this.#error === undefined) {
      this.#error = new ConnectionClosedError(1006, "", { cause: error });
    }
    this.#terminate();
  }

  // Decodes a chunk; returns a promise only when a frame needs async work.
  #receive(chunk: Uint8Array): Promise<void> | undefined {
    if (this.#discard) return undefined;
    let frames: Frame[];
    try {
      frames = this.#decoder.push(chunk);
    } catch (error) {
      this.#discard = true;
      this.#fail(error);
      return undefined;
    }
    return this.#onFrames(frames);
  }

  // Decodes the complete frames of the read buffer in place, and tells the
  // size of the frame its bytes end inside, once known.
  #decodeBuffer(
    buffer: ReadBuffer,
  ): { pending: Promise<void> | undefined; frameSize: number } {
    const bytes = buffer.pending;
    if (this.#discard) {
      buffer.consume(bytes.length);
      return { pending: undefined, frameSize: 0 };
    }
    let decoded: { frames: Frame[]; used: number; incomplete: number };
    try {
      decoded = this.#decoder.decodeInPlace(bytes);
    } catch (error) {
      buffer.consume(bytes.length);
      this.#discard = true;
      this.#fail(error);
      return { pending: undefined, frameSize: 0 };
    }
    // The bytes stay as they are until the next read, which waits for the
    // frames to be handled.
    buffer.consume(decoded.used);
    return {
      pending: this.#onFrames(decoded.frames),
      frameSize: decoded.incomplete,
    };
  }

  #onFrames(frames: Frame[]): Promise<void> | undefined {
    // A read that brought several frames is likely to get several replies:
    // they are written together (see #startPump).
    if (frames.length > 1) this.#out.expectReplies();
    for (let i = 0; i < frames.length; i++) {
      if (this.#discard) return undefined;
      const pending = this.#onFrame(frames[i]!);
      if (pending !== undefined) {
        return this.#receiveRest(pending, frames, i + 1);
      }
      // One read can hold thousands of small frames: the queue's bound
      // holds between them too (the read buffer is not reused meanwhile).
      if (i + 1 < frames.length && this.#mustPause()) {
        return this.#receiveRest(this.#paused(), frames, i + 1);
      }
    }
    this.#failOnDecoderError();
    return undefined;
  }

  // The decoder returns the good frames of a chunk that breaks later on,
  // and keeps the error: the connection fails once they are handled.
  #failOnDecoderError(): void {
    const error = this.#decoder.error;
    if (error === undefined || this.#discard) return;
    this.#discard = true;
    this.#fail(error);
  }

  async #receiveRest(
    pending: Promise<void>,
    frames: Frame[],
    from: number,
  ): Promise<void> {
    await pending;
    for (let i = from; i < frames.length; i++) {
      if (this.#discard) return;
      const next = this.#onFrame(frames[i]!);
      if (next !== undefined) await next;
      if (i + 1 < frames.length && this.#mustPause()) await this.#paused();
    }
    this.#failOnDecoderError();
  }

  #onFrame(frame: Frame): Promise<void> | undefined {
    const opcode = frame.opcode;
    try {
      switch (opcode) {
        case 0x1:
        case 0x2:
          return this.#onDataStart(frame);
        case 0x0:
          return this.#onFragment(frame);
        case 0x8:
          this.#onClose(frame.payload);
          return undefined;
        case 0x9:
          this.#onPing(frame.payload);
          return undefined;
        default:
          this.#onPong(frame.payload);
          return undefined;
      }
    } catch (error) {
      this.#discard = true;
      this.#fail(error);
      return undefined;
    }
  }

  #onDataStart(frame: Frame): Promise<void> | undefined {
    const payload = frame.payload;
    if (frame.fin && !frame.rsv1) {
      // The common case: a whole message in one frame.
      if (frame.opcode === 0x1) this.#deliver(this.#decodeText(payload, false));
      else if (this.#viewsReadBuffer) this.#deliver(this.#keep(payload, true));
      else this.#deliver(payload as Uint8Array<ArrayBuffer>);
      return undefined;
    }
    this.#fragmentOpcode = frame.opcode;
    this.#fragmentCompressed = frame.rsv1;
    this.#fragmentCount = 0;
    this.#fragmentSize = 0;
    return this.#onFragment(frame);
  }

  #onFragment(frame: Frame): Promise<void> | undefined {
    const payload = frame.payload;
    this.#fragmentCount++;
    this.#fragmentSize += payload.length;
    if (this.#fragmentCount > this.#maxFragments) {
      throw new ProtocolError(
        `Cannot read message: it has over ${this.#maxFragments} fragments, limit is ${this.#maxFragments}`,
        1009,
      );
    }
    if (this.#fragmentSize > this.#maxMessageSize) {
      throw new ProtocolError(
        `Cannot read message: it is over ${this.#maxMessageSize} bytes, limit is ${this.#maxMessageSize}`,
        1009,
      );
    }
    if (this.#fragmentOpcode === 0x1 && !this.#fragmentCompressed) {
      // §8.1: fail fast, at the fragment where the UTF-8 goes wrong.
      if (payload.length > 0 || frame.fin) {
        this.#textParts.push(this.#decodeText(payload, !frame.fin));
      }
      if (frame.fin) {
        const text = this.#textParts.length === 1
          ? this.#textParts[0]!
          : this.#textParts.join("");
        this.#textParts = [];
        this.#deliver(text);
      }
      return undefined;
    }
    if (payload.length > 0) this.#fragments.push(this.#keep(payload, false));
    if (!frame.fin) return undefined;
    const parts = this.#fragments;
    this.#fragments = [];
    const data = parts.length === 1
      ? parts[0]!
      : concat(parts, this.#fragmentSize);
    if (!this.#fragmentCompressed) {
      this.#deliver(data as Uint8Array<ArrayBuffer>);
      return undefined;
    }
    return this.#inflate(this.#fragmentOpcode, data);
  }

  // A payload to keep past this read. A view of the read buffer is lent
  // (a whole binary message over POOL_LIMIT bytes, to a consumer that
  // borrows, while the connection is open), or copied: a small copy comes
  // cheap out of a slab, while lending makes the next read take another
  // buffer. Lent views pin at most 1 MiB of buffers, or twice their own
  // size (then a payload is copied). A closing connection copies: the
  // messages it keeps for nobody in particular (up to CLOSING_QUEUE_SIZE
  // bytes) must not each pin a read buffer many times their size. A payload
  // over MAX_READ_BUFFER needs no copy: its buffer was grown for its frame,
  // and is never read into again once the frame is consumed.
  #keep(payload: Uint8Array, message: boolean): Uint8Array<ArrayBuffer> {
    const buffer = this.#buffer;
    if (buffer !== undefined) {
      // Not lent: its buffer would come back as a spare that no read needs.
      if (payload.length > MAX_READ_BUFFER) {
        return payload as Uint8Array<ArrayBuffer>;
      }
      if (
        message && this.#borrowers > 0 && payload.length > POOL_LIMIT &&
        this.#state === OPEN && buffer.canLend(payload)
      ) {
        buffer.lend(payload);
        return payload as Uint8Array<ArrayBuffer>;
      }
      // A view of the read buffer: never an array of its own.
      return copyOf(payload);
    }
    return own(payload);
  }

  async #inflate(opcode: number, data: Uint8Array): Promise<void> {
    try {
      const inflated = await this.#deflate!.decompress(data);
      if (this.#discard) return;
      // The compression's own limit bounds the inflating; a connection may
      // have a smaller one (a PerMessageDeflate made without it).
      if (inflated.length > this.#maxMessageSize) {
        throw new ProtocolError(
          `Cannot read message: it inflates to ${inflated.length} bytes, limit is ${this.#maxMessageSize}`,
          1009,
        );
      }
      this.#deliver(
        opcode === 0x1 ? this.#decodeText(inflated, false) : inflated,
      );
    } catch (error) {
      this.#discard = true;
      this.#fail(error);
    }
  }

  #decodeText(bytes: Uint8Array, stream: boolean): string {
    try {
      return this.#utf8.decode(bytes, { stream });
    } catch (error) {
      throw new ProtocolError(
        "Cannot read message: text is not valid UTF-8",
        1007,
        { cause: error },
      );
    }
  }

  #onPing(payload: Uint8Array): void {
    // §5.5.2: every ping is answered until the peer's close arrives (then
    // frames are discarded before they get here), also after our close.
    if (this.#state === CLOSED) return;
    // One pong owed at most: a newer ping replaces the pong not yet written
    // (RFC 6455 §5.5.3 allows answering only the most recent ping).
    this.#out.pong(own(payload));
  }

  #onPong(payload: Uint8Array): void {
    const id = this.#pingKeys.get(pingKey(payload))?.[0];
    if (id === undefined) return; // §5.5.3: an unsolicited pong needs nothing.
    const now = performance.now();
    // A pong answers its ping and every ping sent before it.
    for (const [pending, ping] of this.#pings) {
      if (pending > id) break;
      this.#pings.delete(pending);
      ping.resolve(now - ping.start);
    }
    for (const [key, ids] of this.#pingKeys) {
      while (ids.length > 0 && ids[0]! <= id) ids.shift();
      if (ids.length === 0) this.#pingKeys.delete(key);
    }
  }

  #onClose(payload: Uint8Array): void {
    let code = 1005;
    let reason = "";
    // §5.5.1: a close body is empty, or a 2-byte code and a UTF-8 reason.
    if (payload.length === 1) {
      throw new ProtocolError("Cannot read close frame: body is 1 byte", 1002);
    }
    if (payload.length >= 2) {
      code = (payload[0]! << 8) | payload[1]!;
      if (!isSendableCode(code)) {
        throw new ProtocolError(
          `Cannot read close frame: code ${code} is not allowed on the wire`,
          1002,
        );
      }
      try {
        reason = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })
          .decode(
            payload.subarray(2),
          );
      } catch (error) {
        throw new ProtocolError(
          "Cannot read close frame: reason is not valid UTF-8",
          1002,
          { cause: error },
        );
      }
    }
    this.#closeReceived = true;
    this.#discard = true;
    // The peer's close answers our ping too: a pong timer armed before it
    // must not fail a connection that is closing cleanly.
    this.#stopKeepalive();
    this.#closeInfo ??= { code, reason, wasClean: true };
    if (!this.#closeSent) {
      // §5.5.1: answer with the same code (and reason, as ws and Python's
      // websockets do: a browser shows the reason of the answer); an empty
      // body gets 1000.
      this.#sendClose(code === 1005 ? 1000 : code, reason);
    }
    this.#state = CLOSING;
    this.#endMessages();
    if (this.#role === "server") {
      // §7.1.1: the server closes the TCP connection first.
      this.#flushThenTerminate();
    } else {
      // §7.1.1: the client writes its answer, then waits for the server to
      // close the TCP connection: the read loop sees the end, or the close
      // timer fires.
      this.#armCloseTimer();
      void this.#out.flush();
    }
  }

  // ---- closing ----

  #onWriteError(error: unknown): void {
    if (this.#state === CLOSED) return;
    if (this.#error === undefined && !this.#closeReceived) {
      this.#error = new ConnectionClosedError(1006, "", { cause: error });
    }
    this.#terminate();
  }

  #sendClose(code: number, reason: string): void {
    this.#closeSent = true;
    const reasonBytes = encoder.encode(reason);
    const payload = new Uint8Array(2 + reasonBytes.length);
    payload[0] = code >>> 8;
    payload[1] = code & 0xff;
    payload.set(reasonBytes, 2);
    this.#out.enqueue(0x8, payload, false);
  }

  #closeInternal(code: number, reason: string): void {
    if (this.#state !== OPEN) return;
    this.#state = CLOSING;
    this.#stopKeepalive();
    this.#resumeReading();
    const send = () => {
      if (this.#state === CLOSED || this.#closeSent) return;
      this.#sendClose(code, reason);
      this.#armCloseTimer();
    };
    // Messages still being compressed go out before the close frame.
    if (this.#compressing > 0) {
      this.#sendChain = this.#sendChain.then(send, send);
      this.#armCloseTimer();
    } else {
      send();
    }
  }

  // §7.1.7: fail the connection: send the close code for the failure (when
  // still allowed), then wait for the peer's close up to closeTimeout.
  #fail(error: unknown): void {
    if (this.#state === CLOSED) return;
    this.#error ??= error;
    this.#endMessages();
    if (!this.#closeSent) {
      this.#sendClose(closeCodeFor(error), closeReasonFor(error));
    }
    this.#state = CLOSING;
    this.#stopKeepalive();
    this.#resumeReading();
    this.#armCloseTimer();
    if (this.#discard) this.#flushThenTerminate();
  }

  #armCloseTimer(): void {
    if (this.#closeTimer !== undefined || this.#state === CLOSED) return;
    this.#closeTimer = setTimeout(() => {
      this.#closeTimer = undefined;
      this.#terminate();
    }, this.#closeTimeout);
  }

  async #flushThenTerminate(): Promise<void> {
    this.#armCloseTimer();
    await this.#out.flush();
    this.#terminate();
  }

  #endMessages(): void {
    const waiters = this.#waiters;
    if (waiters.length === 0) return;
    // Queued messages stay readable; waiters mean the queue is empty.
    this.#waiters = [];
    for (const waiter of waiters) {
      if (this.#error !== undefined) waiter.reject(this.#error);
      else waiter.resolve({ value: undefined, done: true });
    }
  }

  // Closes the transport and settles everything. Idempotent.
  #terminate(): void {
    if (this.#state === CLOSED) return;
    this.#state = CLOSED;
    this.#readDone = true;
    this.#stopKeepalive();
    if (this.#closeTimer !== undefined) {
      clearTimeout(this.#closeTimer);
      this.#closeTimer = undefined;
    }
    if (this.#signal !== undefined && this.#onAbort !== undefined) {
      this.#signal.removeEventListener("abort", this.#onAbort);
    }
    const info = this.#closeInfo ?? { code: 1006, reason: "", wasClean: false };
    if (!this.#closeSent || !this.#closeReceived) info.wasClean = false;
    this.#closeInfo = info;
    if (this.#error === undefined && !this.#closeReceived) {
      this.#error = new ConnectionClosedError(info.code, info.reason);
    }
    const closedError = this.#closedError();
    for (const ping of this.#pings.values()) ping.reject(closedError);
    this.#pings.clear();
    this.#pingKeys.clear();
    this.#out.stop(closedError);
    this.#resumeReading();
    this.#endMessages();
    this.#closeTransport();
    this.#deflate?.close();
    void this.#settle(info);
  }

  #closeTransport(): void {
    const transport = this.#transport;
    if (transport.close !== undefined) {
      try {
        transport.close();
      } catch {
        // Already closed by the peer or the runtime.
      }
      return;
    }
    this.#out.closeStream();
    if (this.#reader !== undefined) this.#reader.cancel().catch(() => {});
    else transport.readable.cancel().catch(() => {});
  }

  async #settle(info: CloseInfo): Promise<void> {
    // Wait until no read or write is pending, then report the close.
    try {
      await this.#readLoop;
    } catch {
      // The read loop reports through #onEnd.
    }
    // Closing a transport fails its pending writes (reported through
    // #onWriteError); a write into a stream nobody reads is abandoned.
    await this.#out.settle();
    this.#resolveClosed(info);
  }

  #closedError(): ConnectionClosedError {
    const info = this.#closeInfo;
    return new ConnectionClosedError(
      info?.code ?? 1006,
      info?.reason ?? "",
    );
  }

  // ---- keepalive ----

  #scheduleKeepalive(): void {
    if (this.#pingInterval === 0 || this.#state !== OPEN) return;
    this.#keepaliveTimer = setTimeout(() => {
      this.#keepaliveTimer = undefined;
      if (this.#state !== OPEN) return;
      // The read buffer's spares serve a steady load; a connection that
      // went quiet gives them back here (see _readbuffer.ts).
      this.#buffer?.trim();
      if (this.#pingTimeout === 0) {
        this.#keepaliveWithoutTimeout();
        return;
      }
      this.#pongTimer = setTimeout(() => {
        this.#pongTimer = undefined;
        this.#fail(
          new DOMException(
            `Cannot keep connection alive: no pong within ${this.#pingTimeout} ms`,
            "TimeoutError",
          ),
        );
      }, this.#pingTimeout);
      this.ping().then(() => {
        if (this.#pongTimer !== undefined) clearTimeout(this.#pongTimer);
        this.#pongTimer = undefined;
        this.#scheduleKeepalive();
      }, () => {});
    }, this.#pingInterval);
  }

  // pingTimeout 0: a peer that does not answer is never closed for it, yet
  // it still gets a ping every interval (what keeps a NAT or proxy from
  // dropping an idle connection), not one ping and then silence. A ping left
  // unanswered is sent again with the same payload rather than tracked
  // twice: a silent peer costs one pending ping, however long it lasts.
  #keepaliveWithoutTimeout(): void {
    const unanswered = this.#keepalivePayload;
    if (unanswered !== undefined) {
      this.#out.enqueue(0x9, unanswered, false);
    } else {
      const payload = new Uint8Array(4);
      new DataView(payload.buffer).setUint32(0, this.#pingCounter + 1);
      this.#keepalivePayload = payload;
      this.ping(payload).then(() => {
        if (this.#keepalivePayload === payload) {
          this.#keepalivePayload = undefined;
        }
      }, () => {});
    }
    this.#scheduleKeepalive();
  }

  #stopKeepalive(): void {
    if (this.#keepaliveTimer !== undefined) clearTimeout(this.#keepaliveTimer);
    if (this.#pongTimer !== undefined) clearTimeout(this.#pongTimer);
    this.#keepaliveTimer = undefined;
    this.#pongTimer = undefined;
  }

  // ---- helpers ----

  #rejected<T>(error: unknown): Promise<T> {
    return handled(Promise.reject(error));
  }
}

function pingKey(payload: Uint8Array): string {
  let key = "";
  for (let i = 0; i < payload.length; i++) {
    key += String.fromCharCode(payload[i]!);
  }
  return key;
}

// The longest delay a timer takes: a longer one fires at once (and
// setTimeout warns), so a timeout past it is refused.
const MAX_TIMEOUT = 2 ** 31 - 1;

function timeout(name: string, value: number): number {
  nonNegative(name, value);
  if (value > MAX_TIMEOUT) {
    throw new RangeError(
      `Cannot create WebSocket connection: ${name} is ${value} ms, limit is ${MAX_TIMEOUT}`,
    );
  }
  return value;
}

function nonNegative(name: string, value: number): number {
  if (!Number.isFinite(value) || value < 0) {
    throw new RangeError(
      `Cannot create WebSocket connection: ${name} is ${value}, expected a non-negative number`,
    );
  }
  return value;
}

// Sizes and counts are whole numbers: the deflate context refuses a
// fraction too, so a limit means the same with compression or without.
function count(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(
      `Cannot create WebSocket connection: ${name} is ${value}, expected a non-negative integer`,
    );
  }
  return value;
}

/**
 * Checks the limits and timeouts of a connection by the rules of the
 * {@linkcode WebSocketConnection} constructor, without a transport: so that
 * `connect()` (or any caller that takes them) refuses a bad one before any
 * I/O. Absent values are not checked (their defaults are valid).
 *
 * @param limits The limits and timeouts to check.
 * @throws {RangeError} If a size or count is not a non-negative integer, a
 * timeout is negative or not finite, or a timeout is over 2^31 - 1 ms (what a
 * timer can wait).
 *
 * @example Refusing a negative limit
 * ```ts
 * import { checkConnectionLimits } from "@rfc6455/websocket/connection";
 * import assert from "node:assert/strict";
 *
 * checkConnectionLimits({ maxMessageSize: 1 << 20, pingInterval: 0 });
 * assert.throws(() => checkConnectionLimits({ maxFragments: -1 }), RangeError);
 * assert.throws(() => checkConnectionLimits({ closeTimeout: 2 ** 31 }), RangeError);
 * ```
 */
export function checkConnectionLimits(limits: ConnectionLimits): void {
  for (const [name, check] of LIMIT_CHECKS) {
    const value = limits[name];
    if (value !== undefined) check(name, value);
  }
}

const LIMIT_CHECKS: [
  keyof ConnectionLimits,
  (name: string, value: number) => number,
][] = [
  ["maxMessageSize", count],
  ["maxFrameSize", count],
  ["maxFragments", count],
  ["pingInterval", timeout],
  ["pingTimeout", timeout],
  ["closeTimeout", timeout],
  ["writeHighWaterMark", count],
  ["maxBufferedAmount", count],
];
