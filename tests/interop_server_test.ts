// Copyright 2026 the @rfc6455/websocket authors. MIT license.
// Interop: serve() and createFetchHandler() against real clients, Deno's
// built-in WebSocket and Node's `ws`, plain and (ws) over TLS.

import assert from "node:assert/strict";
// @ts-types="npm:@types/ws@8.18.1"
import NodeWebSocket from "npm:ws@8.23.0";
import type { CloseInfo, WebSocketSession } from "../connection.ts";
import {
  ConnectionClosedError,
  HandshakeError,
  ProtocolError,
} from "../errors.ts";
import {
  createFetchHandler,
  type FetchHandlerOptions,
  serve,
  type WebSocketHandler,
} from "../server.ts";
import { makeCertificate, opensslAvailable } from "./_tls.ts";
import { captureConsoleError, deadline, patternBytes } from "./_util.ts";
import { echoHandler as echo } from "../examples/echo_handler.ts";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

type Message = string | Uint8Array;

/** A queue of received messages that tests await one at a time. */
class Inbox {
  #items: Message[] = [];
  #waiters: Array<PromiseWithResolvers<Message>> = [];
  #ended: Error | undefined;

  push(message: Message): void {
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) waiter.resolve(message);
    else this.#items.push(message);
  }

  end(): void {
    this.#ended = new Error("Connection closed before the next message");
    for (const waiter of this.#waiters.splice(0)) waiter.reject(this.#ended);
  }

  next(): Promise<Message> {
    const item = this.#items.shift();
    if (item !== undefined) return Promise.resolve(item);
    if (this.#ended !== undefined) return Promise.reject(this.#ended);
    const waiter = Promise.withResolvers<Message>();
    this.#waiters.push(waiter);
    return deadline(waiter.promise, "next message");
  }
}

/** One client connection, whatever library runs it. */
interface TestClient {
  readonly protocol: string;
  readonly extensions: string;
  send(data: Message): void;
  next(): Promise<Message>;
  close(code?: number, reason?: string): void;
  /** Resolves on the client's close event. */
  readonly closed: Promise<CloseInfo>;
}

interface ClientOptions {
  protocols?: string[];
  origin?: string;
}

/** A client library and transport that the tests run against. */
interface Variant {
  name: string;
  kind: "deno" | "ws";
  tls: boolean;
  /** Whether the client offers permessage-deflate (ws does by default). */
  deflate: boolean;
}

const VARIANTS: Variant[] = [
  {
    name: "Deno's built-in WebSocket",
    kind: "deno",
    tls: false,
    deflate: false,
  },
  { name: "Node's ws", kind: "ws", tls: false, deflate: true },
  { name: "Node's ws over TLS", kind: "ws", tls: true, deflate: true },
  {
    name: "Node's ws without permessage-deflate",
    kind: "ws",
    tls: false,
    deflate: false,
  },
];
const DENO = VARIANTS[0]!;
const NODE = VARIANTS[1]!;
const NODE_TLS = VARIANTS[2]!;

async function listenOptions(
  variant: Variant,
): Promise<{ hostname: string; port: number; cert?: string; key?: string }> {
  const base = { hostname: "127.0.0.1", port: 0 };
  if (!variant.tls) return base;
  const { cert, key } = await makeCertificate();
  return { ...base, cert, key };
}

function urlOf(variant: Variant, port: number, path = "/"): string {
  return `${variant.tls ? "wss" : "ws"}://127.0.0.1:${port}${path}`;
}

async function connectClient(
  variant: Variant,
  url: string,
  options: ClientOptions = {},
): Promise<TestClient> {
  if (variant.kind === "deno") return await connectDeno(url, options);
  const ca = variant.tls ? (await makeCertificate()).cert : undefined;
  return await connectNode(url, options, ca, variant.deflate);
}

function connectDeno(url: string, options: ClientOptions): Promise<TestClient> {
  const socket = new WebSocket(url, options.protocols ?? []);
  socket.binaryType = "arraybuffer";
  const inbox = new Inbox();
  const closed = new Promise<CloseInfo>((resolve) => {
    socket.addEventListener("close", (event) => {
      inbox.end();
      resolve({
        code: event.code,
        reason: event.reason,
        wasClean: event.wasClean,
      });
    });
  });
  socket.addEventListener("message", (event) => {
    const data = event.data;
    inbox.push(
      typeof data === "string" ? data : new Uint8Array(data as ArrayBuffer),
    );
  });
  const client: TestClient = {
    get protocol() {
      return socket.protocol;
    },
    get extensions() {
      return socket.extensions;
    },
    send: (data) => socket.send(data as string | Uint8Array<ArrayBuffer>),
    next: () => inbox.next(),
    close: (code, reason) => socket.close(code, reason),
    closed,
  };
  return opened(
    (listener) => socket.addEventListener("open", listener, { once: true }),
    client,
    closed,
  );
}

function connectNode(
  url: string,
  options: ClientOptions,
  ca: string | undefined,
  deflate = true,
): Promise<TestClient> {
  const socket = new NodeWebSocket(url, options.protocols ?? [], {
    perMessageDeflate: deflate,
    ...(ca === undefined ? {} : { ca }),
    ...(options.origin === undefined ? {} : { origin: options.origin }),
  });
  socket.binaryType = "arraybuffer";
  const inbox = new Inbox();
  const closed = new Promise<CloseInfo>((resolve) => {
    socket.addEventListener("close", (event) => {
      inbox.end();
      resolve({
        code: event.code,
        reason: event.reason,
        wasClean: event.wasClean,
      });
    });
  });
  socket.addEventListener("message", (event) => {
    const data = event.data;
    inbox.push(
      typeof data === "string" ? data : new Uint8Array(data as ArrayBuffer),
    );
  });
  // Errors also end in a close event, which settles `closed`.
  socket.on("error", () => {});
  const client: TestClient = {
    get protocol() {
      return socket.protocol;
    },
    get extensions() {
      return socket.extensions;
    },
    send: (data) => socket.send(data),
    next: () => inbox.next(),
    close: (code, reason) => socket.close(code, reason),
    closed,
  };
  return opened((listener) => socket.once("open", listener), client, closed);
}

/** Resolves on open; rejects (after the close event) when opening fails. */
function opened(
  onOpen: (listener: () => void) => void,
  client: TestClient,
  closed: Promise<CloseInfo>,
): Promise<TestClient> {
  const { promise, resolve, reject } = Promise.withResolvers<TestClient>();
  onOpen(() => resolve(client));
  closed.then((info) =>
    reject(new Error(`Connection closed before open with code ${info.code}`))
  );
  return deadline(promise, "client open");
}

/** Closes a client with 1000 and waits for its close event. */
async function closeClient(client: TestClient): Promise<CloseInfo> {
  client.close(1000);
  return await deadline(client.closed, "client close");
}

/** The index of the first byte where `a` and `b` differ, or -1. */
function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : length;
}

