// Copyright 2026 the @rfc6455/websocket authors. MIT license.

/**
 * A client that reconnects: {@linkcode reconnecting} gives one open
 * {@linkcode WebSocketClient} after another, waits with exponential backoff
 * and full jitter between them, retries the failures that pass (a refused or
 * reset connection, a timeout, a 5xx, 429 or 408 answer) and stops at the
 * ones that do not (a 4xx answer, a bad certificate, a bad option).
 *
 * @example A feed that survives the server closing it
 * ```ts
 * import { reconnecting } from "@rfc6455/websocket/reconnect";
 * import { serve } from "@rfc6455/websocket/server";
 * import assert from "node:assert/strict";
 *
 * let visits = 0;
 * await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (ws) => {
 *   await ws.send(`visit ${++visits}`);
 *   await ws.close(1001, "restarting");
 * });
 * const seen = [];
 * for await (const ws of reconnecting(`ws://127.0.0.1:${server.addr.port}/`, {
 *   initialDelay: 10,
 * })) {
 *   for await (const message of ws) seen.push(message);
 *   if (seen.length === 2) break;
 * }
 * assert.deepEqual(seen, ["visit 1", "visit 2"]);
 * ```
 *
 * @module
 */

import {
  connect,
  type ConnectOptions,
  type WebSocketClient,
} from "./client.ts";
import { ConnectionClosedError, HandshakeError } from "./errors.ts";

/**
 * Options of {@linkcode reconnecting}: those of {@linkcode connect}, used for
 * every connection, and the backoff. Times are in milliseconds.
 *
 * Before each reconnect, the client waits a random time between 0 and a
 * ceiling (full jitter): the ceiling starts at `initialDelay` and is
 * multiplied by `factor` after each wait, up to `maxDelay`. It starts over
 * after a connection that stayed open `stableAfter`.
 *
 * @example Quick retries, at most five in a row
 * ```ts
 * import type { ReconnectOptions } from "@rfc6455/websocket/reconnect";
 * import assert from "node:assert/strict";
 *
 * const options: ReconnectOptions = {
 *   initialDelay: 100,
 *   maxDelay: 5_000,
 *   maxRetries: 5,
 *   headers: { "User-Agent": "feed-reader/1.0" },
 * };
 * assert.equal(options.maxRetries, 5);
 * ```
 */
export interface ReconnectOptions extends ConnectOptions {
  /**
   * The ceiling of the first wait, in milliseconds: the first reconnect
   * waits a random time below it. A number from 0 to `maxDelay`.
   *
   * @default {1000, or maxDelay when smaller}
   */
  initialDelay?: number;
  /**
   * The highest ceiling of a wait, in milliseconds, at most 2^31 - 1.
   *
   * @default {30000}
   */
  maxDelay?: number;
  /**
   * What the ceiling of the wait is multiplied by after each wait: a finite
   * number of at least 1.
   *
   * @default {2}
   */
  factor?: number;
  /**
   * How many failed connects in a row are retried; the next failure ends the
   * iteration, which throws it. A non-negative integer or `Infinity`.
   *
   * @default {Infinity}
   */
  maxRetries?: number;
  /**
   * How long a connection must stay open, in milliseconds, for the backoff
   * to start over when it closes. A connection that closes sooner (a server
   * that accepts and closes at once) counts as a failure: the wait before
   * the next connect keeps growing. Any non-negative number.
   *
   * @default {10000}
   */
  stableAfter?: number;
  /**
   * Called before each wait with what ended the last attempt (the connect's
   * error, or a {@linkcode ConnectionClosedError} with the close code and
   * reason of a connection that closed), the number of the reconnect since
   * the backoff last started over (1, 2, ...) and the wait in milliseconds.
   * What it throws ends the iteration.
   *
   * @default {undefined}
   */
  onRetry?: (error: unknown, attempt: number, delay: number) => void;
  /**
   * The source of the jitter: a function that returns a number from 0 to 1.
   * Tests pass a fixed sequence to make the waits predictable.
   *
   * @default {Math.random}
   */
  random?: () => number;
}

