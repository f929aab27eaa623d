// Copyright 2026 the @rfc6455/websocket authors. MIT license.
// This module is browser compatible: it uses the Web platform only.
// Private helper of connection.ts and broadcast.ts: how a broadcast hands a
// frame encoded once to the send queue of a WebSocketConnection, past the
// connection's own encoding. Not an entry point.

import type { WebSocketConnection } from "./connection.ts";

/**
 * What {@linkcode queueFrame} did: `"queued"` the frame; `"send"` when the
 * connection must encode the message itself (to compress it, or behind
 * messages still being compressed); `"full"` when `maxBufferedAmount` bytes
 * would be passed; `"closed"` when it is not open.
 */
export type QueueOutcome = "queued" | "send" | "full" | "closed";

type FrameQueue = (
  ws: WebSocketConnection,
  frame: Uint8Array,
  payloadSize: number,
  compress: boolean,
) => QueueOutcome;

let frameQueue: FrameQueue = () => "send";

/**
 * Queues `frame` (encoded unmasked, unchanged from now on) on `ws` in
 * order with its other messages, if the connection can take it as it is.
 */
export function queueFrame(
  ws: WebSocketConnection,
  frame: Uint8Array,
  payloadSize: number,
  compress: boolean,
): QueueOutcome {
  return frameQueue(ws, frame, payloadSize, compress);
}

/** Set once by connection.ts, which alone sees a connection's queue. */
export function setFrameQueue(queue: FrameQueue): void {
  frameQueue = queue;
}