function assertBytes(actual: Message, expected: Uint8Array): void {
  assert.ok(actual instanceof Uint8Array, "expected a binary message");
  assert.equal(actual.length, expected.length);
  assert.equal(firstDifference(actual, expected), -1);
}

/**
 * A random string of `count` code points from every UTF-8 length class
 * (1 to 4 bytes), never a lone surrogate, from a seeded generator.
 */
function randomText(count: number, seed: number): string {
  let x = seed | 1;
  const next = () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
  const ranges: [number, number][] = [
    [0x20, 0x7e],
    [0x80, 0x7ff],
    [0x800, 0xd7ff],
    [0xe000, 0xfffd],
    [0x10000, 0x10ffff],
  ];
  const points: number[] = [];
  for (let i = 0; i < count; i++) {
    const [low, high] = ranges[next() % ranges.length]!;
    points.push(low + (next() % (high - low + 1)));
  }
  return String.fromCodePoint(...points);
}

/** A handler that echoes and hands its session to the test. */
function spyHandler(): {
  handler: WebSocketHandler;
  session: Promise<WebSocketSession>;
  closed: Promise<CloseInfo>;
} {
  const session = Promise.withResolvers<WebSocketSession>();
  const closed = Promise.withResolvers<CloseInfo>();
  const handler: WebSocketHandler = async (ws) => {
    session.resolve(ws);
    for await (const message of ws) await ws.send(message);
    closed.resolve(await ws.closed);
  };
  return {
    handler,
    session: session.promise,
    closed: closed.promise,
  };
}

// ---------------------------------------------------------------------------
// serve() with each client
// ---------------------------------------------------------------------------

for (const variant of VARIANTS) {
  Deno.test(
    `serve() echoes text and binary messages of boundary sizes to ${variant.name}`,
    { ignore: variant.tls && !opensslAvailable },
    async () => {
      await using server = serve(await listenOptions(variant), echo);
      const client = await connectClient(
        variant,
        urlOf(variant, server.addr.port),
      );
      // serve() accepts permessage-deflate by default when offered.
      if (variant.deflate) {
        assert.match(client.extensions, /^permessage-deflate/);
      } else assert.equal(client.extensions, "");
      for (const size of [0, 1, 125, 126, 127, 65535, 65536, 65537]) {
        const bytes = patternBytes(size, size + 7);
        client.send(bytes);
        assertBytes(await client.next(), bytes);
        const text = "x".repeat(size);
        client.send(text);
        assert.equal(await client.next(), text);
      }
      assert.deepEqual(await closeClient(client), {
        code: 1000,
        reason: "",
        wasClean: true,
      });
    },
  );

  Deno.test(
    `serve() echoes a 16 MiB binary message exactly to ${variant.name}`,
    { ignore: variant.tls && !opensslAvailable },
    async () => {
      await using server = serve(await listenOptions(variant), echo);
      const client = await connectClient(
        variant,
        urlOf(variant, server.addr.port),
      );
      const bytes = patternBytes(16 * 1024 * 1024, 16);
      client.send(bytes);
      assertBytes(await client.next(), bytes);
      await closeClient(client);
    },
  );

  Deno.test(`serve() echoes multi-byte UTF-8 text exactly to ${variant.name}`, {
    ignore: variant.tls && !opensslAvailable,
  }, async () => {
    await using server = serve(await listenOptions(variant), echo);
    const client = await connectClient(
      variant,
      urlOf(variant, server.addr.port),
    );
    const texts = [
      "😀🎉👩‍👩‍👧‍👦🏳️‍🌈",
      "中文字符、日本語のテキスト、한국어 텍스트",
      "é".repeat(70_000),
      "𝄞".repeat(20_000), // 4-byte code points across the 64 KiB boundary
    ];
    for (let seed = 1; seed <= 20; seed++) {
      texts.push(randomText(seed * 97, seed));
    }
    for (const text of texts) {
      client.send(text);
      assert.equal(await client.next(), text);
    }
    await closeClient(client);
  });

  Deno.test(
    `serve() echoes 1,000 pipelined messages in order to ${variant.name}`,
    { ignore: variant.tls && !opensslAvailable },
    async () => {
      await using server = serve(await listenOptions(variant), echo);
      const client = await connectClient(
        variant,
        urlOf(variant, server.addr.port),
      );
      for (let i = 0; i < 1000; i++) {
        client.send(i % 2 === 0 ? `message ${i}` : patternBytes(i, i));
      }
      for (let i = 0; i < 1000; i++) {
        const message = await client.next();
        if (i % 2 === 0) assert.equal(message, `message ${i}`);
        else assertBytes(message, patternBytes(i, i));
      }
      await closeClient(client);
    },
  );

  Deno.test(
    `serve() selects the first subprotocol the client offers that the server speaks, with ${variant.name}`,
    { ignore: variant.tls && !opensslAvailable },
    async () => {
      const spy = spyHandler();
      await using server = serve(
        { ...await listenOptions(variant), protocols: ["a", "b"] },
        spy.handler,
      );
      const client = await connectClient(
        variant,
        urlOf(variant, server.addr.port),
        { protocols: ["b", "a"] },
      );
      assert.equal(client.protocol, "b");
      assert.equal((await deadline(spy.session, "session")).protocol, "b");
      await closeClient(client);
    },
  );

  Deno.test(
    `serve() selects the subprotocol its protocols function picks, with ${variant.name}`,
    { ignore: variant.tls && !opensslAvailable },
    async () => {
      const spy = spyHandler();
      const seen: string[][] = [];
      await using server = serve({
        ...await listenOptions(variant),
        protocols: (offered, request) => {
          seen.push(offered);
          assert.equal(new URL(request.url).pathname, "/chat");
          return offered.find((protocol) => protocol.startsWith("chat.v2"));
        },
      }, spy.handler);
      const client = await connectClient(
        variant,
        urlOf(variant, server.addr.port, "/chat"),
        { protocols: ["chat.v1", "chat.v2.json", "chat.v2"] },
      );
      assert.equal(client.protocol, "chat.v2.json");
      assert.equal(
        (await deadline(spy.session, "session")).protocol,
        "chat.v2.json",
      );
      assert.deepEqual(seen, [["chat.v1", "chat.v2.json", "chat.v2"]]);
      await closeClient(client);
    },
  );

  Deno.test(
    `serve() gives the handler the close code and reason that ${variant.name} sends`,
    { ignore: variant.tls && !opensslAvailable },
    async () => {
      const spy = spyHandler();
      await using server = serve(await listenOptions(variant), spy.handler);
      const client = await connectClient(
        variant,
        urlOf(variant, server.addr.port),
      );
      client.send("before close");
      assert.equal(await client.next(), "before close");
      client.close(4001, "bye");
      assert.deepEqual(await deadline(spy.closed, "handler close"), {
        code: 4001,
        reason: "bye",
        wasClean: true,
      });
      const info = await deadline(client.closed, "client close");
      assert.equal(info.code, 4001);
      assert.equal(info.wasClean, true);
    },
  );

  Deno.test(
    `serve() delivers the close code the handler sends to ${variant.name}`,
    { ignore: variant.tls && !opensslAvailable },
    async () => {
      const handlerClosed = Promise.withResolvers<CloseInfo>();
      await using server = serve(await listenOptions(variant), async (ws) => {
        for await (const message of ws) {
          if (message === "close please") {
            handlerClosed.resolve(await ws.close(4002, "handler says bye"));
          }
        }
      });
      const client = await connectClient(
        variant,
        urlOf(variant, server.addr.port),
      );
      client.send("close please");
      assert.deepEqual(await deadline(client.closed, "client close"), {
        code: 4002,
        reason: "handler says bye",
        wasClean: true,
      });
      const info = await deadline(handlerClosed.promise, "handler close");
      assert.equal(info.code, 4002);
      assert.equal(info.wasClean, true);
    },
  );

  Deno.test(
    `serve() closes with 1011 when the handler throws, calls onError and keeps serving ${variant.name}`,
    { ignore: variant.tls && !opensslAvailable },
    async () => {
      const errors: unknown[] = [];
      await using server = serve({
        ...await listenOptions(variant),
        onError: (error) => errors.push(error),
      }, async (ws) => {
        for await (const message of ws) {
          if (message === "throw") throw new Error("Handler failed on purpose");
          await ws.send(message);
        }
      });
      const url = urlOf(variant, server.addr.port);
      const first = await connectClient(variant, url);
      first.send("throw");
      const info = await deadline(first.closed, "first client close");
      assert.equal(info.code, 1011);
      assert.equal(info.reason, "");
      assert.equal(errors.length, 1);
      assert.ok(errors[0] instanceof Error);
      assert.equal(errors[0].message, "Handler failed on purpose");

      const second = await connectClient(variant, url);
      second.send("still here");
      assert.equal(await second.next(), "still here");
      assert.equal((await closeClient(second)).code, 1000);
      assert.equal(errors.length, 1);
    },
  );
}

