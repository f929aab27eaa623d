// Copyright 2026 the @rfc6455/websocket authors. MIT license.

import assert from "node:assert/strict";
import { concatAll, patternBytes, writeAll } from "./_util.ts";
import {
  checkConnectionLimits,
  type ConnectionOptions,
  WebSocketConnection,
  type WebSocketMessage,
} from "../connection.ts";
import { ConnectionClosedError, ProtocolError } from "../errors.ts";
import { encodeFrame, type Frame, FrameDecoder, OPCODE } from "../frame.ts";
import { ReadBuffer } from "../_readbuffer.ts";
import { CONNECTION_OPTION_KEYS } from "../_socket.ts";
import { giveSlab, isSlab, slabCounts, takeSlab } from "../_simd.ts";
import { FrameWriter } from "../_writer.ts";
import { PerMessageDeflate } from "../deflate.ts";

// ---------------------------------------------------------------------------
// Helpers

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { ignoreBOM: true });

/** permessage-deflate parameters without context takeover, both ways. */
const NO_TAKEOVER = {
  serverNoContextTakeover: true,
  clientNoContextTakeover: true,
  serverMaxWindowBits: 15,
  clientMaxWindowBits: 15,
};

/** A fixed masking key for the frames a raw "client" writes. */
const RAW_MASK = new Uint8Array([0x37, 0xfa, 0x21, 0x3d]);

/** The options every test starts from: no keepalive timers. */
type TestOptions = Omit<ConnectionOptions, "role">;

/**
 * Resolves or rejects like `promise`, or rejects with a `TimeoutError` after
 * `ms` milliseconds; the timer is always cleared, so no test leaks it.
 */
async function within<T>(
  promise: Promise<T>,
  ms = 3000,
  what = "the operation",
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new DOMException(`Timed out after ${ms} ms: ${what}`, "TimeoutError"),
        ),
      ms,
    );
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Lets pending microtasks and already-due I/O callbacks run. */
async function settle(turns = 5): Promise<void> {
  for (let i = 0; i < turns; i++) {
    await new Promise<void>((resolve) => setTimeout(resolve, 0));
  }
}

/** Whether `promise` settled once the queued work has run. */
async function hasSettled(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  promise.then(() => settled = true, () => settled = true);
  await settle();
  return settled;
}

function bytes(...values: number[]): Uint8Array {
  return new Uint8Array(values);
}

function closePayload(code: number, reason = ""): Uint8Array {
  const reasonBytes = encoder.encode(reason);
  const payload = new Uint8Array(2 + reasonBytes.length);
  payload[0] = code >>> 8;
  payload[1] = code & 0xff;
  payload.set(reasonBytes, 2);
  return payload;
}

function closeCodeOf(frame: Frame): number {
  assert.equal(frame.opcode, OPCODE.Close, "expected a close frame");
  if (frame.payload.length === 0) return 1005;
  return (frame.payload[0]! << 8) | frame.payload[1]!;
}

/** Two connections over an in-memory pair of cross-wired streams. */
function pair(
  clientOptions: TestOptions = {},
  serverOptions: TestOptions = {},
): { client: WebSocketConnection; server: WebSocketConnection } {
  const a = new TransformStream<Uint8Array, Uint8Array>();
  const b = new TransformStream<Uint8Array, Uint8Array>();
  const client = new WebSocketConnection(
    { readable: a.readable, writable: b.writable },
    { pingInterval: 0, ...clientOptions, role: "client" },
  );
  const server = new WebSocketConnection(
    { readable: b.readable, writable: a.writable },
    { pingInterval: 0, ...serverOptions, role: "server" },
  );
  return { client, server };
}

/** Closes a pair from the client side and waits for both ends. */
async function closePair(
  client: WebSocketConnection,
  server: WebSocketConnection,
): Promise<void> {
  if (client.isOpen) client.close().catch(() => {});
  await within(client.closed, 3000, "client closed");
  await within(server.closed, 3000, "server closed");
}

interface SendFrameOptions {
  fin?: boolean;
  rsv1?: boolean;
}

/**
 * One {@linkcode WebSocketConnection} driven by a raw peer: the test writes
 * hand-made frames into it (masked when the connection is a server, since
 * they then come from a client) and decodes every frame it writes.
 */
class RawPeer {
  readonly conn: WebSocketConnection;
  /** Every chunk the connection wrote, as read. */
  readonly received: Uint8Array[] = [];
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #decoder: FrameDecoder;
  readonly #masked: boolean;
  #frames: Frame[] = [];
  #ended = false;

  constructor(options: ConnectionOptions) {
    const toConn = new TransformStream<Uint8Array, Uint8Array>();
    const fromConn = new TransformStream<Uint8Array, Uint8Array>();
    this.conn = new WebSocketConnection(
      { readable: toConn.readable, writable: fromConn.writable },
      { pingInterval: 0, ...options },
    );
    this.#writer = toConn.writable.getWriter();
    this.#reader = fromConn.readable.getReader();
    this.#masked = options.role === "server";
    // A server's frames are unmasked; a client's are masked (§5.1).
    this.#decoder = new FrameDecoder({
      role: options.role === "server" ? "client" : "server",
      maxPayloadSize: 1 << 30,
    });
  }

  /** Writes raw bytes; the promise resolves when the connection read them. */
  write(chunk: Uint8Array): Promise<void> {
    const promise = this.#writer.write(chunk);
    promise.catch(() => {});
    return promise;
  }

  /** Encodes one frame as the peer would send it. */
  frame(
    opcode: number,
    payload: Uint8Array | string = new Uint8Array(0),
    options: SendFrameOptions = {},
  ): Uint8Array {
    const frame: Frame = {
      fin: options.fin ?? true,
      rsv1: options.rsv1 ?? false,
      rsv2: false,
      rsv3: false,
      opcode,
      payload: typeof payload === "string" ? encoder.encode(payload) : payload,
    };
    if (this.#masked) frame.mask = RAW_MASK;
    return encodeFrame(frame);
  }

  /** Writes one frame. */
  send(
    opcode: number,
    payload: Uint8Array | string = new Uint8Array(0),
    options: SendFrameOptions = {},
  ): Promise<void> {
    return this.write(this.frame(opcode, payload, options));
  }

  /** The next frame the connection wrote. */
  next(ms = 3000): Promise<Frame> {
    return within(this.#nextFrame(), ms, "a frame from the connection");
  }

  async #nextFrame(): Promise<Frame> {
    while (this.#frames.length === 0) {
      const { value, done } = await this.#reader.read();
      if (done) throw new Error("The connection ended its output");
      this.received.push(value);
      this.#frames.push(...this.#decoder.push(value));
    }
    return this.#frames.shift()!;
  }

  /** Reads frames until the connection ends its output. */
  rest(ms = 3000): Promise<Frame[]> {
    return within(this.#rest(), ms, "the end of the connection's output");
  }

  async #rest(): Promise<Frame[]> {
    const frames = this.#frames;
    this.#frames = [];
    while (true) {
      const { value, done } = await this.#reader.read();
      if (done) break;
      this.received.push(value);
      frames.push(...this.#decoder.push(value));
    }
    this.#decoder.finish();
    return frames;
  }

  /** Reads the next frame and checks it is a close with `code`. */
  async expectClose(code: number): Promise<string> {
    const frame = await this.next();
    assert.equal(closeCodeOf(frame), code);
    return decoder.decode(frame.payload.subarray(2));
  }

  /** Ends the bytes to the connection (as a peer closing TCP would). */
  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#writer.close().catch(() => {});
  }

  /**
   * Ends the test: ends the input, drains the output and waits for `closed`,
   * then releases the streams.
   */
  async finish(): Promise<void> {
    this.end();
    await this.rest().catch(() => {});
    await within(this.conn.closed, 3000, "closed");
    this.#writer.releaseLock();
    this.#reader.releaseLock();
  }
}

/** Asserts that `promise` rejects with a ProtocolError with `closeCode`. */
async function rejectsWithCloseCode(
  promise: Promise<unknown>,
  closeCode: number,
): Promise<void> {
  await assert.rejects(within(promise), (error: unknown) => {
    assert.ok(error instanceof ProtocolError, String(error));
    assert.equal(error.closeCode, closeCode);
    return true;
  });
}

/** The next message of a connection, bounded. */
async function nextMessage(
  conn: WebSocketConnection,
): Promise<WebSocketMessage> {
  const iterator = conn[Symbol.asyncIterator]();
  const result = await within(iterator.next(), 3000, "a message");
  assert.equal(result.done, false, "expected a message, got the end");
  return result.value as WebSocketMessage;
}

/** Collects the messages until iteration ends, bounded. */
function collect(conn: WebSocketConnection): Promise<WebSocketMessage[]> {
  return within(Array.fromAsync(conn), 5000, "the end of the messages");
}

/**
 * Drives a server connection with `chunks` from a raw client and checks it
 * fails with `code`: the close frame it sends, the iterator's ProtocolError
 * and a `closed` with `wasClean: false`.
 */
async function expectFailure(
  chunks: (raw: RawPeer) => Uint8Array[],
  code: number,
  options: TestOptions = {},
  role: "client" | "server" = "server",
): Promise<void> {
  const raw = new RawPeer({ ...options, role });
  const messages = Array.fromAsync(raw.conn);
  messages.catch(() => {});
  for (const chunk of chunks(raw)) raw.write(chunk);
  let frame = await raw.next();
  while (frame.opcode === OPCODE.Pong) frame = await raw.next();
  assert.equal(closeCodeOf(frame), code);
  await rejectsWithCloseCode(messages, code);
  await raw.finish();
  const info = await raw.conn.closed;
  assert.equal(info.wasClean, false);
}

// ---------------------------------------------------------------------------
// Messages

Deno.test("WebSocketConnection delivers text as strings and binary as bytes", async (t) => {
  await t.step("RFC 6455 §5.6 data frames over an in-memory pair", async () => {
    const { client, server } = pair();
    await client.send("héllo");
    await client.send(bytes(1, 2, 3));
    assert.equal(await nextMessage(server), "héllo");
    assert.deepEqual(await nextMessage(server), bytes(1, 2, 3));
    await server.send("back");
    assert.equal(await nextMessage(client), "back");
    await closePair(client, server);
  });

  await t.step(
    "send() takes a string, Uint8Array, ArrayBuffer or DataView",
    async () => {
      const { client, server } = pair();
      const buffer = new Uint8Array([9, 8, 7, 6, 5]).buffer;
      await client.send("text");
      await client.send(bytes(1, 2));
      await client.send(buffer);
      await client.send(new DataView(buffer, 1, 3));
      await client.send(new Uint16Array([0x0102]));
      await client.send(new Uint8Array(0));
      await client.send("");
      assert.equal(await nextMessage(server), "text");
      assert.deepEqual(await nextMessage(server), bytes(1, 2));
      assert.deepEqual(await nextMessage(server), bytes(9, 8, 7, 6, 5));
      assert.deepEqual(await nextMessage(server), bytes(8, 7, 6));
      const u16 = await nextMessage(server);
      assert.ok(u16 instanceof Uint8Array);
      assert.equal(u16.length, 2);
      assert.deepEqual(await nextMessage(server), new Uint8Array(0));
      assert.equal(await nextMessage(server), "");
      await closePair(client, server);
    },
  );

  await t.step(
    "the binary option turns strings into binary and bytes into text",
    async () => {
      const { client, server } = pair();
      await client.send("abc", { binary: true });
      await client.send(encoder.encode("déf"), { binary: false });
      await client.send("ghi", { binary: false });
      await client.send(bytes(1), { binary: true });
      assert.deepEqual(await nextMessage(server), encoder.encode("abc"));
      assert.equal(await nextMessage(server), "déf");
      assert.equal(await nextMessage(server), "ghi");
      assert.deepEqual(await nextMessage(server), bytes(1));
      await closePair(client, server);
    },
  );

  await t.step(
    "send() throws TypeError for data that is not a string or bytes",
    async () => {
      const { client, server } = pair();
      assert.throws(
        () => client.send(42 as unknown as string),
        TypeError,
      );
      await closePair(client, server);
    },
  );

  await t.step(
    "bufferedAmount counts the bytes not yet handed to the transport",
    async () => {
      const { client, server } = pair();
      assert.equal(client.bufferedAmount, 0);
      const sent = client.send("Hello");
      // 2 header bytes, 4 mask bytes and 5 payload bytes wait for the reader.
      assert.equal(client.bufferedAmount, 11);
      await within(sent);
      assert.equal(await nextMessage(server), "Hello");
      await within(client.ping());
      assert.equal(client.bufferedAmount, 0);
      await closePair(client, server);
    },
  );

  await t.step(
    "protocol, extensions and url come from the options",
    async () => {
      const { client, server } = pair({
        protocol: "chat.v2",
        extensions: "x-test",
        url: "ws://example.com/feed",
      });
      assert.equal(client.protocol, "chat.v2");
      assert.equal(client.extensions, "x-test");
      assert.equal(client.url, "ws://example.com/feed");
      assert.equal(server.protocol, "");
      assert.equal(server.extensions, "");
      assert.equal(server.url, "");
      assert.equal(client.isOpen, true);
      await closePair(client, server);
      assert.equal(client.isOpen, false);
    },
  );
});

Deno.test("WebSocketConnection exposes messages as readable and writable streams", async (t) => {
  await t.step(
    "WHATWG WebSocketStream shape: writable to readable",
    async () => {
      const { client, server } = pair();
      const writer = client.writable.getWriter();
      const reader = server.readable.getReader();
      await within(writer.write("one"));
      await within(writer.write(bytes(2)));
      assert.deepEqual(await within(reader.read()), {
        value: "one",
        done: false,
      });
      assert.deepEqual(await within(reader.read()), {
        value: bytes(2),
        done: false,
      });
      // Closing the writable closes the connection with 1000.
      await within(writer.close());
      assert.deepEqual(await within(reader.read()), {
        value: undefined,
        done: true,
      });
      reader.releaseLock();
      assert.deepEqual(await within(server.closed), {
        code: 1000,
        reason: "",
        wasClean: true,
      });
      assert.deepEqual(await within(client.closed), {
        code: 1000,
        reason: "",
        wasClean: true,
      });
    },
  );

  await t.step(
    "cancelling the readable closes the connection with 1000",
    async () => {
      const { client, server } = pair();
      await within(server.readable.cancel());
      for await (const message of client) assert.fail(`got ${message}`);
      assert.equal((await within(client.closed)).code, 1000);
      assert.equal((await within(server.closed)).code, 1000);
    },
  );

  await t.step("a piped echo keeps the order of messages", async () => {
    const { client, server } = pair();
    const echo = server.readable.pipeTo(server.writable);
    const sent = Array.from({ length: 50 }, (_, i) => `message ${i}`);
    for (const message of sent) await client.send(message);
    const received: WebSocketMessage[] = [];
    for await (const message of client) {
      received.push(message);
      if (received.length === sent.length) break;
    }
    assert.deepEqual(received, sent);
    await closePair(client, server);
    await within(echo);
  });
});

// ---------------------------------------------------------------------------
// Fragmentation

