// Copyright 2026 the @rfc6455/websocket authors. MIT license.
// End to end: permessage-deflate (RFC 7692) between connect() and serve()
// over real sockets, and against hand-written (and hostile) peers on raw
// sockets: negotiation, RSV1 rules, corrupt data, decompression bombs and
// the compression threshold.

import assert from "node:assert/strict";
import { connect, type ConnectOptions } from "../client.ts";
import type { WebSocketSession } from "../connection.ts";
import {
  PerMessageDeflate,
  type PerMessageDeflateOptions,
} from "../deflate.ts";
import { HandshakeError } from "../errors.ts";
import { encodeFrame, type Frame, FrameDecoder } from "../frame.ts";
import { createAcceptKey, createKey } from "../handshake.ts";
import type { ServeOptions } from "../server.ts";
import {
  concat,
  deadline,
  jsonText,
  patternBytes,
  quietServer,
  writeAll,
} from "./_util.ts";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const MIB = 1024 * 1024;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** One read; `null` at the end of the stream or on a reset. */
async function readChunk(conn: Deno.Conn): Promise<Uint8Array | null> {
  const buffer = new Uint8Array(64 * 1024);
  let count: number | null;
  try {
    count = await deadline(conn.read(buffer), "read");
  } catch (error) {
    if (
      error instanceof Deno.errors.ConnectionReset ||
      error instanceof Deno.errors.BrokenPipe
    ) {
      return null;
    }
    throw error;
  }
  return count === null ? null : buffer.subarray(0, count);
}

/** Reads an HTTP head; returns its text and the bytes that followed it. */
async function readHttpHead(
  conn: Deno.Conn,
): Promise<{ head: string; rest: Uint8Array }> {
  let received = new Uint8Array(0);
  while (true) {
    const end = decoder.decode(received).indexOf("\r\n\r\n");
    if (end !== -1) {
      // The head is ASCII: characters are bytes.
      return {
        head: decoder.decode(received.subarray(0, end)),
        rest: received.subarray(end + 4),
      };
    }
    const chunk = await readChunk(conn);
    assert.ok(chunk !== null, "connection closed before the end of the head");
    received = concat(received, chunk);
  }
}

function headerOf(head: string, name: string): string | null {
  for (const line of head.split("\r\n").slice(1)) {
    const colon = line.indexOf(":");
    if (line.slice(0, colon).trim().toLowerCase() === name) {
      return line.slice(colon + 1).trim();
    }
  }
  return null;
}

/** Reads the frames of one side of a connection, RSV1 allowed. */
class FrameReader {
  readonly #conn: Deno.Conn;
  readonly #decoder: FrameDecoder;
  #frames: Frame[] = [];

  constructor(conn: Deno.Conn, role: "client" | "server", rest: Uint8Array) {
    this.#conn = conn;
    this.#decoder = new FrameDecoder({
      role,
      allowRsv1: true,
      maxPayloadSize: 64 * MIB,
    });
    if (rest.length > 0) this.#frames.push(...this.#decoder.push(rest));
  }

  /** The next frame, or `undefined` once the peer closed the connection. */
  async next(): Promise<Frame | undefined> {
    while (this.#frames.length === 0) {
      const chunk = await readChunk(this.#conn);
      if (chunk === null) return undefined;
      this.#frames.push(...this.#decoder.push(chunk));
    }
    return this.#frames.shift();
  }

  /** The next data frame, skipping pings and pongs. */
  async nextData(): Promise<Frame> {
    while (true) {
      const frame = await deadline(this.next(), "data frame");
      assert.ok(frame !== undefined, "connection ended before a data frame");
      if (frame.opcode === 0x9 || frame.opcode === 0xa) continue;
      return frame;
    }
  }
}

const MASK = new Uint8Array([0x12, 0x34, 0x56, 0x78]);

/** A frame as a client (masked) or a server (unmasked) sends it. */
function frameBytes(
  opcode: number,
  payload: Uint8Array | string,
  options: { fin?: boolean; rsv1?: boolean; masked?: boolean } = {},
): Uint8Array<ArrayBuffer> {
  const frame: Frame = {
    fin: options.fin ?? true,
    rsv1: options.rsv1 ?? false,
    rsv2: false,
    rsv3: false,
    opcode,
    payload: typeof payload === "string" ? encoder.encode(payload) : payload,
  };
  if (options.masked ?? true) frame.mask = MASK;
  return encodeFrame(frame);
}

function closeBody(code: number): Uint8Array {
  return new Uint8Array([code >> 8, code & 0xff]);
}

/**
 * Reads frames until a close frame and returns its code; answers it with a
 * close frame so that the peer's close handshake ends at once.
 */
async function expectClose(
  conn: Deno.Conn,
  frames: FrameReader,
  masked: boolean,
): Promise<number> {
  let frame = await deadline(frames.next(), "close frame");
  while (frame !== undefined && frame.opcode !== 0x8) {
    frame = await deadline(frames.next(), "close frame");
  }
  assert.ok(frame !== undefined, "expected a close frame, got the end");
  assert.ok(frame.payload.length >= 2, "close frame without a code");
  const code = (frame.payload[0]! << 8) | frame.payload[1]!;
  await writeAll(conn, frameBytes(0x8, closeBody(code), { masked })).catch(
    () => {},
  );
  return code;
}

