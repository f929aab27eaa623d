// Copyright 2026 the @rfc6455/websocket authors. MIT license.

/**
 * The WebSocket client: {@linkcode connect} over `Deno.connect` /
 * `Deno.connectTls`, with full control of the handshake headers, HTTP
 * proxies (CONNECT), redirects, pings, limits and clear errors.
 *
 * @example Talking to a server
 * ```ts
 * import { connect } from "@rfc6455/websocket/client";
 * import { serve } from "@rfc6455/websocket/server";
 * import assert from "node:assert/strict";
 *
 * await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (ws) => {
 *   for await (const message of ws) await ws.send(message);
 * });
 * const ws = await connect(`ws://127.0.0.1:${server.addr.port}/`, {
 *   headers: { "User-Agent": "my-crawler/1.0" },
 * });
 * await ws.send("hello");
 * for await (const message of ws) {
 *   assert.equal(message, "hello");
 *   break;
 * }
 * await ws.close();
 * ```
 *
 * @module
 */

import { readBody } from "./_body.ts";
import { checkMaxHeadSize, readResponseHead } from "./_http.ts";
import {
  closeQuietly,
  noDelay,
  pickConnectionOptions,
  writeAll,
} from "./_socket.ts";
import { checkSocksCredentials, socksConnect } from "./_socks.ts";
import {
  checkConnectionLimits,
  type ConnectionLimits,
  type ConnectionOptions,
  WebSocketConnection,
} from "./connection.ts";
import {
  acceptDeflateResponse,
  createDeflateOffer,
  PerMessageDeflate,
  type PerMessageDeflateContextOptions,
  type PerMessageDeflateOptions,
} from "./deflate.ts";
import { HandshakeError } from "./errors.ts";
import {
  buildUpgradeRequest,
  createKey,
  type ExtensionOffer,
  formatExtensions,
  type ResponseHead,
  validateUpgradeResponse,
} from "./handshake.ts";

/**
 * Options of {@linkcode connect}. Times are in milliseconds, sizes in bytes.
 *
 * @example A crawler's options
 * ```ts
 * import type { ConnectOptions } from "@rfc6455/websocket/client";
 * import assert from "node:assert/strict";
 *
 * const options: ConnectOptions = {
 *   headers: [["Origin", "https://example.com"], ["User-Agent", "crawler/1.0"]],
 *   protocols: ["chat.v2"],
 *   handshakeTimeout: 5_000,
 *   maxMessageSize: 1 << 20,
 *   proxy: false,
 * };
 * assert.equal(options.protocols?.[0], "chat.v2");
 * ```
 */
