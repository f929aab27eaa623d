// Copyright 2026 the @rfc6455/websocket authors. MIT license.
// Helpers shared by the test files.

import assert from "node:assert/strict";
import { echoHandler } from "../examples/echo_handler.ts";
import {
  serve,
  type ServeOptions,
  type WebSocketHandler,
  type WebSocketServer,
} from "../server.ts";

/** How long a test waits for one thing before it fails, in milliseconds. */
export const WAIT = 10_000;

/** Rejects when `promise` does not settle within `ms`; the timer is cleared. */
export async function deadline<T>(
  promise: Promise<T>,
  what: string,
  ms: number = WAIT,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`Timed out after ${ms} ms: ${what}`)),
          ms,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The bytes of `parts`, one after the other. */
export function concat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  return concatAll(parts);
}

/** The bytes of a list of chunks (of any length), one after the other. */
export function concatAll(
  parts: readonly Uint8Array[],
): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Writes all of `bytes` to a socket: the library's own helper. */
export { writeAll } from "../_socket.ts";

/** Deterministic bytes from a seeded xorshift, so failures reproduce. */
export function patternBytes(
  length: number,
  seed: number,
): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(length);
  let x = seed | 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = x & 0xff;
  }
  return bytes;
}

/** A JSON array of about `size` characters: compressible, like real traffic. */
export function jsonText(size: number): string {
  const items = [];
  let length = 2;
  for (let id = 0; length < size; id++) {
    const item = JSON.stringify({
      id,
      name: `user-${id}`,
      active: id % 3 === 0,
      score: (id * 7919) % 1000,
      tags: ["alpha", "beta", id % 2 ? "gamma" : "delta"],
    });
    items.push(item);
    length += item.length + 1;
  }
  return `[${items.join(",")}]`;
}

/**
 * A server on 127.0.0.1, port 0, whose `onError` reports the test collects;
 * by default it runs the echo service's handler.
 */
export function quietServer(
  options: ServeOptions = {},
  handler: WebSocketHandler = echoHandler,
): { server: WebSocketServer; errors: unknown[] } {
  const errors: unknown[] = [];
  const server = serve({
    hostname: "127.0.0.1",
    port: 0,
    onError: (error) => errors.push(error),
    ...options,
  }, handler);
  return { server, errors };
}

/**
 * The header of a binary frame announcing 2^63 - 1 bytes, the largest
 * length RFC 6455 §5.2 allows: FIN + binary, then 127 (with the MASK bit
 * when `masked`) and the 64-bit length (the masking key is not included).
 */
export function maxLengthHeader(masked: boolean): Uint8Array {
  return new Uint8Array([
    0x82,
    masked ? 0xff : 0x7f,
    0x7f,
    ...Array(7).fill(0xff),
  ]);
}

/**
 * Replaces `console.error` until disposed, keeping what it was called with:
 * for what the server prints itself.
 */
export function captureConsoleError(): Disposable & { printed: unknown[][] } {
  const printed: unknown[][] = [];
  // deno-lint-ignore no-console
  const original = console.error;
  // deno-lint-ignore no-console
  console.error = (...data: unknown[]) => printed.push(data);
  return {
    printed,
    [Symbol.dispose]() {
      // deno-lint-ignore no-console
      console.error = original;
    },
  };
}

/**
 * Asserts that a received message is `expected`: text equal to it, or
 * binary with the same bytes (the first differing byte named).
 */
export function assertMessage(
  actual: unknown,
  expected: string | Uint8Array,
  what: string,
): void {
  if (typeof expected === "string") {
    assert.equal(typeof actual, "string", `${what}: expected text`);
    assert.ok(actual === expected, `${what}: text differs`);
    return;
  }
  assert.ok(actual instanceof Uint8Array, `${what}: expected binary`);
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    if (actual[i] !== expected[i]) assert.fail(`${what}: differs at byte ${i}`);
  }
}
