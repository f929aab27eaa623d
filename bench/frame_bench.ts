// Copyright 2026 the @rfc6455/websocket authors. MIT license.

/**
 * Benchmarks of the frame codec. Each group has a plain memory copy of the
 * same bytes as its baseline, so `deno bench` prints ratios ("x times slower
 * than the copy") that mean the same on any machine.
 *
 * Results of one run after the allocation work (mask and masked decode rows
 * after `applyMask` went to eight words a round; `deno bench
 * bench/frame_bench.ts`, Deno 2.9.6, x86_64 Linux, 2 vCPUs shared with other
 * jobs, so absolute times vary several-fold between runs; the ratio to the
 * copy in the same group is the figure to compare):
 *
 * | group         | benchmark                       |      avg | vs copy |
 * | ------------- | ------------------------------- | -------: | ------: |
 * | mask 1 MiB    | copy (`target.set`)             |  40.9 µs |   1.00x |
 * | mask 1 MiB    | `applyMask` in place            |  98.4 µs |   2.41x |
 * | mask 1 MiB    | naive byte-loop XOR             | 640.8 µs |  15.67x |
 * | decode 64 B   | masked frames (server)          |   6.4 ms | 144.00x |
 * | decode 64 B   | unmasked frames (client)        |   2.3 ms |  51.77x |
 * | decode 1 KiB  | masked frames (server)          | 632.3 µs |  16.16x |
 * | decode 1 KiB  | unmasked frames (client)        | 139.8 µs |   3.50x |
 * | decode 64 KiB | masked frames (server)          | 319.7 µs |   9.60x |
 * | decode 64 KiB | unmasked frames (client, views) |   2.8 µs |   0.08x |
 * | encode        | `encodeFrame` 64 B unmasked     | 795.2 ns |   0.46x |
 * | encode        | `encodeFrame` 1 KiB masked      |   1.6 µs |   0.95x |
 * | encode        | `encodeFrame` 64 KiB masked     |  21.0 µs |  12.29x |
 *
 * Before it, small masked frames cost about 2 µs each (527x the copy at 64
 * B): in Deno 2.9.6 every `new Uint8Array(n)` or `slice()` costs 0.6 to 1 µs,
 * whatever `n`. The decoder now carves payloads and masking keys out of
 * shared slabs (`_alloc.ts`). `encodeFrame` still allocates one buffer per
 * frame; the connection encodes into reused buffers instead
 * (`encodeFrameInto`).
 *
 * A client encodes into SIMD slabs (`_simd.ts`): "encodeFrameInto 64 KiB
 * masked, a SIMD slab" took 3.7-3.8 µs in three runs (about 2.2x the copy),
 * against 4.1-4.3 µs before the SIMD loop started at the payload's first
 * 16-byte boundary (a 64 KiB frame's payload starts 14 bytes in).
 *
 * @module
 */

import {
  applyMask,
  encodeFrame,
  encodeFrameInto,
  type Frame,
  FrameDecoder,
} from "../frame.ts";
import { SLAB_SIZE, takeSlab } from "../_simd.ts";

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

// --- mask 256 KiB: a client's write batch --------------------------------

{
  const source = randomBytes(SLAB_SIZE);
  const target = new Uint8Array(SLAB_SIZE);
  const data = randomBytes(SLAB_SIZE);
  // A client encodes its large frames into slabs like this one, which
  // applyMask() masks 16 bytes at a time with WebAssembly SIMD (_simd.ts).
  const slab = takeSlab();
  if (slab === undefined) throw new Error("no SIMD slab: no WebAssembly SIMD");
  slab.set(data);

  Deno.bench({
    name: "copy 256 KiB (target.set)",
    group: "mask 256 KiB",
    baseline: true,
    fn() {
      target.set(source);
    },
  });

  Deno.bench({
    name: "applyMask 256 KiB in place, an array",
    group: "mask 256 KiB",
    fn() {
      applyMask(data, MASK);
    },
  });

  Deno.bench({
    name: "applyMask 256 KiB in place, a SIMD slab",
    group: "mask 256 KiB",
    fn() {
      applyMask(slab, MASK);
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

  // What a client's send() does with a 64 KiB message: encode it, masked,
  // into a SIMD slab of its write batch. The payload starts 14 bytes in;
  // the SIMD loop masks it from the first 16-byte boundary on.
  const slab = takeSlab();
  if (slab === undefined) throw new Error("no SIMD slab: no WebAssembly SIMD");
  const frame = binary(big, MASK);
  Deno.bench({
    name: "encodeFrameInto 64 KiB masked, a SIMD slab",
    group: "encode",
    fn() {
      sink += encodeFrameInto(frame, slab, 0);
    },
  });
}

globalThis.addEventListener("unload", () => {
  if (sink < 0) throw new Error("Unreachable");
});