export interface ConnectOptions extends ConnectionLimits {
  /**
   * Extra handshake headers: `Origin`, `User-Agent`, `Cookie`,
   * `Authorization`, a `Host` override, anything else. An array of pairs is
   * sent in its order and case; a record in its key order (JavaScript puts
   * keys that are integers first); a `Headers` object as it iterates (names
   * lower-cased and sorted, the values of one name joined with ", ", which
   * does not suit `Cookie`). The headers the protocol itself sets
   * (`Upgrade`, `Connection`, `Sec-WebSocket-Key`, `-Version`, `-Protocol`,
   * `-Extensions`, `-Accept`, and `Content-Length`, `Transfer-Encoding`)
   * are refused, with a `TypeError`.
   *
   * @default {{}}
   */
  headers?: Record<string, string> | [string, string][] | Headers;
  /** The subprotocols to offer, in order of preference. @default {[]} */
  protocols?: string[];
  /**
   * Offer permessage-deflate (RFC 7692): `true` with the defaults, an
   * object to set its parameters, level and threshold, `false` to offer no
   * compression. The server decides; a response the offer did not allow
   * fails the connect with a `HandshakeError`.
   *
   * @default {true}
   */
  deflate?: boolean | PerMessageDeflateOptions;
  /**
   * Aborts the handshake, and closes the connection (1001) once open.
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
  /**
   * The deadline of the whole handshake (TCP, proxy, TLS and HTTP), in
   * milliseconds; a server that does not finish it in time fails the
   * connect with a `TimeoutError` `DOMException`.
   *
   * @default {10000}
   */
  handshakeTimeout?: number;
  /**
   * The largest response head accepted, in bytes. Interim 1xx answers
   * (`100 Continue`, `103 Early Hints`...) before the final one are
   * skipped, and their heads count toward the same limit: the server's (or
   * the proxy's) heads together stay within it.
   *
   * @default {16384}
   */
  maxHeadSize?: number;
  /**
   * The most bytes of a non-101 answer's body kept in the
   * `HandshakeError` (or of a proxy's refusal). A `chunked` body is
   * decoded, and read until its last chunk, this limit, or a malformed
   * chunk; a body with a `Content-Length` is read up to it; any other body
   * is what arrived with the head. The body is read for at most 1 s (and
   * within `handshakeTimeout`): what came by then is kept, and the error is
   * the `HandshakeError` with the answer's status, not a timeout.
   *
   * @default {65536}
   */
  maxErrorBodySize?: number;
  /**
   * Extra CA certificates (PEM) trusted for `wss:`, besides the system's.
   * Certificate errors always fail the connect; there is no opt-out.
   *
   * @default {undefined}
   */
  caCerts?: string[];
  /**
   * The TLS server name for `wss:` (SNI, and the name the certificate must
   * carry), when it differs from the URL's host: for example to reach a
   * server by its IP address. The `Host` header stays the URL's unless
   * `headers` overrides it.
   *
   * @default {the URL's host name}
   */
  serverName?: string;
  /**
   * The proxy to tunnel through: an HTTP proxy with CONNECT,
   * `http://[user:pass@]host:port`, or a SOCKS5 proxy (RFC 1928, with
   * RFC 1929 user and password), `socks5://[user:pass@]host[:1080]` or
   * `socks5h://...` (the same: host names always go to a SOCKS5 proxy
   * unresolved, so no DNS query leaks around it); `false` to ignore the
   * environment. Absent, the `HTTPS_PROXY` (for `wss:`) or `HTTP_PROXY`
   * (for `ws:`) environment variable is used (lower-case names too; an
   * empty value counts as unset), unless `NO_PROXY` lists the host.
   * Reading the environment needs `--allow-env`; without it, no proxy is
   * used.
   *
   * @default {undefined}
   */
  proxy?: string | false;
  /**
   * How many redirects (301, 302, 303, 307, 308 with a `Location`) to
   * follow. `Authorization`, `Cookie` and a `Host` override are dropped when
   * the scheme or the host (with its port) changes.
   *
   * @default {0}
   */
  maxRedirects?: number;
}

/**
 * The server's `101 Switching Protocols` answer, kept after the handshake.
 *
 * @example Reading a cookie the server set
 * ```ts
 * import type { HandshakeResponse } from "@rfc6455/websocket/client";
 * import assert from "node:assert/strict";
 *
 * const response: HandshakeResponse = {
 *   status: 101,
 *   statusText: "Switching Protocols",
 *   headers: new Headers({ "set-cookie": "id=1" }),
 *   rawHeaders: [["Set-Cookie", "id=1"]],
 * };
 * assert.equal(response.headers.get("set-cookie"), "id=1");
 * ```
 */
export interface HandshakeResponse {
  /** The status: 101. */
  status: number;
  /** The reason phrase. */
  statusText: string;
  /** The response headers (`Set-Cookie`, and the others). */
  headers: Headers;
  /** The header fields in their order and case. */
  rawHeaders: [string, string][];
}

/**
 * A client connection from {@linkcode connect}: a
 * {@linkcode WebSocketConnection} that also keeps the handshake response.
 *
 * @example The response of the handshake
 * ```ts
 * import { connect, WebSocketClient } from "@rfc6455/websocket/client";
 * import { serve } from "@rfc6455/websocket/server";
 * import assert from "node:assert/strict";
 *
 * await using server = serve({ hostname: "127.0.0.1", port: 0 }, () => {});
 * const ws = await connect(`ws://127.0.0.1:${server.addr.port}/`);
 * assert.ok(ws instanceof WebSocketClient);
 * assert.equal(ws.response.status, 101);
 * await ws.closed;
 * ```
 */
export class WebSocketClient extends WebSocketConnection {
  /** The server's handshake answer: status, headers such as `Set-Cookie`. */
  readonly response: HandshakeResponse;

