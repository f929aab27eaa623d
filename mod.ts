// Copyright 2026 the @rfc6455/websocket authors. MIT license.

/**
 * A WebSocket module for Deno: an RFC 6455 client and server with RFC 7692
 * permessage-deflate, built on `Deno.connect` / `Deno.listen`, with no
 * third-party code.
 *
 * - {@linkcode connect} opens a client connection with the handshake headers
 *   a crawler needs (Origin, User-Agent, Cookie, Authorization), HTTP
 *   proxies, subprotocols, limits and clear errors.
 * - {@linkcode serve} runs a server with origin and auth checks at upgrade
 *   time, limits, timeouts and graceful shutdown;
 *   {@linkcode createFetchHandler} runs the same handler on `Deno.serve` for
 *   edge platforms.
 * - {@linkcode broadcast} and {@linkcode Topics} (pub-sub) send one message
 *   to many connections, encoded once, skipping or dropping slow consumers.
 * - {@linkcode reconnecting} gives one client connection after another,
 *   with exponential backoff and full jitter between them.
 * - Every connection gives its messages as an async iterator and as web
 *   streams, `send()` with backpressure, `ping()` with the round-trip time,
 *   and `close()` with the close handshake.
 * - The sans-I/O pieces are their own entry points: `./frame` (the frame
 *   codec), `./handshake` (the opening handshake), `./deflate`
 *   (permessage-deflate).
 *
 * @example An echo server and a client
 * ```ts
 * import { connect, serve } from "@rfc6455/websocket";
 * import assert from "node:assert/strict";
 *
 * await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (ws) => {
 *   for await (const message of ws) await ws.send(message);
 * });
 * const ws = await connect(`ws://127.0.0.1:${server.addr.port}/`);
 * await ws.send("hello");
 * await ws.send(new Uint8Array([1, 2, 3]));
 * const received = [];
 * for await (const message of ws) {
 *   received.push(message);
 *   if (received.length === 2) break;
 * }
 * assert.deepEqual(received, ["hello", new Uint8Array([1, 2, 3])]);
 * const { code } = await ws.close(1000, "done");
 * assert.equal(code, 1000);
 * ```
 *
 * @module
 */

export * from "./broadcast.ts";
export * from "./client.ts";
export * from "./connection.ts";
export * from "./deflate.ts";
export * from "./errors.ts";
export * from "./frame.ts";
export * from "./handshake.ts";
export * from "./reconnect.ts";
export * from "./server.ts";