Deno.test("WebSocketConnection reassembles fragmented messages", async (t) => {
  await t.step(
    "RFC 6455 §5.4 text in many fragments, empty ones included",
    async () => {
      const raw = new RawPeer({ role: "server" });
      const parts = ["Hel", "", "lo, ", "wor", "", "ld"];
      raw.send(OPCODE.Text, parts[0]!, { fin: false });
      for (const part of parts.slice(1, -1)) {
        raw.send(OPCODE.Continuation, part, { fin: false });
      }
      raw.send(OPCODE.Continuation, parts.at(-1)!, { fin: true });
      assert.equal(await nextMessage(raw.conn), "Hello, world");
      raw.send(OPCODE.Close, closePayload(1000));
      await raw.expectClose(1000);
      await raw.finish();
    },
  );

  await t.step(
    "RFC 6455 §5.4 binary in 1000 fragments, ending with an empty one",
    async () => {
      const raw = new RawPeer({ role: "server" });
      const chunks: Uint8Array[] = [raw.frame(OPCODE.Binary, bytes(0), {
        fin: false,
      })];
      for (let i = 1; i < 1000; i++) {
        chunks.push(raw.frame(OPCODE.Continuation, bytes(i & 0xff), {
          fin: false,
        }));
      }
      chunks.push(raw.frame(OPCODE.Continuation, bytes(), { fin: true }));
      // All fragments in one write, then split at odd places.
      const all = concatAll(chunks);
      for (let i = 0; i < all.length; i += 777) {
        raw.write(all.subarray(i, i + 777));
      }
      const message = await nextMessage(raw.conn);
      assert.ok(message instanceof Uint8Array);
      assert.equal(message.length, 1000);
      for (let i = 0; i < 1000; i++) assert.equal(message[i], i & 0xff);
      raw.send(OPCODE.Close);
      await raw.expectClose(1000);
      await raw.finish();
    },
  );

  await t.step(
    "RFC 6455 §5.4 a message of only empty fragments is empty",
    async () => {
      const raw = new RawPeer({ role: "server" });
      raw.send(OPCODE.Text, "", { fin: false });
      raw.send(OPCODE.Continuation, "", { fin: false });
      raw.send(OPCODE.Continuation, "", { fin: true });
      raw.send(OPCODE.Binary, bytes(), { fin: false });
      raw.send(OPCODE.Continuation, bytes(), { fin: true });
      assert.equal(await nextMessage(raw.conn), "");
      assert.deepEqual(await nextMessage(raw.conn), new Uint8Array(0));
      raw.send(OPCODE.Close);
      await raw.expectClose(1000);
      await raw.finish();
    },
  );

  await t.step(
    "RFC 6455 §5.4 a ping between fragments is answered without breaking the message",
    async () => {
      const raw = new RawPeer({ role: "server" });
      raw.send(OPCODE.Text, "frag", { fin: false });
      raw.send(OPCODE.Ping, "in between");
      const pong = await raw.next();
      assert.equal(pong.opcode, OPCODE.Pong);
      assert.equal(decoder.decode(pong.payload), "in between");
      raw.send(OPCODE.Continuation, "ment", { fin: false });
      raw.send(OPCODE.Pong, "unsolicited");
      raw.send(OPCODE.Continuation, "ed", { fin: true });
      assert.equal(await nextMessage(raw.conn), "fragmented");
      raw.send(OPCODE.Close);
      await raw.expectClose(1000);
      await raw.finish();
    },
  );

  await t.step(
    "RFC 6455 §5.4 a continuation without a start fails with 1002",
    async () => {
      await expectFailure((raw) => [raw.frame(OPCODE.Continuation, "x")], 1002);
    },
  );

  await t.step(
    "RFC 6455 §5.4 a new data frame inside a fragmented message fails with 1002",
    async () => {
      await expectFailure(
        (raw) => [
          raw.frame(OPCODE.Text, "a", { fin: false }),
          raw.frame(OPCODE.Binary, bytes(1)),
        ],
        1002,
      );
      await expectFailure(
        (raw) => [
          raw.frame(OPCODE.Binary, bytes(1), { fin: false }),
          raw.frame(OPCODE.Text, "a", { fin: false }),
        ],
        1002,
      );
    },
  );
});

// ---------------------------------------------------------------------------
// UTF-8

Deno.test("WebSocketConnection validates UTF-8 and fails fast with 1007", async (t) => {
  await t.step("RFC 6455 §8.1 invalid text in a single frame", async () => {
    await expectFailure((raw) => [raw.frame(OPCODE.Text, bytes(0xff))], 1007);
    await expectFailure(
      (raw) => [raw.frame(OPCODE.Text, bytes(0xed, 0xa0, 0x80))], // a surrogate
      1007,
    );
    await expectFailure(
      (raw) => [raw.frame(OPCODE.Text, bytes(0xc0, 0xaf))], // overlong
      1007,
    );
  });

  await t.step(
    "RFC 6455 §8.1 a first fragment with invalid bytes fails before the rest arrives",
    async () => {
      const raw = new RawPeer({ role: "server" });
      const messages = Array.fromAsync(raw.conn);
      messages.catch(() => {});
      raw.send(OPCODE.Text, bytes(0x61, 0xff), { fin: false });
      // No further fragment is ever sent: the close must come anyway.
      await raw.expectClose(1007);
      await rejectsWithCloseCode(messages, 1007);
      await raw.finish();
    },
  );

  await t.step(
    "RFC 6455 §8.1 the failure comes at the fragment where the bytes go wrong",
    async () => {
      const raw = new RawPeer({ role: "server" });
      const messages = Array.fromAsync(raw.conn);
      messages.catch(() => {});
      // "€" is e2 82 ac: its first two bytes are a valid prefix.
      raw.send(OPCODE.Text, bytes(0x61, 0xe2, 0x82), { fin: false });
      raw.send(OPCODE.Ping, "still fine");
      const pong = await raw.next();
      assert.equal(pong.opcode, OPCODE.Pong);
      assert.equal(decoder.decode(pong.payload), "still fine");
      raw.send(OPCODE.Continuation, bytes(0x28), { fin: false });
      await raw.expectClose(1007);
      await rejectsWithCloseCode(messages, 1007);
      await raw.finish();
    },
  );

  await t.step(
    "RFC 6455 §8.1 a character split across fragments is fine",
    async () => {
      const raw = new RawPeer({ role: "server" });
      const euro = encoder.encode("a€b😀");
      raw.send(OPCODE.Text, euro.subarray(0, 2), { fin: false });
      raw.send(OPCODE.Continuation, euro.subarray(2, 3), { fin: false });
      raw.send(OPCODE.Continuation, bytes(), { fin: false });
      raw.send(OPCODE.Continuation, euro.subarray(3, 6), { fin: false });
      for (let i = 6; i < euro.length - 1; i++) {
        raw.send(OPCODE.Continuation, euro.subarray(i, i + 1), { fin: false });
      }
      raw.send(OPCODE.Continuation, euro.subarray(euro.length - 1), {
        fin: true,
      });
      assert.equal(await nextMessage(raw.conn), "a€b😀");
      // The streaming decoder starts fresh for the next message.
      raw.send(OPCODE.Text, "next");
      assert.equal(await nextMessage(raw.conn), "next");
      raw.send(OPCODE.Close);
      await raw.expectClose(1000);
      await raw.finish();
    },
  );

  await t.step(
    "RFC 6455 §8.1 a sequence truncated at the end of the message fails",
    async () => {
      await expectFailure(
        (raw) => [
          raw.frame(OPCODE.Text, bytes(0x61, 0xe2, 0x82), { fin: false }),
          raw.frame(OPCODE.Continuation, bytes(), { fin: true }),
        ],
        1007,
      );
      await expectFailure(
        (raw) => [raw.frame(OPCODE.Text, bytes(0x61, 0xe2, 0x82))],
        1007,
      );
    },
  );

  await t.step(
    "RFC 6455 §8.1 bytes sent as text must be UTF-8 too",
    async () => {
      const { client, server } = pair();
      const messages = Array.fromAsync(server);
      messages.catch(() => {});
      await client.send(bytes(0xff), { binary: false });
      await rejectsWithCloseCode(messages, 1007);
      assert.equal((await within(client.closed)).code, 1007);
      await within(server.closed);
    },
  );
});

// ---------------------------------------------------------------------------
// Pings

Deno.test("WebSocketConnection answers pings and measures round trips", async (t) => {
  await t.step(
    "RFC 6455 §5.5.2 a ping is answered with a pong of the same payload",
    async () => {
      for (const role of ["server", "client"] as const) {
        const raw = new RawPeer({ role });
        const payload = new Uint8Array(125).map((_, i) => i);
        raw.send(OPCODE.Ping, payload);
        const pong = await raw.next();
        assert.equal(pong.opcode, OPCODE.Pong);
        assert.deepEqual(pong.payload, payload);
        raw.send(OPCODE.Ping);
        const empty = await raw.next();
        assert.equal(empty.opcode, OPCODE.Pong);
        assert.equal(empty.payload.length, 0);
        raw.send(OPCODE.Close);
        await raw.expectClose(1000);
        await raw.finish();
      }
    },
  );

  await t.step(
    "RFC 6455 §5.5.2 ping() resolves with the round-trip time",
    async () => {
      const { client, server } = pair();
      const rtt = await within(client.ping());
      assert.equal(typeof rtt, "number");
      assert.ok(rtt >= 0);
      assert.ok(await within(server.ping("payload")) >= 0);
      assert.ok(await within(client.ping(bytes(1, 2, 3))) >= 0);
      assert.ok(await within(client.ping(new ArrayBuffer(4))) >= 0);
      await closePair(client, server);
    },
  );

  await t.step(
    "RFC 6455 §5.5.3 a pong answering several pings resolves the earlier ones",
    async () => {
      const raw = new RawPeer({ role: "server" });
      const pings = [raw.conn.ping(), raw.conn.ping(), raw.conn.ping()];
      const payloads: Uint8Array[] = [];
      for (let i = 0; i < 3; i++) {
        const frame = await raw.next();
        assert.equal(frame.opcode, OPCODE.Ping);
        payloads.push(frame.payload);
      }
      // Distinct payloads: each ping can be told apart.
      assert.notDeepEqual(payloads[0], payloads[1]);
      assert.notDeepEqual(payloads[1], payloads[2]);
      raw.send(OPCODE.Pong, payloads[1]!);
      const [first, second] = await within(Promise.all(pings.slice(0, 2)));
      assert.ok(first! >= 0 && second! >= 0);
      assert.equal(await hasSettled(pings[2]!), false);
      raw.send(OPCODE.Pong, payloads[2]!);
      assert.ok(await within(pings[2]!) >= 0);
      raw.send(OPCODE.Close);
      await raw.expectClose(1000);
      await raw.finish();
    },
  );

  await t.step("RFC 6455 §5.5.3 an unsolicited pong is ignored", async () => {
    const raw = new RawPeer({ role: "server" });
    raw.send(OPCODE.Pong, "nobody asked");
    raw.send(OPCODE.Pong);
    raw.send(OPCODE.Text, "still open");
    assert.equal(await nextMessage(raw.conn), "still open");
    assert.equal(raw.conn.isOpen, true);
    raw.send(OPCODE.Close);
    await raw.expectClose(1000);
    await raw.finish();
  });

  await t.step(
    "RFC 6455 §5.5 a ping payload over 125 bytes rejects with RangeError",
    async () => {
      const { client, server } = pair();
      await assert.rejects(client.ping(new Uint8Array(126)), RangeError);
      await assert.rejects(client.ping("x".repeat(126)), RangeError);
      assert.ok(await within(client.ping(new Uint8Array(125))) >= 0);
      await closePair(client, server);
    },
  );

  await t.step(
    "RFC 6455 §7 ping() on a closed connection rejects with ConnectionClosedError",
    async () => {
      const { client, server } = pair();
      await closePair(client, server);
      await assert.rejects(client.ping(), ConnectionClosedError);
      await assert.rejects(server.ping(), ConnectionClosedError);
    },
  );

  await t.step(
    "RFC 6455 §7 a pending ping rejects when the connection closes",
    async () => {
      const raw = new RawPeer({ role: "server" });
      const ping = raw.conn.ping();
      assert.equal((await raw.next()).opcode, OPCODE.Ping);
      raw.send(OPCODE.Close, closePayload(1001));
      await raw.expectClose(1001);
      await assert.rejects(within(ping), ConnectionClosedError);
      await raw.finish();
    },
  );

  await t.step(
    "RFC 6455 §5.5.2 pings are answered after our close until the peer's close arrives",
    async () => {
      for (const role of ["server", "client"] as const) {
        const raw = new RawPeer({ role });
        const closing = raw.conn.close(4000, "leaving");
        assert.equal(await raw.expectClose(4000), "leaving");
        raw.send(OPCODE.Ping, "still there?");
        const pong = await raw.next();
        assert.equal(pong.opcode, OPCODE.Pong);
        assert.equal(decoder.decode(pong.payload), "still there?");
        raw.send(OPCODE.Close, closePayload(4000, "leaving"));
        // A client waits for the server to end TCP.
        await raw.finish();
        assert.deepEqual(await within(closing), {
          code: 4000,
          reason: "leaving",
          wasClean: true,
        });
      }
    },
  );
});

Deno.test("WebSocketConnection keeps the connection alive with pings", async (t) => {
  await t.step(
    "RFC 6455 §5.5.2 a peer that never answers is closed with 1011",
    async () => {
      const raw = new RawPeer({
        role: "server",
        pingInterval: 50,
        pingTimeout: 100,
        closeTimeout: 100,
      });
      const messages = Array.fromAsync(raw.conn);
      messages.catch(() => {});
      const ping = await raw.next();
      assert.equal(ping.opcode, OPCODE.Ping);
      // No pong: the connection gives up with 1011 and, as nobody answers its
      // close either, ends the transport after closeTimeout.
      await raw.expectClose(1011);
      await assert.rejects(within(messages));
      assert.deepEqual(await within(raw.conn.closed), {
        code: 1006,
        reason: "",
        wasClean: false,
      });
      await raw.finish();
    },
  );

  await t.step(
    "RFC 6455 §5.5.2 a peer that answers stays connected over several intervals",
    async () => {
      const raw = new RawPeer({
        role: "client",
        pingInterval: 50,
        pingTimeout: 1000,
      });
      for (let i = 0; i < 4; i++) {
        const ping = await raw.next(2000);
        assert.equal(ping.opcode, OPCODE.Ping);
        assert.ok(ping.mask !== undefined, "a client masks its pings");
        raw.send(OPCODE.Pong, ping.payload);
      }
      assert.equal(raw.conn.isOpen, true);
      const closing = raw.conn.close(1000, "enough");
      let frame = await raw.next();
      while (frame.opcode === OPCODE.Ping) frame = await raw.next();
      assert.equal(closeCodeOf(frame), 1000);
      raw.send(OPCODE.Close, closePayload(1000));
      raw.end();
      assert.deepEqual(await within(closing), {
        code: 1000,
        reason: "",
        wasClean: true,
      });
      await raw.finish();
    },
  );

  await t.step(
    "RFC 6455 §5.5.2 with pingTimeout 0 a peer that never answers still gets a ping every interval",
    async () => {
      const raw = new RawPeer({
        role: "server",
        pingInterval: 30,
        pingTimeout: 0,
      });
      // No pong for four intervals: the connection stays open and pings on,
      // the same ping again (one pending ping, however long the silence).
      const first = await raw.next();
      assert.equal(first.opcode, OPCODE.Ping);
      for (let i = 0; i < 3; i++) {
        const again = await raw.next();
        assert.equal(again.opcode, OPCODE.Ping);
        assert.deepEqual(again.payload, first.payload);
      }
      assert.equal(raw.conn.isOpen, true);
      // A pong answers it, and the pings after it are new ones.
      raw.send(OPCODE.Pong, first.payload);
      let next = await raw.next();
      while (String(next.payload) === String(first.payload)) {
        next = await raw.next();
      }
      assert.equal(next.opcode, OPCODE.Ping);
      const closing = raw.conn.close(1000);
      let frame = await raw.next();
      while (frame.opcode === OPCODE.Ping) frame = await raw.next();
      assert.equal(closeCodeOf(frame), 1000);
      raw.send(OPCODE.Close, closePayload(1000));
      raw.end();
      assert.equal((await within(closing)).code, 1000);
      await raw.finish();
    },
  );

  await t.step(
    "RFC 6455 §5.5.2 two connections keep each other alive",
    async () => {
      const { client, server } = pair(
        { pingInterval: 30, pingTimeout: 1000 },
        { pingInterval: 40, pingTimeout: 1000 },
      );
      // Round trips of our own while the keepalive runs in the background.
      for (let i = 0; i < 5; i++) {
        await within(client.ping());
        await within(new Promise((resolve) => setTimeout(resolve, 30)));
      }
      assert.equal(client.isOpen, true);
      assert.equal(server.isOpen, true);
      await closePair(client, server);
    },
  );
});

