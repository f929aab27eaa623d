// Copyright 2026 the @rfc6455/websocket authors. MIT license.

/**
 * The WebSocket server: {@linkcode serve} on `Deno.listen` /
 * `Deno.listenTls`, with origin and auth checks at upgrade time, limits,
 * timeouts and graceful shutdown; and {@linkcode createFetchHandler}, the same
 * handler API on top of `Deno.serve` + `Deno.upgradeWebSocket` for edge
 * platforms without raw sockets.
 *
 * @example An echo server
 * ```ts
 * import { serve } from "@rfc6455/websocket/server";
 * import assert from "node:assert/strict";
 *
 * await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (ws) => {
 *   for await (const message of ws) await ws.send(message);
 * });
 * const client = new WebSocket(`ws://127.0.0.1:${server.addr.port}/`);
 * const { promise, resolve } = Promise.withResolvers<string>();
 * client.onopen = () => client.send("hello");
 * client.onmessage = (event) => resolve(event.data);
 * assert.equal(await promise, "hello");
 * const closed = new Promise((done) => client.onclose = done);
 * client.close();
 * await closed;
 * ```
 *
 * @module
 */

import { concat } from "./_alloc.ts";
import { EdgeWebSocket } from "./_edge.ts";
import {
  checkMaxHeaders,
  checkMaxHeadSize,
  encodeLatin1,
  isValidHost,
  readChunk,
  refusalHeaders,
  refusalStatus,
  STATUS_TEXT,
} from "./_http.ts";
import {
  closeQuietly,
  noDelay,
  pickConnectionOptions,
  type WriteOutcome,
  writeWithin,
} from "./_socket.ts";
import {
  checkConnectionLimits,
  type ConnectionLimits,
  DEFAULT_MAX_MESSAGE_SIZE,
  WebSocketConnection,
  type WebSocketSession,
} from "./connection.ts";
import {
  acceptDeflateOffer,
  PerMessageDeflate,
  type PerMessageDeflateOptions,
} from "./deflate.ts";
import {
  ConnectionClosedError,
  HandshakeError,
  ProtocolError,
} from "./errors.ts";
import {
  buildErrorResponse,
  buildUpgradeResponse,
  errorResponseFor,
  type ExtensionOffer,
  formatExtensions,
  parseRequestHead,
  readHead,
  type RequestHead,
  selectProtocol,
  validateUpgradeRequest,
} from "./handshake.ts";

/**
 * What the upgrade hook of {@linkcode ServeOptions.upgrade} returns to accept
 * a client.
 *
 * @example Accepting with a cookie and per-connection data
 * ```ts
 * import type { UpgradeAccept } from "@rfc6455/websocket/server";
 * import assert from "node:assert/strict";
 *
 * const accept: UpgradeAccept<{ room: string }> = {
 *   headers: [["Set-Cookie", "seen=1"]],
 *   data: { room: "lobby" },
 * };
 * assert.equal(accept.data?.room, "lobby");
 * ```
 */
export interface UpgradeAccept<T> {
  /** Extra headers for the `101` answer, such as `Set-Cookie`. @default {[]} */
  headers?: [string, string][];
  /** Data for this connection, handed to the handler as its third argument. */
  data?: T;
  /**
   * The subprotocol to select, one the client offered; overrides
   * {@linkcode ServeOptions.protocols}.
   */
  protocol?: string;
}

/**
 * What an upgrade request looks like to the upgrade hook.
 *
 * @example Picking a subprotocol in the hook
 * ```ts
 * import type { UpgradeAccept, UpgradeInfo } from "@rfc6455/websocket/server";
 * import assert from "node:assert/strict";
 *
 * function hook(_request: Request, info: UpgradeInfo): UpgradeAccept<undefined> {
 *   return info.protocols.includes("v2") ? { protocol: "v2" } : {};
 * }
 * const info: UpgradeInfo = { protocols: ["v1", "v2"], extensions: [], remoteAddr: undefined };
 * assert.equal(hook(new Request("http://localhost/"), info).protocol, "v2");
 * ```
 */
export interface UpgradeInfo {
  /** The subprotocols the client offered, in its order. */
  protocols: string[];
  /** The extensions the client offered. */
  extensions: ExtensionOffer[];
  /** The address of the client (`undefined` on edge platforms that hide it). */
  remoteAddr: Deno.NetAddr | undefined;
}

/**
 * The handler of a WebSocket connection: it runs once the handshake is done
 * and the connection is open. When it returns, the connection is closed with
 * 1000 (if still open); when it throws, with 1011, and the error goes to
 * `onError`.
 *
 * @typeParam T The per-connection data the upgrade hook returns.
 *
 * @example A chat handler
 * ```ts
 * import type { WebSocketHandler } from "@rfc6455/websocket/server";
 *
 * const handler: WebSocketHandler<{ name: string }> = async (ws, _request, data) => {
 *   await ws.send(`welcome ${data.name}`);
 *   for await (const message of ws) await ws.send(`${data.name}: ${message}`);
 * };
 * void handler;
 * ```
 */
export type WebSocketHandler<T = undefined> = (
  ws: WebSocketSession,
  request: Request,
  data: T,
) => void | Promise<void>;

/**
 * Options of {@linkcode serve} (and, where they apply, of
 * {@linkcode createFetchHandler}). Times are in milliseconds, sizes in bytes.
 * The connection limits (`maxMessageSize`, `pingInterval`, ...) are those of
 * {@linkcode ConnectionLimits}.
 *
 * @typeParam T The per-connection data the upgrade hook returns.
 *
 * @example A locked-down server
 * ```ts
 * import type { ServeOptions } from "@rfc6455/websocket/server";
 * import assert from "node:assert/strict";
 *
 * const options: ServeOptions = {
 *   port: 9001,
 *   origins: ["https://example.com"],
 *   protocols: ["chat.v2"],
 *   maxMessageSize: 1 << 20,
 *   handshakeTimeout: 2_000,
 *   deflate: { serverNoContextTakeover: true },
 * };
 * assert.equal(options.port, 9001);
 * ```
 */