Deno.test("serve() shutdown() sends 1001 to every connected client", async () => {
  // One plain server for both plain clients, and one TLS server for ws
  // (plain too where openssl is missing).
  const third = opensslAvailable ? NODE_TLS : NODE;
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, echo);
  await using tlsServer = serve(await listenOptions(third), echo);
  const clients = [
    await connectClient(DENO, urlOf(DENO, server.addr.port)),
    await connectClient(NODE, urlOf(NODE, server.addr.port)),
    await connectClient(third, urlOf(third, tlsServer.addr.port)),
  ];
  for (const client of clients) {
    client.send("ready");
    assert.equal(await client.next(), "ready");
  }
  assert.equal(server.connections.size, 2);
  assert.equal(tlsServer.connections.size, 1);
  await deadline(
    Promise.all([server.shutdown(), tlsServer.shutdown()]),
    "shutdown",
  );
  for (const client of clients) {
    assert.deepEqual(await deadline(client.closed, "client close"), {
      code: 1001,
      reason: "server shutting down",
      wasClean: true,
    });
  }
  assert.equal(server.connections.size, 0);
  await deadline(server.finished, "finished");
});

Deno.test("serve() shutdown() during handshakes: every client that got its 101 gets 1001", async () => {
  // Clients connect while shutdown() begins, with upgrade hooks of random
  // length, so that some are answered while shutdown() runs. Those still in
  // the handshake are cut off; every one that opened must see a clean 1001
  // (before the fix, about half of them got 1006).
  const counts = { opened: 0, refused: 0 };
  const codes: number[] = [];
  for (let round = 0; round < 15; round++) {
    const server = serve({
      hostname: "127.0.0.1",
      port: 0,
      shutdownTimeout: 1000,
      upgrade: async () => {
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 4));
        return {};
      },
    }, async (ws) => {
      for await (const _ of ws) { /* until the close */ }
    });
    const firstOpen = Promise.withResolvers<void>();
    const clients = Array.from({ length: 20 }, () => {
      const socket = new NodeWebSocket(`ws://127.0.0.1:${server.addr.port}/`);
      return new Promise<void>((resolve) => {
        let opened = false;
        socket.on("open", () => {
          opened = true;
          firstOpen.resolve();
        });
        socket.on("error", () => {});
        socket.on("close", (code: number) => {
          if (opened) {
            counts.opened++;
            codes.push(code);
          } else counts.refused++;
          resolve();
        });
      });
    });
    // Every third round begins shutdown() as the first client opens (the
    // others are still in their handshakes): on a loaded machine, random
    // waits alone may see none open.
    if (round % 3 === 0) await deadline(firstOpen.promise, "a client opened");
    else {
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 20));
    }
    await deadline(server.shutdown(), "shutdown");
    await deadline(Promise.all(clients), "clients closed");
  }
  assert.equal(counts.opened + counts.refused, 15 * 20);
  assert.ok(counts.opened > 0, "no client opened: the test raced nothing");
  assert.deepEqual(codes.filter((code) => code !== 1001), []);
});

Deno.test("serve() shuts down with 1001 when its signal aborts", async () => {
  const controller = new AbortController();
  await using server = serve({
    hostname: "127.0.0.1",
    port: 0,
    signal: controller.signal,
  }, echo);
  const client = await connectClient(NODE, urlOf(NODE, server.addr.port));
  client.send("ready");
  assert.equal(await client.next(), "ready");
  controller.abort();
  await deadline(server.finished, "finished");
  assert.equal((await deadline(client.closed, "client close")).code, 1001);
  // The listener is closed: nobody can connect any more.
  await assert.rejects(
    Deno.connect({ hostname: "127.0.0.1", port: server.addr.port }),
    Deno.errors.ConnectionRefused,
  );
});