// ---------------------------------------------------------------------------
// Closing

Deno.test("WebSocketConnection validates the code and reason of close()", async (t) => {
  await t.step(
    "RFC 6455 §7.4 codes that may not be sent throw RangeError",
    async () => {
      const { client, server } = pair();
      for (
        const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 1000.5]
      ) {
        assert.throws(() => client.close(code), RangeError, `code ${code}`);
      }
      assert.throws(() => client.close(Number.NaN), RangeError);
      assert.equal(client.isOpen, true);
      await closePair(client, server);
    },
  );

  await t.step(
    "RFC 6455 §5.5 a reason over 123 UTF-8 bytes throws RangeError",
    async () => {
      const { client, server } = pair();
      assert.throws(() => client.close(1000, "é".repeat(62)), RangeError);
      assert.throws(() => client.close(1000, "x".repeat(124)), RangeError);
      const reason = "é".repeat(61) + "x"; // 123 bytes
      const closing = client.close(4999, reason);
      assert.deepEqual(await within(server.closed), {
        code: 4999,
        reason,
        wasClean: true,
      });
      assert.equal((await within(closing)).code, 4999);
    },
  );

  await t.step(
    "RFC 6455 §7.4.2 every sendable code reaches the peer",
    async () => {
      for (
        const code of [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999]
      ) {
        const { client, server } = pair();
        client.close(code, "r");
        assert.deepEqual(await within(server.closed), {
          code,
          reason: "r",
          wasClean: true,
        });
        // The peer's answer carries the same code and reason back.
        assert.deepEqual(await within(client.closed), {
          code,
          reason: "r",
          wasClean: true,
        });
      }
    },
  );
});

Deno.test("WebSocketConnection runs the close handshake", async (t) => {
  await t.step(
    "RFC 6455 §7.1.2 messages sent before close() arrive before the close",
    async () => {
      const { client, server } = pair();
      const received = collect(server);
      const sent: WebSocketMessage[] = [];
      for (let i = 0; i < 200; i++) {
        const message = i % 2 === 0
          ? `message ${i}`
          : new Uint8Array(i * 50).fill(i & 0xff);
        sent.push(message);
        client.send(message); // not awaited: nothing accepted may be lost
      }
      const closing = client.close(1000, "bye");
      assert.deepEqual(await received, sent);
      assert.deepEqual(await within(server.closed), {
        code: 1000,
        reason: "bye",
        wasClean: true,
      });
      assert.deepEqual(await within(closing), {
        code: 1000,
        reason: "bye",
        wasClean: true,
      });
    },
  );

  await t.step("RFC 6455 §7.1.2 the server may close first", async () => {
    const { client, server } = pair();
    const clientMessages = collect(client);
    await server.send("last words");
    const closing = server.close(1001, "shutdown");
    assert.deepEqual(await clientMessages, ["last words"]);
    assert.deepEqual(await within(closing), {
      code: 1001,
      reason: "shutdown",
      wasClean: true,
    });
    assert.deepEqual(await within(client.closed), {
      code: 1001,
      reason: "shutdown",
      wasClean: true,
    });
  });

  await t.step(
    "RFC 6455 §5.5.1 a peer's close is answered with the same code and reason",
    async () => {
      const raw = new RawPeer({ role: "server" });
      raw.send(OPCODE.Close, closePayload(4000, "custom"));
      assert.equal(await raw.expectClose(4000), "custom");
      assert.deepEqual(await within(raw.conn.closed), {
        code: 4000,
        reason: "custom",
        wasClean: true,
      });
      assert.equal(raw.conn.isOpen, false);
      await raw.finish();
    },
  );

  await t.step(
    "RFC 6455 §7.1.5 an empty close is answered with 1000 and reported as 1005",
    async () => {
      const raw = new RawPeer({ role: "server" });
      raw.send(OPCODE.Close);
      await raw.expectClose(1000);
      assert.deepEqual(await within(raw.conn.closed), {
        code: 1005,
        reason: "",
        wasClean: true,
      });
      await raw.finish();
    },
  );

  await t.step(
    "RFC 6455 §7.1.1 a client waits for the server to end the transport",
    async () => {
      const raw = new RawPeer({ role: "client" });
      raw.send(OPCODE.Close, closePayload(1000, "done"));
      await raw.expectClose(1000);
      assert.equal(await hasSettled(raw.conn.closed), false);
      raw.end();
      assert.deepEqual(await within(raw.conn.closed), {
        code: 1000,
        reason: "done",
        wasClean: true,
      });
      await raw.finish();
    },
  );

  await t.step(
    "RFC 6455 §7.1.1 a server ends the transport after the handshake",
    async () => {
      const raw = new RawPeer({ role: "server" });
      const closing = raw.conn.close(1000);
      await raw.expectClose(1000);
      raw.send(OPCODE.Close, closePayload(1000));
      // The server ends its output without waiting for the client.
      assert.deepEqual(await raw.rest(), []);
      assert.deepEqual(await within(closing), {
        code: 1000,
        reason: "",
        wasClean: true,
      });
      await raw.finish();
    },
  );

  await t.step(
    "RFC 6455 §7.1.1 close timeout: a peer that never answers the close",
    async () => {
      for (const role of ["server", "client"] as const) {
        const raw = new RawPeer({ role, closeTimeout: 100 });
        const closing = raw.conn.close(1000, "bye");
        assert.equal(await raw.expectClose(1000), "bye");
        // The raw peer reads but never answers: the transport is closed.
        assert.deepEqual(await raw.rest(), []);
        assert.deepEqual(await within(closing), {
          code: 1006,
          reason: "",
          wasClean: false,
        });
        await raw.finish();
      }
    },
  );

  await t.step(
    "RFC 6455 §7.1.1 close timeout: a peer that reads nothing at all",
    async () => {
      for (const role of ["server", "client"] as const) {
        const raw = new RawPeer({ role, closeTimeout: 100 });
        // The write of this frame never completes: nobody reads it.
        raw.conn.send(new Uint8Array(1000));
        const closing = raw.conn.close(1000, "bye");
        assert.deepEqual(await within(closing), {
          code: 1006,
          reason: "",
          wasClean: false,
        });
        await raw.finish();
      }
    },
  );

  await t.step(
    "RFC 6455 §5.5.2 keepalive: a peer that reads nothing at all",
    async () => {
      const raw = new RawPeer({
        role: "server",
        pingInterval: 20,
        pingTimeout: 50,
        closeTimeout: 50,
      });
      assert.deepEqual(await within(raw.conn.closed), {
        code: 1006,
        reason: "",
        wasClean: false,
      });
      await raw.finish();
    },
  );

  await t.step(
    "RFC 6455 §7.1.2 close() twice and close() after the peer closed just wait",
    async () => {
      const { client, server } = pair();
      const first = client.close(1000, "one");
      const second = client.close(4000, "two");
      assert.deepEqual(await within(first), await within(second));
      assert.deepEqual(await within(server.close()), {
        code: 1000,
        reason: "one",
        wasClean: true,
      });
    },
  );
});

Deno.test("WebSocketConnection fails on invalid close frames with 1002", async (t) => {
  await t.step("RFC 6455 §5.5.1 a 1-byte close body", async () => {
    await expectFailure((raw) => [raw.frame(OPCODE.Close, bytes(0x03))], 1002);
  });

  await t.step(
    "RFC 6455 §7.4 close codes that may not be on the wire",
    async () => {
      for (const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000]) {
        await expectFailure(
          (raw) => [raw.frame(OPCODE.Close, closePayload(code))],
          1002,
        );
      }
    },
  );

  await t.step("RFC 6455 §5.5.1 a reason that is not UTF-8", async () => {
    await expectFailure(
      (raw) => [
        raw.frame(OPCODE.Close, concatAll([closePayload(1000), bytes(0xff)])),
      ],
      1002,
    );
  });
});

Deno.test("WebSocketConnection ignores data after a close and rejects later sends", async (t) => {
  await t.step(
    "RFC 6455 §5.5.1 data frames after a received close are ignored",
    async () => {
      const raw = new RawPeer({ role: "client" });
      const messages = collect(raw.conn);
      raw.write(concatAll([
        raw.frame(OPCODE.Close, closePayload(1000)),
        raw.frame(OPCODE.Text, "in the same chunk"),
      ]));
      await raw.expectClose(1000);
      await raw.send(OPCODE.Text, "in a later chunk");
      await raw.send(OPCODE.Ping, "and a ping");
      raw.end();
      assert.deepEqual(await messages, []);
      assert.deepEqual(await raw.rest(), []);
      assert.deepEqual(await within(raw.conn.closed), {
        code: 1000,
        reason: "",
        wasClean: true,
      });
      await raw.finish();
    },
  );

  await t.step(
    "RFC 6455 §7 send() after close rejects with ConnectionClosedError",
    async () => {
      const { client, server } = pair();
      const closing = client.close();
      await assert.rejects(client.send("late"), ConnectionClosedError);
      await within(closing);
      await assert.rejects(client.send("later"), (error: unknown) => {
        assert.ok(error instanceof ConnectionClosedError);
        assert.equal(error.code, 1000);
        return true;
      });
      await assert.rejects(server.send("late"), ConnectionClosedError);
      // A send nobody awaits does not end the test with an unhandled rejection.
      client.send("unawaited");
      server.send(bytes(1));
      await within(server.closed);
    },
  );
  await t.step(
    "RFC 6455 §5.5.1 a compressed send() overtaken by the peer's close rejects",
    async () => {
      // A compression that finishes when the test says so, as a large
      // message on a busy process does.
      const release = Promise.withResolvers<void>();
      const raw = new RawPeer({
        role: "server",
        deflate: {
          shouldCompress: () => true,
          compress: async (data) => {
            await release.promise;
            return data;
          },
          decompress: (data) => Promise.resolve(data.slice()),
          close: () => {},
        },
      });
      const sent = raw.conn.send("compressing");
      await raw.send(OPCODE.Close, closePayload(1000));
      assert.equal(await raw.expectClose(1000), "");
      release.resolve();
      // The message was not written after the close frame, and its send()
      // says so instead of resolving.
      await assert.rejects(within(sent), ConnectionClosedError);
      raw.end();
      assert.deepEqual(await raw.rest(), []);
      await raw.finish();
    },
  );
});

// ---------------------------------------------------------------------------
// Iteration

Deno.test("WebSocketConnection iteration ends or throws by how the connection ended", async (t) => {
  await t.step(
    "RFC 6455 §7.1.4 it ends normally after a clean close",
    async () => {
      const { client, server } = pair();
      const messages = collect(server);
      await client.send("a");
      await client.close(3000, "x");
      assert.deepEqual(await messages, ["a"]);
      // Iterating again after the end ends at once.
      assert.deepEqual(await collect(server), []);
      await closePair(client, server);
    },
  );

  await t.step(
    "RFC 6455 §7.1.7 it throws ProtocolError with the close code after a failure",
    async () => {
      const raw = new RawPeer({ role: "server" });
      const messages = Array.fromAsync(raw.conn);
      messages.catch(() => {});
      // A frame with the reserved opcode 3 right behind a good one.
      raw.write(concatAll([raw.frame(OPCODE.Text, "ok"), raw.frame(0x3, "")]));
      await raw.expectClose(1002);
      await assert.rejects(within(messages), (error: unknown) => {
        assert.ok(error instanceof ProtocolError);
        assert.equal(error.name, "ProtocolError");
        assert.equal(error.closeCode, 1002);
        return true;
      });
      await raw.finish();
      assert.equal((await raw.conn.closed).wasClean, false);
    },
  );

  await t.step(
    "RFC 6455 §7.1.5 it throws ConnectionClosedError 1006 when the transport ends without a close",
    async () => {
      const raw = new RawPeer({ role: "client" });
      const messages = Array.fromAsync(raw.conn);
      messages.catch(() => {});
      raw.send(OPCODE.Text, "before the end");
      raw.end();
      await assert.rejects(within(messages), (error: unknown) => {
        assert.ok(error instanceof ConnectionClosedError);
        assert.equal(error.code, 1006);
        return true;
      });
      assert.deepEqual(await within(raw.conn.closed), {
        code: 1006,
        reason: "",
        wasClean: false,
      });
      await raw.finish();
    },
  );

  await t.step(
    "RFC 6455 §5.2 a transport that ends inside a frame fails too",
    async () => {
      const raw = new RawPeer({ role: "client" });
      const messages = Array.fromAsync(raw.conn);
      messages.catch(() => {});
      raw.write(raw.frame(OPCODE.Text, "cut short").subarray(0, 4));
      raw.end();
      await assert.rejects(within(messages));
      assert.equal((await within(raw.conn.closed)).wasClean, false);
      await raw.finish();
    },
  );

  await t.step("queued messages stay readable after the close", async () => {
    const { client, server } = pair();
    await client.send("one");
    await client.send("two");
    await client.close();
    await within(server.closed);
    assert.deepEqual(await collect(server), ["one", "two"]);
  });

  await t.step(
    "leaving a for-await loop keeps the connection open",
    async () => {
      const { client, server } = pair();
      for (const text of ["one", "two", "three"]) client.send(text);
      for await (const message of server) {
        assert.equal(message, "one");
        break;
      }
      assert.equal(server.isOpen, true);
      await within(server.send("still open"));
      assert.equal(await nextMessage(client), "still open");
      assert.deepEqual(
        [await nextMessage(server), await nextMessage(server)],
        ["two", "three"],
      );
      await closePair(client, server);
    },
  );
});

// ---------------------------------------------------------------------------
// Limits