export interface ServeOptions<T = undefined> extends ConnectionLimits {
  /**
   * Accept permessage-deflate (RFC 7692) when a client offers it: `true`
   * with the defaults, an object to set what the server allows (window
   * bits, context takeover), its level and threshold; `false` to decline
   * every offer.
   *
   * @default {true}
   */
  deflate?: boolean | PerMessageDeflateOptions;
  /** The port to listen on; 0 picks a free one. @default {8080} */
  port?: number;
  /** The address to listen on. @default {"0.0.0.0"} */
  hostname?: string;
  /** The TLS certificate chain, PEM; with `key`, the server speaks wss. */
  cert?: string;
  /** The TLS private key, PEM. */
  key?: string;
  /** Aborting it shuts the server down, as {@linkcode WebSocketServer.shutdown} does. */
  signal?: AbortSignal;
  /**
   * How long each step of the opening handshake may take, in milliseconds:
   * the client has this long from the accept to send its whole request
   * (the TLS handshake included), the hooks (`upgrade`, `onRequest`, with
   * the body of the `Response` they return) have this long of their own,
   * and the client has this long to read the answer (the 101, or any
   * other). So a client that sends slowly cannot make a hook late.
   *
   * A client that has not sent its whole request in time is disconnected
   * without an answer (and not reported). A request whose hook has not
   * finished in time gets `503 Service Unavailable`, and `onError` hears a
   * `TimeoutError` that names the hook; the hook's `request.signal` aborts
   * then, so that it can give up. What the hook returns later is dropped (a
   * `Response`'s body cancelled), what it throws later goes to `onError`
   * (unless it is that signal's reason). A client that has not read its
   * whole answer in time (one larger than what the socket buffers take) is
   * disconnected, and `onError` hears a `HandshakeError` with the answer's
   * status and a `TimeoutError` as `cause`.
   *
   * @default {5000}
   */
  handshakeTimeout?: number;
  /**
   * The most handshakes in progress at once: connections accepted that are
   * not sessions yet (reading their request, running a hook, writing an
   * answer or in the lingering close after it). Past it, a new connection
   * is closed at once, unread and unanswered, so that a flood of clients
   * that connect and send nothing holds at most this many sockets (each
   * for up to `handshakeTimeout`). `onError` hears of it once per burst: a
   * `DOMException` named `QuotaExceededError` for the first connection
   * closed, then at most one every 10 s while connections are still being
   * closed. A positive integer, or `Infinity` for no limit.
   *
   * @default {1024}
   */
  maxPendingHandshakes?: number;
  /** The largest request head, in bytes; larger gets 431. @default {16384} */
  maxHeadSize?: number;
  /** The most header lines in a request head; more gets 431. @default {100} */
  maxHeaders?: number;
  /**
   * The subprotocols the server speaks, in any order: the first the client
   * offers that is in the list is selected. Or a function that picks one of
   * the offered ones (or `undefined` for none).
   *
   * @default {[]}
   */
  protocols?:
    | string[]
    | ((offered: string[], request: Request) => string | undefined);
  /**
   * The origins allowed to connect, besides the server's own: exact
   * `Origin` values (`"https://example.com"`) or patterns. Requests without
   * an `Origin` header (non-browser clients) are always allowed; a browser
   * request from another origin gets 403. See `insecureSkipOriginCheck`.
   *
   * @default {[]}
   */
  origins?: (string | RegExp)[];
  /**
   * Accept browser requests from every origin. This lets any web page
   * open a connection with its visitors' cookies (cross-site WebSocket
   * hijacking): use it only for public services that do not rely on
   * cookies, like an echo.
   *
   * @default {false}
   */
  insecureSkipOriginCheck?: boolean;
  /**
   * Decides on each upgrade request after the protocol and origin checks:
   * return a `Response` to refuse it (for example 401 for a missing token),
   * or an {@linkcode UpgradeAccept} (or nothing) to accept it. It has
   * `handshakeTimeout` from when the request was read to finish, refusal
   * body included; `request.signal` aborts when that passes or `shutdown()`
   * begins, and the client then gets 503.
   *
   * @default {undefined}
   */
  upgrade?: (
    request: Request,
    info: UpgradeInfo,
  ) =>
    | Response
    | UpgradeAccept<T>
    | void
    | Promise<Response | UpgradeAccept<T> | void>;
  /**
   * Answers requests that are not WebSocket upgrades. Without it they get
   * `426 Upgrade Required`. A `HEAD` request gets the head of the answer
   * only, with the `Content-Length` of its body (RFC 9110 §9.3.2). The
   * answer's body is at most 1 MiB (more is a `RangeError`: 500). Like the
   * upgrade hook, it has `handshakeTimeout` from when the request was read
   * to finish, body included; `request.signal` aborts when that passes or
   * `shutdown()` begins, and the client then gets 503.
   *
   * @default {undefined}
   */
  onRequest?: (request: Request) => Response | Promise<Response>;
  /**
   * Hears of every failure: refused upgrades (a `HandshakeError`), clients
   * that did not read their answer within `handshakeTimeout` (a
   * `HandshakeError` whose `cause` is a `TimeoutError`), hooks that did not
   * finish within it (a `TimeoutError` that names the hook), handlers that
   * threw, hooks that threw (even after their deadline), connections closed
   * past `maxPendingHandshakes` (a `QuotaExceededError`, once per burst),
   * and failed accepts (such as EMFILE, no file descriptor left: the server
   * tries again after 10 ms, twice as long after each failure in a row, at
   * most 1 s; a connection reset before it was accepted is skipped, without
   * a report or a pause). The server goes on. By default handler, hook, accept and
   * `maxPendingHandshakes` errors are printed with `console.error`; refused
   * upgrades (`HandshakeError`) and peers that broke the protocol
   * (`ProtocolError`) are not reported, so that no client can fill the
   * logs. When `onError` throws (or rejects), its first failure is printed
   * with `console.error`, and the server goes on.
   *
   * @default {undefined}
   */
  onError?: (error: unknown, request?: Request) => void;
  /** Called once the server listens. @default {undefined} */
  onListen?: (addr: Deno.NetAddr) => void;
  /**
   * How long `shutdown()` waits for connections to finish their close
   * handshake and handlers to return, in milliseconds, before closing the
   * rest.
   *
   * @default {5000}
   */
  shutdownTimeout?: number;
}

/**
 * A running server, from {@linkcode serve}.
 *
 * @example Broadcasting to every connection, then shutting down
 * ```ts
 * import { serve, type WebSocketServer } from "@rfc6455/websocket/server";
 * import assert from "node:assert/strict";
 *
 * const server: WebSocketServer = serve({ hostname: "127.0.0.1", port: 0 }, async (ws) => {
 *   for await (const _ of ws) { }
 * });
 * for (const ws of server.connections) await ws.send("news");
 * assert.equal(server.connections.size, 0);
 * await server.shutdown();
 * await server.finished;
 * ```
 */
export interface WebSocketServer extends AsyncDisposable {
  /** The address the server listens on. */
  readonly addr: Deno.NetAddr;
  /** The open connections (for broadcast). */
  readonly connections: ReadonlySet<WebSocketSession>;
  /** Resolves once the server has shut down. */
  readonly finished: Promise<void>;
  /**
   * Shuts down gracefully: stops accepting, sends 1001 to every open
   * connection, answers 503 to requests whose hooks still run (their
   * `request.signal` aborts), closes connections still sending their
   * request, waits for the close handshakes and handlers up to
   * `shutdownTimeout`, then closes what is left.
   */
  shutdown(): Promise<void>;
}

/**
 * Starts a WebSocket server on `Deno.listen` (or `Deno.listenTls` with
 * `cert` and `key`). Each connection runs the RFC 6455 opening handshake
 * with a deadline and a size limit, the origin check, subprotocol selection
 * and the upgrade hook, then calls `handler` with the open connection. A
 * request that is not an upgrade gets `onRequest`'s answer or 426; a bad
 * upgrade gets 400, 403, 405, 426 or 431 and the server goes on.
 *
 * @typeParam T The per-connection data the upgrade hook returns.
 * @param options Address, TLS, checks, limits and timeouts.
 * @param handler Runs for every open connection.
 * @returns The running server.
 * @throws {RangeError} If `maxPendingHandshakes` is not a positive integer
 * or `Infinity`, `handshakeTimeout` is not over 0, `shutdownTimeout` is
 * negative, or either is over 2,147,483,647 ms or not finite (before it
 * listens).
 *
 * @example Auth at upgrade time, and per-connection data
 * ```ts
 * import { serve } from "@rfc6455/websocket/server";
 * import assert from "node:assert/strict";
 *
 * await using server = serve<{ user: string }>({
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   upgrade: (request) => {
 *     const token = new URL(request.url).searchParams.get("token");
 *     if (token !== "secret") return new Response("no", { status: 401 });
 *     return { data: { user: "ada" } };
 *   },
 * }, async (ws, _request, data) => {
 *   await ws.send(`hello ${data.user}`);
 * });
 * const client = new WebSocket(`ws://127.0.0.1:${server.addr.port}/?token=secret`);
 * const message = await new Promise((resolve) => client.onmessage = (e) => resolve(e.data));
 * assert.equal(message, "hello ada");
 * await new Promise((resolve) => client.onclose = resolve);
 * ```
 */