  /**
   * Wraps an open transport after a successful client handshake. Use
   * {@linkcode connect} rather than this.
   *
   * @param transport The open transport.
   * @param options The connection options (`role` is `"client"`).
   * @param response The server's handshake answer.
   */
  constructor(
    transport: Deno.Conn,
    options: Omit<ConnectionOptions, "role">,
    response: HandshakeResponse,
  ) {
    super(transport, { ...options, role: "client" });
    this.response = response;
  }
}

const DEFAULT_PORTS: Record<string, number> = {
  "ws:": 80,
  "wss:": 443,
  "http:": 80,
  "https:": 443,
};

/**
 * Opens a WebSocket connection (RFC 6455 §4.1): `ws:` over `Deno.connect`,
 * `wss:` over `Deno.connectTls`, through an HTTP proxy when one is set.
 * Resolves once the server accepted the handshake. Interim 1xx answers
 * before the server's (or the proxy's) final one are skipped (RFC 9110
 * §15.2), within `maxHeadSize`.
 *
 * @param url The `ws:` or `wss:` URL (`http:`/`https:` are taken as such).
 * @param options Headers, subprotocols, proxy, TLS, limits and timeouts.
 * @returns The open connection.
 * @throws {TypeError} (rejects before any I/O) If the URL or its
 * scheme is invalid, or a header is refused.
 * @throws {RangeError} (rejects before any I/O) If an option is out of
 * range: `handshakeTimeout` not over 0 and at most 2^31 - 1 ms;
 * `maxRedirects` or `maxErrorBodySize` not a non-negative integer;
 * `maxHeadSize` not an integer of at least 4; a limit or timeout of the
 * connection negative or not finite, or a timeout over 2^31 - 1 ms; a
 * `deflate` parameter out of its range, or (with deflate) a
 * `maxMessageSize` that is not an integer.
 * @throws {HandshakeError} If the server (or the proxy) answered anything
 * but a valid 101: it names the wrong header and carries the status,
 * headers and the first bytes of the body. Also if a proxy's 2xx answer to
 * CONNECT announced a body (which RFC 9110 §9.3.6 forbids) and bytes that
 * are not the server's then came through the tunnel.
 * @throws {DOMException} `TimeoutError` after `handshakeTimeout`, or the
 * signal's reason when it aborts.
 *
 * @example Custom headers, a subprotocol, and the response
 * ```ts
 * import { connect } from "@rfc6455/websocket/client";
 * import { serve } from "@rfc6455/websocket/server";
 * import assert from "node:assert/strict";
 *
 * await using server = serve({
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   protocols: ["chat.v2"],
 *   upgrade: (request) => ({
 *     headers: [["Set-Cookie", "seen=1"]],
 *     data: request.headers.get("user-agent"),
 *   }),
 * }, async (ws, _request, agent) => {
 *   await ws.send(`hi ${agent}`);
 * });
 * const ws = await connect(`ws://127.0.0.1:${server.addr.port}/feed?x=1`, {
 *   headers: [["User-Agent", "crawler/1.0"], ["Origin", `http://127.0.0.1:${server.addr.port}`]],
 *   protocols: ["chat.v1", "chat.v2"],
 * });
 * assert.equal(ws.protocol, "chat.v2");
 * assert.equal(ws.response.headers.get("set-cookie"), "seen=1");
 * for await (const message of ws) assert.equal(message, "hi crawler/1.0");
 * assert.equal((await ws.closed).code, 1000);
 * ```
 */
export function connect(
  url: string | URL,
  options: ConnectOptions = {},
): Promise<WebSocketClient> {
  let target: URL;
  let plan: Plan;
  try {
    target = parseTarget(url);
    plan = prepare(target, options);
  } catch (error) {
    return Promise.reject(error);
  }
  return open(target, plan, options);
}

// What connect() checks and builds before any I/O: the headers, and the
// deflate settings and offer, the same for every redirect.
interface Plan {
  headers: [string, string][];
  // The options of the deflate context, maxMessageSize included; absent
  // when deflate is not offered.
  deflate: PerMessageDeflateContextOptions | undefined;
  offers: ExtensionOffer[];
}

