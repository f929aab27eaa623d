// Copyright 2026 the @rfc6455/websocket authors. MIT license.
import assert from "node:assert/strict";
import zlib from "node:zlib";
import {
  acceptDeflateOffer,
  acceptDeflateResponse,
  createDeflateOffer,
  type DeflateParams,
  PerMessageDeflate,
  type PerMessageDeflateContextOptions,
  type PerMessageDeflateOptions,
} from "../deflate.ts";
import { HandshakeError, ProtocolError } from "../errors.ts";
import type { ExtensionOffer } from "../handshake.ts";

const encoder = new TextEncoder();
const HELLO = encoder.encode("Hello");

function bytes(...values: number[]): Uint8Array<ArrayBuffer> {
  return new Uint8Array(values);
}

function params(overrides: Partial<DeflateParams> = {}): DeflateParams {
  return {
    serverNoContextTakeover: false,
    clientNoContextTakeover: false,
    serverMaxWindowBits: 15,
    clientMaxWindowBits: 15,
    ...overrides,
  };
}

/** A client and a server sharing `shared`, closed by `using`. */
function pair(
  shared: DeflateParams = params(),
  options: PerMessageDeflateContextOptions = {},
): { client: PerMessageDeflate; server: PerMessageDeflate } & Disposable {
  const client = new PerMessageDeflate(shared, "client", options);
  const server = new PerMessageDeflate(shared, "server", options);
  return {
    client,
    server,
    [Symbol.dispose]() {
      client.close();
      server.close();
    },
  };
}

/** Deterministic pseudo-random bytes (xorshift32). */
function randomBytes(length: number, seed: number): Uint8Array<ArrayBuffer> {
  const result = new Uint8Array(length);
  let state = seed || 1;
  for (let i = 0; i < length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    result[i] = state & 0xff;
  }
  return result;
}

/** JSON-like text that compresses well and has long-distance repeats. */
function jsonBytes(length: number, seed: number): Uint8Array<ArrayBuffer> {
  let text = "";
  for (let i = seed; text.length < length; i++) {
    text += JSON.stringify({
      id: i,
      user: `user${(i * 7919) % 1000}`,
      score: ((i * 31337) % 100000) / 100,
      tags: ["alpha", `beta${i % 13}`],
    });
  }
  return encoder.encode(text.slice(0, length));
}

/**
 * Decodes raw DEFLATE (RFC 1951) and returns the output and the largest
 * back-reference distance used: an independent check of the window size.
 */