export function serve<T = undefined>(
  options: ServeOptions<T>,
  handler: WebSocketHandler<T>,
): WebSocketServer {
  const maxPendingHandshakes = options.maxPendingHandshakes ?? 1024;
  if (
    !(maxPendingHandshakes === Infinity ||
      (Number.isSafeInteger(maxPendingHandshakes) && maxPendingHandshakes > 0))
  ) {
    throw new RangeError(
      `Cannot start server: maxPendingHandshakes is ${maxPendingHandshakes}, expected a positive integer or Infinity`,
    );
  }
  // NaN, Infinity and past what a timer can wait: setTimeout would fire at
  // once, and every handshake would fail.
  const handshakeTimeout = options.handshakeTimeout ?? 5_000;
  if (!(handshakeTimeout > 0 && handshakeTimeout <= MAX_TIMEOUT)) {
    throw new RangeError(
      `Cannot start server: handshakeTimeout is ${handshakeTimeout}, expected a number of ms over 0 and at most ${MAX_TIMEOUT}`,
    );
  }
  const shutdownTimeout = options.shutdownTimeout ?? 5_000;
  if (!(shutdownTimeout >= 0 && shutdownTimeout <= MAX_TIMEOUT)) {
    throw new RangeError(
      `Cannot start server: shutdownTimeout is ${shutdownTimeout}, expected a number of ms of at least 0 and at most ${MAX_TIMEOUT}`,
    );
  }
  // The limits of the head, the connections and compression, checked
  // here as they would be for each connection: a bad one is an error now,
  // not a failure of every handshake after its request was read (or its
  // 101 written).
  checkMaxHeadSize(options.maxHeadSize);
  checkMaxHeaders(options.maxHeaders);
  checkConnectionLimits(options);
  const deflateOptions = options.deflate === false
    ? undefined
    : options.deflate === true || options.deflate === undefined
    ? {}
    : options.deflate;
  // What each connection's compression context gets.
  const deflateContext = deflateOptions === undefined ? undefined : {
    ...deflateOptions,
    ...(options.maxMessageSize === undefined
      ? {}
      : { maxMessageSize: options.maxMessageSize }),
  };
  if (deflateContext !== undefined) acceptDeflateOffer([], deflateContext);
  const hostname = options.hostname ?? "0.0.0.0";
  const port = options.port ?? 8080;
  const tls = options.cert !== undefined && options.key !== undefined;
  const listener: Deno.Listener = tls
    ? Deno.listenTls({ hostname, port, cert: options.cert!, key: options.key! })
    : Deno.listen({ hostname, port, transport: "tcp" });
  const addr = listener.addr as Deno.NetAddr;
  const scheme = tls ? "https" : "http";
  const onError = guardOnError(options.onError ?? defaultOnError);
  const connectionOptions = pickConnectionOptions(options);

  // Connections in their handshake or in the lingering close after an
  // answer: see PendingHandshake.
  const pending = new Map<Deno.Conn, PendingHandshake>();
  const sessions = new Map<WebSocketConnection, Deno.Conn>();
  const tasks = new Set<Promise<void>>();
  let stopping = false;
  // What the waits of the handshakes abort with once shutdown() began.
  const shutdownReason = new DOMException(
    "Cannot complete opening handshake: server shutting down",
    "AbortError",
  );
  // Resolved by shutdown(): wakes the accept loop from its back-off.
  const stopped = Promise.withResolvers<void>();
  const finished = Promise.withResolvers<void>();

  // A hook past the deadline of its step: a TimeoutError that names it (at
  // shutdown, the signal's reason). See untilAborted().
  function untilDeadline<R>(
    hook: Hook,
    value: R | PromiseLike<R>,
    signal: AbortSignal,
    request: Request,
  ): Promise<R> {
    return untilAborted(
      value,
      signal,
      () => stopping ? signal.reason : hookTimeout(hook, handshakeTimeout),
      (error) => onError(error, request),
    );
  }

  // Starts one step of a handshake, which waits at most `ms`: its
  // controller becomes the connection's current one, which shutdown()
  // aborts. A step that starts once shutdown() began is aborted at once,
  // unless it runs at shutdown: the write of an answer (the 503 that
  // shutdown() answers, or one that was ready), which shutdown() cuts only
  // after shutdownTimeout.
  function startStep(
    state: PendingHandshake,
    ms: number,
    reason: () => unknown,
    atShutdown: "abort" | "run" = "abort",
  ): { signal: AbortSignal; end(): void } {
    const controller = new AbortController();
    state.controller = controller;
    if (stopping && atShutdown === "abort") {
      controller.abort(shutdownReason);
      return { signal: controller.signal, end() {} };
    }
    const timer = setTimeout(() => controller.abort(reason()), ms);
    return { signal: controller.signal, end: () => clearTimeout(timer) };
  }

  // Runs the opening handshake in three steps, each with handshakeTimeout
  // of its own: reading the request (from the accept), the hooks (from when
  // the request was read), writing the answer (from when the write
  // starts). A client that sends its request slowly cannot shorten the
  // hooks' time, nor a slow hook the client's. Resolves with the open
  // connection, "answered" when the request got another answer, or
  // undefined when it got none (timeouts, shutdown, a client gone).
  async function handshake(
    conn: Deno.Conn,
    state: PendingHandshake,
  ): Promise<
    | { ws: WebSocketConnection; request: Request; data: T }
    | "answered"
    | undefined
  > {
    let request: Request | undefined;
    // RFC 9110 §9.3.2: the answer to HEAD is the head of the answer to GET,
    // without its content (Content-Length stays that of the content, §8.6).
    let bodiless = false;

    // Writes an answer: the client has handshakeTimeout to take it. Past
    // it the connection is closed ("aborted", with the step's reason).
    const write = async (
      bytes: Uint8Array,
    ): Promise<{ outcome: WriteOutcome; reason: unknown }> => {
      const step = startStep(
        state,
        handshakeTimeout,
        () =>
          new DOMException(
            `Cannot write answer: not read within handshakeTimeout (${handshakeTimeout} ms)`,
            "TimeoutError",
          ),
        "run",
      );
      try {
        const outcome = await writeWithin(conn, bytes, step.signal);
        return { outcome, reason: step.signal.reason };
      } finally {
        step.end();
      }
    };
    // Reports an answer the client did not read in time (one larger than
    // the socket buffers take): a HandshakeError with the status of the
    // answer and the TimeoutError as cause (never the URL, which may hold
    // tokens). A write cut by shutdown() is not the client's doing.
    const reportUnread = (status: number, length: number, cause: unknown) => {
      if (stopping) return;
      onError(
        new HandshakeError(
          `${
            status === 101
              ? "Cannot upgrade to WebSocket"
              : "Cannot answer request"
          }: client did not read the ${status} answer (${length} bytes) within handshakeTimeout (${handshakeTimeout} ms)`,
          {
            status,
            cause,
            ...(request === undefined ? {} : { headers: request.headers }),
          },
        ),
        request,
      );
    };
    // Answers a failure and reports it: a HandshakeError with its status,
    // anything else (a hook that threw: without details, as
    // createFetchHandler does) with 500 once there is a request. Only the
    // failure is reported, not a client that did not read its answer.
    const refuse = async (error: unknown) => {
      const bytes = error instanceof HandshakeError
        ? errorResponseFor(error)
        : request === undefined
        ? undefined
        : buildErrorResponse(500);
      const sent = bytes !== undefined &&
        (await write(bodiless ? headOf(bytes) : bytes)).outcome === "written";
      onError(error, request);
      return sent ? "answered" : undefined;
    };
    // Answers 503 to a request whose hooks did not finish in time, or still
    // ran when shutdown() began, and reports it: the hook's TimeoutError,
    // or a refusal for the shutdown.
    const unavailable = async (error: unknown) => {
      onError(
        stopping
          ? new HandshakeError(
            "Cannot upgrade to WebSocket: server shutting down",
            {
              status: 503,
              ...(request === undefined ? {} : { headers: request.headers }),
            },
          )
          : error,
        request,
      );
      const bytes = buildErrorResponse(503);
      const { outcome } = await write(bodiless ? headOf(bytes) : bytes);
      return outcome === "written" ? "answered" : undefined;
    };

    // 1. The request head, within handshakeTimeout of the accept (the TLS
    // handshake included).
    let parsed: RequestHead;
    let rest: Uint8Array;
    const reading = startStep(
      state,
      handshakeTimeout,
      () =>
        new DOMException(
          `Cannot read request: not complete within handshakeTimeout (${handshakeTimeout} ms)`,
          "TimeoutError",
        ),
    );
    try {
      const reader = conn.readable.getReader();
      let head: Uint8Array;
      try {
        ({ head, rest } = await readHead(reader, {
          ...(options.maxHeadSize === undefined
            ? {}
            : { maxHeadSize: options.maxHeadSize }),
          signal: reading.signal,
        }));
      } finally {
        reader.releaseLock();
      }
      parsed = parseRequestHead(head, {
        ...(options.maxHeaders === undefined
          ? {}
          : { maxHeaders: options.maxHeaders }),
      });
    } catch (error) {
      // A request not read whole when handshakeTimeout passed (or
      // shutdown() began) has nothing to answer: the connection is closed,
      // unreported (a slow client is not a failure of the server). So is a
      // client that went away (a reset, a failed TLS handshake): reported,
      // with the default onError, it printed a line per connection.
      if (reading.signal.aborted || isIoError(error)) return undefined;
      return await refuse(error);
    } finally {
      reading.end();
    }
    bodiless = parsed.method === "HEAD";

    // 2. The checks and the hooks (and the body of the Response they
    // return), within handshakeTimeout of their own. request.signal is
    // this step's: it aborts when the hooks are too late or shutdown()
    // begins.
    const deciding = startStep(
      state,
      handshakeTimeout,
      () =>
        new DOMException(
          `Cannot upgrade to WebSocket: upgrade not decided within handshakeTimeout (${handshakeTimeout} ms)`,
          "TimeoutError",
        ),
    );
    const signal = deciding.signal;
    let answer: Uint8Array;
    let status: number;
    let open:
      | {
        decision: Decision<T>;
        extensions: ExtensionOffer[];
        accepted: ReturnType<typeof acceptDeflateOffer>;
      }
      | undefined;
    try {
      const current = toRequest(parsed, scheme, addr, signal);
      request = state.request = current;
      if (!isUpgrade(parsed.headers)) {
        const response = await untilDeadline(
          "onRequest",
          options.onRequest === undefined
            ? upgradeRequired()
            : options.onRequest(current),
          signal,
          current,
        );
        answer = await untilDeadline(
          "onRequest",
          serializeResponse(response, bodiless, signal),
          signal,
          current,
        );
        status = response.status;
      } else {
        const info = validateUpgradeRequest(parsed);
        const decision = await decide(
          options,
          current,
          {
            protocols: info.protocols,
            extensions: info.extensions,
            remoteAddr: conn.remoteAddr as Deno.NetAddr,
          },
          (value) => untilDeadline("upgrade hook", value, signal, current),
        );
        if (decision instanceof Response) {
          answer = await untilDeadline(
            "upgrade hook",
            serializeResponse(decision, bodiless, signal),
            signal,
            current,
          );
          status = decision.status;
        } else {
          const accepted = deflateOptions === undefined
            ? undefined
            : acceptDeflateOffer(info.extensions, deflateOptions);
          const extensions = accepted === undefined ? [] : [accepted.response];
          answer = await buildUpgradeResponse({
            key: info.key,
            extensions,
            ...(decision.protocol ? { protocol: decision.protocol } : {}),
            ...(decision.headers ? { headers: decision.headers } : {}),
          });
          status = 101;
          open = { decision, extensions, accepted };
        }
      }
      // Too late for the answer (the hooks were done, the rest was not):
      // the catch below answers 503.
      if (signal.aborted) throw signal.reason;
    } catch (error) {
      if (signal.aborted) return await unavailable(error);
      return await refuse(error);
    } finally {
      deciding.end();
    }

    // 3. The answer, which the client has handshakeTimeout to take.
    if (open === undefined) {
      const { outcome, reason } = await write(answer);
      if (outcome === "aborted") reportUnread(status, answer.length, reason);
      return outcome === "written" ? "answered" : undefined;
    }
    // shutdown() began after the hooks: no 101 then.
    if (stopping) return await unavailable(shutdownReason);
    // From the 101 on, the connection is a session: shutdown() closes it
    // with 1001 (see handle()) instead of answering it 503.
    pending.delete(conn);
    const { outcome, reason } = await write(answer);
    if (outcome !== "written") {
      if (outcome === "aborted") reportUnread(101, answer.length, reason);
      return undefined;
    }
    const { decision, extensions, accepted } = open;
    try {
      const ws = new WebSocketConnection(conn, {
        ...connectionOptions,
        role: "server",
        protocol: decision.protocol ?? "",
        extensions: formatExtensions(extensions),
        ...(accepted === undefined ? {} : {
          deflate: new PerMessageDeflate(
            accepted.params,
            "server",
            deflateContext,
          ),
        }),
        url: request.url,
        head: rest,
      });
      return { ws, request, data: decision.data as T };
    } catch (error) {
      onError(error, request);
      return undefined;
    }
  }

  async function handle(conn: Deno.Conn): Promise<void> {
    const state: PendingHandshake = {
      request: undefined,
      controller: new AbortController(),
    };
    pending.set(conn, state);
    noDelay(conn);
    let opened;
    try {
      opened = await handshake(conn, state);
      // After an answer that ends the connection, the client may still be
      // sending (a body, frames behind its request): closing with unread
      // bytes would reset the connection, and a reset can destroy the
      // answer before the client reads it. shutdown() ends it.
      if (opened === "answered" && !stopping) {
        state.controller = new AbortController();
        await linger(conn, state.controller.signal);
      }
    } finally {
      pending.delete(conn);
    }
    if (opened === undefined || opened === "answered") {
      closeQuietly(conn);
      return;
    }
    const { ws, request, data } = opened;
    sessions.set(ws, conn);
    // Its 101 went out while shutdown() began: it gets the 1001 that
    // shutdown() sent to the sessions it found.
    if (stopping && ws.isOpen) ws.close(1001, "server shutting down");
    try {
      await handler(ws, request, data);
      if (ws.isOpen) ws.close(1000, "");
    } catch (error) {
      if (!(error instanceof ConnectionClosedError)) onError(error, request);
      if (ws.isOpen) ws.close(1011, "");
    }
    await ws.closed;
    sessions.delete(ws);
  }

  function track(task: Promise<void>): void {
    tasks.add(task);
    // The tasks catch what they expect; anything else is reported here, not
    // left to reject unhandled, which would end the process.
    task.catch((error) => onError(error)).finally(() => tasks.delete(task));
  }

  // A failed accept() does not end the loop: EMFILE (no file descriptor
  // left) and the like pass once connections close. Each failure goes to
  // onError, then the loop waits before it tries again (a failing accept()
  // returns at once: retrying at once would spin), ACCEPT_BACKOFF_MIN ms
  // first, twice as long after each failure in a row, at most
  // ACCEPT_BACKOFF_MAX ms. shutdown() wakes it. A failure of one
  // connection (reset or aborted before it was accepted) is neither: the
  // client left, the listener is fine, and any client could otherwise print
  // a line and pause the loop for everyone.
  // When the last refusal past maxPendingHandshakes was reported.
  let refusalReported = -Infinity;
  const acceptLoop = (async () => {
    let backoff = 0;
    while (!stopping) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (stopping) break; // shutdown() closed the listener
        if (
          error instanceof Deno.errors.NotConnected ||
          error instanceof Deno.errors.ConnectionReset ||
          error instanceof Deno.errors.ConnectionAborted
        ) {
          continue;
        }
        onError(error);
        // The listener is gone: nothing to retry.
        if (
          error instanceof Deno.errors.BadResource ||
          error instanceof Deno.errors.Interrupted
        ) {
          break;
        }
        backoff = Math.min(
          Math.max(backoff * 2, ACCEPT_BACKOFF_MIN),
          ACCEPT_BACKOFF_MAX,
        );
        await pause(backoff, stopped.promise);
        continue;
      }
      backoff = 0;
      if (stopping) {
        closeQuietly(conn);
        break;
      }
      if (pending.size >= maxPendingHandshakes) {
        // Closed unread and unanswered: a 503 would cost a write (and a TLS
        // handshake on wss) per connection of the flood. Reported once per
        // burst, so that the flood does not flood the logs too.
        closeQuietly(conn);
        const now = performance.now();
        if (now - refusalReported >= REFUSAL_REPORT_INTERVAL) {
          refusalReported = now;
          onError(
            new DOMException(
              `Cannot accept connection: ${pending.size} handshakes are pending, maxPendingHandshakes is ${maxPendingHandshakes}; new connections are closed at once (reported at most every ${
                REFUSAL_REPORT_INTERVAL / 1000
              } s)`,
              "QuotaExceededError",
            ),
          );
        }
        continue;
      }
      track(handle(conn));
    }
  })();

  let shutdownPromise: Promise<void> | undefined;
  async function shutdown(): Promise<void> {
    stopping = true;
    stopped.resolve();
    try {
      listener.close();
    } catch {
      // Closed already.
    }
    // Every handshake stops waiting, in the turn that set `stopping`:
    // requests read and not answered yet (their hooks still run) get 503,
    // as Python's websockets does (see handshake()); connections still
    // sending their request head are closed, as are answers being written
    // and lingering closes.
    for (const state of pending.values()) {
      state.controller.abort(shutdownReason);
    }
    await acceptLoop;
    for (const ws of sessions.keys()) {
      if (ws.isOpen) ws.close(1001, "server shutting down");
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, shutdownTimeout);
    });
    await Promise.race([Promise.allSettled([...tasks]), expired]);
    clearTimeout(timer);
    for (const conn of pending.keys()) closeQuietly(conn);
    // Whatever did not finish in time is closed now. Handlers that still
    // run after their connection closed are not waited for: one that never
    // returns must not hold shutdown() forever.
    for (const conn of sessions.values()) closeQuietly(conn);
    await Promise.allSettled([...sessions.keys()].map((ws) => ws.closed));
    options.signal?.removeEventListener("abort", onAbort);
    finished.resolve();
  }
  function onAbort(): void {
    void server.shutdown();
  }

  const server: WebSocketServer = {
    addr,
    get connections(): ReadonlySet<WebSocketSession> {
      return new Set(sessions.keys());
    },
    finished: finished.promise,
    shutdown(): Promise<void> {
      shutdownPromise ??= shutdown();
      return shutdownPromise;
    },
    [Symbol.asyncDispose](): Promise<void> {
      return server.shutdown();
    },
  };
  if (options.signal !== undefined) {
    if (options.signal.aborted) queueMicrotask(onAbort);
    else options.signal.addEventListener("abort", onAbort, { once: true });
  }
  options.onListen?.(addr);
  return server;
}