/** Closes `conn` unless it is closed already. */
function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch (error) {
    if (!(error instanceof Deno.errors.BadResource)) throw error;
  }
}

/** Closes `conn` at the end of the scope unless it is closed already. */
function closing(conn: Deno.Conn): Disposable {
  return { [Symbol.dispose]: () => closeQuietly(conn) };
}

interface RawClient {
  conn: Deno.TcpConn;
  frames: FrameReader;
  /** The `Sec-WebSocket-Extensions` of the 101 answer, `null` if absent. */
  extensions: string | null;
}

/** Opens a WebSocket to `port` by hand, offering `extensions` if given. */
async function rawClient(
  port: number,
  extensions?: string,
): Promise<RawClient> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const key = createKey();
  await writeAll(
    conn,
    encoder.encode(
      `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
        "Upgrade: websocket\r\nConnection: Upgrade\r\n" +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
        (extensions === undefined
          ? ""
          : `Sec-WebSocket-Extensions: ${extensions}\r\n`) +
        "\r\n",
    ),
  );
  const { head, rest } = await readHttpHead(conn);
  assert.match(head, /^HTTP\/1\.1 101 /);
  assert.equal(
    headerOf(head, "sec-websocket-accept"),
    await createAcceptKey(key),
  );
  return {
    conn,
    frames: new FrameReader(conn, "client", rest),
    extensions: headerOf(head, "sec-websocket-extensions"),
  };
}

interface RawServer extends AsyncDisposable {
  port: number;
  /** The next connection, after the 101 answer with `extensions` was sent. */
  accept(extensions: string | undefined): Promise<RawPeer>;
}

interface RawPeer {
  conn: Deno.Conn;
  frames: FrameReader;
  /** The offer of the client's request, `null` if absent. */
  offer: string | null;
}

/** A listener that answers every upgrade by hand, with any extensions. */
function rawServer(): RawServer {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  return {
    port: listener.addr.port,
    async accept(extensions) {
      const conn = await deadline(listener.accept(), "accept");
      const { head, rest } = await readHttpHead(conn);
      const key = headerOf(head, "sec-websocket-key");
      assert.ok(key !== null);
      await writeAll(
        conn,
        encoder.encode(
          "HTTP/1.1 101 Switching Protocols\r\n" +
            "Upgrade: websocket\r\nConnection: Upgrade\r\n" +
            `Sec-WebSocket-Accept: ${await createAcceptKey(key)}\r\n` +
            (extensions === undefined
              ? ""
              : `Sec-WebSocket-Extensions: ${extensions}\r\n`) +
            "\r\n",
        ),
      );
      return {
        conn,
        frames: new FrameReader(conn, "server", rest),
        offer: headerOf(head, "sec-websocket-extensions"),
      };
    },
    [Symbol.asyncDispose]() {
      listener.close();
      return Promise.resolve();
    },
  };
}

function assertSameBytes(actual: unknown, expected: Uint8Array): void {
  assert.ok(actual instanceof Uint8Array, "expected a binary message");
  assert.equal(actual.length, expected.length);
  for (let i = 0; i < expected.length; i++) {
    if (actual[i] !== expected[i]) assert.fail(`bytes differ at index ${i}`);
  }
}

const PARAMS_15 = {
  serverNoContextTakeover: false,
  clientNoContextTakeover: false,
  serverMaxWindowBits: 15,
  clientMaxWindowBits: 15,
};

// ---------------------------------------------------------------------------
// RFC 7692 §5, §7 negotiation end to end
// ---------------------------------------------------------------------------

interface MatrixCase {
  name: string;
  client: ConnectOptions["deflate"];
  server: ServeOptions["deflate"];
  /** The negotiated `Sec-WebSocket-Extensions` on both ends. */
  expected: string;
}

const MATRIX: MatrixCase[] = [
  {
    name: "defaults on both sides",
    client: undefined,
    server: undefined,
    expected: "permessage-deflate",
  },
  {
    name: "client asks server_no_context_takeover",
    client: { serverNoContextTakeover: true },
    server: true,
    expected: "permessage-deflate; server_no_context_takeover",
  },
  {
    name: "client offers client_no_context_takeover",
    client: { clientNoContextTakeover: true },
    server: true,
    expected: "permessage-deflate; client_no_context_takeover",
  },
  {
    name: "server imposes no context takeover both ways",
    client: true,
    server: { serverNoContextTakeover: true, clientNoContextTakeover: true },
    expected:
      "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
  },
  {
    name: "client asks server_max_window_bits=10",
    client: { serverMaxWindowBits: 10 },
    server: undefined,
    expected: "permessage-deflate; server_max_window_bits=10",
  },
  {
    name: "client asks server_max_window_bits=12, server allows 9",
    client: { serverMaxWindowBits: 12 },
    server: { serverMaxWindowBits: 9 },
    expected: "permessage-deflate; server_max_window_bits=9",
  },
  {
    name: "server limits its own window to 11 unasked",
    client: true,
    server: { serverMaxWindowBits: 11 },
    expected: "permessage-deflate; server_max_window_bits=11",
  },
  {
    name: "client asks server_max_window_bits=8",
    client: { serverMaxWindowBits: 8 },
    server: true,
    expected: "permessage-deflate; server_max_window_bits=8",
  },
  {
    name: "client offers client_max_window_bits=11",
    client: { clientMaxWindowBits: 11 },
    server: true,
    expected: "permessage-deflate; client_max_window_bits=11",
  },
  {
    name: "server limits the client to 8 bits",
    client: true,
    server: { clientMaxWindowBits: 8 },
    expected: "permessage-deflate; client_max_window_bits=8",
  },
  {
    name: "client offers 12 bits, server allows 9",
    client: { clientMaxWindowBits: 12 },
    server: { clientMaxWindowBits: 9 },
    expected: "permessage-deflate; client_max_window_bits=9",
  },
  {
    name: "client offers 9 bits, server allows 12",
    client: { clientMaxWindowBits: 9 },
    server: { clientMaxWindowBits: 12 },
    expected: "permessage-deflate; client_max_window_bits=9",
  },
  {
    name: "every parameter at its smallest",
    client: {
      serverNoContextTakeover: true,
      clientNoContextTakeover: true,
      serverMaxWindowBits: 8,
      clientMaxWindowBits: 8,
    },
    server: { serverMaxWindowBits: 9, clientMaxWindowBits: 9 },
    expected: "permessage-deflate; server_no_context_takeover; " +
      "client_no_context_takeover; server_max_window_bits=8; " +
      "client_max_window_bits=8",
  },
  {
    name: "level, memLevel and threshold stay local",
    client: { level: 9, memLevel: 9, threshold: 0 },
    server: { level: 1, memLevel: 1, threshold: 0 },
    expected: "permessage-deflate",
  },
  {
    name: "client with deflate false offers nothing",
    client: false,
    server: true,
    expected: "",
  },
  {
    name: "server with deflate false declines",
    client: true,
    server: false,
    expected: "",
  },
];

Deno.test("connect() and serve() negotiate permessage-deflate parameters and echo compressed messages", async (t) => {
  const text = jsonText(64 * 1024);
  const binary = patternBytes(4096, 7);
  for (const entry of MATRIX) {
    await t.step(entry.name, async () => {
      const session = Promise.withResolvers<WebSocketSession>();
      const { server, errors } = quietServer(
        entry.server === undefined ? {} : { deflate: entry.server },
        async (ws) => {
          session.resolve(ws);
          for await (const message of ws) await ws.send(message);
        },
      );
      await using _server = server;
      const ws = await deadline(
        connect(`ws://127.0.0.1:${server.addr.port}/`, {
          ...(entry.client === undefined ? {} : { deflate: entry.client }),
        }),
        "connect",
      );
      try {
        assert.equal(ws.extensions, entry.expected);
        assert.equal(
          (await deadline(session.promise, "session")).extensions,
          entry.expected,
        );
        // Several messages of each kind exercise context takeover (or its
        // absence) in both directions.
        const messages = [text, binary, "small", text, binary, ""];
        for (const message of messages) await ws.send(message);
        const iterator = ws[Symbol.asyncIterator]();
        for (const expected of messages) {
          const { value } = await deadline(iterator.next(), "echo");
          if (typeof expected === "string") assert.equal(value, expected);
          else assertSameBytes(value, expected);
        }
        assert.equal((await deadline(ws.close(), "close")).code, 1000);
      } finally {
        await ws.close();
      }
      assert.deepEqual(errors, []);
    });
  }
});