/**
 * Connects to `url`, and again each time the connection closes or a connect
 * fails for a reason that may pass, with exponential backoff and full
 * jitter. Each iteration gives a freshly opened {@linkcode WebSocketClient};
 * the next one waits until that connection has closed (read it to its end,
 * or call its `close()`), then waits the backoff, then connects again.
 * Leaving the loop (`break`, `return`, a throw) closes the current connection
 * with 1000 (and awaiting `[Symbol.asyncDispose]()` of the iterator does the
 * same).
 *
 * Retried: errors of the network (`ConnectionRefused`, `ConnectionReset`,
 * `ConnectionAborted`, `NotConnected`, `BrokenPipe`, `TimedOut`,
 * `UnexpectedEof`, `NetworkUnreachable`, `AddrNotAvailable`, an unreachable
 * host, a failed DNS lookup), a `TimeoutError` of `handshakeTimeout`, a
 * server that closed the connection before its answer, and a
 * `HandshakeError` whose answer (the server's, or a proxy's) is 408, 429 or
 * 5xx other than 501 and 505. A `Retry-After` in that answer (seconds or a
 * date) makes the wait at least that long, within `maxDelay`. Anything else
 * ends the iteration by throwing it as it is: a bad URL or option
 * (`TypeError`, `RangeError`), another 4xx or 3xx answer, a wrong
 * `Sec-WebSocket-Accept` or another invalid answer, a certificate error
 * (`InvalidData`), a SOCKS5 proxy's refusal, a missing permission. So does
 * the last failure when `maxRetries` failures in a row were retried.
 *
 * `signal` aborts everything: the connect, the wait (its timer is cleared),
 * and the open connection (closed with 1001); the iteration then throws the
 * signal's reason. A connection that closed, whatever its code, is
 * reconnected: to stop on a close code, `break`.
 *
 * @param url The `ws:` or `wss:` URL, as for {@linkcode connect}.
 * @param options The options of {@linkcode connect} and of the backoff.
 * @returns The connections, one at a time, as an async generator.
 * @throws {RangeError} At once, if a backoff option is out of range (see
 * {@linkcode ReconnectOptions}); from the first iteration, before any I/O,
 * if an option of {@linkcode connect} is.
 * @throws {TypeError} At once, if `onRetry` or `random` is not a function;
 * from the first iteration, before any I/O, if the URL or a header is not
 * valid.
 * @throws {HandshakeError} From an iteration, for a refusal that is not
 * retried, or the last one when retries ran out.
 * @throws {Error} From an iteration, a network error that is not retried
 * (such as `InvalidData` for a certificate), or the last one when retries
 * ran out.
 * @throws {DOMException} From an iteration, the signal's reason when it
 * aborts, or the last `TimeoutError` when retries ran out.
 *
 * @example Retrying until the server is up
 * ```ts
 * import { reconnecting } from "@rfc6455/websocket/reconnect";
 * import { serve, type WebSocketServer } from "@rfc6455/websocket/server";
 * import assert from "node:assert/strict";
 *
 * // A free port, nobody listening yet.
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const { port } = listener.addr;
 * listener.close();
 * let server: WebSocketServer | undefined;
 * const retries: number[] = [];
 * for await (const ws of reconnecting(`ws://127.0.0.1:${port}/`, {
 *   initialDelay: 10,
 *   onRetry: (_error, attempt) => {
 *     retries.push(attempt);
 *     // The connect was refused: start the server now.
 *     server ??= serve({ hostname: "127.0.0.1", port }, (ws) => ws.send("up"));
 *   },
 * })) {
 *   for await (const message of ws) assert.equal(message, "up");
 *   break;
 * }
 * assert.deepEqual(retries, [1]);
 * await server?.shutdown();
 * ```
 *
 * @example Giving up on a refusal
 * ```ts
 * import { reconnecting } from "@rfc6455/websocket/reconnect";
 * import { HandshakeError } from "@rfc6455/websocket/errors";
 * import { serve } from "@rfc6455/websocket/server";
 * import assert from "node:assert/strict";
 *
 * await using server = serve({
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   upgrade: () => new Response("no", { status: 403 }),
 * }, () => {});
 * await assert.rejects(async () => {
 *   for await (const _ws of reconnecting(`ws://127.0.0.1:${server.addr.port}/`)) {
 *     assert.fail("the server refuses");
 *   }
 * }, (error) => error instanceof HandshakeError && error.status === 403);
 * ```
 */