function inflateWithDistances(
  data: Uint8Array,
): { output: Uint8Array; maxDistance: number } {
  let position = 0;
  let bit = 0;
  const output: number[] = [];
  let maxDistance = 0;
  const readBits = (count: number): number => {
    let value = 0;
    for (let i = 0; i < count; i++) {
      const byte = data[position];
      if (byte === undefined) throw new Error("Cannot decode: end of data");
      value |= ((byte >> bit) & 1) << i;
      if (++bit === 8) {
        bit = 0;
        position++;
      }
    }
    return value;
  };
  interface Huffman {
    counts: number[];
    symbols: number[];
  }
  const build = (lengths: number[]): Huffman => {
    const counts = new Array<number>(16).fill(0);
    for (const length of lengths) counts[length]!++;
    counts[0] = 0;
    const offsets = [0];
    for (let i = 1; i < 16; i++) offsets[i] = offsets[i - 1]! + counts[i - 1]!;
    const symbols: number[] = [];
    lengths.forEach((length, symbol) => {
      if (length) symbols[offsets[length]!++] = symbol;
    });
    return { counts, symbols };
  };
  const decode = ({ counts, symbols }: Huffman): number => {
    let code = 0, first = 0, index = 0;
    for (let length = 1; length < 16; length++) {
      code |= readBits(1);
      const count = counts[length]!;
      if (code - count < first) return symbols[index + code - first]!;
      index += count;
      first = (first + count) << 1;
      code <<= 1;
    }
    throw new Error("Cannot decode: invalid Huffman code");
  };
  const lengthBase = [
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    13,
    15,
    17,
    19,
    23,
    27,
    31,
    35,
    43,
    51,
    59,
    67,
    83,
    99,
    115,
    131,
    163,
    195,
    227,
    258,
  ];
  const lengthExtra = [
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    1,
    1,
    1,
    1,
    2,
    2,
    2,
    2,
    3,
    3,
    3,
    3,
    4,
    4,
    4,
    4,
    5,
    5,
    5,
    5,
    0,
  ];
  const distanceBase = [
    1,
    2,
    3,
    4,
    5,
    7,
    9,
    13,
    17,
    25,
    33,
    49,
    65,
    97,
    129,
    193,
    257,
    385,
    513,
    769,
    1025,
    1537,
    2049,
    3073,
    4097,
    6145,
    8193,
    12289,
    16385,
    24577,
  ];
  const order = [
    16,
    17,
    18,
    0,
    8,
    7,
    9,
    6,
    10,
    5,
    11,
    4,
    12,
    3,
    13,
    2,
    14,
    1,
    15,
  ];
  while (position < data.length) {
    const final = readBits(1);
    const type = readBits(2);
    if (type === 0) {
      if (bit) {
        bit = 0;
        position++;
      }
      const length = data[position]! | (data[position + 1]! << 8);
      position += 4;
      for (let i = 0; i < length; i++) output.push(data[position++]!);
    } else {
      let literals: Huffman, distances: Huffman;
      if (type === 1) {
        const lengths = new Array<number>(288).fill(8, 0, 144).fill(9, 144, 256)
          .fill(7, 256, 280).fill(8, 280, 288);
        literals = build(lengths);
        distances = build(new Array<number>(30).fill(5));
      } else {
        const literalCount = readBits(5) + 257;
        const distanceCount = readBits(5) + 1;
        const codeCount = readBits(4) + 4;
        const codeLengths = new Array<number>(19).fill(0);
        for (let i = 0; i < codeCount; i++) {
          codeLengths[order[i]!] = readBits(3);
        }
        const codes = build(codeLengths);
        const lengths: number[] = [];
        while (lengths.length < literalCount + distanceCount) {
          const symbol = decode(codes);
          if (symbol < 16) lengths.push(symbol);
          else if (symbol === 16) {
            const previous = lengths[lengths.length - 1]!;
            for (let r = 3 + readBits(2); r > 0; r--) lengths.push(previous);
          } else {
            const repeat = symbol === 17 ? 3 + readBits(3) : 11 + readBits(7);
            for (let r = repeat; r > 0; r--) lengths.push(0);
          }
        }
        literals = build(lengths.slice(0, literalCount));
        distances = build(lengths.slice(literalCount));
      }
      while (true) {
        const symbol = decode(literals);
        if (symbol < 256) output.push(symbol);
        else if (symbol === 256) break;
        else {
          const length = lengthBase[symbol - 257]! +
            readBits(lengthExtra[symbol - 257]!);
          const code = decode(distances);
          const distance = distanceBase[code]! +
            readBits(code < 4 ? 0 : (code >> 1) - 1);
          maxDistance = Math.max(maxDistance, distance);
          for (let i = 0; i < length; i++) {
            output.push(output[output.length - distance]!);
          }
        }
      }
    }
    if (final) break;
  }
  return { output: new Uint8Array(output), maxDistance };
}

// RFC 7692 §7.2.3: the examples, decoded and re-encoded byte for byte.

Deno.test("RFC 7692 §7.2.3.1 PerMessageDeflate compresses and decompresses Hello", async () => {
  using deflate = pair();
  const compressed = await deflate.server.compress(HELLO);
  assert.deepEqual(compressed, bytes(0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00));
  assert.deepEqual(await deflate.client.decompress(compressed), HELLO);
});

Deno.test("RFC 7692 §7.2.3.1 PerMessageDeflate decompresses a message split over two frames", async () => {
  using deflate = pair();
  const first = bytes(0xf2, 0x48, 0xcd);
  const second = bytes(0xc9, 0xc9, 0x07, 0x00);
  const message = new Uint8Array([...first, ...second]);
  assert.deepEqual(await deflate.server.decompress(message), HELLO);
  const compressed = await deflate.client.compress(HELLO);
  assert.deepEqual(compressed.subarray(0, 3), first);
  assert.deepEqual(compressed.subarray(3), second);
});

Deno.test("RFC 7692 §7.2.3.2 PerMessageDeflate shares the window between messages", async () => {
  using deflate = pair();
  const first = await deflate.server.compress(HELLO);
  const second = await deflate.server.compress(HELLO);
  assert.deepEqual(first, bytes(0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00));
  assert.deepEqual(second, bytes(0xf2, 0x00, 0x11, 0x00, 0x00));
  assert.deepEqual(await deflate.client.decompress(first), HELLO);
  assert.deepEqual(await deflate.client.decompress(second), HELLO);
});