Deno.test("WebSocketConnection enforces its size limits with 1009", async (t) => {
  await t.step(
    "RFC 6455 §10.4 a single frame over maxMessageSize fails from its header",
    async () => {
      await expectFailure(
        // Only the header of a 1000-byte frame: no payload ever follows.
        (
          raw,
        ) => [raw.frame(OPCODE.Binary, new Uint8Array(1000)).subarray(0, 8)],
        1009,
        { maxMessageSize: 100 },
      );
    },
  );

  await t.step(
    "RFC 6455 §10.4 a message at maxMessageSize is accepted",
    async () => {
      const raw = new RawPeer({ role: "server", maxMessageSize: 100 });
      raw.send(OPCODE.Binary, new Uint8Array(100));
      raw.send(OPCODE.Text, "a".repeat(50), { fin: false });
      raw.send(OPCODE.Continuation, "b".repeat(50));
      assert.equal((await nextMessage(raw.conn)).length, 100);
      assert.equal(
        await nextMessage(raw.conn),
        "a".repeat(50) + "b".repeat(50),
      );
      raw.send(OPCODE.Close);
      await raw.expectClose(1000);
      await raw.finish();
    },
  );

  await t.step(
    "RFC 6455 §10.4 a fragmented message growing over maxMessageSize fails",
    async () => {
      await expectFailure(
        (raw) => [
          raw.frame(OPCODE.Binary, new Uint8Array(60), { fin: false }),
          raw.frame(OPCODE.Continuation, new Uint8Array(60), { fin: false }),
        ],
        1009,
        { maxMessageSize: 100 },
      );
      await expectFailure(
        (raw) => [
          raw.frame(OPCODE.Text, "a".repeat(60), { fin: false }),
          raw.frame(OPCODE.Continuation, "a".repeat(41), { fin: true }),
        ],
        1009,
        { maxMessageSize: 100 },
      );
    },
  );

  await t.step(
    "RFC 6455 §10.4 maxMessageSize holds when maxFrameSize is larger",
    async () => {
      await expectFailure(
        (raw) => [raw.frame(OPCODE.Binary, new Uint8Array(500))],
        1009,
        { maxMessageSize: 100, maxFrameSize: 1000 },
      );
    },
  );

  await t.step(
    "RFC 6455 §10.4 maxFrameSize limits each frame of a message",
    async () => {
      const raw = new RawPeer({
        role: "server",
        maxFrameSize: 10,
        maxMessageSize: 100,
      });
      const messages = Array.fromAsync(raw.conn);
      messages.catch(() => {});
      raw.send(OPCODE.Text, "0123456789", { fin: false });
      raw.send(OPCODE.Continuation, "0123456789", { fin: true });
      raw.send(OPCODE.Binary, new Uint8Array(11));
      await raw.expectClose(1009);
      await assert.rejects(within(messages), (error: unknown) => {
        assert.ok(error instanceof ProtocolError);
        assert.equal(error.closeCode, 1009);
        return true;
      });
      await raw.finish();
    },
  );

  await t.step(
    "RFC 6455 §10.4 a flood of empty continuation frames fails at maxFragments",
    async () => {
      const raw = new RawPeer({ role: "server", maxFragments: 100 });
      const messages = Array.fromAsync(raw.conn);
      messages.catch(() => {});
      const chunks = [raw.frame(OPCODE.Text, "", { fin: false })];
      for (let i = 0; i < 99; i++) {
        chunks.push(raw.frame(OPCODE.Continuation, "", { fin: false }));
      }
      // 100 fragments are allowed; the close must not come yet.
      await within(raw.write(concatAll(chunks)));
      raw.send(OPCODE.Ping, "check");
      const pong = await raw.next();
      assert.equal(pong.opcode, OPCODE.Pong);
      const flood = [];
      for (let i = 0; i < 10_000; i++) {
        flood.push(raw.frame(OPCODE.Continuation, "", { fin: false }));
      }
      raw.write(concatAll(flood));
      await raw.expectClose(1009);
      await rejectsWithCloseCode(messages, 1009);
      await raw.finish();
    },
  );

  await t.step(
    "RFC 6455 §10.4 a message of exactly maxFragments frames is accepted",
    async () => {
      const raw = new RawPeer({ role: "server", maxFragments: 3 });
      raw.send(OPCODE.Text, "a", { fin: false });
      raw.send(OPCODE.Continuation, "b", { fin: false });
      raw.send(OPCODE.Continuation, "c", { fin: true });
      assert.equal(await nextMessage(raw.conn), "abc");
      raw.send(OPCODE.Close);
      await raw.expectClose(1000);
      await raw.finish();
    },
  );

  await t.step("negative or non-finite limits throw RangeError", () => {
    for (
      const options of [
        { maxMessageSize: -1 },
        { maxFrameSize: -1 },
        { maxFragments: Number.NaN },
        { pingInterval: -5 },
        { pingTimeout: Infinity },
        { closeTimeout: -1 },
        { writeHighWaterMark: -1 },
        { maxBufferedAmount: -1 },
      ]
    ) {
      const a = new TransformStream<Uint8Array, Uint8Array>();
      assert.throws(
        () =>
          new WebSocketConnection(
            { readable: a.readable, writable: a.writable },
            { role: "server", ...options },
          ),
        RangeError,
        JSON.stringify(options),
      );
    }
  });

  await t.step(
    "checkConnectionLimits() refuses what the constructor refuses, with its message, and accepts the rest",
    () => {
      const timeouts = new Set(["pingInterval", "pingTimeout", "closeTimeout"]);
      for (const key of CONNECTION_OPTION_KEYS) {
        // Sizes and counts are whole numbers; timeouts may be fractions.
        const bad = timeouts.has(key)
          ? [-1, Number.NaN, Infinity, 2 ** 31]
          : [-1, Number.NaN, Infinity, 1.5];
        for (const value of bad) {
          const options = { [key]: value };
          const a = new TransformStream<Uint8Array, Uint8Array>();
          let expected: unknown;
          try {
            new WebSocketConnection(
              { readable: a.readable, writable: a.writable },
              { role: "server", ...options },
            );
          } catch (error) {
            expected = error;
          }
          assert.ok(expected instanceof RangeError, `${key}: ${value}`);
          assert.throws(() => checkConnectionLimits(options), {
            name: "RangeError",
            message: expected.message,
          });
        }
        const good = timeouts.has(key) ? [0, 1.5, 2 ** 31 - 1] : [0, 2 ** 31];
        for (const value of good) checkConnectionLimits({ [key]: value });
      }
      checkConnectionLimits({});
    },
  );
});

Deno.test("WebSocketConnection bounds what it queues for a peer that does not read", async (t) => {
  await t.step(
    "RFC 6455 §5.5.3 pongs owed to a peer that pings without reading are bounded",
    async () => {
      const raw = new RawPeer({ role: "server" });
      const pings = 3000;
      let last: Promise<void> = Promise.resolve();
      for (let i = 0; i < pings; i++) {
        last = raw.send(OPCODE.Ping, `ping ${i}`);
      }
      // Every ping was read while nothing read the connection's output.
      await within(last, 5000, "the connection to read every ping");
      assert.ok(
        raw.conn.bufferedAmount < 100,
        `bufferedAmount is ${raw.conn.bufferedAmount}`,
      );
      raw.send(OPCODE.Close);
      const frames: Frame[] = [];
      let frame = await raw.next();
      while (frame.opcode === OPCODE.Pong) {
        frames.push(frame);
        frame = await raw.next();
      }
      assert.equal(closeCodeOf(frame), 1000);
      assert.ok(frames.length >= 1 && frames.length <= 3, `${frames.length}`);
      // The newest ping is the one answered last.
      assert.equal(
        decoder.decode(frames.at(-1)!.payload),
        `ping ${pings - 1}`,
      );
      await raw.finish();
    },
  );

  await t.step(
    "maxBufferedAmount: unawaited sends beyond it reject with RangeError",
    async () => {
      const raw = new RawPeer({ role: "server", maxBufferedAmount: 1000 });
      const first = raw.conn.send(new Uint8Array(600));
      assert.equal(await hasSettled(first), true);
      // The peer does not read: the first frame still waits.
      assert.equal(raw.conn.bufferedAmount, 604);
      await assert.rejects(raw.conn.send(new Uint8Array(600)), RangeError);
      assert.equal(raw.conn.bufferedAmount, 604);
      const small = raw.conn.send(new Uint8Array(300));
      // Rejected sends that nobody awaits do not crash the test.
      raw.conn.send(new Uint8Array(1000));
      assert.equal(raw.conn.bufferedAmount, 908);
      const frame = await raw.next();
      assert.equal(frame.payload.length, 600);
      assert.equal((await raw.next()).payload.length, 300);
      await within(small);
      // A single message is always accepted by an empty queue.
      await within(raw.conn.send(new Uint8Array(5000)));
      assert.equal((await raw.next()).payload.length, 5000);
      raw.send(OPCODE.Close);
      await raw.expectClose(1000);
      await raw.finish();
    },
  );

  await t.step(
    "writeHighWaterMark: send() resolves only when the queue drains below it",
    async () => {
      const raw = new RawPeer({ role: "server", writeHighWaterMark: 100 });
      const small = raw.conn.send(new Uint8Array(50));
      assert.equal(await hasSettled(small), true);
      const big = raw.conn.send(new Uint8Array(500));
      assert.equal(await hasSettled(big), false, "blocked while not read");
      assert.equal((await raw.next()).payload.length, 50);
      assert.equal((await raw.next()).payload.length, 500);
      await within(big);
      assert.equal(raw.conn.bufferedAmount, 0);
      raw.send(OPCODE.Close);
      await raw.expectClose(1000);
      await raw.finish();
    },
  );

  await t.step(
    "writable stream backpressure follows writeHighWaterMark",
    async () => {
      const raw = new RawPeer({ role: "server", writeHighWaterMark: 10 });
      const writer = raw.conn.writable.getWriter();
      const write = writer.write(new Uint8Array(100));
      assert.equal(await hasSettled(write), false);
      assert.equal((await raw.next()).payload.length, 100);
      await within(write);
      writer.releaseLock();
      raw.send(OPCODE.Close);
      await raw.expectClose(1000);
      await raw.finish();
    },
  );
});

Deno.test("WebSocketConnection stops reading while messages wait to be consumed", async (t) => {
  await t.step(
    "RFC 6455 §10 backpressure: a consumer that does not iterate pauses the reads",
    async () => {
      const raw = new RawPeer({ role: "server" });
      const total = 40;
      const writes: Promise<void>[] = [];
      for (let i = 0; i < total; i++) {
        writes.push(raw.send(OPCODE.Text, `message ${i}`));
      }
      // The first 16 messages are read and queued.
      await within(Promise.all(writes.slice(0, 16)));
      await settle();
      const done = await Promise.all(writes.map(hasSettled));
      const read = done.filter((settled) => settled).length;
      assert.ok(read >= 16 && read <= 18, `${read} chunks read`);
      assert.equal(done.at(-1), false);
      // Iterating resumes the reads, in order.
      const received: WebSocketMessage[] = [];
      for await (const message of raw.conn) {
        received.push(message);
        if (received.length === total) break;
      }
      assert.deepEqual(
        received,
        Array.from({ length: total }, (_, i) => `message ${i}`),
      );
      await within(Promise.all(writes));
      raw.send(OPCODE.Close);
      await raw.expectClose(1000);
      await raw.finish();
    },
  );

  await t.step(
    "the bound holds between the frames of one read",
    async () => {
      const raw = new RawPeer({ role: "server" });
      const total = 5000;
      // One chunk: 5,000 tiny messages, then a ping.
      const frames: Uint8Array[] = [];
      for (let i = 0; i < total; i++) {
        frames.push(raw.frame(OPCODE.Text, `${i}`));
      }
      frames.push(raw.frame(OPCODE.Ping, "behind"));
      raw.write(concatAll(frames));
      // The ping is not reached while 16 messages wait unread.
      const pong = raw.next(5000);
      assert.equal(await hasSettled(pong), false, "the ping was answered");
      let index = 0;
      for await (const message of raw.conn) {
        assert.equal(message, `${index}`);
        if (++index === total) break;
      }
      const frame = await pong;
      assert.equal(frame.opcode, OPCODE.Pong);
      assert.equal(decoder.decode(frame.payload), "behind");
      raw.send(OPCODE.Close);
      await raw.expectClose(1000);
      await raw.finish();
    },
  );

  await t.step(
    "large messages pause the reads once 1 MiB waits, before 16 messages do",
    async () => {
      const raw = new RawPeer({ role: "server" });
      const total = 30;
      const size = 100 * 1024;
      const writes: Promise<void>[] = [];
      for (let i = 0; i < total; i++) {
        writes.push(raw.send(OPCODE.Binary, new Uint8Array(size).fill(i)));
      }
      // 11 messages of 100 KiB reach 1 MiB.
      await within(Promise.all(writes.slice(0, 11)));
      await settle();
      const done = await Promise.all(writes.map(hasSettled));
      const read = done.filter((settled) => settled).length;
      assert.ok(read >= 11 && read <= 13, `${read} messages read`);
      let index = 0;
      for await (const message of raw.conn) {
        assert.ok(message instanceof Uint8Array);
        assert.equal(message.length, size);
        assert.equal(message[0], index);
        if (++index === total) break;
      }
      await within(Promise.all(writes));
      raw.send(OPCODE.Close);
      await raw.expectClose(1000);
      await raw.finish();
    },
  );
});

// ---------------------------------------------------------------------------
// Abort signal

Deno.test("WebSocketConnection reads the peer's close even when messages are not consumed", async (t) => {
  await t.step(
    "RFC 6455 §7.1.2 a client that never iterates still closes cleanly",
    async () => {
      const { client, server } = pair({ closeTimeout: 2000 }, {
        closeTimeout: 2000,
      });
      for (let i = 0; i < 40; i++) server.send(`message ${i}`);
      // The client reads 16 and pauses: a ping behind them is not reached.
      const ping = server.ping();
      ping.catch(() => {});
      assert.equal(await hasSettled(ping), false);
      const closing = client.close(1000, "not reading");
      assert.deepEqual(await within(closing, 1000), {
        code: 1000,
        reason: "not reading",
        wasClean: true,
      });
      assert.deepEqual(await within(server.closed, 1000), {
        code: 1000,
        reason: "not reading",
        wasClean: true,
      });
      // What arrived before the close can still be read.
      const received = await collect(client);
      assert.deepEqual(
        received,
        Array.from({ length: 40 }, (_, i) => `message ${i}`),
      );
    },
  );

  await t.step(
    "what a closing connection queues for nobody is bounded (16 MiB)",
    async () => {
      const raw = new RawPeer({ role: "server" });
      const closing = raw.conn.close(1000, "enough");
      await raw.expectClose(1000);
      // The peer sends 24 MiB of messages before it answers the close.
      const mib = 1024 * 1024;
      for (let i = 0; i < 24; i++) {
        raw.send(OPCODE.Binary, new Uint8Array(mib).fill(i));
      }
      raw.send(OPCODE.Close, closePayload(1000, "enough"));
      assert.equal((await within(closing)).wasClean, true);
      const received = await collect(raw.conn);
      // The first 16 MiB stay readable, in order; the rest was dropped.
      assert.equal(received.length, 16);
      received.forEach((message, i) => {
        assert.ok(message instanceof Uint8Array);
        assert.equal(message.length, mib);
        assert.equal(message[0], i);
      });
      await raw.finish();
    },
  );

  await t.step(
    "and at most 4,096 messages, however small",
    async () => {
      const raw = new RawPeer({ role: "server" });
      const closing = raw.conn.close(1000, "enough");
      await raw.expectClose(1000);
      const frames: Uint8Array[] = [];
      for (let i = 0; i < 10_000; i++) frames.push(raw.frame(OPCODE.Text));
      frames.push(raw.frame(OPCODE.Close, closePayload(1000, "enough")));
      raw.write(concatAll(frames));
      assert.equal((await within(closing)).wasClean, true);
      const received = await collect(raw.conn);
      assert.equal(received.length, 4096);
      await raw.finish();
    },
  );
});