// createFetchHandler()'s answer to a refused upgrade: what errorResponseFor()
// writes for serve() (the status, the message as text, Sec-WebSocket-Version
// and Upgrade on a 426, Allow on a 405), as a Response. The runtime writes
// Content-Length and Connection.
function refusalFor(error: HandshakeError): Response {
  const status = refusalStatus(error.status);
  const headers = new Headers([
    ["content-type", "text/plain; charset=utf-8"],
    ...refusalHeaders(status),
  ]);
  return new Response(error.message, { status, headers });
}

function upgradeRequired(): Response {
  return new Response("Upgrade Required: this is a WebSocket server", {
    status: 426,
    headers: { "sec-websocket-version": "13", upgrade: "websocket" },
  });
}

// The longest delay a timer takes (a longer one fires at once).
const MAX_TIMEOUT = 2 ** 31 - 1;

// A connection closed past maxPendingHandshakes is reported when none was
// reported for REFUSAL_REPORT_INTERVAL ms: once per burst, and at most that
// often during a long one.
const REFUSAL_REPORT_INTERVAL = 10_000;

// After a failed accept(), the accept loop waits ACCEPT_BACKOFF_MIN ms, twice
// as long after each failure in a row, at most ACCEPT_BACKOFF_MAX ms.
const ACCEPT_BACKOFF_MIN = 10;
const ACCEPT_BACKOFF_MAX = 1000;

