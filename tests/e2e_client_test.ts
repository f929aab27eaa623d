// Copyright 2026 the @rfc6455/websocket authors. MIT license.
// End to end: connect() against serve(), hand-written (and hostile) servers
// on raw sockets, an HTTP CONNECT proxy written here, redirects, and the
// echo client as a process.

import assert from "node:assert/strict";
import {
  connect,
  type ConnectOptions,
  type WebSocketClient,
} from "../client.ts";
import type { CloseInfo, WebSocketMessage } from "../connection.ts";
import { HandshakeError, ProtocolError } from "../errors.ts";
import { encodeFrame, type Frame, FrameDecoder } from "../frame.ts";
import { createAcceptKey } from "../handshake.ts";
import { serve, type WebSocketHandler } from "../server.ts";
import { PYTHON, PythonPeer } from "./_python.ts";
import { makeCertificate } from "./_tls.ts";
import {
  concat,
  deadline,
  maxLengthHeader,
  quietServer,
  writeAll,
} from "./_util.ts";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const ROOT = new URL("../", import.meta.url);

/** The settled error of `promise`, which must reject within the deadline. */
async function rejection(
  promise: Promise<unknown>,
  what: string,
): Promise<unknown> {
  const outcome = await deadline(
    promise.then(
      (value) => ({ value }),
      (error: unknown) => ({ error }),
    ),
    what,
  );
  if ("error" in outcome) return outcome.error;
  const value = outcome.value;
  if (value !== null && typeof value === "object" && "close" in value) {
    await (value as WebSocketClient).close();
  }
  assert.fail(`${what}: expected a rejection`);
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
  assert.equal(info.code, 1000);
  assert.equal(info.wasClean, true);
}

function indexOfHeadEnd(bytes: Uint8Array): number {
  for (let i = 0; i + 3 < bytes.length; i++) {
    if (
      bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 &&
      bytes[i + 3] === 10
    ) {
      return i;
    }
  }
  return -1;
}

function closeQuietly(closer: { close(): void }): void {
  try {
    closer.close();
  } catch {
    // Closed already.
  }
}

/** An HTTP request head as a raw server read it. */
interface RawRequest {
  /** The request line, e.g. `GET /path?query HTTP/1.1`. */
  line: string;
  /** The header fields in wire order and case. */
  fields: [string, string][];
  /** The first value of a header, by case-insensitive name. */
  get(name: string): string | undefined;
}

/** The server side of one raw TCP connection. */
class RawPeer {
  readonly conn: Deno.Conn;
  #buffer: Uint8Array = new Uint8Array(0);
  #decoder = new FrameDecoder({ role: "server" });
  #frames: Frame[] = [];

  constructor(conn: Deno.Conn) {
    this.conn = conn;
  }