Deno.test("WebSocketConnection closes with 1001 when its signal aborts", async (t) => {
  await t.step("RFC 6455 §7.4.1 going away", async () => {
    const controller = new AbortController();
    const raw = new RawPeer({ role: "server", signal: controller.signal });
    raw.send(OPCODE.Text, "hi");
    assert.equal(await nextMessage(raw.conn), "hi");
    controller.abort();
    await raw.expectClose(1001);
    assert.equal(raw.conn.isOpen, false);
    raw.send(OPCODE.Close, closePayload(1001));
    assert.deepEqual(await within(raw.conn.closed), {
      code: 1001,
      reason: "",
      wasClean: true,
    });
    await raw.finish();
  });

  await t.step(
    "RFC 6455 §7.4.1 a signal aborted before the start",
    async () => {
      const raw = new RawPeer({ role: "client", signal: AbortSignal.abort() });
      await raw.expectClose(1001);
      raw.send(OPCODE.Close, closePayload(1001));
      raw.end();
      assert.equal((await within(raw.conn.closed)).code, 1001);
      await raw.finish();
    },
  );
});

// ---------------------------------------------------------------------------
// Roles and masking

Deno.test("WebSocketConnection masks frames as its role requires", async (t) => {
  await t.step(
    "RFC 6455 §5.3 a client masks every frame with a different key",
    async () => {
      const raw = new RawPeer({ role: "client" });
      for (let i = 0; i < 20; i++) raw.conn.send(`message ${i}`);
      raw.conn.ping("ping").catch(() => {});
      const masks = new Set<string>();
      for (let i = 0; i < 21; i++) {
        const frame = await raw.next();
        assert.ok(frame.mask !== undefined);
        masks.add(Array.from(frame.mask).join(","));
        if (i < 20) assert.equal(decoder.decode(frame.payload), `message ${i}`);
      }
      assert.equal(masks.size, 21);
      raw.send(OPCODE.Close);
      await raw.expectClose(1000);
      raw.end();
      await raw.finish();
    },
  );

  await t.step(
    "RFC 6455 §5.7 a client frame with a given mask is byte-exact",
    async () => {
      const keys = [
        bytes(0x37, 0xfa, 0x21, 0x3d),
        bytes(0x01, 0x02, 0x03, 0x04),
        bytes(0xa0, 0xb0, 0xc0, 0xd0),
      ];
      let next = 0;
      const raw = new RawPeer({
        role: "client",
        maskGenerator: () => keys[next++ % keys.length]!,
      });
      const payload = encoder.encode("Hello");
      await raw.conn.send(payload, { binary: false });
      await raw.next();
      // The RFC 6455 §5.7 "A single-frame masked text message".
      assert.deepEqual(
        concatAll(raw.received),
        bytes(0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58),
      );
      assert.equal(decoder.decode(payload), "Hello", "the caller's bytes");
      raw.received.length = 0;
      raw.conn.ping(bytes(9)).catch(() => {});
      await raw.next();
      assert.deepEqual(
        concatAll(raw.received),
        bytes(0x89, 0x81, 1, 2, 3, 4, 8),
      );
      raw.received.length = 0;
      raw.send(OPCODE.Close);
      await raw.next();
      assert.deepEqual(
        concatAll(raw.received),
        bytes(0x88, 0x82, 0xa0, 0xb0, 0xc0, 0xd0, 0x03 ^ 0xa0, 0xe8 ^ 0xb0),
      );
      raw.end();
      await raw.finish();
    },
  );

  await t.step("RFC 6455 §5.1 a server sends unmasked frames", async () => {
    const raw = new RawPeer({ role: "server" });
    await raw.conn.send("Hello");
    await raw.next();
    assert.deepEqual(
      concatAll(raw.received),
      bytes(0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f),
    );
    raw.received.length = 0;
    raw.send(OPCODE.Ping, "Hello");
    await raw.next();
    assert.deepEqual(
      concatAll(raw.received),
      bytes(0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f),
    );
    raw.send(OPCODE.Close);
    await raw.expectClose(1000);
    await raw.finish();
  });

  await t.step(
    "RFC 6455 §5.1 an unmasked frame to a server fails with 1002",
    async () => {
      await expectFailure(
        () => [bytes(0x81, 0x02, 0x68, 0x69)],
        1002,
      );
    },
  );

  await t.step(
    "RFC 6455 §5.1 a masked frame to a client fails with 1002",
    async () => {
      await expectFailure(
        () => [bytes(0x81, 0x82, 1, 2, 3, 4, 0x68 ^ 1, 0x69 ^ 2)],
        1002,
        {},
        "client",
      );
    },
  );

  await t.step(
    "RFC 6455 §5.2 reserved bits and opcodes fail with 1002",
    async () => {
      await expectFailure((raw) => [raw.frame(0x3, "x")], 1002);
      await expectFailure((raw) => [raw.frame(0xb, "x")], 1002);
      await expectFailure(
        (raw) => [raw.frame(OPCODE.Text, "x", { rsv1: true })],
        1002,
      );
    },
  );
});

// ---------------------------------------------------------------------------
// Transport and teardown

Deno.test("WebSocketConnection delivers the messages read before a broken frame", async (t) => {
  await t.step(
    "RFC 6455 §5.1 two messages and an unmasked frame in one read: 1002 after both",
    async () => {
      const raw = new RawPeer({ role: "server" });
      const iterator = raw.conn[Symbol.asyncIterator]();
      // One chunk: the connection reads it in one read.
      raw.write(
        concatAll([
          raw.frame(OPCODE.Text, "first"),
          raw.frame(OPCODE.Binary, bytes(1, 2, 3)),
          bytes(0x81, 0x02, 0x68, 0x69),
        ]),
      );
      assert.deepEqual(await within(iterator.next()), {
        value: "first",
        done: false,
      });
      assert.deepEqual(await within(iterator.next()), {
        value: bytes(1, 2, 3),
        done: false,
      });
      await rejectsWithCloseCode(iterator.next(), 1002);
      assert.equal(closeCodeOf(await raw.next()), 1002);
      await raw.finish();
      assert.equal((await raw.conn.closed).wasClean, false);
    },
  );
});

Deno.test("WebSocketConnection writes the replies to one read together", async (t) => {
  await t.step("echoes from the iterating chain: one write", async () => {
    const raw = new RawPeer({ role: "server" });
    const echo = (async () => {
      for await (const message of raw.conn) await raw.conn.send(message);
    })();
    const frames = Array.from(
      { length: 10 },
      (_, i) => raw.frame(OPCODE.Text, `message ${i}`),
    );
    raw.write(concatAll(frames));
    for (let i = 0; i < 10; i++) {
      assert.equal(decoder.decode((await raw.next()).payload), `message ${i}`);
    }
    assert.equal(raw.received.length, 1, "ten echoes in one write");
    raw.send(OPCODE.Close);
    await raw.expectClose(1000);
    await within(echo);
    await raw.finish();
  });

  await t.step(
    "replies from another promise chain, one message behind: one write",
    async () => {
      // The shape of a client that sends when an answer frees a slot: the
      // receiving loop hands each message to a sender loop.
      const raw = new RawPeer({ role: "server" });
      const inbox: string[] = [];
      let wake: (() => void) | undefined;
      const receiver = (async () => {
        for await (const message of raw.conn) {
          inbox.push(message as string);
          wake?.();
        }
      })();
      const sender = (async () => {
        let sent = 0;
        while (sent < 10) {
          if (inbox.length === 0) {
            await new Promise<void>((resolve) => wake = resolve);
            continue;
          }
          await raw.conn.send(`reply to ${inbox.shift()}`);
          sent++;
        }
      })();
      raw.write(concatAll(
        Array.from({ length: 10 }, (_, i) => raw.frame(OPCODE.Text, `${i}`)),
      ));
      for (let i = 0; i < 10; i++) {
        assert.equal(
          decoder.decode((await raw.next()).payload),
          `reply to ${i}`,
        );
      }
      assert.equal(raw.received.length, 1, "ten replies in one write");
      await within(sender);
      raw.send(OPCODE.Close);
      await raw.expectClose(1000);
      await within(receiver);
      await raw.finish();
    },
  );

  await t.step(
    "a sender with nothing received: the first message alone, the rest together",
    async () => {
      const raw = new RawPeer({ role: "server" });
      // Sends with nothing received: the first goes out by itself, the
      // rest follow together while it is written.
      for (let i = 0; i < 5; i++) raw.conn.send(`push ${i}`).catch(() => {});
      for (let i = 0; i < 5; i++) {
        assert.equal(decoder.decode((await raw.next()).payload), `push ${i}`);
      }
      assert.ok(
        raw.received.length <= 2,
        `${raw.received.length} writes for 5 sends`,
      );
      raw.received.length = 0;
      const answer = (async () => {
        for await (const message of raw.conn) {
          await raw.conn.send(`re: ${message}`);
        }
      })();
      raw.send(OPCODE.Text, "question");
      assert.equal(decoder.decode((await raw.next()).payload), "re: question");
      raw.send(OPCODE.Close);
      await raw.expectClose(1000);
      await within(answer);
      await raw.finish();
    },
  );
});

Deno.test("WebSocketConnection reads the bytes that came with the handshake first", async () => {
  const a = new TransformStream<Uint8Array, Uint8Array>();
  const b = new TransformStream<Uint8Array, Uint8Array>();
  const head = encodeFrame({
    fin: true,
    rsv1: false,
    rsv2: false,
    rsv3: false,
    opcode: OPCODE.Text,
    payload: encoder.encode("early"),
    mask: RAW_MASK,
  });
  const client = new WebSocketConnection(
    { readable: a.readable, writable: b.writable },
    { role: "client", pingInterval: 0 },
  );
  const server = new WebSocketConnection(
    { readable: b.readable, writable: a.writable },
    { role: "server", pingInterval: 0, head },
  );
  await client.send("late");
  assert.equal(await nextMessage(server), "early");
  assert.equal(await nextMessage(server), "late");
  await closePair(client, server);
});

// stop() gave the slab of the batch being filled back to the pool but kept
// filling it: a frame enqueued after stop() (nothing in the connection does
// that today) would have been written into a slab lent to someone else.
Deno.test("FrameWriter never encodes into a slab it gave back", async () => {
  // The first write settles only at the end: later frames wait in a batch.
  const first = Promise.withResolvers<number>();
  const writer = new FrameWriter(
    {
      writable: new WritableStream(),
      write: (data) => first.promise.then(() => data.length),
    },
    64 * 1024,
    {
      mask: () => new Uint8Array([1, 2, 3, 4]),
      isOpen: () => true,
      hasUnread: () => false,
      onError: () => {},
    },
  );
  writer.enqueue(0x2, new Uint8Array(1000), false);
  writer.enqueue(0x2, new Uint8Array(1000), false);
  writer.stop(new Error("stopped"));
  // The slab given back last is lent again at once (the pool is LIFO).
  const slab = takeSlab();
  assert.ok(slab !== undefined);
  try {
    slab.fill(0xee, 0, 4096);
    writer.enqueue(0x2, new Uint8Array(1000).fill(1), false);
    assert.ok(
      slab.subarray(0, 4096).every((byte) => byte === 0xee),
      "a frame was encoded into a slab of the pool after stop()",
    );
  } finally {
    giveSlab(slab);
    first.resolve(0);
    await writer.flush();
  }
  // The write under way ended, and its slab came back too.
  const { free, made } = slabCounts();
  assert.equal(free, made);
});

// A send over writeHighWaterMark waits for the queue to drain; when the
// connection dies first, that wait rejects. A sender that did not await it
// must not crash the process, and one that did gets the error.
Deno.test("WebSocketConnection: a send waiting for the queue to drain rejects when the connection dies, awaited or not", async (t) => {
  function stuck(): WebSocketConnection {
    const ended = Promise.withResolvers<null>();
    return new WebSocketConnection({
      readable: new ReadableStream(),
      writable: new WritableStream(),
      read: () => ended.promise,
      // Writes finish only when the transport is closed, failing as a
      // socket's do: the queue stays over its high-water mark until then.
      write: () =>
        ended.promise.then(() => {
          throw new Deno.errors.BadResource("closed");
        }),
      close: () => ended.resolve(null),
    }, { role: "client", pingInterval: 0, closeTimeout: 50 });
  }
  await t.step("awaited: it rejects", async () => {
    const client = stuck();
    const sending = client.send(new Uint8Array(100_000));
    const closing = client.close();
    await assert.rejects(sending, ConnectionClosedError);
    assert.equal((await within(closing)).wasClean, false);
  });
  await t.step("not awaited: the process goes on", async () => {
    const client = stuck();
    client.send(new Uint8Array(100_000));
    assert.equal((await within(client.close())).wasClean, false);
    // An unhandled rejection would fail the test at the next turn.
    await new Promise((resolve) => setTimeout(resolve, 10));
  });
});

// The pump used to be an async function whose catch and finally ended it
// whatever threw; as a loop of callbacks, a throw outside the transport's
// write() (here the pong's encoding, with a mask hook that fails) left it
// active forever: an unhandled rejection, flush() and closed never settled.
Deno.test("FrameWriter ends its pump and reports whatever throws in it", async (t) => {
  await t.step("the pong's encoding throws after a write", async () => {
    const first = Promise.withResolvers<number>();
    let masks = 0;
    const errors: unknown[] = [];
    const writer: FrameWriter = new FrameWriter(
      {
        writable: new WritableStream(),
        write: (data) => first.promise.then(() => data.length),
      },
      64 * 1024,
      {
        mask: () => {
          if (++masks > 1) throw new Error("no more keys");
          return new Uint8Array([1, 2, 3, 4]);
        },
        isOpen: () => true,
        hasUnread: () => false,
        onError: (error) => {
          errors.push(error);
          writer.stop(error);
        },
      },
    );
    writer.enqueue(0x2, new Uint8Array(1000), false);
    writer.pong(new Uint8Array([9])); // encoded by the pump, after the write
    first.resolve(0);
    await within(writer.flush());
    assert.equal(errors.length, 1);
    assert.match(String(errors[0]), /no more keys/);
    const { free, made } = slabCounts();
    assert.equal(free, made);
  });
  await t.step("a write() that returns a number, not a promise", async () => {
    const written: number[] = [];
    const writer = new FrameWriter(
      {
        writable: new WritableStream(),
        write: ((data: Uint8Array) => {
          written.push(data.length);
          return data.length;
        }) as unknown as (data: Uint8Array) => Promise<number>,
      },
      64 * 1024,
      {
        mask: undefined,
        isOpen: () => true,
        hasUnread: () => false,
        onError: (error) => assert.fail(`onError: ${error}`),
      },
    );
    writer.enqueue(0x2, new Uint8Array(1000), false);
    await within(writer.flush());
    writer.enqueue(0x2, new Uint8Array(10), false);
    await within(writer.flush());
    assert.deepEqual(written, [1004, 12]);
  });
});