Deno.test("serve() declines permessage-deflate offers it cannot accept and takes the first acceptable one", async (t) => {
  const cases: {
    name: string;
    deflate?: ServeOptions["deflate"];
    offer: string;
    expected: string | null;
  }[] = [
    {
      name: "an offer with an unknown parameter",
      offer: "permessage-deflate; foo=1",
      expected: null,
    },
    {
      name: "an offer with server_max_window_bits=16",
      offer: "permessage-deflate; server_max_window_bits=16",
      expected: null,
    },
    {
      name: "an offer with a repeated parameter",
      offer:
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
      expected: null,
    },
    {
      name:
        "an offer without client_max_window_bits when the server limits the client",
      deflate: { clientMaxWindowBits: 10 },
      offer: "permessage-deflate",
      expected: null,
    },
    {
      name: "a bad first offer and a good second one",
      offer: "permessage-deflate; client_max_window_bits=7, " +
        "permessage-deflate; client_max_window_bits",
      expected: "permessage-deflate",
    },
    {
      name: "another extension, then permessage-deflate",
      offer: "x-webkit-deflate-frame, permessage-deflate; " +
        'server_max_window_bits="12"; client_max_window_bits',
      expected: "permessage-deflate; server_max_window_bits=12",
    },
    {
      name: "an offer without client_max_window_bits and a default server",
      offer: "permessage-deflate",
      expected: "permessage-deflate",
    },
  ];
  for (const entry of cases) {
    await t.step(entry.name, async () => {
      const session = Promise.withResolvers<string>();
      const { server } = quietServer(
        entry.deflate === undefined ? {} : { deflate: entry.deflate },
        (ws) => session.resolve(ws.extensions),
      );
      await using _server = server;
      const client = await rawClient(server.addr.port, entry.offer);
      using _conn = client.conn;
      assert.equal(client.extensions, entry.expected);
      assert.equal(
        await deadline(session.promise, "session"),
        entry.expected ?? "",
      );
      // The handler returned: the server closes with 1000.
      assert.equal(await expectClose(client.conn, client.frames, true), 1000);
    });
  }
});

