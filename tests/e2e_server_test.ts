// Copyright 2026 the @rfc6455/websocket authors. MIT license.
// End to end: serve() against hand-written (and hostile) clients on raw
// sockets, and the echo service as a process.

import assert from "node:assert/strict";
import type { WebSocketSession } from "../connection.ts";
import { ConnectionClosedError, HandshakeError } from "../errors.ts";
import { encodeFrame, type Frame, FrameDecoder } from "../frame.ts";
import { createAcceptKey, createKey } from "../handshake.ts";
import { serve, type ServeOptions, type WebSocketHandler } from "../server.ts";
import { PYTHON } from "./_python.ts";
import { makeCertificate, opensslAvailable } from "./_tls.ts";
import {
  captureConsoleError,
  concat,
  deadline,
  maxLengthHeader,
  quietServer,
  writeAll,
} from "./_util.ts";
import { echoHandler as echo } from "../examples/echo_handler.ts";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** One read; `null` at the end of the stream or on a reset. */
async function readChunk(conn: Deno.Conn): Promise<Uint8Array | null> {
  const buffer = new Uint8Array(64 * 1024);
  let count: number | null;
  try {
    count = await deadline(conn.read(buffer), "read");
  } catch (error) {
    if (error instanceof Deno.errors.ConnectionReset) return null;
    throw error;
  }
  return count === null ? null : buffer.subarray(0, count);
}

/** Reads until the peer closes (or resets) the connection. */
async function readToEnd(conn: Deno.Conn): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  while (true) {
    const chunk = await readChunk(conn);
    if (chunk === null) return concat(...parts);
    parts.push(chunk);
  }
}

interface RawResponse {
  status: number;
  headers: Headers;
  body: string;
}

function parseResponse(bytes: Uint8Array): RawResponse {
  const text = decoder.decode(bytes);
  const end = text.indexOf("\r\n\r\n");
  assert.notEqual(
    end,
    -1,
    `no complete response head in ${JSON.stringify(text)}`,
  );
  const [statusLine, ...lines] = text.slice(0, end).split("\r\n");
  const match = /^HTTP\/1\.1 (\d{3}) /.exec(statusLine!);
  assert.ok(match, `bad status line ${JSON.stringify(statusLine)}`);
  const headers = new Headers();
  for (const line of lines) {
    const colon = line.indexOf(":");
    headers.append(line.slice(0, colon), line.slice(colon + 1).trim());
  }
  return { status: Number(match[1]), headers, body: text.slice(end + 4) };
}

/** Sends a request head by hand and reads the whole answer. */
async function request(port: number, head: string): Promise<RawResponse> {
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await writeAll(conn, encoder.encode(head));
  return parseResponse(await readToEnd(conn));
}

function upgradeHead(port: number, key: string, extra = ""): string {
  return `GET /raw HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
    "Upgrade: websocket\r\nConnection: Upgrade\r\n" +
    `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`;
}

/** Reads frames the server sends, as a client decodes them. */
class FrameReader {
  readonly #conn: Deno.Conn;
  readonly #decoder = new FrameDecoder({ role: "client" });
  #frames: Frame[] = [];

  constructor(conn: Deno.Conn, rest: Uint8Array) {
    this.#conn = conn;
    if (rest.length > 0) this.#frames.push(...this.#decoder.push(rest));
  }

  /** The next frame, or `undefined` once the server closed the connection. */
  async next(): Promise<Frame | undefined> {
    while (this.#frames.length === 0) {
      const chunk = await readChunk(this.#conn);
      if (chunk === null) {
        this.#decoder.finish();
        return undefined;
      }
      this.#frames.push(...this.#decoder.push(chunk));
    }
    return this.#frames.shift();
  }
}

interface RawClient {
  conn: Deno.TcpConn | Deno.TlsConn;
  frames: FrameReader;
}

/**
 * Opens a WebSocket by hand: sends the upgrade request (with `after`
 * written in the same write), checks the 101 and its Sec-WebSocket-Accept.
 */
async function rawUpgrade(
  conn: Deno.TcpConn | Deno.TlsConn,
  port: number,
  after: Uint8Array = new Uint8Array(0),
): Promise<RawClient> {
  const key = createKey();
  await writeAll(conn, concat(encoder.encode(upgradeHead(port, key)), after));
  let received = new Uint8Array(0);
  let end = -1;
  while (end === -1) {
    const chunk = await readChunk(conn);
    assert.ok(chunk !== null, "connection closed before the 101 answer");
    received = concat(received, chunk);
    end = decoder.decode(received).indexOf("\r\n\r\n");
  }
  const head = parseResponse(received.subarray(0, end + 4));
  assert.equal(head.status, 101);
  assert.equal(head.headers.get("upgrade")?.toLowerCase(), "websocket");
  assert.equal(head.headers.get("connection")?.toLowerCase(), "upgrade");
  assert.equal(
    head.headers.get("sec-websocket-accept"),
    await createAcceptKey(key),
  );
  // The head is ASCII, so its length in characters is its length in bytes.
  return { conn, frames: new FrameReader(conn, received.subarray(end + 4)) };
}

async function connectRaw(port: number): Promise<RawClient> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  return await rawUpgrade(conn, port);
}

const MASK = new Uint8Array([0x12, 0x34, 0x56, 0x78]);

/** A masked client frame, as RFC 6455 §5.3 requires of clients. */
function clientFrame(
  opcode: number,
  payload: Uint8Array | string,
  masked = true,
): Uint8Array<ArrayBuffer> {
  const frame: Frame = {
    fin: true,
    rsv1: false,
    rsv2: false,
    rsv3: false,
    opcode,
    payload: typeof payload === "string" ? encoder.encode(payload) : payload,
  };
  if (masked) frame.mask = MASK;
  return encodeFrame(frame);
}

function closeFrame(code: number, reason = ""): Uint8Array<ArrayBuffer> {
  const body = concat(
    new Uint8Array([code >> 8, code & 0xff]),
    encoder.encode(reason),
  );
  return clientFrame(0x8, body);
}

function closeCodeOf(frame: Frame | undefined): number {
  assert.ok(frame !== undefined, "expected a close frame, got the end");
  assert.equal(
    frame.opcode,
    0x8,
    `expected a close frame, got opcode ${frame.opcode}`,
  );
  assert.ok(frame.payload.length >= 2);
  return (frame.payload[0]! << 8) | frame.payload[1]!;
}

/** Reads frames until the close frame; returns its code, then expects the end. */
async function expectClose(client: RawClient): Promise<number> {
  let frame = await deadline(client.frames.next(), "close frame");
  while (frame !== undefined && frame.opcode !== 0x8) {
    frame = await deadline(client.frames.next(), "close frame");
  }
  const code = closeCodeOf(frame);
  assert.equal(
    await deadline(client.frames.next(), "end of stream"),
    undefined,
  );
  return code;
}

/** A full round trip with Deno's built-in client: proof the server serves. */
async function assertServes(port: number, text: string): Promise<void> {
  const socket = new WebSocket(`ws://127.0.0.1:${port}/`);
  const closed = new Promise<CloseEvent>((resolve) => socket.onclose = resolve);
  const echoed = new Promise<unknown>((resolve) => {
    socket.onmessage = (event) => resolve(event.data);
  });
  socket.onopen = () => socket.send(text);
  try {
    assert.equal(await deadline(echoed, "echo"), text);
  } finally {
    socket.close();
    await deadline(closed, "client close");
  }
}

// ---------------------------------------------------------------------------
// Hostile requests
// ---------------------------------------------------------------------------

