// Copyright 2026 the @rfc6455/websocket authors. MIT license.
// Interop of permessage-deflate (RFC 7692): connect() and serve() against
// Node's `ws`, Python's `websockets` and Deno's built-in WebSocket (which
// does not compress), with compression on in both directions.

import assert from "node:assert/strict";
import type { IncomingMessage } from "node:http";
// @ts-types="npm:@types/ws@8.18.1"
import NodeWebSocket, { WebSocketServer } from "npm:ws@8.23.0";
import { connect, type ConnectOptions } from "../client.ts";
import type { WebSocketMessage, WebSocketSession } from "../connection.ts";
import type { PerMessageDeflateOptions } from "../deflate.ts";
import { serve } from "../server.ts";
import {
  PYTHON_ECHO_CLIENT,
  PYTHON_ECHO_SERVER,
  PythonPeer,
  pythonWebsockets,
} from "./_python.ts";
import { assertMessage, deadline, jsonText, patternBytes } from "./_util.ts";
import { echoHandler as echo } from "../examples/echo_handler.ts";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const MIB = 1024 * 1024;

const BIG_JSON = jsonText(MIB);
const BIG_RANDOM = patternBytes(MIB, 11);
/** Text and binary, small and 1 MiB, compressible and random. */
const MESSAGES: (string | Uint8Array<ArrayBuffer>)[] = [
  "hello",
  BIG_JSON,
  new Uint8Array([0, 1, 2, 255]),
  BIG_RANDOM,
  jsonText(2048),
  new TextEncoder().encode(jsonText(MIB)),
  "",
  BIG_JSON,
];

/** Sends every message through `ws` and checks the echoes, in order. */
async function assertEchoes(
  ws: WebSocketSession,
  messages = MESSAGES,
): Promise<void> {
  for (const message of messages) await ws.send(message);
  const iterator = ws[Symbol.asyncIterator]();
  for (const [index, expected] of messages.entries()) {
    const { value, done } = await deadline(iterator.next(), "echo");
    assert.equal(done, false, "connection ended before the echo");
    assertMessage(value, expected, `message ${index}`);
  }
}

/** A server that echoes and hands the test its sessions' extensions. */
function echoServer(deflate?: boolean | PerMessageDeflateOptions) {
  const extensions = Promise.withResolvers<string>();
  const errors: unknown[] = [];
  const server = serve({
    hostname: "127.0.0.1",
    port: 0,
    onError: (error) => errors.push(error),
    ...(deflate === undefined ? {} : { deflate }),
  }, async (ws) => {
    extensions.resolve(ws.extensions);
    await echo(ws);
  });
  return { server, extensions: extensions.promise, errors };
}

// --- Node's ws ---------------------------------------------------------------

interface NodeServer extends AsyncDisposable {
  port: number;
  /** The `Sec-WebSocket-Extensions` of the first request (`null` if none). */
  offer: Promise<string | null>;
  /** Bytes read from the first client's socket so far. */
  bytesRead(): number;
}

