// Copyright 2026 the @rfc6455/websocket authors. MIT license.
// This module is browser compatible: it uses only the Web platform.
// Private helper of server.ts: the WebSocketSession that createFetchHandler()
// hands to handlers, over the runtime's own WebSocket object (what
// Deno.upgradeWebSocket gives on edge platforms). Not an entry point.

import { messageReadable, messageWritable } from "./_streams.ts";
import type {
  CloseInfo,
  SendOptions,
  WebSocketData,
  WebSocketMessage,
  WebSocketSession,
} from "./connection.ts";
import { ConnectionClosedError } from "./errors.ts";

const textEncoder = new TextEncoder();

/**
 * A {@linkcode WebSocketSession} over the runtime's WebSocket object: the
 * same handler API, with what that object lacks (`ping()` rejects, the
 * message queue is the runtime's).
 */
export class EdgeWebSocket implements WebSocketSession {
  readonly #socket: WebSocket;
  readonly #url: string;
  readonly #protocol: string;
  #messages: WebSocketMessage[] = [];
  #waiters: Array<{
    resolve(result: IteratorResult<WebSocketMessage>): void;
    reject(error: unknown): void;
  }> = [];
  #info: CloseInfo | undefined;
  #failed = false;
  readonly #closed = Promise.withResolvers<CloseInfo>();
  #readable: ReadableStream<WebSocketMessage> | undefined;
  #writable: WritableStream<WebSocketData> | undefined;

  constructor(socket: WebSocket, url: string, protocol: string) {
    this.#socket = socket;
    this.#url = url;
    this.#protocol = protocol;
    socket.binaryType = "arraybuffer";
    socket.addEventListener("message", (event) => {
      const data = event.data;
      const message = typeof data === "string"
        ? data
        : new Uint8Array(data as ArrayBuffer);
      const waiter = this.#waiters.shift();
      if (waiter !== undefined) waiter.resolve({ value: message, done: false });
      else this.#messages.push(message);
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
        if (this.#failed) waiter.reject(this.#closedError());
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
        this.#socket.send(new TextDecoder().decode(bytes));
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

  [Symbol.asyncIterator](): AsyncIterator<WebSocketMessage> {
    return { next: () => this.#next() };
  }

  #next(): Promise<IteratorResult<WebSocketMessage>> {
    const message = this.#messages.shift();
    if (message !== undefined) {
      return Promise.resolve({ value: message, done: false });
    }
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

function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => {});
  return promise;
}