/** Resolves after `ms` milliseconds, or when `wake` resolves; clears its timer. */
function pause(ms: number, wake: Promise<void>): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    new Promise<void>((resolve) => timer = setTimeout(resolve, ms)),
    wake,
  ]).finally(() => clearTimeout(timer));
}

/**
 * Wraps an `onError` callback so that calling it never throws nor leaves a
 * rejected promise unhandled: a callback that fails (a logger that is down,
 * a bug in it) must not end the process, nor stop what comes after the
 * report (closing a connection with 1011, answering a request). The first
 * failure is printed with `console.error`; later ones are not, so that a
 * client cannot fill the logs through a callback that always fails.
 */
function guardOnError(
  onError: (error: unknown, request?: Request) => void,
): (error: unknown, request?: Request) => void {
  let printed = false;
  const failed = (failure: unknown) => {
    if (printed) return;
    printed = true;
    // deno-lint-ignore no-console
    console.error(
      "WebSocket server error: onError threw (later failures of onError are not printed):",
      failure,
    );
  };
  return (error, request) => {
    try {
      // An async callback is a void function too: its rejection is caught.
      const result: unknown = onError(error, request);
      if (result instanceof Promise) result.catch(failed);
    } catch (failure) {
      failed(failure);
    }
  };
}

function defaultOnError(error: unknown): void {
  // Refused upgrades and peers that broke the protocol are the peers'
  // doing: logging them by default would let any client fill the logs.
  if (error instanceof HandshakeError || error instanceof ProtocolError) return;
  // deno-lint-ignore no-console
  console.error("WebSocket server error:", error);
}