/** A `ws` echo server on 127.0.0.1. */
async function nodeServer(
  perMessageDeflate: boolean | Record<string, unknown>,
): Promise<NodeServer> {
  const wss = new WebSocketServer({
    host: "127.0.0.1",
    port: 0,
    perMessageDeflate,
  });
  await deadline(
    new Promise<void>((resolve) => wss.once("listening", resolve)),
    "listening",
  );
  const offer = Promise.withResolvers<string | null>();
  let first: { _socket: { bytesRead: number } } | undefined;
  wss.on("connection", (socket: NodeWebSocket, request: IncomingMessage) => {
    first ??= socket as unknown as { _socket: { bytesRead: number } };
    offer.resolve(request.headers["sec-websocket-extensions"] ?? null);
    socket.on("message", (data, isBinary) => {
      socket.send(data as Buffer, { binary: isBinary });
    });
  });
  return {
    port: (wss.address() as { port: number }).port,
    offer: offer.promise,
    bytesRead: () => first?._socket.bytesRead ?? 0,
    async [Symbol.asyncDispose]() {
      for (const client of wss.clients) client.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}

interface NodeClient {
  socket: NodeWebSocket;
  /** The `Sec-WebSocket-Extensions` of the 101 answer (`null` if none). */
  extensions: string | null;
  next(): Promise<string | Uint8Array>;
  close(): Promise<number>;
}

/** A `ws` client, open. */
async function nodeClient(
  url: string,
  perMessageDeflate: boolean | Record<string, unknown>,
): Promise<NodeClient> {
  const socket = new NodeWebSocket(url, { perMessageDeflate });
  socket.binaryType = "arraybuffer";
  const queue: (string | Uint8Array)[] = [];
  const waiters: PromiseWithResolvers<string | Uint8Array>[] = [];
  const closed = Promise.withResolvers<number>();
  socket.on("message", (data: ArrayBuffer | Buffer, isBinary: boolean) => {
    const message = isBinary
      ? new Uint8Array(data as ArrayBuffer)
      : new TextDecoder().decode(data as ArrayBuffer);
    const waiter = waiters.shift();
    if (waiter) waiter.resolve(message);
    else queue.push(message);
  });
  socket.on("close", (code: number) => {
    closed.resolve(code);
    for (const waiter of waiters.splice(0)) {
      waiter.reject(new Error(`Closed with ${code} before the next message`));
    }
  });
  socket.on("error", () => {}); // a close event follows
  let extensions: string | null = null;
  socket.on("upgrade", (response: IncomingMessage) => {
    extensions = response.headers["sec-websocket-extensions"] ?? null;
  });
  await deadline(
    Promise.race([
      new Promise<void>((resolve) => socket.once("open", () => resolve())),
      closed.promise.then((code) => {
        throw new Error(`Closed with ${code} before open`);
      }),
    ]),
    "open",
  );
  return {
    socket,
    get extensions() {
      return extensions;
    },
    next() {
      const message = queue.shift();
      if (message !== undefined) return Promise.resolve(message);
      const waiter = Promise.withResolvers<string | Uint8Array>();
      waiters.push(waiter);
      return deadline(waiter.promise, "message");
    },
    close() {
      socket.close(1000);
      return deadline(closed.promise, "close");
    },
  };
}

async function assertNodeEchoes(client: NodeClient): Promise<void> {
  for (const message of MESSAGES) client.socket.send(message);
  for (const [index, expected] of MESSAGES.entries()) {
    assertMessage(await client.next(), expected, `message ${index}`);
  }
}

// ---------------------------------------------------------------------------
// connect() against Node's ws server
// ---------------------------------------------------------------------------

const NODE_SERVER_CASES: {
  name: string;
  server: boolean | Record<string, unknown>;
  client?: PerMessageDeflateOptions;
  expected: string;
}[] = [
  { name: "defaults", server: true, expected: "permessage-deflate" },
  {
    name: "serverNoContextTakeover and clientNoContextTakeover",
    server: { serverNoContextTakeover: true, clientNoContextTakeover: true },
    expected:
      "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
  },
  {
    name: "serverMaxWindowBits 10 and clientMaxWindowBits 9",
    server: { serverMaxWindowBits: 10, clientMaxWindowBits: 9 },
    expected:
      "permessage-deflate; client_max_window_bits=9; server_max_window_bits=10",
  },
  {
    name: "threshold 0",
    server: { threshold: 0 },
    expected: "permessage-deflate",
  },
  {
    name: "a client asking for 9-bit and offering 8-bit windows",
    server: true,
    client: { serverMaxWindowBits: 9, clientMaxWindowBits: 8 },
    expected:
      "permessage-deflate; server_max_window_bits=9; client_max_window_bits=8",
  },
  {
    name: "a client asking for no context takeover both ways",
    server: { threshold: 0 },
    client: { serverNoContextTakeover: true, clientNoContextTakeover: true },
    expected:
      "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
  },
];

for (const entry of NODE_SERVER_CASES) {
  Deno.test(`connect() echoes compressed messages through Node's ws server with ${entry.name}`, async () => {
    await using server = await nodeServer(entry.server);
    const ws = await deadline(
      connect(`ws://127.0.0.1:${server.port}/`, {
        ...(entry.client === undefined ? {} : { deflate: entry.client }),
      }),
      "connect",
    );
    try {
      assert.match(
        (await deadline(server.offer, "offer")) ?? "",
        /^permessage-deflate\b/,
      );
      assert.equal(ws.extensions, entry.expected);
      await assertEchoes(ws);
      // Our 3 MiB of compressible messages went over the wire deflated.
      const sent = MESSAGES.reduce(
        (sum, message) =>
          sum +
          (typeof message === "string"
            ? new TextEncoder().encode(message).length
            : message.length),
        0,
      );
      assert.ok(
        server.bytesRead() < sent - 2 * MIB,
        `${server.bytesRead()} bytes read for ${sent} bytes of messages`,
      );
      assert.equal((await deadline(ws.close(), "close")).code, 1000);
    } finally {
      await ws.close();
    }
  });
}

// ---------------------------------------------------------------------------
// Node's ws client against serve()
// ---------------------------------------------------------------------------

const NODE_CLIENT_CASES: {
  name: string;
  client: boolean | Record<string, unknown>;
  server?: PerMessageDeflateOptions;
  expected: string;
}[] = [
  {
    name: "perMessageDeflate true",
    client: true,
    expected: "permessage-deflate",
  },
  {
    name: "every parameter",
    client: {
      serverNoContextTakeover: true,
      clientNoContextTakeover: true,
      serverMaxWindowBits: 11,
      clientMaxWindowBits: 10,
    },
    expected: "permessage-deflate; server_no_context_takeover; " +
      "client_no_context_takeover; server_max_window_bits=11; " +
      "client_max_window_bits=10",
  },
  {
    name: "clientMaxWindowBits 8",
    client: { clientMaxWindowBits: 8 },
    expected: "permessage-deflate; client_max_window_bits=8",
  },
  {
    name: "clientMaxWindowBits 9 and threshold 0",
    client: { clientMaxWindowBits: 9, threshold: 0 },
    expected: "permessage-deflate; client_max_window_bits=9",
  },
  {
    name: "a server limiting windows to 9 and 8 bits",
    client: true,
    server: { serverMaxWindowBits: 9, clientMaxWindowBits: 8 },
    expected:
      "permessage-deflate; server_max_window_bits=9; client_max_window_bits=8",
  },
  {
    name: "a server imposing no context takeover with threshold 0",
    client: true,
    server: {
      serverNoContextTakeover: true,
      clientNoContextTakeover: true,
      threshold: 0,
    },
    expected:
      "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
  },
  {
    name: "a server limiting the client to 10 bits when it offers 12",
    client: { clientMaxWindowBits: 12 },
    server: { clientMaxWindowBits: 10 },
    expected: "permessage-deflate; client_max_window_bits=10",
  },
];

for (const entry of NODE_CLIENT_CASES) {
  Deno.test(`serve() echoes compressed messages to Node's ws client with ${entry.name}`, async () => {
    const { server, extensions, errors } = echoServer(entry.server);
    await using _server = server;
    const client = await nodeClient(
      `ws://127.0.0.1:${server.addr.port}/`,
      entry.client,
    );
    try {
      assert.equal(client.extensions, entry.expected);
      assert.equal(await deadline(extensions, "session"), entry.expected);
      await assertNodeEchoes(client);
    } finally {
      assert.equal(await client.close(), 1000);
    }
    assert.deepEqual(errors, []);
  });
}

// ---------------------------------------------------------------------------
// Python's websockets
// ---------------------------------------------------------------------------

const skipPython = pythonWebsockets === undefined;
if (skipPython) {
  // deno-lint-ignore no-console
  console.warn(
    'Skipping the Python interop tests: /usr/bin/python3 -c "import websockets" failed (install python3-websockets)',
  );
}

interface PythonClientResult {
  extensions: string | null;
  running: string[];
  echoed: boolean[];
}

const PYTHON_CLIENT_CASES: {
  name: string;
  client: Record<string, unknown> | null;
  server?: PerMessageDeflateOptions;
  expected: string;
}[] = [
  {
    name: "its default compression",
    client: null,
    expected: "permessage-deflate",
  },
  {
    name: "every parameter",
    client: {
      server_no_context_takeover: true,
      client_no_context_takeover: true,
      server_max_window_bits: 10,
      client_max_window_bits: 9,
    },
    expected: "permessage-deflate; server_no_context_takeover; " +
      "client_no_context_takeover; server_max_window_bits=10; " +
      "client_max_window_bits=9",
  },
  {
    name: "a server limiting windows to 9 bits",
    client: null,
    server: { serverMaxWindowBits: 9, clientMaxWindowBits: 9 },
    expected:
      "permessage-deflate; server_max_window_bits=9; client_max_window_bits=9",
  },
];

for (const entry of PYTHON_CLIENT_CASES) {
  Deno.test({
    name:
      `serve() echoes compressed messages to Python's websockets client with ${entry.name}`,
    ignore: skipPython,
    async fn() {
      const { server, extensions, errors } = echoServer(entry.server);
      await using _server = server;
      await using peer = new PythonPeer(PYTHON_ECHO_CLIENT, [
        `ws://127.0.0.1:${server.addr.port}/`,
        JSON.stringify(entry.client),
      ]);
      const result = JSON.parse(
        await deadline(peer.readLine(), "Python client"),
      ) as PythonClientResult;
      assert.equal(result.extensions, entry.expected);
      assert.deepEqual(result.running, ["permessage-deflate"]);
      assert.deepEqual(result.echoed, [true, true, true, true, true, true]);
      assert.equal(await deadline(peer.exitCode(), "Python exit"), 0);
      assert.equal(await deadline(extensions, "session"), entry.expected);
      assert.deepEqual(errors, []);
    },
  });
}

const PYTHON_SERVER_CASES: {
  name: string;
  server: Record<string, unknown> | null;
  client?: PerMessageDeflateOptions;
  expected: string;
}[] = [
  {
    name: "its default compression (12-bit windows)",
    server: null,
    expected:
      "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
  },
  {
    name: "no context takeover and 10/9-bit windows",
    server: {
      server_no_context_takeover: true,
      client_no_context_takeover: true,
      server_max_window_bits: 10,
      client_max_window_bits: 9,
    },
    expected: "permessage-deflate; server_no_context_takeover; " +
      "client_no_context_takeover; server_max_window_bits=10; " +
      "client_max_window_bits=9",
  },
  {
    name: "a client asking for an 11-bit server window",
    server: {},
    client: { serverMaxWindowBits: 11, clientMaxWindowBits: 13 },
    expected:
      "permessage-deflate; server_max_window_bits=11; client_max_window_bits=13",
  },
];

for (const entry of PYTHON_SERVER_CASES) {
  Deno.test({
    name:
      `connect() echoes compressed messages through Python's websockets server with ${entry.name}`,
    ignore: skipPython,
    async fn() {
      await using peer = new PythonPeer(PYTHON_ECHO_SERVER, [
        JSON.stringify(entry.server),
      ]);
      const port = Number(await deadline(peer.readLine(), "Python port"));
      const ws = await deadline(
        connect(`ws://127.0.0.1:${port}/`, {
          ...(entry.client === undefined ? {} : { deflate: entry.client }),
        }),
        "connect",
      );
      try {
        assert.equal(ws.extensions, entry.expected);
        // What the Python server answered, as it reports it.
        assert.equal(
          JSON.parse(await deadline(peer.readLine(), "Python header")),
          entry.expected,
        );
        await assertEchoes(ws);
        assert.equal((await deadline(ws.close(), "close")).code, 1000);
      } finally {
        await ws.close();
      }
    },
  });
}

// ---------------------------------------------------------------------------
// Deno's built-in WebSocket: no compression, clean fallback
// ---------------------------------------------------------------------------

Deno.test("serve() falls back to no compression for Deno's built-in WebSocket and echoes", async () => {
  const { server, extensions, errors } = echoServer();
  await using _server = server;
  const socket = new WebSocket(`ws://127.0.0.1:${server.addr.port}/`);
  socket.binaryType = "arraybuffer";
  const received: WebSocketMessage[] = [];
  const expected = [jsonText(4096), new Uint8Array([1, 2, 3]), "x"];
  const done = Promise.withResolvers<void>();
  const closed = new Promise<CloseEvent>((resolve) => socket.onclose = resolve);
  socket.onmessage = (event) => {
    received.push(
      typeof event.data === "string"
        ? event.data
        : new Uint8Array(event.data as ArrayBuffer),
    );
    if (received.length === expected.length) done.resolve();
  };
  socket.onopen = () => {
    for (const message of expected) {
      socket.send(message as string | Uint8Array<ArrayBuffer>);
    }
  };
  try {
    await deadline(done.promise, "echoes");
    assert.equal(socket.extensions, "");
    assert.equal(await deadline(extensions, "session"), "");
    for (const [index, message] of expected.entries()) {
      assertMessage(received[index], message, `message ${index}`);
    }
  } finally {
    socket.close(1000);
    await deadline(closed, "close");
  }
  assert.deepEqual(errors, []);
});

Deno.test("connect() falls back to no compression against Deno.serve with upgradeWebSocket and echoes", async () => {
  const offer = Promise.withResolvers<string | null>();
  const socketClosed = Promise.withResolvers<void>();
  await using server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen: () => {},
  }, (request) => {
    offer.resolve(request.headers.get("sec-websocket-extensions"));
    const { socket, response } = Deno.upgradeWebSocket(request);
    socket.onmessage = (event) => socket.send(event.data);
    socket.onclose = () => socketClosed.resolve();
    return response;
  });
  const ws = await deadline(
    connect(`ws://127.0.0.1:${server.addr.port}/`),
    "connect",
  );
  try {
    assert.equal(
      await deadline(offer.promise, "offer"),
      "permessage-deflate; client_max_window_bits",
    );
    assert.equal(ws.extensions, "");
    await assertEchoes(ws, [jsonText(4096), new Uint8Array([1, 2, 3]), "x"]);
    assert.equal((await deadline(ws.close(), "close")).code, 1000);
  } finally {
    await ws.close();
  }
  await deadline(socketClosed.promise, "server socket close");
});