Deno.test("serve() disconnects a request head that never ends after handshakeTimeout, serving others meanwhile", async () => {
  const { server, errors } = quietServer({ handshakeTimeout: 200 });
  await using _server = server;
  using slow = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  await writeAll(slow, encoder.encode("GET / HTTP/1.1\r\nHost: a\r\n"));
  await assertServes(server.addr.port, "while a slow client waits");
  // The server closes it without an answer (there is no complete request).
  assert.equal((await readToEnd(slow)).length, 0);
  // A timeout is not a failure of the server: onError hears nothing.
  assert.deepEqual(errors, []);
  await assertServes(server.addr.port, "after the slow client");
});

Deno.test(
  "serve() over TLS disconnects a request head that never ends after handshakeTimeout",
  {
    ignore: !opensslAvailable,
  },
  async () => {
    // Only once the TLS handshake is done: Deno 2.9.6 cannot drop a TLS
    // connection whose handshake is pending (the socket stays open until the
    // client sends or leaves), so a client silent before its ClientHello is
    // out of reach of handshakeTimeout.
    const { cert, key } = await makeCertificate();
    const { server, errors } = quietServer({
      cert,
      key,
      handshakeTimeout: 200,
    });
    await using _server = server;
    using slow = await Deno.connectTls({
      hostname: "127.0.0.1",
      port: server.addr.port,
      caCerts: [cert],
    });
    await deadline(slow.handshake(), "TLS handshake");
    await writeAll(slow, encoder.encode("GET / HTTP/1.1\r\nHost: a\r\n"));
    assert.equal((await readToEnd(slow)).length, 0);
    assert.deepEqual(errors, []);
  },
);

Deno.test("serve() answers 1 MiB of headers with 431 and closes", async () => {
  const { server, errors } = quietServer();
  await using _server = server;
  using conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  const head = encoder.encode(
    "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n" +
      `X-Padding: ${"a".repeat(1024 * 1024)}\r\n\r\n`,
  );
  // The server answers before reading it all: keep writing until it stops
  // taking bytes, while reading its answer.
  const writing = writeAll(conn, head).catch((error) => error);
  const answer = parseResponse(await readToEnd(conn));
  const written = await deadline(writing, "write");
  assert.ok(
    written === undefined || written instanceof Deno.errors.ConnectionReset ||
      written instanceof Deno.errors.BrokenPipe,
    `unexpected write error ${written}`,
  );
  assert.ok([431, 400].includes(answer.status), `status ${answer.status}`);
  assert.equal(answer.headers.get("connection"), "close");
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof HandshakeError);
  await assertServes(server.addr.port, "after the big head");
});

Deno.test("serve() refuses an upgrade with a lingering close: a client still sending is not reset", async () => {
  const { server, errors } = quietServer();
  await using _server = server;
  const port = server.addr.port;
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  // A page from another origin (403) whose client goes on sending frames
  // after its request. A server that closed right after its answer would
  // reset the connection (RFC 9112 §9.6: the reset can destroy the answer
  // before the client reads it); this one half-closes and drains.
  await writeAll(
    conn,
    encoder.encode(
      upgradeHead(port, createKey(), "Origin: https://elsewhere.example\r\n"),
    ),
  );
  const parts: Uint8Array[] = [];
  const buffer = new Uint8Array(64 * 1024);
  while (true) {
    const count = await deadline(conn.read(buffer), "read");
    if (count === null) break; // the server's FIN: the whole answer is here
    parts.push(buffer.slice(0, count));
  }
  const answer = parseResponse(concat(...parts));
  assert.equal(answer.status, 403);
  assert.equal(answer.headers.get("connection"), "close");
  const frame = clientFrame(0x2, new Uint8Array(32 * 1024));
  for (let i = 0; i < 8; i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
    await deadline(writeAll(conn, frame), `write ${i}`);
  }
  assert.equal(errors.length, 1);
  await assertServes(port, "after the refused upgrade");
});

Deno.test("serve() answers bad upgrade requests with 400, 405 and 426 and goes on", async () => {
  const { server, errors } = quietServer();
  await using _server = server;
  const port = server.addr.port;
  const key = createKey();
  const base =
    `Host: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n`;

  const missingKey = await request(
    port,
    `GET / HTTP/1.1\r\n${base}Sec-WebSocket-Version: 13\r\n\r\n`,
  );
  assert.equal(missingKey.status, 400);
  assert.match(missingKey.body, /Sec-WebSocket-Key/);

  const version8 = await request(
    port,
    `GET / HTTP/1.1\r\n${base}Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 8\r\n\r\n`,
  );
  assert.equal(version8.status, 426);
  assert.equal(version8.headers.get("sec-websocket-version"), "13");

  const post = await request(
    port,
    `POST / HTTP/1.1\r\n${base}Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n`,
  );
  assert.equal(post.status, 405);
  assert.equal(post.headers.get("allow"), "GET");

  const duplicateKey = await request(
    port,
    `GET / HTTP/1.1\r\n${base}Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Key: ${createKey()}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  assert.equal(duplicateKey.status, 400);
  assert.match(duplicateKey.body, /more than once/);
  // The answers never echo the key.
  for (const answer of [missingKey, version8, post, duplicateKey]) {
    assert.ok(!answer.body.includes(key));
    assert.equal(
      answer.headers.get("connection"),
      answer === version8 ? "upgrade, close" : "close",
    );
  }

  assert.deepEqual(
    errors.map((error) => (error as HandshakeError).status),
    [400, 426, 405, 400],
  );
  await assertServes(port, "after bad requests");
});

Deno.test("serve() answers 400 to a missing, repeated or malformed Host, which never moves the URL's path", async () => {
  const urls: string[] = [];
  const { server, errors } = quietServer({
    onRequest: (request) => {
      urls.push(request.url);
      return new Response("seen");
    },
  });
  await using _server = server;
  const port = server.addr.port;
  const get = (target: string, hostLines: string, version = "HTTP/1.1") =>
    request(port, `GET ${target} ${version}\r\n${hostLines}\r\n`);
  // RFC 9112 §3.2: 400 for a missing Host, two of them or an invalid one.
  const refused = [
    await get("/public", ""),
    await get("/public", "Host: a\r\nHost: b\r\n"),
    // Without the check, the URL would be http://x/admin?/public.
    await get("/public", "Host: x/admin?\r\n"),
    await get("/public", "Host: x#\r\n"),
    await get("/public", "Host: user:secret@x\r\n"),
    await get("/public", "Host: \r\n"),
    // RFC 9112 §3.2.2: an absolute-form target is the URL, but only http(s)
    // or ws(s) and without userinfo.
    await get("file:///etc/passwd", "Host: x\r\n"),
    await get("http://user:pw@x/", "Host: x\r\n"),
  ];
  for (const answer of refused) {
    assert.equal(answer.status, 400);
    assert.ok(!answer.body.includes("secret"));
  }
  assert.equal(errors.length, refused.length);
  // An upgrade request gets the same check.
  const upgrade = await request(
    port,
    upgradeHead(port, createKey()).replace(
      `Host: 127.0.0.1:${port}`,
      "Host: x/admin?",
    ),
  );
  assert.equal(upgrade.status, 400);
  assert.match(upgrade.body, /Host/);
  assert.deepEqual(urls, [], "onRequest never saw a refused request");

  // Valid forms reach onRequest with the URL they name.
  assert.equal((await get("/a?b=1", "Host: Example.COM:8080\r\n")).status, 200);
  assert.equal((await get("/v6", "Host: [::1]:9\r\n")).status, 200);
  assert.equal((await get("http://abs.example/p", "Host: x\r\n")).status, 200);
  // HTTP/1.0 may omit Host: the listener's address stands in.
  assert.equal((await get("/old", "", "HTTP/1.0")).status, 200);
  assert.deepEqual(urls, [
    "http://example.com:8080/a?b=1",
    "http://[::1]:9/v6",
    "http://abs.example/p",
    `http://127.0.0.1:${port}/old`,
  ]);
  await assertServes(port, "after the bad Host headers");
});