Deno.test("connect() fails with HandshakeError on a permessage-deflate response its offer did not allow", async (t) => {
  const cases: {
    name: string;
    deflate: boolean | PerMessageDeflateOptions;
    response: string;
  }[] = [
    {
      name: "server_max_window_bits=16",
      deflate: true,
      response: "permessage-deflate; server_max_window_bits=16",
    },
    {
      name: "an unknown parameter",
      deflate: true,
      response: "permessage-deflate; foo",
    },
    {
      name: "a value on server_no_context_takeover",
      deflate: true,
      response: "permessage-deflate; server_no_context_takeover=1",
    },
    {
      name: "client_max_window_bits without a value",
      deflate: true,
      response: "permessage-deflate; client_max_window_bits",
    },
    {
      name: "client_max_window_bits above the value offered",
      deflate: { clientMaxWindowBits: 10 },
      response: "permessage-deflate; client_max_window_bits=12",
    },
    {
      name: "server_max_window_bits above the value asked for",
      deflate: { serverMaxWindowBits: 10 },
      response: "permessage-deflate; server_max_window_bits=12",
    },
    {
      name: "no server_max_window_bits when asked for",
      deflate: { serverMaxWindowBits: 10 },
      response: "permessage-deflate",
    },
    {
      name: "no server_no_context_takeover when asked for",
      deflate: { serverNoContextTakeover: true },
      response: "permessage-deflate",
    },
    {
      name: "permessage-deflate twice",
      deflate: true,
      response: "permessage-deflate, permessage-deflate",
    },
    {
      name: "permessage-deflate when deflate is false",
      deflate: false,
      response: "permessage-deflate",
    },
    {
      name: "an extension that was not offered",
      deflate: true,
      response: "x-webkit-deflate-frame",
    },
  ];
  for (const entry of cases) {
    await t.step(entry.name, async () => {
      await using raw = rawServer();
      const peer = raw.accept(entry.response);
      const result = connect(`ws://127.0.0.1:${raw.port}/`, {
        deflate: entry.deflate,
      });
      const error = await deadline(
        result.then(
          async (ws) => {
            await ws.close();
            return undefined;
          },
          (error: unknown) => error,
        ),
        "connect",
      );
      assert.ok(
        error instanceof HandshakeError,
        `expected a HandshakeError, got ${error}`,
      );
      assert.equal(error.header, "sec-websocket-extensions");
      // The client dropped the connection.
      const { conn, frames } = await peer;
      using _conn = conn;
      assert.equal(await deadline(frames.next(), "end of stream"), undefined);
    });
  }
});

// ---------------------------------------------------------------------------
// RFC 7692 §6: RSV1, corrupt data
// ---------------------------------------------------------------------------

/** A compressed message as a client with default parameters sends it. */
async function compressed(data: Uint8Array): Promise<Uint8Array> {
  const deflate = new PerMessageDeflate(PARAMS_15, "client");
  try {
    return await deflate.compress(data);
  } finally {
    deflate.close();
  }
}

Deno.test("serve() fails connections that break the RSV1 rules of RFC 7692 §6 or send corrupt data", async (t) => {
  const hello = await compressed(encoder.encode("Hello, Hello, Hello"));
  const cases: {
    name: string;
    offer?: string;
    frames: () => Uint8Array[];
    code: number;
  }[] = [
    {
      name: "RSV1 on a continuation frame",
      offer: "permessage-deflate",
      frames: () => [
        frameBytes(0x1, hello.subarray(0, 3), { fin: false, rsv1: true }),
        frameBytes(0x0, hello.subarray(3), { rsv1: true }),
      ],
      code: 1002,
    },
    {
      name: "RSV1 on a ping",
      offer: "permessage-deflate",
      frames: () => [frameBytes(0x9, hello, { rsv1: true })],
      code: 1002,
    },
    {
      name: "RSV1 on a close frame",
      offer: "permessage-deflate",
      frames: () => [frameBytes(0x8, closeBody(1000), { rsv1: true })],
      code: 1002,
    },
    {
      name: "RSV1 when permessage-deflate was not negotiated",
      frames: () => [frameBytes(0x1, hello, { rsv1: true })],
      code: 1002,
    },
    {
      name: "an invalid DEFLATE block type",
      offer: "permessage-deflate",
      frames: () => [
        frameBytes(0x2, new Uint8Array([0xff, 0xff, 0xff]), { rsv1: true }),
      ],
      code: 1007,
    },
    {
      name: "a stored block whose length check fails",
      offer: "permessage-deflate",
      frames: () => [
        frameBytes(0x2, new Uint8Array([0x00, 0x05, 0x00, 0x05, 0x00, 1]), {
          rsv1: true,
        }),
      ],
      code: 1007,
    },
    {
      name: "compressed text that inflates to invalid UTF-8",
      offer: "permessage-deflate",
      frames: () => [frameBytes(0x1, invalidUtf8Compressed, { rsv1: true })],
      code: 1007,
    },
  ];
  const invalidUtf8Compressed = await compressed(
    new Uint8Array([0x68, 0x69, 0xc3, 0x28]),
  );
  for (const entry of cases) {
    await t.step(entry.name, async () => {
      const { server, errors } = quietServer();
      await using _server = server;
      const client = await rawClient(server.addr.port, entry.offer);
      using _conn = client.conn;
      assert.equal(
        client.extensions,
        entry.offer === undefined ? null : "permessage-deflate",
      );
      // A valid compressed message first, when negotiated: it is echoed.
      if (entry.offer !== undefined) {
        await writeAll(client.conn, frameBytes(0x1, hello, { rsv1: true }));
        const frame = await client.frames.nextData();
        assert.equal(frame.opcode, 0x1);
        assert.equal(frame.rsv1, false, "19 bytes are below the threshold");
        assert.equal(decoder.decode(frame.payload), "Hello, Hello, Hello");
      }
      await writeAll(client.conn, concat(...entry.frames()));
      assert.equal(
        await expectClose(client.conn, client.frames, true),
        entry.code,
      );
      assert.equal(errors.length, 1, "the handler hears of the failure");
      assert.equal(
        (errors[0] as { closeCode?: number }).closeCode,
        entry.code,
      );
    });
  }
});