Deno.test("serve() shutdown() finishes after shutdownTimeout when a handler never returns", async () => {
  const release = Promise.withResolvers<void>();
  const handlerClosed = Promise.withResolvers<CloseInfo>();
  await using server = serve({
    hostname: "127.0.0.1",
    port: 0,
    shutdownTimeout: 100,
  }, async (ws) => {
    // A handler that waits on something else and never looks at `ws`.
    handlerClosed.resolve(ws.closed);
    await release.promise;
  });
  const client = await connectClient(DENO, urlOf(DENO, server.addr.port));
  try {
    await deadline(server.shutdown(), "shutdown");
    assert.equal((await deadline(client.closed, "client close")).code, 1001);
    assert.equal((await deadline(handlerClosed.promise, "closed")).code, 1001);
  } finally {
    release.resolve();
  }
});

// ---------------------------------------------------------------------------
// serve(): checks at upgrade time, and plain HTTP
// ---------------------------------------------------------------------------

/** Opens a ws client expected to be refused: its status and body. */
function refusedNode(
  url: string,
  options: ClientOptions = {},
): Promise<{ status: number; body: string }> {
  const socket = new NodeWebSocket(url, options.protocols ?? [], {
    ...(options.origin === undefined ? {} : { origin: options.origin }),
  });
  const result = Promise.withResolvers<{ status: number; body: string }>();
  const closed = Promise.withResolvers<void>();
  socket.on("open", () => {
    result.reject(new Error("Expected the upgrade to be refused"));
    socket.close();
  });
  // With this listener, ws leaves the request to us: read the body, then
  // terminate, which ends in ws's error and close events (destroying the
  // request alone leaves the client CONNECTING forever).
  socket.on("unexpected-response", (_request, response) => {
    const chunks: Uint8Array[] = [];
    response.on("data", (chunk: Uint8Array) => chunks.push(chunk));
    response.on("end", () => {
      result.resolve({
        status: response.statusCode ?? 0,
        body: new TextDecoder().decode(
          new Uint8Array(chunks.flatMap((chunk) => [...chunk])),
        ),
      });
      socket.terminate();
    });
  });
  socket.on("error", () => {});
  socket.on("close", () => closed.resolve());
  return deadline(
    Promise.all([result.promise, closed.promise]).then(([value]) => value),
    "refused client",
  );
}

Deno.test("serve() refuses a foreign Origin with 403 and accepts an origin in origins", async () => {
  const errors: unknown[] = [];
  await using strict = serve({
    hostname: "127.0.0.1",
    port: 0,
    onError: (error) => errors.push(error),
  }, echo);
  const refused = await refusedNode(`ws://127.0.0.1:${strict.addr.port}/`, {
    origin: "https://evil.example",
  });
  assert.equal(refused.status, 403);
  assert.match(refused.body, /origin is not allowed/);
  assert.equal(errors.length, 1);
  assert.equal((errors[0] as { status?: number }).status, 403);

  // Same origin, and no Origin at all, are allowed.
  const same = await connectClient(
    NODE,
    `ws://127.0.0.1:${strict.addr.port}/`,
    {
      origin: `http://127.0.0.1:${strict.addr.port}`,
    },
  );
  await closeClient(same);
  const none = await connectClient(NODE, `ws://127.0.0.1:${strict.addr.port}/`);
  await closeClient(none);

  await using open = serve({
    hostname: "127.0.0.1",
    port: 0,
    origins: ["https://good.example", /^https:\/\/[a-z]+\.trusted\.example$/],
  }, echo);
  const url = `ws://127.0.0.1:${open.addr.port}/`;
  for (
    const origin of ["https://good.example", "https://app.trusted.example"]
  ) {
    const client = await connectClient(NODE, url, { origin });
    client.send(origin);
    assert.equal(await client.next(), origin);
    await closeClient(client);
  }
  assert.equal(
    (await refusedNode(url, { origin: "https://evil.example" })).status,
    403,
  );
});

Deno.test("serve() and createFetchHandler() accept Origin: null when origins lists it, as a string or a RegExp", async () => {
  // Sandboxed frames and file: pages send "null", which is not a URL.
  for (const origins of [["null"], [/^null$/]]) {
    await using server = serve(
      { hostname: "127.0.0.1", port: 0, origins },
      echo,
    );
    await using edge = fetchServer({ origins }, echo);
    for (const port of [server.addr.port, edge.addr.port]) {
      const url = `ws://127.0.0.1:${port}/`;
      const client = await connectClient(NODE, url, { origin: "null" });
      client.send("from null");
      assert.equal(await client.next(), "from null");
      await closeClient(client);
      const other = await refusedNode(url, { origin: "https://evil.example" });
      assert.equal(other.status, 403);
    }
  }
  // Unlisted, it is refused as before.
  await using strict = serve({ hostname: "127.0.0.1", port: 0 }, echo);
  const url = `ws://127.0.0.1:${strict.addr.port}/`;
  assert.equal((await refusedNode(url, { origin: "null" })).status, 403);
});

Deno.test("serve() refuses an upgrade with the Response its upgrade hook returns", async () => {
  await using server = serve<{ user: string }>({
    hostname: "127.0.0.1",
    port: 0,
    upgrade: (request) => {
      const token = new URL(request.url).searchParams.get("token");
      if (token !== "secret") {
        return new Response("token required", {
          status: 401,
          headers: { "www-authenticate": "Bearer" },
        });
      }
      return { data: { user: "ada" }, headers: [["X-User", "ada"]] };
    },
  }, async (ws, _request, data) => {
    await ws.send(`hello ${data.user}`);
    for await (const _ of ws) { /* wait for the close */ }
  });
  const refused = await refusedNode(`ws://127.0.0.1:${server.addr.port}/`);
  assert.deepEqual(refused, { status: 401, body: "token required" });

  for (const variant of [DENO, NODE]) {
    const client = await connectClient(
      variant,
      `ws://127.0.0.1:${server.addr.port}/?token=secret`,
    );
    assert.equal(await client.next(), "hello ada");
    await closeClient(client);
  }
});