// ---------------------------------------------------------------------------
// From a review against RFC 6455 (each test failed on the code before it)

// §5.6: text is delivered as sent. A decoder without ignoreBOM drops a
// leading U+FEFF, and the text decoder is reset after every message.
Deno.test("RFC 6455 §5.6 a text message or close reason that starts with U+FEFF keeps it", async () => {
  const raw = new RawPeer({ role: "server" });
  raw.send(OPCODE.Text, "\uFEFFhello");
  assert.equal(await nextMessage(raw.conn), "\uFEFFhello");
  // Fragmented: the BOM's bytes split across two frames.
  raw.send(OPCODE.Text, new Uint8Array([0xef, 0xbb]), { fin: false });
  raw.send(OPCODE.Continuation, new Uint8Array([0xbf, 0x41]));
  assert.equal(await nextMessage(raw.conn), "\uFEFFA");
  raw.send(OPCODE.Close, closePayload(1000, "\uFEFFbye"));
  assert.equal(await raw.expectClose(1000), "\uFEFFbye");
  await raw.finish();
  assert.equal((await raw.conn.closed).reason, "\uFEFFbye");
});

// A pong timer armed before the peer's close used to fire after it: the
// client closed TCP first and iteration threw a TimeoutError, while closed
// said 1000, clean.
Deno.test("RFC 6455 §7.1.1 the peer's close stops the keepalive: no pong timeout after it", async () => {
  const raw = new RawPeer({
    role: "client",
    pingInterval: 20,
    pingTimeout: 100,
    closeTimeout: 1000,
  });
  assert.equal((await raw.next()).opcode, OPCODE.Ping);
  // The server closes without answering the ping, and keeps TCP open.
  raw.send(OPCODE.Close, closePayload(1000, "bye"));
  assert.equal(await raw.expectClose(1000), "bye");
  await new Promise((resolve) => setTimeout(resolve, 200)); // past pingTimeout
  const result = await within(raw.conn[Symbol.asyncIterator]().next());
  assert.equal(result.done, true);
  await raw.finish();
  assert.deepEqual(await raw.conn.closed, {
    code: 1000,
    reason: "bye",
    wasClean: true,
  });
});

// The connection relied on its PerMessageDeflate's limit; one made without
// it let a 114-byte frame become a 100,000-byte message under
// maxMessageSize 1000.
Deno.test("RFC 7692 maxMessageSize limits a message after decompression, whatever the compression's own limit", async () => {
  const client = new PerMessageDeflate(NO_TAKEOVER, "client");
  const packed = await client.compress(new Uint8Array(100_000));
  client.close();
  const raw = new RawPeer({
    role: "server",
    maxMessageSize: 1000,
    deflate: new PerMessageDeflate(NO_TAKEOVER, "server"),
  });
  const iterator = raw.conn[Symbol.asyncIterator]();
  raw.send(OPCODE.Binary, packed, { rsv1: true });
  await raw.expectClose(1009);
  await assert.rejects(
    within(iterator.next()),
    (error: unknown) =>
      error instanceof ProtocolError && error.closeCode === 1009,
  );
  await raw.finish();
});

// §5.5: control frames carry up to 125 bytes whatever the data limits; a
// maxMessageSize under 125 used to refuse a close with a reason (1009).
Deno.test("RFC 6455 §5.5 a data limit under 125 bytes does not refuse control frames", async () => {
  const raw = new RawPeer({ role: "server", maxMessageSize: 16 });
  raw.send(OPCODE.Ping, "a ping of 24 bytes......");
  const pong = await raw.next();
  assert.equal(pong.opcode, OPCODE.Pong);
  assert.equal(decoder.decode(pong.payload), "a ping of 24 bytes......");
  raw.send(OPCODE.Close, closePayload(1000, "a reason of 20 bytes"));
  assert.equal(await raw.expectClose(1000), "a reason of 20 bytes");
  await raw.finish();
  assert.equal((await raw.conn.closed).wasClean, true);
});

// A compressed send still compressing when the peer's close ended the
// connection rejected with the compression's TypeError ("context is
// closed"), not the ConnectionClosedError that send() documents.
Deno.test("WebSocketConnection: a compressed send overtaken by the end of the connection rejects with ConnectionClosedError", async () => {
  const { client, server } = pair(
    { deflate: new PerMessageDeflate(NO_TAKEOVER, "client") },
    { deflate: new PerMessageDeflate(NO_TAKEOVER, "server") },
  );
  const sending = server.send("z".repeat(20_000_000));
  void client.close(1000, "bye");
  await assert.rejects(within(sending, 10_000), ConnectionClosedError);
  await within(client.closed, 5000);
  await within(server.closed, 5000);
});

// The pong of the first of two pings with the same payload used to resolve
// both, the second with a wrong round-trip time.
Deno.test("RFC 6455 §5.5.3 a pong answers the oldest ping with its payload, not a later one", async () => {
  const raw = new RawPeer({ role: "client" });
  const first = raw.conn.ping("same");
  await raw.next();
  let secondDone = false;
  const second = raw.conn.ping("same").then((rtt) => {
    secondDone = true;
    return rtt;
  });
  await raw.next();
  raw.send(OPCODE.Pong, "same"); // answers the first ping
  await within(first);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(secondDone, false, "the first pong answered the second ping");
  raw.send(OPCODE.Pong, "same");
  assert.ok((await within(second)) >= 0);
  void raw.conn.close();
  await raw.expectClose(1000);
  raw.send(OPCODE.Close, closePayload(1000));
  await raw.finish();
});

// A timer past 2^31 - 1 ms fires at once: pingInterval: 30 days used to
// send a keepalive ping every millisecond.
Deno.test("WebSocketConnection refuses limits and timeouts it cannot honour, with a RangeError", async () => {
  const transport = {
    readable: new ReadableStream<Uint8Array>(),
    writable: new WritableStream<Uint8Array>(),
  };
  for (
    const options of [
      { pingInterval: 30 * 24 * 3600 * 1000 },
      { pingTimeout: 2 ** 31 },
      { closeTimeout: Infinity },
      { pingInterval: -1 },
      { maxMessageSize: NaN },
      { writeHighWaterMark: -5 },
    ]
  ) {
    assert.throws(
      () => new WebSocketConnection(transport, { role: "server", ...options }),
      RangeError,
      JSON.stringify(options),
    );
  }
  // The largest timeout a timer takes is fine.
  let end!: () => void;
  const conn = new WebSocketConnection({
    readable: new ReadableStream<Uint8Array>({
      start: (controller) => end = () => controller.close(),
    }),
    writable: new WritableStream<Uint8Array>(),
  }, { role: "server", pingInterval: 2 ** 31 - 1, closeTimeout: 2 ** 31 - 1 });
  assert.equal(conn.isOpen, true);
  end(); // the transport ends: no timer is left
  assert.equal((await within(conn.closed)).code, 1006);
});

// A transport whose write() throws instead of returning a rejected promise:
// the connection fails as for any broken transport (1006, the error as the
// cause), the slab of the failed write goes back to the pool, and nothing
// escapes as an uncaught error.
Deno.test("WebSocketConnection fails with 1006 when the transport's write() throws", async () => {
  const failure = new Error("write() threw");
  const ended = Promise.withResolvers<null>();
  let writes = 0;
  const client = new WebSocketConnection({
    readable: new ReadableStream(),
    writable: new WritableStream(),
    read: () => ended.promise,
    write(): Promise<number> {
      writes++;
      throw failure;
    },
    close: () => ended.resolve(null),
  }, { role: "client", pingInterval: 0, closeTimeout: 200 });
  await client.send(new Uint8Array(1000)).catch(() => {});
  const iterator = client[Symbol.asyncIterator]();
  const error = await iterator.next().then(
    () => assert.fail("iteration ended without the error"),
    (e: unknown) => e,
  );
  assert.ok(error instanceof ConnectionClosedError, String(error));
  assert.equal(error.code, 1006);
  assert.equal(error.cause, failure);
  const info = await within(client.closed);
  assert.equal(info.code, 1006);
  assert.equal(info.wasClean, false);
  assert.equal(writes, 1);
  const { free, made } = slabCounts();
  assert.ok(
    made > 0 && free === made,
    `${made - free} slabs were not given back`,
  );
});

Deno.test("WebSocketConnection uses read(), write() and close() when the transport has them", async () => {
  const a = new TransformStream<Uint8Array, Uint8Array>();
  const b = new TransformStream<Uint8Array, Uint8Array>();
  function direct(
    readable: ReadableStream<Uint8Array>,
    writable: WritableStream<Uint8Array>,
  ) {
    const reader = readable.getReader();
    const writer = writable.getWriter();
    let pending: Uint8Array | undefined;
    return {
      readable,
      writable,
      async read(buffer: Uint8Array): Promise<number | null> {
        if (pending === undefined) {
          const { value, done } = await reader.read();
          if (done) return null;
          pending = value;
        }
        const count = Math.min(buffer.length, pending.length, 7);
        buffer.set(pending.subarray(0, count));
        pending = count === pending.length
          ? undefined
          : pending.subarray(count);
        return count;
      },
      async write(data: Uint8Array): Promise<number> {
        // Short writes: at most 5 bytes at a time.
        const count = Math.min(data.length, 5);
        await writer.write(data.slice(0, count));
        return count;
      },
      close(): void {
        writer.close().catch(() => {});
        reader.cancel().catch(() => {});
      },
    };
  }
  const client = new WebSocketConnection(direct(a.readable, b.writable), {
    role: "client",
    pingInterval: 0,
  });
  const server = new WebSocketConnection(direct(b.readable, a.writable), {
    role: "server",
    pingInterval: 0,
  });
  const echo = (async () => {
    for await (const message of server) await server.send(message);
  })();
  await client.send("through read() and write()");
  await client.send(new Uint8Array(300).fill(7));
  assert.equal(await nextMessage(client), "through read() and write()");
  assert.deepEqual(await nextMessage(client), new Uint8Array(300).fill(7));
  assert.ok(await within(client.ping()) >= 0);
  await within(client.close(1000, "done"));
  await within(echo);
  assert.deepEqual(await within(server.closed), {
    code: 1000,
    reason: "done",
    wasClean: true,
  });
});

Deno.test("WebSocketConnection leaves no timer or read behind after closed", async (t) => {
  await t.step(
    "RFC 6455 §7 with the default keepalive and close timers armed",
    async () => {
      // Default pingInterval (20 s) and closeTimeout (5 s): the sanitizers
      // fail this test if either timer outlives the close.
      const a = new TransformStream<Uint8Array, Uint8Array>();
      const b = new TransformStream<Uint8Array, Uint8Array>();
      const client = new WebSocketConnection(
        { readable: a.readable, writable: b.writable },
        { role: "client" },
      );
      const server = new WebSocketConnection(
        { readable: b.readable, writable: a.writable },
        { role: "server" },
      );
      await client.send("x");
      assert.equal(await nextMessage(server), "x");
      await within(client.close());
      await within(server.closed);
      // The streams were released: the transport's ends are unlocked.
      assert.equal(a.writable.locked, false);
      assert.equal(b.writable.locked, false);
    },
  );

  await t.step("RFC 6455 §7.1.7 after a failure", async () => {
    const raw = new RawPeer({ role: "server", pingInterval: 10_000 });
    raw.send(OPCODE.Text, bytes(0xff));
    await raw.expectClose(1007);
    await raw.finish();
  });

  await t.step("RFC 6455 §7.1.5 after the transport ended", async () => {
    const raw = new RawPeer({ role: "server", pingInterval: 10_000 });
    raw.end();
    assert.equal((await within(raw.conn.closed)).code, 1006);
    await raw.finish();
  });
});

Deno.test("connection.ts uses only the Web platform, never the Deno namespace", async () => {
  const source = await Deno.readTextFile(
    new URL("../connection.ts", import.meta.url),
  );
  // The docs may name `Deno.Conn` as one transport; the code may not use it.
  const code = source
    .replace(/\/\*[\s\S]*?\*\//g, "")
    .replace(/^\s*\/\/.*$/gm, "");
  assert.match(code, /export class WebSocketConnection/);
  assert.ok(!code.includes("Deno."), "connection.ts uses Deno.");
  assert.doesNotMatch(
    source,
    /^(?:import|export)[^;]*? from "(?!\.\/)/m,
    "connection.ts imports only relative paths",
  );
});

// ---------------------------------------------------------------------------
// The read buffer, over TCP: frames decoded in place, views lent

/**
 * A server connection over a TCP socket on 127.0.0.1 (a transport with
 * read(): the read buffer's path), and the raw client socket, into which
 * the test writes masked frames in pieces of its choosing.
 */
async function tcpServer(
  options: TestOptions = {},
): Promise<{ conn: WebSocketConnection; peer: Deno.TcpConn }> {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [peer, accepted] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
    listener.accept(),
  ]);
  const conn = new WebSocketConnection(accepted, {
    pingInterval: 0,
    ...options,
    role: "server",
  });
  return { conn, peer };
}

/** A masked binary frame of `payload`, or a fragment of one. */
function clientFrame(
  payload: Uint8Array,
  opcode: number = OPCODE.Binary,
  fin = true,
): Uint8Array {
  return encodeFrame({
    fin,
    rsv1: false,
    rsv2: false,
    rsv3: false,
    opcode,
    payload,
    mask: RAW_MASK,
  });
}

/**
 * Writes `count` binary messages of `size` patterned bytes (seeds `seed`,
 * `seed + 1`, ...) as masked frames in one go; returns them, and the write.
 */
function writeMessages(
  peer: Deno.Conn,
  count: number,
  size: number,
  seed = 1,
): { sent: Uint8Array[]; writing: Promise<void> } {
  const sent = Array.from(
    { length: count },
    (_, i) => patternBytes(size, seed + i),
  );
  const writing = writeAll(
    peer,
    concatAll(sent.map((payload) => clientFrame(payload))),
  );
  return { sent, writing };
}

/**
 * Writes `bytes` in pieces cut at `cuts` (sorted offsets), letting the
 * reader run between pieces, so that reads end where the test says.
 */
async function writeInPieces(
  peer: Deno.Conn,
  bytes: Uint8Array,
  cuts: number[],
): Promise<void> {
  let from = 0;
  for (const cut of [...cuts, bytes.length]) {
    if (cut <= from) continue;
    await writeAll(peer, bytes.subarray(from, cut));
    from = cut;
    await settle(1);
  }
}

/** Closes the raw peer's side cleanly and waits for the connection. */
async function closeFromPeer(
  conn: WebSocketConnection,
  peer: Deno.Conn,
): Promise<void> {
  await writeAll(peer, clientFrame(closePayload(1000), OPCODE.Close));
  const info = await within(conn.closed, 3000, "closed");
  assert.equal(info.code, 1000);
  peer.close();
}

/**
 * Asserts that `actual` holds the bytes of `expected`, naming the first
 * difference (a diff of megabytes would take minutes to print).
 */
function assertSameBytes(
  actual: unknown,
  expected: Uint8Array | undefined,
  what: string,
): void {
  assert.ok(actual instanceof Uint8Array, `${what}: not bytes`);
  assert.ok(expected !== undefined, `${what}: not expected`);
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    if (actual[i] !== expected[i]) {
      assert.fail(
        `${what}: byte ${i} is ${actual[i]}, expected ${expected[i]}`,
      );
    }
  }
}

