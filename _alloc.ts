// Copyright 2026 the @rfc6455/websocket authors. MIT license.
// This module is browser compatible: it uses only the Web platform.
// Private helper of frame.ts, connection.ts and server.ts: byte
// arrays, pooled or joined. Not an entry point.

// Allocating a typed array costs 0.6 to 1 microsecond in Deno 2.9.6 whatever
// its size (every backing store is allocated outside the JS heap), more than
// decoding a small frame; a view on an existing buffer costs about 20 ns. Small payloads are therefore
// carved out of shared 64 KiB slabs, as Node's Buffer pool does: a kept
// payload keeps its slab alive, so only payloads up to POOL_LIMIT bytes
// share, and a slab holds at most SLAB_SIZE / 8 of them.
const SLAB_SIZE = 64 * 1024;
/** The largest size that {@linkcode allocate} carves out of a slab. */
export const POOL_LIMIT = 4 * 1024;

const slabs = new WeakSet<ArrayBuffer>();
let slab = newSlab();
let slabOffset = 0;

function newSlab(): ArrayBuffer {
  const buffer = new ArrayBuffer(SLAB_SIZE);
  slabs.add(buffer);
  return buffer;
}

/**
 * A new byte array of `size` bytes (not zeroed when it comes from a slab:
 * callers overwrite every byte).
 */
export function allocate(size: number): Uint8Array<ArrayBuffer> {
  if (size > POOL_LIMIT || size === 0) return new Uint8Array(size);
  if (slabOffset + size > SLAB_SIZE) {
    slab = newSlab();
    slabOffset = 0;
  }
  const bytes = new Uint8Array(slab, slabOffset, size);
  // Keep every array 8-byte aligned, so that masking works in words.
  slabOffset += (size + 7) & ~7;
  return bytes;
}

/** A copy of `bytes`, from {@linkcode allocate}. */
export function copyOf(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  const copy = allocate(bytes.length);
  copy.set(bytes);
  return copy;
}

/**
 * Whether `bytes` owns its memory: a whole buffer, or a slab allocation of
 * {@linkcode allocate}; not a view into somebody's larger buffer.
 */
export function isOwned(bytes: Uint8Array): bytes is Uint8Array<ArrayBuffer> {
  const buffer = bytes.buffer;
  return buffer instanceof ArrayBuffer &&
    (bytes.byteLength === buffer.byteLength || slabs.has(buffer));
}

/**
 * The bytes of `parts` one after the other, in an array of its own of
 * `total` bytes (the sum of their lengths, which the caller counted).
 */
export function concat(
  parts: Uint8Array[],
  total: number,
): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