// Whether `error` is one of the runtime's I/O errors (ConnectionReset,
// BrokenPipe, InvalidData from TLS, ...).
function isIoError(error: unknown): boolean {
  return Object.values(Deno.errors).some((type) => error instanceof type);
}

function isUpgrade(headers: Headers): boolean {
  const upgrade = headers.get("upgrade");
  return upgrade !== null && /(^|,)\s*websocket\s*(,|$)/i.test(upgrade);
}

function toRequest(
  head: RequestHead,
  scheme: string,
  addr: Deno.NetAddr,
  signal: AbortSignal,
): Request {
  const bad = (detail: string) =>
    new HandshakeError(`Cannot read request: ${detail}`, {
      status: 400,
      header: "host",
    });
  // Fetch forbids these methods (in any case): the Request constructor throws
  // for them. They get the 405 every upgrade other than GET gets, whether or
  // not they ask for one (onRequest cannot be handed them), before the URL
  // is built from a target that is an authority for CONNECT.
  if (/^(?:CONNECT|TRACE|TRACK)$/i.test(head.method)) {
    throw new HandshakeError(
      `Cannot read request: method ${
        JSON.stringify(head.method)
      } is not allowed, use GET`,
      { status: 405, headers: head.headers },
    );
  }
  // RFC 9112 §3.2: 400 for an HTTP/1.1 request without a Host, with more
  // than one, or with an invalid one. HTTP/1.0 may omit it.
  const hosts = head.rawHeaders.filter(([name]) =>
    name.toLowerCase() === "host"
  );
  if (hosts.length > 1) throw bad("Host header appears more than once");
  let host = hosts[0]?.[1];
  if (host === undefined) {
    if (head.version !== "HTTP/1.0") throw bad("missing Host header");
    const name = addr.hostname.includes(":")
      ? `[${addr.hostname}]`
      : addr.hostname;
    host = `${name}:${addr.port}`;
  } else if (!isValidHost(host)) {
    throw bad("Host header is not a valid host[:port]");
  }
  let url: URL;
  try {
    url = new URL(
      head.target.startsWith("/")
        ? `${scheme}://${host}${head.target}`
        : head.target, // RFC 9112 §3.2.2: the absolute-form is the target URI
    );
  } catch {
    // Without the runtime's error as cause: its message repeats the whole
    // URL, query string (tokens) included, into any log of the error.
    throw new HandshakeError(
      "Cannot read request: request target or Host header is not a valid URL",
      { status: 400, header: "host" },
    );
  }
  if (
    !/^(?:https?|wss?):$/.test(url.protocol) || url.username || url.password
  ) {
    throw bad("request target is not an http(s) or ws(s) URL without userinfo");
  }
  try {
    const headers = new Headers();
    for (const [name, value] of head.rawHeaders) headers.append(name, value);
    return new Request(url, { method: head.method, headers, signal });
  } catch {
    // parseRequestHead() lets through nothing the runtime refuses that we
    // know of; should it, the client gets 400 (not a log line), and no cause
    // carries the request's values.
    throw new HandshakeError(
      "Cannot read request: it is not a valid fetch Request",
      { status: 400 },
    );
  }
}

function originAllowed(
  options: ServeOptions<unknown>,
  request: Request,
): boolean {
  if (options.insecureSkipOriginCheck) return true;
  const origin = request.headers.get("origin");
  if (origin === null) return true;
  // The list first, on the header's exact value: an Origin that is not a URL
  // ("null", from sandboxed frames and file: pages) is allowed when listed.
  for (const allowed of options.origins ?? []) {
    if (
      typeof allowed === "string" ? allowed === origin : allowed.test(origin)
    ) {
      return true;
    }
  }
  // Same origin: the Origin's host is the Host the client connected to.
  try {
    return new URL(origin).host === new URL(request.url).host;
  } catch {
    return false;
  }
}

interface Decision<T> {
  protocol: string | undefined;
  headers: [string, string][] | undefined;
  data: T | undefined;
}

/** A hook of the server, as its errors name it. */
type Hook = "onRequest" | "upgrade hook";

// The error of a hook that did not finish within handshakeTimeout.
function hookTimeout(hook: Hook, ms: number): DOMException {
  return new DOMException(
    `${
      hook === "onRequest"
        ? "Cannot answer request"
        : "Cannot upgrade to WebSocket"
    }: ${hook} did not finish within handshakeTimeout (${ms} ms)`,
    "TimeoutError",
  );
}

// Waits for what a hook returned (or for its answer's bytes), until `signal`
// aborts: then rejects at once with `reason()`. The hook goes on: what it
// returns later is dropped (a Response's body cancelled), what it throws
// later goes to `onLate`, unless it is the signal's reason (a hook that gave
// up on request.signal).
function untilAborted<R>(
  value: R | PromiseLike<R>,
  signal: AbortSignal,
  reason: () => unknown,
  onLate: (error: unknown) => void,
): Promise<R> {
  const promise = Promise.resolve(value);
  return new Promise<R>((resolve, reject) => {
    let waiting = true;
    const onAbort = () => {
      waiting = false;
      reject(reason());
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (result) => {
        if (waiting) {
          waiting = false;
          signal.removeEventListener("abort", onAbort);
          resolve(result);
        } else if (result instanceof Response && !result.bodyUsed) {
          result.body?.cancel().catch(() => {});
        }
      },
      (error: unknown) => {
        if (waiting) {
          waiting = false;
          signal.removeEventListener("abort", onAbort);
          reject(error);
        } else if (error !== signal.reason) {
          onLate(error);
        }
      },
    );
  });
}

// The checks both serve() and createFetchHandler() run on an upgrade request:
// origin (403), the upgrade hook, and the subprotocol.
// `wait` waits for what the upgrade hook returned (serve() bounds it by the
// handshake's deadline).
async function decide<T>(
  options: ServeOptions<T>,
  request: Request,
  info: UpgradeInfo,
  wait: (
    value: ReturnType<NonNullable<ServeOptions<T>["upgrade"]>> | undefined,
  ) => Promise<Response | UpgradeAccept<T> | void | undefined> = (value) =>
    Promise.resolve(value),
): Promise<Response | Decision<T>> {
  if (!originAllowed(options as ServeOptions<unknown>, request)) {
    throw new HandshakeError(
      "Cannot upgrade to WebSocket: origin is not allowed",
      { status: 403, header: "origin", headers: request.headers },
    );
  }
  const accepted = await wait(options.upgrade?.(request, info));
  if (accepted instanceof Response) return accepted;
  let protocol = accepted?.protocol;
  if (protocol !== undefined && !info.protocols.includes(protocol)) {
    throw new TypeError(
      `Cannot upgrade to WebSocket: upgrade hook selected subprotocol "${protocol}", which the client did not offer`,
    );
  }
  if (protocol === undefined) {
    const protocols = options.protocols;
    protocol = typeof protocols === "function"
      ? protocols(info.protocols, request)
      : selectProtocol(info.protocols, protocols ?? []);
    if (protocol !== undefined && !info.protocols.includes(protocol)) {
      throw new TypeError(
        `Cannot upgrade to WebSocket: protocols option selected "${protocol}", which the client did not offer`,
      );
    }
  }
  return {
    protocol,
    headers: accepted?.headers,
    data: accepted?.data,
  };
}

