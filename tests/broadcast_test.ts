// Copyright 2026 the @rfc6455/websocket authors. MIT license.
// broadcast() and Topics end to end: serve() (and createFetchHandler() on
// Deno.serve) against clients nobody here wrote, Deno's built-in WebSocket
// and Node's `ws`, and a raw client that stops reading.

import assert from "node:assert/strict";
import type { Socket } from "node:net";
// @ts-types="npm:@types/ws@8.18.1"
import NodeWebSocket from "npm:ws@8.23.0";
import { broadcast, SLOW_CONSUMER_CLOSE_CODE, Topics } from "../broadcast.ts";
import {
  type CloseInfo,
  WebSocketConnection,
  type WebSocketSession,
} from "../connection.ts";
import { createKey } from "../handshake.ts";
import { createFetchHandler, serve, type ServeOptions } from "../server.ts";
import {
  assertMessage,
  deadline,
  jsonText,
  patternBytes,
  WAIT,
  writeAll,
} from "./_util.ts";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

type Message = string | Uint8Array;

/** Things that arrive one at a time, awaited in order. */
class Queue<T> {
  #items: T[] = [];
  #waiters: Array<PromiseWithResolvers<T>> = [];
  #ended: Error | undefined;

  push(item: T): void {
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) waiter.resolve(item);
    else this.#items.push(item);
  }

  end(): void {
    this.#ended = new Error("Connection closed before the next message");
    for (const waiter of this.#waiters.splice(0)) waiter.reject(this.#ended);
  }

  next(what = "next message"): Promise<T> {
    if (this.#items.length > 0) return Promise.resolve(this.#items.shift()!);
    if (this.#ended !== undefined) return Promise.reject(this.#ended);
    const waiter = Promise.withResolvers<T>();
    this.#waiters.push(waiter);
    return deadline(waiter.promise, what);
  }
}

/** A client connection, whatever library runs it. */
interface Client {
  readonly name: string;
  readonly extensions: string;
  next(): Promise<Message>;
  close(): void;
  readonly closed: Promise<CloseInfo>;
}

function listen(
  socket: WebSocket | NodeWebSocket,
  inbox: Queue<Message>,
): Promise<CloseInfo> {
  socket.binaryType = "arraybuffer";
  socket.addEventListener("message", (event: { data: unknown }) => {
    const data = event.data;
    inbox.push(
      typeof data === "string" ? data : new Uint8Array(data as ArrayBuffer),
    );
  });
  return new Promise((resolve) => {
    socket.addEventListener(
      "close",
      (event: { code: number; reason: string; wasClean: boolean }) => {
        inbox.end();
        resolve({
          code: event.code,
          reason: event.reason,
          wasClean: event.wasClean,
        });
      },
    );
  });
}

async function opened(
  socket: WebSocket | NodeWebSocket,
  closed: Promise<CloseInfo>,
): Promise<void> {
  const open = new Promise<void>((resolve, reject) => {
    socket.addEventListener("open", () => resolve(), { once: true });
    closed.then((info) =>
      reject(new Error(`Connection closed before open with code ${info.code}`))
    );
  });
  await deadline(open, "client open");
}

/** A client of Deno's built-in WebSocket (no permessage-deflate). */
async function denoClient(url: string): Promise<Client> {
  const socket = new WebSocket(url);
  const inbox = new Queue<Message>();
  const closed = listen(socket, inbox);
  await opened(socket, closed);
  return {
    name: "Deno's WebSocket",
    extensions: socket.extensions,
    next: () => inbox.next(),
    close: () => socket.close(),
    closed,
  };
}

/** A client of Node's `ws`, which offers permessage-deflate unless told not to. */
async function nodeClient(
  url: string,
  deflate = true,
): Promise<Client & { socket: Socket }> {
  const socket = new NodeWebSocket(url, { perMessageDeflate: deflate });
  const inbox = new Queue<Message>();
  const closed = listen(socket, inbox);
  // Errors also end in a close event, which settles `closed`.
  socket.on("error", () => {});
  await opened(socket, closed);
  return {
    name: `ws${deflate ? " with permessage-deflate" : ""}`,
    extensions: socket.extensions,
    next: () => inbox.next(),
    close: () => socket.close(),
    closed,
    // The TCP socket under the WebSocket, to pause reading.
    socket: (socket as unknown as { _socket: Socket })._socket,
  };
}

/**
 * A raw TCP client that completes the opening handshake and then never
 * reads again: a consumer as slow as can be.
 */
async function stalledClient(port: number): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await writeAll(
    conn,
    new TextEncoder().encode(
      `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n` +
        `Connection: Upgrade\r\nSec-WebSocket-Key: ${createKey()}\r\n` +
        "Sec-WebSocket-Version: 13\r\n\r\n",
    ),
  );
  // The 101 head, byte by byte: nothing after it is read.
  const head: number[] = [];
  const byte = new Uint8Array(1);
  while (!new TextDecoder().decode(new Uint8Array(head)).endsWith("\r\n\r\n")) {
    const count = await deadline(conn.read(byte), "101 answer");
    if (count === null) throw new Error("Connection closed before the 101");
    head.push(byte[0]!);
  }
  assert.match(
    new TextDecoder().decode(new Uint8Array(head)),
    /^HTTP\/1\.1 101 /,
  );
  return conn;
}

/**
 * A server on 127.0.0.1, port 0, whose handler hands each session to the
 * test (in order of arrival) and holds it until it closes.
 */
function startServer(options: ServeOptions = {}): {
  server: ReturnType<typeof serve>;
  url: string;
  sessions: Queue<WebSocketSession>;
} {
  const sessions = new Queue<WebSocketSession>();
  const server = serve({
    hostname: "127.0.0.1",
    port: 0,
    onError: () => {},
    ...options,
  }, async (ws) => {
    sessions.push(ws);
    await ws.closed;
  });
  return { server, url: `ws://127.0.0.1:${server.addr.port}/`, sessions };
}

async function closeAll(clients: Client[]): Promise<void> {
  for (const client of clients) client.close();
  await deadline(Promise.all(clients.map((c) => c.closed)), "clients close");
}

const MESSAGES: Message[] = [
  "hello, everyone ✓ 😀",
  new Uint8Array([0, 1, 2, 255]),
  "",
  new Uint8Array(0),
  // Over a batch (64 KiB): the frame is queued as it is, shared.
  patternBytes(200_000, 7),
  jsonText(100_000),
];

// ---------------------------------------------------------------------------
// Delivery
// ---------------------------------------------------------------------------

Deno.test("broadcast() sends every open connection each message byte-exact, text and binary, small and large", async () => {
  const { server, url, sessions } = startServer();
  await using _ = server;
  const clients = [
    await denoClient(url),
    await nodeClient(url),
    await nodeClient(url, false),
    await denoClient(url),
  ];
  for (const _ of clients) await sessions.next("server session");
  for (const [index, message] of MESSAGES.entries()) {
    const result = broadcast(server.connections, message);
    assert.deepEqual(result, { sent: 4, skipped: [], dropped: [] });
    for (const client of clients) {
      assertMessage(
        await client.next(),
        message,
        `message ${index} to ${client.name}`,
      );
    }
  }
  // The frame holds a copy: the caller may reuse its bytes at once.
  const bytes = patternBytes(100_000, 9);
  const expected = bytes.slice();
  broadcast(server.connections, bytes);
  bytes.fill(0);
  // Bytes as text, and a string as binary.
  broadcast(server.connections, new TextEncoder().encode("as text"), {
    binary: false,
  });
  broadcast(server.connections, "as bytes", { binary: true });
  for (const client of clients) {
    assertMessage(await client.next(), expected, `copy to ${client.name}`);
    assertMessage(await client.next(), "as text", `text to ${client.name}`);
    assertMessage(
      await client.next(),
      new TextEncoder().encode("as bytes"),
      `binary to ${client.name}`,
    );
  }
  await closeAll(clients);
});

Deno.test("Topics.publish() reaches the subscribers of its topic only, and leaves out `except`", async () => {
  const { server, url, sessions } = startServer();
  await using _ = server;
  const clients = [
    await denoClient(url),
    await nodeClient(url),
    await denoClient(url),
  ];
  const [a, b, c] = [
    await sessions.next(),
    await sessions.next(),
    await sessions.next(),
  ] as [WebSocketSession, WebSocketSession, WebSocketSession];
  const topics = new Topics();
  assert.equal(topics.subscribe(a, "news"), true);
  assert.equal(topics.subscribe(a, "news"), false);
  assert.equal(topics.subscribe(b, "news"), true);
  assert.equal(topics.subscribe(b, "sport"), true);
  assert.equal(topics.subscribe(c, "sport"), true);
  assert.equal(topics.subscriberCount("news"), 2);
  assert.equal(topics.subscriberCount("weather"), 0);
  assert.deepEqual(topics.subscriptions(b), ["news", "sport"]);
  assert.equal(topics.isSubscribed(c, "news"), false);

  assert.deepEqual(topics.publish("news", "n1"), {
    sent: 2,
    skipped: [],
    dropped: [],
  });
  assert.equal(topics.publish("sport", "s1", { except: c }).sent, 1);
  assert.equal(topics.publish("weather", "nobody").sent, 0);
  assert.equal(topics.unsubscribe(b, "news"), true);
  assert.equal(topics.unsubscribe(b, "news"), false);
  assert.equal(topics.publish("news", "n2").sent, 1);
  topics.publish("sport", new Uint8Array([7]));

  // In order: a got n1 and n2, b got n1 and s1 and [7], c got only [7].
  assertMessage(await clients[0]!.next(), "n1", "a");
  assertMessage(await clients[0]!.next(), "n2", "a");
  assertMessage(await clients[1]!.next(), "n1", "b");
  assertMessage(await clients[1]!.next(), "s1", "b");
  assertMessage(await clients[1]!.next(), new Uint8Array([7]), "b");
  assertMessage(await clients[2]!.next(), new Uint8Array([7]), "c");
  // Nothing else came: a last message to everyone is the next one of each.
  broadcast(server.connections, "end");
  for (const client of clients) {
    assertMessage(await client.next(), "end", "end");
  }
  await closeAll(clients);
});

Deno.test("Topics: a closed connection leaves every topic by itself, and a closed one is not subscribed", async () => {
  const { server, url, sessions } = startServer();
  await using _ = server;
  const client = await nodeClient(url);
  const stays = await denoClient(url);
  const ws = await sessions.next();
  const other = await sessions.next();
  const topics = new Topics();
  topics.subscribe(ws, "a");
  topics.subscribe(ws, "b");
  topics.subscribe(other, "b");
  // Unsubscribed from everything and subscribed again: still one watch.
  topics.unsubscribe(ws, "a");
  topics.unsubscribe(ws, "b");
  topics.subscribe(ws, "a");
  topics.subscribe(ws, "b");
  client.close();
  await deadline(ws.closed, "server session close");
  assert.equal(topics.subscriberCount("a"), 0);
  assert.equal(topics.subscriberCount("b"), 1);
  assert.deepEqual(topics.subscriptions(ws), []);
  assert.equal(topics.isSubscribed(ws, "b"), false);
  assert.equal(topics.subscribe(ws, "a"), false);
  assert.equal(topics.subscriberCount("a"), 0);
  assert.deepEqual(topics.publish("b", "still here"), {
    sent: 1,
    skipped: [],
    dropped: [],
  });
  assertMessage(await stays.next(), "still here", "the other subscriber");
  await closeAll([stays]);
  await deadline(other.closed, "server session close");
  assert.equal(topics.subscriberCount("b"), 0);
});

// ---------------------------------------------------------------------------
// Slow consumers
// ---------------------------------------------------------------------------

const LIMIT = 256 * 1024;

Deno.test("broadcast() skips a client that stops reading, keeps its queue under backpressureLimit, and the others get every message", async () => {
  const { server, url, sessions } = startServer();
  await using _ = server;
  const fast = [await denoClient(url), await nodeClient(url)];
  await sessions.next();
  await sessions.next();
  using stalled = await stalledClient(server.addr.port);
  const slow = await sessions.next("stalled session");
  const message = patternBytes(48 * 1024, 3);
  let skips = 0;
  // The socket buffers take a few MiB first; then every message would pass
  // the limit, and is skipped.
  for (let i = 0; i < 4000 && skips < 20; i++) {
    message[0] = i & 0xff;
    const result = broadcast(server.connections, message, {
      backpressureLimit: LIMIT,
    });
    if (result.skipped.length > 0) {
      assert.deepEqual(result.skipped, [slow]);
      skips++;
    }
    assert.deepEqual(result.dropped, []);
    assert.equal(result.sent, 3 - result.skipped.length);
    assert.ok(
      slow.bufferedAmount <= LIMIT,
      `${slow.bufferedAmount} bytes queued for the stalled client, limit is ${LIMIT}`,
    );
    for (const client of fast) {
      assertMessage(
        await client.next(),
        message,
        `message ${i} to ${client.name}`,
      );
    }
  }
  assert.equal(skips, 20, "the stalled client was never skipped");
  assert.ok(slow.isOpen, "a skipped client stays open");
  stalled.close();
  await deadline(slow.closed, "stalled session close");
  await closeAll(fast);
});

Deno.test('Topics with slowConsumer "drop" closes a client that stops reading with 1013, which then leaves the topic', async () => {
  // The dropped client reads what was queued before the close frame, as
  // long as it takes.
  const { server, url, sessions } = startServer({ closeTimeout: WAIT });
  await using _ = server;
  const topics = new Topics({ backpressureLimit: LIMIT, slowConsumer: "drop" });
  const fast = [await denoClient(url), await nodeClient(url)];
  for (const _ of fast) topics.subscribe(await sessions.next(), "ticks");
  const paused = await nodeClient(url);
  const slow = await sessions.next("paused session");
  topics.subscribe(slow, "ticks");
  paused.socket.pause();
  const message = patternBytes(48 * 1024, 4);
  let dropped = false;
  for (let i = 0; i < 4000 && !dropped; i++) {
    message[0] = i & 0xff;
    const result = topics.publish("ticks", message);
    assert.deepEqual(result.skipped, []);
    if (result.dropped.length > 0) {
      assert.deepEqual(result.dropped, [slow]);
      assert.equal(result.sent, 2);
      dropped = true;
    }
    assert.ok(
      // The close frame of a drop comes on top (at most 131 bytes).
      slow.bufferedAmount <= LIMIT + 131,
      `${slow.bufferedAmount} bytes queued for the paused client, limit is ${LIMIT}`,
    );
    for (const client of fast) {
      assertMessage(
        await client.next(),
        message,
        `message ${i} to ${client.name}`,
      );
    }
  }
  assert.ok(dropped, "the paused client was never dropped");
  assert.equal(slow.isOpen, false);
  // Closing: not sent to, not reported again.
  assert.deepEqual(topics.publish("ticks", "after"), {
    sent: 2,
    skipped: [],
    dropped: [],
  });
  for (const client of fast) {
    assertMessage(await client.next(), "after", "after");
  }
  paused.socket.resume();
  const info = await deadline(paused.closed, "paused client close");
  assert.equal(info.code, SLOW_CONSUMER_CLOSE_CODE);
  assert.equal(info.reason, "Slow consumer");
  await deadline(slow.closed, "paused session close");
  assert.equal(topics.subscriberCount("ticks"), 2);
  await closeAll(fast);
});

// ---------------------------------------------------------------------------
// permessage-deflate
// ---------------------------------------------------------------------------

Deno.test("broadcast() to ws clients that negotiated permessage-deflate: the same uncompressed frame by default, each compressing with compress: true", async () => {
  const { server, url, sessions } = startServer();
  await using _ = server;
  const deflating = [await nodeClient(url), await nodeClient(url)];
  const plain = [await denoClient(url), await nodeClient(url, false)];
  for (const client of deflating) {
    assert.match(client.extensions, /permessage-deflate/);
  }
  for (const _ of [...deflating, ...plain]) await sessions.next();
  const clients = [...deflating, ...plain];
  const json = jsonText(300_000);
  for (const compress of [false, true, false]) {
    for (const [index, message] of [...MESSAGES, json].entries()) {
      const before = deflating[0]!.socket.bytesRead;
      assert.equal(
        broadcast(server.connections, message, { compress }).sent,
        4,
      );
      for (const client of clients) {
        assertMessage(
          await client.next(),
          message,
          `message ${index} (compress: ${compress}) to ${client.name}`,
        );
      }
      if (message === json) {
        const read = deflating[0]!.socket.bytesRead - before;
        if (compress) assert.ok(read < json.length / 4, `${read} bytes read`);
        else assert.ok(read > json.length, `${read} bytes read`);
      }
    }
  }
  await closeAll(clients);
});

Deno.test("broadcast() queues behind a message the connection is still compressing", async () => {
  const { server, url, sessions } = startServer();
  await using _ = server;
  const client = await nodeClient(url);
  const ws = await sessions.next();
  const big = jsonText(1024 * 1024);
  // Compressed asynchronously: the broadcast frame must wait for it.
  const sent = ws.send(big);
  broadcast([ws], "after");
  await sent;
  assertMessage(await client.next(), big, "the compressed message");
  assertMessage(await client.next(), "after", "the broadcast");
  await closeAll([client]);
});

// ---------------------------------------------------------------------------
// createFetchHandler() on Deno.serve
// ---------------------------------------------------------------------------

Deno.test("Topics works with the sessions of createFetchHandler() on Deno.serve", async () => {
  const topics = new Topics();
  const sessions = new Queue<WebSocketSession>();
  await using server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    createFetchHandler({}, async (ws) => {
      topics.subscribe(ws, "edge");
      sessions.push(ws);
      await ws.closed;
    }),
  );
  const url = `ws://127.0.0.1:${server.addr.port}/`;
  const clients = [await denoClient(url), await nodeClient(url)];
  const first = await sessions.next();
  await sessions.next();
  for (const [index, message] of MESSAGES.entries()) {
    assert.equal(topics.publish("edge", message).sent, 2);
    for (const client of clients) {
      assertMessage(
        await client.next(),
        message,
        `message ${index} to ${client.name}`,
      );
    }
  }
  clients[0]!.close();
  await deadline(first.closed, "edge session close");
  assert.equal(topics.subscriberCount("edge"), 1);
  await closeAll(clients.slice(1));
});

