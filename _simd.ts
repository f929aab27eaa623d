// Copyright 2026 the @rfc6455/websocket authors. MIT license.
// This module is browser compatible: it uses only the Web platform.
// Private helper of frame.ts and _writer.ts: masking with WebAssembly SIMD,
// 16 bytes at a time, in the write batches of clients. Not an entry point.
//
// JavaScript has no wider XOR than 32 bits: the word loop of applyMask()
// masks about 10 GB/s (6 to 10 microseconds per 64 KiB in Deno 2.9.6), the
// largest part of the user-space CPU a client spends sending a 64 KiB
// message. The SIMD loop below does it 3 to 4 times faster. WebAssembly code
// can only touch its own memory, so the batches that a client encodes its
// large frames into are slabs of a WebAssembly.Memory, lent by a pool that
// every connection of the process shares; applyMask() uses the loop for any
// data in a slab, and its own JavaScript loop for the rest. Where WebAssembly
// or SIMD is missing, or every slab is taken, a batch is a plain array and
// nothing changes but the speed.
//
// Why a pool with explicit take() and give() instead of one memory per
// buffer: every memory reserves gigabytes of address space, and V8 caps the
// total, so memories cannot be made per batch and left to the garbage
// collector, which frees them late. A slab never reaches the caller of
// send(): it is filled by the frame encoder, written by the transport's own
// write() and given back once that write is settled, so sharing slabs between
// connections exposes no connection's bytes to another.
//
// A memory is never grown: growing would detach its buffer and every slab.

// The module, in the text format:
//
//   (module
//     (import "m" "m" (memory 1))
//     (func (export "mask") (param $at i32) (param $end i32) (param $key i32)
//       (local $k v128)
//       (local.set $k (i32x4.splat (local.get $key)))
//       (block $out64 (loop $by64          ;; 64 bytes a round
//         (br_if $out64 (i32.gt_u (i32.add (local.get $at) (i32.const 64))
//                                 (local.get $end)))
//         (v128.store offset=0 (local.get $at)
//           (v128.xor (v128.load offset=0 (local.get $at)) (local.get $k)))
//         ... the same at offset=16, offset=32 and offset=48 ...
//         (local.set $at (i32.add (local.get $at) (i32.const 64)))
//         (br $by64)))
//       (block $out16 (loop $by16          ;; then 16 bytes a round
//         (br_if $out16 (i32.gt_u (i32.add (local.get $at) (i32.const 16))
//                                 (local.get $end)))
//         (v128.store (local.get $at)
//           (v128.xor (v128.load (local.get $at)) (local.get $k)))
//         (local.set $at (i32.add (local.get $at) (i32.const 16)))
//         (br $by16)))))
//
// `end - at` is a multiple of 16; the caller masks the rest.
function xorAt(offset: number): number[] {
  // deno-fmt-ignore
  return [
    0x20, 0, // local.get $at
    0x20, 0, 0xfd, 0x00, 0, offset, // v128.load align=1 offset
    0x20, 3, 0xfd, 0x51, // local.get $k, v128.xor
    0xfd, 0x0b, 0, offset, // v128.store align=1 offset
  ];
}

// An unsigned LEB128 number, as sizes are in the binary format.
function leb(value: number): number[] {
  const bytes = [];
  while (value > 0x7f) {
    bytes.push((value & 0x7f) | 0x80);
    value >>>= 7;
  }
  bytes.push(value);
  return bytes;
}

function section(id: number, content: number[]): number[] {
  return [id, ...leb(content.length), ...content];
}

/** The binary module that the comment above spells out. */
export function wasmBytes(): Uint8Array<ArrayBuffer> {
  // deno-fmt-ignore
  const body = [
    0x01, 0x01, 0x7b, // one local: v128
    0x20, 2, 0xfd, 0x11, 0x21, 3, // $k = i32x4.splat($key)
    0x02, 0x40, 0x03, 0x40, // block, loop
    0x20, 0, 0x41, 0xc0, 0x00, 0x6a, 0x20, 1, 0x4b, 0x0d, 1, // $at + 64 > $end?
    ...xorAt(0),
    ...xorAt(16),
    ...xorAt(32),
    ...xorAt(48),
    0x20, 0, 0x41, 0xc0, 0x00, 0x6a, 0x21, 0, // $at += 64
    0x0c, 0, 0x0b, 0x0b, // br $by64, end, end
    0x02, 0x40, 0x03, 0x40, // block, loop
    0x20, 0, 0x41, 0x10, 0x6a, 0x20, 1, 0x4b, 0x0d, 1, // $at + 16 > $end?
    ...xorAt(0),
    0x20, 0, 0x41, 0x10, 0x6a, 0x21, 0, // $at += 16
    0x0c, 0, 0x0b, 0x0b, // br $by16, end, end
    0x0b, // end of the function
  ];
  // deno-fmt-ignore
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // "\0asm", version 1
    ...section(1, [1, 0x60, 3, 0x7f, 0x7f, 0x7f, 0]), // (i32 i32 i32) -> ()
    ...section(2, [1, 1, 0x6d, 1, 0x6d, 0x02, 0x00, 1]), // import "m" "m" memory
    ...section(3, [1, 0]), // one function of type 0
    ...section(7, [1, 4, 0x6d, 0x61, 0x73, 0x6b, 0x00, 0]), // export "mask"
    ...section(10, [1, ...leb(body.length), ...body]),
  ]);
}