// After answering a request it does not upgrade, the server reads and drops
// at most LINGER_BYTES more from the client, for at most LINGER_TIME ms,
// before it closes the connection.
const LINGER_BYTES = 1024 * 1024;
const LINGER_TIME = 2000;
// A connection in its handshake (or the lingering close after its answer).
interface PendingHandshake {
  /** The request, once its head was read. */
  request: Request | undefined;
  /**
   * Aborts the current wait (reading the request, the hooks, writing the
   * answer, the lingering close): its step's timer does, and shutdown().
   */
  controller: AbortController;
}

/**
 * Half-closes `conn` (the answer is followed by a FIN) and reads what the
 * client still sends until it closes its side, LINGER_BYTES arrived or
 * LINGER_TIME passed: a lingering close, as HTTP servers do, so that closing
 * does not reset a connection whose client has not read the answer yet.
 * `signal` (shutdown) ends it at once.
 */
async function linger(conn: Deno.Conn, signal: AbortSignal): Promise<void> {
  try {
    await conn.closeWrite();
  } catch {
    return; // the client is gone
  }
  const timer = setTimeout(() => closeQuietly(conn), LINGER_TIME);
  const onAbort = () => closeQuietly(conn);
  signal.addEventListener("abort", onAbort, { once: true });
  const buffer = new Uint8Array(16 * 1024);
  try {
    for (let left = LINGER_BYTES; left > 0;) {
      const count = await conn.read(buffer);
      if (count === null) break;
      left -= count;
    }
  } catch {
    // Reset, or closed by the timer or shutdown().
  } finally {
    clearTimeout(timer);
    signal.removeEventListener("abort", onAbort);
  }
}

// The largest body of an answer to a refused or plain HTTP request.
const MAX_RESPONSE_BODY = 1024 * 1024;

// The bytes of `response`, HTTP/1.1 with Content-Length; `bodiless` (an
// answer to HEAD) leaves out the content but not its Content-Length.
async function serializeResponse(
  response: Response,
  bodiless: boolean,
  signal: AbortSignal,
): Promise<Uint8Array> {
  if (!(response instanceof Response)) {
    throw new TypeError(
      "Cannot send HTTP response: hook did not return a Response",
    );
  }
  const body = await readBody(response, signal);
  const status = response.status;
  // RFC 9112 §4: the reason phrase may be empty.
  const reason = response.statusText || STATUS_TEXT[status] || "";
  const lines = [`HTTP/1.1 ${status} ${reason}`];
  for (const [name, value] of response.headers) {
    const lower = name.toLowerCase();
    if (
      lower === "content-length" || lower === "connection" ||
      lower === "transfer-encoding"
    ) {
      continue;
    }
    if (/[\r\n\0]/.test(value)) continue;
    lines.push(`${name}: ${value}`);
  }
  // RFC 9110 §7.8: a sender of Upgrade (as in a 426) lists "upgrade" in
  // Connection.
  const connection = response.headers.has("upgrade")
    ? "upgrade, close"
    : "close";
  lines.push(`Content-Length: ${body.length}`, `Connection: ${connection}`);
  // Header values and the status text are ByteStrings (Headers and Response
  // refuse any character above U+00FF): each character is one byte on the
  // wire (RFC 9110 §5.5 obs-text), not its UTF-8.
  const head = encodeLatin1(lines.join("\r\n") + "\r\n\r\n");
  if (bodiless) return head;
  const out = new Uint8Array(head.length + body.length);
  out.set(head);
  out.set(body, head.length);
  return out;
}

// The body of a hook's Response, read until `signal` aborts (then rejects
// with its reason and cancels the body).
async function readBody(
  response: Response,
  signal: AbortSignal,
): Promise<Uint8Array> {
  if (response.body === null) return new Uint8Array(0);
  const reader = response.body.getReader();
  const parts: Uint8Array[] = [];
  let size = 0;
  try {
    while (true) {
      const { done, value } = await readChunk(reader, signal);
      if (done) break;
      if (!(value instanceof Uint8Array)) {
        throw new TypeError(
          "Cannot send HTTP response: body stream gave a chunk that is not a Uint8Array",
        );
      }
      size += value.length;
      if (size > MAX_RESPONSE_BODY) {
        throw new RangeError(
          `Cannot send HTTP response: body is over ${MAX_RESPONSE_BODY} bytes`,
        );
      }
      parts.push(value);
    }
  } catch (error) {
    reader.cancel().catch(() => {});
    throw error;
  }
  return concat(parts, size);
}

// The head of a whole answer (as buildErrorResponse() writes it): the bytes
// up to and including the empty line.
function headOf(bytes: Uint8Array): Uint8Array {
  for (let i = 3; i < bytes.length; i++) {
    if (
      bytes[i] === 0x0a && bytes[i - 1] === 0x0d && bytes[i - 2] === 0x0a &&
      bytes[i - 3] === 0x0d
    ) {
      return bytes.subarray(0, i + 1);
    }
  }
  return bytes;
}

// ---------------------------------------------------------------------------
// Edge platforms: the same handler API over Deno.serve + Deno.upgradeWebSocket
// ---------------------------------------------------------------------------

/**
 * Options of {@linkcode createFetchHandler}: the upgrade checks of
 * {@linkcode ServeOptions}, and two of its limits. `maxMessageSize` (64 MiB
 * by default) is checked on each message the runtime hands over: a larger
 * one closes the connection with 1009 and is dropped (the runtime's own cap
 * of 64 MiB applies above it). `pingInterval` becomes the runtime's
 * `idleTimeout` (rounded up to seconds). The other limits are the runtime's.
 *
 * @typeParam T The per-connection data the upgrade hook returns.
 *
 * @example Options for the edge
 * ```ts
 * import type { FetchHandlerOptions } from "@rfc6455/websocket/server";
 * import assert from "node:assert/strict";
 *
 * const options: FetchHandlerOptions = {
 *   origins: ["https://example.com"],
 *   pingInterval: 30_000,
 *   maxMessageSize: 1 << 20,
 * };
 * assert.equal(options.pingInterval, 30_000);
 * ```
 */
export type FetchHandlerOptions<T = undefined> = Pick<
  ServeOptions<T>,
  | "protocols"
  | "origins"
  | "insecureSkipOriginCheck"
  | "upgrade"
  | "onRequest"
  | "onError"
  | "pingInterval"
  | "maxMessageSize"
  | "handshakeTimeout"
>;

