// Copyright 2026 the @rfc6455/websocket authors. MIT license.
// This module is browser compatible: it uses only the Web platform.
// Private helper of connection.ts and _edge.ts: the WebSocketStream-shaped
// streams over a session's message queue, and how that queue counts a
// message. Not an entry point.

import type { WebSocketData, WebSocketMessage } from "./connection.ts";

/** The memory a queued message holds, roughly: bytes, or UTF-16 code units. */
export function sizeOf(message: WebSocketMessage): number {
  return typeof message === "string" ? message.length : message.byteLength;
}

/**
 * The received messages as a pull-based stream: nothing is read ahead of the
 * consumer. Cancelling it calls `close`.
 */
export function messageReadable(
  next: () => Promise<IteratorResult<WebSocketMessage>>,
  close: () => void,
): ReadableStream<WebSocketMessage> {
  return new ReadableStream<WebSocketMessage>({
    pull: async (controller) => {
      const result = await next();
      if (result.done) controller.close();
      else controller.enqueue(result.value);
    },
    cancel: () => close(),
  }, { highWaterMark: 0 });
}

/**
 * A stream whose chunks are sent as messages, with `send`'s backpressure.
 * Closing or aborting it calls `close`; closing waits for it.
 */
export function messageWritable(
  send: (data: WebSocketData) => Promise<void>,
  close: () => Promise<unknown>,
): WritableStream<WebSocketData> {
  return new WritableStream<WebSocketData>({
    write: (chunk) => send(chunk),
    close: async () => {
      await close();
    },
    abort: () => {
      void close();
    },
  });
}