Deno.test("RFC 7692 §7.2.3.2 PerMessageDeflate restarts each message without context takeover", async () => {
  using deflate = pair(params({ serverNoContextTakeover: true }));
  const hello = bytes(0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00);
  assert.deepEqual(await deflate.server.compress(HELLO), hello);
  assert.deepEqual(await deflate.server.compress(HELLO), hello);
  // After a pause (the context is freed) and in a burst (it is reused).
  await new Promise((resolve) => setTimeout(resolve, 0));
  const burst = await Promise.all(
    [1, 2, 3].map(() => deflate.server.compress(HELLO)),
  );
  for (const message of burst) {
    assert.deepEqual(message, hello);
    assert.deepEqual(await deflate.client.decompress(message), HELLO);
  }
});

Deno.test("RFC 7692 §7.2.3.3 PerMessageDeflate handles a block with no compression", async () => {
  const stored = bytes(
    0x00,
    0x05,
    0x00,
    0xfa,
    0xff,
    0x48,
    0x65,
    0x6c,
    0x6c,
    0x6f,
    0x00,
  );
  using deflate = pair(params(), { level: 0 });
  assert.deepEqual(await deflate.client.decompress(stored), HELLO);
  assert.deepEqual(await deflate.server.compress(HELLO), stored);
});

Deno.test("RFC 7692 §7.2.3.4 PerMessageDeflate decompresses a block with BFINAL set and resets after it", async () => {
  using deflate = pair();
  const final = bytes(0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00);
  assert.deepEqual(await deflate.client.decompress(final), HELLO);
  // The stream ended: the next message starts a new one.
  const next = bytes(0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00);
  assert.deepEqual(await deflate.client.decompress(next), HELLO);
  assert.deepEqual(await deflate.client.decompress(final), HELLO);
});

Deno.test("RFC 7692 §7.2.3.5 PerMessageDeflate decompresses two blocks in one message", async () => {
  using deflate = pair();
  const message = bytes(
    0xf2,
    0x48,
    0x05,
    0x00,
    0x00,
    0x00,
    0xff,
    0xff,
    0xca,
    0xc9,
    0xc9,
    0x07,
    0x00,
  );
  assert.deepEqual(await deflate.server.decompress(message), HELLO);
});

Deno.test("RFC 7692 §7.2.3.6 PerMessageDeflate compresses an empty message to one byte", async () => {
  using deflate = pair();
  await deflate.server.compress(HELLO);
  assert.deepEqual(
    await deflate.server.compress(new Uint8Array(0)),
    bytes(0x00),
  );
  assert.deepEqual(
    await deflate.client.decompress(bytes(0x00)),
    new Uint8Array(0),
  );
  assert.deepEqual(
    await deflate.client.decompress(new Uint8Array(0)),
    new Uint8Array(0),
  );
  // The window still holds "Hello" from before.
  const second = await deflate.server.compress(HELLO);
  assert.deepEqual(second, bytes(0xf2, 0x00, 0x11, 0x00, 0x00));
  assert.deepEqual(
    await deflate.client.decompress(
      bytes(0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00),
    ),
    HELLO,
  );
  assert.deepEqual(await deflate.client.decompress(second), HELLO);
});

// Round trips.

Deno.test("PerMessageDeflate round-trips random and JSON data at every window size", async () => {
  for (let bits = 8; bits <= 15; bits++) {
    for (const noTakeover of [false, true]) {
      using deflate = pair(params({
        serverMaxWindowBits: bits,
        clientMaxWindowBits: bits,
        serverNoContextTakeover: noTakeover,
        clientNoContextTakeover: noTakeover,
      }));
      const messages = [
        jsonBytes(10, bits),
        jsonBytes(3000, bits),
        randomBytes(2000, bits),
        jsonBytes(3000, bits), // repeats the earlier message
        jsonBytes(200_000, bits + 1),
        randomBytes(70_000, bits + 2),
        new Uint8Array(0),
        new Uint8Array(100_000),
      ];
      for (
        const [sender, receiver] of [
          [deflate.client, deflate.server],
          [deflate.server, deflate.client],
        ] as const
      ) {
        for (const message of messages) {
          const compressed = await sender.compress(message);
          const label =
            `${bits} bits, no takeover ${noTakeover}, ${message.length} bytes`;
          assert.deepEqual(
            await receiver.decompress(compressed),
            message,
            label,
          );
        }
      }
    }
  }
});