Deno.test("connect() fails connections whose server breaks the RSV1 rules or sends corrupt data", async (t) => {
  const hello = await compressed(encoder.encode("Hello, Hello, Hello"));
  const cases: {
    name: string;
    extensions?: string;
    frames: Uint8Array[];
    code: number;
  }[] = [
    {
      name: "RSV1 on a continuation frame",
      extensions: "permessage-deflate",
      frames: [
        frameBytes(0x1, hello.subarray(0, 3), {
          fin: false,
          rsv1: true,
          masked: false,
        }),
        frameBytes(0x0, hello.subarray(3), { rsv1: true, masked: false }),
      ],
      code: 1002,
    },
    {
      name: "RSV1 on a pong",
      extensions: "permessage-deflate",
      frames: [frameBytes(0xa, "", { rsv1: true, masked: false })],
      code: 1002,
    },
    {
      name: "RSV1 when permessage-deflate was not negotiated",
      frames: [frameBytes(0x1, hello, { rsv1: true, masked: false })],
      code: 1002,
    },
    {
      name: "an invalid DEFLATE block type",
      extensions: "permessage-deflate",
      frames: [
        frameBytes(0x2, new Uint8Array([0xff, 0xff]), {
          rsv1: true,
          masked: false,
        }),
      ],
      code: 1007,
    },
  ];
  for (const entry of cases) {
    await t.step(entry.name, async () => {
      await using raw = rawServer();
      const accepted = raw.accept(entry.extensions);
      const ws = await deadline(
        connect(`ws://127.0.0.1:${raw.port}/`),
        "connect",
      );
      const peer = await accepted;
      using _conn = closing(peer.conn);
      assert.equal(ws.extensions, entry.extensions ?? "");
      await writeAll(peer.conn, concat(...entry.frames));
      const failure = (async () => {
        for await (const _ of ws) { /* nothing is delivered */ }
      })();
      await assert.rejects(deadline(failure, "iteration"), {
        name: "ProtocolError",
        closeCode: entry.code,
      });
      assert.equal(
        await expectClose(peer.conn, peer.frames, false),
        entry.code,
      );
      closeQuietly(peer.conn);
      await deadline(ws.closed, "closed");
    });
  }
});

// ---------------------------------------------------------------------------
// Decompression bombs: RFC 7692 §8.1 (and RFC 6455 §10.4 limits)
// ---------------------------------------------------------------------------

const BOMB_SIZE = 1024 * MIB;
const BOMB_UNIT = 4 * MIB;

/**
 * One compressed message that inflates to 1 GiB of zeros, in about 1 MiB:
 * 4 MiB of zeros compressed once after 4 MiB of zeros (all back-references
 * into a window of zeros) is a sync-flushed unit that can be repeated.
 */
async function bomb(): Promise<Uint8Array<ArrayBuffer>> {
  const deflate = new PerMessageDeflate(PARAMS_15, "client", { level: 9 });
  const zeros = new Uint8Array(BOMB_UNIT);
  const first = await deflate.compress(zeros);
  const unit = await deflate.compress(zeros);
  deflate.close();
  const trailer = new Uint8Array([0x00, 0x00, 0xff, 0xff]);
  const count = BOMB_SIZE / BOMB_UNIT;
  const out = new Uint8Array(
    first.length + (count - 1) * (trailer.length + unit.length),
  );
  out.set(first, 0);
  let offset = first.length;
  for (let i = 1; i < count; i++) {
    out.set(trailer, offset);
    out.set(unit, offset + trailer.length);
    offset += trailer.length + unit.length;
  }
  assert.equal(offset, out.length);
  return out;
}