/** Payload sizes around every buffer boundary of the read path. */
const READ_PATH_SIZES = [
  0,
  1,
  125,
  126,
  4096,
  16 * 1024 - 8,
  16 * 1024,
  65535,
  65536,
  65537,
  200_000,
  256 * 1024 - 14,
  256 * 1024,
  300_000,
  1024 * 1024 + 3,
];

Deno.test("WebSocketConnection over TCP reads every message intact across read boundaries", async (t) => {
  for (const copy of [true, false]) {
    await t.step(
      `RFC 6455 §5.2 messages of every size, cut anywhere (copy: ${copy})`,
      async () => {
        const { conn, peer } = await tcpServer();
        const sent: Uint8Array[] = [];
        const frames: Uint8Array[] = [];
        for (let round = 0; round < 3; round++) {
          for (const size of READ_PATH_SIZES) {
            const payload = patternBytes(size, sent.length + 1);
            sent.push(payload);
            frames.push(clientFrame(payload));
          }
        }
        // A fragmented message, with a ping between its fragments.
        const fragmented = patternBytes(150_000, 99);
        sent.push(fragmented);
        frames.push(
          clientFrame(fragmented.subarray(0, 70_000), OPCODE.Binary, false),
        );
        frames.push(clientFrame(bytes(1, 2, 3), OPCODE.Ping));
        frames.push(
          clientFrame(fragmented.subarray(70_000), OPCODE.Continuation),
        );
        const stream = concatAll(frames);
        // Cuts inside headers, inside payloads and on boundaries.
        const cuts: number[] = [];
        for (let at = 1; at < stream.length; at += 1 + ((at * 7919) % 90_001)) {
          cuts.push(at);
        }
        const writing = writeInPieces(peer, stream, cuts);
        const received: Uint8Array[] = [];
        const kept: Uint8Array[] = [];
        const messages = copy
          ? conn.messages()
          : conn.messages({ copy: false });
        const reading = (async () => {
          for await (const message of messages) {
            assert.ok(message instanceof Uint8Array);
            const index = received.length;
            assertSameBytes(
              message,
              sent[index],
              `message ${index} on arrival`,
            );
            // A copy is the caller's to keep; a view is checked on arrival.
            received.push(message);
            if (copy) kept.push(message);
            if (received.length === sent.length) break;
          }
        })();
        await within(reading, 20_000, "the messages");
        await writing;
        // The copies kept stay intact while later reads reused the buffer.
        for (let i = 0; i < kept.length; i++) {
          assertSameBytes(kept[i], sent[i], `message ${i} kept`);
        }
        await closeFromPeer(conn, peer);
      },
    );
  }
});

Deno.test("messages({ copy: false }) lends views of the read buffer and never reads over a held one", async (t) => {
  await t.step(
    "RFC 6455 §5.6 messages of one read are views side by side",
    async () => {
      const { conn, peer } = await tcpServer();
      const { sent, writing } = writeMessages(peer, 8, 5000, 1);
      await writing;
      const views: Uint8Array[] = [];
      const reading = (async () => {
        for await (const message of conn.messages({ copy: false })) {
          assertSameBytes(message, sent[views.length], "message");
          views.push(message as Uint8Array);
          if (views.length === sent.length) break;
        }
      })();
      await within(reading, 3000, "the messages");
      // Consecutive messages of one read sit in one buffer, 8 header bytes
      // apart (2 + 2 for the length + 4 for the mask): nothing was copied.
      // (Messages up to 4 KiB are copied out of a slab instead.)
      let adjacent = 0;
      for (let i = 1; i < views.length; i++) {
        const [a, b] = [views[i - 1]!, views[i]!];
        if (a.buffer === b.buffer && b.byteOffset === a.byteOffset + 5000 + 8) {
          adjacent++;
        }
      }
      assert.ok(adjacent >= 4, `${adjacent} adjacent views`);
      await closeFromPeer(conn, peer);
    },
  );

  await t.step(
    "RFC 6455 §5.6 messages up to 4 KiB are copied, not lent",
    async () => {
      const { conn, peer } = await tcpServer();
      const { sent, writing } = writeMessages(peer, 8, 4096, 1);
      await writing;
      const messages: Uint8Array[] = [];
      const reading = (async () => {
        for await (const message of conn.messages({ copy: false })) {
          messages.push(message as Uint8Array);
          if (messages.length === sent.length) break;
        }
      })();
      await within(reading, 3000, "the messages");
      for (let i = 0; i < sent.length; i++) {
        assertSameBytes(messages[i], sent[i], `message ${i}`);
        // Out of a 64 KiB slab, not the read buffer (16 KiB to 256 KiB).
        assert.equal(messages[i]!.buffer.byteLength, 64 * 1024);
      }
      await closeFromPeer(conn, peer);
    },
  );

  await t.step(
    "RFC 6455 §5.6 a held view survives the reads after it",
    async () => {
      const { conn, peer } = await tcpServer();
      const { sent, writing } = writeMessages(peer, 60, 30_000, 1);
      const iterator = conn.messages({ copy: false });
      const first = await within(iterator.next(), 3000, "the first message");
      assert.equal(first.done, false);
      const held = first.value as Uint8Array;
      // While the first view is held, the read loop reads on (up to its
      // queue's bound) into other buffers.
      await settle(20);
      assertSameBytes(held, sent[0], "message");
      for (let i = 1; i < sent.length; i++) {
        const result = await within(iterator.next(), 3000, `message ${i}`);
        assertSameBytes(result.value, sent[i], `message ${i}`);
      }
      await iterator.return!();
      await writing;
      await closeFromPeer(conn, peer);
    },
  );

  await t.step(
    "RFC 6455 §5.6 other readers get arrays of their own",
    async () => {
      const { conn, peer } = await tcpServer();
      const { sent, writing } = writeMessages(peer, 40, 20_000, 7);
      const borrowing = conn.messages({ copy: false });
      const reader = conn.readable.getReader();
      const copies: Uint8Array[] = [];
      for (let i = 0; i < 10; i++) {
        const { value } = await within(reader.read(), 3000, `copy ${i}`);
        copies.push(value as Uint8Array);
      }
      reader.releaseLock();
      for (let i = 10; i < sent.length; i++) {
        const result = await within(borrowing.next(), 3000, `view ${i}`);
        assertSameBytes(result.value, sent[i], `view ${i}`);
      }
      // Thirty reads later, the copies are intact, each an array of its own.
      for (const copy of copies) {
        assert.equal(copy.byteOffset, 0);
        assert.equal(copy.buffer.byteLength, copy.byteLength);
      }
      for (let i = 0; i < copies.length; i++) {
        assertSameBytes(copies[i], sent[i], `copy ${i}`);
      }
      await writing;
      await closeFromPeer(conn, peer);
    },
  );

  await t.step(
    "RFC 6455 §5.6 a next() pending when its loop was left gets a copy",
    async () => {
      const { conn, peer } = await tcpServer();
      // Another borrower keeps lending on after the first one is left.
      const other = conn.messages({ copy: false });
      const left = conn.messages({ copy: false });
      const pending = left.next();
      await left.return!();
      const { sent, writing } = writeMessages(peer, 1, 5000, 9);
      await writing;
      const result = await within(pending, 3000, "the message");
      const message = result.value as Uint8Array;
      assertSameBytes(message, sent[0], "message");
      // A copy: a view here would never be given back.
      assert.equal(message.byteOffset, 0);
      assert.equal(message.buffer.byteLength, 5000);
      await other.return!();
      await closeFromPeer(conn, peer);
    },
  );

  await t.step(
    "RFC 6455 §7.1.2 a closing connection copies what it keeps",
    async () => {
      const { conn, peer } = await tcpServer();
      const iterator = conn.messages({ copy: false });
      const closing = conn.close(1000);
      // After our close, the peer's messages are kept for whoever still
      // reads, as arrays of their own: a view would pin a read buffer each.
      const { sent, writing } = writeMessages(peer, 10, 5000, 3);
      await writing;
      await writeAll(peer, clientFrame(closePayload(1000), OPCODE.Close));
      for (let i = 0; i < sent.length; i++) {
        const result = await within(iterator.next(), 3000, `message ${i}`);
        const message = result.value as Uint8Array;
        assertSameBytes(message, sent[i], `message ${i}`);
        assert.equal(message.byteOffset, 0, `message ${i}`);
        assert.equal(message.buffer.byteLength, 5000, `message ${i}`);
      }
      assert.equal((await within(closing, 3000, "closed")).code, 1000);
      peer.close();
    },
  );

  await t.step(
    "RFC 6455 §5.4 a message larger than the read buffer",
    async () => {
      for (const copy of [true, false]) {
        const { conn, peer } = await tcpServer();
        const large = patternBytes(3 * 1024 * 1024 + 5, 3);
        const small = Array.from(
          { length: 30 },
          (_, i) => patternBytes(50_000, i + 11),
        );
        const writing = writeAll(
          peer,
          concatAll([
            clientFrame(large),
            ...small.map((payload) => clientFrame(payload)),
          ]),
        );
        const iterator = copy
          ? conn.messages()
          : conn.messages({ copy: false });
        const first = await within(iterator.next(), 3000, "the large message");
        const kept = first.value as Uint8Array;
        assertSameBytes(kept, large, "message");
        for (let i = 0; i < small.length; i++) {
          const result = await within(iterator.next(), 3000, `message ${i}`);
          assertSameBytes(result.value, small[i], `message ${i}`);
        }
        // With copy, the large message is the caller's: later reads did not
        // touch it (it kept its buffer instead of a 3 MiB copy).
        if (copy) {
          assertSameBytes(kept, large, "message");
        }
        await writing;
        await closeFromPeer(conn, peer);
      }
    },
  );
});

// ---------------------------------------------------------------------------
// The read buffer under a hostile peer, a relay and random use (from a review)

const sleep = (ms: number) =>
  new Promise<void>((resolve) => setTimeout(resolve, ms));

// An oversized buffer lent to a borrower was kept as a "spare" after its
// view was released, as long as every later read had a view out (a
// borrower under steady load): 64 MiB per message, up to 6 of them.
Deno.test("read buffer: a released oversized buffer is not kept as a spare", () => {
  const frame = 300_000;
  const big = new Uint8Array(frame);
  const buffer = new ReadBuffer(big);
  // The big frame (one read), its payload lent to a borrower.
  const view = buffer.pending.subarray(14);
  buffer.lend(view);
  buffer.consume(frame);
  // Reads go on: each brings a 5000-byte message that is lent, and the
  // consumer gives back the one before (a borrower that keeps up).
  let previous = view;
  for (let i = 0; i < 100; i++) {
    const room = buffer.room(0);
    room.fill(1, 0, 5000);
    buffer.filled(5000, room.length);
    const message = buffer.pending.subarray(8);
    buffer.lend(message);
    buffer.consume(5000);
    buffer.release(previous);
    previous = message;
  }
  // A frame that needs a buffer of the big one's size: the big one was
  // kept all along (it would be reused here).
  let room = buffer.room(0);
  room.fill(2);
  buffer.filled(room.length, room.length);
  const second = frame + 4096;
  for (let i = 0; i < 10; i++) {
    const pending = buffer.pending.length;
    room = buffer.room(second);
    assert.notEqual(
      room.buffer,
      view.buffer,
      `the ${big.length + 4096}-byte buffer was kept (after ${pending} bytes)`,
    );
    if (pending >= second) break;
    buffer.filled(Math.min(room.length, second - pending), room.length);
  }
});

// A borrower under a steady load of large messages: reads fill the buffer,
// views are lent, and the consumer catches up every few reads. Dropping
// every spare buffer when it caught up made a new 256 KiB buffer for one
// switch in five (perf: zeroing, page faults, GC pressure).
function steadyBorrower(buffer: ReadBuffer) {
  const size = 60_000;
  let held: Uint8Array[] = [];
  let sent = 0;
  let received = 0;
  /**
   * Reads `reads` times (`check` after each, before the consumer moves
   * on); the buffers that the reads went to.
   */
  return (reads: number, catchUpEvery: number, check = () => {}) => {
    const seen = new Set<ArrayBufferLike>();
    for (let read = 0; read < reads; read++) {
      const room = buffer.room(0);
      seen.add(room.buffer);
      // The peer sends message after message: a read fills its room.
      for (let i = 0; i < room.length; i++) room[i] = (sent + i) % 251;
      sent += room.length;
      buffer.filled(room.length, room.length);
      while (buffer.pending.length >= size) {
        const view = buffer.pending.subarray(0, size);
        assert.equal(view[0], (received * size) % 251, `message ${received}`);
        buffer.lend(view);
        buffer.consume(size);
        held.push(view);
        received++;
      }
      check();
      // The consumer lags one message behind, and catches up now and then.
      const keep = read % catchUpEvery === 0 ? 0 : 1;
      for (const view of held.slice(0, held.length - keep)) {
        buffer.release(view);
      }
      held = held.slice(held.length - keep);
    }
    return { seen, held };
  };
}

Deno.test("read buffer: a borrower that keeps up reuses its buffers", () => {
  const borrower = steadyBorrower(new ReadBuffer());
  // Grow to the steady size first.
  borrower(10, 3);
  const { seen } = borrower(300, 3);
  // The buffer and its spares (at most 6), over 300 reads.
  assert.ok(
    seen.size <= 7,
    `300 reads of a steady load used ${seen.size} different buffers`,
  );
});

Deno.test("read buffer: trim() drops the free spares and keeps lent bytes", () => {
  const buffer = new ReadBuffer();
  const borrower = steadyBorrower(buffer);
  const { seen, held } = borrower(40, 1000);
  assert.ok(held.length === 1 && seen.size > 2);
  const before = held[0]!.slice();
  buffer.trim();
  // The reads to come reuse no buffer from before the trim but the one the
  // held view is in (freed after the trim), and the held view is intact.
  const view = held[0]!;
  let checks = 0;
  // The consumer gives the view back after the first read.
  const after = borrower(20, 1000, () => {
    if (checks++ === 0) assert.deepEqual(view, before);
  });
  for (const used of after.seen) {
    assert.ok(
      used === view.buffer || !seen.has(used),
      "a spare from before trim() was reused",
    );
  }
});