Deno.test("serve() answers 500 without details when a hook throws, and goes on", async () => {
  const errors: unknown[] = [];
  const secret = "hook detail that must not leak";
  await using server = serve({
    hostname: "127.0.0.1",
    port: 0,
    onError: (error) => errors.push(error),
    onRequest: () => {
      throw new Error(secret);
    },
    upgrade: (request) => {
      if (new URL(request.url).pathname === "/throw") throw new Error(secret);
    },
    protocols: (offered) => {
      if (offered.includes("throw")) throw new Error(secret);
      return undefined;
    },
  }, echo);
  const port = server.addr.port;

  const plain = await deadline(fetch(`http://127.0.0.1:${port}/`), "fetch");
  assert.equal(plain.status, 500);
  assert.ok(!(await plain.text()).includes(secret));

  const hook = await refusedNode(`ws://127.0.0.1:${port}/throw`);
  assert.equal(hook.status, 500);
  assert.ok(!hook.body.includes(secret));

  const protocols = await refusedNode(`ws://127.0.0.1:${port}/`, {
    protocols: ["throw"],
  });
  assert.equal(protocols.status, 500);

  assert.equal(errors.length, 3);
  for (const error of errors) {
    assert.ok(error instanceof Error);
    assert.equal(error.message, secret);
  }
  const client = await connectClient(NODE, `ws://127.0.0.1:${port}/`);
  client.send("after the failures");
  assert.equal(await client.next(), "after the failures");
  await closeClient(client);
});

Deno.test("serve() answers plain HTTP with onRequest, and with 426 by default", async () => {
  await using withRequest = serve({
    hostname: "127.0.0.1",
    port: 0,
    onRequest: (request) =>
      new Response(`plain ${new URL(request.url).pathname}`, {
        headers: { "content-type": "text/plain" },
      }),
  }, echo);
  const ok = await deadline(
    fetch(`http://127.0.0.1:${withRequest.addr.port}/health`),
    "fetch",
  );
  assert.equal(ok.status, 200);
  assert.equal(ok.headers.get("content-type"), "text/plain");
  assert.equal(await ok.text(), "plain /health");

  await using plain = serve({ hostname: "127.0.0.1", port: 0 }, echo);
  const refused = await deadline(
    fetch(`http://127.0.0.1:${plain.addr.port}/`),
    "fetch",
  );
  assert.equal(refused.status, 426);
  assert.equal(refused.headers.get("sec-websocket-version"), "13");
  assert.equal(refused.headers.get("upgrade"), "websocket");
  assert.match(await refused.text(), /WebSocket/);

  // The WebSocket side still works next to plain HTTP.
  const client = await connectClient(
    DENO,
    `ws://127.0.0.1:${plain.addr.port}/`,
  );
  client.send("after http");
  assert.equal(await client.next(), "after http");
  await closeClient(client);
});

