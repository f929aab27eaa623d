// Copyright 2026 the @rfc6455/websocket authors. MIT license.
// Interop: connect() against real servers — Deno's built-in WebSocket
// (Deno.serve + Deno.upgradeWebSocket), Node's `ws` WebSocketServer and our
// own serve() — plain and over TLS.

import assert from "node:assert/strict";
import https from "node:https";
import http from "node:http";
// @ts-types="npm:@types/ws@8.18.1"
import { WebSocketServer } from "npm:ws@8.23.0";
import { connect, type WebSocketClient } from "../client.ts";
import type { WebSocketMessage } from "../connection.ts";
import { serve } from "../server.ts";
import { makeCertificate } from "./_tls.ts";
import { deadline, patternBytes } from "./_util.ts";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/** A queue that tests await one item at a time, each wait bounded. */
class Queue<T> {
  #items: T[] = [];
  #waiters: Array<(item: T) => void> = [];

  push(item: T): void {
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) waiter(item);
    else this.#items.push(item);
  }

  next(what: string): Promise<T> {
    if (this.#items.length > 0) return Promise.resolve(this.#items.shift()!);
    return deadline(
      new Promise<T>((resolve) => this.#waiters.push(resolve)),
      what,
    );
  }

  get size(): number {
    return this.#items.length;
  }
}

/** The next message of `ws`, within the deadline. */
async function receive(ws: WebSocketClient): Promise<WebSocketMessage> {
  const result = await deadline(
    ws[Symbol.asyncIterator]().next(),
    "next message",
  );
  assert.equal(result.done, false, "the connection ended before a message");
  return result.value as WebSocketMessage;
}

/** Closes `ws` with 1000 and checks that the close handshake completed. */
async function closeCleanly(ws: WebSocketClient): Promise<void> {
  const info = await deadline(ws.close(1000), "client close");
  assert.deepEqual(info, { code: 1000, reason: "", wasClean: true });
}

/** The index of the first byte where `a` and `b` differ, or -1. */
function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : length;
}

function assertBytes(actual: WebSocketMessage, expected: Uint8Array): void {
  assert.ok(actual instanceof Uint8Array, "expected a binary message");
  assert.equal(actual.length, expected.length);
  assert.equal(firstDifference(actual, expected), -1);
}

/** A close code and reason a server saw from the client. */
interface SeenClose {
  code: number;
  reason: string;
}

/** One upgrade request as a server saw it. */
interface SeenRequest {
  /** The path and query. */
  path: string;
  /** The header fields; in their wire order and case where the server keeps them. */
  rawHeaders: [string, string][] | undefined;
  headers: Headers;
}

/**
 * A running echo server, whatever its library. Every server echoes each
 * message with its type, answers the text message "close-me" by closing
 * with 4002 "bye", selects the first offered of `SUBPROTOCOLS`, sets a
 * `Set-Cookie` header on its 101 answer, and records what it saw.
 */
interface EchoServer extends AsyncDisposable {
  readonly url: string;
  readonly requests: Queue<SeenRequest>;
  readonly closes: Queue<SeenClose>;
}

const SUBPROTOCOLS = ["chat", "superchat"];
const SET_COOKIE = "session=abc123; Path=/; HttpOnly";

function pickProtocol(offered: string[]): string | undefined {
  return offered.find((protocol) => SUBPROTOCOLS.includes(protocol));
}

function offeredProtocols(headers: Headers): string[] {
  const value = headers.get("sec-websocket-protocol");
  if (value === null) return [];
  return value.split(",").map((protocol) => protocol.trim());
}

function pairs(raw: string[]): [string, string][] {
  const result: [string, string][] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    result.push([raw[i]!, raw[i + 1]!]);
  }
  return result;
}

interface Variant {
  name: string;
  kind: "deno" | "ws" | "ours";
  tls: boolean;
}