type MaskFunction = (at: number, end: number, key: number) => void;

/** The size of one slab: a write batch of several 64 KiB frames. */
export const SLAB_SIZE = 256 * 1024;
/** The slabs of one memory (8 MiB; pages never touched cost no RAM). */
const SLABS_PER_MEMORY = 32;
/** The most memories made, ever: the pool holds at most 128 slabs (32 MiB). */
const MAX_MEMORIES = 4;
/** The most slabs the pool holds. */
export const MAX_SLABS = SLABS_PER_MEMORY * MAX_MEMORIES;

/** One memory: its slabs, the free ones by index, and its mask function. */
interface Arena {
  bytes: Uint8Array<ArrayBuffer>;
  mask: MaskFunction;
  free: number[];
  isFree: boolean[];
}

let module: WebAssembly.Module | null | undefined;
const arenas: Arena[] = [];
const arenaOf = new WeakMap<ArrayBufferLike, Arena>();

function compiled(): WebAssembly.Module | null {
  if (module === undefined) {
    try {
      module = new WebAssembly.Module(wasmBytes());
    } catch {
      // No WebAssembly, or no SIMD: applyMask() masks in JavaScript.
      module = null;
    }
  }
  return module;
}

function newArena(): Arena | undefined {
  const wasm = compiled();
  if (wasm === null || arenas.length >= MAX_MEMORIES) return undefined;
  try {
    const pages = SLABS_PER_MEMORY * SLAB_SIZE / 65536;
    const memory = new WebAssembly.Memory({ initial: pages, maximum: pages });
    const instance = new WebAssembly.Instance(wasm, { m: { m: memory } });
    // Not shared (no `shared: true`): an ArrayBuffer.
    const bytes = new Uint8Array(memory.buffer as ArrayBuffer);
    const arena: Arena = {
      bytes,
      mask: instance.exports.mask as MaskFunction,
      free: Array.from({ length: SLABS_PER_MEMORY }, (_, i) => i).reverse(),
      isFree: new Array<boolean>(SLABS_PER_MEMORY).fill(true),
    };
    arenas.push(arena);
    arenaOf.set(memory.buffer, arena);
    return arena;
  } catch {
    // Out of address space: plain arrays do as well, more slowly.
    return undefined;
  }
}

/**
 * A slab of {@linkcode SLAB_SIZE} bytes that applyMask() masks with SIMD, to
 * be given back with {@linkcode giveSlab} once nothing uses it; or
 * `undefined` when WebAssembly SIMD is missing or every slab is taken. Its
 * bytes are whatever the last user left.
 */
export function takeSlab(): Uint8Array<ArrayBuffer> | undefined {
  let arena: Arena | undefined;
  for (const each of arenas) {
    if (each.free.length > 0) {
      arena = each;
      break;
    }
  }
  arena ??= newArena();
  if (arena === undefined) return undefined;
  const index = arena.free.pop()!;
  arena.isFree[index] = false;
  return arena.bytes.subarray(index * SLAB_SIZE, (index + 1) * SLAB_SIZE);
}

/**
 * Gives back a slab of {@linkcode takeSlab} (or any view that starts at one):
 * the pool lends it again. Nothing may use its bytes after. Anything else is
 * ignored, and so is a slab given back twice.
 */
export function giveSlab(bytes: Uint8Array): void {
  const arena = arenaOf.get(bytes.buffer);
  if (arena === undefined || bytes.byteOffset % SLAB_SIZE !== 0) return;
  const index = bytes.byteOffset / SLAB_SIZE;
  if (arena.isFree[index]) return;
  arena.isFree[index] = true;
  arena.free.push(index);
}

/** Whether `bytes` is (a view of) a slab of {@linkcode takeSlab}. */
export function isSlab(bytes: Uint8Array): boolean {
  return arenaOf.has(bytes.buffer);
}

/** How many slabs are free, and how many were made, over all memories. */
export function slabCounts(): { free: number; made: number } {
  let free = 0;
  for (const arena of arenas) free += arena.free.length;
  return { free, made: arenas.length * SLABS_PER_MEMORY };
}

/**
 * Masks the first bytes of `data` with SIMD when it lies in a slab's memory,
 * and returns how many; 0 otherwise. `key` is the masking key as the
 * little-endian 32-bit word of the four key bytes in the order they apply
 * from `data[0]`. The bytes up to the first 16-byte boundary are masked one
 * by one, then whole 16-byte blocks (the rest, under 16 bytes, is the
 * caller's): aligned blocks mask about 1.5x faster (a frame's payload
 * starts 6, 8 or 14 bytes into its batch).
 */
export function maskWithSimd(data: Uint8Array, key: number): number {
  const arena = arenaOf.get(data.buffer);
  if (arena === undefined) return 0;
  const lead = Math.min((16 - (data.byteOffset & 15)) & 15, data.length);
  for (let i = 0; i < lead; i++) data[i]! ^= key >>> ((i & 3) << 3);
  const shift = (lead & 3) << 3;
  const rotated = shift === 0 ? key : (key >>> shift) | (key << (32 - shift));
  const at = data.byteOffset + lead;
  const count = (data.length - lead) & ~15;
  arena.mask(at, at + count, rotated);
  return lead + count;
}
