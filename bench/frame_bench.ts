// Copyright 2026 the @rfc6455/websocket authors. MIT license.

/**
 * Benchmarks of the frame codec. Each group has a plain memory copy of the
 * same bytes as its baseline, so `deno bench` prints ratios ("x times slower
 * than the copy") that mean the same on any machine.
 *
 * Results of one run (`deno bench bench/frame_bench.ts`, Deno 2.9.6, V8
 * 15.0, x86_64 Linux, 2 vCPUs shared with other jobs: load average ~5 and
 * swapping, so absolute times varied up to 5x between runs; the ratio to
 * the copy in the same group is the figure to compare). MB/s = bytes /
 * average time.
 *
 * | group         | benchmark                       |      avg | vs copy |      MB/s |
 * | ------------- | ------------------------------- | -------: | ------: | --------: |
 * | mask 1 MiB    | copy (`target.set`)             |  67.1 µs |   1.00x |    15,627 |
 * | mask 1 MiB    | `applyMask` in place            | 214.3 µs |   3.19x |     4,893 |
 * | mask 1 MiB    | naive byte-loop XOR             | 942.0 µs |  14.03x |     1,113 |
 * | decode 64 B   | copy of the chunk               |  53.7 µs |   1.00x |    19,526 |
 * | decode 64 B   | masked frames (server)          |  28.3 ms | 527.20x |        37 |
 * | decode 64 B   | unmasked frames (client)        |   4.5 ms |  83.63x |       233 |
 * | decode 1 KiB  | copy of the chunk               |  44.1 µs |   1.00x |    23,776 |
 * | decode 1 KiB  | masked frames (server)          |   2.8 ms |  62.64x |       380 |
 * | decode 1 KiB  | unmasked frames (client)        | 198.6 µs |   4.51x |     5,280 |
 * | decode 64 KiB | copy of the chunk               |  37.6 µs |   1.00x |    26,150 |
 * | decode 64 KiB | masked frames (server)          | 342.6 µs |   9.12x |     2,870 |
 * | decode 64 KiB | unmasked frames (client, views) |   3.7 µs |   0.10x | (no copy) |
 * | encode        | copy of a 64 KiB payload        |   1.8 µs |   1.00x |    36,409 |
 * | encode        | `encodeFrame` 64 B unmasked     | 542.7 ns |   0.31x |       118 |
 * | encode        | `encodeFrame` 64 B masked       | 942.5 ns |   0.54x |        68 |
 * | encode        | `encodeFrame` 1 KiB unmasked    |   1.5 µs |   0.85x |       692 |
 * | encode        | `encodeFrame` 1 KiB masked      |   1.2 µs |   0.68x |       863 |
 * | encode        | `encodeFrame` 64 KiB unmasked   |   7.4 µs |   4.22x |     8,856 |
 * | encode        | `encodeFrame` 64 KiB masked     |  16.8 µs |   9.61x |     3,901 |
 *
 * Small masked frames cost about 2 µs each. Not profiled; the likely cost is
 * the two `ArrayBuffer`s the decoder allocates per masked frame (the key and
 * the payload copy) and the GC they cause.
 *
 * @module
 */

import { applyMask, encodeFrame, type Frame, FrameDecoder } from "../frame.ts";

const MIB = 1024 * 1024;
const MASK = new Uint8Array([0x37, 0xfa, 0x21, 0x3d]);

function randomBytes(length: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(length);
  // getRandomValues fills at most 65536 bytes per call.
  for (let i = 0; i < length; i += 65536) {
    crypto.getRandomValues(bytes.subarray(i, i + 65536));
  }
  return bytes;
}

function concat(chunks: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  let length = 0;
  for (const chunk of chunks) length += chunk.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

function binary(payload: Uint8Array, mask?: Uint8Array): Frame {
  const frame: Frame = {
    fin: true,
    rsv1: false,
    rsv2: false,
    rsv3: false,
    opcode: 0x2,
    payload,
  };
  if (mask !== undefined) frame.mask = mask;
  return frame;
}

/** A chunk of at most 1 MiB holding as many whole frames as fit. */
function chunkOfFrames(payloadSize: number, masked: boolean): Uint8Array {
  const one = encodeFrame(
    binary(randomBytes(payloadSize), masked ? MASK : undefined),
  );
  const count = Math.floor(MIB / one.length);
  return concat(Array.from({ length: count }, () => one));
}

// Keeps results alive so that nothing is optimized away.
let sink = 0;

// --- mask 1 MiB ---------------------------------------------------------

{
  const source = randomBytes(MIB);
  const target = new Uint8Array(MIB);
  const data = randomBytes(MIB);

  Deno.bench({
    name: "copy 1 MiB (target.set)",
    group: "mask 1 MiB",
    baseline: true,
    fn() {
      target.set(source);
    },
  });

  Deno.bench({
    name: "applyMask 1 MiB in place",
    group: "mask 1 MiB",
    fn() {
      applyMask(data, MASK);
    },
  });

  Deno.bench({
    name: "naive byte-loop XOR 1 MiB",
    group: "mask 1 MiB",
    fn() {
      for (let i = 0; i < data.length; i++) data[i]! ^= MASK[i & 3]!;
    },
  });
}

// --- decode -------------------------------------------------------------

for (
  const [label, payloadSize] of [
    ["64 B", 64],
    ["1 KiB", 1024],
    ["64 KiB", 64 * 1024],
  ] as const
) {
  const group = `decode ${label}`;
  const masked = chunkOfFrames(payloadSize, true);
  const unmasked = chunkOfFrames(payloadSize, false);
  const copy = new Uint8Array(MIB);

  Deno.bench({
    name: `copy the 1 MiB chunk (${label} frames)`,
    group,
    baseline: true,
    fn() {
      copy.set(masked);
    },
  });

  Deno.bench({
    name: `decode ~1 MiB of masked ${label} frames (server)`,
    group,
    fn() {
      sink += new FrameDecoder({ role: "server" }).push(masked).length;
    },
  });

  Deno.bench({
    name: `decode ~1 MiB of unmasked ${label} frames (client)`,
    group,
    fn() {
      sink += new FrameDecoder({ role: "client" }).push(unmasked).length;
    },
  });
}

// --- encode -------------------------------------------------------------

{
  const big = randomBytes(64 * 1024);
  const copy = new Uint8Array(64 * 1024);

  Deno.bench({
    name: "copy a 64 KiB payload (baseline)",
    group: "encode",
    baseline: true,
    fn() {
      copy.set(big);
    },
  });

  for (
    const [label, payloadSize] of [
      ["64 B", 64],
      ["1 KiB", 1024],
      ["64 KiB", 64 * 1024],
    ] as const
  ) {
    const payload = payloadSize === big.length ? big : randomBytes(payloadSize);
    const unmaskedFrame = binary(payload);
    const maskedFrame = binary(payload, MASK);

    Deno.bench({
      name: `encodeFrame ${label} unmasked`,
      group: "encode",
      fn() {
        sink += encodeFrame(unmaskedFrame).length;
      },
    });

    Deno.bench({
      name: `encodeFrame ${label} masked`,
      group: "encode",
      fn() {
        sink += encodeFrame(maskedFrame).length;
      },
    });
  }
}

globalThis.addEventListener("unload", () => {
  if (sink < 0) throw new Error("Unreachable");
});