// The spares kept for a steady load are given back at the keepalive ping
// of a connection that went quiet.
Deno.test("read buffer: a quiet connection drops its spare buffers at the keepalive ping", async () => {
  const { conn, peer } = await tcpServer({ pingInterval: 40, pingTimeout: 0 });
  // What the connection sends: its keepalive pings, nothing else. Each is
  // answered, so each is a new ping.
  let pinged = 0;
  let onPing: (() => void) | undefined;
  const draining = (async () => {
    const decoder = new FrameDecoder({ role: "client" });
    const sink = new Uint8Array(4096);
    try {
      let n: number | null;
      while ((n = await peer.read(sink)) !== null) {
        for (const frame of decoder.push(sink.subarray(0, n))) {
          if (frame.opcode !== OPCODE.Ping) continue; // the close at the end
          await writeAll(peer, clientFrame(frame.payload, OPCODE.Pong));
          pinged++;
          onPing?.();
        }
      }
    } catch { /* closed */ }
  })();
  const iterator = conn.messages({ copy: false });
  // A burst that a consumer takes one message at a time: reads switch
  // buffers while views are out. Each message's view is given back by the
  // next call of next(), made at once: the last one's too, so that no view
  // of the burst is out while the connection is quiet.
  let next = iterator.next();
  async function burst(seed: number): Promise<Set<ArrayBufferLike>> {
    const payloads = Array.from(
      { length: 30 },
      (_, i) => patternBytes(60_000, seed + i),
    );
    const writing = writeAll(
      peer,
      concatAll(payloads.map((p) => clientFrame(p))),
    );
    const buffers = new Set<ArrayBufferLike>();
    for (let i = 0; i < payloads.length; i++) {
      const { value } = await next;
      assertSameBytes(value, payloads[i]!, `message ${seed + i}`);
      buffers.add((value as Uint8Array).buffer);
      next = iterator.next();
      if (i % 4 === 0) await sleep(0);
    }
    await writing;
    return buffers;
  }
  const first = await burst(1);
  assert.ok(first.size > 2, `the burst used ${first.size} buffers`);
  // Quiet: keepalive pings go out, and the spares go before each. Waiting
  // for the bytes of two (the first may have left before the burst ended),
  // not for a time: a loaded machine may run the timer late.
  const before = pinged;
  await within(
    new Promise<void>((resolve) => {
      onPing = () => {
        if (pinged > before + 1) resolve();
      };
    }),
    10_000,
    "a keepalive ping after the burst",
  );
  onPing = undefined;
  const second = await burst(100);
  const again = [...second].filter((b) => first.has(b));
  await iterator.return!();
  await closeFromPeer(conn, peer);
  await draining;
  assert.equal((await next).done, true);
  // The buffer the connection reads into stays; the spares were dropped.
  assert.ok(
    again.length <= 1,
    `the second burst reused ${again.length} buffers of the first`,
  );
});

// Messages queued for an open connection with a borrower each used to
// pin a whole read buffer: 16 messages of 4097 bytes pinned 16 x 256 KiB.
Deno.test("read buffer: queued lent messages do not pin a read buffer each", async () => {
  const { conn, peer } = await tcpServer();
  const iterator = conn.messages({ copy: false });
  // A burst grows the read buffer to 256 KiB.
  const burst = Array.from(
    { length: 40 },
    (_, i) => patternBytes(60_000, i + 1),
  );
  const writing = writeAll(peer, concatAll(burst.map((p) => clientFrame(p))));
  for (let i = 0; i < burst.length; i++) {
    const { value } = await iterator.next();
    assertSameBytes(value, burst[i]!, `burst ${i}`);
  }
  await writing;
  // Nobody reads for a while: 16 small messages, one read each.
  const small = Array.from(
    { length: 16 },
    (_, i) => patternBytes(4097, i + 100),
  );
  for (const payload of small) {
    await writeAll(peer, clientFrame(payload));
    await sleep(5);
  }
  await sleep(20);
  const buffers = new Set<ArrayBufferLike>();
  const views: Uint8Array[] = [];
  for (let i = 0; i < small.length; i++) {
    const { value } = await iterator.next();
    assertSameBytes(value, small[i]!, `small ${i}`);
    views.push(value as Uint8Array);
    buffers.add((value as Uint8Array).buffer);
  }
  let pinned = 0;
  for (const b of buffers) pinned += b.byteLength;
  await iterator.return!();
  await closeFromPeer(conn, peer);
  // The queue's bound is 1 MiB (README, "Memory per connection"); the
  // messages are 16 x 4097 bytes.
  assert.ok(
    pinned <= 1024 * 1024 + 256 * 1024,
    `${small.length} queued messages of 4097 bytes pinned ${buffers.size} buffers, ${pinned} bytes`,
  );
});

// "Each binary message is an array of its own" (JSDoc of
// [Symbol.asyncIterator], README): a message over 256 KiB is a view of its
// frame's buffer, after the header and before bytes of the next frames.
Deno.test("read buffer: a large message taken with copies is a view of its frame's own buffer", async () => {
  const { conn, peer } = await tcpServer();
  const large = patternBytes(300_000, 5);
  const after = patternBytes(100, 6);
  await writeAll(
    peer,
    concatAll([clientFrame(large), clientFrame(after, OPCODE.Ping)]),
  );
  const { value } = await conn[Symbol.asyncIterator]().next();
  const message = value as Uint8Array;
  assertSameBytes(message, large, "message");
  const { byteOffset, buffer } = message;
  await closeFromPeer(conn, peer);
  // As documented now: a view of its frame's buffer, which nothing reads
  // into again (the message is intact after the connection read on).
  assert.ok(byteOffset > 0 && buffer.byteLength > large.length);
  assertSameBytes(message, large, "message after later reads");
});

// send() copied a lent view that waits for compression only when
// the view is the sending connection's own: a relay or a broadcast that
// passes a view to another connection (with permessage-deflate) and moves on
// sent bytes read over by the next reads.
Deno.test("read buffer: a view relayed to another compressing connection is copied", async () => {
  const { conn: source, peer } = await tcpServer();
  const a = new TransformStream<Uint8Array, Uint8Array>();
  const b = new TransformStream<Uint8Array, Uint8Array>();
  const relay = new WebSocketConnection(
    { readable: a.readable, writable: b.writable },
    {
      role: "server",
      pingInterval: 0,
      deflate: new PerMessageDeflate(NO_TAKEOVER, "server"),
    },
  );
  const sink = new WebSocketConnection(
    { readable: b.readable, writable: a.writable },
    {
      role: "client",
      pingInterval: 0,
      deflate: new PerMessageDeflate(NO_TAKEOVER, "client"),
    },
  );
  const sent = Array.from(
    { length: 30 },
    (_, i) => patternBytes(250_000, i + 1),
  );
  // One message per read, so that the reads reuse the buffers given back.
  const writing = (async () => {
    for (const payload of sent) {
      await writeAll(peer, clientFrame(payload));
      await sleep(1);
    }
  })();
  let count = 0;
  for await (const message of source.messages({ copy: false })) {
    // A broadcast: nobody awaits the send.
    relay.send(message);
    if (++count === sent.length) break;
  }
  await writing;
  const received: Uint8Array[] = [];
  for await (const message of sink) {
    received.push(message as Uint8Array);
    if (received.length === sent.length) break;
  }
  await Promise.all([relay.close(), closeFromPeer(source, peer)]);
  await sink.closed;
  for (let i = 0; i < sent.length; i++) {
    assertSameBytes(received[i], sent[i]!, `relayed message ${i}`);
  }
});

function rng(seed: number) {
  let x = seed | 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x1_0000_0000;
  };
}

const STRESS_SIZES = [
  0,
  3,
  4096,
  4097,
  5000,
  12_000,
  16 * 1024,
  40_000,
  65_536,
  130_000,
  250_000,
  256 * 1024,
  256 * 1024 + 1,
  300_000,
  600_000,
];

async function stressReadBuffer(
  seed: number,
  mode: "borrow" | "copy" | "mixed",
) {
  const random = rng(seed);
  const { conn, peer } = await tcpServer();
  const sent: Uint8Array[] = [];
  const frames: Uint8Array[] = [];
  for (let i = 0; i < 60; i++) {
    const size = STRESS_SIZES[Math.floor(random() * STRESS_SIZES.length)]!;
    const payload = patternBytes(size, seed * 1000 + i + 1);
    sent.push(payload);
    const r = random();
    if (r < 0.15 && size > 10) {
      const cut = Math.floor(size / 2);
      frames.push(clientFrame(payload.subarray(0, cut), OPCODE.Binary, false));
      frames.push(clientFrame(patternBytes(5, i), OPCODE.Ping));
      frames.push(clientFrame(payload.subarray(cut), OPCODE.Continuation));
    } else {
      frames.push(clientFrame(payload));
      if (r > 0.9) frames.push(clientFrame(patternBytes(100, i), OPCODE.Ping));
    }
  }
  const stream = concatAll(frames);
  const writing = (async () => {
    let from = 0;
    while (from < stream.length) {
      const n = 1 + Math.floor(random() * random() * 400_000);
      const to = Math.min(stream.length, from + n);
      await writeAll(peer, stream.subarray(from, to));
      from = to;
      if (random() < 0.5) await new Promise((r) => setTimeout(r, 0));
    }
  })();
  // Drain the pongs.
  const draining = (async () => {
    const sink = new Uint8Array(65536);
    try {
      while ((await peer.read(sink)) !== null) { /* discard */ }
    } catch { /* closed */ }
  })();
  const borrowing = conn.messages({ copy: false });
  const copying = conn.messages();
  const kept: { message: Uint8Array; index: number }[] = [];
  let held: { message: Uint8Array; index: number } | undefined;
  for (let i = 0; i < sent.length; i++) {
    const useBorrow = mode === "borrow" || (mode === "mixed" && random() < 0.5);
    if (held !== undefined) {
      // The held view is intact until this iterator's next call.
      assertSameBytes(held.message, sent[held.index]!, `held ${held.index}`);
    }
    const result = await (useBorrow ? borrowing : copying).next();
    assert.equal(result.done, false);
    const message = result.value as Uint8Array;
    assertSameBytes(message, sent[i]!, `message ${i} on arrival`);
    if (useBorrow) held = { message, index: i };
    else kept.push({ message, index: i });
    // Hold it a while: reads go on.
    if (random() < 0.3) await new Promise((r) => setTimeout(r, 0));
    if (held !== undefined && useBorrow) {
      assertSameBytes(
        held.message,
        sent[held.index]!,
        `held ${held.index} later`,
      );
    }
    if (useBorrow === false && held !== undefined && mode === "mixed") {
      assertSameBytes(
        held.message,
        sent[held.index]!,
        `held ${held.index} mixed`,
      );
    }
  }
  for (const { message, index } of kept) {
    assertSameBytes(message, sent[index]!, `kept ${index}`);
  }
  await borrowing.return!();
  await writing;
  await writeAll(
    peer,
    clientFrame(closePayload(1000), OPCODE.Close),
  );
  await conn.closed;
  peer.close();
  await draining;
}

Deno.test("read buffer: random frames, cuts, holds and copies never lose a byte", async (t) => {
  for (let seed = 1; seed <= 12; seed++) {
    for (const mode of ["borrow", "copy", "mixed"] as const) {
      await t.step(`seed ${seed} ${mode}`, () => stressReadBuffer(seed, mode));
    }
  }
});

// ---------------------------------------------------------------------------
// A client's large frames are masked with WebAssembly SIMD in pooled slabs

/**
 * A client connection over TCP on 127.0.0.1 whose transport records every
 * buffer it is asked to write, and the raw server socket.
 */
async function tcpClient(): Promise<{
  client: WebSocketConnection;
  peer: Deno.TcpConn;
  written: Uint8Array[];
}> {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [socket, peer] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
    listener.accept(),
  ]);
  const written: Uint8Array[] = [];
  const client = new WebSocketConnection({
    readable: socket.readable,
    writable: socket.writable,
    read: (buffer) => socket.read(buffer),
    write: (data) => {
      written.push(data);
      return socket.write(data);
    },
    close: () => socket.close(),
  }, { pingInterval: 0, role: "client" });
  return { client, peer, written };
}

Deno.test("a client masks its large frames with SIMD in pooled slabs, each with its own key, and gives the slabs back", async () => {
  const { client, peer, written } = await tcpClient();
  const sizes = [
    20_000,
    64 * 1024,
    64 * 1024 + 3,
    100_000,
    250_000,
    17,
    300_000,
  ];
  const sent = sizes.map((size, i) => patternBytes(size, 60 + i));
  const total = sent.reduce((sum, bytes) => sum + bytes.length, 0);
  const decoder = new FrameDecoder({ role: "server" });
  const frames: Frame[] = [];
  const reading = (async () => {
    const buffer = new Uint8Array(64 * 1024);
    let received = 0;
    while (frames.length < sent.length) {
      const count = await peer.read(buffer);
      assert.ok(count !== null, "the client's frames end early");
      received += count;
      frames.push(...decoder.push(buffer.slice(0, count)));
    }
    return received;
  })();
  for (const bytes of sent) await client.send(bytes);
  const received = await within(reading, 5000, "the frames");
  assert.ok(received > total);
  for (let i = 0; i < sent.length; i++) {
    assertSameBytes(frames[i]!.payload, sent[i], `frame ${i}`);
  }
  // The payloads are untouched: the masking is in the batches.
  for (let i = 0; i < sent.length; i++) {
    assertSameBytes(sent[i], patternBytes(sizes[i]!, 60 + i), `payload ${i}`);
  }
  // Batches, and frames up to a slab, went out of slabs; the frame larger
  // than a slab out of a buffer of its own.
  const fromSlabs = written.filter((bytes) => isSlab(bytes));
  assert.ok(fromSlabs.length >= 5, `${fromSlabs.length} writes from slabs`);
  assert.ok(
    written.some((bytes) => !isSlab(bytes) && bytes.length > 300_000),
    "the largest frame came from a slab",
  );
  // §5.3: a fresh key for every frame.
  const keys = new Set(frames.map((frame) => {
    assert.equal(frame.mask?.length, 4);
    return frame.mask!.join(",");
  }));
  assert.equal(keys.size, frames.length);
  // Written slabs are back in the pool at once.
  assert.equal(slabCounts().free, slabCounts().made);
  // The close handshake: the peer's close, the client's answer, then TCP.
  await writeAll(
    peer,
    encodeFrame({
      fin: true,
      rsv1: false,
      rsv2: false,
      rsv3: false,
      opcode: OPCODE.Close,
      payload: closePayload(1000),
    }),
  );
  const answer = new Uint8Array(64);
  const count = await within(peer.read(answer), 3000, "the close answer");
  assert.ok(count !== null);
  assert.equal(
    decoder.push(answer.subarray(0, count))[0]?.opcode,
    OPCODE.Close,
  );
  peer.close();
  const info = await within(client.closed, 3000, "closed");
  assert.equal(info.code, 1000);
  assert.ok(info.wasClean);
  assert.equal(slabCounts().free, slabCounts().made);
});

Deno.test("a client whose peer goes away with frames queued gives every slab back", async () => {
  const { client, peer } = await tcpClient();
  // The peer reads nothing: the socket fills, and the writer queues batches
  // (several 64 KiB frames each) in slabs.
  const payload = patternBytes(64 * 1024, 7);
  const sends: Promise<void>[] = [];
  for (let i = 0; i < 120; i++) {
    const sending = client.send(payload);
    sending.catch(() => {});
    sends.push(sending);
  }
  await settle(20);
  // More frames while a write is stuck: they wait in the writer's queue,
  // not in the batch the pump is writing.
  for (let i = 0; i < 8; i++) {
    const sending = client.send(payload);
    sending.catch(() => {});
    sends.push(sending);
  }
  const { free, made } = slabCounts();
  assert.ok(made - free >= 4, `${made - free} slabs out while queued`);
  assert.ok(client.bufferedAmount > 0, "nothing queued");
  // The peer closes with unread bytes: the kernel resets the connection, and
  // the client's write fails.
  peer.close();
  const info = await within(client.closed, 5000, "closed");
  assert.equal(info.code, 1006);
  assert.ok(!info.wasClean);
  const failed = (await Promise.allSettled(sends)).filter((result) =>
    result.status === "rejected"
  );
  assert.ok(failed.length > 0, "no send failed");
  assert.equal(
    slabCounts().free,
    slabCounts().made,
    "a slab was not given back",
  );
});
