// Copyright 2026 the @rfc6455/websocket authors. MIT license.
// This module is browser compatible: it uses only the Web platform.
// Private helper of server.ts: the WebSocketSession that createFetchHandler()
// hands to handlers, over the runtime's own WebSocket object (what
// Deno.upgradeWebSocket gives on edge platforms). Not an entry point.

import { messageReadable, messageWritable, sizeOf } from "./_streams.ts";
import { handled } from "./_writer.ts";
import type {
  CloseInfo,
  MessagesOptions,
  SendOptions,
  WebSocketData,
  WebSocketMessage,
  WebSocketSession,
} from "./connection.ts";
import { ConnectionClosedError, ProtocolError } from "./errors.ts";

const textEncoder = new TextEncoder();
// Bytes sent as text pass through as they are: a leading U+FEFF is text, not
// a byte order mark to drop, and bytes that are not UTF-8 are refused rather
// than sent with U+FFFD in their place.
const textDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

// The queue of received messages is full while READ_QUEUE_LIMIT messages or
// READ_QUEUE_SIZE bytes (UTF-16 code units for text) wait for the handler;
// a message that finds it full fails the connection. connection.ts pauses
// reading at 16 messages instead, but the runtime's WebSocket cannot pause:
// it fires every buffered message in a row, so even an echo handler falls
// hundreds of messages behind a burst of a thousand. These bounds are for a
// peer that outpaces the handler for good: 16 MiB, as maxBufferedAmount
// bounds the other direction, and 16,384 messages, so that empty ones cannot
// pile up (each costs a few hundred bytes of objects).
const READ_QUEUE_LIMIT = 16_384;
const READ_QUEUE_SIZE = 16 * 1024 * 1024;

/** The limits an {@linkcode EdgeWebSocket} enforces itself. */
export interface EdgeLimits {
  /** The largest message accepted, in bytes (UTF-8 for text). */
  maxMessageSize: number;
}

/**
 * A {@linkcode WebSocketSession} over the runtime's WebSocket object: the
 * same handler API, with what that object lacks (`ping()` rejects).
 *
 * The runtime's WebSocket has no read backpressure: it fires every message
 * as it arrives. So the messages waiting for the handler are bounded here:
 * a message that finds 16,384 messages or 16 MiB waiting closes the
 * connection with 1008 (policy violation), and a message over
 * `maxMessageSize` closes it with 1009 (message too big); either is
 * dropped. Messages queued before stay readable; then iteration throws a
 * {@linkcode ProtocolError} with the close code sent.
 */