/** Samples the RSS of this process every few ms; `stop()` returns the peak growth. */
function rssSampler(): { stop(): number } {
  const base = Deno.memoryUsage().rss;
  let peak = base;
  const timer = setInterval(() => {
    peak = Math.max(peak, Deno.memoryUsage().rss);
  }, 2);
  return {
    stop() {
      clearInterval(timer);
      peak = Math.max(peak, Deno.memoryUsage().rss);
      return peak - base;
    },
  };
}

const RSS_BOUND = 128 * MIB;

Deno.test("bomb() inflates to exactly its size of zeros, checked on a 16 MiB prefix", async () => {
  // The same construction as bomb(), cut to 4 units.
  const deflate = new PerMessageDeflate(PARAMS_15, "client", { level: 9 });
  const zeros = new Uint8Array(BOMB_UNIT);
  const first = await deflate.compress(zeros);
  const unit = await deflate.compress(zeros);
  deflate.close();
  const trailer = new Uint8Array([0x00, 0x00, 0xff, 0xff]);
  const message = concat(first, trailer, unit, trailer, unit, trailer, unit);
  const inflate = new PerMessageDeflate(PARAMS_15, "server");
  try {
    const inflated = await inflate.decompress(message);
    assert.equal(inflated.length, 4 * BOMB_UNIT);
    assert.ok(inflated.every((byte) => byte === 0));
  } finally {
    inflate.close();
  }
  const whole = await bomb();
  assert.ok(whole.length < 1.1 * MIB, `bomb is ${whole.length} bytes`);
});

for (const maxMessageSize of [16 * MIB, undefined]) {
  const limit = maxMessageSize === undefined
    ? "the default maxMessageSize"
    : "maxMessageSize 16 MiB";
  Deno.test(`serve() with ${limit} closes with 1009 on a message that inflates to 1 GiB, memory bounded`, async () => {
    const message = await bomb();
    const frame = frameBytes(0x2, message, { rsv1: true });
    const { server, errors } = quietServer(
      maxMessageSize === undefined ? {} : { maxMessageSize },
    );
    await using _server = server;
    const client = await rawClient(server.addr.port, "permessage-deflate");
    using _conn = client.conn;
    assert.equal(client.extensions, "permessage-deflate");
    const sampler = rssSampler();
    let growth: number;
    try {
      await writeAll(client.conn, frame);
      assert.equal(await expectClose(client.conn, client.frames, true), 1009);
    } finally {
      growth = sampler.stop();
    }
    assert.ok(
      growth < RSS_BOUND,
      `RSS grew by ${(growth / MIB).toFixed(1)} MiB`,
    );
    assert.equal(errors.length, 1);
    assert.equal((errors[0] as { closeCode?: number }).closeCode, 1009);
    // The server goes on serving compressed messages.
    const other = await rawClient(server.addr.port, "permessage-deflate");
    using _other = other.conn;
    const text = jsonText(4096);
    await writeAll(
      other.conn,
      frameBytes(0x1, await compressed(encoder.encode(text)), { rsv1: true }),
    );
    const echoed = await other.frames.nextData();
    assert.equal(echoed.rsv1, true);
    const inflate = new PerMessageDeflate(PARAMS_15, "client");
    try {
      assert.equal(
        decoder.decode(await inflate.decompress(echoed.payload)),
        text,
      );
    } finally {
      inflate.close();
    }
    await writeAll(other.conn, frameBytes(0x8, closeBody(1000)));
    assert.equal(await expectClose(other.conn, other.frames, true), 1000);
  });
}

Deno.test("connect() closes with 1009 on a message from the server that inflates to 1 GiB, memory bounded", async () => {
  const message = await bomb();
  await using raw = rawServer();
  const accepted = raw.accept("permessage-deflate");
  const ws = await deadline(
    connect(`ws://127.0.0.1:${raw.port}/`),
    "connect",
  );
  const peer = await accepted;
  using _conn = closing(peer.conn);
  const sampler = rssSampler();
  let growth: number;
  try {
    await writeAll(
      peer.conn,
      frameBytes(0x2, message, { rsv1: true, masked: false }),
    );
    const failure = (async () => {
      for await (const _ of ws) { /* nothing is delivered */ }
    })();
    await assert.rejects(deadline(failure, "iteration"), {
      name: "ProtocolError",
      closeCode: 1009,
    });
    assert.equal(await expectClose(peer.conn, peer.frames, false), 1009);
    closeQuietly(peer.conn);
  } finally {
    growth = sampler.stop();
  }
  assert.ok(
    growth < RSS_BOUND,
    `RSS grew by ${(growth / MIB).toFixed(1)} MiB`,
  );
  await deadline(ws.closed, "closed");
});

// ---------------------------------------------------------------------------
// Long messages and the event loop: other connections' sockets go on
// ---------------------------------------------------------------------------

/**
 * Counts turns of the event loop with a 0 ms timer that sets itself again
 * each time it fires: once a turn while every turn runs a slice of about
 * 2 ms of a long message.
 */
function turnCounter(): { readonly turns: number; stop(): void } {
  let turns = 0;
  let timer = setTimeout(tick, 0);
  function tick(): void {
    turns++;
    timer = setTimeout(tick, 0);
  }
  return {
    get turns() {
      return turns;
    },
    stop() {
      clearTimeout(timer);
    },
  };
}