// ---------------------------------------------------------------------------
// deflate: false, and send(..., { compress: false })
// ---------------------------------------------------------------------------

Deno.test("connect() with deflate false offers nothing to Node's ws server and echoes", async () => {
  await using server = await nodeServer(true);
  const ws = await deadline(
    connect(`ws://127.0.0.1:${server.port}/`, { deflate: false }),
    "connect",
  );
  try {
    assert.equal(await deadline(server.offer, "offer"), null);
    assert.equal(ws.extensions, "");
    await assertEchoes(ws, ["hello", BIG_JSON, BIG_RANDOM]);
    assert.ok(server.bytesRead() > 2 * MIB, "sent uncompressed");
  } finally {
    await ws.close();
  }
});

Deno.test("serve() with deflate false negotiates nothing with Node's ws client and echoes", async () => {
  const { server, extensions, errors } = echoServer(false);
  await using _server = server;
  const client = await nodeClient(`ws://127.0.0.1:${server.addr.port}/`, true);
  try {
    assert.equal(client.extensions, null);
    assert.equal(await deadline(extensions, "session"), "");
    await assertNodeEchoes(client);
  } finally {
    assert.equal(await client.close(), 1000);
  }
  assert.deepEqual(errors, []);
});

Deno.test("serve() negotiates nothing with Node's ws client when it does not offer compression", async () => {
  const { server, extensions } = echoServer();
  await using _server = server;
  const client = await nodeClient(
    `ws://127.0.0.1:${server.addr.port}/`,
    false,
  );
  try {
    assert.equal(client.extensions, null);
    assert.equal(await deadline(extensions, "session"), "");
    client.socket.send(BIG_JSON);
    assertMessage(await client.next(), BIG_JSON, "echo");
  } finally {
    assert.equal(await client.close(), 1000);
  }
});