Deno.test("PerMessageDeflate uses at most the negotiated window, 8 bits included", async () => {
  // zlib's compressor runs with 9 bits when 8 is negotiated; its matches must
  // still stay within 256 bytes, across messages too.
  for (const [bits, limit] of [[8, 256], [9, 512], [10, 1024], [12, 4096]]) {
    for (const level of [1, 3, 6, 9]) {
      using deflate = pair(params({ serverMaxWindowBits: bits! }), { level });
      const history: number[] = [];
      const stream: number[] = [];
      for (let i = 0; i < 6; i++) {
        // Periods of 257 and 300 bytes tempt the compressor just past 256.
        const period = randomBytes(i % 2 ? 257 : 300, i + 1);
        const message = new Uint8Array(20_000);
        for (let j = 0; j < message.length; j++) {
          message[j] = period[j % period.length]!;
        }
        const json = jsonBytes(5000, i);
        for (const data of [message, json]) {
          const compressed = await deflate.server.compress(data);
          stream.push(...compressed, 0x00, 0x00, 0xff, 0xff);
          history.push(...data);
          assert.deepEqual(await deflate.client.decompress(compressed), data);
        }
      }
      const { output, maxDistance } = inflateWithDistances(
        new Uint8Array(stream),
      );
      assert.deepEqual(output, new Uint8Array(history));
      assert.ok(
        maxDistance <= limit!,
        `${bits} bits level ${level}: distance ${maxDistance}`,
      );
      assert.ok(maxDistance > 0);
    }
  }
});

Deno.test("PerMessageDeflate interoperates with node:zlib streams", async () => {
  using deflate = pair();
  const message = jsonBytes(50_000, 7);
  const compressed = await deflate.server.compress(message);
  const inflated = zlib.inflateRawSync(
    new Uint8Array([...compressed, 0x00, 0x00, 0xff, 0xff]),
    { finishFlush: zlib.constants.Z_SYNC_FLUSH },
  );
  assert.deepEqual(new Uint8Array(inflated), message);
  const foreign = zlib.deflateRawSync(message, {
    finishFlush: zlib.constants.Z_SYNC_FLUSH,
  });
  assert.deepEqual(
    await deflate.client.decompress(foreign.subarray(0, foreign.length - 4)),
    message,
  );
});

// Limits and bad input.

/** About 1 MiB of raw DEFLATE that inflates to 1 GiB of zeros, built in a stream. */
async function buildBomb(): Promise<Uint8Array> {
  const stream = zlib.createDeflateRaw({
    level: 9,
    strategy: zlib.constants.Z_RLE,
  });
  const chunks: Uint8Array[] = [];
  stream.on("data", (chunk: Uint8Array) => chunks.push(chunk));
  const zeros = new Uint8Array(1024 * 1024);
  for (let i = 0; i < 1024; i++) stream.write(zeros);
  await new Promise<void>((resolve) =>
    stream.flush(zlib.constants.Z_SYNC_FLUSH, () => resolve())
  );
  stream.close();
  const bomb = new Uint8Array(
    chunks.reduce((sum, chunk) => sum + chunk.length, 0),
  );
  let offset = 0;
  for (const chunk of chunks) {
    bomb.set(chunk, offset);
    offset += chunk.length;
  }
  return bomb.subarray(0, bomb.length - 4);
}

Deno.test("PerMessageDeflate refuses a message inflating to 1 GiB with 1009 and bounded memory", async () => {
  const bomb = await buildBomb();
  assert.ok(bomb.length < 2 * 1024 * 1024);
  {
    using deflate = pair(params(), { maxMessageSize: 16 * 1024 * 1024 });
    const before = Deno.memoryUsage().rss;
    await assert.rejects(deflate.server.decompress(bomb), (error) => {
      assert.ok(error instanceof ProtocolError);
      assert.equal(error.closeCode, 1009);
      assert.equal(
        error.message,
        "Cannot decompress message: it inflates to more than 16777216 bytes",
      );
      return true;
    });
    const growth = Deno.memoryUsage().rss - before;
    assert.ok(growth < 64 * 1024 * 1024, `rss grew by ${growth} bytes`);
  }
  {
    using deflate = pair();
    await assert.rejects(deflate.client.decompress(bomb), { closeCode: 1009 });
  }
});

Deno.test("PerMessageDeflate accepts a message of exactly maxMessageSize bytes", async () => {
  using deflate = pair(params(), { maxMessageSize: 100_000 });
  const exact = jsonBytes(100_000, 3);
  assert.deepEqual(
    await deflate.server.decompress(await deflate.client.compress(exact)),
    exact,
  );
  const over = await deflate.client.compress(jsonBytes(100_001, 4));
  await assert.rejects(deflate.server.decompress(over), { closeCode: 1009 });
});