export class EdgeWebSocket implements WebSocketSession {
  readonly #socket: WebSocket;
  readonly #url: string;
  readonly #protocol: string;
  readonly #maxMessageSize: number;
  #messages: WebSocketMessage[] = [];
  // The sum of sizeOf() over #messages.
  #queuedSize = 0;
  #waiters: Array<{
    resolve(result: IteratorResult<WebSocketMessage>): void;
    reject(error: unknown): void;
  }> = [];
  #info: CloseInfo | undefined;
  #failed = false;
  // Set when a limit failed the connection: no message is queued after it,
  // and iteration throws it once the queue is drained.
  #error: ProtocolError | undefined;
  readonly #closed = Promise.withResolvers<CloseInfo>();
  #readable: ReadableStream<WebSocketMessage> | undefined;
  #writable: WritableStream<WebSocketData> | undefined;

  constructor(
    socket: WebSocket,
    url: string,
    protocol: string,
    limits: EdgeLimits,
  ) {
    this.#socket = socket;
    this.#url = url;
    this.#protocol = protocol;
    this.#maxMessageSize = limits.maxMessageSize;
    socket.binaryType = "arraybuffer";
    socket.addEventListener("message", (event) => {
      this.#onMessage(event.data as string | ArrayBuffer);
    });
    socket.addEventListener("error", () => {
      this.#failed = true;
    });
    socket.addEventListener("close", (event) => {
      this.#info = {
        // The runtime reports code 0 when it drops the connection without a
        // close handshake (for one, when the peer sends a message after the
        // server's close()); CloseInfo says 1006 for that (RFC 6455 §7.1.5).
        code: event.code === 0 ? 1006 : event.code,
        reason: event.reason,
        wasClean: event.wasClean,
      };
      if (event.code === 0) this.#failed = true;
      const waiters = this.#waiters;
      this.#waiters = [];
      for (const waiter of waiters) {
        if (this.#error !== undefined) waiter.reject(this.#error);
        else if (this.#failed) waiter.reject(this.#closedError());
        else waiter.resolve({ value: undefined, done: true });
      }
      this.#closed.resolve(this.#info);
    });
  }

  get protocol(): string {
    return this.#protocol;
  }
  get extensions(): string {
    return this.#socket.extensions;
  }
  get url(): string {
    return this.#url;
  }
  get isOpen(): boolean {
    return this.#socket.readyState === WebSocket.OPEN;
  }
  get bufferedAmount(): number {
    return this.#socket.bufferedAmount;
  }
  get closed(): Promise<CloseInfo> {
    return this.#closed.promise;
  }

  send(data: WebSocketData, options: SendOptions = {}): Promise<void> {
    if (!this.isOpen) return handled(Promise.reject(this.#closedError()));
    if (typeof data === "string") {
      this.#socket.send(options.binary ? textEncoder.encode(data) : data);
    } else {
      const bytes = data instanceof ArrayBuffer
        ? new Uint8Array(data)
        : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      if (options.binary === false) {
        let text: string;
        try {
          text = textDecoder.decode(bytes);
        } catch {
          return handled(Promise.reject(
            new TypeError("Cannot send message: text bytes are not UTF-8"),
          ));
        }
        this.#socket.send(text);
      } else this.#socket.send(bytes);
    }
    return Promise.resolve();
  }

  ping(): Promise<number> {
    return handled(Promise.reject(
      new DOMException(
        "Cannot send ping: the runtime's WebSocket has no ping API",
        "NotSupportedError",
      ),
    ));
  }

  close(code = 1000, reason = ""): Promise<CloseInfo> {
    if (this.#socket.readyState <= WebSocket.OPEN) {
      this.#socket.close(code, reason);
    }
    return this.#closed.promise;
  }

  get readable(): ReadableStream<WebSocketMessage> {
    this.#readable ??= messageReadable(() => this.#next(), () => this.close());
    return this.#readable;
  }

  get writable(): WritableStream<WebSocketData> {
    this.#writable ??= messageWritable(
      (chunk) => this.send(chunk),
      () => this.close(),
    );
    return this.#writable;
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<WebSocketMessage> {
    return this.messages();
  }

  /**
   * The messages, as `for await (const message of ws)` gives them. Every
   * binary message is an array of its own here (the runtime allocates one),
   * whatever `options.copy` says.
   */
  messages(
    _options?: MessagesOptions,
  ): AsyncIterableIterator<WebSocketMessage> {
    const iterator: AsyncIterableIterator<WebSocketMessage> = {
      next: () => this.#next(),
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }

  #onMessage(data: string | ArrayBuffer): void {
    // After a limit failed the connection nothing more is queued (the
    // runtime fires no message after close() anyway).
    if (this.#error !== undefined) return;
    const max = this.#maxMessageSize;
    const message = typeof data === "string" ? data : new Uint8Array(data);
    // The runtime takes messages up to its own cap (64 MiB), so a smaller
    // maxMessageSize is enforced here, once the message is whole.
    if (isOver(message, max)) {
      const size = typeof message === "string"
        ? utf8Length(message)
        : message.byteLength;
      this.#fail(
        new ProtocolError(
          `Cannot read message: it is ${size} bytes, limit is ${max}`,
          1009,
        ),
      );
      return;
    }
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) {
      waiter.resolve({ value: message, done: false });
      return;
    }
    // An empty queue always takes a message.
    if (this.#messages.length >= READ_QUEUE_LIMIT) {
      this.#fail(
        new ProtocolError(
          `Cannot queue message: ${this.#messages.length} messages wait to be read, limit is ${READ_QUEUE_LIMIT}`,
          1008,
        ),
      );
      return;
    }
    if (this.#queuedSize >= READ_QUEUE_SIZE) {
      this.#fail(
        new ProtocolError(
          `Cannot queue message: ${this.#queuedSize} bytes wait to be read, limit is ${READ_QUEUE_SIZE}`,
          1008,
        ),
      );
      return;
    }
    this.#messages.push(message);
    this.#queuedSize += sizeOf(message);
  }

  // §7.1.7: fail the connection with the limit's close code. Messages
  // queued before stay readable; iteration then throws the error, as
  // connection.ts does.
  #fail(error: ProtocolError): void {
    this.#error = error;
    // Waiters mean the queue is empty: they end now.
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const waiter of waiters) waiter.reject(error);
    if (this.#socket.readyState <= WebSocket.OPEN) {
      // The messages above are ASCII and far below the 123 bytes a close
      // reason may hold (§5.5).
      this.#socket.close(error.closeCode, error.message);
    }
  }

  #next(): Promise<IteratorResult<WebSocketMessage>> {
    const message = this.#messages.shift();
    if (message !== undefined) {
      this.#queuedSize -= sizeOf(message);
      return Promise.resolve({ value: message, done: false });
    }
    if (this.#error !== undefined) return Promise.reject(this.#error);
    if (this.#info !== undefined) {
      return this.#failed
        ? Promise.reject(this.#closedError())
        : Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve, reject) =>
      this.#waiters.push({ resolve, reject })
    );
  }

  #closedError(): ConnectionClosedError {
    return new ConnectionClosedError(
      this.#info?.code ?? 1006,
      this.#info?.reason ?? "",
    );
  }
}

// Whether a message is over `max` bytes (UTF-8 for text). A UTF-16 code unit
// is 1 to 3 bytes of UTF-8, so text is counted only when the bounds do not
// tell.
function isOver(message: WebSocketMessage, max: number): boolean {
  if (typeof message !== "string") return message.byteLength > max;
  if (message.length > max) return true;
  if (message.length * 3 <= max) return false;
  return utf8Length(message) > max;
}

// The length of a string in UTF-8, without encoding it. A lone surrogate
// counts as the 3 bytes of U+FFFD, which is what encoding it gives.
function utf8Length(text: string): number {
  let length = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) length += 1;
    else if (unit < 0x800) length += 2;
    else if (
      unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length &&
      (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00
    ) {
      length += 4;
      i++;
    } else length += 3;
  }
  return length;
}