// Checks every option of connect() that the URL does not need, so that a
// bad one is a TypeError or RangeError before any I/O, not after the TCP
// connection and the handshake, where the connection and its deflate
// context would check them. The rules are theirs.
function prepare(target: URL, options: ConnectOptions): Plan {
  const timeout = options.handshakeTimeout ?? 10_000;
  if (!(timeout > 0 && timeout <= MAX_TIMEOUT)) {
    // NaN, Infinity and past what a timer can wait: setTimeout would fire at
    // once.
    throw new RangeError(
      `Cannot connect: handshakeTimeout is ${timeout}, expected a number of ms over 0 and at most ${MAX_TIMEOUT}`,
    );
  }
  checkNonNegativeInteger("maxRedirects", options.maxRedirects);
  checkNonNegativeInteger("maxErrorBodySize", options.maxErrorBodySize);
  checkMaxHeadSize(options.maxHeadSize);
  checkConnectionLimits(options);
  const deflate = options.deflate === false ? undefined : {
    ...(options.deflate === true || options.deflate === undefined
      ? {}
      : options.deflate),
    ...(options.maxMessageSize === undefined
      ? {}
      : { maxMessageSize: options.maxMessageSize }),
  };
  // createDeflateOffer() checks every option it is given as the
  // PerMessageDeflate constructor does, maxMessageSize included (an integer
  // there).
  const offers = deflate === undefined ? [] : [createDeflateOffer(deflate)];
  const headers = toHeaderList(options.headers);
  // Checks every header and protocol (throws TypeError).
  buildUpgradeRequest({
    url: target,
    key: createKey(),
    headers,
    protocols: options.protocols ?? [],
  });
  return { headers, deflate, offers };
}

function checkNonNegativeInteger(
  name: string,
  value: number | undefined,
): void {
  if (value !== undefined && !(Number.isSafeInteger(value) && value >= 0)) {
    throw new RangeError(
      `Cannot connect: ${name} is ${value}, expected a non-negative integer`,
    );
  }
}

// The longest delay a timer takes (a longer one fires at once).
const MAX_TIMEOUT = 2 ** 31 - 1;

function parseTarget(url: string | URL): URL {
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    // No cause: the runtime's message repeats the URL, password included.
    throw new TypeError("Cannot connect: URL is not valid");
  }
  if (target.protocol === "http:") target.protocol = "ws:";
  else if (target.protocol === "https:") target.protocol = "wss:";
  if (target.protocol !== "ws:" && target.protocol !== "wss:") {
    throw new TypeError(
      `Cannot connect: URL scheme is "${
        target.protocol.slice(0, -1)
      }", expected "ws" or "wss"`,
    );
  }
  if (target.hash !== "" || target.href.endsWith("#")) {
    // RFC 6455 §3: fragment identifiers are meaningless in WebSocket URIs
    // and must not be used, an empty one ("#", which `hash` hides) too.
    throw new TypeError("Cannot connect: URL has a fragment");
  }
  checkCredentials(target, "URL");
  return target;
}

// Userinfo becomes Basic credentials once decoded: a bad percent-encoding is
// a TypeError before any I/O, naming neither the user nor the password.
function checkCredentials(url: URL, what: string): void {
  try {
    decodeURIComponent(url.username);
    decodeURIComponent(url.password);
  } catch {
    throw new TypeError(
      `Cannot connect: user name or password of the ${what} is not valid percent-encoding`,
    );
  }
}

function toHeaderList(
  headers: ConnectOptions["headers"],
): [string, string][] {
  if (headers === undefined) return [];
  if (headers instanceof Headers) return [...headers];
  if (Array.isArray(headers)) {
    return headers.map(([name, value]) => [name, value]);
  }
  return Object.entries(headers);
}

async function open(
  initial: URL,
  plan: Plan,
  options: ConnectOptions,
): Promise<WebSocketClient> {
  const timeout = options.handshakeTimeout ?? 10_000;
  const deadline = new AbortController();
  const timer = setTimeout(() =>
    deadline.abort(
      new DOMException(
        `Cannot connect: handshake did not finish within ${timeout} ms`,
        "TimeoutError",
      ),
    ), timeout);
  const signal = options.signal === undefined
    ? deadline.signal
    : AbortSignal.any([deadline.signal, options.signal]);
  const maxRedirects = options.maxRedirects ?? 0;
  let url = initial;
  let headers = plan.headers;
  try {
    for (let redirects = 0;; redirects++) {
      signal.throwIfAborted();
      const result = await attempt(url, headers, plan, options, signal);
      if (result instanceof WebSocketClient) return result;
      // A redirect.
      if (redirects >= maxRedirects) throw result.error;
      const next = redirectTarget(url, result);
      if (next.protocol !== url.protocol || next.host !== url.host) {
        // Credentials for one origin are not sent to another, nor from
        // wss: to ws: in clear text; a Host override named the old host.
        headers = headers.filter(([name]) => {
          const lower = name.toLowerCase();
          return lower !== "authorization" && lower !== "cookie" &&
            lower !== "host";
        });
      }
      url = next;
    }
  } finally {
    clearTimeout(timer);
  }
}