Deno.test("PerMessageDeflate rejects corrupt data with 1007", async () => {
  using deflate = pair();
  for (
    const corrupt of [
      bytes(0xff, 0xff, 0xff),
      bytes(0x00, 0x05, 0x00, 0x00, 0x00),
      bytes(0x06),
    ]
  ) {
    await assert.rejects(deflate.server.decompress(corrupt), (error) => {
      assert.ok(error instanceof ProtocolError);
      assert.equal(error.closeCode, 1007);
      assert.match(
        error.message,
        /^Cannot decompress message: invalid compressed data \(.+\)$/,
      );
      return true;
    });
  }
  // A peer that ignores a negotiated 8-bit window and refers to an earlier
  // message beyond 256 bytes is caught (zlib checks distances against the
  // window, not within the output of one call).
  const wide = new PerMessageDeflate(params(), "client");
  const narrow = new PerMessageDeflate(
    params({ clientMaxWindowBits: 8 }),
    "server",
  );
  try {
    const data = randomBytes(1000, 5);
    assert.deepEqual(await narrow.decompress(await wide.compress(data)), data);
    await assert.rejects(narrow.decompress(await wide.compress(data)), {
      closeCode: 1007,
    });
  } finally {
    wide.close();
    narrow.close();
  }
});

// Order, concurrency and the event loop.

Deno.test("PerMessageDeflate serializes calls that are not awaited", async () => {
  using deflate = pair();
  const messages = [
    HELLO,
    jsonBytes(3_000_000, 1), // long enough to yield
    HELLO,
    new Uint8Array(0),
    jsonBytes(2000, 2),
    randomBytes(500_000, 3),
    HELLO,
  ];
  const settled: number[] = [];
  const results = await Promise.all(
    messages.map((message, index) =>
      deflate.client.compress(message).then((result) => {
        settled.push(index);
        return result;
      })
    ),
  );
  assert.deepEqual(settled, messages.map((_, index) => index));
  const decoded = await Promise.all(
    results.map((result) => deflate.server.decompress(result)),
  );
  assert.deepEqual(decoded, messages);
});

Deno.test("PerMessageDeflate runs many connections at once", async () => {
  const connections = Array.from({ length: 30 }, () => pair());
  try {
    await Promise.all(connections.map(async ({ client, server }, index) => {
      const message = jsonBytes(400_000 + index, index);
      const compressed = await Promise.all([
        client.compress(message),
        client.compress(HELLO),
      ]);
      assert.deepEqual(await server.decompress(compressed[0]), message);
      assert.deepEqual(await server.decompress(compressed[1]), HELLO);
    }));
  } finally {
    for (const connection of connections) connection[Symbol.dispose]();
  }
});

Deno.test("PerMessageDeflate lets timers run while it decompresses a large message", async () => {
  using deflate = pair();
  const message = jsonBytes(20_000_000, 9);
  const compressed = await deflate.client.compress(message);
  let fired = false;
  const timer = setTimeout(() => fired = true, 0);
  const inflated = await deflate.server.decompress(compressed);
  clearTimeout(timer);
  assert.ok(fired);
  assert.deepEqual(inflated, message);
});

Deno.test("PerMessageDeflate.close() rejects pending and later calls", async () => {
  const deflate = new PerMessageDeflate(params(), "client");
  const pending = deflate.compress(jsonBytes(5_000_000, 1));
  const queued = deflate.compress(HELLO);
  deflate.close();
  await assert.rejects(pending, TypeError);
  await assert.rejects(queued, {
    name: "TypeError",
    message: "Cannot compress message: permessage-deflate context is closed",
  });
  await assert.rejects(deflate.decompress(bytes(0x00)), {
    message: "Cannot decompress message: permessage-deflate context is closed",
  });
  deflate.close();
});

Deno.test("PerMessageDeflate.close() ends a long message waiting between two slices at once, and leaves no timer behind", async () => {
  const deflate = new PerMessageDeflate(params(), "client");
  // 20 MB of JSON: 40 ms or more of work, far more than the first slices.
  let settled: unknown = "pending";
  deflate.compress(jsonBytes(20_000_000, 9)).then(
    () => settled = "resolved",
    (error) => settled = error,
  );
  const outcome = (): unknown => settled;
  // Set after compress() returned from its first 1 ms slice, so before the
  // job's own timer: when it fires the job has run its next slice and waits
  // for that timer.
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.equal(outcome(), "pending");
  deflate.close();
  // No timer may run before the rejection (nor remain after the test: the
  // sanitizer checks), only promise reactions, a handful of them.
  for (let turn = 0; turn < 100 && outcome() === "pending"; turn++) {
    await Promise.resolve();
  }
  const error = outcome();
  assert.ok(error instanceof TypeError, `outcome is ${error}`);
  assert.equal(
    error.message,
    "Cannot compress message: permessage-deflate context is closed",
  );
});