/**
 * Makes a fetch handler (`(request) => Response`) that runs a
 * {@linkcode WebSocketHandler} on `Deno.serve` + `Deno.upgradeWebSocket`,
 * for edge platforms (Deno Deploy) that have no raw sockets. The handler API,
 * the checks of the upgrade request (with the same statuses), origin check,
 * subprotocol selection and upgrade hook are the same as {@linkcode serve}'s.
 * The runtime does not tell a request's HTTP version, so an HTTP/1.0
 * upgrade, which {@linkcode serve} refuses, is not refused here.
 *
 * What the runtime's WebSocket cannot do, this adapter cannot either: no
 * permessage-deflate, no raw frames, no `ping()` (it rejects with
 * `NotSupportedError`; keepalive is the runtime's `idleTimeout`), and
 * `send()` resolves at once (the runtime gives no write backpressure).
 *
 * Nor does the runtime's WebSocket pause reading: it hands over every
 * message as it arrives, so a handler that reads slower than its peer sends
 * cannot slow the peer down the way {@linkcode serve}'s connections do. The
 * messages waiting for the handler are bounded instead: a message that
 * arrives while 16,384 messages or 16 MiB (text counted in UTF-16 code
 * units) wait closes the connection with 1008 (policy violation) and is
 * dropped, and so is a message over `maxMessageSize`, with 1009. The
 * messages queued before stay readable; then iteration throws a
 * `ProtocolError` with that `closeCode`.
 *
 * `handshakeTimeout` bounds the hooks (`upgrade`, `onRequest`) as in
 * {@linkcode serve}: a hook that has not finished in time gets the client
 * `503 Service Unavailable` and `onError` a `TimeoutError` that names the
 * hook; what the hook returns later is dropped, what it throws later goes to
 * `onError`. Unlike {@linkcode serve}'s, the hook's `request.signal` is the
 * runtime's: it does not abort at the deadline. The runtime reads the
 * request and writes the answer, so those waits are its own.
 *
 * @typeParam T The per-connection data the upgrade hook returns.
 * @param options The upgrade checks and limits.
 * @param handler Runs for every open connection.
 * @returns A handler for `Deno.serve`.
 * @throws {RangeError} If `maxMessageSize` is not a non-negative integer,
 * `pingInterval` is negative, or `handshakeTimeout` is not over 0, or either
 * is over 2,147,483,647 ms or not finite.
 *
 * @example Serving on Deno.serve
 * ```ts
 * import { createFetchHandler } from "@rfc6455/websocket/server";
 * import assert from "node:assert/strict";
 *
 * const handler = createFetchHandler({}, async (ws) => {
 *   for await (const message of ws) await ws.send(message);
 * });
 * await using server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
 * const client = new WebSocket(`ws://127.0.0.1:${server.addr.port}/`);
 * client.onopen = () => client.send("edge");
 * const echo = await new Promise((resolve) => client.onmessage = (e) => resolve(e.data));
 * assert.equal(echo, "edge");
 * const closed = new Promise((resolve) => client.onclose = resolve);
 * client.close();
 * await closed;
 * ```
 */
export function createFetchHandler<T = undefined>(
  options: FetchHandlerOptions<T>,
  handler: WebSocketHandler<T>,
): (request: Request, info?: Deno.ServeHandlerInfo) => Promise<Response> {
  const onError = guardOnError(options.onError ?? defaultOnError);
  // The same rules as serve()'s and the connection's, before any request.
  checkConnectionLimits(options);
  const maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
  const handshakeTimeout = options.handshakeTimeout ?? 5_000;
  if (!(handshakeTimeout > 0 && handshakeTimeout <= MAX_TIMEOUT)) {
    throw new RangeError(
      `Cannot create fetch handler: handshakeTimeout is ${handshakeTimeout}, expected a number of ms over 0 and at most ${MAX_TIMEOUT}`,
    );
  }
  return async (request, serveInfo) => {
    // The hooks' deadline. Their request stays the runtime's: a copy with a
    // signal of ours would have to follow the runtime's signal, and merely
    // listening to that one makes Deno.serve print a warning (its legacy
    // abort after every response).
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(), handshakeTimeout);
    try {
      return await answer(request, serveInfo, deadline.signal);
    } finally {
      clearTimeout(timer);
    }
  };

  async function answer(
    request: Request,
    serveInfo: Deno.ServeHandlerInfo | undefined,
    deadline: AbortSignal,
  ): Promise<Response> {
    const untilDeadline = <R>(hook: Hook, value: R | PromiseLike<R>) =>
      untilAborted(
        value,
        deadline,
        () => hookTimeout(hook, handshakeTimeout),
        (error) => onError(error, request),
      );
    // As serve(): a refused upgrade gets its status and onError hears of
    // it; a hook that throws gets 500 without details, and one past the
    // deadline 503; onError gets the error.
    const refuse = (error: unknown): Response => {
      onError(error, request);
      if (error instanceof HandshakeError) return refusalFor(error);
      const status = deadline.aborted ? 503 : 500;
      return new Response(STATUS_TEXT[status], { status });
    };
    if (!isUpgrade(request.headers)) {
      if (options.onRequest === undefined) return upgradeRequired();
      try {
        return await untilDeadline("onRequest", options.onRequest(request));
      } catch (error) {
        return refuse(error);
      }
    }
    let decision: Response | Decision<T>;
    try {
      // serve()'s checks of the request (RFC 6455 §4.2.1), with its
      // statuses. Deno.upgradeWebSocket checks less: it upgrades a key that
      // is not 16 bytes of base64 and any Sec-WebSocket-Version, and throws
      // (a 500) for a missing Connection or key. The runtime does not tell
      // the request's HTTP version: HTTP/1.1 stands in for it.
      const info = validateUpgradeRequest({
        method: request.method,
        target: request.url,
        version: "HTTP/1.1",
        headers: request.headers,
        rawHeaders: [...request.headers],
      });
      decision = await decide(options, request, {
        protocols: info.protocols,
        extensions: [],
        remoteAddr: serveInfo?.remoteAddr as Deno.NetAddr | undefined,
      }, (value) => untilDeadline("upgrade hook", value));
    } catch (error) {
      return refuse(error);
    }
    if (decision instanceof Response) return decision;
    const idle = options.pingInterval ?? 20_000;
    let socket: WebSocket;
    let response: Response;
    try {
      // The subprotocol is not handed to Deno.upgradeWebSocket: it splits
      // the offer on ", " only, so it throws for a valid "b,a" (RFC 9110
      // §5.6.1 allows any OWS), and it leaves the server socket's `protocol`
      // empty.
      ({ socket, response } = Deno.upgradeWebSocket(request, {
        idleTimeout: idle === 0 ? 0 : Math.max(1, Math.ceil(idle / 1000)),
      }));
    } catch {
      // A request the checks above let through and the runtime still
      // refuses (none is known): a refused upgrade, not a 500 that
      // Deno.serve would log for each such client.
      return refuse(
        new HandshakeError(
          "Cannot upgrade to WebSocket: the runtime refused the upgrade",
          { status: 400, headers: request.headers },
        ),
      );
    }
    const protocol = decision.protocol ?? "";
    if (protocol !== "") {
      response.headers.set("sec-websocket-protocol", protocol);
    }
    for (const [name, value] of decision.headers ?? []) {
      response.headers.append(name, value);
    }
    const ws = new EdgeWebSocket(socket, request.url, protocol, {
      maxMessageSize,
    });
    const data = decision.data as T;
    socket.addEventListener("open", async () => {
      try {
        await handler(ws, request, data);
        if (ws.isOpen) ws.close(1000, "");
      } catch (error) {
        if (!(error instanceof ConnectionClosedError)) onError(error, request);
        if (ws.isOpen) ws.close(1011, "");
      }
    }, { once: true });
    return response;
  }
}
