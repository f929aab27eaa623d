// Copyright 2026 the @rfc6455/websocket authors. MIT license.
/**
 * The echo servers the echo benchmark loads, one implementation per process:
 *
 * - `ours`: {@linkcode serve} with the echo service's handler
 *   (`for await (const m of ws.messages({ copy: false })) await ws.send(m)`:
 *   each binary message a view of the read buffer), keepalive off, and
 *   permessage-deflate off unless `--deflate` (the built-in has none);
 * - `ours-copy`: the same with `for await (const m of ws)`, an array of its
 *   own per message, as the built-in gives;
 * - `builtin`: `Deno.serve` + `Deno.upgradeWebSocket`, echoing from
 *   `onmessage`, keepalive off;
 * - `raw`: a raw TCP echo on `Deno.listen` that copies bytes back, the
 *   ceiling the WebSocket servers are measured against.
 *
 * ```sh
 * deno run -A bench/echo_server.ts --impl ours --port 0
 * ```
 *
 * It prints `listening PORT` once ready, and runs until killed.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { serve } from "../server.ts";

function fail(message: string, code = 1): never {
  // deno-lint-ignore no-console
  console.error(`echo_server: ${message}`);
  Deno.exit(code);
}

function listening(port: number): void {
  // deno-lint-ignore no-console
  console.log(`listening ${port}`);
}

function serveOurs(
  hostname: string,
  port: number,
  deflate: boolean,
  copy: boolean,
): void {
  serve({
    hostname,
    port,
    pingInterval: 0,
    // The built-in WebSocket has no permessage-deflate: compare like with
    // like unless --deflate asks for it.
    deflate,
    insecureSkipOriginCheck: true,
    onListen: (addr) => listening(addr.port),
  }, async (ws) => {
    const messages = copy ? ws.messages() : ws.messages({ copy: false });
    for await (const message of messages) await ws.send(message);
  });
}

function serveBuiltin(hostname: string, port: number): void {
  Deno.serve({
    hostname,
    port,
    onListen: (addr) => listening(addr.port),
  }, (request) => {
    const { socket, response } = Deno.upgradeWebSocket(request, {
      idleTimeout: 0,
    });
    socket.binaryType = "arraybuffer";
    socket.onmessage = (event) => socket.send(event.data);
    return response;
  });
}

async function echoRaw(conn: Deno.Conn): Promise<void> {
  const buffer = new Uint8Array(256 * 1024);
  try {
    while (true) {
      const count = await conn.read(buffer);
      if (count === null) break;
      let offset = 0;
      while (offset < count) {
        offset += await conn.write(buffer.subarray(offset, count));
      }
    }
  } catch {
    // The client went away.
  } finally {
    try {
      conn.close();
    } catch {
      // Closed already.
    }
  }
}

async function serveRaw(hostname: string, port: number): Promise<void> {
  const listener = Deno.listen({ hostname, port, transport: "tcp" });
  listening((listener.addr as Deno.NetAddr).port);
  for await (const conn of listener) {
    conn.setNoDelay(true);
    void echoRaw(conn);
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      impl: { type: "string" },
      port: { type: "string", default: "0" },
      hostname: { type: "string", default: "127.0.0.1" },
      deflate: { type: "boolean", default: false },
    },
    strict: true,
  });
  const port = Number(values.port);
  if (!Number.isSafeInteger(port) || port < 0 || port > 65535) {
    fail(`--port must be 0-65535, got "${values.port}"`, 2);
  }
  switch (values.impl) {
    case "ours":
      serveOurs(values.hostname, port, values.deflate, false);
      break;
    case "ours-copy":
      serveOurs(values.hostname, port, values.deflate, true);
      break;
    case "builtin":
      serveBuiltin(values.hostname, port);
      break;
    case "raw":
      await serveRaw(values.hostname, port);
      break;
    default:
      fail(
        `--impl must be ours, ours-copy, builtin or raw, got "${values.impl}"`,
        2,
      );
  }
}