Deno.test("connect() send() with compress false delivers intact, uncompressed, to Node's ws on a deflate connection", async () => {
  await using server = await nodeServer({ threshold: 0 });
  const options: ConnectOptions = { deflate: { threshold: 0 } };
  const ws = await deadline(
    connect(`ws://127.0.0.1:${server.port}/`, options),
    "connect",
  );
  try {
    assert.equal(ws.extensions, "permessage-deflate");
    const iterator = ws[Symbol.asyncIterator]();
    await ws.send(BIG_JSON);
    assertMessage(
      (await deadline(iterator.next(), "echo")).value,
      BIG_JSON,
      "1",
    );
    const compressedBytes = server.bytesRead();
    await ws.send(BIG_JSON, { compress: false });
    assertMessage(
      (await deadline(iterator.next(), "echo")).value,
      BIG_JSON,
      "2",
    );
    await ws.send(BIG_RANDOM, { compress: false });
    assertMessage(
      (await deadline(iterator.next(), "echo")).value,
      BIG_RANDOM,
      "3",
    );
    // The first went deflated, the others as they were.
    assert.ok(compressedBytes < BIG_JSON.length / 4);
    assert.ok(
      server.bytesRead() - compressedBytes >= BIG_JSON.length + MIB,
      "sent uncompressed",
    );
    await ws.send("after", { compress: false });
    await ws.send(jsonText(5000));
    assertMessage(
      (await deadline(iterator.next(), "echo")).value,
      "after",
      "4",
    );
    assertMessage(
      (await deadline(iterator.next(), "echo")).value,
      jsonText(5000),
      "5",
    );
  } finally {
    await ws.close();
  }
});

Deno.test("serve() send() with compress false delivers intact to Node's ws client on a deflate connection", async () => {
  const errors: unknown[] = [];
  await using server = serve({
    hostname: "127.0.0.1",
    port: 0,
    deflate: { threshold: 0 },
    onError: (error) => errors.push(error),
  }, async (ws) => {
    await ws.send(BIG_JSON, { compress: false });
    await ws.send(BIG_RANDOM, { compress: false });
    await ws.send(BIG_JSON);
    await ws.send("", { compress: false });
    for await (const _ of ws) { /* until the client closes */ }
  });
  const client = await nodeClient(`ws://127.0.0.1:${server.addr.port}/`, true);
  try {
    assert.equal(client.extensions, "permessage-deflate");
    assertMessage(await client.next(), BIG_JSON, "1");
    assertMessage(await client.next(), BIG_RANDOM, "2");
    assertMessage(await client.next(), BIG_JSON, "3");
    assertMessage(await client.next(), "", "4");
  } finally {
    assert.equal(await client.close(), 1000);
  }
  assert.deepEqual(errors, []);
});