  /** Reads more bytes into the buffer; false at the end of the stream. */
  async #fill(): Promise<boolean> {
    const chunk = new Uint8Array(64 * 1024);
    let count: number | null;
    try {
      count = await deadline(this.conn.read(chunk), "raw read");
    } catch (error) {
      if (error instanceof Deno.errors.ConnectionReset) return false;
      throw error;
    }
    if (count === null) return false;
    this.#buffer = concat(this.#buffer, chunk.subarray(0, count));
    return true;
  }

  /** Reads an HTTP request head. */
  async readHead(): Promise<RawRequest> {
    let end: number;
    while ((end = indexOfHeadEnd(this.#buffer)) === -1) {
      if (!(await this.#fill())) throw new Error("EOF before the request head");
    }
    const text = decoder.decode(this.#buffer.subarray(0, end));
    this.#buffer = this.#buffer.slice(end + 4);
    const [line, ...rest] = text.split("\r\n");
    const fields = rest.map((field): [string, string] => {
      const colon = field.indexOf(":");
      return [field.slice(0, colon), field.slice(colon + 1).trim()];
    });
    return {
      line: line!,
      fields,
      get: (name) =>
        fields.find(([field]) => field.toLowerCase() === name.toLowerCase())
          ?.[1],
    };
  }

  async write(data: string | Uint8Array): Promise<void> {
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    let offset = 0;
    while (offset < bytes.length) {
      offset += await this.conn.write(bytes.subarray(offset));
    }
  }

  /** Answers an upgrade request with a valid 101 plus `extra` header lines. */
  async accept(request: RawRequest, extra: string[] = []): Promise<void> {
    const accept = await createAcceptKey(request.get("sec-websocket-key")!);
    await this.write(
      [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        `Sec-WebSocket-Accept: ${accept}`,
        ...extra,
      ].join("\r\n") + "\r\n\r\n",
    );
  }

  /** The next (masked) frame from the client, or null at the end. */
  async readFrame(): Promise<Frame | null> {
    while (this.#frames.length === 0) {
      if (this.#buffer.length > 0) {
        this.#frames.push(...this.#decoder.push(this.#buffer));
        this.#buffer = new Uint8Array(0);
        continue;
      }
      if (!(await this.#fill())) return null;
    }
    return this.#frames.shift()!;
  }

  /** Reads and drops bytes until the client ends the TCP connection. */
  async readToEnd(): Promise<void> {
    while (await this.#fill()) this.#buffer = new Uint8Array(0);
  }

  close(): void {
    closeQuietly(this.conn);
  }
}

/** A raw TCP server that runs `onConnection` for each connection. */
class RawServer implements AsyncDisposable {
  readonly #listener: Deno.Listener;
  readonly #tasks = new Set<Promise<void>>();
  readonly #errors: unknown[] = [];
  readonly #loop: Promise<void>;
  /** How many connections were accepted. */
  accepted = 0;

  constructor(
    onConnection: (peer: RawPeer) => Promise<void>,
    hostname = "127.0.0.1",
  ) {
    const listener = Deno.listen({ hostname, port: 0 });
    this.#listener = listener;
    this.#loop = (async () => {
      try {
        for await (const conn of listener) {
          this.accepted++;
          const peer = new RawPeer(conn);
          const task = onConnection(peer).catch((error) => {
            this.#errors.push(error);
          }).finally(() => {
            peer.close();
            this.#tasks.delete(task);
          });
          this.#tasks.add(task);
        }
      } catch {
        // The listener was closed.
      }
    })();
  }

  get port(): number {
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  /** Stops accepting, waits for the connections, rethrows their first error. */
  async [Symbol.asyncDispose](): Promise<void> {
    closeQuietly(this.#listener);
    await this.#loop;
    await deadline(Promise.all(this.#tasks), "raw server connections");
    if (this.#errors.length > 0) throw this.#errors[0];
  }
}

/**
 * The HandshakeError of `connect()` against a server (or, with `"proxy"`, an
 * HTTP proxy) that reads the request, writes `writes` (one write each), then
 * waits for the client to hang up.
 */
async function refusalOf(
  writes: string[],
  options: Parameters<typeof connect>[1] = {},
  role: "server" | "proxy" = "server",
): Promise<HandshakeError> {
  await using raw = new RawServer(async (peer) => {
    await peer.readHead();
    for (const bytes of writes) await peer.write(bytes);
    await peer.readToEnd();
  });
  const local = `127.0.0.1:${raw.port}`;
  const error = await rejection(
    role === "server"
      ? connect(`ws://${local}/`, { pingInterval: 0, ...options })
      : connect("ws://127.0.0.1:9/", {
        pingInterval: 0,
        proxy: `http://${local}`,
        ...options,
      }),
    "connect",
  );
  assert.ok(error instanceof HandshakeError, String(error));
  return error;
}

function frameOf(
  opcode: number,
  payload: Uint8Array,
  mask?: Uint8Array,
): Frame {
  return {
    fin: true,
    rsv1: false,
    rsv2: false,
    rsv3: false,
    opcode,
    payload,
    ...(mask === undefined ? {} : { mask }),
  };
}

function closeCodeOf(frame: Frame | null): number {
  assert.ok(frame !== null, "expected a close frame, got the end");
  assert.equal(frame.opcode, 0x8, "expected a close frame");
  return (frame.payload[0]! << 8) | frame.payload[1]!;
}

/** An echo server with serve(), returning what it saw. */
function echoServer(
  options: { cert?: string; key?: string; hostname?: string } = {},
): {
  server: ReturnType<typeof serve>;
  requests: Request[];
} {
  const requests: Request[] = [];
  const handler: WebSocketHandler = async (ws, request) => {
    requests.push(request);
    for await (const message of ws) await ws.send(message);
  };
  const server = serve({
    hostname: options.hostname ?? "127.0.0.1",
    port: 0,
    ...(options.cert === undefined ? {} : { cert: options.cert }),
    ...(options.key === undefined ? {} : { key: options.key }),
  }, handler);
  return { server, requests };
}

/** Proves no connection reached `listener` before this call: ours is first. */
async function assertNoConnectionBefore(
  listener: Deno.Listener,
): Promise<void> {
  const port = (listener.addr as Deno.NetAddr).port;
  const accepted = listener.accept();
  const mine = await Deno.connect({ hostname: "127.0.0.1", port });
  const first = await deadline(accepted, "accept");
  try {
    assert.equal(
      (first.remoteAddr as Deno.NetAddr).port,
      (mine.localAddr as Deno.NetAddr).port,
      "connect() opened a connection before failing",
    );
  } finally {
    first.close();
    mine.close();
  }
}

// ---------------------------------------------------------------------------
// URLs (RFC 6455 §3)
// ---------------------------------------------------------------------------

Deno.test("connect() rejects a URL that does not parse with a TypeError", async () => {
  for (const url of ["not a url", "", "ws://", "ws://[::1/"]) {
    const error = await rejection(connect(url, { pingInterval: 0 }), url);
    assert.ok(error instanceof TypeError, `${url}: ${error}`);
    assert.match(error.message, /^Cannot connect: URL is not valid$/);
  }
});

Deno.test("connect() keeps passwords out of URL errors, and refuses bad percent-encoding in credentials before any I/O", async () => {
  // A URL that does not parse: the runtime's message would repeat it.
  for (
    const [url, proxy] of [
      ["ws://user:S3CRET@[::1/", undefined],
      ["ws://127.0.0.1:9/", "http://user:S3CRET@[::1"],
    ] as const
  ) {
    const error = await rejection(
      connect(url, { pingInterval: 0, ...(proxy ? { proxy } : {}) }),
      url,
    );
    assert.ok(error instanceof TypeError, String(error));
    assert.equal(error.cause, undefined);
    assert.doesNotMatch(error.stack ?? "", /S3CRET/);
  }
  // A stray "%" in a user name or password, of the URL or of the proxy: a
  // TypeError before any connection (nothing listens on port 9 anyway).
  for (
    const [url, proxy] of [
      ["ws://user:50%@127.0.0.1:9/", undefined],
      ["ws://us%er:pw@127.0.0.1:9/", undefined],
      ["ws://127.0.0.1:9/", "http://user:50%@127.0.0.1:9"],
      ["ws://127.0.0.1:9/", "socks5://user:50%@127.0.0.1:9"],
    ] as const
  ) {
    const error = await rejection(
      connect(url, { pingInterval: 0, ...(proxy ? { proxy } : {}) }),
      url,
    );
    assert.ok(error instanceof TypeError, `${url} ${proxy}: ${error}`);
    assert.match(error.message, /is not valid percent-encoding$/);
    assert.doesNotMatch(error.message, /50%|us%er/);
  }
});

Deno.test("connect() rejects schemes other than ws, wss, http and https with a TypeError before any I/O", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  for (const scheme of ["ftp", "tcp", "wss+unix", "javascript"]) {
    const error = await rejection(
      connect(`${scheme}://127.0.0.1:${port}/`, { pingInterval: 0 }),
      scheme,
    );
    assert.ok(error instanceof TypeError);
    assert.equal(
      error.message,
      `Cannot connect: URL scheme is "${scheme}", expected "ws" or "wss"`,
    );
  }
  await assertNoConnectionBefore(listener);
});

Deno.test("connect() rejects a URL with a fragment with a TypeError before any I/O", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  // RFC 6455 §3: fragments MUST NOT be used, an empty one included.
  for (const suffix of ["#top", "#", "?x=1#y"]) {
    const url = `ws://127.0.0.1:${port}/${suffix}`;
    const error = await rejection(connect(url, { pingInterval: 0 }), url);
    assert.ok(error instanceof TypeError, url);
    assert.equal(error.message, "Cannot connect: URL has a fragment");
  }
  await assertNoConnectionBefore(listener);
});

Deno.test("connect() maps http: to ws: and https: to wss:", async () => {
  {
    const { server } = echoServer();
    await using _ = server;
    const ws = await deadline(
      connect(`http://127.0.0.1:${server.addr.port}/plain`, {
        pingInterval: 0,
      }),
      "connect",
    );
    assert.equal(ws.url, `ws://127.0.0.1:${server.addr.port}/plain`);
    await ws.send("over http:");
    assert.equal(await receive(ws), "over http:");
    await closeCleanly(ws);
  }
  {
    const { cert, key } = await makeCertificate();
    const { server } = echoServer({ cert, key });
    await using _ = server;
    const ws = await deadline(
      connect(`https://127.0.0.1:${server.addr.port}/secure`, {
        pingInterval: 0,
        caCerts: [cert],
      }),
      "connect",
    );
    assert.equal(ws.url, `wss://127.0.0.1:${server.addr.port}/secure`);
    await ws.send("over https:");
    assert.equal(await receive(ws), "over https:");
    await closeCleanly(ws);
  }
});

Deno.test("connect() sends the path and query exactly as in the URL", async () => {
  const lines: string[] = [];
  await using raw = new RawServer(async (peer) => {
    const request = await peer.readHead();
    lines.push(request.line);
    await peer.accept(request);
    // Expect the client's close, answer it, end.
    closeCodeOf(await peer.readFrame());
    await peer.write(encodeFrame(frameOf(0x8, new Uint8Array([0x03, 0xe8]))));
  });
  const cases: [string, string][] = [
    ["", "/"],
    ["/", "/"],
    ["?x=1", "/?x=1"],
    [
      "/a/b%20c/?q=%2F%3F&empty=&flag&sp=a+b",
      "/a/b%20c/?q=%2F%3F&empty=&flag&sp=a+b",
    ],
    ["/caf%C3%A9/ünïcode?ü=1", "/caf%C3%A9/%C3%BCn%C3%AFcode?%C3%BC=1"],
  ];
  for (const [suffix, target] of cases) {
    const ws = await deadline(
      connect(`ws://127.0.0.1:${raw.port}${suffix}`, {
        pingInterval: 0,
        deflate: false,
      }),
      "connect",
    );
    await closeCleanly(ws);
    assert.equal(lines.shift(), `GET ${target} HTTP/1.1`, suffix);
  }
});

Deno.test("connect() sends the Host header without the default port", async () => {
  // The default ports cannot be bound in a test; a proxy that sends every
  // tunnel to our server shows the authority connect() aimed at.
  const { server, requests } = echoServer();
  await using _ = server;
  const { cert, key } = await makeCertificate();
  const { server: secure, requests: secureRequests } = echoServer({
    cert,
    key,
  });
  await using _secure = secure;
  await using proxy = new TestProxy({
    route: (authority) =>
      authority.endsWith(":443") ? secure.addr.port : server.addr.port,
  });
  const ws = await deadline(
    connect("ws://127.0.0.1/default", {
      pingInterval: 0,
      proxy: `http://127.0.0.1:${proxy.port}`,
    }),
    "connect",
  );
  await closeCleanly(ws);
  assert.deepEqual(proxy.connects, ["127.0.0.1:80"]);
  assert.equal(requests[0]?.headers.get("host"), "127.0.0.1");

  const explicit = await deadline(
    connect("ws://127.0.0.1:80/explicit", {
      pingInterval: 0,
      proxy: `http://127.0.0.1:${proxy.port}`,
    }),
    "connect",
  );
  await closeCleanly(explicit);
  assert.equal(proxy.connects[1], "127.0.0.1:80");
  assert.equal(requests[1]?.headers.get("host"), "127.0.0.1");

  const tls = await deadline(
    connect("wss://localhost/default", {
      pingInterval: 0,
      caCerts: [cert],
      proxy: `http://127.0.0.1:${proxy.port}`,
    }),
    "connect",
  );
  await closeCleanly(tls);
  assert.equal(proxy.connects[2], "localhost:443");
  assert.equal(secureRequests[0]?.headers.get("host"), "localhost");
});

const IPV6 = (() => {
  try {
    Deno.listen({ hostname: "::1", port: 0 }).close();
    return true;
  } catch {
    return false;
  }
})();

Deno.test({
  name: `connect() reaches an IPv6 literal ws://[::1]:PORT/${
    IPV6 ? "" : " (skipped: IPv6 is not available on this machine)"
  }`,
  ignore: !IPV6,
  fn: async () => {
    const { server, requests } = echoServer({ hostname: "::1" });
    await using _ = server;
    const ws = await deadline(
      connect(`ws://[::1]:${server.addr.port}/six`, { pingInterval: 0 }),
      "connect",
    );
    await ws.send("over IPv6");
    assert.equal(await receive(ws), "over IPv6");
    await closeCleanly(ws);
    assert.equal(requests[0]?.headers.get("host"), `[::1]:${server.addr.port}`);
  },
});

// ---------------------------------------------------------------------------
// Handshake headers (RFC 6455 §4.1)
// ---------------------------------------------------------------------------

// setTimeout fires at once past 2^31 - 1 ms: handshakeTimeout: Infinity (or
// 30 days) used to fail every connect() at once, and maxRedirects: NaN
// followed redirects until the timeout.
Deno.test("connect() refuses a handshakeTimeout or maxRedirects it cannot honour, with a RangeError before any I/O", async () => {
  let connections = 0;
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepting = (async () => {
    for await (const conn of listener) {
      connections++;
      conn.close();
    }
  })();
  const url = `ws://127.0.0.1:${listener.addr.port}/`;
  for (
    const options of [
      { handshakeTimeout: Infinity },
      { handshakeTimeout: 2 ** 31 },
      { handshakeTimeout: 30 * 24 * 3600 * 1000 },
      { handshakeTimeout: 0 },
      { handshakeTimeout: -1 },
      { handshakeTimeout: NaN },
      { maxRedirects: NaN },
      { maxRedirects: -1 },
      { maxRedirects: 1.5 },
    ]
  ) {
    await assert.rejects(
      connect(url, { pingInterval: 0, proxy: false, ...options }),
      RangeError,
      JSON.stringify(options),
    );
  }
  assert.equal(connections, 0);
  listener.close();
  await accepting.catch(() => {});
});

// The limits of the connection and the deflate parameters used to be checked
// by the WebSocketConnection constructor and PerMessageDeflate, after the
// TCP connection and the handshake: a bad one cost a round trip to the
// server, and failed only when the server accepted deflate.
Deno.test("connect() refuses bad limits, timeouts and deflate parameters with a RangeError before any I/O", async () => {
  // It counts the connections it accepts, and closes them.
  await using raw = new RawServer(async () => {});
  const url = `ws://127.0.0.1:${raw.port}/`;
  const cases: [ConnectOptions, RegExp][] = [
    [{ maxMessageSize: -1 }, /maxMessageSize is -1/],
    [{ maxMessageSize: NaN }, /maxMessageSize is NaN/],
    [{ maxFrameSize: -1 }, /maxFrameSize is -1/],
    [{ maxFragments: Infinity }, /maxFragments is Infinity/],
    [{ pingInterval: -5 }, /pingInterval is -5/],
    [{ pingTimeout: 2 ** 31 }, /pingTimeout is 2147483648 ms/],
    [{ closeTimeout: NaN }, /closeTimeout is NaN/],
    [{ writeHighWaterMark: -1 }, /writeHighWaterMark is -1/],
    [{ maxBufferedAmount: -1 }, /maxBufferedAmount is -1/],
    [{ maxHeadSize: 3 }, /maxHeadSize must be an integer of at least 4, got 3/],
    [{ maxErrorBodySize: -1 }, /maxErrorBodySize is -1/],
    [{ maxErrorBodySize: 0.5 }, /maxErrorBodySize is 0.5/],
    [{ deflate: { serverMaxWindowBits: 16 } }, /"serverMaxWindowBits" is 16/],
    [{ deflate: { clientMaxWindowBits: 7 } }, /"clientMaxWindowBits" is 7/],
    [{ deflate: { level: 10 } }, /"level" is 10/],
    [{ deflate: { memLevel: 0 } }, /"memLevel" is 0/],
    [{ deflate: { threshold: -1 } }, /"threshold" is -1/],
    // Sizes are whole numbers, with compression or without.
    [
      { maxMessageSize: 1.5 },
      /maxMessageSize is 1.5, expected a non-negative integer/,
    ],
    [
      { maxMessageSize: 1.5, deflate: false },
      /maxMessageSize is 1.5, expected a non-negative integer/,
    ],
    [{ maxFrameSize: 0.5 }, /maxFrameSize is 0.5/],
  ];
  for (const [options, message] of cases) {
    await assert.rejects(
      connect(url, { pingInterval: 0, proxy: false, ...options }),
      (error: unknown) => {
        assert.ok(
          error instanceof RangeError,
          `${JSON.stringify(options)}: ${error}`,
        );
        assert.match(error.message, message);
        return true;
      },
    );
  }
  assert.equal(raw.accepted, 0);
});

Deno.test("connect() refuses the headers the protocol owns with a TypeError naming the header, not its value", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const secret = "s3cr3t-v4lue-do-not-log";
  for (
    const name of [
      "Upgrade",
      "Connection",
      "Sec-WebSocket-Key",
      "Sec-WebSocket-Version",
      "sec-websocket-key",
      "UPGRADE",
    ]
  ) {
    for (
      const headers of [
        { [name]: secret },
        [[name, secret]] as [string, string][],
        new Headers([[name, secret]]),
      ]
    ) {
      const error = await rejection(
        connect(`ws://127.0.0.1:${port}/`, { pingInterval: 0, headers }),
        name,
      );
      assert.ok(error instanceof TypeError, `${name}: ${error}`);
      assert.ok(
        error.message.toLowerCase().includes(`"${name.toLowerCase()}"`),
        error.message,
      );
      assert.ok(!error.message.includes(secret), error.message);
      assert.ok(!String(error.stack).includes(secret));
    }
  }
  // A value that would inject a header line is refused, without the value.
  for (const value of [`x\r\nX-Injected: ${secret}`, `x\n${secret}`]) {
    const error = await rejection(
      connect(`ws://127.0.0.1:${port}/`, {
        pingInterval: 0,
        headers: { "X-Custom": value },
      }),
      "header injection",
    );
    assert.ok(error instanceof TypeError, String(error));
    assert.match(error.message, /"X-Custom"/);
    assert.ok(!error.message.includes(secret), error.message);
  }
  // A whole "Name: value" line given as a name is refused without its value:
  // the message shows the name up to its first bad character.
  for (const name of [`Authorization: Bearer ${secret}`, `X-Token ${secret}`]) {
    const error = await rejection(
      connect(`ws://127.0.0.1:${port}/`, {
        pingInterval: 0,
        headers: [[name, "x"]],
      }),
      "a line as a name",
    );
    assert.ok(error instanceof TypeError, String(error));
    assert.match(error.message, /not a token/);
    assert.ok(!error.message.includes(secret), error.message);
  }
  await assertNoConnectionBefore(listener);
});

// ---------------------------------------------------------------------------
// HTTP CONNECT proxy (RFC 9110 §9.3.6)
// ---------------------------------------------------------------------------

interface TestProxyOptions {
  /** The `user:pass` the proxy requires, as Basic credentials. */
  credentials?: string;
  /** Where to send a tunnel: a port on 127.0.0.1; default the authority asked for. */
  route?: (authority: string) => number;
  /** The answer to a CONNECT it grants; default a bare 200. */
  answer?: string;
  /**
   * Bytes sent after the answer once the client's first bytes in the tunnel
   * came (so they reach it in a read of their own), before those bytes go
   * on to the server: a body the answer should not have.
   */
  body?: string;
}

/**
 * A proxy on Deno.listen (127.0.0.1, port 0) that runs `handle` for every
 * client; disposing it closes everything and rethrows a handler's error.
 */
abstract class TestTunnelServer implements AsyncDisposable {
  readonly #listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  readonly #tasks = new Set<Promise<void>>();
  readonly #conns = new Set<Deno.Conn>();
  readonly #errors: unknown[] = [];
  readonly #loop: Promise<void>;
  /** How many TCP connections the proxy accepted. */
  accepted = 0;

  constructor() {
    this.#loop = (async () => {
      try {
        for await (const conn of this.#listener) {
          this.accepted++;
          this.#conns.add(conn);
          const task = this.handle(conn).catch((error) => {
            this.#errors.push(error);
          }).finally(() => {
            closeQuietly(conn);
            this.#conns.delete(conn);
            this.#tasks.delete(task);
          });
          this.#tasks.add(task);
        }
      } catch {
        // The listener was closed.
      }
    })();
  }

  get port(): number {
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  protected abstract handle(client: Deno.Conn): Promise<void>;

  /**
   * Connects to 127.0.0.1:`port`, calls `ready` (the proxy's success
   * answer) with that connection, then copies bytes both ways until both
   * sides end.
   */
  protected async bridge(
    client: Deno.Conn,
    port: number,
    ready: (upstream: Deno.Conn) => Promise<unknown>,
  ): Promise<void> {
    const upstream = await Deno.connect({ hostname: "127.0.0.1", port });
    this.#conns.add(upstream);
    try {
      await ready(upstream);
      await Promise.all([pipe(client, upstream), pipe(upstream, client)]);
    } finally {
      closeQuietly(upstream);
      this.#conns.delete(upstream);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    closeQuietly(this.#listener);
    await this.#loop;
    await deadline(Promise.all(this.#tasks), "proxy connections");
    for (const conn of this.#conns) closeQuietly(conn);
    if (this.#errors.length > 0) throw this.#errors[0];
  }
}

/** A small HTTP CONNECT proxy. */
class TestProxy extends TestTunnelServer {
  readonly #options: TestProxyOptions;
  /** The authority of each CONNECT request, in order. */
  readonly connects: string[] = [];
  /** The `Proxy-Authorization` value of each request (or undefined). */
  readonly authorizations: (string | undefined)[] = [];

  constructor(options: TestProxyOptions = {}) {
    super();
    this.#options = options;
  }

  protected async handle(client: Deno.Conn): Promise<void> {
    const peer = new RawPeer(client);
    const request = await peer.readHead();
    const match = /^CONNECT (\S+) HTTP\/1\.1$/.exec(request.line);
    if (match === null) {
      await peer.write(
        "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n",
      );
      return;
    }
    const authority = match[1]!;
    this.connects.push(authority);
    const authorization = request.get("proxy-authorization");
    this.authorizations.push(authorization);
    const credentials = this.#options.credentials;
    if (
      credentials !== undefined &&
      authorization !== `Basic ${encoder.encode(credentials).toBase64()}`
    ) {
      const body = "proxy authentication required";
      await peer.write(
        `HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="test"\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      );
      return;
    }
    const port = this.#options.route?.(authority) ??
      Number(authority.slice(authority.lastIndexOf(":") + 1));
    await this.bridge(client, port, async (upstream) => {
      await peer.write(
        this.#options.answer ?? "HTTP/1.1 200 Connection Established\r\n\r\n",
      );
      const body = this.#options.body;
      if (body === undefined) return;
      const first = new Uint8Array(64 * 1024);
      const count = await deadline(
        client.read(first),
        "the tunnel's first bytes",
      );
      await peer.write(body);
      if (count !== null) await writeAll(upstream, first.subarray(0, count));
    });
  }
}

/** Copies `from` to `to` until `from` ends, then half-closes `to`. */
async function pipe(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  const buffer = new Uint8Array(64 * 1024);
  try {
    while (true) {
      const count = await from.read(buffer);
      if (count === null) break;
      let offset = 0;
      while (offset < count) {
        offset += await to.write(buffer.subarray(offset, count));
      }
    }
    await (to as Deno.TcpConn).closeWrite();
  } catch {
    // One side went away: end both.
    closeQuietly(from);
    closeQuietly(to);
  }
}

/** Runs `fn` with the proxy environment variables set to `vars` only. */
async function withProxyEnv(
  vars: Record<string, string>,
  fn: () => Promise<void>,
): Promise<void> {
  const names = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "NO_PROXY",
    "no_proxy",
  ];
  const saved = new Map(names.map((name) => [name, Deno.env.get(name)]));
  try {
    for (const name of names) Deno.env.delete(name);
    for (const [name, value] of Object.entries(vars)) Deno.env.set(name, value);
    await fn();
  } finally {
    for (const [name, value] of saved) {
      if (value === undefined) Deno.env.delete(name);
      else Deno.env.set(name, value);
    }
  }
}

Deno.test("connect() tunnels ws: through the proxy option", async () => {
  const { server, requests } = echoServer();
  await using _ = server;
  await using proxy = new TestProxy();
  const ws = await deadline(
    connect(`ws://127.0.0.1:${server.addr.port}/via-proxy`, {
      pingInterval: 0,
      proxy: `http://127.0.0.1:${proxy.port}`,
    }),
    "connect",
  );
  await ws.send("tunnelled");
  assert.equal(await receive(ws), "tunnelled");
  await closeCleanly(ws);
  assert.deepEqual(proxy.connects, [`127.0.0.1:${server.addr.port}`]);
  assert.deepEqual(proxy.authorizations, [undefined]);
  assert.equal(new URL(requests[0]!.url).pathname, "/via-proxy");
});

Deno.test("connect() tunnels wss: through the proxy option with TLS end to end", async () => {
  const { cert, key } = await makeCertificate();
  const { server } = echoServer({ cert, key });
  await using _ = server;
  await using proxy = new TestProxy();
  const ws = await deadline(
    connect(`wss://localhost:${server.addr.port}/`, {
      pingInterval: 0,
      caCerts: [cert],
      proxy: `http://127.0.0.1:${proxy.port}`,
    }),
    "connect",
  );
  const big = new Uint8Array(200_000).fill(7);
  await ws.send(big);
  assert.deepEqual(await receive(ws), big);
  await closeCleanly(ws);
  assert.deepEqual(proxy.connects, [`localhost:${server.addr.port}`]);
});

// RFC 9110 §9.3.6 (and RFC 9112 §6.3 point 2): a 2xx answer to CONNECT has
// no content, the tunnel starts right after its head, and the client MUST
// ignore Content-Length and Transfer-Encoding in it. Bytes after the head
// are the server's, and a WebSocket server (HTTP or TLS) never speaks
// first. A body that came in a read of its own used to reach the handshake
// as the server's first bytes: "Cannot parse HTTP response: invalid status
// line" (ws:) or a TLS InvalidData error (wss:), neither naming the proxy.
Deno.test("connect() ignores Content-Length and Transfer-Encoding in a proxy's 2xx to CONNECT, and fails naming the proxy when a body follows it", async (t) => {
  // The servers see the client give up: their errors are not printed.
  const { server } = quietServer();
  await using _ = server;
  const { cert, key } = await makeCertificate();
  const { server: secure } = quietServer({ cert, key });
  await using _secure = secure;
  const targets = [
    `ws://127.0.0.1:${server.addr.port}/`,
    `wss://localhost:${secure.addr.port}/`,
  ];
  const via = (proxy: TestProxy): ConnectOptions => ({
    pingInterval: 0,
    caCerts: [cert],
    proxy: `http://127.0.0.1:${proxy.port}`,
  });
  const heads = [
    "HTTP/1.1 200 Connection Established\r\nContent-Length: 5\r\n\r\n",
    "HTTP/1.1 200 Connection Established\r\nTransfer-Encoding: chunked\r\n\r\n",
    "HTTP/1.1 200 Connection Established\r\nContent-Length: 0\r\n\r\n",
  ];
  await t.step("the headers alone are ignored: the tunnel works", async () => {
    for (const target of targets) {
      for (const answer of heads) {
        await using proxy = new TestProxy({ answer });
        const ws = await deadline(connect(target, via(proxy)), "connect");
        await ws.send("through");
        assert.equal(await receive(ws), "through");
        await closeCleanly(ws);
      }
    }
  });
  const bodies: [string, string, string][] = [
    [heads[0]!, "hello", "content-length"],
    [heads[1]!, "5\r\nhello\r\n0\r\n\r\n", "transfer-encoding"],
  ];
  for (const [answer, body, header] of bodies) {
    for (const target of targets) {
      for (const split of [false, true]) {
        await t.step(
          `${header}, ${target.slice(0, target.indexOf(":"))}, body ${
            split ? "in a read of its own" : "with the head"
          }`,
          async () => {
            await using proxy = new TestProxy(
              split ? { answer, body } : { answer: answer + body },
            );
            const error = await rejection(
              connect(target, via(proxy)),
              "connect",
            );
            assert.ok(error instanceof HandshakeError, String(error));
            assert.equal(error.status, 200);
            assert.equal(error.header, header);
            // Later, the error the body caused is kept.
            assert.equal(error.cause === undefined, !split);
            assert.equal(
              error.headers?.get(header),
              header === "content-length" ? "5" : "chunked",
            );
            assert.equal(
              error.message,
              `Cannot connect through proxy to ${
                new URL(target).host
              }: proxy answered 200 to CONNECT with a ${
                header === "content-length"
                  ? "Content-Length"
                  : "Transfer-Encoding"
              }, and bytes that are not the server's came through the tunnel (RFC 9110 §9.3.6: a 2xx answer to CONNECT has no content)`,
            );
          },
        );
      }
    }
  }
});

Deno.test("connect() sends proxy Basic credentials from the proxy URL", async () => {
  const { cert, key } = await makeCertificate();
  const { server } = echoServer();
  await using _ = server;
  const { server: secure } = echoServer({ cert, key });
  await using _secure = secure;
  await using proxy = new TestProxy({ credentials: "user:p@ss w0rd" });
  const proxyUrl = `http://user:p%40ss%20w0rd@127.0.0.1:${proxy.port}`;
  const ws = await deadline(
    connect(`ws://127.0.0.1:${server.addr.port}/`, {
      pingInterval: 0,
      proxy: proxyUrl,
    }),
    "connect",
  );
  await ws.send("authorized");
  assert.equal(await receive(ws), "authorized");
  await closeCleanly(ws);
  const wss = await deadline(
    connect(`wss://127.0.0.1:${secure.addr.port}/`, {
      pingInterval: 0,
      caCerts: [cert],
      proxy: proxyUrl,
    }),
    "connect",
  );
  await wss.send("authorized over TLS");
  assert.equal(await receive(wss), "authorized over TLS");
  await closeCleanly(wss);
  assert.equal(proxy.connects.length, 2);
});

Deno.test("connect() fails with a HandshakeError 407 on a wrong proxy password, without the password", async () => {
  const { server } = echoServer();
  await using _ = server;
  await using proxy = new TestProxy({ credentials: "user:right" });
  const password = "wr0ng-s3cret";
  const error = await rejection(
    connect(`ws://127.0.0.1:${server.addr.port}/`, {
      pingInterval: 0,
      proxy: `http://user:${password}@127.0.0.1:${proxy.port}`,
    }),
    "connect",
  );
  assert.ok(error instanceof HandshakeError, String(error));
  assert.equal(error.status, 407);
  assert.match(error.message, /proxy authentication failed/);
  assert.ok(!error.message.includes(password));
  assert.ok(!String(error.stack).includes(password));
  assert.equal(
    decoder.decode(error.body),
    "proxy authentication required",
  );
  assert.equal(server.connections.size, 0);
});

Deno.test("connect() uses HTTP_PROXY for ws: and HTTPS_PROXY for wss:", async () => {
  const { cert, key } = await makeCertificate();
  const { server } = echoServer();
  await using _ = server;
  const { server: secure } = echoServer({ cert, key });
  await using _secure = secure;
  await using plainProxy = new TestProxy();
  await using secureProxy = new TestProxy();
  await withProxyEnv({
    HTTP_PROXY: `http://127.0.0.1:${plainProxy.port}`,
    HTTPS_PROXY: `http://127.0.0.1:${secureProxy.port}`,
  }, async () => {
    const ws = await deadline(
      connect(`ws://127.0.0.1:${server.addr.port}/`, { pingInterval: 0 }),
      "connect",
    );
    await ws.send("env");
    assert.equal(await receive(ws), "env");
    await closeCleanly(ws);
    const wss = await deadline(
      connect(`wss://127.0.0.1:${secure.addr.port}/`, {
        pingInterval: 0,
        caCerts: [cert],
      }),
      "connect",
    );
    await wss.send("env over TLS");
    assert.equal(await receive(wss), "env over TLS");
    await closeCleanly(wss);
  });
  assert.deepEqual(plainProxy.connects, [`127.0.0.1:${server.addr.port}`]);
  assert.deepEqual(secureProxy.connects, [`127.0.0.1:${secure.addr.port}`]);
});

Deno.test("connect() uses lower-case http_proxy and no_proxy, also when the upper-case ones are empty", async () => {
  const { server } = echoServer();
  await using _ = server;
  await using proxy = new TestProxy();
  const url = `ws://127.0.0.1:${server.addr.port}/`;
  for (const upper of [{}, { HTTP_PROXY: "" }]) {
    await withProxyEnv({
      ...upper,
      http_proxy: `http://127.0.0.1:${proxy.port}`,
    }, async () => {
      const ws = await deadline(connect(url, { pingInterval: 0 }), "connect");
      await closeCleanly(ws);
    });
  }
  assert.deepEqual(proxy.connects, [
    `127.0.0.1:${server.addr.port}`,
    `127.0.0.1:${server.addr.port}`,
  ]);
  // An empty NO_PROXY does not hide no_proxy either.
  await withProxyEnv({
    HTTP_PROXY: `http://127.0.0.1:${proxy.port}`,
    NO_PROXY: "",
    no_proxy: "127.0.0.1",
  }, async () => {
    const ws = await deadline(connect(url, { pingInterval: 0 }), "connect");
    await closeCleanly(ws);
  });
  assert.equal(proxy.connects.length, 2);
});

// Without --allow-env, Deno.env.get() asks on a terminal: connect() used to
// stop at that prompt until someone answered. README: "without it no proxy
// is used". Run under `script` for a terminal; skipped where it is missing.
const SCRIPT = (() => {
  try {
    return Deno.statSync("/usr/bin/script").isFile;
  } catch {
    return false;
  }
})();

Deno.test({
  name: `connect() asks for no env permission on a terminal${
    SCRIPT ? "" : " (skipped: no /usr/bin/script for a terminal)"
  }`,
  ignore: !SCRIPT,
  fn: async () => {
    const { server } = echoServer();
    await using _ = server;
    const client = new URL("../client.ts", import.meta.url).href;
    const program = `import { connect } from ${JSON.stringify(client)};
const ws = await connect("ws://127.0.0.1:${server.addr.port}/", { pingInterval: 0 });
await ws.close();
console.log("connected without a prompt");`;
    const file = await Deno.makeTempFile({ suffix: ".ts" });
    try {
      await Deno.writeTextFile(file, program);
      const command =
        `${Deno.execPath()} run --allow-net=127.0.0.1 --allow-read ${file}`;
      const child = new Deno.Command("/usr/bin/script", {
        args: ["-q", "-e", "-c", command, "/dev/null"],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const timer = setTimeout(() => child.kill(), 15_000);
      const { stdout } = await child.output();
      clearTimeout(timer);
      const text = new TextDecoder().decode(stdout);
      assert.doesNotMatch(text, /Allow\?/, "a permission prompt");
      assert.match(text, /connected without a prompt/);
    } finally {
      await Deno.remove(file);
    }
  },
});

Deno.test("connect() bypasses the proxy for hosts in NO_PROXY, and with proxy: false", async () => {
  const { server } = echoServer();
  await using _ = server;
  await using proxy = new TestProxy();
  await withProxyEnv({
    HTTP_PROXY: `http://127.0.0.1:${proxy.port}`,
    NO_PROXY: "127.0.0.1",
  }, async () => {
    const ws = await deadline(
      connect(`ws://127.0.0.1:${server.addr.port}/`, { pingInterval: 0 }),
      "connect",
    );
    await ws.send("direct");
    assert.equal(await receive(ws), "direct");
    await closeCleanly(ws);
  });
  await withProxyEnv({
    http_proxy: `http://127.0.0.1:${proxy.port}`,
    no_proxy: "example.com, 127.0.0.1",
  }, async () => {
    const ws = await deadline(
      connect(`ws://127.0.0.1:${server.addr.port}/`, { pingInterval: 0 }),
      "connect",
    );
    await closeCleanly(ws);
  });
  await withProxyEnv({
    HTTP_PROXY: `http://127.0.0.1:${proxy.port}`,
  }, async () => {
    const ws = await deadline(
      connect(`ws://127.0.0.1:${server.addr.port}/`, {
        pingInterval: 0,
        proxy: false,
      }),
      "connect",
    );
    await closeCleanly(ws);
  });
  assert.equal(proxy.accepted, 0);
});

// NO_PROXY entries matched IP addresses as domain suffixes: "0.1" sent
// 127.0.0.1 around the proxy. An address matches only itself.
Deno.test("connect() matches an IP address in NO_PROXY whole, never as a suffix", async () => {
  const { server } = echoServer();
  await using _ = server;
  await using proxy = new TestProxy();
  for (const noProxy of ["0.1", ".0.0.1", "27.0.0.1"]) {
    await withProxyEnv({
      HTTP_PROXY: `http://127.0.0.1:${proxy.port}`,
      NO_PROXY: noProxy,
    }, async () => {
      const ws = await deadline(
        connect(`ws://127.0.0.1:${server.addr.port}/`, { pingInterval: 0 }),
        noProxy,
      );
      await closeCleanly(ws);
    });
  }
  assert.equal(proxy.accepted, 3);
});

Deno.test({
  name:
    `connect() bypasses the proxy for an IPv6 literal in NO_PROXY, with and without a port${
      IPV6 ? "" : " (skipped: IPv6 is not available on this machine)"
    }`,
  ignore: !IPV6,
  fn: async () => {
    const { server } = echoServer({ hostname: "::1" });
    await using _ = server;
    // The proxy reaches 127.0.0.1 only: it takes CONNECTs to another server.
    const { server: v4 } = echoServer();
    await using _v4 = v4;
    await using proxy = new TestProxy({ route: () => v4.addr.port });
    const port = server.addr.port;
    for (const noProxy of ["::1", "[::1]", `[::1]:${port}`]) {
      await withProxyEnv({
        HTTP_PROXY: `http://127.0.0.1:${proxy.port}`,
        NO_PROXY: noProxy,
      }, async () => {
        const ws = await deadline(
          connect(`ws://[::1]:${port}/`, { pingInterval: 0 }),
          noProxy,
        );
        await closeCleanly(ws);
      });
    }
    assert.equal(proxy.accepted, 0);
    // Another port of the same host goes through the proxy.
    await withProxyEnv({
      HTTP_PROXY: `http://127.0.0.1:${proxy.port}`,
      NO_PROXY: `[::1]:${port + 1 === 65536 ? 1 : port + 1}`,
    }, async () => {
      const ws = await deadline(
        connect(`ws://[::1]:${port}/`, { pingInterval: 0 }),
        "through the proxy",
      );
      await closeCleanly(ws);
    });
    assert.deepEqual(proxy.connects, [`[::1]:${port}`]);
  },
});

// ---------------------------------------------------------------------------
// SOCKS5 proxy (RFC 1928, RFC 1929)
// ---------------------------------------------------------------------------

/** What the SOCKS5 test proxy saw of one CONNECT. */
interface SocksRequest {
  /** The methods the client offered (RFC 1928 §3). */
  methods: number[];
  /** The user name and password it sent (RFC 1929), if any. */
  credentials?: string;
  /** The address type (1 IPv4, 3 name, 4 IPv6) and the address. */
  type: number;
  host: string;
  port: number;
}

/**
 * A small SOCKS5 proxy on Deno.listen: it requires `credentials`
 * (`user:pass`) when given, and connects every request to 127.0.0.1 at the
 * port asked for, unless `refuse` answers it with a reply code.
 */
class TestSocksProxy extends TestTunnelServer {
  readonly requests: SocksRequest[] = [];

  constructor(
    readonly options: { credentials?: string; refuse?: number } = {},
  ) {
    super();
  }

  async #read(conn: Deno.Conn, length: number): Promise<Uint8Array> {
    const bytes = new Uint8Array(length);
    for (let filled = 0; filled < length;) {
      const count = await conn.read(bytes.subarray(filled));
      if (count === null) throw new Error("client went away");
      filled += count;
    }
    return bytes;
  }

  protected async handle(client: Deno.Conn): Promise<void> {
    const [version, count] = await this.#read(client, 2);
    assert.equal(version, 5);
    const methods = [...await this.#read(client, count!)];
    let credentials: string | undefined;
    if (this.options.credentials === undefined) {
      await writeAll(client, new Uint8Array([5, 0]));
    } else if (!methods.includes(2)) {
      await writeAll(client, new Uint8Array([5, 0xff]));
      return;
    } else {
      await writeAll(client, new Uint8Array([5, 2]));
      const [, userLength] = await this.#read(client, 2);
      const user = decoder.decode(await this.#read(client, userLength!));
      const [passLength] = await this.#read(client, 1);
      const pass = decoder.decode(await this.#read(client, passLength!));
      credentials = `${user}:${pass}`;
      const ok = credentials === this.options.credentials;
      await writeAll(client, new Uint8Array([1, ok ? 0 : 1]));
      if (!ok) return;
    }
    const [, command, , type] = await this.#read(client, 4);
    assert.equal(command, 1);
    let host: string;
    if (type === 1) host = [...await this.#read(client, 4)].join(".");
    else if (type === 4) {
      const bytes = await this.#read(client, 16);
      const groups = [];
      for (let i = 0; i < 16; i += 2) {
        groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
      }
      host = groups.join(":");
    } else {
      const [length] = await this.#read(client, 1);
      host = decoder.decode(await this.#read(client, length!));
    }
    const portBytes = await this.#read(client, 2);
    const port = (portBytes[0]! << 8) | portBytes[1]!;
    this.requests.push({
      methods,
      ...(credentials === undefined ? {} : { credentials }),
      type: type!,
      host,
      port,
    });
    // The reply: a code, then the bound address (0.0.0.0:0).
    const reply = (code: number) =>
      writeAll(client, new Uint8Array([5, code, 0, 1, 0, 0, 0, 0, 0, 0]));
    if (this.options.refuse !== undefined) {
      await reply(this.options.refuse);
      return;
    }
    await this.bridge(client, port, () => reply(0));
  }
}

Deno.test("connect() tunnels ws: and wss: through a SOCKS5 proxy, host names unresolved", async () => {
  const { cert, key } = await makeCertificate();
  const { server } = echoServer();
  await using _ = server;
  const { server: secure } = echoServer({ cert, key });
  await using _secure = secure;
  await using proxy = new TestSocksProxy();
  const ws = await deadline(
    connect(`ws://127.0.0.1:${server.addr.port}/`, {
      pingInterval: 0,
      proxy: `socks5://127.0.0.1:${proxy.port}`,
    }),
    "connect",
  );
  await ws.send("through SOCKS5");
  assert.equal(await receive(ws), "through SOCKS5");
  await closeCleanly(ws);
  const wss = await deadline(
    connect(`wss://localhost:${secure.addr.port}/`, {
      pingInterval: 0,
      caCerts: [cert],
      proxy: `socks5h://127.0.0.1:${proxy.port}`,
    }),
    "connect",
  );
  const big = new Uint8Array(200_000).fill(9);
  await wss.send(big);
  assert.deepEqual(await receive(wss), big);
  await closeCleanly(wss);
  assert.deepEqual(proxy.requests, [
    { methods: [0], type: 1, host: "127.0.0.1", port: server.addr.port },
    // The name went to the proxy as a name (RFC 1928 §5, type 3).
    { methods: [0], type: 3, host: "localhost", port: secure.addr.port },
  ]);
});

Deno.test("connect() sends SOCKS5 credentials (RFC 1929) and reports a refusal without the password", async () => {
  const { server } = echoServer();
  await using _ = server;
  await using proxy = new TestSocksProxy({ credentials: "user:p@ss w0rd" });
  const ws = await deadline(
    connect(`ws://127.0.0.1:${server.addr.port}/`, {
      pingInterval: 0,
      proxy: `socks5://user:p%40ss%20w0rd@127.0.0.1:${proxy.port}`,
    }),
    "connect",
  );
  await ws.send("authorized");
  assert.equal(await receive(ws), "authorized");
  await closeCleanly(ws);
  assert.deepEqual(proxy.requests[0]!.methods, [0, 2]);
  assert.equal(proxy.requests[0]!.credentials, "user:p@ss w0rd");

  const password = "wr0ng-s3cret";
  const wrong = await rejection(
    connect(`ws://127.0.0.1:${server.addr.port}/`, {
      pingInterval: 0,
      proxy: `socks5://user:${password}@127.0.0.1:${proxy.port}`,
    }),
    "connect",
  );
  assert.ok(wrong instanceof HandshakeError, String(wrong));
  assert.match(wrong.message, /SOCKS5 proxy .*: proxy authentication failed$/);
  assert.ok(!String(wrong.stack).includes(password));

  const none = await rejection(
    connect(`ws://127.0.0.1:${server.addr.port}/`, {
      pingInterval: 0,
      proxy: `socks5://127.0.0.1:${proxy.port}`,
    }),
    "connect",
  );
  assert.ok(none instanceof HandshakeError, String(none));
  assert.match(none.message, /the proxy requires authentication$/);
  // Over-long credentials are a TypeError before any I/O (RFC 1929 §2).
  await assert.rejects(
    connect(`ws://127.0.0.1:${server.addr.port}/`, {
      proxy: `socks5://${"u".repeat(256)}:p@127.0.0.1:${proxy.port}`,
    }),
    TypeError,
  );
  assert.equal(server.connections.size, 0);
});

Deno.test("connect() reports a SOCKS5 reply code, and a proxy that is not SOCKS5", async () => {
  await using refusing = new TestSocksProxy({ refuse: 5 });
  const refused = await rejection(
    connect("ws://[::1]:9/", {
      pingInterval: 0,
      proxy: `socks5://127.0.0.1:${refusing.port}`,
    }),
    "connect",
  );
  assert.ok(refused instanceof HandshakeError, String(refused));
  assert.equal(
    refused.message,
    "Cannot connect through SOCKS5 proxy to [::1]:9: connection refused",
  );
  // The IPv6 address went as 16 bytes (RFC 1928 §5, type 4).
  assert.deepEqual(refusing.requests, [
    { methods: [0], type: 4, host: "0:0:0:0:0:0:0:1", port: 9 },
  ]);
  // An HTTP proxy given as SOCKS5: its answer is not a SOCKS5 reply.
  await using http = new RawServer(async (peer) => {
    await peer.write(
      "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    await peer.readToEnd();
  });
  const confused = await rejection(
    connect("ws://127.0.0.1:9/", {
      pingInterval: 0,
      proxy: `socks5://127.0.0.1:${http.port}`,
    }),
    "connect",
  );
  assert.ok(confused instanceof HandshakeError, String(confused));
  assert.equal(
    confused.message,
    "Cannot connect through SOCKS5 proxy to 127.0.0.1:9: the proxy does not speak SOCKS5",
  );
  // A SOCKS5 proxy that never answers: handshakeTimeout ends the wait.
  await using silent = new RawServer((peer) => peer.readToEnd());
  const waited = await rejection(
    connect("ws://127.0.0.1:9/", {
      pingInterval: 0,
      handshakeTimeout: 300,
      proxy: `socks5://127.0.0.1:${silent.port}`,
    }),
    "connect",
  );
  assert.ok(waited instanceof Error, String(waited));
  assert.equal(waited.name, "TimeoutError");
});

// ---------------------------------------------------------------------------
// Hostile and broken servers
// ---------------------------------------------------------------------------

Deno.test("connect() fails with a HandshakeError naming sec-websocket-accept when the accept key is wrong", async () => {
  await using raw = new RawServer(async (peer) => {
    await peer.readHead();
    await peer.write(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
    );
    await peer.readToEnd();
  });
  const error = await rejection(
    connect(`ws://127.0.0.1:${raw.port}/`, { pingInterval: 0 }),
    "connect",
  );
  assert.ok(error instanceof HandshakeError, String(error));
  assert.equal(error.header, "sec-websocket-accept");
  assert.equal(error.status, 101);
});

Deno.test("connect() fails with a HandshakeError carrying status 200 and the body", async () => {
  const body = "<html>not a websocket server</html>";
  await using raw = new RawServer(async (peer) => {
    await peer.readHead();
    await peer.write(
      `HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    );
    await peer.readToEnd();
  });
  const error = await rejection(
    connect(`ws://127.0.0.1:${raw.port}/`, { pingInterval: 0 }),
    "connect",
  );
  assert.ok(error instanceof HandshakeError, String(error));
  assert.equal(error.status, 200);
  assert.equal(decoder.decode(error.body), body);
  assert.equal(error.headers?.get("content-type"), "text/html");
});

Deno.test("connect() fails with a HandshakeError naming sec-websocket-protocol for an unrequested subprotocol", async () => {
  await using raw = new RawServer(async (peer) => {
    const request = await peer.readHead();
    await peer.accept(request, ["Sec-WebSocket-Protocol: evil"]);
    await peer.readToEnd();
  });
  for (const protocols of [[], ["chat"]]) {
    const error = await rejection(
      connect(`ws://127.0.0.1:${raw.port}/`, { pingInterval: 0, protocols }),
      "connect",
    );
    assert.ok(error instanceof HandshakeError, String(error));
    assert.equal(error.header, "sec-websocket-protocol");
  }
});

// RFC 6455 §9.1: Sec-WebSocket-Extensions = 1#extension, so a value must
// list at least one; empty list elements are ignored, and "", "," or ", ,"
// list none (RFC 9110 §5.6.1.2 gives them as invalid 1# lists). Its lines
// make one list (§4.2.2 point 5.6; erratum 3433 corrects §11.3.2, which
// forbade a second line in a response). An empty value used to be taken as
// "no extension", whatever the client offered.
Deno.test("connect() fails with a HandshakeError on a Sec-WebSocket-Extensions that lists no extension, offered or not, and reads repeated lines as one list", async (t) => {
  /** connect() to a raw server whose 101 carries `lines`. */
  async function outcome(
    lines: string[],
    deflate: boolean,
  ): Promise<WebSocketClient | unknown> {
    const raw = new RawServer(async (peer) => {
      const request = await peer.readHead();
      await peer.accept(request, lines);
      // The client's close frame, answered, if it opened; else its end.
      const frame = await peer.readFrame();
      if (frame !== null) {
        await peer.write(encodeFrame(frameOf(0x8, frame.payload)));
      }
    });
    await using _ = raw;
    const result = await deadline(
      connect(`ws://127.0.0.1:${raw.port}/`, { pingInterval: 0, deflate })
        .then(async (ws) => {
          const extensions = ws.extensions;
          await closeCleanly(ws);
          return extensions;
        }, (error: unknown) => ({ error })),
      "connect",
    );
    return result;
  }
  const none = [
    ["Sec-WebSocket-Extensions: "],
    ["Sec-WebSocket-Extensions:"],
    ["Sec-WebSocket-Extensions: ,"],
    ["Sec-WebSocket-Extensions: \t, ,  "],
    ["Sec-WebSocket-Extensions: ", "Sec-WebSocket-Extensions: ,"],
  ];
  for (const deflate of [false, true]) {
    for (const lines of none) {
      await t.step(
        `${JSON.stringify(lines)} when ${deflate ? "" : "nothing was "}offered`,
        async () => {
          const result = await outcome(lines, deflate);
          assert.ok(
            typeof result === "object" && result !== null && "error" in result,
            `expected a rejection, got extensions ${JSON.stringify(result)}`,
          );
          const error = result.error;
          assert.ok(error instanceof HandshakeError, String(error));
          assert.equal(error.status, 101);
          assert.equal(error.header, "sec-websocket-extensions");
          assert.equal(
            error.message,
            "Cannot open WebSocket: Sec-WebSocket-Extensions header lists no extension",
          );
        },
      );
    }
  }
  await t.step("repeated lines are one list", async () => {
    // The empty line adds an empty element, which is ignored.
    assert.equal(
      await outcome([
        "Sec-WebSocket-Extensions: permessage-deflate",
        "Sec-WebSocket-Extensions: ",
      ], true),
      "permessage-deflate",
    );
    assert.equal(
      await outcome(["Sec-WebSocket-Extensions: , permessage-deflate,"], true),
      "permessage-deflate",
    );
    // RFC 7692 §5: permessage-deflate accepted twice, on two lines as on one.
    const twice = await outcome([
      "Sec-WebSocket-Extensions: permessage-deflate",
      "Sec-WebSocket-Extensions: permessage-deflate",
    ], true);
    assert.ok(
      typeof twice === "object" && twice !== null && "error" in twice &&
        twice.error instanceof HandshakeError,
      String(twice),
    );
    assert.equal(twice.error.header, "sec-websocket-extensions");
    assert.match(twice.error.message, /more than once/);
  });
});

/**
 * A raw server accepts the client, sends `bytes`, and records the client's
 * close frame; the client's iteration must fail without a message. Returns
 * that failure, the code of the close frame the client sent, and `closed`.
 */
async function failureOnServerBytes(
  bytes: Uint8Array,
  options: { maxMessageSize?: number } = {},
): Promise<{ error: unknown; sentCode: number; info: CloseInfo }> {
  const closeFrame = Promise.withResolvers<Frame | null>();
  await using raw = new RawServer(async (peer) => {
    const request = await peer.readHead();
    await peer.accept(request);
    await peer.write(bytes);
    closeFrame.resolve(await peer.readFrame());
    await peer.readToEnd();
  });
  const ws = await deadline(
    connect(`ws://127.0.0.1:${raw.port}/`, {
      pingInterval: 0,
      deflate: false,
      ...options,
    }),
    "connect",
  );
  const error = await rejection(
    (async () => {
      for await (const _ of ws) assert.fail("no message may arrive");
    })(),
    "iteration",
  );
  const sentCode = closeCodeOf(
    await deadline(closeFrame.promise, "close frame"),
  );
  const info = await deadline(ws.closed, "closed");
  return { error, sentCode, info };
}

Deno.test("connect() fails the connection with 1002 on a masked server frame (RFC 6455 §5.1)", async () => {
  const { error, sentCode, info } = await failureOnServerBytes(
    encodeFrame(
      frameOf(0x1, encoder.encode("masked"), new Uint8Array([1, 2, 3, 4])),
    ),
  );
  assert.ok(error instanceof ProtocolError, String(error));
  assert.equal(error.closeCode, 1002);
  assert.equal(sentCode, 1002);
  assert.equal(info.wasClean, false);
});

Deno.test("connect() refuses a frame announcing 2^63 - 1 bytes from its header", async () => {
  // FIN + binary, 127 = 64-bit length 0x7FFF_FFFF_FFFF_FFFF, then a little
  // payload: the client must decide from the header alone.
  const { error, sentCode, info } = await failureOnServerBytes(
    concat(maxLengthHeader(false), new Uint8Array([1, 2, 3])),
  );
  assert.ok(error instanceof ProtocolError, String(error));
  assert.ok([1002, 1009].includes(error.closeCode), String(error.closeCode));
  assert.equal(sentCode, error.closeCode);
  assert.equal(info.wasClean, false);
});

Deno.test("connect() refuses a frame over maxMessageSize with 1009", async () => {
  const { error, sentCode } = await failureOnServerBytes(
    encodeFrame(frameOf(0x2, new Uint8Array(1001))),
    { maxMessageSize: 1000 },
  );
  assert.ok(error instanceof ProtocolError, String(error));
  assert.equal(error.closeCode, 1009);
  assert.equal(sentCode, 1009);
});

Deno.test("connect() rejects with a TimeoutError after handshakeTimeout when the server never answers", async () => {
  const ended = Promise.withResolvers<void>();
  await using raw = new RawServer(async (peer) => {
    await peer.readHead();
    // Never answer; the client must give up and close TCP.
    await peer.readToEnd();
    ended.resolve();
  });
  const error = await rejection(
    connect(`ws://127.0.0.1:${raw.port}/`, {
      pingInterval: 0,
      handshakeTimeout: 200,
    }),
    "connect",
  );
  assert.ok(error instanceof DOMException, String(error));
  assert.equal(error.name, "TimeoutError");
  assert.match(error.message, /200 ms/);
  await deadline(ended.promise, "the raw server to see EOF");
});

// A listener on 127.0.0.1 whose accept queue is full (backlog 0, filled,
// never accepting): the kernel drops further SYNs, so a TCP connect to it
// never completes. Python makes it, since Deno.listen has no backlog option.
const BLACKHOLE = `
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(0)
port = s.getsockname()[1]
fillers = []
for i in range(4):
    c = socket.socket()
    c.setblocking(False)
    try:
        c.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    fillers.append(c)
time.sleep(0.3)
print(port, flush=True)
time.sleep(60)
`;

const python3 = (() => {
  try {
    return Deno.statSync(PYTHON).isFile;
  } catch {
    return false;
  }
})();

Deno.test({
  name:
    "connect() handshakeTimeout and signal cover a TCP connect that never completes, direct and to a proxy",
  ignore: !python3,
  async fn() {
    await using listener = new PythonPeer(BLACKHOLE);
    const port = Number(
      await deadline(listener.readLine(), "the listener's port"),
    );
    assert.ok(port > 0, `port ${port}`);
    for (
      const proxy of [
        false,
        `http://127.0.0.1:${port}`,
        `socks5://127.0.0.1:${port}`,
      ] as const
    ) {
      const start = performance.now();
      const error = await rejection(
        connect(`ws://127.0.0.1:${proxy === false ? port : 9}/`, {
          proxy,
          pingInterval: 0,
          handshakeTimeout: 300,
        }),
        "connect",
      );
      assert.ok(error instanceof DOMException, `${proxy}: ${error}`);
      assert.equal(error.name, "TimeoutError", `${proxy}`);
      assert.ok(performance.now() - start < 5000, `${proxy}: not on time`);
    }
    // The caller's signal ends the connect too.
    const controller = new AbortController();
    const pending = connect(`ws://127.0.0.1:${port}/`, {
      proxy: false,
      signal: controller.signal,
    });
    setTimeout(() => controller.abort(new Error("given up")), 100);
    const aborted = await rejection(pending, "connect");
    assert.ok(aborted instanceof Error);
    assert.equal(aborted.message, "given up");
  },
});

Deno.test("connect() rejects with a TimeoutError when the server answers half a head", async () => {
  await using raw = new RawServer(async (peer) => {
    await peer.readHead();
    await peer.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: webs");
    await peer.readToEnd();
  });
  const error = await rejection(
    connect(`ws://127.0.0.1:${raw.port}/`, {
      pingInterval: 0,
      handshakeTimeout: 200,
    }),
    "connect",
  );
  assert.ok(error instanceof DOMException, String(error));
  assert.equal(error.name, "TimeoutError");
});

Deno.test("WebSocketClient.close() closes TCP after closeTimeout when the server never answers the close", async () => {
  const seen = Promise.withResolvers<number>();
  const ended = Promise.withResolvers<void>();
  await using raw = new RawServer(async (peer) => {
    const request = await peer.readHead();
    await peer.accept(request);
    seen.resolve(closeCodeOf(await peer.readFrame()));
    // No close frame back: the client must end TCP after closeTimeout.
    await peer.readToEnd();
    ended.resolve();
  });
  const ws = await deadline(
    connect(`ws://127.0.0.1:${raw.port}/`, {
      pingInterval: 0,
      deflate: false,
      closeTimeout: 200,
    }),
    "connect",
  );
  const info = await deadline(ws.close(1000, "done"), "close");
  assert.equal(await seen.promise, 1000);
  assert.equal(info.wasClean, false);
  assert.equal(info.code, 1006);
  await deadline(ended.promise, "the raw server to see EOF");
});

Deno.test("connect() rejects with the signal's reason when aborted during the handshake", async () => {
  const ended = Promise.withResolvers<void>();
  const requested = Promise.withResolvers<void>();
  await using raw = new RawServer(async (peer) => {
    await peer.readHead();
    requested.resolve();
    await peer.readToEnd();
    ended.resolve();
  });
  const controller = new AbortController();
  const pending = connect(`ws://127.0.0.1:${raw.port}/`, {
    pingInterval: 0,
    signal: controller.signal,
  });
  await deadline(requested.promise, "the upgrade request");
  const reason = new Error("caller gave up");
  controller.abort(reason);
  const error = await rejection(pending, "connect");
  assert.equal(error, reason);
  await deadline(ended.promise, "the raw server to see EOF");

  // An already aborted signal fails at once.
  const again = await rejection(
    connect(`ws://127.0.0.1:${raw.port}/`, {
      pingInterval: 0,
      signal: AbortSignal.abort(reason),
    }),
    "connect",
  );
  assert.equal(again, reason);
});

Deno.test("connect() closes an open connection with 1001 when the signal aborts", async () => {
  const closes = Promise.withResolvers<{ code: number; reason: string }>();
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (ws) => {
    for await (const message of ws) await ws.send(message);
    closes.resolve(await ws.closed);
  });
  const controller = new AbortController();
  const ws = await deadline(
    connect(`ws://127.0.0.1:${server.addr.port}/`, {
      pingInterval: 0,
      signal: controller.signal,
    }),
    "connect",
  );
  await ws.send("before abort");
  assert.equal(await receive(ws), "before abort");
  controller.abort();
  const info = await deadline(ws.closed, "closed");
  assert.equal(info.code, 1001);
  assert.equal(info.wasClean, true);
  assert.equal((await deadline(closes.promise, "server close")).code, 1001);
});

Deno.test("connect() rejects with a TimeoutError when a wss server never speaks TLS", async () => {
  const release = Promise.withResolvers<void>();
  await using raw = new RawServer(async () => {
    // Accept TCP, never answer the ClientHello. The server ends the TCP
    // connection itself: Deno's TlsConn.close() does not close the socket
    // while its TLS handshake is pending (same with bare Deno.connectTls),
    // so the raw server would not see EOF from the client.
    await release.promise;
  });
  try {
    const error = await rejection(
      connect(`wss://127.0.0.1:${raw.port}/`, {
        pingInterval: 0,
        handshakeTimeout: 200,
      }),
      "connect",
    );
    assert.ok(error instanceof DOMException, String(error));
    assert.equal(error.name, "TimeoutError");
  } finally {
    release.resolve();
  }
});

Deno.test("connect() rejects with a TimeoutError when the proxy never answers CONNECT", async () => {
  const ended = Promise.withResolvers<void>();
  await using proxy = new RawServer(async (peer) => {
    await peer.readHead();
    await peer.readToEnd();
    ended.resolve();
  });
  const error = await rejection(
    connect("ws://127.0.0.1:9/", {
      pingInterval: 0,
      handshakeTimeout: 200,
      proxy: `http://127.0.0.1:${proxy.port}`,
    }),
    "connect",
  );
  assert.ok(error instanceof DOMException, String(error));
  assert.equal(error.name, "TimeoutError");
  await deadline(ended.promise, "the proxy to see EOF");
});

Deno.test("connect() fails with a HandshakeError when the proxy refuses the tunnel", async () => {
  await using proxy = new RawServer(async (peer) => {
    await peer.readHead();
    await peer.write(
      "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 8\r\n\r\nno route",
    );
    await peer.readToEnd();
  });
  const error = await rejection(
    connect("ws://127.0.0.1:9/", {
      pingInterval: 0,
      proxy: `http://127.0.0.1:${proxy.port}`,
    }),
    "connect",
  );
  assert.ok(error instanceof HandshakeError, String(error));
  assert.equal(error.status, 502);
  assert.match(error.message, /proxy answered 502 Bad Gateway/);
  assert.equal(decoder.decode(error.body), "no route");
});

Deno.test("connect() rejects with ConnectionRefused when nothing listens", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const error = await rejection(
    connect(`ws://127.0.0.1:${port}/`, { pingInterval: 0 }),
    "connect",
  );
  assert.ok(error instanceof Deno.errors.ConnectionRefused, String(error));
});

Deno.test("connect() delivers frames that arrive in the same packet as the 101", async () => {
  await using raw = new RawServer(async (peer) => {
    const request = await peer.readHead();
    const accept = await createAcceptKey(request.get("sec-websocket-key")!);
    await peer.write(concat(
      encoder.encode(
        `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
      ),
      encodeFrame(frameOf(0x1, encoder.encode("early"))),
      encodeFrame(frameOf(0x2, new Uint8Array([1, 2, 3]))),
      encodeFrame(frameOf(0x8, new Uint8Array([0x03, 0xe8]))),
    ));
    closeCodeOf(await peer.readFrame());
  });
  const ws = await deadline(
    connect(`ws://127.0.0.1:${raw.port}/`, { pingInterval: 0, deflate: false }),
    "connect",
  );
  const received: WebSocketMessage[] = [];
  await deadline(
    (async () => {
      for await (const message of ws) received.push(message);
    })(),
    "iteration",
  );
  assert.deepEqual(received, ["early", new Uint8Array([1, 2, 3])]);
  assert.deepEqual(await deadline(ws.closed, "closed"), {
    code: 1000,
    reason: "",
    wasClean: true,
  });
});

Deno.test("connect() sends the URL's user info as Basic credentials", async () => {
  const { server, requests } = echoServer();
  await using _ = server;
  const ws = await deadline(
    connect(`ws://us%20er:p%40ss@127.0.0.1:${server.addr.port}/`, {
      pingInterval: 0,
    }),
    "connect",
  );
  await closeCleanly(ws);
  assert.equal(
    requests[0]?.headers.get("authorization"),
    `Basic ${encoder.encode("us er:p@ss").toBase64()}`,
  );
});

Deno.test("connect() answers a server ping with a masked pong carrying its payload (RFC 6455 §5.5.3)", async () => {
  const pong = Promise.withResolvers<Frame | null>();
  await using raw = new RawServer(async (peer) => {
    const request = await peer.readHead();
    await peer.accept(request);
    await peer.write(encodeFrame(frameOf(0xa, encoder.encode("unsolicited"))));
    await peer.write(
      encodeFrame(frameOf(0x9, encoder.encode("are you there"))),
    );
    pong.resolve(await peer.readFrame());
    await peer.write(encodeFrame(frameOf(0x1, encoder.encode("still here"))));
    closeCodeOf(await peer.readFrame());
    await peer.write(encodeFrame(frameOf(0x8, new Uint8Array([0x03, 0xe8]))));
  });
  const ws = await deadline(
    connect(`ws://127.0.0.1:${raw.port}/`, { pingInterval: 0, deflate: false }),
    "connect",
  );
  const frame = await deadline(pong.promise, "pong");
  assert.ok(frame !== null);
  assert.equal(frame.opcode, 0xa);
  assert.ok(frame.mask !== undefined, "client frames are masked");
  assert.equal(decoder.decode(frame.payload), "are you there");
  assert.equal(await receive(ws), "still here");
  await closeCleanly(ws);
});

Deno.test("connect() fails the connection with 1007 on invalid UTF-8 from the server", async () => {
  const { error, sentCode } = await failureOnServerBytes(
    encodeFrame(frameOf(0x1, new Uint8Array([0x68, 0xc3, 0x28]))),
  );
  assert.ok(error instanceof ProtocolError, String(error));
  assert.equal(error.closeCode, 1007);
  assert.equal(sentCode, 1007);
});

Deno.test("connect() with keepalive pings the server and fails the connection when no pong comes", async () => {
  const frames: Frame[] = [];
  await using raw = new RawServer(async (peer) => {
    const request = await peer.readHead();
    await peer.accept(request);
    // Never answer pings; record what the client sends until it hangs up.
    for (let frame; (frame = await peer.readFrame()) !== null;) {
      frames.push(frame);
    }
  });
  const ws = await deadline(
    connect(`ws://127.0.0.1:${raw.port}/`, {
      pingInterval: 50,
      pingTimeout: 100,
      closeTimeout: 100,
      deflate: false,
    }),
    "connect",
  );
  const error = await rejection(
    (async () => {
      for await (const _ of ws) assert.fail("no message may arrive");
    })(),
    "iteration",
  );
  assert.ok(error instanceof DOMException, String(error));
  assert.equal(error.name, "TimeoutError");
  const info = await deadline(ws.closed, "closed");
  assert.equal(info.wasClean, false);
  await raw[Symbol.asyncDispose]();
  assert.equal(frames[0]?.opcode, 0x9, "a ping first");
  const close = frames.find((frame) => frame.opcode === 0x8);
  assert.ok(close !== undefined, "then a close frame");
  assert.equal(closeCodeOf(close), 1011);
});

// ---------------------------------------------------------------------------
// HTTP responses a client must understand (RFC 9110, RFC 9112)
// ---------------------------------------------------------------------------

Deno.test("connect() accepts a 101 with obs-fold, each fold read as one space (RFC 9112 §5.2)", async () => {
  await using raw = new RawServer(async (peer) => {
    const request = await peer.readHead();
    const accept = await createAcceptKey(request.get("sec-websocket-key")!);
    await peer.write(
      "HTTP/1.1 101 Switching Protocols\r\n" +
        "Upgrade: websocket\r\n" +
        "Connection: keep-alive,\r\n Upgrade\r\n" +
        `Sec-WebSocket-Accept:\r\n\t${accept}\r\n` +
        "Set-Cookie: id=1;\r\n  Path=/\r\n\r\n",
    );
    await peer.write(encodeFrame(frameOf(0x1, encoder.encode("folded"))));
    await peer.write(encodeFrame(frameOf(0x8, new Uint8Array([0x03, 0xe8]))));
    closeCodeOf(await peer.readFrame());
  });
  const ws = await deadline(
    connect(`ws://127.0.0.1:${raw.port}/`, { pingInterval: 0, deflate: false }),
    "connect",
  );
  assert.equal(ws.response.headers.get("set-cookie"), "id=1; Path=/");
  assert.deepEqual(ws.response.rawHeaders.slice(1, 2), [
    ["Connection", "keep-alive, Upgrade"],
  ]);
  assert.equal(await receive(ws), "folded");
  assert.equal((await deadline(ws.closed, "closed")).code, 1000);
});

Deno.test("connect() accepts a proxy's CONNECT answer with obs-fold (RFC 9112 §5.2)", async () => {
  const { server } = echoServer();
  await using _ = server;
  await using proxy = new TestProxy({
    answer: "HTTP/1.1 200 Connection Established\r\n" +
      "Proxy-Agent: test\r\n proxy\r\n\r\n",
  });
  const ws = await deadline(
    connect(`ws://127.0.0.1:${server.addr.port}/`, {
      pingInterval: 0,
      proxy: `http://127.0.0.1:${proxy.port}`,
    }),
    "connect",
  );
  await ws.send("through a folded answer");
  assert.equal(await receive(ws), "through a folded answer");
  await closeCleanly(ws);
});

Deno.test("connect() skips interim 1xx answers before the 101 (RFC 9110 §15.2)", async () => {
  await using raw = new RawServer(async (peer) => {
    const request = await peer.readHead();
    // One write each, then one with the 101 and a frame.
    await peer.write("HTTP/1.1 100 Continue\r\n\r\n");
    await peer.write("HTTP/1.1 102 Processing\r\n\r\n");
    const accept = await createAcceptKey(request.get("sec-websocket-key")!);
    await peer.write(concat(
      encoder.encode(
        "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" +
          "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" +
          `Connection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
      ),
      encodeFrame(frameOf(0x1, encoder.encode("after hints"))),
      encodeFrame(frameOf(0x8, new Uint8Array([0x03, 0xe8]))),
    ));
    closeCodeOf(await peer.readFrame());
  });
  const ws = await deadline(
    connect(`ws://127.0.0.1:${raw.port}/`, { pingInterval: 0, deflate: false }),
    "connect",
  );
  assert.equal(ws.response.status, 101);
  assert.equal(ws.response.headers.get("link"), null);
  assert.equal(await receive(ws), "after hints");
  assert.equal((await deadline(ws.closed, "closed")).code, 1000);
});

Deno.test("connect() skips interim 1xx answers before a refusal, which keeps its status and body", async () => {
  const error = await refusalOf([
    "HTTP/1.1 100 Continue\r\n\r\n" +
    "HTTP/1.1 403 Forbidden\r\nContent-Length: 7\r\n\r\ngo away",
  ]);
  assert.equal(error.status, 403);
  assert.equal(
    error.message,
    "Cannot open WebSocket: server answered 403 Forbidden",
  );
  assert.equal(decoder.decode(error.body), "go away");
});

Deno.test("connect() fails at maxHeadSize when a server sends 1xx answers forever", async () => {
  const sent = Promise.withResolvers<number>();
  await using raw = new RawServer(async (peer) => {
    await peer.readHead();
    const interim = encoder.encode("HTTP/1.1 100 Continue\r\n\r\n".repeat(40));
    let total = 0;
    try {
      // Until the client hangs up.
      while (true) {
        await peer.write(interim);
        total += interim.length;
      }
    } catch {
      sent.resolve(total);
    }
  });
  const error = await rejection(
    connect(`ws://127.0.0.1:${raw.port}/`, {
      pingInterval: 0,
      maxHeadSize: 4096,
    }),
    "connect",
  );
  assert.ok(error instanceof HandshakeError, String(error));
  assert.equal(error.status, 431);
  assert.match(
    error.message,
    /^Cannot read HTTP head: heads are larger than 4096 bytes together, \d+ interim responses included$/,
  );
  // The client hung up: the server's writes failed.
  assert.ok(await deadline(sent.promise, "the server to see the end") > 0);
});

Deno.test("connect() skips a proxy's interim 1xx answers before its 200, and refuses its 101", async () => {
  const { server } = echoServer();
  await using _ = server;
  await using proxy = new TestProxy({
    answer: "HTTP/1.1 100 Continue\r\n\r\n" +
      "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" +
      "HTTP/1.1 200 Connection Established\r\n\r\n",
  });
  const ws = await deadline(
    connect(`ws://127.0.0.1:${server.addr.port}/`, {
      pingInterval: 0,
      proxy: `http://127.0.0.1:${proxy.port}`,
    }),
    "connect",
  );
  await ws.send("through the hints");
  assert.equal(await receive(ws), "through the hints");
  await closeCleanly(ws);

  const error = await refusalOf(
    [
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
    ],
    {},
    "proxy",
  );
  assert.equal(error.status, 101);
  assert.match(error.message, /proxy answered 101 Switching Protocols$/);
});

Deno.test("connect() decodes a chunked refusal body into the HandshakeError (RFC 9112 §7.1)", async () => {
  const error = await refusalOf([
    "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\n" +
    "Transfer-Encoding: chunked\r\n\r\nB\r\nnot a",
    // The rest of the chunks in later writes, split inside the framing; the
    // connection stays open: the last chunk ends the body.
    "llowed\r\n9;reason=",
    "origin\r\n here, go\r\n0\r\n\r\n",
  ]);
  assert.equal(error.status, 403);
  assert.equal(error.headers?.get("content-type"), "text/plain");
  assert.equal(decoder.decode(error.body), "not allowed here, go");
});

Deno.test("connect() fails at once with a HandshakeError on a 304 that announces a body it never sends (RFC 9112 §6.3)", async () => {
  const error = await refusalOf([
    // A 304 has no body, whatever Content-Length says; the connection stays.
    'HTTP/1.1 304 Not Modified\r\nContent-Length: 1000\r\nETag: "v1"\r\n\r\n',
  ], { handshakeTimeout: 5000 });
  // Waiting for the 1,000 bytes made it a TimeoutError after 5 s.
  assert.equal(error.status, 304);
  assert.equal(error.headers?.get("etag"), '"v1"');
  assert.equal(error.body?.length, 0);
});

Deno.test("connect() rejects with the HandshakeError of a refusal whose body never ends, with what came", async () => {
  // An event stream answers the upgrade: a chunk every 50 ms, no last chunk.
  await using raw = new RawServer(async (peer) => {
    await peer.readHead();
    await peer.write(
      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n" +
        "Transfer-Encoding: chunked\r\n\r\n",
    );
    for (let i = 0; i < 200; i++) {
      try {
        await peer.write(`8\r\ndata: ${i % 10}\n\r\n`);
      } catch {
        return; // the client hung up
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  });
  const error = await rejection(
    connect(`ws://127.0.0.1:${raw.port}/`, {
      pingInterval: 0,
      handshakeTimeout: 8000,
    }),
    "connect",
  );
  // It used to wait for a last chunk until the TimeoutError.
  assert.ok(error instanceof HandshakeError, String(error));
  assert.equal(error.status, 200);
  assert.equal(error.headers?.get("content-type"), "text/event-stream");
  assert.match(decoder.decode(error.body), /^data: 0\n(data: \d\n)*$/);
});

// README: the body is read "within handshakeTimeout", and a body that never
// ends still gives the HandshakeError, not a timeout. The handshake's
// deadline passing while the body is read used to turn the refusal into a
// TimeoutError, directly and through a proxy.
Deno.test("connect() rejects with the refusal, not a TimeoutError, when handshakeTimeout ends its body", async (t) => {
  await using raw = new RawServer(async (peer) => {
    await peer.readHead();
    // 5 of the 100 bytes announced, and nothing more.
    await peer.write(
      "HTTP/1.1 403 Forbidden\r\nContent-Length: 100\r\n\r\nhello",
    );
    await peer.readToEnd();
  });
  for (const viaProxy of [false, true]) {
    await t.step(viaProxy ? "a proxy's refusal" : "the server's", async () => {
      const url = viaProxy
        ? "ws://127.0.0.1:9/"
        : `ws://127.0.0.1:${raw.port}/`;
      const error = await rejection(
        connect(url, {
          pingInterval: 0,
          handshakeTimeout: 300,
          proxy: viaProxy ? `http://127.0.0.1:${raw.port}` : false,
        }),
        "connect",
      );
      assert.ok(error instanceof HandshakeError, String(error));
      assert.equal(error.status, 403);
      assert.equal(decoder.decode(error.body), "hello");
    });
  }
});

Deno.test("connect() rejects with the caller's abort reason while it reads a refusal's body", async () => {
  const controller = new AbortController();
  await using raw = new RawServer(async (peer) => {
    await peer.readHead();
    // A body that promises 100 bytes and sends 5.
    await peer.write(
      "HTTP/1.1 403 Forbidden\r\nContent-Length: 100\r\n\r\nhello",
    );
    controller.abort(new Error("the caller gave up"));
    await peer.readToEnd();
  });
  const error = await rejection(
    connect(`ws://127.0.0.1:${raw.port}/`, {
      pingInterval: 0,
      signal: controller.signal,
    }),
    "connect",
  );
  assert.ok(!(error instanceof HandshakeError), String(error));
  assert.equal((error as Error).message, "the caller gave up");
});

Deno.test("connect() keeps maxErrorBodySize bytes of a chunked body, without waiting for the rest", async () => {
  const error = await refusalOf([
    // One chunk announcing 1 MiB; 2,000 bytes of it come, then nothing.
    "HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n" +
    `100000\r\n${"x".repeat(2000)}`,
  ], { maxErrorBodySize: 1500 });
  assert.equal(error.status, 503);
  assert.equal(decoder.decode(error.body), "x".repeat(1500));
});

Deno.test("connect() ends the body at a malformed chunk, keeping the status, headers and the data before it", async () => {
  const error = await refusalOf([
    "HTTP/1.1 500 Internal Server Error\r\nX-Id: 7\r\n" +
    "Transfer-Encoding: chunked\r\n\r\n4\r\noops\r\nzz\r\nmore",
  ]);
  assert.equal(error.status, 500);
  assert.equal(error.headers?.get("x-id"), "7");
  assert.equal(decoder.decode(error.body), "oops");
});

Deno.test("connect() decodes a proxy's chunked refusal body", async () => {
  const error = await refusalOf(
    [
      "HTTP/1.1 502 Bad Gateway\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nno \r",
      "\n5\r\nroute\r\n0\r\n\r\n",
    ],
    {},
    "proxy",
  );
  assert.equal(error.status, 502);
  assert.equal(decoder.decode(error.body), "no route");
});

// ---------------------------------------------------------------------------
// Redirects
// ---------------------------------------------------------------------------

Deno.test("connect() does not follow a redirect by default: HandshakeError with status 302", async () => {
  const { server } = echoServer();
  await using _ = server;
  await using raw = new RawServer(async (peer) => {
    await peer.readHead();
    await peer.write(
      `HTTP/1.1 302 Found\r\nLocation: ws://127.0.0.1:${server.addr.port}/moved\r\nContent-Length: 0\r\n\r\n`,
    );
    await peer.readToEnd();
  });
  const error = await rejection(
    connect(`ws://127.0.0.1:${raw.port}/old`, { pingInterval: 0 }),
    "connect",
  );
  assert.ok(error instanceof HandshakeError, String(error));
  assert.equal(error.status, 302);
  assert.equal(
    error.headers?.get("location"),
    `ws://127.0.0.1:${server.addr.port}/moved`,
  );
});

Deno.test("connect() follows a redirect to serve() with maxRedirects: 1", async () => {
  const { server, requests } = echoServer();
  await using _ = server;
  await using raw = new RawServer(async (peer) => {
    await peer.readHead();
    await peer.write(
      `HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:${server.addr.port}/moved?x=1\r\nContent-Length: 0\r\n\r\n`,
    );
    await peer.readToEnd();
  });
  const ws = await deadline(
    connect(`ws://127.0.0.1:${raw.port}/old`, {
      pingInterval: 0,
      maxRedirects: 1,
    }),
    "connect",
  );
  assert.equal(ws.url, `ws://127.0.0.1:${server.addr.port}/moved?x=1`);
  await ws.send("redirected");
  assert.equal(await receive(ws), "redirected");
  await closeCleanly(ws);
  assert.equal(new URL(requests[0]!.url).pathname, "/moved");

  // Two hops with maxRedirects: 1 stop at the second.
  await using twice = new RawServer(async (peer) => {
    await peer.readHead();
    await peer.write(
      `HTTP/1.1 307 Temporary Redirect\r\nLocation: ws://127.0.0.1:${raw.port}/old\r\nContent-Length: 0\r\n\r\n`,
    );
    await peer.readToEnd();
  });
  const error = await rejection(
    connect(`ws://127.0.0.1:${twice.port}/`, {
      pingInterval: 0,
      maxRedirects: 1,
    }),
    "connect",
  );
  assert.ok(error instanceof HandshakeError);
  assert.equal(error.status, 302);
});

Deno.test("connect() drops Authorization, Cookie and a Host override on a redirect to another host, and keeps them on the same host", async () => {
  // One raw server, two host names: 127.0.0.1 and localhost.
  const seen: RawRequest[] = [];
  let target = "";
  await using raw = new RawServer(async (peer) => {
    const request = await peer.readHead();
    seen.push(request);
    if (request.line.startsWith("GET /start ")) {
      await peer.write(
        `HTTP/1.1 301 Moved Permanently\r\nLocation: ${target}\r\nContent-Length: 0\r\n\r\n`,
      );
      await peer.readToEnd();
      return;
    }
    await peer.accept(request);
    closeCodeOf(await peer.readFrame());
    await peer.write(encodeFrame(frameOf(0x8, new Uint8Array([0x03, 0xe8]))));
  });
  const headers: [string, string][] = [
    ["Authorization", "Bearer t0ken"],
    ["Cookie", "session=s3cret"],
    ["User-Agent", "crawler/1.0"],
    ["Host", "api.internal.example"],
  ];
  for (
    const [from, to, kept] of [
      ["127.0.0.1", "localhost", false],
      ["127.0.0.1", "127.0.0.1", true],
      ["localhost", "localhost", true],
    ] as const
  ) {
    seen.length = 0;
    target = `ws://${to}:${raw.port}/end`;
    const ws = await deadline(
      connect(`ws://${from}:${raw.port}/start`, {
        pingInterval: 0,
        deflate: false,
        maxRedirects: 1,
        headers,
      }),
      "connect",
    );
    await closeCleanly(ws);
    assert.equal(seen.length, 2);
    const [first, second] = seen as [RawRequest, RawRequest];
    assert.equal(first.get("authorization"), "Bearer t0ken");
    assert.equal(first.get("cookie"), "session=s3cret");
    assert.equal(second.line, "GET /end HTTP/1.1");
    assert.equal(first.get("host"), "api.internal.example");
    assert.equal(
      second.get("host"),
      kept ? "api.internal.example" : `${to}:${raw.port}`,
      `${from} -> ${to}`,
    );
    assert.equal(second.get("user-agent"), "crawler/1.0");
    assert.equal(
      second.get("authorization"),
      kept ? "Bearer t0ken" : undefined,
      `${from} -> ${to}`,
    );
    assert.equal(
      second.get("cookie"),
      kept ? "session=s3cret" : undefined,
      `${from} -> ${to}`,
    );
  }
});

Deno.test("connect() drops Authorization and Cookie on a redirect from wss: to ws: on the same host", async () => {
  // wss://localhost/ -> ws://localhost/: same host, but the credentials
  // would cross in clear text. The proxy routes :443 to a TLS serve() that
  // redirects and :80 to a raw server that records the request.
  const { cert, key } = await makeCertificate();
  await using secure = serve({
    hostname: "127.0.0.1",
    port: 0,
    cert,
    key,
    upgrade: () =>
      new Response(null, {
        status: 302,
        headers: { Location: "ws://localhost/end" },
      }),
  }, () => {});
  const seen: RawRequest[] = [];
  await using raw = new RawServer(async (peer) => {
    const request = await peer.readHead();
    seen.push(request);
    await peer.accept(request);
    closeCodeOf(await peer.readFrame());
    await peer.write(encodeFrame(frameOf(0x8, new Uint8Array([0x03, 0xe8]))));
  });
  await using proxy = new TestProxy({
    route: (authority) =>
      authority.endsWith(":443") ? secure.addr.port : raw.port,
  });
  const ws = await deadline(
    connect("wss://localhost/start", {
      pingInterval: 0,
      deflate: false,
      caCerts: [cert],
      maxRedirects: 1,
      proxy: `http://127.0.0.1:${proxy.port}`,
      headers: [["Authorization", "Bearer t0ken"], ["Cookie", "a=b"]],
    }),
    "connect",
  );
  await closeCleanly(ws);
  assert.deepEqual(proxy.connects, ["localhost:443", "localhost:80"]);
  assert.equal(seen.length, 1);
  assert.equal(seen[0]!.get("authorization"), undefined);
  assert.equal(seen[0]!.get("cookie"), undefined);
});

Deno.test("connect() fails with a HandshakeError on a redirect to a bad Location", async () => {
  let location = "";
  await using raw = new RawServer(async (peer) => {
    await peer.readHead();
    await peer.write(
      `HTTP/1.1 302 Found\r\nLocation: ${location}\r\nContent-Length: 0\r\n\r\n`,
    );
    await peer.readToEnd();
  });
  for (
    location of ["ftp://127.0.0.1/file", "http://[::1", "file:///etc/passwd"]
  ) {
    const error = await rejection(
      connect(`ws://127.0.0.1:${raw.port}/`, {
        pingInterval: 0,
        maxRedirects: 1,
      }),
      location,
    );
    assert.ok(error instanceof HandshakeError, `${location}: ${error}`);
    assert.equal(error.status, 302);
    assert.equal(error.header, "location");
  }
});

// The error of a bad Location had the runtime's TypeError as its cause,
// whose message repeats the base URL: the caller's URL, password included.
Deno.test("connect() keeps the URL's password out of the error of a bad redirect", async () => {
  await using raw = new RawServer(async (peer) => {
    await peer.readHead();
    await peer.write(
      "HTTP/1.1 302 Found\r\nLocation: http://exa mple/\r\nContent-Length: 0\r\n\r\n",
    );
    await peer.readToEnd();
  });
  const error = await rejection(
    connect(`ws://alice:s3cret-pw@127.0.0.1:${raw.port}/`, {
      pingInterval: 0,
      maxRedirects: 1,
    }),
    "connect",
  );
  assert.ok(error instanceof HandshakeError, String(error));
  assert.equal(error.status, 302);
  assert.doesNotMatch(Deno.inspect(error, { depth: 10 }), /s3cret/);
});

Deno.test("connect() follows a redirect whose Location has a fragment, without the fragment", async () => {
  const lines: string[] = [];
  await using raw = new RawServer(async (peer) => {
    const request = await peer.readHead();
    lines.push(request.line);
    if (request.line.startsWith("GET /start ")) {
      await peer.write(
        `HTTP/1.1 302 Found\r\nLocation: /end?x=1#section\r\nContent-Length: 0\r\n\r\n`,
      );
      await peer.readToEnd();
      return;
    }
    await peer.accept(request);
    closeCodeOf(await peer.readFrame());
    await peer.write(encodeFrame(frameOf(0x8, new Uint8Array([0x03, 0xe8]))));
  });
  const ws = await deadline(
    connect(`ws://127.0.0.1:${raw.port}/start`, {
      pingInterval: 0,
      deflate: false,
      maxRedirects: 1,
    }),
    "connect",
  );
  assert.equal(ws.url, `ws://127.0.0.1:${raw.port}/end?x=1`);
  await closeCleanly(ws);
  assert.deepEqual(lines, ["GET /start HTTP/1.1", "GET /end?x=1 HTTP/1.1"]);
});

// ---------------------------------------------------------------------------
// The echo client (examples/echo_client.ts) as a process
// ---------------------------------------------------------------------------

interface ProcessResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the echo client; kills it if it does not exit within the deadline. */
async function runEchoClient(args: string[]): Promise<ProcessResult> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "examples/echo_client.ts", ...args],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = child.output();
  try {
    const { code, stdout, stderr } = await deadline(
      output,
      "the echo client to exit",
      20_000,
    );
    return {
      code,
      stdout: decoder.decode(stdout),
      stderr: decoder.decode(stderr),
    };
  } catch (error) {
    try {
      child.kill();
    } catch {
      // Exited already.
    }
    await output;
    throw error;
  }
}

Deno.test("the echo client echoes every message with its type and exits 0 after a clean close", async () => {
  const messages: (string | Uint8Array<ArrayBuffer>)[] = [
    "hello",
    "",
    new Uint8Array([0, 1, 2, 255]),
    new Uint8Array(0),
    "Здравствуй 😀".repeat(1000),
    "z".repeat(300_000),
    new Uint8Array(3 * 1024 * 1024).map((_, i) => (i * 31) & 0xff),
  ];
  const result = Promise.withResolvers<void>();
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (ws) => {
    try {
      for (const message of messages) await ws.send(message);
      const echoes: WebSocketMessage[] = [];
      for await (const message of ws) {
        echoes.push(message);
        if (echoes.length === messages.length) break;
      }
      assert.equal(echoes.length, messages.length);
      for (let i = 0; i < messages.length; i++) {
        const expected = messages[i]!;
        const actual = echoes[i]!;
        assert.equal(typeof actual, typeof expected, `message ${i}`);
        assert.deepEqual(actual, expected, `message ${i}`);
      }
      await ws.close(1000, "done");
      result.resolve();
    } catch (error) {
      result.reject(error);
      await ws.close(1011);
    }
  });
  const [run] = await Promise.all([
    runEchoClient([`ws://127.0.0.1:${server.addr.port}/`]),
    deadline(result.promise, "the server's checks", 20_000),
  ]);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stderr, "");
});

Deno.test("the echo client takes flags before and after the URL", async () => {
  const seen = Promise.withResolvers<
    { header: string | null; protocol: string }
  >();
  await using server = serve({
    hostname: "127.0.0.1",
    port: 0,
    protocols: ["chat"],
  }, async (ws, request) => {
    seen.resolve({
      header: request.headers.get("x-test"),
      protocol: ws.protocol,
    });
    await ws.send("ping");
    for await (const message of ws) {
      if (message === "ping") break;
    }
    await ws.close(1000);
  });
  const run = await runEchoClient([
    "--header",
    "X-Test: 1",
    `ws://127.0.0.1:${server.addr.port}/`,
    "--protocol",
    "chat",
  ]);
  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(await seen.promise, { header: "1", protocol: "chat" });
});

Deno.test("the echo client trusts the --ca file for wss:", async () => {
  const { cert, key } = await makeCertificate();
  const done = Promise.withResolvers<void>();
  await using server = serve(
    { hostname: "127.0.0.1", port: 0, cert, key },
    async (ws) => {
      try {
        await ws.send("secure");
        const echo = await ws[Symbol.asyncIterator]().next();
        assert.equal(echo.value, "secure");
        await ws.close(1000);
        done.resolve();
      } catch (error) {
        done.reject(error);
      }
    },
  );
  const file = await Deno.makeTempFile({ suffix: ".pem" });
  try {
    await Deno.writeTextFile(file, cert);
    const [run] = await Promise.all([
      runEchoClient([`wss://localhost:${server.addr.port}/`, "--ca", file]),
      deadline(done.promise, "the server's checks", 20_000),
    ]);
    assert.equal(run.code, 0, run.stderr);
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("the echo client exits non-zero with the reason on stderr after a refused handshake", async () => {
  await using server = serve({
    hostname: "127.0.0.1",
    port: 0,
    upgrade: () => new Response("go away", { status: 403 }),
  }, () => {});
  const run = await runEchoClient([`ws://127.0.0.1:${server.addr.port}/`]);
  assert.notEqual(run.code, 0);
  assert.match(run.stderr, /403/);
});

Deno.test("the echo client exits non-zero when the server drops TCP without a close frame", async () => {
  await using raw = new RawServer(async (peer) => {
    const request = await peer.readHead();
    await peer.accept(request);
    await peer.write(encodeFrame(frameOf(0x1, encoder.encode("one"))));
    // Read the echo, then drop the connection without a close frame.
    const frame = await peer.readFrame();
    assert.equal(decoder.decode(frame?.payload), "one");
  });
  const run = await runEchoClient([
    `ws://127.0.0.1:${raw.port}/`,
    "--no-deflate",
  ]);
  assert.notEqual(run.code, 0);
  assert.match(run.stderr, /1006/);
});