Deno.test("serve() writes RFC 9110 answers: 426 names upgrade in Connection, reason phrases are the standard ones", async () => {
  const { server } = quietServer({
    onRequest: (request) =>
      new URL(request.url).pathname === "/teapot"
        ? new Response("", { status: 299 })
        : new Response("created", { status: 201 }),
  });
  await using _server = server;
  const port = server.addr.port;
  const statusLine = async (head: string) => {
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(conn, encoder.encode(head));
    const text = decoder.decode(await readToEnd(conn));
    return text.slice(0, text.indexOf("\r\n"));
  };
  assert.equal(
    await statusLine(`GET /new HTTP/1.1\r\nHost: x\r\n\r\n`),
    "HTTP/1.1 201 Created",
  );
  // An unknown status without statusText gets an empty reason (RFC 9112 §4).
  assert.equal(
    await statusLine(`GET /teapot HTTP/1.1\r\nHost: x\r\n\r\n`),
    "HTTP/1.1 299 ",
  );

  // Without onRequest, a plain GET gets 426 with Upgrade, which RFC 9110
  // §7.8 asks to list as a Connection option.
  const { server: bare } = quietServer();
  await using _bare = bare;
  const answer = await request(
    bare.addr.port,
    `GET / HTTP/1.1\r\nHost: x\r\n\r\n`,
  );
  assert.equal(answer.status, 426);
  assert.equal(answer.headers.get("upgrade"), "websocket");
  const options = answer.headers.get("connection")!.toLowerCase().split(
    /\s*,\s*/,
  );
  assert.deepEqual(options.sort(), ["close", "upgrade"]);
});

Deno.test("serve().shutdown() answers 503 to requests whose hooks still run, and closes those still being sent", async () => {
  const entered = { upgrade: Promise.withResolvers<void>() };
  const enteredPlain = Promise.withResolvers<void>();
  const gate = Promise.withResolvers<void>();
  let handlerRuns = 0;
  const { server, errors } = quietServer({
    upgrade: async () => {
      entered.upgrade.resolve();
      await gate.promise; // an auth check that takes its time
      return {};
    },
    onRequest: async () => {
      enteredPlain.resolve();
      await gate.promise;
      return new Response("late");
    },
  }, () => {
    handlerRuns++;
  });
  const port = server.addr.port;
  const upgrading = await Deno.connect({ hostname: "127.0.0.1", port });
  const plain = await Deno.connect({ hostname: "127.0.0.1", port });
  const halfway = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await writeAll(upgrading, encoder.encode(upgradeHead(port, createKey())));
    await writeAll(plain, encoder.encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    await writeAll(halfway, encoder.encode("GET / HTTP/1.1\r\nHost: x\r\n"));
    await deadline(entered.upgrade.promise, "the upgrade hook");
    await deadline(enteredPlain.promise, "onRequest");
    const stopped = server.shutdown();
    for (const conn of [upgrading, plain]) {
      const answer = parseResponse(await readToEnd(conn));
      assert.equal(answer.status, 503);
      assert.equal(answer.headers.get("connection"), "close");
    }
    // A request not read whole has nothing to answer: the server hangs up.
    assert.equal((await readToEnd(halfway)).length, 0);
    gate.resolve(); // the hooks finish after their answer went out
    await deadline(stopped, "shutdown()");
    assert.equal(handlerRuns, 0);
    const refusals = errors.filter((error) =>
      error instanceof HandshakeError && error.status === 503
    );
    assert.equal(refusals.length, 2);
  } finally {
    gate.resolve();
    for (const conn of [upgrading, plain, halfway]) conn.close();
    await server.shutdown();
  }
});

Deno.test("serve() answers 503 to hooks that end on the signal that shuts it down", async () => {
  for (const how of ["accept", "throw", "respond"] as const) {
    const controller = new AbortController();
    const entered = Promise.withResolvers<void>();
    const { server } = quietServer({
      signal: controller.signal,
      // A hook that gives up when the server stops: it ends in the same turn
      // as shutdown() begins.
      upgrade: () =>
        new Promise((resolve, reject) => {
          entered.resolve();
          controller.signal.addEventListener("abort", () => {
            if (how === "accept") resolve({});
            else if (how === "throw") reject(new Error("lookup aborted"));
            else resolve(new Response("bye", { status: 401 }));
          });
        }),
    }, () => {});
    using conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.addr.port,
    });
    await writeAll(
      conn,
      encoder.encode(upgradeHead(server.addr.port, createKey())),
    );
    await deadline(entered.promise, "the upgrade hook");
    controller.abort();
    const answer = parseResponse(await readToEnd(conn));
    assert.equal(answer.status, 503, how);
    await deadline(server.finished, "shutdown");
  }
});

/** onError's reports, with a way to wait for one. */
function reportLog(): {
  errors: unknown[];
  onError: (error: unknown) => void;
  until: (test: (error: unknown) => boolean, what: string) => Promise<unknown>;
} {
  const errors: unknown[] = [];
  let wake = Promise.withResolvers<void>();
  return {
    errors,
    onError: (error) => {
      errors.push(error);
      wake.resolve();
      wake = Promise.withResolvers<void>();
    },
    until: (test, what) =>
      deadline(
        (async () => {
          for (let reports = 0; reports < 1000; reports++) {
            const found = errors.find(test);
            if (found !== undefined) return found;
            await wake.promise;
          }
          throw new Error(`no report matched: ${what}`);
        })(),
        what,
        3_000,
      ),
  };
}

function isTimeout(error: unknown, pattern: RegExp): boolean {
  return error instanceof DOMException && error.name === "TimeoutError" &&
    pattern.test(error.message);
}

