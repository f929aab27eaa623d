// Copyright 2026 the @rfc6455/websocket authors. MIT license.
// Private helpers of client.ts and server.ts: the socket chores both sides
// share. Not an entry point.

import type { ConnectionLimits, ConnectionOptions } from "./connection.ts";

/** The keys of {@linkcode ConnectionLimits}, which `connect()` and `serve()` pass through. */
export const CONNECTION_OPTION_KEYS: readonly (keyof ConnectionLimits)[] = [
  "maxMessageSize",
  "maxFrameSize",
  "maxFragments",
  "pingInterval",
  "pingTimeout",
  "closeTimeout",
  "writeHighWaterMark",
  "maxBufferedAmount",
];

/** The connection options among `options`, without the absent ones. */
export function pickConnectionOptions(
  options: ConnectionLimits,
): Omit<ConnectionOptions, "role"> {
  const picked: Omit<ConnectionOptions, "role"> = {};
  for (const key of CONNECTION_OPTION_KEYS) {
    const value = options[key];
    if (value !== undefined) picked[key] = value;
  }
  return picked;
}

/**
 * Turns off Nagle's algorithm: small frames go out at once, where Nagle
 * with delayed ACKs would hold each batch of small messages up to 40 ms.
 */
export function noDelay(conn: Deno.Conn): void {
  const setNoDelay = (conn as { setNoDelay?: (value: boolean) => void })
    .setNoDelay;
  try {
    setNoDelay?.call(conn, true);
  } catch {
    // Not a TCP socket underneath: nothing to tune.
  }
}

/** Writes all of `bytes` (a socket write may take only part). */
export async function writeAll(
  conn: Deno.Conn,
  bytes: Uint8Array,
): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) {
    offset += await conn.write(bytes.subarray(offset));
  }
}

/** How a write bounded by a signal ended: see {@linkcode writeWithin}. */
export type WriteOutcome = "written" | "aborted" | "failed";

/**
 * Writes all of `bytes` unless `signal` aborts first: then closes `conn`
 * (which ends the pending write) and resolves `"aborted"`. Resolves
 * `"failed"` when the write fails otherwise (the peer went away); it never
 * rejects.
 */
export async function writeWithin(
  conn: Deno.Conn,
  bytes: Uint8Array,
  signal: AbortSignal,
): Promise<WriteOutcome> {
  if (signal.aborted) {
    closeQuietly(conn);
    return "aborted";
  }
  const onAbort = () => closeQuietly(conn);
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    await writeAll(conn, bytes);
    return "written";
  } catch {
    return signal.aborted ? "aborted" : "failed";
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

/** Closes a socket that may be closed already. */
export function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Closed already.
  }
}