Deno.test("PerMessageDeflate.shouldCompress() compares with the threshold", () => {
  using deflate = pair(params(), { threshold: 10 });
  assert.equal(deflate.client.shouldCompress(9), false);
  assert.equal(deflate.client.shouldCompress(10), true);
  using defaults = pair();
  assert.equal(defaults.server.shouldCompress(1023), false);
  assert.equal(defaults.server.shouldCompress(1024), true);
});

Deno.test("PerMessageDeflate rejects out-of-range options with RangeError", () => {
  for (
    const options of [
      { level: 10 },
      { level: -1 },
      { memLevel: 0 },
      { threshold: -1 },
      { maxMessageSize: 1.5 },
    ]
  ) {
    assert.throws(
      () => new PerMessageDeflate(params(), "server", options),
      RangeError,
    );
  }
  assert.throws(
    () => new PerMessageDeflate(params({ serverMaxWindowBits: 16 }), "server"),
    {
      name: "RangeError",
      message:
        'Cannot create permessage-deflate context: "serverMaxWindowBits" is 16, must be an integer from 8 to 15',
    },
  );
  assert.throws(
    () => createDeflateOffer({ clientMaxWindowBits: 7 }),
    RangeError,
  );
  assert.throws(
    () => acceptDeflateOffer([], { serverMaxWindowBits: 16 }),
    RangeError,
  );
});

// RFC 7692 §7: negotiation.

Deno.test("RFC 7692 §7.1 createDeflateOffer() builds the client's offer", () => {
  assert.deepEqual(createDeflateOffer(), {
    name: "permessage-deflate",
    params: [["client_max_window_bits", true]],
  });
  assert.deepEqual(
    createDeflateOffer({
      serverNoContextTakeover: true,
      clientNoContextTakeover: true,
      serverMaxWindowBits: 9,
      clientMaxWindowBits: 12,
    }),
    {
      name: "permessage-deflate",
      params: [
        ["server_no_context_takeover", true],
        ["client_no_context_takeover", true],
        ["server_max_window_bits", "9"],
        ["client_max_window_bits", "12"],
      ],
    },
  );
});

const offerCases: {
  offer: [string, string | true][];
  server: PerMessageDeflateOptions;
  response: [string, string | true][];
  params: Partial<DeflateParams>;
}[] = [
  { offer: [], server: {}, response: [], params: {} },
  {
    offer: [["client_max_window_bits", true]],
    server: {},
    response: [],
    params: {},
  },
  {
    offer: [["client_max_window_bits", true]],
    server: { clientMaxWindowBits: 10 },
    response: [["client_max_window_bits", "10"]],
    params: { clientMaxWindowBits: 10 },
  },
  {
    offer: [["client_max_window_bits", "9"]],
    server: { clientMaxWindowBits: 10 },
    response: [["client_max_window_bits", "9"]],
    params: { clientMaxWindowBits: 9 },
  },
  {
    offer: [["server_max_window_bits", "12"]],
    server: {},
    response: [["server_max_window_bits", "12"]],
    params: { serverMaxWindowBits: 12 },
  },
  {
    offer: [["server_max_window_bits", "15"]],
    server: { serverMaxWindowBits: 8 },
    response: [["server_max_window_bits", "8"]],
    params: { serverMaxWindowBits: 8 },
  },
  {
    offer: [],
    server: { serverMaxWindowBits: 11 },
    response: [["server_max_window_bits", "11"]],
    params: { serverMaxWindowBits: 11 },
  },
  {
    offer: [["server_no_context_takeover", true]],
    server: {},
    response: [["server_no_context_takeover", true]],
    params: { serverNoContextTakeover: true },
  },
  {
    offer: [["client_no_context_takeover", true]],
    server: {},
    response: [["client_no_context_takeover", true]],
    params: { clientNoContextTakeover: true },
  },
  {
    offer: [],
    server: { serverNoContextTakeover: true, clientNoContextTakeover: true },
    response: [
      ["server_no_context_takeover", true],
      ["client_no_context_takeover", true],
    ],
    params: { serverNoContextTakeover: true, clientNoContextTakeover: true },
  },
  {
    offer: [
      ["client_max_window_bits", true],
      ["server_max_window_bits", "10"],
      ["client_no_context_takeover", true],
      ["server_no_context_takeover", true],
    ],
    server: { clientMaxWindowBits: 8 },
    response: [
      ["server_no_context_takeover", true],
      ["client_no_context_takeover", true],
      ["server_max_window_bits", "10"],
      ["client_max_window_bits", "8"],
    ],
    params: {
      serverNoContextTakeover: true,
      clientNoContextTakeover: true,
      serverMaxWindowBits: 10,
      clientMaxWindowBits: 8,
    },
  },
];

