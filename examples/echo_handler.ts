// Copyright 2026 the @rfc6455/websocket authors. MIT license.
/**
 * The echo handler shared by the socket server (`echo.ts`) and the edge
 * server (`echo_edge.ts`).
 *
 * @module
 */

import type { WebSocketSession } from "../connection.ts";

/**
 * Echoes every message back with its type (text as text, binary as binary)
 * until the peer closes. Awaiting `send()` is the backpressure: a client
 * that stops reading stops being read. Each binary message is a view of the
 * connection's read buffer (`copy: false`): `send()` copies it into the
 * outgoing frame, so the echo is done with it before asking for the next.
 *
 * @param ws The open connection.
 */
export async function echoHandler(ws: WebSocketSession): Promise<void> {
  for await (const message of ws.messages({ copy: false })) {
    await ws.send(message);
  }
}