export function reconnecting(
  url: string | URL,
  options: ReconnectOptions = {},
): AsyncGenerator<WebSocketClient, void, undefined> {
  // The same options for every connect, whatever the caller changes later.
  return run(url, { ...options }, checkBackoff(options));
}

// The backoff options, checked.
interface Backoff {
  initialDelay: number;
  maxDelay: number;
  factor: number;
  maxRetries: number;
  stableAfter: number;
  onRetry: ((error: unknown, attempt: number, delay: number) => void) | null;
  random: () => number;
}

// The longest delay a timer takes (a longer one fires at once).
const MAX_TIMEOUT = 2 ** 31 - 1;

function checkBackoff(options: ReconnectOptions): Backoff {
  const maxDelay = options.maxDelay ?? 30_000;
  if (!(maxDelay >= 0 && maxDelay <= MAX_TIMEOUT)) {
    throw new RangeError(
      `Cannot reconnect: maxDelay is ${maxDelay}, expected a number of ms from 0 to ${MAX_TIMEOUT}`,
    );
  }
  const initialDelay = options.initialDelay ?? Math.min(1_000, maxDelay);
  if (!(initialDelay >= 0 && initialDelay <= maxDelay)) {
    throw new RangeError(
      `Cannot reconnect: initialDelay is ${initialDelay}, expected a number of ms from 0 to maxDelay (${maxDelay})`,
    );
  }
  const factor = options.factor ?? 2;
  if (!(factor >= 1 && Number.isFinite(factor))) {
    throw new RangeError(
      `Cannot reconnect: factor is ${factor}, expected a finite number of at least 1`,
    );
  }
  const maxRetries = options.maxRetries ?? Infinity;
  if (
    !(maxRetries === Infinity ||
      (Number.isSafeInteger(maxRetries) && maxRetries >= 0))
  ) {
    throw new RangeError(
      `Cannot reconnect: maxRetries is ${maxRetries}, expected a non-negative integer or Infinity`,
    );
  }
  const stableAfter = options.stableAfter ?? 10_000;
  if (!(stableAfter >= 0)) {
    throw new RangeError(
      `Cannot reconnect: stableAfter is ${stableAfter}, expected a non-negative number of ms`,
    );
  }
  const { onRetry, random = Math.random } = options;
  if (onRetry !== undefined && typeof onRetry !== "function") {
    throw new TypeError("Cannot reconnect: onRetry is not a function");
  }
  if (typeof random !== "function") {
    throw new TypeError("Cannot reconnect: random is not a function");
  }
  return {
    initialDelay,
    maxDelay,
    factor,
    maxRetries,
    stableAfter,
    onRetry: onRetry ?? null,
    random,
  };
}