Deno.test("serve() answers 503 when a hook does not finish within handshakeTimeout, reports a TimeoutError naming it, and reports what the hook throws later", async () => {
  const log = reportLog();
  // Each hook call waits on the next of these, settled by the test.
  const gates: PromiseWithResolvers<unknown>[] = [];
  const signals: AbortSignal[] = [];
  // The requests of assertServes() (for "/", not "/raw") pass at once.
  const hook = (request: Request) => {
    if (request.headers.has("upgrade") && !request.url.endsWith("/raw")) {
      return Promise.resolve({});
    }
    signals.push(request.signal);
    const gate = Promise.withResolvers<unknown>();
    gates.push(gate);
    return gate.promise;
  };
  let handlerRuns = 0;
  await using server = serve({
    hostname: "127.0.0.1",
    port: 0,
    handshakeTimeout: 300,
    onError: log.onError,
    upgrade: hook as () => Promise<void>,
    onRequest: hook as () => Promise<Response>,
  }, (ws, request) => {
    if (request.url.endsWith("/raw")) handlerRuns++;
    return echo(ws);
  });
  const port = server.addr.port;

  // The upgrade hook: 503, a TimeoutError that names it, request.signal
  // aborted; what it throws afterwards still reaches onError.
  const upgrade = await deadline(
    request(port, upgradeHead(port, createKey())),
    "answer to the upgrade",
    3_000,
  );
  assert.equal(upgrade.status, 503);
  await log.until((e) => isTimeout(e, /upgrade hook/), "upgrade hook timeout");
  assert.ok(signals[0]!.aborted);
  gates[0]!.reject(new Error("late lookup failure"));
  await log.until(
    (e) => e instanceof Error && e.message === "late lookup failure",
    "the late failure",
  );

  // An upgrade hook that accepts too late: the client had its 503, the
  // handler never runs.
  const late = await deadline(
    request(port, upgradeHead(port, createKey())),
    "answer to the second upgrade",
    3_000,
  );
  assert.equal(late.status, 503);
  gates[1]!.resolve({});

  // onRequest, and a late Response (dropped, its body cancelled).
  const plain = await deadline(
    request(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    "answer to the plain request",
    3_000,
  );
  assert.equal(plain.status, 503);
  await log.until((e) => isTimeout(e, /onRequest/), "onRequest timeout");
  let cancelled = false;
  gates[2]!.resolve(
    new Response(new ReadableStream({ cancel: () => void (cancelled = true) })),
  );
  await assertServes(port, "after the slow hooks");
  assert.ok(cancelled);
  assert.equal(handlerRuns, 0);
  assert.deepEqual(
    log.errors.map((e) => e instanceof Error ? e.message : String(e)),
    [
      "Cannot upgrade to WebSocket: upgrade hook did not finish within handshakeTimeout (300 ms)",
      "late lookup failure",
      "Cannot upgrade to WebSocket: upgrade hook did not finish within handshakeTimeout (300 ms)",
      "Cannot answer request: onRequest did not finish within handshakeTimeout (300 ms)",
    ],
  );
});

Deno.test("serve() gives the hooks handshakeTimeout of their own: a client that sends its request slowly cannot make a hook time out", async () => {
  const log = reportLog();
  await using server = serve({
    hostname: "127.0.0.1",
    port: 0,
    handshakeTimeout: 1_000,
    onError: log.onError,
    onRequest: async () => {
      await new Promise((resolve) => setTimeout(resolve, 600));
      return new Response("worth the wait");
    },
  }, echo);
  using conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  // 700 ms for the request, 600 ms for the hook: each within 1 s, not both.
  await writeAll(conn, encoder.encode("GET / HTTP/1.1\r\nHost: x\r\n"));
  await new Promise((resolve) => setTimeout(resolve, 700));
  await writeAll(conn, encoder.encode("\r\n"));
  const answer = parseResponse(await readToEnd(conn));
  assert.equal(answer.status, 200);
  assert.equal(answer.body, "worth the wait");
  assert.deepEqual(log.errors, []);
});

Deno.test("serve() answers 503 when onRequest's body does not end within handshakeTimeout, and cancels it", async () => {
  const log = reportLog();
  let cancelled = false;
  await using server = serve({
    hostname: "127.0.0.1",
    port: 0,
    handshakeTimeout: 300,
    onError: log.onError,
    onRequest: () =>
      new Response(
        new ReadableStream({
          start: (controller) => controller.enqueue(encoder.encode("part")),
          cancel: () => void (cancelled = true),
        }),
      ),
  }, echo);
  const answer = await deadline(
    request(server.addr.port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    "answer",
    3_000,
  );
  assert.equal(answer.status, 503);
  await log.until((e) => isTimeout(e, /onRequest/), "onRequest timeout");
  assert.ok(cancelled);
});

Deno.test("serve() reads at most 1 MiB of a hook's body, then answers 500 and cancels the rest", async () => {
  const log = reportLog();
  // An endless body (cut at 64 MiB, so that a server reading it all ends).
  let pulled = 0;
  let cancelled = false;
  const chunk = new Uint8Array(64 * 1024);
  await using server = serve({
    hostname: "127.0.0.1",
    port: 0,
    onError: log.onError,
    onRequest: () =>
      new Response(
        new ReadableStream({
          pull: (controller) => {
            if (pulled >= 64 * 1024 * 1024) return controller.close();
            pulled += chunk.length;
            controller.enqueue(chunk);
          },
          cancel: () => void (cancelled = true),
        }),
      ),
  }, echo);
  const answer = await request(
    server.addr.port,
    "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
  );
  assert.equal(answer.status, 500);
  const error = await log.until((e) => e instanceof RangeError, "RangeError");
  assert.ok(pulled <= 1024 * 1024 + 4 * chunk.length, `pulled ${pulled}`);
  assert.match((error as Error).message, /over 1048576 bytes/);
  assert.ok(cancelled);
});

Deno.test("serve()'s HandshakeError keeps the request's headers for onError, out of what logging it prints", async () => {
  const { server, errors } = quietServer();
  await using _server = server;
  const port = server.addr.port;
  // A refused upgrade (no Sec-WebSocket-Key) with credentials on it.
  const answer = await request(
    port,
    `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n` +
      "Connection: Upgrade\r\nAuthorization: Bearer SECRET-TOKEN\r\n" +
      "Cookie: sid=SECRET-COOKIE\r\nSec-WebSocket-Version: 13\r\n\r\n",
  );
  assert.equal(answer.status, 400);
  assert.ok(!answer.body.includes("SECRET"));
  assert.equal(errors.length, 1);
  const error = errors[0];
  assert.ok(error instanceof HandshakeError);
  assert.equal(error.headers?.get("authorization"), "Bearer SECRET-TOKEN");
  for (
    const printed of [Deno.inspect(error), JSON.stringify(error), `${error}`]
  ) {
    assert.ok(!printed.includes("SECRET"), printed);
  }
});

Deno.test("serve()'s HandshakeError for a target or Host that makes no URL has no cause repeating the target", async () => {
  const { server, errors } = quietServer();
  await using _server = server;
  const port = server.addr.port;
  // Port 99999 passes the Host syntax check but makes no URL: the runtime's
  // error names the whole URL, query string included.
  const answers = [
    await request(
      port,
      upgradeHead(port, createKey()).replace("GET /raw", "GET /?token=SECRET")
        .replace(`Host: 127.0.0.1:${port}`, "Host: a:99999"),
    ),
    await request(
      port,
      "GET http://a:99999/?token=SECRET HTTP/1.1\r\nHost: a\r\n\r\n",
    ),
  ];
  for (const answer of answers) {
    assert.equal(answer.status, 400);
    assert.ok(!answer.body.includes("SECRET"));
  }
  assert.equal(errors.length, 2);
  for (const error of errors) {
    assert.ok(error instanceof HandshakeError);
    assert.equal(error.cause, undefined);
    assert.ok(!Deno.inspect(error).includes("SECRET"), Deno.inspect(error));
  }
});

Deno.test("serve() answers 405 to the methods fetch forbids (CONNECT, TRACE, TRACK), upgrade or not, and goes on", async () => {
  let requests = 0;
  const { server, errors } = quietServer({
    onRequest: () => {
      requests++;
      return new Response("plain");
    },
  });
  await using _server = server;
  const port = server.addr.port;
  const key = createKey();
  const heads = [
    upgradeHead(port, key).replace("GET /raw", "CONNECT /raw"),
    upgradeHead(port, key).replace("GET /raw", "TRACE /raw"),
    upgradeHead(port, key).replace("GET /raw", "track /raw"),
    `CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`,
    `TRACE / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`,
  ];
  for (const head of heads) {
    const answer = await request(port, head);
    assert.equal(answer.status, 405, head);
    assert.equal(answer.headers.get("allow"), "GET");
    assert.equal(answer.headers.get("connection"), "close");
  }
  // onRequest cannot be handed a Request with these methods.
  assert.equal(requests, 0);
  // Refusals, which the default onError does not print: no client can fill
  // the logs with them.
  assert.equal(errors.length, heads.length);
  for (const error of errors) {
    assert.ok(error instanceof HandshakeError, `${error}`);
    assert.equal(error.status, 405);
  }
  await assertServes(port, "after the forbidden methods");
});

Deno.test("serve() goes on when onError throws or rejects: requests are answered, a handler that threw is closed with 1011", async () => {
  // The callback's own failure is printed once per server, with
  // console.error: stubbed here to count it.
  using capture = captureConsoleError();
  for (const how of ["throws", "rejects"] as const) {
    let calls = 0;
    await using server = serve({
      hostname: "127.0.0.1",
      port: 0,
      onError: () => {
        calls++;
        const failure = new Error("logger down");
        if (how === "throws") throw failure;
        return Promise.reject(failure);
      },
    }, (ws, request) => {
      if (new URL(request.url).pathname === "/raw") {
        throw new Error("handler bug");
      }
      return echo(ws);
    });
    const port = server.addr.port;
    // A head with bare LF line ends: a HandshakeError without a request.
    const bad = await request(port, "GET / HTTP/1.1\nHost: a\n\n");
    assert.equal(bad.status, 400);
    const client = await connectRaw(port);
    using _conn = client.conn;
    const frame = await deadline(client.frames.next(), "close frame");
    assert.equal(closeCodeOf(frame), 1011, how);
    // The close handshake, so the server does not wait closeTimeout.
    await writeAll(client.conn, closeFrame(1011));
    assert.equal(await deadline(client.frames.next(), "end"), undefined);
    await assertServes(port, `after onError ${how}`);
    assert.equal(calls, 2);
    assert.equal(server.connections.size, 0);
  }
  assert.equal(capture.printed.length, 2);
  for (const data of capture.printed) {
    assert.match(String(data[0]), /onError threw/);
    assert.equal((data[1] as Error).message, "logger down");
  }
});

Deno.test("serve() refuses obs-fold in an upgrade request with 400 (RFC 9112 §5.2)", async () => {
  const { server, errors } = quietServer();
  await using _server = server;
  const port = server.addr.port;
  // The fold connect() accepts in a 101 is refused in a request.
  const folded = await request(
    port,
    `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n` +
      "Connection: keep-alive,\r\n Upgrade\r\n" +
      `Sec-WebSocket-Key: ${createKey()}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  assert.equal(folded.status, 400);
  assert.match(folded.body, /obsolete line folding/);
  assert.deepEqual(
    errors.map((error) => (error as HandshakeError).status),
    [400],
  );
  await assertServes(port, "after a folded request");
});

/** The bytes of `bytes` as Latin-1 text: one character per byte. */
function latin1(bytes: Uint8Array): string {
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return text;
}

Deno.test("serve() writes a hook's header values and status text as Latin-1, one byte per character", async () => {
  // "é" is U+00E9: the byte 0xE9 on the wire, not its UTF-8 (0xC3 0xA9).
  const answer = () =>
    new Response("body", {
      status: 401,
      statusText: "Caf\u00e9",
      headers: { "X-Name": "caf\u00e9", "X-Max": "\u00ff" },
    });
  const { server, errors } = quietServer({
    onRequest: answer,
    upgrade: answer,
  });
  await using _server = server;
  const port = server.addr.port;
  for (
    const head of [
      "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
      upgradeHead(port, createKey()),
    ]
  ) {
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(conn, encoder.encode(head));
    const text = latin1(await readToEnd(conn));
    assert.ok(text.startsWith("HTTP/1.1 401 Caf\xe9\r\n"), text);
    assert.ok(text.includes("\r\nx-name: caf\xe9\r\n"), text);
    assert.ok(text.includes("\r\nx-max: \xff\r\n"), text);
    assert.ok(
      text.endsWith("\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbody"),
      text,
    );
  }
  assert.deepEqual(errors, []);
});

Deno.test("serve() answers HEAD with the head of the answer GET gets, without its body (RFC 9110 §9.3.2)", async () => {
  const withRequest = quietServer({
    onRequest: () => new Response("hello, HTTP", { status: 200 }),
  });
  const bare = quietServer();
  await using _withRequest = withRequest.server;
  await using _bare = bare.server;
  const port = bare.server.addr.port;
  const upgradeHeaders = upgradeHead(port, createKey()).slice(
    upgradeHead(port, "").indexOf("\r\n") + 2,
    -2,
  );
  // Each HEAD request, and the request whose answer it must match but for
  // the body.
  const cases = [
    // onRequest's answer, and the 426 without onRequest.
    [withRequest.server.addr.port, "Host: x\r\n", "GET", 200],
    [port, "Host: x\r\n", "GET", 426],
    // Error answers: an upgrade that is not a GET gets 405 (whose message
    // names the method: POST has as many letters as HEAD), a bad Host 400.
    [port, upgradeHeaders, "POST", 405],
    [port, "Host: x/y?\r\n", "GET", 400],
  ] as const;
  for (const [port, headers, like, status] of cases) {
    const raw = async (method: string) => {
      using conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await writeAll(
        conn,
        encoder.encode(`${method} / HTTP/1.1\r\n${headers}\r\n`),
      );
      return decoder.decode(await readToEnd(conn));
    };
    const full = parseResponse(encoder.encode(await raw(like)));
    const text = await raw("HEAD");
    const head = parseResponse(encoder.encode(text));
    assert.equal(full.status, status);
    assert.equal(head.status, status, text);
    assert.equal(head.body, "", `no body bytes after the head: ${text}`);
    assert.ok(full.body.length > 0);
    // RFC 9110 §8.6: Content-Length as for GET.
    assert.equal(
      head.headers.get("content-length"),
      String(encoder.encode(full.body).length),
    );
    assert.equal(
      head.headers.get("content-type"),
      full.headers.get("content-type"),
    );
  }
});

// ---------------------------------------------------------------------------
// Answers to clients that do not read
// ---------------------------------------------------------------------------

// Over loopback the kernel takes about 4 MB of a write that nobody reads,
// more than the 1 MiB a hook's answer may have: a Deno client cannot stall a
// server's write. This client (Python's standard library only) can: with a
// 4 KiB receive buffer and a 536-byte MSS, the server's socket takes about
// 150 KB. It sends argv[2] as Latin-1 and prints "sent"; then, at a line on
// stdin, reads until the end and prints "end <bytes>" (or "reset <bytes>").
const STALLED_CLIENT = `
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
s.connect(("127.0.0.1", int(sys.argv[1])))
s.sendall(sys.argv[2].encode("latin-1"))
print("sent", flush=True)
sys.stdin.readline()
s.settimeout(10)
total = 0
try:
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        total += len(chunk)
    print("end", total, flush=True)
except ConnectionResetError:
    print("reset", total, flush=True)
`;

const stalledClientRuns = Deno.build.os === "linux" && (() => {
  try {
    return new Deno.Command(PYTHON, { args: ["-c", ""] }).outputSync().success;
  } catch {
    return false;
  }
})();

/** A client that sends a request and reads nothing until told to. */
class StalledClient implements AsyncDisposable {
  readonly #child: Deno.ChildProcess;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly #stdout: Promise<string>;
  readonly #stderr: Promise<string>;

  constructor(port: number, request: string) {
    this.#child = new Deno.Command(PYTHON, {
      args: ["-c", STALLED_CLIENT, String(port), request],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#stdin = this.#child.stdin.getWriter();
    this.#stdout = new Response(this.#child.stdout).text();
    this.#stderr = new Response(this.#child.stderr).text();
  }

  /** Reads until the server ends the connection: "end <bytes>". */
  async readToEnd(): Promise<string> {
    await this.#stdin.write(encoder.encode("\n"));
    await this.#stdin.close();
    const status = await deadline(this.#child.status, "stalled client");
    assert.equal(status.code, 0, await this.#stderr);
    return (await this.#stdout).trim().split("\n").at(-1)!;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // It exited.
    }
    await this.#child.status;
    await this.#stdin.close().catch(() => {});
    await this.#stdout.catch(() => "");
    await this.#stderr.catch(() => "");
  }
}

// Sends half a request head and prints "sent"; at a line on stdin, resets
// the connection (SO_LINGER 0).
const RESETTING_CLIENT = `
import socket, struct, sys
s = socket.socket()
s.connect(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n")
print("sent", flush=True)
sys.stdin.readline()
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
`;

Deno.test(
  "serve() does not report nor print a client that resets its connection while sending its request",
  {
    ignore: !stalledClientRuns,
  },
  async () => {
    using capture = captureConsoleError();
    for (const withOnError of [false, true]) {
      const errors: unknown[] = [];
      await using server = serve({
        hostname: "127.0.0.1",
        port: 0,
        ...(withOnError ? { onError: (error) => void errors.push(error) } : {}),
      }, echo);
      const child = new Deno.Command(PYTHON, {
        args: ["-c", RESETTING_CLIENT, String(server.addr.port)],
        stdin: "piped",
        stdout: "piped",
        stderr: "null",
      }).spawn();
      const stdout = child.stdout.pipeThrough(new TextDecoderStream())
        .getReader();
      try {
        // Until the end of the line: print() may write it in two parts
        // (unbuffered with PYTHONUNBUFFERED set).
        let line = "";
        for (let reads = 0; !line.endsWith("\n") && reads < 10; reads++) {
          const { value, done } = await deadline(stdout.read(), "the client");
          if (done) break;
          line += value;
        }
        assert.equal(line, "sent\n");
        // The server accepts in order: once it served a client that came
        // after, it has the first one, reading its request.
        await assertServes(server.addr.port, "before the reset");
        const stdin = child.stdin.getWriter();
        await stdin.write(encoder.encode("\n"));
        await stdin.close();
        assert.equal(
          (await deadline(child.status, "resetting client")).code,
          0,
        );
        // Serving one more client gives the server the turns to read the
        // reset.
        await assertServes(server.addr.port, "after the reset");
      } finally {
        await stdout.cancel();
        try {
          child.kill();
        } catch {
          // It exited.
        }
        await child.status;
      }
      await server.shutdown();
      assert.deepEqual(errors, []);
    }
    assert.deepEqual(capture.printed, []);
  },
);

Deno.test(
  "serve() closes a client that does not read its answer by handshakeTimeout, and reports it without the URL",
  {
    ignore: !stalledClientRuns,
  },
  async () => {
    const body = "x".repeat(1024 * 1024);
    const reported: unknown[] = [];
    let heard = Promise.withResolvers<void>();
    await using server = serve({
      hostname: "127.0.0.1",
      port: 0,
      handshakeTimeout: 500,
      onRequest: () => new Response(body),
      upgrade: (request) =>
        new URL(request.url).searchParams.has("token")
          ? new Response(body, { status: 401 })
          : {},
      onError: (error) => {
        reported.push(error);
        heard.resolve();
      },
    }, echo);
    const port = server.addr.port;
    const requests = [
      ["GET /?token=SECRET HTTP/1.1\r\nHost: x\r\n\r\n", 200],
      [
        upgradeHead(port, createKey()).replace(
          "GET /raw",
          "GET /?token=SECRET",
        ),
        401,
      ],
    ] as const;
    for (const [request, status] of requests) {
      heard = Promise.withResolvers<void>();
      reported.length = 0;
      await using client = new StalledClient(port, request);
      // The answer does not fit the socket: the server's write waits, until
      // handshakeTimeout passes, closes the connection and reports.
      await deadline(heard.promise, "onError", 3_000);
      assert.equal(reported.length, 1);
      const error = reported[0];
      assert.ok(error instanceof HandshakeError, String(error));
      assert.equal(error.status, status);
      assert.match(error.message, /did not read/);
      assert.match(error.message, /500 ms/);
      assert.ok(error.cause instanceof DOMException);
      assert.equal(error.cause.name, "TimeoutError");
      assert.ok(!Deno.inspect(error).includes("SECRET"), Deno.inspect(error));
      // What the kernel had taken still arrives, then the end: the connection
      // was closed before the whole answer went out.
      const [end = "", bytes = ""] = (await client.readToEnd()).split(" ");
      assert.ok(end === "end" || end === "reset", end);
      assert.ok(Number(bytes) < body.length, bytes);
    }
    await assertServes(port, "after clients that did not read");
  },
);

Deno.test("serve() closes connections past maxPendingHandshakes at once, reports the burst once, and serves those it holds", async () => {
  const log = reportLog();
  await using server = serve({
    hostname: "127.0.0.1",
    port: 0,
    handshakeTimeout: 30_000,
    maxPendingHandshakes: 3,
    onError: log.onError,
  }, echo);
  const port = server.addr.port;
  // Ten clients connect and send nothing, as in a flood: the server accepts
  // them in order, holds the first three and closes the other seven at once.
  const conns: Deno.TcpConn[] = [];
  try {
    for (let i = 0; i < 10; i++) {
      conns.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    }
    for (const conn of conns.slice(3)) {
      const bytes = await deadline(readToEnd(conn), "a close at once", 3_000);
      assert.equal(bytes.length, 0);
    }
    // One report for the burst, not one per connection.
    assert.equal(log.errors.length, 1);
    const error = log.errors[0];
    assert.ok(error instanceof DOMException, String(error));
    assert.equal(error.name, "QuotaExceededError");
    assert.match(error.message, /maxPendingHandshakes/);
    assert.match(error.message, /\b3\b/);
    // The three it holds still complete their handshake; from their 101 on
    // they are sessions, no longer pending handshakes.
    for (const conn of conns.slice(0, 3)) await rawUpgrade(conn, port);
  } finally {
    for (const conn of conns) conn.close();
  }
  await assertServes(port, "after the burst");
  assert.equal(log.errors.length, 1);
});

Deno.test("serve() refuses a maxPendingHandshakes that is not a positive integer or Infinity, before it listens", async () => {
  for (const value of [0, -1, 1.5, NaN, -Infinity]) {
    assert.throws(
      () => serve({ port: 0, maxPendingHandshakes: value }, echo),
      (error: unknown) =>
        error instanceof RangeError &&
        error.message ===
          `Cannot start server: maxPendingHandshakes is ${value}, expected a positive integer or Infinity`,
    );
  }
  await using _server = serve({
    hostname: "127.0.0.1",
    port: 0,
    maxPendingHandshakes: Infinity,
  }, echo);
});

Deno.test("serve() refuses a handshakeTimeout or shutdownTimeout a timer cannot wait, before it listens", () => {
  const cases = [
    ["handshakeTimeout", 2 ** 31, "over 0"],
    ["handshakeTimeout", 0, "over 0"],
    ["handshakeTimeout", -1, "over 0"],
    ["handshakeTimeout", NaN, "over 0"],
    ["handshakeTimeout", Infinity, "over 0"],
    ["shutdownTimeout", 2 ** 31, "of at least 0"],
    ["shutdownTimeout", -1, "of at least 0"],
    ["shutdownTimeout", NaN, "of at least 0"],
  ] as const;
  for (const [name, value, range] of cases) {
    assert.throws(
      () => serve({ port: 0, [name]: value }, echo),
      (error: unknown) =>
        error instanceof RangeError &&
        error.message ===
          `Cannot start server: ${name} is ${value}, expected a number of ms ${range} and at most 2147483647`,
      `${name}: ${value}`,
    );
  }
});

Deno.test("serve() refuses bad limits, timeouts and deflate parameters with a RangeError before it listens", () => {
  // Each was found only per connection before: after the request was read,
  // or after the 101 went out. The resource sanitizer fails the test if a
  // listener was opened.
  const cases: [string, ServeOptions<undefined>, RegExp][] = [
    ["maxMessageSize", { maxMessageSize: -1 }, /maxMessageSize/],
    ["maxFrameSize", { maxFrameSize: NaN }, /maxFrameSize/],
    ["maxFragments", { maxFragments: -1 }, /maxFragments/],
    ["pingInterval", { pingInterval: 2 ** 31 }, /pingInterval/],
    ["pingTimeout", { pingTimeout: -1 }, /pingTimeout/],
    ["closeTimeout", { closeTimeout: Infinity }, /closeTimeout/],
    ["writeHighWaterMark", { writeHighWaterMark: -1 }, /writeHighWaterMark/],
    ["maxBufferedAmount", { maxBufferedAmount: NaN }, /maxBufferedAmount/],
    ["maxHeadSize", { maxHeadSize: 3 }, /maxHeadSize/],
    ["maxHeaders", { maxHeaders: -1 }, /maxHeaders/],
    ["deflate level", { deflate: { level: 10 } }, /"level" is 10/],
    [
      "deflate serverMaxWindowBits",
      { deflate: { serverMaxWindowBits: 7 } },
      /"serverMaxWindowBits" is 7/,
    ],
    [
      "a fraction of a byte",
      { maxMessageSize: 1.5 },
      /maxMessageSize is 1.5, expected a non-negative integer/,
    ],
    [
      "a fraction of a byte, without compression",
      { maxMessageSize: 1.5, deflate: false },
      /maxMessageSize is 1.5, expected a non-negative integer/,
    ],
    [
      "a compression threshold under 0",
      { deflate: { threshold: -1 } },
      /"threshold" is -1/,
    ],
  ];
  for (const [name, options, message] of cases) {
    assert.throws(
      () => serve({ hostname: "127.0.0.1", port: 0, ...options }, echo),
      (error: unknown) =>
        error instanceof RangeError && message.test(error.message),
      name,
    );
  }
});

// ---------------------------------------------------------------------------
// The accept loop
// ---------------------------------------------------------------------------

// A server in a child process whose file descriptors the test takes and gives
// back: it takes every free one at start ("fill" takes them again, "release"
// gives them back, "stop" shuts the server down), and prints each event as a
// JSON line (onError's reports with their time, in milliseconds).
const SERVER_MODULE = new URL("../server.ts", import.meta.url).href;
const FD_CHILD = `
import { serve } from "${SERVER_MODULE}";
const say = (event) => console.log(JSON.stringify(event));
// Deno 2.9.6 sets up its signal handling lazily, and panics when no
// descriptor is left for it (seen with stdin a pipe): a listener registered
// now sets it up first.
Deno.addSignalListener("SIGUSR2", () => {});
const held = [];
const fill = () => {
  try {
    for (;;) held.push(Deno.openSync("/dev/null"));
  } catch {
    // None left.
  }
};
const server = serve({
  hostname: "127.0.0.1",
  port: 0,
  onError: (error) => say({ error: String(error), at: performance.now() }),
}, async (ws) => {
  for await (const message of ws) await ws.send(message);
});
fill();
say({ ready: server.addr.port, held: held.length });
let text = "";
for await (const chunk of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
  text += chunk;
  for (let end = text.indexOf("\\n"); end !== -1; end = text.indexOf("\\n")) {
    const command = text.slice(0, end);
    text = text.slice(end + 1);
    if (command === "release") {
      for (const file of held.splice(0)) file.close();
      say({ released: true });
    } else if (command === "fill") {
      fill();
      say({ filled: held.length });
    } else if (command === "stop") {
      const start = performance.now();
      await server.shutdown();
      say({ stopped: performance.now() - start });
      Deno.exit(0);
    }
  }
}
`;

// Connects and resets (SO_LINGER 0) three times.
const RESET_BEFORE_ACCEPT = `
import socket, struct, sys
for _ in range(3):
    s = socket.socket()
    s.connect(("127.0.0.1", int(sys.argv[1])))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
`;

Deno.test(
  "serve() neither reports nor backs off for clients that reset before it accepts them",
  {
    ignore: !stalledClientRuns,
  },
  async () => {
    using capture = captureConsoleError();
    for (const withOnError of [false, true]) {
      const errors: unknown[] = [];
      await using server = serve({
        hostname: "127.0.0.1",
        port: 0,
        ...(withOnError ? { onError: (error) => void errors.push(error) } : {}),
      }, echo);
      // Synchronous: the event loop, so the accept loop, waits meanwhile, and
      // accept() finds the connections reset (Deno 2.9.6 fails it with
      // NotConnected).
      const output = new Deno.Command(PYTHON, {
        args: ["-c", RESET_BEFORE_ACCEPT, String(server.addr.port)],
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).outputSync();
      assert.equal(output.code, 0, decoder.decode(output.stderr));
      await assertServes(server.addr.port, "after the resets");
      assert.deepEqual(errors, []);
    }
    assert.deepEqual(capture.printed, []);
  },
);

Deno.test(
  "serve() goes on accepting after accept() fails with EMFILE, backing off, and shutdown() does not wait for the back-off",
  {
    ignore: Deno.build.os === "windows",
  },
  async () => {
    // The child runs with at most 256 descriptors, so that taking them all is
    // quick.
    const child = new Deno.Command("bash", {
      args: [
        "-c",
        'ulimit -n 256 && exec "$0" "$@"',
        Deno.execPath(),
        "eval",
        FD_CHILD,
      ],
      cwd: new URL("..", import.meta.url),
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stderr = new Response(child.stderr).text();
    const stdin = child.stdin.getWriter();
    const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const send = (command: string) =>
      stdin.write(encoder.encode(`${command}\n`));
    let output = "";
    const errors: { error: string; at: number }[] = [];
    // The next event that has `key`; the reports on the way are collected.
    const until = async (key: string): Promise<Record<string, unknown>> => {
      while (true) {
        const end = output.indexOf("\n");
        if (end !== -1) {
          const event = JSON.parse(output.slice(0, end));
          output = output.slice(end + 1);
          if ("error" in event) errors.push(event);
          if (key in event) return event;
          continue;
        }
        // The first event waits for the child to start.
        const { value, done } = await deadline(
          lines.read(),
          key,
          key === "ready" ? 30_000 : undefined,
        );
        if (done) {
          throw new Error(`child ended before "${key}": ${await stderr}`);
        }
        output += value;
      }
    };
    const conns: Deno.Conn[] = [];
    let exited = false;
    try {
      const ready = await until("ready");
      const port = ready.ready as number;
      assert.ok((ready.held as number) > 0);
      // No descriptor left: accept() fails with EMFILE, and the connection
      // waits in the listen backlog.
      const first = await Deno.connect({ hostname: "127.0.0.1", port });
      conns.push(first);
      while (errors.length < 5) await until("error");
      for (const { error } of errors) {
        assert.match(error, /Too many open files|os error 24/);
      }
      // Not a busy loop: 10, 20, 40 then 80 ms between the tries.
      for (let i = 1; i < errors.length; i++) {
        const gap = errors[i]!.at - errors[i - 1]!.at;
        assert.ok(gap >= 5 * 2 ** (i - 1), `try ${i} came after ${gap} ms`);
      }
      await send("release");
      // The loop went on: the waiting client is served.
      const client = await rawUpgrade(first, port);
      await writeAll(first, clientFrame(0x1, "after EMFILE"));
      const echoed = await deadline(client.frames.next(), "echo");
      assert.equal(decoder.decode(echoed?.payload), "after EMFILE");
      await writeAll(first, closeFrame(1000));
      assert.equal(await expectClose(client), 1000);

      // Failing again, the loop backs off from 10 ms again; after 7 failures
      // it waits 640 ms, which shutdown() does not wait for.
      await send("fill");
      await until("filled");
      conns.push(await Deno.connect({ hostname: "127.0.0.1", port }));
      const before = errors.length;
      while (errors.length < before + 7) await until("error");
      await send("stop");
      const { stopped } = await until("stopped");
      assert.ok((stopped as number) < 300, `shutdown() took ${stopped} ms`);
      const status = await deadline(child.status, "exit");
      exited = true;
      assert.equal(status.code, 0, await stderr);
    } finally {
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // Closed already.
        }
      }
      if (!exited) {
        try {
          child.kill("SIGKILL");
        } catch {
          // It ended already.
        }
      }
      await stdin.close().catch(() => {});
      await lines.cancel().catch(() => {});
      await child.status;
      await stderr;
    }
  },
);

// ---------------------------------------------------------------------------
// Hostile frames after a valid handshake
// ---------------------------------------------------------------------------

Deno.test("serve() closes with 1009 or 1002 on a frame header announcing 2^63-1 bytes, without allocating it", async () => {
  const { server, errors } = quietServer();
  await using _server = server;
  const client = await connectRaw(server.addr.port);
  using _conn = client.conn;
  // FIN + binary, MASK + 127, then the largest 64-bit length §5.2 allows.
  const header = concat(maxLengthHeader(true), MASK);
  await writeAll(client.conn, header);
  const code = await expectClose(client);
  assert.ok([1009, 1002].includes(code), `close code ${code}`);
  // The handler's iteration failed with the peer's protocol error.
  assert.equal(errors.length, 1);
  assert.equal((errors[0] as { closeCode?: number }).closeCode, code);
  await assertServes(server.addr.port, "after the huge frame");
});

Deno.test("serve() closes with 1002 on an unmasked client frame", async () => {
  const { server } = quietServer();
  await using _server = server;
  const client = await connectRaw(server.addr.port);
  using _conn = client.conn;
  await writeAll(client.conn, clientFrame(0x1, "not masked", false));
  assert.equal(await expectClose(client), 1002);
});

Deno.test("serve() processes frames sent in the same write as the upgrade request", async () => {
  const { server } = quietServer();
  await using _server = server;
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  using _conn = conn;
  const client = await rawUpgrade(
    conn,
    server.addr.port,
    concat(
      clientFrame(0x1, "early text"),
      clientFrame(0x2, new Uint8Array([0, 1, 2, 255])),
      clientFrame(0x9, "early ping"),
    ),
  );
  // The pong may be written before or after the echoes.
  const frames: Frame[] = [];
  while (frames.length < 3) {
    const frame = await deadline(client.frames.next(), "frame");
    assert.ok(frame !== undefined, "connection ended before the echoes");
    frames.push(frame);
  }
  const data = frames.filter((frame) => frame.opcode !== 0xa);
  assert.deepEqual(
    data.map((frame) => [frame.opcode, [...frame.payload]]),
    [
      [0x1, [...encoder.encode("early text")]],
      [0x2, [0, 1, 2, 255]],
    ],
  );
  const pong = frames.find((frame) => frame.opcode === 0xa);
  assert.ok(pong !== undefined);
  assert.equal(decoder.decode(pong.payload), "early ping");
  await writeAll(conn, closeFrame(4000, "done"));
  assert.equal(await expectClose(client), 4000);
});

Deno.test("serve() over TLS completes a hand-made handshake and echoes", {
  ignore: !opensslAvailable,
}, async () => {
  const { cert, key } = await makeCertificate();
  const { server } = quietServer({ cert, key });
  await using _server = server;
  const conn = await Deno.connectTls({
    hostname: "127.0.0.1",
    port: server.addr.port,
    caCerts: [cert],
  });
  using _conn = conn;
  const client = await rawUpgrade(conn, server.addr.port);
  await writeAll(conn, clientFrame(0x1, "over tls"));
  const frame = await deadline(client.frames.next(), "echo");
  assert.equal(frame?.opcode, 0x1);
  assert.equal(decoder.decode(frame.payload), "over tls");
  await writeAll(conn, closeFrame(1000));
  assert.equal(await expectClose(client), 1000);
});

// ---------------------------------------------------------------------------
// Backpressure
// ---------------------------------------------------------------------------

Deno.test("serve() keeps memory bounded for a client that stops reading, and serves others meanwhile", async () => {
  const highWaterMark = 64 * 1024;
  const message = new Uint8Array(1024 * 1024);
  // The frame of one message: 1 MiB plus a 10-byte header.
  const frameSize = message.length + 10;
  let sent = 0;
  let maxBuffered = 0;
  const flooding = Promise.withResolvers<WebSocketSession>();
  const floodEnded = Promise.withResolvers<unknown>();
  const handler: WebSocketHandler = async (ws, request) => {
    if (new URL(request.url).pathname !== "/raw") {
      return await echo(ws);
    }
    flooding.resolve(ws);
    try {
      while (true) {
        const written = ws.send(message);
        maxBuffered = Math.max(maxBuffered, ws.bufferedAmount);
        await written;
        sent++;
        maxBuffered = Math.max(maxBuffered, ws.bufferedAmount);
      }
    } catch (error) {
      floodEnded.resolve(error);
      throw error;
    }
  };
  const { server, errors } = quietServer(
    { writeHighWaterMark: highWaterMark, pingInterval: 0 },
    handler,
  );
  await using _server = server;
  // The hostile client: a valid handshake, then it never reads again.
  const hostile = await connectRaw(server.addr.port);
  using _hostile = hostile.conn;
  const ws = await deadline(flooding.promise, "flood start");
  await assertServes(server.addr.port, "while another client floods");
  await assertServes(server.addr.port, "x".repeat(100_000));
  assert.ok(ws.isOpen);
  assert.ok(
    maxBuffered <= highWaterMark + frameSize,
    `bufferedAmount reached ${maxBuffered}`,
  );
  // Kernel buffers hold a few MiB at most: the handler is held back.
  assert.ok(sent < 64, `${sent} MiB were sent to a client that reads nothing`);
  hostile.conn.close();
  const error = await deadline(floodEnded.promise, "flood end");
  assert.ok(error instanceof ConnectionClosedError, `${error}`);
  assert.equal((await deadline(ws.closed, "closed")).code, 1006);
  // A closed connection is not a server failure.
  assert.deepEqual(errors, []);
});

// ---------------------------------------------------------------------------
// The echo service
// ---------------------------------------------------------------------------

Deno.test("examples/echo.ts echoes, selects the offered subprotocol and exits 0 with 1001 on SIGTERM", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-read",
      "examples/echo.ts",
      "--hostname",
      "127.0.0.1",
      "--port",
      "0",
    ],
    cwd: new URL("..", import.meta.url),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let output = "";
  let killed = false;
  const clients: WebSocket[] = [];
  try {
    let match: RegExpExecArray | null = null;
    while (match === null) {
      const { value, done } = await deadline(
        lines.read(),
        "listening line",
        30_000,
      );
      if (done) break;
      output += value;
      match = /listening on ws:\/\/127\.0\.0\.1:(\d+)/.exec(output);
    }
    assert.ok(match, `no listening line in ${JSON.stringify(output)}`);
    const url = `ws://127.0.0.1:${match[1]}/any/path?q=1`;

    const socket = new WebSocket(url, ["echo.v1", "other"]);
    socket.binaryType = "arraybuffer";
    clients.push(socket);
    const closed = new Promise<CloseEvent>((resolve) =>
      socket.onclose = resolve
    );
    const messages: unknown[] = [];
    const two = Promise.withResolvers<void>();
    socket.onmessage = (event) => {
      messages.push(event.data);
      if (messages.length === 2) two.resolve();
    };
    await deadline(
      new Promise((resolve, reject) => {
        socket.onopen = resolve;
        socket.onerror = () => reject(new Error("echo client failed to open"));
      }),
      "open",
    );
    assert.equal(socket.protocol, "echo.v1");
    socket.send("hello echo");
    socket.send(new Uint8Array([9, 8, 7]));
    await deadline(two.promise, "echoes");
    assert.equal(messages[0], "hello echo");
    assert.deepEqual(
      new Uint8Array(messages[1] as ArrayBuffer),
      new Uint8Array([9, 8, 7]),
    );

    child.kill("SIGTERM");
    killed = true;
    const status = await deadline(child.status, "exit", 15_000);
    assert.equal(status.code, 0, await stderr);
    const event = await deadline(closed, "client close");
    assert.equal(event.code, 1001);
  } finally {
    for (const socket of clients) socket.close();
    if (!killed) child.kill("SIGKILL");
    await lines.cancel().catch(() => {});
    await child.status;
    await stderr;
  }
});