Deno.test(
  "serve() over TLS echoes to Deno's built-in WebSocket in a process that trusts the certificate",
  {
    ignore: !opensslAvailable,
  },
  async () => {
    // The built-in client takes its roots at startup (--cert), never per
    // connection, so it runs in a child process.
    const { cert, key } = await makeCertificate();
    await using server = serve(
      { hostname: "127.0.0.1", port: 0, cert, key },
      echo,
    );
    const dir = await Deno.makeTempDir({ prefix: "rfc6455_interop_" });
    try {
      await Deno.writeTextFile(`${dir}/cert.pem`, cert);
      const script = `
      const ws = new WebSocket(Deno.args[0], ["p"]);
      ws.binaryType = "arraybuffer";
      const got = [];
      ws.onopen = () => { ws.send("tls text"); ws.send(new Uint8Array([1, 2, 3])); };
      ws.onmessage = (e) => {
        got.push(typeof e.data === "string" ? e.data : [...new Uint8Array(e.data)]);
        if (got.length === 2) ws.close(4000, "done");
      };
      ws.onclose = (e) => console.log(JSON.stringify({ got, code: e.code, clean: e.wasClean }));
    `;
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "eval",
          "--cert",
          `${dir}/cert.pem`,
          script,
          `wss://127.0.0.1:${server.addr.port}/`,
        ],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const output = await deadline(child.output(), "child process", 30_000);
      const stderr = new TextDecoder().decode(output.stderr);
      assert.equal(output.code, 0, stderr);
      assert.deepEqual(JSON.parse(new TextDecoder().decode(output.stdout)), {
        got: ["tls text", [1, 2, 3]],
        code: 4000,
        clean: true,
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

// ---------------------------------------------------------------------------
// createFetchHandler() on Deno.serve
// ---------------------------------------------------------------------------

function fetchServer(
  options: FetchHandlerOptions,
  handler: WebSocketHandler,
): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    createFetchHandler(options, handler),
  );
}

for (const variant of [DENO, NODE]) {
  Deno.test(`createFetchHandler() on Deno.serve echoes to ${variant.name}`, async () => {
    await using server = fetchServer({}, echo);
    const client = await connectClient(
      variant,
      urlOf(variant, server.addr.port),
    );
    const bytes = patternBytes(70_000, 3);
    client.send("edge text 😀");
    assert.equal(await client.next(), "edge text 😀");
    client.send(bytes);
    assertBytes(await client.next(), bytes);
    client.send(new Uint8Array(0));
    assertBytes(await client.next(), new Uint8Array(0));
    assert.equal((await closeClient(client)).code, 1000);
  });

  Deno.test(`createFetchHandler() sends bytes as text unchanged, a leading U+FEFF included, and refuses bytes that are not UTF-8 (${variant.name})`, async () => {
    // The handler sends each text back as its UTF-8 bytes, as text.
    await using server = fetchServer({}, async (ws) => {
      for await (const message of ws) {
        if (typeof message === "string") {
          await ws.send(new TextEncoder().encode(message), { binary: false });
          continue;
        }
        const sent = ws.send(message, { binary: false });
        const error = await sent.then(() => undefined, (error) => error);
        await ws.send(error instanceof TypeError ? "refused" : "sent");
      }
    });
    const client = await connectClient(
      variant,
      urlOf(variant, server.addr.port),
    );
    for (const text of ["\uFEFFstarts with a BOM", "\uFEFF", "a\uFEFFb"]) {
      client.send(text);
      assert.equal(await client.next(), text);
    }
    // A lone continuation byte: no text to send in its place.
    client.send(new Uint8Array([0x61, 0x80]));
    assert.equal(await client.next(), "refused");
    assert.equal((await closeClient(client)).code, 1000);
  });

  Deno.test(`createFetchHandler() selects a subprotocol for ${variant.name}`, async () => {
    const spy = spyHandler();
    await using server = fetchServer({ protocols: ["a", "b"] }, spy.handler);
    const client = await connectClient(
      variant,
      urlOf(variant, server.addr.port),
      { protocols: ["b", "a"] },
    );
    assert.equal(client.protocol, "b");
    assert.equal((await deadline(spy.session, "session")).protocol, "b");
    client.close(4001, "bye");
    assert.deepEqual(await deadline(spy.closed, "handler close"), {
      code: 4001,
      reason: "bye",
      wasClean: true,
    });
    await deadline(client.closed, "client close");
  });
}

Deno.test("createFetchHandler() refuses a foreign Origin with 403", async () => {
  const errors: unknown[] = [];
  await using server = fetchServer({
    origins: ["https://good.example"],
    onError: (error) => errors.push(error),
  }, echo);
  const url = `ws://127.0.0.1:${server.addr.port}/`;
  const refused = await refusedNode(url, { origin: "https://evil.example" });
  assert.equal(refused.status, 403);
  assert.match(refused.body, /origin is not allowed/);
  assert.equal(errors.length, 1);

  const client = await connectClient(NODE, url, {
    origin: "https://good.example",
  });
  client.send("welcome");
  assert.equal(await client.next(), "welcome");
  await closeClient(client);
});

Deno.test("createFetchHandler() answers plain HTTP with 426 by default", async () => {
  await using server = fetchServer({}, echo);
  const response = await deadline(
    fetch(`http://127.0.0.1:${server.addr.port}/`),
    "fetch",
  );
  assert.equal(response.status, 426);
  assert.equal(response.headers.get("sec-websocket-version"), "13");
  await response.text();
});

Deno.test("createFetchHandler() answers HEAD with the head of the answer GET gets, without its body, as serve() does", async () => {
  await using plain = fetchServer({}, echo);
  await using withRequest = fetchServer({
    onRequest: () => new Response("hello, HTTP"),
  }, echo);
  const cases: [number, number][] = [
    [plain.addr.port, 426],
    [withRequest.addr.port, 200],
  ];
  for (const [port, status] of cases) {
    // With Connection: close, the runtime closes after its answer: whatever
    // came after the head is read to the end.
    const answer = async (method: string) => {
      using conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await conn.write(
        new TextEncoder().encode(
          `${method} / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
        ),
      );
      const text = await deadline(
        new Response(conn.readable).text(),
        "answer",
      );
      const end = text.indexOf("\r\n\r\n") + 4;
      const length = /\r\ncontent-length: *(\d+)\r\n/i.exec(text)?.[1];
      return { status: text.split(" ")[1], length, body: text.slice(end) };
    };
    const get = await answer("GET");
    const head = await answer("HEAD");
    assert.equal(head.status, String(status));
    assert.equal(head.body, "");
    assert.ok(get.body.length > 0);
    assert.equal(head.length, String(get.body.length));
  }
});

/** Sends a request head by hand; the answer's status, headers and body. */
async function rawRequest(
  port: number,
  head: string,
): Promise<{ status: number; headers: Headers; body: string }> {
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(new TextEncoder().encode(head));
  const decoder = new TextDecoder();
  const buffer = new Uint8Array(16 * 1024);
  let text = "";
  // Deno.serve keeps the connection open: read the head, then the
  // Content-Length bytes of the body (these bodies are ASCII).
  while (true) {
    const end = text.indexOf("\r\n\r\n");
    if (end !== -1) {
      const [statusLine, ...lines] = text.slice(0, end).split("\r\n");
      const headers = new Headers(
        lines.map((line) => {
          const colon = line.indexOf(":");
          return [line.slice(0, colon), line.slice(colon + 1).trim()];
        }),
      );
      const length = Number(headers.get("content-length") ?? 0);
      if (text.length >= end + 4 + length) {
        return {
          status: Number(statusLine!.split(" ")[1]),
          headers,
          body: text.slice(end + 4, end + 4 + length),
        };
      }
    }
    const count = await deadline(conn.read(buffer), "answer");
    if (count === null) throw new Error(`incomplete answer: ${text}`);
    text += decoder.decode(buffer.subarray(0, count));
  }
}

Deno.test("createFetchHandler() refuses the upgrade requests serve() refuses, with the same statuses, before Deno.upgradeWebSocket", async () => {
  const errors: unknown[] = [];
  await using edge = fetchServer({
    onError: (error) => errors.push(error),
  }, echo);
  await using server = serve({
    hostname: "127.0.0.1",
    port: 0,
    onError: () => {},
  }, echo);
  const base = "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n";
  const key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
  const cases: [string, string, number][] = [
    // Deno.upgradeWebSocket takes these with 101.
    [
      "a key that is not 16 bytes",
      `${base}Connection: Upgrade\r\nSec-WebSocket-Key: abc\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      400,
    ],
    [
      "no version",
      `${base}Connection: Upgrade\r\n${key}\r\n`,
      426,
    ],
    [
      "version 8",
      `${base}Connection: Upgrade\r\n${key}Sec-WebSocket-Version: 8\r\n\r\n`,
      426,
    ],
    [
      "malformed extensions",
      `${base}Connection: Upgrade\r\n${key}Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: ;\r\n\r\n`,
      400,
    ],
    // Deno.upgradeWebSocket throws for these: a 500.
    [
      "no Connection",
      `${base}${key}Sec-WebSocket-Version: 13\r\n\r\n`,
      400,
    ],
    [
      "no key",
      `${base}Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      400,
    ],
  ];
  for (const [name, head, status] of cases) {
    const answer = await rawRequest(edge.addr.port, head);
    assert.equal(answer.status, status, name);
    assert.equal(
      (await rawRequest(server.addr.port, head)).status,
      status,
      `serve(), ${name}`,
    );
    assert.match(answer.body, /^Cannot upgrade to WebSocket: /);
    if (status === 426) {
      assert.equal(answer.headers.get("sec-websocket-version"), "13", name);
    }
  }
  assert.deepEqual(
    errors.map((error) => (error as HandshakeError).status),
    cases.map(([, , status]) => status),
  );
  assert.ok(errors.every((error) => error instanceof HandshakeError));
});

Deno.test("createFetchHandler() answers 500 without details when onRequest or a hook throws, and reports it to onError", async () => {
  const errors: unknown[] = [];
  const secret = "hook detail that must not leak";
  await using server = fetchServer({
    onError: (error) => errors.push(error),
    onRequest: () => {
      throw new Error(secret);
    },
    upgrade: () => {
      throw new Error(secret);
    },
  }, echo);
  const plain = await deadline(
    fetch(`http://127.0.0.1:${server.addr.port}/`),
    "fetch",
  );
  assert.equal(plain.status, 500);
  assert.ok(!(await plain.text()).includes(secret));
  const hook = await refusedNode(`ws://127.0.0.1:${server.addr.port}/`);
  assert.equal(hook.status, 500);
  assert.ok(!hook.body.includes(secret));
  assert.equal(errors.length, 2);
  for (const error of errors) {
    assert.ok(error instanceof Error);
    assert.equal(error.message, secret);
  }
});

Deno.test("createFetchHandler() goes on when onError throws: refusals are answered, a handler that threw is closed with 1011", async () => {
  // The callback's own failure is printed once, with console.error: stubbed
  // here to count it.
  using capture = captureConsoleError();
  let calls = 0;
  await using server = fetchServer({
    origins: ["https://good.example"],
    onError: () => {
      calls++;
      throw new Error("logger down");
    },
  }, () => {
    throw new Error("handler bug");
  });
  const url = `ws://127.0.0.1:${server.addr.port}/`;
  const refused = await refusedNode(url, { origin: "https://evil.example" });
  assert.equal(refused.status, 403);
  for (let i = 0; i < 2; i++) {
    const client = await connectClient(NODE, url);
    assert.equal((await deadline(client.closed, "close")).code, 1011);
  }
  assert.equal(calls, 3);
  assert.equal(capture.printed.length, 1);
  assert.match(String(capture.printed[0]![0]), /onError threw/);
});

Deno.test("createFetchHandler() reports 1006 when the runtime drops a connection whose peer sent after the server's close", async () => {
  // Deno's runtime (2.9.6) drops a server connection that receives a data
  // frame after its close(), often before its close frame is written, and
  // reports code 0.
  // The client writes all its messages before it can see a close frame, so
  // some arrive after close().
  const closed = Promise.withResolvers<CloseInfo>();
  const ended = Promise.withResolvers<unknown>();
  await using server = fetchServer({}, async (ws) => {
    for await (const _ of ws) {
      void ws.close(1000, "enough");
      break;
    }
    closed.resolve(await ws.closed);
    try {
      // Messages queued before close() stay readable; then iteration ends.
      for await (const _ of ws) { /* drained */ }
      ended.resolve(undefined);
    } catch (error) {
      ended.resolve(error);
    }
  });
  const client = await connectClient(
    NODE,
    urlOf(NODE, server.addr.port),
  );
  for (let i = 0; i < 200; i++) client.send(`message ${i}`);
  assert.deepEqual(await deadline(closed.promise, "server close"), {
    code: 1006,
    reason: "",
    wasClean: false,
  });
  const error = await deadline(ended.promise, "iteration end");
  assert.ok(error instanceof ConnectionClosedError);
  assert.equal(error.code, 1006);
  // Whether the client saw the close frame depends on when the runtime
  // wrote it: only that the connection ends is asserted.
  await deadline(client.closed, "client close");
});

// ---------------------------------------------------------------------------
// createFetchHandler(): the bounded queue of received messages
// ---------------------------------------------------------------------------

/** What a handler that starts reading only once the connection closed saw. */
interface LateRead {
  closed: CloseInfo;
  messages: Message[];
  error: unknown;
}

/**
 * A handler that reads nothing until the connection is closed, then reads
 * what was queued until iteration ends or throws.
 */
function lateReader(): {
  handler: WebSocketHandler;
  result: Promise<LateRead>;
} {
  const result = Promise.withResolvers<LateRead>();
  const handler: WebSocketHandler = async (ws) => {
    const closed = await ws.closed;
    const messages: Message[] = [];
    let error: unknown;
    try {
      for await (const message of ws) messages.push(message);
    } catch (caught) {
      error = caught;
    }
    result.resolve({ closed, messages, error });
  };
  return { handler, result: result.promise };
}

function assertProtocolError(error: unknown, closeCode: number): void {
  assert.ok(error instanceof ProtocolError, `expected a ProtocolError`);
  assert.equal(error.closeCode, closeCode);
}

// The bounds of the queue of a handler's unread messages, and what the
// client is told when a message finds it full.
const QUEUE_LIMIT = 16_384;
const QUEUE_SIZE = 16 * 1024 * 1024;
const QUEUE_FULL_REASON =
  "Cannot queue message: 16384 messages wait to be read, limit is 16384";

function numbered(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `message ${i}`);
}

for (const variant of [DENO, NODE]) {
  Deno.test(`createFetchHandler() closes with 1008 when a message finds 16,384 unread, and those stay readable (${variant.name})`, async () => {
    const late = lateReader();
    await using server = fetchServer({}, late.handler);
    const client = await connectClient(
      variant,
      urlOf(variant, server.addr.port),
    );
    // One more than the queue holds; then the client waits, so the close
    // handshake completes.
    for (const message of numbered(QUEUE_LIMIT + 1)) client.send(message);
    assert.deepEqual(await deadline(client.closed, "client close"), {
      code: 1008,
      reason: QUEUE_FULL_REASON,
      wasClean: true,
    });
    const { closed, messages, error } = await deadline(late.result, "read");
    assert.deepEqual(closed, {
      code: 1008,
      reason: QUEUE_FULL_REASON,
      wasClean: true,
    });
    assert.deepEqual(messages, numbered(QUEUE_LIMIT));
    assertProtocolError(error, 1008);
  });

  Deno.test(`createFetchHandler() closes with 1009 on a text message over maxMessageSize in UTF-8 bytes, and drops it (${variant.name})`, async () => {
    const late = lateReader();
    await using server = fetchServer({ maxMessageSize: 1000 }, late.handler);
    const client = await connectClient(
      variant,
      urlOf(variant, server.addr.port),
    );
    // "é" is 2 bytes of UTF-8: 1000 bytes fit, 1002 bytes (501 characters)
    // do not.
    client.send("é".repeat(500));
    client.send("é".repeat(501));
    const reason = "Cannot read message: it is 1002 bytes, limit is 1000";
    assert.deepEqual(await deadline(client.closed, "client close"), {
      code: 1009,
      reason,
      wasClean: true,
    });
    const { closed, messages, error } = await deadline(late.result, "read");
    assert.deepEqual(closed, { code: 1009, reason, wasClean: true });
    assert.deepEqual(messages, ["é".repeat(500)]);
    assertProtocolError(error, 1009);
  });
}

Deno.test("createFetchHandler() closes with 1009 on a binary message over maxMessageSize, and drops it", async () => {
  const late = lateReader();
  await using server = fetchServer({ maxMessageSize: 1000 }, late.handler);
  const client = await connectClient(NODE, urlOf(NODE, server.addr.port));
  client.send(patternBytes(1000, 5));
  client.send(patternBytes(1001, 6));
  const reason = "Cannot read message: it is 1001 bytes, limit is 1000";
  assert.deepEqual(await deadline(client.closed, "client close"), {
    code: 1009,
    reason,
    wasClean: true,
  });
  const { closed, messages, error } = await deadline(late.result, "read");
  assert.deepEqual(closed, { code: 1009, reason, wasClean: true });
  assert.equal(messages.length, 1);
  assertBytes(messages[0]!, patternBytes(1000, 5));
  assertProtocolError(error, 1009);
});

Deno.test("createFetchHandler() closes with 1008 when a message finds 16 MiB unread, and what was queued stays readable", async () => {
  const late = lateReader();
  await using server = fetchServer({}, late.handler);
  const client = await connectClient(NODE, urlOf(NODE, server.addr.port));
  // One byte under the bound waits, so the next message is queued too; the
  // third finds 16 MiB waiting.
  const big = patternBytes(QUEUE_SIZE - 1, 1);
  client.send(big);
  client.send(new Uint8Array([1]));
  client.send(new Uint8Array([2]));
  const reason =
    "Cannot queue message: 16777216 bytes wait to be read, limit is 16777216";
  assert.deepEqual(await deadline(client.closed, "client close"), {
    code: 1008,
    reason,
    wasClean: true,
  });
  const { closed, messages, error } = await deadline(late.result, "read");
  assert.deepEqual(closed, { code: 1008, reason, wasClean: true });
  assert.equal(messages.length, 2);
  assertBytes(messages[0]!, big);
  assertBytes(messages[1]!, new Uint8Array([1]));
  assertProtocolError(error, 1008);
});

Deno.test("createFetchHandler() keeps at most 16,384 messages of a client that floods a handler that never reads", async () => {
  const late = lateReader();
  await using server = fetchServer({}, late.handler);
  const client = await connectClient(NODE, urlOf(NODE, server.addr.port));
  for (const message of numbered(QUEUE_LIMIT + 5_000)) client.send(message);
  const { closed, messages, error } = await deadline(late.result, "read");
  // The first 16,384 are kept, in order, and nothing after them.
  assert.deepEqual(messages, numbered(QUEUE_LIMIT));
  assertProtocolError(error, 1008);
  // The client sees 1008 when the close handshake completes; Deno's runtime
  // drops the connection instead (1006) when the client's next message
  // arrives before its close frame is written.
  assert.ok([1008, 1006].includes(closed.code), `closed with ${closed.code}`);
  const clientCode = (await deadline(client.closed, "client close")).code;
  assert.ok([1008, 1006].includes(clientCode), `client saw ${clientCode}`);
});

Deno.test("createFetchHandler() does not close an echo handler that a burst of 1,000 messages puts behind", async () => {
  // The runtime fires the buffered messages in a row: the echo falls a few
  // hundred behind, far under the bound.
  await using server = fetchServer({}, echo);
  const client = await connectClient(NODE, urlOf(NODE, server.addr.port));
  for (const message of numbered(1000)) client.send(message);
  for (const message of numbered(1000)) {
    assert.equal(await client.next(), message);
  }
  assert.equal((await closeClient(client)).code, 1000);
});

Deno.test("createFetchHandler() refuses limits and timeouts serve() refuses, with a RangeError", () => {
  const cases: [FetchHandlerOptions, RegExp][] = [
    [
      { maxMessageSize: -1 },
      /maxMessageSize is -1, expected a non-negative integer/,
    ],
    [
      { maxMessageSize: 1.5 },
      /maxMessageSize is 1.5, expected a non-negative integer/,
    ],
    [{ pingInterval: -1 }, /pingInterval is -1/],
    [{ pingInterval: NaN }, /pingInterval is NaN/],
    [{ pingInterval: 2 ** 31 }, /pingInterval is 2147483648 ms/],
    [{ handshakeTimeout: 0 }, /handshakeTimeout is 0/],
    [{ handshakeTimeout: Infinity }, /handshakeTimeout is Infinity/],
  ];
  for (const [options, message] of cases) {
    assert.throws(() => createFetchHandler(options, echo), (error) => {
      assert.ok(error instanceof RangeError, String(error));
      assert.match(error.message, message);
      return true;
    });
  }
});

Deno.test("createFetchHandler() answers 503 for a hook past handshakeTimeout and reports a TimeoutError that names it, and a failure after", async () => {
  const errors: unknown[] = [];
  const late = Promise.withResolvers<void>();
  let answered = false;
  await using server = fetchServer({
    handshakeTimeout: 200,
    onError: (error) => errors.push(error),
    // onRequest fails once released, after its deadline: reported too. The
    // upgrade hook answers after its deadline: dropped.
    onRequest: () => late.promise.then(() => Promise.reject(new Error("late"))),
    upgrade: () =>
      late.promise.then(() => {
        answered = true;
        return new Response("too late", { status: 401 });
      }),
  }, echo);
  const plain = await deadline(
    fetch(`http://127.0.0.1:${server.addr.port}/`),
    "fetch",
  );
  assert.equal(plain.status, 503);
  await plain.body?.cancel();
  const hook = await refusedNode(`ws://127.0.0.1:${server.addr.port}/`);
  assert.equal(hook.status, 503);
  assert.equal(errors.length, 2);
  late.resolve();
  await deadline(
    (async () => {
      while (errors.length < 3 || !answered) {
        await new Promise((r) => setTimeout(r, 10));
      }
    })(),
    "the late answers",
  );
  const [first, second, third] = errors as Error[];
  assert.equal(first!.name, "TimeoutError");
  assert.equal(
    first!.message,
    "Cannot answer request: onRequest did not finish within handshakeTimeout (200 ms)",
  );
  assert.equal(second!.name, "TimeoutError");
  assert.equal(
    second!.message,
    "Cannot upgrade to WebSocket: upgrade hook did not finish within handshakeTimeout (200 ms)",
  );
  assert.equal(third!.message, "late");
  assert.equal(errors.length, 3);
});

Deno.test("createFetchHandler() does not cut short a hook that finishes in time, nor its connection after the deadline", async () => {
  let hooked: Request | undefined;
  let handled: Request | undefined;
  await using server = fetchServer({
    handshakeTimeout: 200,
    upgrade: async (request) => {
      hooked = request;
      await new Promise((resolve) => setTimeout(resolve, 50));
      return { data: undefined };
    },
  }, async (ws, request) => {
    handled = request;
    for await (const message of ws) await ws.send(message);
  });
  const client = await connectClient(
    NODE,
    `ws://127.0.0.1:${server.addr.port}/path?q=1`,
  );
  client.send("after the hook");
  assert.equal(await client.next(), "after the hook");
  // Past the deadline: the open connection's request did not abort.
  await new Promise((resolve) => setTimeout(resolve, 250));
  client.send("later");
  assert.equal(await client.next(), "later");
  assert.equal(hooked, handled);
  assert.equal(new URL(handled!.url).search, "?q=1");
  assert.equal((await closeClient(client)).code, 1000);
});