async function* run(
  url: string | URL,
  options: ReconnectOptions,
  backoff: Backoff,
): AsyncGenerator<WebSocketClient, void, undefined> {
  const signal = options.signal;
  // The number of the next wait since the backoff last started over, and
  // the ceiling of that wait.
  let attempt = 0;
  let ceiling = backoff.initialDelay;
  // Failed connects in a row.
  let failures = 0;
  // What ended the last attempt, when there was one.
  let last: { error: unknown } | undefined;
  while (true) {
    signal?.throwIfAborted();
    if (last !== undefined) {
      attempt++;
      const jitter = backoff.random();
      if (!(jitter >= 0 && jitter <= 1)) {
        throw new RangeError(
          `Cannot reconnect: random() returned ${jitter}, expected a number from 0 to 1`,
        );
      }
      const delay = Math.max(
        Math.round(jitter * ceiling),
        Math.min(retryAfter(last.error) ?? 0, backoff.maxDelay),
      );
      ceiling = Math.min(ceiling * backoff.factor, backoff.maxDelay);
      backoff.onRetry?.(last.error, attempt, delay);
      await wait(delay, signal);
    }
    let ws: WebSocketClient;
    try {
      ws = await connect(url, options);
    } catch (error) {
      // The caller's abort (its reason may be a TimeoutError too) is not
      // retried, nor is a failure that will not pass.
      if (signal?.aborted || !isTransient(error)) throw error;
      failures++;
      if (failures > backoff.maxRetries) throw error;
      last = { error };
      continue;
    }
    failures = 0;
    const opened = performance.now();
    let uptime = Infinity;
    const closed = ws.closed.then((info) => {
      uptime = performance.now() - opened;
      return info;
    });
    let resumed = false;
    try {
      yield ws;
      resumed = true;
    } finally {
      // Leaving the loop (break, return, a throw) closes the connection.
      if (!resumed) await ws.close();
    }
    const { code, reason } = await closed;
    if (uptime >= backoff.stableAfter) {
      attempt = 0;
      ceiling = backoff.initialDelay;
    }
    last = { error: new ConnectionClosedError(code, reason) };
  }
}

// Waits `ms`, or rejects with the signal's reason when it aborts; either way
// no timer or listener is left behind.
function wait(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    // onRetry may have aborted it.
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

// Network errors that pass: Deno's error classes, by name, and the errno
// codes of those Deno reports as a plain Error (an unreachable host).
const TRANSIENT_NAMES = new Set([
  "ConnectionRefused",
  "ConnectionReset",
  "ConnectionAborted",
  "NotConnected",
  "BrokenPipe",
  "TimedOut",
  "UnexpectedEof",
  "NetworkUnreachable",
  "AddrNotAvailable",
  "Interrupted",
]);
const TRANSIENT_CODES = new Set([
  "EHOSTUNREACH",
  "EHOSTDOWN",
  "ENETDOWN",
  "EAI_AGAIN",
]);

// Answers that say "later": RFC 9110 §15.5.9 (408), RFC 6585 §4 (429) and
// the 5xx (§15.6) but 501 Not Implemented and 505 HTTP Version Not
// Supported, which say "never".
function isTransientStatus(status: number): boolean {
  return status === 408 || status === 429 ||
    (status >= 500 && status <= 599 && status !== 501 && status !== 505);
}

// Whether a failed connect may succeed if tried again.
function isTransient(error: unknown): boolean {
  if (error instanceof HandshakeError) {
    if (error.status === undefined) return false;
    // No answer came (a status of our own, without headers): only a server
    // that closed the connection before answering is retried, not one that
    // sent bytes that are not HTTP (a bare CR, a head too large).
    if (error.headers === undefined) {
      return error.cause instanceof Error &&
        error.cause.name === "UnexpectedEof";
    }
    return isTransientStatus(error.status);
  }
  if (error instanceof DOMException) return error.name === "TimeoutError";
  if (!(error instanceof Error)) return false;
  if (TRANSIENT_NAMES.has(error.name)) return true;
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string" && TRANSIENT_CODES.has(code)) return true;
  // Deno reports a failed DNS lookup as a plain Error.
  return error.name === "Error" &&
    error.message.startsWith("failed to lookup address information");
}

// The wait a refusal asks for in its Retry-After (RFC 9110 §10.2.3), in ms:
// seconds, or a date.
function retryAfter(error: unknown): number | undefined {
  if (!(error instanceof HandshakeError)) return undefined;
  const value = error.headers?.get("retry-after")?.trim();
  if (value === undefined || value === "") return undefined;
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}