Deno.test("RFC 7692 §7.1 acceptDeflateOffer() answers each offer as specified", () => {
  for (const { offer, server, response, params: expected } of offerCases) {
    const accepted = acceptDeflateOffer(
      [{ name: "permessage-deflate", params: offer }],
      server,
    );
    const label = JSON.stringify({ offer, server });
    assert.deepEqual(accepted?.response, {
      name: "permessage-deflate",
      params: response,
    }, label);
    assert.deepEqual(accepted?.params, params(expected), label);
  }
});

const invalidParams: [string, string | true][][] = [
  [["foo", true]],
  [["server_no_context_takeover", true], ["server_no_context_takeover", true]],
  [["client_max_window_bits", true], ["client_max_window_bits", "10"]],
  [["server_no_context_takeover", "1"]],
  [["client_no_context_takeover", "x"]],
  [["server_max_window_bits", true]],
  [["server_max_window_bits", "7"]],
  [["server_max_window_bits", "16"]],
  [["server_max_window_bits", "08"]],
  [["server_max_window_bits", "1a"]],
  [["server_max_window_bits", ""]],
  [["client_max_window_bits", "7"]],
  [["client_max_window_bits", "+9"]],
];

Deno.test("RFC 7692 §7 acceptDeflateOffer() declines unknown, repeated and invalid parameters", () => {
  for (const bad of invalidParams) {
    const offer = { name: "permessage-deflate", params: bad };
    assert.equal(acceptDeflateOffer([offer]), undefined, JSON.stringify(bad));
    const accepted = acceptDeflateOffer([offer, {
      name: "permessage-deflate",
      params: [["server_no_context_takeover", true]],
    }]);
    assert.deepEqual(
      accepted?.params,
      params({ serverNoContextTakeover: true }),
    );
  }
});

Deno.test("RFC 7692 §7 acceptDeflateOffer() takes the first acceptable offer", () => {
  const offers: ExtensionOffer[] = [
    { name: "x-webkit-deflate-frame", params: [] },
    { name: "permessage-deflate", params: [["mux", true]] },
    { name: "permessage-deflate", params: [["server_max_window_bits", "10"]] },
    { name: "permessage-deflate", params: [] },
  ];
  assert.deepEqual(acceptDeflateOffer(offers)?.response, {
    name: "permessage-deflate",
    params: [["server_max_window_bits", "10"]],
  });
  assert.deepEqual(
    acceptDeflateOffer([{ name: "Permessage-Deflate", params: [] }])?.params,
    params(),
  );
  assert.equal(acceptDeflateOffer([]), undefined);
});

Deno.test("RFC 7692 §7.1.2.2 acceptDeflateOffer() declines offers it cannot limit", () => {
  const offers: ExtensionOffer[] = [
    { name: "permessage-deflate", params: [] },
    { name: "permessage-deflate", params: [["client_max_window_bits", "12"]] },
  ];
  assert.deepEqual(
    acceptDeflateOffer(offers, { clientMaxWindowBits: 10 })?.response,
    {
      name: "permessage-deflate",
      params: [["client_max_window_bits", "10"]],
    },
  );
  assert.equal(
    acceptDeflateOffer(offers.slice(0, 1), { clientMaxWindowBits: 10 }),
    undefined,
  );
  assert.ok(
    acceptDeflateOffer(offers.slice(0, 1), { clientMaxWindowBits: 15 }),
  );
});