function toHttp(url: URL): URL {
  const copy = new URL(url);
  copy.protocol = url.protocol === "wss:" ? "https:" : "http:";
  return copy;
}

interface Redirect {
  location: string;
  error: HandshakeError;
  status: number;
  headers: Headers;
}

// The URL a redirect leads to. Its fragment is dropped (RFC 9110 §10.2.2
// allows one in `Location`; RFC 6455 §3 does not in the URL); a `Location`
// that is not a ws/wss/http/https URL is the server's failure, not the
// caller's, so it fails the handshake rather than throwing a TypeError.
function redirectTarget(url: URL, redirect: Redirect): URL {
  try {
    const next = new URL(redirect.location, toHttp(url));
    next.hash = "";
    return parseTarget(next);
  } catch {
    // No cause: the runtime's message repeats the base URL, password
    // included.
    throw new HandshakeError(
      `Cannot follow redirect: server answered ${redirect.status} with a Location that is not a WebSocket URL`,
      {
        status: redirect.status,
        headers: redirect.headers,
        header: "location",
      },
    );
  }
}

// One handshake on one URL: resolves with the connection, or a redirect.
async function attempt(
  url: URL,
  headers: [string, string][],
  plan: Plan,
  options: ConnectOptions,
  signal: AbortSignal,
): Promise<WebSocketClient | Redirect> {
  const hostname = url.hostname.startsWith("[")
    ? url.hostname.slice(1, -1)
    : url.hostname;
  const port = url.port === ""
    ? DEFAULT_PORTS[url.protocol]!
    : Number(url.port);
  const secure = url.protocol === "wss:";
  const proxy = proxyFor(url, options.proxy);
  let conn: Deno.Conn | undefined;
  // A body the proxy's answer to CONNECT announced, which would come as the
  // server's first bytes.
  let announced: AnnouncedBody | undefined;
  const onAbort = () => {
    if (conn !== undefined) closeQuietly(conn);
  };
  signal.addEventListener("abort", onAbort, { once: true });
  let handedOver = false;
  try {
    if (proxy === undefined) {
      conn = await Deno.connect({ hostname, port, transport: "tcp", signal });
    } else if (proxy.protocol === "http:") {
      ({ conn, announced } = await tunnel(
        proxy,
        hostname,
        port,
        url,
        options,
        signal,
      ));
    } else {
      conn = await socksConnect(proxy, hostname, port, signal);
    }
    noDelay(conn);
    if (secure) {
      // TLS over the TCP connection (or the tunnel): certificate errors
      // are errors, there is no opt-out.
      conn = await Deno.startTls(conn as Deno.TcpConn, {
        hostname: options.serverName ?? hostname,
        ...(options.caCerts === undefined ? {} : { caCerts: options.caCerts }),
      });
    }
    signal.throwIfAborted();
    // Userinfo in the URL becomes Basic credentials, unless given.
    const extra = [...headers];
    if (
      url.username !== "" &&
      !extra.some(([name]) => name.toLowerCase() === "authorization")
    ) {
      extra.push(["Authorization", basic(url.username, url.password)]);
    }
    const key = createKey();
    const offers = plan.offers;
    const request = buildUpgradeRequest({
      url,
      key,
      headers: extra,
      protocols: options.protocols ?? [],
      extensions: offers,
    });
    await writeAll(conn, request);
    const reader = conn.readable.getReader();
    let response: ResponseHead;
    let rest: Uint8Array<ArrayBuffer>;
    try {
      // Interim 1xx answers before the 101 (or the refusal) are skipped.
      const result = await readResponseHead(reader, {
        ...(options.maxHeadSize === undefined
          ? {}
          : { maxHeadSize: options.maxHeadSize }),
        signal,
      });
      rest = result.rest;
      response = result.response;
      if (response.status !== 101) {
        const body = await readRefusalBody(
          reader,
          rest,
          response,
          options,
          signal,
        );
        const location = response.headers.get("location");
        try {
          await validateUpgradeResponse(response, { key, body });
        } catch (error) {
          if (
            location !== null && REDIRECTS.has(response.status) &&
            error instanceof HandshakeError
          ) {
            return {
              location,
              error,
              status: response.status,
              headers: response.headers,
            };
          }
          throw error;
        }
      }
    } finally {
      reader.releaseLock();
    }
    const result = await validateUpgradeResponse(response, {
      key,
      protocols: options.protocols ?? [],
      extensions: offers,
    });
    // RFC 7692 §5: the server accepts at most one permessage-deflate.
    if (result.extensions.length > 1) {
      throw new HandshakeError(
        "Cannot open WebSocket: server accepted permessage-deflate more than once",
        {
          status: 101,
          headers: response.headers,
          header: "sec-websocket-extensions",
        },
      );
    }
    signal.throwIfAborted();
    const accepted = result.extensions[0];
    const deflate = accepted === undefined ? undefined : new PerMessageDeflate(
      acceptDeflateResponse(accepted, plan.deflate),
      "client",
      plan.deflate,
    );
    const ws = new WebSocketClient(conn, {
      ...pickConnectionOptions(options),
      protocol: result.protocol,
      extensions: formatExtensions(result.extensions),
      ...(deflate === undefined ? {} : { deflate }),
      url: withoutCredentials(url),
      head: rest,
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    }, {
      status: response.status,
      statusText: response.statusText,
      headers: response.headers,
      rawHeaders: response.rawHeaders,
    });
    handedOver = true;
    return ws;
  } catch (error) {
    // An abort explains the errors it causes (a closed socket, a cut head),
    // but not an answer's: a refusal whose body the deadline cut is still
    // the refusal (README). The caller's own abort is an abort.
    if (
      signal.aborted &&
      (options.signal?.aborted === true || !isAboutAnAnswer(error))
    ) {
      throw signal.reason;
    }
    // The server's own answer (a refusal) is not about the proxy's body.
    if (announced !== undefined && !isAboutAnAnswer(error)) {
      throw proxyBodyError(url, announced, error);
    }
    throw error;
  } finally {
    signal.removeEventListener("abort", onAbort);
    if (!handedOver) onAbort();
  }
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

// A HandshakeError about an answer that came (the server's, or a proxy's to
// CONNECT): it has the answer's status. Its causes are in the answer.
function isAboutAnAnswer(error: unknown): boolean {
  return error instanceof HandshakeError && error.status !== undefined;
}

// How long the body of a refusal is read for its HandshakeError, at most:
// it only gives context, and it may never end (an event stream).
const ERROR_BODY_WAIT = 1000;

// The body of a refusal (of the server or the proxy), for its error: up to
// maxErrorBodySize bytes, read for at most ERROR_BODY_WAIT. The deadline only
// ends the body; the caller's abort is an abort.
async function readRefusalBody(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  rest: Uint8Array,
  response: ResponseHead,
  options: ConnectOptions,
  signal: AbortSignal,
): Promise<Uint8Array<ArrayBuffer>> {
  const body = await readBody(
    reader,
    rest,
    response,
    options.maxErrorBodySize ?? 65_536,
    signal,
    ERROR_BODY_WAIT,
  );
  options.signal?.throwIfAborted();
  return body;
}

function basic(user: string, password: string): string {
  const text = `${decodeURIComponent(user)}:${decodeURIComponent(password)}`;
  return `Basic ${new TextEncoder().encode(text).toBase64()}`;
}

// The URL a connection reports: credentials in it are secrets.
function withoutCredentials(url: URL): string {
  if (url.username === "" && url.password === "") return url.href;
  const copy = new URL(url);
  copy.username = "";
  copy.password = "";
  return copy.href;
}

// ---------------------------------------------------------------------------
// Proxies
// ---------------------------------------------------------------------------

// The upper-case name first, then the lower-case one; an empty value counts
// as unset (as Go and Python read them): `HTTP_PROXY=` does not hide
// `http_proxy`.
function readEnv(name: string): string | undefined {
  return envValue(name) || envValue(name.toLowerCase()) || undefined;
}

// A variable the process may read, or undefined: without --allow-env for it
// there is no proxy from the environment, and no permission prompt either
// (Deno.env.get would prompt on a terminal, holding connect() up).
function envValue(name: string): string | undefined {
  try {
    const { state } = Deno.permissions.querySync({
      name: "env",
      variable: name,
    });
    return state === "granted" ? Deno.env.get(name) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The proxy URL for a target: the `proxy` option, or `HTTPS_PROXY` /
 * `HTTP_PROXY` unless `NO_PROXY` matches the host.
 */
function proxyFor(
  url: URL,
  option: string | false | undefined,
): URL | undefined {
  if (option === false) return undefined;
  let value = option;
  if (value === undefined) {
    value = url.protocol === "wss:"
      ? readEnv("HTTPS_PROXY")
      : readEnv("HTTP_PROXY");
    if (value === undefined || value === "") return undefined;
    if (bypassesProxy(url, readEnv("NO_PROXY") ?? "")) return undefined;
  }
  let proxy: URL;
  try {
    proxy = new URL(value.includes("://") ? value : `http://${value}`);
  } catch {
    // No cause: the runtime's message repeats the URL, password included.
    throw new TypeError("Cannot connect: proxy URL is not valid");
  }
  checkCredentials(proxy, "proxy URL");
  if (proxy.protocol === "socks5:" || proxy.protocol === "socks5h:") {
    checkSocksCredentials(proxy);
  } else if (proxy.protocol !== "http:") {
    throw new TypeError(
      `Cannot connect: proxy scheme is "${
        proxy.protocol.slice(0, -1)
      }", only "http", "socks5" and "socks5h" are supported`,
    );
  }
  return proxy;
}

/**
 * Whether `NO_PROXY` (comma or space separated; `*`; host names matching
 * themselves and their subdomains, with or without a leading dot;
 * `host:port`) lists the target.
 */
function bypassesProxy(url: URL, noProxy: string): boolean {
  const host = url.hostname.replace(/^\[|\]$/g, "").toLowerCase()
    .replace(/\.$/, "");
  const port = url.port === "" ? String(DEFAULT_PORTS[url.protocol]) : url.port;
  // An IP address matches only itself (as the URL parser writes it), never
  // as a suffix: "0.1" is not a domain of 127.0.0.1.
  const ip = host.includes(":") || /^[\d.]+$/.test(host);
  for (const raw of noProxy.split(/[\s,]+/)) {
    let entry = raw.trim().toLowerCase();
    if (entry === "") continue;
    if (entry === "*") return true;
    let entryPort: string | undefined;
    const bracketed = /^\[([^\]]*)\](?::(\d+))?$/.exec(entry);
    const portMatch = /^(.*?):(\d+)$/.exec(entry);
    if (bracketed !== null) {
      // An IPv6 literal, with or without a port: [::1], [::1]:8080.
      entry = bracketed[1]!;
      entryPort = bracketed[2];
    } else if (portMatch !== null && entry.split(":").length === 2) {
      entry = portMatch[1]!;
      entryPort = portMatch[2];
    }
    entry = entry.replace(/^\[|\]$/g, "").replace(/^\*?\./, ".")
      .replace(/\.$/, "");
    if (entryPort !== undefined && entryPort !== port) continue;
    if (ip) {
      if (canonicalIp(entry) === host) return true;
    } else if (entry.startsWith(".")) {
      if (host.endsWith(entry) || host === entry.slice(1)) return true;
    } else if (host === entry || host.endsWith(`.${entry}`)) {
      return true;
    }
  }
  return false;
}

// An IP address as the URL parser writes a host (::1 for 0:0:0:0:0:0:0:1),
// or the entry as it is when it is none.
function canonicalIp(entry: string): string {
  try {
    const host = new URL(
      entry.includes(":") ? `http://[${entry}]/` : `http://${entry}/`,
    ).hostname;
    return host.replace(/^\[|\]$/g, "");
  } catch {
    return entry;
  }
}

// A proxy's 2xx answer to CONNECT with a Content-Length (not 0) or a
// Transfer-Encoding: RFC 9110 §9.3.6 forbids them there, and has the client
// ignore them, since the tunnel starts right after the head. They only
// explain a handshake that fails on bytes the proxy sent as a body anyway.
interface AnnouncedBody {
  status: number;
  headers: Headers;
  header: "content-length" | "transfer-encoding";
}

function announcedBody(
  status: number,
  headers: Headers,
): AnnouncedBody | undefined {
  const length = headers.get("content-length");
  const header = headers.has("transfer-encoding")
    ? "transfer-encoding"
    : length !== null && !/^[0\s,]*$/.test(length)
    ? "content-length"
    : undefined;
  return header === undefined ? undefined : { status, headers, header };
}

// The target of a ws: or wss: URL never speaks first (the client sends its
// request, or its TLS ClientHello): bytes in the tunnel before its answer
// that break the handshake, after a 2xx that announced a body, are that
// body.
function proxyBodyError(
  url: URL,
  body: AnnouncedBody,
  cause?: unknown,
): HandshakeError {
  const name = body.header === "content-length"
    ? "Content-Length"
    : "Transfer-Encoding";
  return new HandshakeError(
    `Cannot connect through proxy to ${url.host}: proxy answered ${body.status} to CONNECT with a ${name}, and bytes that are not the server's came through the tunnel (RFC 9110 §9.3.6: a 2xx answer to CONNECT has no content)`,
    {
      status: body.status,
      headers: body.headers,
      header: body.header,
      ...(cause === undefined ? {} : { cause }),
    },
  );
}

// Opens a tunnel through an HTTP proxy with CONNECT (RFC 9110 §9.3.6).
async function tunnel(
  proxy: URL,
  hostname: string,
  port: number,
  url: URL,
  options: ConnectOptions,
  signal: AbortSignal,
): Promise<{ conn: Deno.Conn; announced: AnnouncedBody | undefined }> {
  const proxyPort = proxy.port === "" ? 80 : Number(proxy.port);
  const conn = await Deno.connect({
    hostname: proxy.hostname.replace(/^\[|\]$/g, ""),
    port: proxyPort,
    transport: "tcp",
    signal,
  });
  noDelay(conn);
  try {
    const authority = hostname.includes(":")
      ? `[${hostname}]:${port}`
      : `${hostname}:${port}`;
    const lines = [`CONNECT ${authority} HTTP/1.1`, `Host: ${authority}`];
    if (proxy.username !== "") {
      lines.push(
        `Proxy-Authorization: ${basic(proxy.username, proxy.password)}`,
      );
    }
    await writeAll(
      conn,
      new TextEncoder().encode(lines.join("\r\n") + "\r\n\r\n"),
    );
    const reader = conn.readable.getReader();
    try {
      // Interim 1xx answers before the final one are skipped; a 101 is a
      // final answer, and not a tunnel.
      const { response, rest } = await readResponseHead(reader, {
        ...(options.maxHeadSize === undefined
          ? {}
          : { maxHeadSize: options.maxHeadSize }),
        signal,
      });
      if (response.status < 200 || response.status > 299) {
        const body = await readRefusalBody(
          reader,
          rest,
          response,
          options,
          signal,
        );
        const what = response.status === 407
          ? "proxy authentication failed"
          : `proxy answered ${response.status} ${response.statusText}`.trim();
        throw new HandshakeError(
          `Cannot connect through proxy to ${url.host}: ${what}`,
          {
            status: response.status,
            headers: response.headers,
            body,
            ...(response.status === 407
              ? { header: "proxy-authorization" }
              : {}),
          },
        );
      }
      // RFC 9110 §9.3.6, RFC 9112 §6.3: a 2xx answer has no content, and its
      // Content-Length and Transfer-Encoding are ignored: what follows the
      // head is the tunnel's, the server's. But the server has not had the
      // client's first bytes yet, so nothing may come from it so far.
      const announced = announcedBody(response.status, response.headers);
      if (rest.length > 0) {
        throw announced === undefined
          ? new HandshakeError(
            "Cannot connect through proxy: proxy sent bytes after its CONNECT answer",
            { status: response.status, headers: response.headers },
          )
          : proxyBodyError(url, announced);
      }
      return { conn, announced };
    } finally {
      reader.releaseLock();
    }
  } catch (error) {
    closeQuietly(conn);
    throw error;
  }
}