Deno.test("PerMessageDeflate lets other connections' sockets run while it works on a long message: a ping over serve() is answered first", async (t) => {
  // 16 MiB of JSON: 20 to 50 ms of zlib work each way, in slices of about
  // 2 ms, one a turn of the event loop. The ping's round trip (the server
  // reads the ping and writes the pong, the client reads the pong) took 3 or
  // 4 turns on Deno 2.9.6 (bytes that reach a socket get to JavaScript after
  // the next slice: the timer that starts it is due first), and up to 15 on
  // a loaded machine, as many as a whole decompress() of 16 MiB: one message
  // raced the pong and lost about once in 30 under load. So messages go on
  // back to back, each started in the reaction to the one before (no turn of
  // the event loop between them), until the pong has come, MAX_TURNS turns
  // have passed or MAX_MESSAGES messages are done: the pong must come while
  // one is in progress, within MAX_TURNS turns. Work done in one go, without
  // yielding to the sockets, answers the ping only after all the messages;
  // so did the setImmediate() yields of old, which Deno 2.9.6 followed with
  // a read of the sockets only after about 100 turns.
  const MAX_TURNS = 60;
  const MAX_MESSAGES = 12;
  const message = encoder.encode(jsonText(16 * MIB));
  const client = new PerMessageDeflate(PARAMS_15, "client");
  const server = new PerMessageDeflate(PARAMS_15, "server");
  try {
    const packed = await client.compress(message);
    const { server: echo, errors } = quietServer();
    await using _echo = echo;
    const ws = await deadline(
      connect(`ws://127.0.0.1:${echo.addr.port}/`),
      "connect",
    );
    // The connection is open and idle before the long messages start.
    await deadline(ws.ping(), "first ping");
    const cases: {
      name: string;
      start: () => Promise<Uint8Array>;
      check: (results: Uint8Array[]) => Promise<void>;
    }[] = [
      {
        name: "decompress()",
        start: () => server.decompress(packed),
        check: (results) => {
          for (const result of results) assertSameBytes(result, message);
          return Promise.resolve();
        },
      },
      {
        name: "compress()",
        start: () => client.compress(message),
        check: async (results) => {
          for (const result of results) {
            assert.ok(result.length < message.length / 4, "compressed");
            // The client's window ran on from the first compress() call: a
            // decompressor with the same history reads the messages back.
            assertSameBytes(await server.decompress(result), message);
          }
        },
      },
    ];
    for (const entry of cases) {
      await t.step(entry.name, async () => {
        const counter = turnCounter();
        const results: Uint8Array[] = [];
        // When the pong came: messages settled by then, and turns passed.
        let pongAfter: { messages: number; turns: number } | undefined;
        try {
          let next = entry.start();
          const pong = ws.ping().then(() => {
            pongAfter = { messages: results.length, turns: counter.turns };
          });
          const work = (async () => {
            while (true) {
              results.push(await next);
              if (
                pongAfter !== undefined || counter.turns >= MAX_TURNS ||
                results.length === MAX_MESSAGES
              ) {
                return;
              }
              next = entry.start();
            }
          })();
          await deadline(Promise.all([work, pong]), "messages and pong");
        } finally {
          counter.stop();
        }
        assert.ok(pongAfter !== undefined);
        assert.ok(
          pongAfter.messages < results.length,
          `the pong came after all ${results.length} messages (${pongAfter.turns} turns)`,
        );
        assert.ok(
          pongAfter.turns <= MAX_TURNS,
          `the pong came after ${pongAfter.turns} turns, ${pongAfter.messages} messages`,
        );
        await entry.check(results);
      });
    }
    assert.equal((await deadline(ws.close(1000), "close")).code, 1000);
    assert.deepEqual(errors, []);
  } finally {
    client.close();
    server.close();
  }
});

// ---------------------------------------------------------------------------
// The threshold: small messages go out uncompressed
// ---------------------------------------------------------------------------

Deno.test("serve() compresses messages from the threshold up and never with compress false", async (t) => {
  const cases: {
    name: string;
    deflate: boolean | PerMessageDeflateOptions;
    sends: { size: number; compress?: boolean; rsv1: boolean }[];
  }[] = [
    {
      name: "default threshold of 1024 bytes",
      deflate: true,
      sends: [
        { size: 1023, rsv1: false },
        { size: 1024, rsv1: true },
        { size: 100_000, rsv1: true },
        { size: 100_000, compress: false, rsv1: false },
      ],
    },
    {
      name: "threshold 100",
      deflate: { threshold: 100 },
      sends: [
        { size: 99, rsv1: false },
        { size: 100, rsv1: true },
        { size: 0, rsv1: false },
      ],
    },
    {
      name: "threshold 0 compresses even the empty message",
      deflate: { threshold: 0 },
      sends: [{ size: 0, rsv1: true }, { size: 1, rsv1: true }],
    },
  ];
  for (const entry of cases) {
    await t.step(entry.name, async () => {
      const { server, errors } = quietServer(
        { deflate: entry.deflate },
        async (ws) => {
          for (const send of entry.sends) {
            await ws.send(
              jsonText(send.size).slice(0, send.size),
              send.compress === undefined ? {} : { compress: send.compress },
            );
          }
          for await (const _ of ws) { /* until the client closes */ }
        },
      );
      await using _server = server;
      const client = await rawClient(server.addr.port, "permessage-deflate");
      using _conn = client.conn;
      const inflate = new PerMessageDeflate(PARAMS_15, "client");
      try {
        for (const send of entry.sends) {
          const frame = await client.frames.nextData();
          assert.equal(frame.opcode, 0x1);
          assert.equal(frame.rsv1, send.rsv1, `RSV1 for ${send.size} bytes`);
          const payload = frame.rsv1
            ? await inflate.decompress(frame.payload)
            : frame.payload;
          assert.equal(
            decoder.decode(payload),
            jsonText(send.size).slice(0, send.size),
          );
          if (frame.rsv1 && send.size > 1000) {
            assert.ok(frame.payload.length < send.size / 2, "compressed");
          }
        }
      } finally {
        inflate.close();
      }
      await writeAll(client.conn, frameBytes(0x8, closeBody(1000)));
      assert.equal(await expectClose(client.conn, client.frames, true), 1000);
      assert.deepEqual(errors, []);
    });
  }
});

