// Copyright 2026 the @rfc6455/websocket authors. MIT license.
/**
 * permessage-deflate benchmark: `deno bench -A bench/deflate_bench.ts`.
 *
 * Echo throughput over loopback, client and server in this process, on a
 * JSON-like text payload of 1 KiB and 16 KiB: our `connect()` + `serve()`
 * with compression (the baseline of each group), the same without
 * compression, and Node's `ws` client + server (`npm:ws`) with compression.
 * One iteration sends a batch of 64 distinct messages and waits for their
 * 64 echoes. Both libraries compress every message of the group (threshold
 * 1 KiB on both), with context takeover both ways.
 *
 * Before the benchmarks it prints the compression ratio (compressed bytes /
 * raw bytes) of the payload at our default level (3), for a first message
 * (an empty window) and for the following ones (context takeover).
 *
 * @module
 */

// @ts-types="npm:@types/ws@8.18.1"
import NodeWebSocket, { WebSocketServer } from "npm:ws@8.23.0";
import { connect } from "../client.ts";
import type { WebSocketConnection } from "../connection.ts";
import { PerMessageDeflate } from "../deflate.ts";
import { serve, type WebSocketServer as OurServer } from "../server.ts";

const BATCH = 64;
const SIZES = [1024, 16 * 1024];

/** `count` distinct JSON arrays of about `size` bytes, like API responses. */
function payloads(size: number, count: number): string[] {
  const out: string[] = [];
  for (let n = 0; n < count; n++) {
    const items = [];
    let length = 2;
    for (let i = 0; length < size - 120; i++) {
      const id = n * 1000 + i;
      const item = JSON.stringify({
        id,
        user: `user-${(id * 7919) % 10007}`,
        price: Math.round(((id * 104729) % 100000) / 7) / 100,
        side: id % 2 ? "buy" : "sell",
        ts: 1767225600000 + id * 137,
      });
      items.push(item);
      length += item.length + 1;
    }
    out.push(`[${items.join(",")}]`.padEnd(size, " "));
  }
  return out;
}

const PAYLOADS = new Map(SIZES.map((size) => [size, payloads(size, BATCH)]));

// --- compression ratio -------------------------------------------------------

async function ratios(size: number): Promise<{ first: number; next: number }> {
  const deflate = new PerMessageDeflate({
    serverNoContextTakeover: false,
    clientNoContextTakeover: false,
    serverMaxWindowBits: 15,
    clientMaxWindowBits: 15,
  }, "client");
  const encoder = new TextEncoder();
  let first = 0;
  let raw = 0;
  let compressed = 0;
  for (const [index, text] of PAYLOADS.get(size)!.entries()) {
    const bytes = encoder.encode(text);
    const out = await deflate.compress(bytes);
    if (index === 0) first = out.length / bytes.length;
    else {
      raw += bytes.length;
      compressed += out.length;
    }
  }
  deflate.close();
  return { first, next: compressed / raw };
}

for (const size of SIZES) {
  const { first, next } = await ratios(size);
  // deno-lint-ignore no-console
  console.log(
    `compression ratio, ${size / 1024} KiB JSON, level 3: first message ${
      first.toFixed(3)
    }, next messages ${next.toFixed(3)} (compressed / raw bytes)`,
  );
}

// --- echo pairs --------------------------------------------------------------

interface Pair {
  /** Sends the batch and resolves once every echo is back. */
  roundTrip(messages: string[]): Promise<void>;
}

const servers: OurServer[] = [];
const wsServers: WebSocketServer[] = [];

async function ourPair(deflate: boolean): Promise<Pair> {
  const server = serve({
    hostname: "127.0.0.1",
    port: 0,
    deflate,
    pingInterval: 0,
  }, async (ws) => {
    for await (const message of ws) ws.send(message);
  });
  servers.push(server);
  const ws: WebSocketConnection = await connect(
    `ws://127.0.0.1:${server.addr.port}/`,
    { deflate, pingInterval: 0 },
  );
  const iterator = ws[Symbol.asyncIterator]();
  return {
    async roundTrip(messages) {
      for (const message of messages) ws.send(message);
      for (let i = 0; i < messages.length; i++) {
        const { done } = await iterator.next();
        if (done) throw new Error("Connection closed during the benchmark");
      }
    },
  };
}

async function nodePair(): Promise<Pair> {
  const wss = new WebSocketServer({
    host: "127.0.0.1",
    port: 0,
    perMessageDeflate: { threshold: 1024 },
  });
  await new Promise<void>((resolve) => wss.once("listening", resolve));
  wsServers.push(wss);
  wss.on("connection", (socket: NodeWebSocket) => {
    socket.on("message", (data, isBinary) => {
      socket.send(data as Buffer, { binary: isBinary });
    });
  });
  const port = (wss.address() as { port: number }).port;
  const socket = new NodeWebSocket(`ws://127.0.0.1:${port}/`, {
    perMessageDeflate: { threshold: 1024 },
  });
  await new Promise<void>((resolve) => socket.once("open", resolve));
  let waiting: { left: number; resolve: () => void } | undefined;
  socket.on("message", () => {
    if (waiting !== undefined && --waiting.left === 0) waiting.resolve();
  });
  return {
    roundTrip(messages) {
      const { promise, resolve } = Promise.withResolvers<void>();
      waiting = { left: messages.length, resolve };
      for (const message of messages) socket.send(message);
      return promise;
    },
  };
}

const PAIRS = {
  "ours, deflate": await ourPair(true),
  "ours, no compression": await ourPair(false),
  "Node ws, deflate": await nodePair(),
};

for (const size of SIZES) {
  const group = `echo ${size / 1024} KiB JSON x ${BATCH}`;
  const messages = PAYLOADS.get(size)!;
  for (const [name, pair] of Object.entries(PAIRS)) {
    Deno.bench({
      name,
      group,
      baseline: name === "ours, deflate",
      async fn() {
        await pair.roundTrip(messages);
      },
    });
  }
}

// Ends the process once every benchmark has run: servers and sockets are
// shared by all of them, and `deno bench` has no hook after the last one.
Deno.bench({
  name: "shutdown (not a benchmark)",
  // In a group of its own, defined last: ungrouped benchmarks run first.
  group: "teardown",
  n: 1,
  warmup: 0,
  async fn() {
    for (const server of servers) await server.shutdown();
    for (const wss of wsServers) {
      for (const client of wss.clients) client.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    }
  },
});
