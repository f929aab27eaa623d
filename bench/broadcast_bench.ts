// Copyright 2026 the @rfc6455/websocket authors. MIT license.
/**
 * Broadcast benchmark: `deno bench -A bench/broadcast_bench.ts`.
 *
 * One message to 100 connections of `serve()` over loopback, encoded once
 * with `broadcast()` against a loop of `send()` on each connection (the
 * baseline of each group, as Node `ws`'s broadcast recipe does). One
 * iteration sends 16 messages to every connection and waits until every
 * client has read all their bytes. The clients are raw sockets in this
 * process that count the bytes and throw them away, so that the server's
 * work is most of what is measured: 1 KiB text (encoded to UTF-8 and framed
 * once instead of 100 times), 16 KiB binary (framed once; each connection
 * still copies the frame into its write batch) and 256 KiB binary (one
 * frame shared by every queue, no copy per connection). Four runs on
 * 2026-11-22, time of the send() loop / time of broadcast(): 1.26-1.42x
 * (1 KiB), 0.88-1.07x (16 KiB), 1.38-1.58x (256 KiB, the three quiet runs).
 *
 * @module
 */

import { broadcast } from "../broadcast.ts";
import type { WebSocketSession } from "../connection.ts";
import { createKey } from "../handshake.ts";
import { serve } from "../server.ts";

const CONNECTIONS = 100;
const MESSAGES = 16;

const sessions: WebSocketSession[] = [];
const allOpen = Promise.withResolvers<void>();
const server = serve({
  hostname: "127.0.0.1",
  port: 0,
  deflate: false,
  pingInterval: 0,
}, async (ws) => {
  sessions.push(ws);
  if (sessions.length === CONNECTIONS) allOpen.resolve();
  await ws.closed;
});

/** A client that reads and counts every byte, and says when it has enough. */
class Sink {
  readonly #conn: Deno.Conn;
  #received = 0;
  #target = 0;
  #reached: PromiseWithResolvers<void> | undefined;

  constructor(conn: Deno.Conn) {
    this.#conn = conn;
    this.#read();
  }

  /** Resolves once `bytes` more have arrived. */
  expect(bytes: number): Promise<void> {
    this.#target += bytes;
    this.#reached = Promise.withResolvers();
    this.#check();
    return this.#reached.promise;
  }

  async #read(): Promise<void> {
    const buffer = new Uint8Array(256 * 1024);
    while (true) {
      let count: number | null;
      try {
        count = await this.#conn.read(buffer);
      } catch {
        count = null;
      }
      if (count === null) return;
      this.#received += count;
      this.#check();
    }
  }

  #check(): void {
    if (this.#received >= this.#target) this.#reached?.resolve();
  }
}

async function openSink(port: number): Promise<Sink> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const request = `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
    "Upgrade: websocket\r\nConnection: Upgrade\r\n" +
    `Sec-WebSocket-Key: ${createKey()}\r\nSec-WebSocket-Version: 13\r\n\r\n`;
  await conn.write(new TextEncoder().encode(request));
  // The 101 head, byte by byte: the frames after it are the sink's.
  let head = "";
  const byte = new Uint8Array(1);
  while (!head.endsWith("\r\n\r\n")) {
    if (await conn.read(byte) === null) throw new Error("closed before 101");
    head += String.fromCharCode(byte[0]!);
  }
  return new Sink(conn);
}

const sinks: Sink[] = [];
for (let i = 0; i < CONNECTIONS; i++) {
  sinks.push(await openSink(server.addr.port));
}
await allOpen.promise;

function frameSize(payload: number): number {
  return payload + (payload < 126 ? 2 : payload < 65536 ? 4 : 10);
}

async function run(
  messages: (string | Uint8Array)[],
  payloadSize: number,
  send: (message: string | Uint8Array) => void,
): Promise<void> {
  const arrived = Promise.all(
    sinks.map((sink) => sink.expect(messages.length * frameSize(payloadSize))),
  );
  for (const message of messages) send(message);
  await arrived;
}

const CASES: {
  name: string;
  size: number;
  messages: (string | Uint8Array)[];
}[] = [
  {
    name: "1 KiB text",
    size: 1024,
    messages: Array.from(
      { length: MESSAGES },
      (_, i) => `{"tick":${i}}`.padEnd(1024, "x"),
    ),
  },
  {
    name: "16 KiB binary",
    size: 16 * 1024,
    messages: Array.from(
      { length: MESSAGES },
      (_, i) => new Uint8Array(16 * 1024).fill(i),
    ),
  },
  {
    name: "256 KiB binary",
    size: 256 * 1024,
    messages: Array.from(
      { length: MESSAGES },
      (_, i) => new Uint8Array(256 * 1024).fill(i),
    ),
  },
];

for (const { name, size, messages } of CASES) {
  const group = `${name} to ${CONNECTIONS} connections`;
  Deno.bench({
    name: `send() loop, ${name}`,
    group,
    baseline: true,
    async fn() {
      await run(messages, size, (message) => {
        for (const ws of sessions) ws.send(message);
      });
    },
  });
  Deno.bench({
    name: `broadcast(), ${name}`,
    group,
    async fn() {
      await run(messages, size, (message) => {
        broadcast(sessions, message, { backpressureLimit: 1 << 24 });
      });
    },
  });
}

// The benchmarks run after this module's top level: shut down after them.
globalThis.addEventListener("unload", () => {
  server.shutdown();
});