Deno.test("RFC 7692 §7 every client offer and server configuration agree on the parameters", () => {
  const flags = [undefined, true] as const;
  const clientBits = [undefined, 8, 12, 15] as const;
  const serverBits = [undefined, 10] as const;
  let combinations = 0;
  for (const cSnct of flags) {
    for (const cCnct of flags) {
      for (const cSmwb of clientBits) {
        for (const cCmwb of clientBits) {
          for (const sSnct of [false, true]) {
            for (const sCnct of [false, true]) {
              for (const sSmwb of serverBits) {
                for (const sCmwb of serverBits) {
                  const client: PerMessageDeflateOptions = {};
                  if (cSnct) client.serverNoContextTakeover = cSnct;
                  if (cCnct) client.clientNoContextTakeover = cCnct;
                  if (cSmwb) client.serverMaxWindowBits = cSmwb;
                  if (cCmwb) client.clientMaxWindowBits = cCmwb;
                  const server: PerMessageDeflateOptions = {
                    serverNoContextTakeover: sSnct,
                    clientNoContextTakeover: sCnct,
                  };
                  if (sSmwb) server.serverMaxWindowBits = sSmwb;
                  if (sCmwb) server.clientMaxWindowBits = sCmwb;
                  const label = JSON.stringify({ client, server });
                  const accepted = acceptDeflateOffer([
                    createDeflateOffer(client),
                  ], server);
                  assert.ok(accepted, label);
                  const expected = params({
                    serverNoContextTakeover: cSnct === true || sSnct,
                    clientNoContextTakeover: cCnct === true || sCnct,
                    serverMaxWindowBits: Math.min(cSmwb ?? 15, sSmwb ?? 15),
                    clientMaxWindowBits: Math.min(cCmwb ?? 15, sCmwb ?? 15),
                  });
                  assert.deepEqual(accepted.params, expected, label);
                  assert.deepEqual(
                    acceptDeflateResponse(accepted.response, client),
                    expected,
                    label,
                  );
                  combinations++;
                }
              }
            }
          }
        }
      }
    }
  }
  assert.equal(combinations, 1024);
});

function assertResponseRejected(
  responseParams: [string, string | true][],
  options: PerMessageDeflateOptions = {},
  name = "permessage-deflate",
): void {
  assert.throws(
    () => acceptDeflateResponse({ name, params: responseParams }, options),
    (error) => {
      assert.ok(error instanceof HandshakeError, String(error));
      assert.equal(error.header, "sec-websocket-extensions");
      assert.match(
        error.message,
        /^Cannot accept permessage-deflate response: [^.]+[^.]$/,
      );
      return true;
    },
    JSON.stringify(responseParams),
  );
}

Deno.test("RFC 7692 §7 acceptDeflateResponse() rejects what the client did not allow", () => {
  for (const bad of invalidParams) assertResponseRejected(bad);
  // In a response client_max_window_bits needs a value (§7.1.2.2).
  assertResponseRejected([["client_max_window_bits", true]]);
  // The server must confirm server_no_context_takeover (§7.1.1.1).
  assertResponseRejected([], { serverNoContextTakeover: true });
  // The server must answer server_max_window_bits with at most the value (§7.1.2.1).
  assertResponseRejected([], { serverMaxWindowBits: 10 });
  assertResponseRejected([["server_max_window_bits", "11"]], {
    serverMaxWindowBits: 10,
  });
  // The server cannot raise a client_max_window_bits offered with a value.
  assertResponseRejected([["client_max_window_bits", "13"]], {
    clientMaxWindowBits: 12,
  });
  assertResponseRejected([], {}, "x-webkit-deflate-frame");
  assert.throws(
    () =>
      acceptDeflateResponse({
        name: "permessage-deflate",
        params: [["server_max_window_bits", "16"]],
      }),
    {
      message:
        'Cannot accept permessage-deflate response: parameter "server_max_window_bits" is "16", must be an integer from 8 to 15',
    },
  );
});

Deno.test("RFC 7692 §7 acceptDeflateResponse() accepts what the client allowed", () => {
  assert.deepEqual(
    acceptDeflateResponse({ name: "permessage-deflate", params: [] }),
    params(),
  );
  assert.deepEqual(
    acceptDeflateResponse({
      name: "permessage-deflate",
      params: [
        ["server_no_context_takeover", true],
        ["client_no_context_takeover", true],
        ["server_max_window_bits", "9"],
        ["client_max_window_bits", "8"],
      ],
    }),
    {
      serverNoContextTakeover: true,
      clientNoContextTakeover: true,
      serverMaxWindowBits: 9,
      clientMaxWindowBits: 8,
    },
  );
  // A smaller server window than asked for, and the client's own limit.
  assert.deepEqual(
    acceptDeflateResponse(
      { name: "permessage-deflate", params: [["server_max_window_bits", "8"]] },
      {
        serverMaxWindowBits: 10,
        clientMaxWindowBits: 11,
        clientNoContextTakeover: true,
      },
    ),
    params({
      serverMaxWindowBits: 8,
      clientMaxWindowBits: 11,
      clientNoContextTakeover: true,
    }),
  );
});