const VARIANTS: Variant[] = [];
for (const tls of [false, true]) {
  VARIANTS.push(
    {
      name: `Deno's built-in server${tls ? " over TLS" : ""}`,
      kind: "deno",
      tls,
    },
    { name: `Node's ws server${tls ? " over TLS" : ""}`, kind: "ws", tls },
    { name: `serve()${tls ? " over TLS" : ""}`, kind: "ours", tls },
  );
}

async function startServer(
  variant: Variant,
  options: { deflate?: boolean } = {},
): Promise<EchoServer> {
  const certificate = variant.tls ? await makeCertificate() : undefined;
  const scheme = variant.tls ? "wss" : "ws";
  const requests = new Queue<SeenRequest>();
  const closes = new Queue<SeenClose>();
  if (variant.kind === "deno") {
    const sockets = new Set<WebSocket>();
    const server = Deno.serve({
      hostname: "127.0.0.1",
      port: 0,
      onListen() {},
      ...(certificate ?? {}),
    }, (request) => {
      const url = new URL(request.url);
      requests.push({
        path: url.pathname + url.search,
        rawHeaders: undefined,
        // A copy: the request's own headers are gone once it is answered.
        headers: new Headers(request.headers),
      });
      const protocol = pickProtocol(offeredProtocols(request.headers));
      const { socket, response } = Deno.upgradeWebSocket(
        request,
        protocol === undefined ? {} : { protocol },
      );
      sockets.add(socket);
      socket.binaryType = "arraybuffer";
      socket.onmessage = (event) => {
        if (event.data === "close-me") socket.close(4002, "bye");
        else socket.send(event.data);
      };
      socket.onclose = (event) => {
        sockets.delete(socket);
        closes.push({ code: event.code, reason: event.reason });
      };
      response.headers.set("set-cookie", SET_COOKIE);
      return response;
    });
    return {
      url: `${scheme}://127.0.0.1:${server.addr.port}`,
      requests,
      closes,
      async [Symbol.asyncDispose]() {
        for (const socket of sockets) socket.close();
        await server.shutdown();
      },
    };
  }
  if (variant.kind === "ws") {
    const server = certificate === undefined
      ? http.createServer()
      : https.createServer(certificate);
    const wss = new WebSocketServer({
      server,
      perMessageDeflate: options.deflate ?? false,
      handleProtocols: (offered) => pickProtocol([...offered]) ?? false,
    });
    wss.on("headers", (headers) => headers.push(`Set-Cookie: ${SET_COOKIE}`));
    wss.on("connection", (socket, request) => {
      requests.push({
        path: request.url ?? "",
        rawHeaders: pairs(request.rawHeaders),
        headers: new Headers(pairs(request.rawHeaders)),
      });
      socket.on("message", (data, isBinary) => {
        if (!isBinary && String(data) === "close-me") socket.close(4002, "bye");
        else socket.send(data, { binary: isBinary });
      });
      socket.on("close", (code, reason) => {
        closes.push({ code, reason: reason.toString() });
      });
    });
    const listening = Promise.withResolvers<void>();
    server.listen(0, "127.0.0.1", () => listening.resolve());
    await deadline(listening.promise, "ws server listening");
    const address = server.address();
    assert.ok(address !== null && typeof address === "object");
    return {
      url: `${scheme}://127.0.0.1:${address.port}`,
      requests,
      closes,
      async [Symbol.asyncDispose]() {
        for (const client of wss.clients) client.terminate();
        const closed = Promise.withResolvers<void>();
        wss.close();
        server.close(() => closed.resolve());
        server.closeAllConnections();
        await deadline(closed.promise, "ws server close");
      },
    };
  }
  const server = serve({
    hostname: "127.0.0.1",
    port: 0,
    ...(certificate ?? {}),
    protocols: SUBPROTOCOLS,
    origins: ["https://example.com"],
    upgrade: (request) => {
      const url = new URL(request.url);
      requests.push({
        path: url.pathname + url.search,
        rawHeaders: undefined,
        headers: request.headers,
      });
      return { headers: [["Set-Cookie", SET_COOKIE]] };
    },
  }, async (ws) => {
    for await (const message of ws) {
      if (message === "close-me") await ws.close(4002, "bye");
      else await ws.send(message);
    }
    const { code, reason } = await ws.closed;
    closes.push({ code, reason });
  });
  return {
    url: `${scheme}://127.0.0.1:${server.addr.port}`,
    requests,
    closes,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/** Connects our client to `server`, trusting the test certificate. */
async function connectTo(
  server: EchoServer,
  path = "/",
  options: Parameters<typeof connect>[1] = {},
): Promise<WebSocketClient> {
  const caCerts = server.url.startsWith("wss:")
    ? [(await makeCertificate()).cert]
    : undefined;
  return await deadline(
    connect(server.url + path, {
      pingInterval: 0,
      ...(caCerts === undefined ? {} : { caCerts }),
      ...options,
    }),
    "connect",
  );
}

// ---------------------------------------------------------------------------
// The message matrix, headers, subprotocols, close codes and pings
// ---------------------------------------------------------------------------

for (const variant of VARIANTS) {
  Deno.test(`connect() echoes text and binary messages of boundary sizes with ${variant.name}`, async () => {
    await using server = await startServer(variant);
    const ws = await connectTo(server);
    for (const size of [0, 1, 125, 126, 127, 65535, 65536, 65537]) {
      const bytes = patternBytes(size, size + 7);
      await ws.send(bytes);
      assertBytes(await receive(ws), bytes);
      const text = "x".repeat(size);
      await ws.send(text);
      assert.equal(await receive(ws), text);
    }
    await closeCleanly(ws);
  });

  Deno.test(`connect() echoes multi-byte UTF-8 text exactly with ${variant.name}`, async () => {
    await using server = await startServer(variant);
    const ws = await connectTo(server);
    const texts = [
      "é",
      "€",
      "😀",
      "Здравствуй, мир — 你好，世界 — 🎉🎊",
      "\u{10FFFF}\u{FFFD}\u{7FF}\u{800}\u{FFFF}\u{10000}",
      "😀".repeat(40_000),
    ];
    for (const text of texts) {
      await ws.send(text);
      const echoed = await receive(ws);
      assert.equal(typeof echoed, "string");
      assert.equal(echoed, text);
    }
    await closeCleanly(ws);
  });

  Deno.test(`connect() echoes a 16 MiB binary message exactly with ${variant.name}`, async () => {
    await using server = await startServer(variant);
    const ws = await connectTo(server);
    const bytes = patternBytes(16 * 1024 * 1024, 16);
    await ws.send(bytes);
    assertBytes(await receive(ws), bytes);
    await closeCleanly(ws);
  });

  Deno.test(`connect() receives 1,000 pipelined messages in order with ${variant.name}`, async () => {
    await using server = await startServer(variant);
    const ws = await connectTo(server);
    const messages: (string | Uint8Array<ArrayBuffer>)[] = [];
    for (let i = 0; i < 1000; i++) {
      messages.push(
        i % 2 === 0 ? `message ${i}` : patternBytes(i % 200, i),
      );
    }
    // Send everything first; nothing waits for an echo.
    await deadline(
      Promise.all(messages.map((message) => ws.send(message))),
      "sending 1,000 messages",
    );
    for (let i = 0; i < messages.length; i++) {
      const expected = messages[i]!;
      const actual = await receive(ws);
      if (typeof expected === "string") assert.equal(actual, expected);
      else assertBytes(actual, expected);
    }
    await closeCleanly(ws);
  });

  Deno.test(`connect() sends custom headers exactly as given to ${variant.name}`, async () => {
    await using server = await startServer(variant);
    const custom: [string, string][] = [
      ["Origin", "https://example.com"],
      ["User-Agent", "crawler/1.0 (+https://example.com/bot)"],
      ["Cookie", "a=1; b=two"],
      ["Authorization", "Bearer s3cr3t-token"],
      ["X-Custom-Header", "Value With  Spaces"],
      ["x-lower-case", "v"],
    ];
    const ws = await connectTo(server, "/feed/live?x=1&y=%20z", {
      headers: custom,
    });
    const request = await server.requests.next("upgrade request");
    assert.equal(request.path, "/feed/live?x=1&y=%20z");
    for (const [name, value] of custom) {
      assert.equal(request.headers.get(name), value, name);
    }
    if (request.rawHeaders !== undefined) {
      // Node's http keeps the wire order and case: ours must be the given ones.
      const names = new Set(custom.map(([name]) => name.toLowerCase()));
      assert.deepEqual(
        request.rawHeaders.filter(([name]) => names.has(name.toLowerCase())),
        custom,
      );
    }
    await closeCleanly(ws);
  });

  Deno.test(`connect() sends a Host override to ${variant.name}`, async () => {
    await using server = await startServer(variant);
    const ws = await connectTo(server, "/", {
      headers: { Host: "example.test:8443" },
    });
    const request = await server.requests.next("upgrade request");
    assert.equal(request.headers.get("host"), "example.test:8443");
    if (request.rawHeaders !== undefined) {
      const hosts = request.rawHeaders.filter(([name]) =>
        name.toLowerCase() === "host"
      );
      assert.deepEqual(hosts, [["Host", "example.test:8443"]]);
    }
    await closeCleanly(ws);
  });

  Deno.test(`connect() negotiates a subprotocol and keeps the response headers with ${variant.name}`, async () => {
    await using server = await startServer(variant);
    const ws = await connectTo(server, "/", {
      protocols: ["v2.unknown", "superchat", "chat"],
    });
    assert.equal(ws.protocol, "superchat");
    assert.equal(ws.response.status, 101);
    assert.equal(ws.response.headers.get("set-cookie"), SET_COOKIE);
    assert.equal(
      ws.response.headers.get("sec-websocket-protocol"),
      "superchat",
    );
    await closeCleanly(ws);

    const plain = await connectTo(server, "/", { protocols: ["v2.unknown"] });
    assert.equal(plain.protocol, "");
    await closeCleanly(plain);
  });

  Deno.test(`connect() closes with 4001 and ${variant.name} sees it`, async () => {
    await using server = await startServer(variant);
    const ws = await connectTo(server);
    const info = await deadline(ws.close(4001, "client done"), "client close");
    // The server echoes the code; echoing the reason is up to it (§5.5.1).
    assert.equal(info.code, 4001);
    assert.equal(info.wasClean, true);
    assert.deepEqual(await server.closes.next("server close"), {
      code: 4001,
      reason: "client done",
    });
  });

  Deno.test(`connect() reports 4002 "bye" when ${variant.name} closes`, async () => {
    await using server = await startServer(variant);
    const ws = await connectTo(server);
    await ws.send("before");
    await ws.send("close-me");
    const received: WebSocketMessage[] = [];
    // Iteration ends normally (no throw) after a clean close by the server.
    await deadline(
      (async () => {
        for await (const message of ws) received.push(message);
      })(),
      "iteration to end",
    );
    assert.deepEqual(received, ["before"]);
    assert.deepEqual(await deadline(ws.closed, "closed"), {
      code: 4002,
      reason: "bye",
      wasClean: true,
    });
    assert.equal(ws.isOpen, false);
  });

  Deno.test(`WebSocketClient.ping() resolves with a round-trip time against ${variant.name}`, async () => {
    await using server = await startServer(variant);
    const ws = await connectTo(server);
    for (let i = 0; i < 3; i++) {
      const rtt = await deadline(ws.ping(), "pong");
      assert.equal(typeof rtt, "number");
      assert.ok(Number.isFinite(rtt) && rtt >= 0, `rtt is ${rtt}`);
    }
    const custom = await deadline(ws.ping("hello"), "pong");
    assert.ok(Number.isFinite(custom) && custom >= 0);
    // The connection still carries messages after the pings.
    await ws.send("after pings");
    assert.equal(await receive(ws), "after pings");
    await closeCleanly(ws);
  });
}

for (const variant of VARIANTS.filter((variant) => variant.tls)) {
  Deno.test(`connect() fails on the self-signed certificate of ${variant.name} without caCerts`, async () => {
    await using server = await startServer(variant);
    const error = await deadline(
      connect(server.url + "/", { pingInterval: 0 }).then(
        (ws) => {
          ws.close();
          return undefined;
        },
        (error: unknown) => error,
      ),
      "connect",
    );
    assert.ok(error instanceof Error, "connect() must reject");
    assert.match(error.message, /certificate|issuer/i);
  });
}

for (const variant of VARIANTS.filter((variant) => variant.tls)) {
  Deno.test(`connect() checks the certificate of ${variant.name} against serverName`, async () => {
    await using server = await startServer(variant);
    // The certificate names 127.0.0.1 and localhost.
    const ws = await connectTo(server, "/", { serverName: "localhost" });
    await ws.send("by name");
    assert.equal(await receive(ws), "by name");
    await closeCleanly(ws);
    const error = await deadline(
      connectTo(server, "/", { serverName: "wrong.example" }).then(
        (ws) => {
          ws.close();
          return undefined;
        },
        (error: unknown) => error,
      ),
      "connect",
    );
    assert.ok(error instanceof Error, "connect() must reject");
    assert.match(error.message, /certificate|name/i);
  });
}

// ---------------------------------------------------------------------------
// permessage-deflate
// ---------------------------------------------------------------------------

for (const tls of [false, true]) {
  const variant: Variant = {
    name: `Node's ws server${tls ? " over TLS" : ""}`,
    kind: "ws",
    tls,
  };

  Deno.test(`connect() negotiates permessage-deflate with ${variant.name} and messages round-trip`, async () => {
    await using server = await startServer(variant, { deflate: true });
    const ws = await connectTo(server);
    assert.match(ws.extensions, /^permessage-deflate\b/);
    const request = await server.requests.next("upgrade request");
    assert.match(
      request.headers.get("sec-websocket-extensions") ?? "",
      /^permessage-deflate\b/,
    );
    const repetitive = "compress me! ".repeat(10_000);
    const messages: (string | Uint8Array<ArrayBuffer>)[] = [
      "",
      "small",
      repetitive,
      "Здравствуй 😀".repeat(5_000),
      new Uint8Array(0),
      patternBytes(1_000, 3),
      new TextEncoder().encode(repetitive),
      patternBytes(2 * 1024 * 1024, 4),
    ];
    // Twice: the second round runs on the context kept from the first.
    for (let round = 0; round < 2; round++) {
      for (const message of messages) {
        await ws.send(message);
        const echoed = await receive(ws);
        if (typeof message === "string") assert.equal(echoed, message);
        else assertBytes(echoed, message);
      }
    }
    await closeCleanly(ws);
  });
}

Deno.test("connect() with deflate off offers no extension to Node's ws server", async () => {
  await using server = await startServer(VARIANTS[1]!, { deflate: true });
  const ws = await connectTo(server, "/", { deflate: false });
  assert.equal(ws.extensions, "");
  const request = await server.requests.next("upgrade request");
  assert.equal(request.headers.get("sec-websocket-extensions"), null);
  await ws.send("plain");
  assert.equal(await receive(ws), "plain");
  await closeCleanly(ws);
});

Deno.test("connect() has no extensions with Deno's built-in server, which does not compress", async () => {
  await using server = await startServer(VARIANTS[0]!);
  const ws = await connectTo(server);
  assert.equal(ws.extensions, "");
  const request = await server.requests.next("upgrade request");
  // We did offer it (our default); the server declined.
  assert.match(
    request.headers.get("sec-websocket-extensions") ?? "",
    /^permessage-deflate\b/,
  );
  await ws.send("x".repeat(10_000));
  assert.equal(await receive(ws), "x".repeat(10_000));
  await closeCleanly(ws);
});

Deno.test("connect() negotiates permessage-deflate with serve()", async () => {
  await using server = await startServer(VARIANTS[2]!);
  const ws = await connectTo(server);
  assert.match(ws.extensions, /^permessage-deflate\b/);
  await ws.send("y".repeat(100_000));
  assert.equal(await receive(ws), "y".repeat(100_000));
  await closeCleanly(ws);
});