Deno.test("connect() compresses messages from its threshold up and never with compress false", async () => {
  await using raw = rawServer();
  const accepted = raw.accept("permessage-deflate");
  const options: PerMessageDeflateOptions = { threshold: 10 };
  const ws = await deadline(
    connect(`ws://127.0.0.1:${raw.port}/`, { deflate: options }),
    "connect",
  );
  const peer = await accepted;
  using _conn = closing(peer.conn);
  assert.equal(peer.offer, "permessage-deflate; client_max_window_bits");
  const sends = [
    { data: "123456789", rsv1: false },
    { data: "1234567890", rsv1: true },
    { data: patternBytes(10, 1), rsv1: true },
    { data: jsonText(5000), compress: false, rsv1: false },
    { data: jsonText(5000), rsv1: true },
  ];
  for (const send of sends) {
    await ws.send(
      send.data,
      send.compress === undefined ? {} : { compress: send.compress },
    );
  }
  const inflate = new PerMessageDeflate(PARAMS_15, "server");
  try {
    for (const send of sends) {
      const frame = await peer.frames.nextData();
      assert.equal(frame.rsv1, send.rsv1);
      const payload = frame.rsv1
        ? await inflate.decompress(frame.payload)
        : frame.payload;
      if (typeof send.data === "string") {
        assert.equal(frame.opcode, 0x1);
        assert.equal(decoder.decode(payload), send.data);
      } else {
        assert.equal(frame.opcode, 0x2);
        assertSameBytes(payload, send.data);
      }
    }
  } finally {
    inflate.close();
  }
  const closed = ws.close(1000);
  assert.equal(await expectClose(peer.conn, peer.frames, false), 1000);
  closeQuietly(peer.conn);
  assert.equal((await deadline(closed, "close")).code, 1000);
});

// ---------------------------------------------------------------------------
// Messages accepted before close() go out before the close frame
// ---------------------------------------------------------------------------

Deno.test({
  name:
    "serve() sends a compressed message before the close frame when close() follows send() without await",
  async fn() {
    const text = jsonText(4096);
    const sent = Promise.withResolvers<unknown>();
    const { server } = quietServer({}, (ws) => {
      ws.send(text).then(() => sent.resolve("resolved"), sent.resolve);
      ws.send("after").catch(() => {});
      ws.close(1000, "bye");
    });
    await using _server = server;
    const ws = await deadline(
      connect(`ws://127.0.0.1:${server.addr.port}/`),
      "connect",
    );
    const received: unknown[] = [];
    await deadline(
      (async () => {
        for await (const message of ws) received.push(message);
      })(),
      "messages",
    );
    assert.equal(await deadline(sent.promise, "send"), "resolved");
    assert.deepEqual(received, [text, "after"]);
    assert.equal((await ws.closed).code, 1000);
  },
});

Deno.test("serve() compresses a view from messages({ copy: false }) after its iterator moved on", async () => {
  // The client sends uncompressed, so the server's messages are views of its
  // read buffer; its echoes are compressed later, while the handler is
  // already reading on (it does not await send()).
  const { server, errors } = quietServer({}, async (ws) => {
    for await (const message of ws.messages({ copy: false })) {
      ws.send(message).catch(() => {});
    }
  });
  await using _server = server;
  const ws = await deadline(
    connect(`ws://127.0.0.1:${server.addr.port}/`),
    "connect",
  );
  try {
    assert.match(ws.extensions, /permessage-deflate/);
    const sent = Array.from(
      { length: 60 },
      (_, i) => patternBytes(20_000, i + 1),
    );
    for (const payload of sent) await ws.send(payload, { compress: false });
    const iterator = ws[Symbol.asyncIterator]();
    for (let i = 0; i < sent.length; i++) {
      const { value } = await deadline(iterator.next(), `echo ${i}`);
      assertSameBytes(value, sent[i]!);
    }
    assert.equal((await deadline(ws.close(), "close")).code, 1000);
  } finally {
    await ws.close();
  }
  assert.deepEqual(errors, []);
});