// ---------------------------------------------------------------------------
// Any WebSocketConnection
// ---------------------------------------------------------------------------

Deno.test("broadcast() reaches connections over web streams, and client-side connections mask their own copy", async () => {
  const a = new TransformStream<Uint8Array, Uint8Array>();
  const b = new TransformStream<Uint8Array, Uint8Array>();
  const options = { pingInterval: 0 };
  const client = new WebSocketConnection(
    { readable: a.readable, writable: b.writable },
    { role: "client", ...options },
  );
  const server = new WebSocketConnection(
    { readable: b.readable, writable: a.writable },
    { role: "server", ...options },
  );
  const big = patternBytes(200_000, 5);
  for (const message of ["hello", big]) {
    assert.equal(broadcast([server, client], message).sent, 2);
    for (
      const [ws, name] of [[client, "client"], [server, "server"]] as const
    ) {
      const received = await deadline(ws[Symbol.asyncIterator]().next(), name);
      assertMessage(received.value!, message, `${name} side`);
    }
  }
  await client.close();
  assert.equal((await server.closed).code, 1000);
});

// ---------------------------------------------------------------------------
// Bad arguments
// ---------------------------------------------------------------------------

Deno.test("broadcast() and Topics refuse bad arguments with clear errors", () => {
  const none: WebSocketSession[] = [];
  assert.throws(
    () => broadcast(none, 42 as unknown as string),
    new TypeError(
      "Cannot broadcast message: data is number, expected string, ArrayBuffer or ArrayBufferView",
    ),
  );
  for (const limit of [-1, 1.5, Infinity, NaN]) {
    assert.throws(
      () => broadcast(none, "x", { backpressureLimit: limit }),
      new RangeError(
        `Cannot broadcast message: backpressureLimit is ${limit}, expected a non-negative integer`,
      ),
    );
    assert.throws(
      () => new Topics({ backpressureLimit: limit }),
      new RangeError(
        `Cannot create Topics: backpressureLimit is ${limit}, expected a non-negative integer`,
      ),
    );
  }
  assert.throws(
    () => new Topics({ slowConsumer: "close" as "drop" }),
    new TypeError(
      'Cannot create Topics: slowConsumer is "close", expected "skip" or "drop"',
    ),
  );
  assert.throws(
    () => broadcast(none, "x", { compress: "yes" as unknown as boolean }),
    new TypeError(
      'Cannot broadcast message: compress is "yes", expected a boolean',
    ),
  );
  assert.throws(
    () => broadcast(none, "x", { binary: 1 as unknown as boolean }),
    new TypeError(
      "Cannot broadcast message: binary is number, expected a boolean",
    ),
  );
  const topics = new Topics();
  assert.throws(
    () => topics.subscribe(null as unknown as WebSocketSession, "a"),
    new TypeError(
      "Cannot subscribe: connection is null, expected a WebSocketSession",
    ),
  );
  assert.throws(
    () => topics.unsubscribe({} as WebSocketSession, "a"),
    new TypeError(
      "Cannot unsubscribe: connection is object, expected a WebSocketSession",
    ),
  );
  const session = {
    send: () => Promise.resolve(),
    closed: Promise.withResolvers<CloseInfo>().promise,
  } as unknown as WebSocketSession;
  assert.throws(
    () => topics.subscribe(session, 7 as unknown as string),
    new TypeError("Cannot subscribe: topic is number, expected a string"),
  );
  assert.throws(
    () => topics.publish(undefined as unknown as string, "x"),
    new TypeError(
      "Cannot publish message: topic is undefined, expected a string",
    ),
  );
  assert.throws(
    () => topics.publish("a", Symbol() as unknown as string),
    new TypeError(
      "Cannot publish message: data is symbol, expected string, ArrayBuffer or ArrayBufferView",
    ),
  );
});
