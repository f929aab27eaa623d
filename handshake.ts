// Copyright 2026 the @rfc6455/websocket authors. MIT license.
// This module is browser compatible: it uses only the Web platform.

/**
 * The RFC 6455 §4 opening handshake, sans-I/O: key generation and
 * `Sec-WebSocket-Accept`, reading an HTTP/1.1 head from a stream with a size
 * limit, strict parsing of request and response heads, building and
 * validating the upgrade request (client) and response (server), error
 * answers, and the §9.1 grammar of `Sec-WebSocket-Protocol` and
 * `Sec-WebSocket-Extensions`.
 *
 * Limits, with their defaults:
 *
 * | limit | default | failure |
 * | --- | --- | --- |
 * | {@linkcode ReadHeadOptions.maxHeadSize} | 16384 bytes | `HandshakeError`, status 431 |
 * | {@linkcode ParseHeadOptions.maxHeaders} | 100 header lines | `HandshakeError`, status 431 |
 *
 * Error messages never contain header values: they may be secrets
 * (`Authorization`, `Cookie`, keys).
 *
 * @example A full handshake in memory
 * ```ts
 * import {
 *   buildUpgradeRequest,
 *   buildUpgradeResponse,
 *   createKey,
 *   parseRequestHead,
 *   parseResponseHead,
 *   validateUpgradeRequest,
 *   validateUpgradeResponse,
 * } from "@rfc6455/websocket/handshake";
 * import assert from "node:assert/strict";
 *
 * const key = createKey();
 * const request = buildUpgradeRequest({
 *   url: new URL("ws://example.com/chat"),
 *   key,
 *   protocols: ["chat.v2"],
 * });
 *
 * // Server side.
 * const info = validateUpgradeRequest(parseRequestHead(request));
 * const response = await buildUpgradeResponse({ key: info.key, protocol: "chat.v2" });
 *
 * // Client side.
 * const result = await validateUpgradeResponse(parseResponseHead(response), {
 *   key,
 *   protocols: ["chat.v2"],
 * });
 * assert.equal(result.protocol, "chat.v2");
 * ```
 *
 * @module
 */

import { HandshakeError } from "./errors.ts";
import {
  checkHeader,
  checkHeaders,
  encodeLatin1,
  hasControl,
  hasToken,
  isHttp11,
  isValidHost,
  refusalHeaders,
  refusalStatus,
  type RequestHead,
  type ResponseHead,
  STATUS_TEXT,
  TOKEN,
  trimOws,
} from "./_http.ts";

// Reading and parsing HTTP/1.1 heads lives in _http.ts; it is part of this
// entry point.
export {
  type HeadResult,
  type ParseHeadOptions,
  parseRequestHead,
  parseResponseHead,
  readHead,
  type ReadHeadOptions,
  type RequestHead,
  type ResponseHead,
} from "./_http.ts";

// Re-exported because the functions below throw it and take it
// (errorResponseFor), so users of this entry point can name it.
export { HandshakeError } from "./errors.ts";

/**
 * The GUID that RFC 6455 §1.3 appends to `Sec-WebSocket-Key` before hashing
 * it into `Sec-WebSocket-Accept`.
 *
 * @example Using the GUID
 * ```ts
 * import { WEBSOCKET_GUID } from "@rfc6455/websocket/handshake";
 * import assert from "node:assert/strict";
 *
 * assert.equal(WEBSOCKET_GUID.length, 36);
 * ```
 */
export const WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

// RFC 6455 §4.1: the key is 16 bytes in base64, so 22 characters and "==".
const KEY = /^[A-Za-z0-9+/]{22}==$/;

/**
 * Creates a `Sec-WebSocket-Key`: 16 random bytes from
 * `crypto.getRandomValues`, in base64 (RFC 6455 §4.1).
 *
 * @returns A fresh key of 24 base64 characters.
 *
 * @example Creating a key
 * ```ts
 * import { createKey } from "@rfc6455/websocket/handshake";
 * import assert from "node:assert/strict";
 *
 * const key = createKey();
 * assert.equal(Uint8Array.fromBase64(key).length, 16);
 * assert.notEqual(key, createKey());
 * ```
 */
export function createKey(): string {
  return crypto.getRandomValues(new Uint8Array(16)).toBase64();
}

/**
 * Computes the `Sec-WebSocket-Accept` value for a key: the base64 of the
 * SHA-1 of the key followed by {@linkcode WEBSOCKET_GUID} (RFC 6455 §4.2.2).
 *
 * @param key The `Sec-WebSocket-Key` the client sent.
 * @returns The value the server must answer in `Sec-WebSocket-Accept`.
 *
 * @example The RFC 6455 §1.3 vector
 * ```ts
 * import { createAcceptKey } from "@rfc6455/websocket/handshake";
 * import assert from "node:assert/strict";
 *
 * assert.equal(
 *   await createAcceptKey("dGhlIHNhbXBsZSBub25jZQ=="),
 *   "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
 * );
 * ```
 */
export async function createAcceptKey(key: string): Promise<string> {
  const data = new TextEncoder().encode(key + WEBSOCKET_GUID);
  const digest = await crypto.subtle.digest("SHA-1", data);
  return new Uint8Array(digest).toBase64();
}

// ---------------------------------------------------------------------------
// RFC 6455 §9.1 header grammar
// ---------------------------------------------------------------------------

/**
 * One extension of a `Sec-WebSocket-Extensions` header (RFC 6455 §9.1): its
 * name and its parameters, in order, duplicates kept. A parameter without a
 * value has the value `true`.
 *
 * @example An offer of permessage-deflate
 * ```ts
 * import { formatExtensions, type ExtensionOffer } from "@rfc6455/websocket/handshake";
 * import assert from "node:assert/strict";
 *
 * const offer: ExtensionOffer = {
 *   name: "permessage-deflate",
 *   params: [["client_max_window_bits", true]],
 * };
 * assert.equal(formatExtensions([offer]), "permessage-deflate; client_max_window_bits");
 * ```
 */
export interface ExtensionOffer {
  /** The extension token, e.g. `"permessage-deflate"`. */
  name: string;
  /** The parameters in order; `true` for a parameter without a value. */
  params: [string, string | true][];
}

/**
 * Parses a `Sec-WebSocket-Extensions` value (RFC 6455 §9.1): a comma
 * separated list of extensions, each a token followed by `;`-separated
 * parameters, each a token with an optional `=` and a token or
 * quoted-string value. Quoted values are unquoted and, as §9.1 requires,
 * must then be tokens. Spaces and tabs are allowed around `,`, `;` and `=`;
 * empty list elements are ignored (RFC 9110 §5.6.1), so `""` gives `[]`.
 * Order and duplicates are kept: negotiating them is the extension's job.
 *
 * @param value The header value; join repeated headers with `", "` first.
 * @returns The extensions, in order.
 * @throws {SyntaxError} If the value does not follow the grammar; the
 * message gives the position, not the value.
 *
 * @example Parsing two offers
 * ```ts
 * import { parseExtensions } from "@rfc6455/websocket/handshake";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(
 *   parseExtensions('permessage-deflate; client_max_window_bits="10", permessage-deflate'),
 *   [
 *     { name: "permessage-deflate", params: [["client_max_window_bits", "10"]] },
 *     { name: "permessage-deflate", params: [] },
 *   ],
 * );
 * ```
 */
export function parseExtensions(value: string): ExtensionOffer[] {
  const offers: ExtensionOffer[] = [];
  let position = 0;
  const fail = (detail: string) =>
    new SyntaxError(
      `Cannot parse Sec-WebSocket-Extensions: ${detail} at position ${position}`,
    );
  const skipOws = () => {
    while (value[position] === " " || value[position] === "\t") position++;
  };
  const readToken = (what: string) => {
    const start = position;
    while (position < value.length && TOKEN.test(value[position] ?? "")) {
      position++;
    }
    if (start === position) throw fail(`expected ${what}`);
    return value.slice(start, position);
  };
  const readQuoted = () => {
    // RFC 9110 §5.6.4: quoted-string with quoted-pair escapes.
    position++;
    let text = "";
    while (true) {
      const char = value[position];
      if (char === undefined) throw fail("unterminated quoted string");
      if (char === '"') {
        position++;
        break;
      }
      if (char === "\\") {
        const escaped = value[position + 1];
        if (escaped === undefined || hasControl(escaped)) {
          throw fail("invalid escape in quoted string");
        }
        text += escaped;
        position += 2;
        continue;
      }
      if (hasControl(char)) throw fail("control character in quoted string");
      text += char;
      position++;
    }
    // RFC 6455 §9.1: the unquoted value must be a token.
    if (!TOKEN.test(text)) throw fail("quoted value is not a token");
    return text;
  };

  while (true) {
    skipOws();
    if (position >= value.length) break;
    if (value[position] === ",") {
      position++;
      continue;
    }
    const offer: ExtensionOffer = {
      name: readToken("an extension name"),
      params: [],
    };
    skipOws();
    while (value[position] === ";") {
      position++;
      skipOws();
      const name = readToken("a parameter name");
      skipOws();
      let param: string | true = true;
      if (value[position] === "=") {
        position++;
        skipOws();
        param = value[position] === '"'
          ? readQuoted()
          : readToken("a parameter value");
        skipOws();
      }
      offer.params.push([name, param]);
    }
    offers.push(offer);
    if (position < value.length) {
      if (value[position] !== ",") throw fail('expected "," or ";"');
      position++;
    }
  }
  return offers;
}

/**
 * Formats extensions as a `Sec-WebSocket-Extensions` value, the inverse of
 * {@linkcode parseExtensions}: `", "` between extensions, `"; "` before each
 * parameter, values as tokens.
 *
 * @param offers The extensions, in order.
 * @returns The header value; `""` for no extensions.
 * @throws {TypeError} If a name or a value is not a token (RFC 6455 §9.1).
 *
 * @example Formatting two offers
 * ```ts
 * import { formatExtensions } from "@rfc6455/websocket/handshake";
 * import assert from "node:assert/strict";
 *
 * assert.equal(
 *   formatExtensions([
 *     { name: "permessage-deflate", params: [["client_max_window_bits", true]] },
 *     { name: "permessage-deflate", params: [] },
 *   ]),
 *   "permessage-deflate; client_max_window_bits, permessage-deflate",
 * );
 * ```
 */
export function formatExtensions(offers: ExtensionOffer[]): string {
  return offers.map((offer, index) => {
    if (!TOKEN.test(offer.name)) {
      throw new TypeError(
        `Cannot format Sec-WebSocket-Extensions: name of extension ${index} is not a token`,
      );
    }
    let text = offer.name;
    for (const [name, value] of offer.params) {
      if (!TOKEN.test(name)) {
        throw new TypeError(
          `Cannot format Sec-WebSocket-Extensions: a parameter name of "${offer.name}" is not a token`,
        );
      }
      if (value === true) {
        text += `; ${name}`;
      } else if (TOKEN.test(value)) {
        text += `; ${name}=${value}`;
      } else {
        throw new TypeError(
          `Cannot format Sec-WebSocket-Extensions: value of parameter "${name}" of "${offer.name}" is not a token`,
        );
      }
    }
    return text;
  }).join(", ");
}

/**
 * Parses a `Sec-WebSocket-Protocol` value: a comma separated list of
 * subprotocol tokens, which RFC 6455 §4.1 requires to be unique. Empty list
 * elements are ignored (RFC 9110 §5.6.1), so `""` gives `[]`.
 *
 * @param value The header value; join repeated headers with `", "` first.
 * @returns The subprotocols, in the order given.
 * @throws {SyntaxError} If an element is not a token or is repeated; the
 * message gives the element's index, not its text.
 *
 * @example Parsing offered subprotocols
 * ```ts
 * import { parseProtocols } from "@rfc6455/websocket/handshake";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(parseProtocols("chat.v2, chat.v1"), ["chat.v2", "chat.v1"]);
 * assert.throws(() => parseProtocols("chat v2"), SyntaxError);
 * ```
 */
export function parseProtocols(value: string): string[] {
  const protocols: string[] = [];
  value.split(",").forEach((element, index) => {
    const protocol = trimOws(element);
    if (protocol === "") return;
    if (!TOKEN.test(protocol)) {
      throw new SyntaxError(
        `Cannot parse Sec-WebSocket-Protocol: element ${index} is not a token`,
      );
    }
    if (protocols.includes(protocol)) {
      throw new SyntaxError(
        `Cannot parse Sec-WebSocket-Protocol: element ${index} is a duplicate`,
      );
    }
    protocols.push(protocol);
  });
  return protocols;
}

/**
 * Formats subprotocols as a `Sec-WebSocket-Protocol` value, the inverse of
 * {@linkcode parseProtocols}.
 *
 * @param protocols The subprotocols, in order of preference.
 * @returns The header value; `""` for no subprotocols.
 * @throws {TypeError} If a subprotocol is not a token or is repeated.
 *
 * @example Formatting subprotocols
 * ```ts
 * import { formatProtocols } from "@rfc6455/websocket/handshake";
 * import assert from "node:assert/strict";
 *
 * assert.equal(formatProtocols(["chat.v2", "chat.v1"]), "chat.v2, chat.v1");
 * assert.throws(() => formatProtocols(["a", "a"]), TypeError);
 * ```
 */
export function formatProtocols(protocols: string[]): string {
  protocols.forEach((protocol, index) => {
    if (!TOKEN.test(protocol)) {
      throw new TypeError(
        `Cannot format Sec-WebSocket-Protocol: subprotocol ${index} is not a token`,
      );
    }
    if (protocols.indexOf(protocol) !== index) {
      throw new TypeError(
        `Cannot format Sec-WebSocket-Protocol: subprotocol "${protocol}" is repeated`,
      );
    }
  });
  return protocols.join(", ");
}

/**
 * Chooses the subprotocol of a connection, on the server: the first of the
 * client's offers that the server supports. The client's order wins because
 * RFC 6455 §4.1 says the client lists its subprotocols "ordered by
 * preference", and a server that prefers its own order can pass the lists
 * the other way round. Matching is exact (subprotocols are case-sensitive).
 *
 * @param offered The subprotocols the client offered, in its order.
 * @param supported The subprotocols the server supports.
 * @returns The chosen subprotocol, or `undefined` if none matches.
 *
 * @example Choosing a subprotocol
 * ```ts
 * import { selectProtocol } from "@rfc6455/websocket/handshake";
 * import assert from "node:assert/strict";
 *
 * assert.equal(selectProtocol(["chat.v2", "chat.v1"], ["chat.v1", "chat.v2"]), "chat.v2");
 * assert.equal(selectProtocol(["mqtt"], ["chat.v1"]), undefined);
 * ```
 */
export function selectProtocol(
  offered: string[],
  supported: string[],
): string | undefined {
  return offered.find((protocol) => supported.includes(protocol));
}

// ---------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------

/**
 * Options of {@linkcode buildUpgradeRequest}.
 *
 * @example Options with extra headers
 * ```ts
 * import { createKey, type UpgradeRequestOptions } from "@rfc6455/websocket/handshake";
 * import assert from "node:assert/strict";
 *
 * const options: UpgradeRequestOptions = {
 *   url: new URL("wss://example.com/feed"),
 *   key: createKey(),
 *   headers: [["Origin", "https://example.com"], ["User-Agent", "crawler/1.0"]],
 * };
 * assert.equal(options.headers?.length, 2);
 * ```
 */
export interface UpgradeRequestOptions {
  /**
   * The URL to open: `ws:` or `wss:` (`http:` and `https:` are accepted
   * too). The request target is its path and query; its fragment is not
   * sent; `Host` is its host, without a default port.
   */
  url: URL;
  /** The `Sec-WebSocket-Key`, from {@linkcode createKey}. */
  key: string;
  /**
   * Extra header fields, sent after the handshake's own, in this order and
   * case. A `Host` field replaces the one taken from the URL, in its place.
   * The fields of the handshake itself (`Upgrade`, `Connection`,
   * `Sec-WebSocket-*`) and of a body (`Content-Length`,
   * `Transfer-Encoding`) are refused.
   *
   * @default {[]}
   */
  headers?: [string, string][];
  /**
   * The subprotocols to offer, in order of preference. None are offered if
   * empty.
   *
   * @default {[]}
   */
  protocols?: string[];
  /**
   * The extensions to offer, in order of preference. None are offered if
   * empty.
   *
   * @default {[]}
   */
  extensions?: ExtensionOffer[];
}

const REQUEST_OWNED = new Set([
  "upgrade",
  "connection",
  "sec-websocket-key",
  "sec-websocket-version",
  "sec-websocket-protocol",
  "sec-websocket-extensions",
  "sec-websocket-accept",
  "content-length",
  "transfer-encoding",
]);

/**
 * Builds the bytes of a client's upgrade request (RFC 6455 §4.1):
 *
 * ```text
 * GET /path?query HTTP/1.1
 * Host: example.com
 * Upgrade: websocket
 * Connection: Upgrade
 * Sec-WebSocket-Key: ...
 * Sec-WebSocket-Version: 13
 * Sec-WebSocket-Protocol: ...     (if protocols are offered)
 * Sec-WebSocket-Extensions: ...   (if extensions are offered)
 * (extra headers, in the caller's order and case)
 * ```
 *
 * @param options The URL, key, extra headers, subprotocols and extensions.
 * @returns The request head, ending in CRLFCRLF.
 * @throws {TypeError} If the URL scheme is not `ws:`, `wss:`, `http:` or
 * `https:`; if the key is not 16 bytes in base64; if an extra header is one
 * the handshake owns, appears twice as `Host`, has a name that is not a
 * token or a value with a control character or a character above U+00FF
 * (messages name the header, never its value); or if a subprotocol or
 * extension is invalid.
 *
 * @example Building a request
 * ```ts
 * import { buildUpgradeRequest } from "@rfc6455/websocket/handshake";
 * import assert from "node:assert/strict";
 *
 * const bytes = buildUpgradeRequest({
 *   url: new URL("ws://example.com/chat?room=1"),
 *   key: "dGhlIHNhbXBsZSBub25jZQ==",
 *   headers: [["Origin", "http://example.com"]],
 * });
 * assert.equal(
 *   new TextDecoder().decode(bytes),
 *   "GET /chat?room=1 HTTP/1.1\r\n" +
 *     "Host: example.com\r\n" +
 *     "Upgrade: websocket\r\n" +
 *     "Connection: Upgrade\r\n" +
 *     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
 *     "Sec-WebSocket-Version: 13\r\n" +
 *     "Origin: http://example.com\r\n" +
 *     "\r\n",
 * );
 * ```
 *
 * @example Refusing header injection
 * ```ts
 * import { buildUpgradeRequest, createKey } from "@rfc6455/websocket/handshake";
 * import assert from "node:assert/strict";
 *
 * assert.throws(
 *   () =>
 *     buildUpgradeRequest({
 *       url: new URL("ws://example.com/"),
 *       key: createKey(),
 *       headers: [["Cookie", "a=1\r\nX-Evil: 1"]],
 *     }),
 *   TypeError,
 * );
 * ```
 */
export function buildUpgradeRequest(
  options: UpgradeRequestOptions,
): Uint8Array<ArrayBuffer> {
  const action = "Cannot build upgrade request";
  const { url } = options;
  if (!["ws:", "wss:", "http:", "https:"].includes(url.protocol)) {
    throw new TypeError(
      `${action}: URL scheme must be ws:, wss:, http: or https:, got ${
        JSON.stringify(url.protocol)
      }`,
    );
  }
  checkKey(options.key, action);
  let host: [string, string] = ["Host", url.host];
  let hostSeen = false;
  const extra: [string, string][] = [];
  for (const [name, value] of options.headers ?? []) {
    const clean = checkHeader(name, value, action);
    const lower = name.toLowerCase();
    if (REQUEST_OWNED.has(lower)) {
      throw new TypeError(
        `${action}: header "${name}" is set automatically and cannot be given`,
      );
    }
    if (lower === "host") {
      if (hostSeen) {
        throw new TypeError(`${action}: header "Host" is given twice`);
      }
      hostSeen = true;
      host = [name, clean];
    } else {
      extra.push([name, clean]);
    }
  }
  const lines = [
    `GET ${url.pathname || "/"}${url.search} HTTP/1.1`,
    `${host[0]}: ${host[1]}`,
    "Upgrade: websocket",
    "Connection: Upgrade",
    `Sec-WebSocket-Key: ${options.key}`,
    "Sec-WebSocket-Version: 13",
  ];
  const protocols = formatProtocols(options.protocols ?? []);
  if (protocols !== "") lines.push(`Sec-WebSocket-Protocol: ${protocols}`);
  const extensions = formatExtensions(options.extensions ?? []);
  if (extensions !== "") lines.push(`Sec-WebSocket-Extensions: ${extensions}`);
  for (const [name, value] of extra) lines.push(`${name}: ${value}`);
  return encodeLatin1(lines.join("\r\n") + "\r\n\r\n");
}

/**
 * Options of {@linkcode validateUpgradeResponse}: what the client offered.
 *
 * @example Options for a client that offered a subprotocol
 * ```ts
 * import type { UpgradeResponseOptions } from "@rfc6455/websocket/handshake";
 * import assert from "node:assert/strict";
 *
 * const options: UpgradeResponseOptions = {
 *   key: "dGhlIHNhbXBsZSBub25jZQ==",
 *   protocols: ["chat.v2"],
 * };
 * assert.deepEqual(options.protocols, ["chat.v2"]);
 * ```
 */
export interface UpgradeResponseOptions {
  /** The `Sec-WebSocket-Key` the client sent. */
  key: string;
  /**
   * The subprotocols the client offered.
   *
   * @default {[]}
   */
  protocols?: string[];
  /**
   * The extensions the client offered.
   *
   * @default {[]}
   */
  extensions?: ExtensionOffer[];
  /**
   * The first bytes after the head (the start of the body, bounded by the
   * caller), attached to the `HandshakeError` so a user sees why a server
   * refused.
   *
   * @default {undefined}
   */
  body?: Uint8Array<ArrayBuffer>;
}

/**
 * What the server agreed to, from {@linkcode validateUpgradeResponse}.
 *
 * @example Reading the agreement
 * ```ts
 * import type { UpgradeResult } from "@rfc6455/websocket/handshake";
 * import assert from "node:assert/strict";
 *
 * const result: UpgradeResult = { protocol: "", extensions: [] };
 * assert.equal(result.protocol, "");
 * ```
 */
export interface UpgradeResult {
  /** The subprotocol the server chose, or `""` if none. */
  protocol: string;
  /** The extensions the server accepted, in its order, with its parameters. */
  extensions: ExtensionOffer[];
}

/**
 * Validates a server's answer to the upgrade request (RFC 6455 §4.1, the
 * client's checks): status 101 over HTTP/1.1, `Upgrade: websocket`
 * (case-insensitive), `Connection` listing `upgrade` (case-insensitive),
 * `Sec-WebSocket-Accept` matching the key, a `Sec-WebSocket-Protocol` that
 * was offered (absent means `""`), and `Sec-WebSocket-Extensions` naming
 * only offered extensions (absent means `[]`). That header, when present,
 * must list at least one extension (§9.1: an empty value, or one of commas
 * and spaces only, fails); its repeated lines are read as one list.
 * Checking the extensions' parameters is left to the extensions.
 *
 * @param response The parsed response head.
 * @param options What the client offered, and the first body bytes.
 * @returns The subprotocol and the extensions the server agreed to.
 * @throws {HandshakeError} Carrying the response's `status`, `headers` and
 * `body`, and the lower-case name of the wrong header in `header`. A status
 * other than 101 gives a message like `Cannot open WebSocket: server
 * answered 403 Forbidden`.
 *
 * @example Validating an answer
 * ```ts
 * import { parseResponseHead, validateUpgradeResponse } from "@rfc6455/websocket/handshake";
 * import assert from "node:assert/strict";
 *
 * const head = new TextEncoder().encode(
 *   "HTTP/1.1 101 Switching Protocols\r\n" +
 *     "Upgrade: websocket\r\n" +
 *     "Connection: Upgrade\r\n" +
 *     "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
 * );
 * const result = await validateUpgradeResponse(parseResponseHead(head), {
 *   key: "dGhlIHNhbXBsZSBub25jZQ==",
 * });
 * assert.deepEqual(result, { protocol: "", extensions: [] });
 * ```
 *
 * @example A refusal
 * ```ts
 * import { parseResponseHead, validateUpgradeResponse } from "@rfc6455/websocket/handshake";
 * import assert from "node:assert/strict";
 *
 * const head = new TextEncoder().encode("HTTP/1.1 403 Forbidden\r\nContent-Length: 7\r\n\r\n");
 * await assert.rejects(
 *   validateUpgradeResponse(parseResponseHead(head), {
 *     key: "dGhlIHNhbXBsZSBub25jZQ==",
 *     body: new TextEncoder().encode("go away"),
 *   }),
 *   { status: 403, message: "Cannot open WebSocket: server answered 403 Forbidden" },
 * );
 * ```
 */
export async function validateUpgradeResponse(
  response: ResponseHead,
  options: UpgradeResponseOptions,
): Promise<UpgradeResult> {
  const { headers, status } = response;
  const fail = (detail: string, header?: string, cause?: unknown) =>
    new HandshakeError(`Cannot open WebSocket: ${detail}`, {
      status,
      headers,
      ...(options.body === undefined ? {} : { body: options.body }),
      ...(header === undefined ? {} : { header }),
      ...(cause === undefined ? {} : { cause }),
    });
  if (status !== 101) {
    throw fail(
      `server answered ${status}${
        response.statusText === "" ? "" : ` ${response.statusText}`
      }`,
    );
  }
  if (!isHttp11(response.version)) {
    throw fail("server answered with a version other than HTTP/1.1");
  }
  // §4.1 (client) point 2: Upgrade is "websocket", case-insensitive.
  const upgrade = headers.get("upgrade");
  if (upgrade === null) throw fail("missing Upgrade header", "upgrade");
  if (upgrade.toLowerCase() !== "websocket") {
    throw fail('Upgrade header is not "websocket"', "upgrade");
  }
  // §4.1 (client) point 3: Connection holds the "Upgrade" token.
  const connection = headers.get("connection");
  if (connection === null) {
    throw fail("missing Connection header", "connection");
  }
  if (!hasToken(connection, "upgrade")) {
    throw fail('Connection header does not contain "upgrade"', "connection");
  }
  // §4.1 (client) point 4: the accept key proves the server read our key.
  const accept = headers.get("sec-websocket-accept");
  if (accept === null) {
    throw fail("missing Sec-WebSocket-Accept header", "sec-websocket-accept");
  }
  if (accept !== await createAcceptKey(options.key)) {
    throw fail(
      "Sec-WebSocket-Accept header does not match the key",
      "sec-websocket-accept",
    );
  }
  // §4.1 (client) point 6: a subprotocol the client did not offer fails.
  const offeredProtocols = options.protocols ?? [];
  const protocol = headers.get("sec-websocket-protocol");
  if (protocol !== null) {
    if (offeredProtocols.length === 0) {
      throw fail(
        "server chose a subprotocol but none was offered",
        "sec-websocket-protocol",
      );
    }
    if (!offeredProtocols.includes(protocol)) {
      throw fail(
        "server chose a subprotocol that was not offered",
        "sec-websocket-protocol",
      );
    }
  }
  // §4.1 (client) point 5: an extension the client did not offer fails.
  // Repeated lines are one list (§4.2.2 point 5.6; erratum 3433 to §11.3.2),
  // as `headers` joins them.
  let extensions: ExtensionOffer[] = [];
  const extensionsValue = headers.get("sec-websocket-extensions");
  if (extensionsValue !== null) {
    try {
      extensions = parseExtensions(extensionsValue);
    } catch (error) {
      throw fail(
        "Sec-WebSocket-Extensions header is malformed",
        "sec-websocket-extensions",
        error,
      );
    }
    // §9.1: the value is 1#extension. Empty list elements are ignored, but
    // "", "," or ", ," list none and are not valid (RFC 9110 §5.6.1.2),
    // whether or not the client offered any.
    if (extensions.length === 0) {
      throw fail(
        "Sec-WebSocket-Extensions header lists no extension",
        "sec-websocket-extensions",
      );
    }
    const offered = new Set((options.extensions ?? []).map((e) => e.name));
    for (const extension of extensions) {
      if (!offered.has(extension.name)) {
        throw fail(
          `server accepted extension "${extension.name}" that was not offered`,
          "sec-websocket-extensions",
        );
      }
    }
  }
  return { protocol: protocol ?? "", extensions };
}

// ---------------------------------------------------------------------------
// Server side
// ---------------------------------------------------------------------------

/**
 * What a valid upgrade request asks for, from
 * {@linkcode validateUpgradeRequest}.
 *
 * @example Reading a request's offers
 * ```ts
 * import type { UpgradeRequestInfo } from "@rfc6455/websocket/handshake";
 * import assert from "node:assert/strict";
 *
 * const info: UpgradeRequestInfo = {
 *   key: "dGhlIHNhbXBsZSBub25jZQ==",
 *   version: "13",
 *   protocols: ["chat.v2"],
 *   extensions: [],
 * };
 * assert.equal(info.version, "13");
 * ```
 */
export interface UpgradeRequestInfo {
  /** The `Sec-WebSocket-Key`, checked to be 16 bytes in base64. */
  key: string;
  /** The `Sec-WebSocket-Version`: always `"13"`. */
  version: string;
  /** The subprotocols offered, in the client's order; `[]` if none. */
  protocols: string[];
  /** The extensions offered, in the client's order; `[]` if none. */
  extensions: ExtensionOffer[];
}

/**
 * Validates a client's upgrade request (RFC 6455 §4.2.1). Only the
 * `headers` of the request are read, so a head built from a `Request` works
 * too; repeated fields arrive joined by `", "`.
 *
 * | check | status |
 * | --- | --- |
 * | method is `GET` | 405 (answer with `Allow: GET`) |
 * | version is HTTP/1.1 or a later 1.x | 400, or 505 for a major version other than 1 |
 * | `Host` present exactly once, a valid `host[:port]` (no userinfo, path, query or fragment) | 400 |
 * | `Upgrade` present | 426 (answer with `Upgrade: websocket`) |
 * | `Upgrade` lists `websocket` (case-insensitive) | 400 |
 * | `Connection` lists `upgrade` (case-insensitive) | 400 |
 * | `Sec-WebSocket-Version` is `13` | 426 (answer with `Sec-WebSocket-Version: 13`) |
 * | exactly one `Sec-WebSocket-Key` of 16 bytes in base64 | 400 |
 * | `Sec-WebSocket-Protocol` follows §4.1 | 400 |
 * | `Sec-WebSocket-Extensions` follows §9.1 | 400 |
 *
 * A `405` is used for other methods, rather than 400, because RFC 9110
 * §15.5.6 gives it that meaning; {@linkcode errorResponseFor} adds the
 * `Allow` header.
 *
 * @param request The parsed request head.
 * @returns The key, version, subprotocols and extensions the client offers.
 * @throws {HandshakeError} With the status above, the request's `headers`,
 * and the lower-case name of the wrong header in `header`. Answer it with
 * {@linkcode errorResponseFor}.
 *
 * @example Validating a request
 * ```ts
 * import { parseRequestHead, validateUpgradeRequest } from "@rfc6455/websocket/handshake";
 * import assert from "node:assert/strict";
 *
 * const head = new TextEncoder().encode(
 *   "GET /chat HTTP/1.1\r\n" +
 *     "Host: example.com\r\n" +
 *     "Upgrade: websocket\r\n" +
 *     "Connection: keep-alive, Upgrade\r\n" +
 *     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
 *     "Sec-WebSocket-Version: 13\r\n" +
 *     "Sec-WebSocket-Protocol: chat.v2, chat.v1\r\n\r\n",
 * );
 * const info = validateUpgradeRequest(parseRequestHead(head));
 * assert.deepEqual(info.protocols, ["chat.v2", "chat.v1"]);
 * ```
 *
 * @example An old client
 * ```ts
 * import { parseRequestHead, validateUpgradeRequest } from "@rfc6455/websocket/handshake";
 * import assert from "node:assert/strict";
 *
 * const head = new TextEncoder().encode(
 *   "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
 *     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
 * );
 * assert.throws(() => validateUpgradeRequest(parseRequestHead(head)), {
 *   status: 426,
 *   header: "sec-websocket-version",
 * });
 * ```
 */
export function validateUpgradeRequest(
  request: RequestHead,
): UpgradeRequestInfo {
  const { headers } = request;
  const fail = (detail: string, status: number, header?: string) =>
    new HandshakeError(`Cannot upgrade to WebSocket: ${detail}`, {
      status,
      headers,
      ...(header === undefined ? {} : { header }),
    });
  // §4.2.1 point 1: an HTTP/1.1 or higher GET request.
  if (request.method !== "GET") {
    throw fail(
      `method ${JSON.stringify(request.method)} is not allowed, use GET`,
      405,
    );
  }
  const version = /^HTTP\/([0-9])\.([0-9])$/.exec(request.version);
  if (version === null || version[1] !== "1") {
    throw fail("HTTP version is not supported, use HTTP/1.1", 505);
  }
  if (version[2] === "0") {
    throw fail("HTTP/1.0 cannot upgrade, use HTTP/1.1", 400);
  }
  // §4.2.1 point 2: a Host header field (RFC 9112 §3.2: exactly one).
  const host = headers.get("host");
  if (host === null) throw fail("missing Host header", 400, "host");
  if (host.includes(",")) {
    throw fail("Host header appears more than once", 400, "host");
  }
  if (!isValidHost(host)) {
    throw fail("Host header is not a valid host[:port]", 400, "host");
  }
  // §4.2.1 point 3: Upgrade lists "websocket". A plain GET without it is
  // told which upgrade is required.
  const upgrade = headers.get("upgrade");
  if (upgrade === null) throw fail("missing Upgrade header", 426, "upgrade");
  if (!hasToken(upgrade, "websocket")) {
    throw fail('Upgrade header does not contain "websocket"', 400, "upgrade");
  }
  // §4.2.1 point 4: Connection lists "Upgrade".
  const connection = headers.get("connection");
  if (connection === null) {
    throw fail("missing Connection header", 400, "connection");
  }
  if (!hasToken(connection, "upgrade")) {
    throw fail(
      'Connection header does not contain "upgrade"',
      400,
      "connection",
    );
  }
  // §4.2.1 point 6 and §4.4: any version but 13 gets 426 with the version
  // we speak. Checked before the key so that old clients learn it.
  const wsVersion = headers.get("sec-websocket-version");
  if (wsVersion === null) {
    throw fail(
      "missing Sec-WebSocket-Version header",
      426,
      "sec-websocket-version",
    );
  }
  if (wsVersion !== "13") {
    throw fail("Sec-WebSocket-Version is not 13", 426, "sec-websocket-version");
  }
  // §4.2.1 point 5: one key, 16 bytes in base64. Base64 has no comma, so a
  // comma means the field was repeated.
  const key = headers.get("sec-websocket-key");
  if (key === null) {
    throw fail("missing Sec-WebSocket-Key header", 400, "sec-websocket-key");
  }
  if (key.includes(",")) {
    throw fail(
      "Sec-WebSocket-Key header appears more than once",
      400,
      "sec-websocket-key",
    );
  }
  if (!isKey(key)) {
    throw fail(
      "Sec-WebSocket-Key header is not 16 bytes in base64",
      400,
      "sec-websocket-key",
    );
  }
  // §4.2.1 points 8 and 9: optional subprotocols and extensions.
  let protocols: string[];
  try {
    protocols = parseProtocols(headers.get("sec-websocket-protocol") ?? "");
  } catch {
    throw fail(
      "Sec-WebSocket-Protocol header is malformed",
      400,
      "sec-websocket-protocol",
    );
  }
  let extensions: ExtensionOffer[];
  try {
    extensions = parseExtensions(headers.get("sec-websocket-extensions") ?? "");
  } catch {
    throw fail(
      "Sec-WebSocket-Extensions header is malformed",
      400,
      "sec-websocket-extensions",
    );
  }
  return { key, version: "13", protocols, extensions };
}

/**
 * What the server agrees to, for {@linkcode buildUpgradeResponse}.
 *
 * @example Accepting a subprotocol
 * ```ts
 * import type { UpgradeResponseInit } from "@rfc6455/websocket/handshake";
 * import assert from "node:assert/strict";
 *
 * const init: UpgradeResponseInit = {
 *   key: "dGhlIHNhbXBsZSBub25jZQ==",
 *   protocol: "chat.v2",
 *   headers: [["Set-Cookie", "session=1"]],
 * };
 * assert.equal(init.protocol, "chat.v2");
 * ```
 */
export interface UpgradeResponseInit {
  /** The client's `Sec-WebSocket-Key`, from {@linkcode validateUpgradeRequest}. */
  key: string;
  /**
   * The chosen subprotocol, one the client offered. `""` means none, like
   * leaving it out.
   *
   * @default {""}
   */
  protocol?: string;
  /**
   * The accepted extensions with their parameters, in the order they apply.
   *
   * @default {[]}
   */
  extensions?: ExtensionOffer[];
  /**
   * Extra header fields, sent last in this order and case. The fields of
   * the handshake (`Upgrade`, `Connection`, `Sec-WebSocket-*`) and of a
   * body (`Content-Length`, `Transfer-Encoding`) are refused.
   *
   * @default {[]}
   */
  headers?: [string, string][];
}

const RESPONSE_OWNED = new Set([
  "upgrade",
  "connection",
  "sec-websocket-accept",
  "sec-websocket-protocol",
  "sec-websocket-extensions",
  "sec-websocket-version",
  "sec-websocket-key",
  "content-length",
  "transfer-encoding",
]);

/**
 * Builds the bytes of a server's `101 Switching Protocols` answer
 * (RFC 6455 §4.2.2):
 *
 * ```text
 * HTTP/1.1 101 Switching Protocols
 * Upgrade: websocket
 * Connection: Upgrade
 * Sec-WebSocket-Accept: ...
 * Sec-WebSocket-Protocol: ...     (if a subprotocol was chosen)
 * Sec-WebSocket-Extensions: ...   (if extensions were accepted)
 * (extra headers, in the caller's order and case)
 * ```
 *
 * @param init The key, subprotocol, extensions and extra headers.
 * @returns The response head, ending in CRLFCRLF.
 * @throws {TypeError} If the key is not 16 bytes in base64, the
 * subprotocol is not a token, an extension is invalid, or an extra header
 * is refused or invalid (as in {@linkcode buildUpgradeRequest}).
 *
 * @example Building an answer
 * ```ts
 * import { buildUpgradeResponse } from "@rfc6455/websocket/handshake";
 * import assert from "node:assert/strict";
 *
 * const bytes = await buildUpgradeResponse({ key: "dGhlIHNhbXBsZSBub25jZQ==" });
 * assert.equal(
 *   new TextDecoder().decode(bytes),
 *   "HTTP/1.1 101 Switching Protocols\r\n" +
 *     "Upgrade: websocket\r\n" +
 *     "Connection: Upgrade\r\n" +
 *     "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
 * );
 * ```
 */
export async function buildUpgradeResponse(
  init: UpgradeResponseInit,
): Promise<Uint8Array<ArrayBuffer>> {
  const action = "Cannot build upgrade response";
  checkKey(init.key, action);
  const protocol = init.protocol ?? "";
  if (protocol !== "" && !TOKEN.test(protocol)) {
    throw new TypeError(`${action}: subprotocol is not a token`);
  }
  const extra = checkHeaders(init.headers ?? [], RESPONSE_OWNED, action);
  const lines = [
    "HTTP/1.1 101 Switching Protocols",
    "Upgrade: websocket",
    "Connection: Upgrade",
    `Sec-WebSocket-Accept: ${await createAcceptKey(init.key)}`,
  ];
  if (protocol !== "") lines.push(`Sec-WebSocket-Protocol: ${protocol}`);
  const extensions = formatExtensions(init.extensions ?? []);
  if (extensions !== "") lines.push(`Sec-WebSocket-Extensions: ${extensions}`);
  for (const [name, value] of extra) lines.push(`${name}: ${value}`);
  return encodeLatin1(lines.join("\r\n") + "\r\n\r\n");
}

const ERROR_OWNED = new Set([
  "content-length",
  "connection",
  "transfer-encoding",
]);

/**
 * Builds the bytes of an error answer to a request that cannot be
 * upgraded, closing the connection:
 *
 * ```text
 * HTTP/1.1 426 Upgrade Required
 * Content-Type: text/plain; charset=utf-8
 * Content-Length: 37
 * Connection: upgrade, close   ("close" for statuses other than 426, RFC 9110 §7.8)
 * Sec-WebSocket-Version: 13     (426 only, RFC 6455 §4.4)
 * Upgrade: websocket            (426 only, RFC 9110 §15.5.22)
 * Allow: GET                    (405 only, RFC 9110 §15.5.6)
 * (extra headers, in the caller's order and case)
 *
 * (body)
 * ```
 *
 * An extra header named like one of the defaults (`Content-Type`,
 * `Sec-WebSocket-Version`, `Upgrade`, `Allow`) replaces it.
 *
 * @param status The status code, an integer from 400 to 599.
 * @param body The body text, sent in UTF-8. Defaults to the reason phrase.
 * @param headers Extra header fields; `Content-Length`, `Connection` and
 * `Transfer-Encoding` are refused.
 * @returns The whole answer, head and body.
 * @throws {RangeError} If the status is not an integer from 400 to 599.
 * @throws {TypeError} If an extra header is refused or invalid (as in
 * {@linkcode buildUpgradeRequest}).
 *
 * @example A 426 answer
 * ```ts
 * import { buildErrorResponse, parseResponseHead } from "@rfc6455/websocket/handshake";
 * import assert from "node:assert/strict";
 *
 * const bytes = buildErrorResponse(426, "Use WebSocket version 13");
 * const text = new TextDecoder().decode(bytes);
 * const end = text.indexOf("\r\n\r\n") + 4;
 * const response = parseResponseHead(bytes.subarray(0, end));
 * assert.equal(response.statusText, "Upgrade Required");
 * assert.equal(response.headers.get("sec-websocket-version"), "13");
 * assert.equal(text.slice(end), "Use WebSocket version 13");
 * ```
 */
export function buildErrorResponse(
  status: number,
  body?: string,
  headers: [string, string][] = [],
): Uint8Array<ArrayBuffer> {
  const action = "Cannot build error response";
  if (!Number.isInteger(status) || status < 400 || status > 599) {
    throw new RangeError(
      `${action}: status must be an integer from 400 to 599, got ${status}`,
    );
  }
  const extra = checkHeaders(headers, ERROR_OWNED, action);
  const reason = STATUS_TEXT[status] ?? "";
  const content = new TextEncoder().encode(body ?? reason);
  const defaults: [string, string][] = [
    ["Content-Type", "text/plain; charset=utf-8"],
    ...refusalHeaders(status),
  ];
  const given = new Set(extra.map(([name]) => name.toLowerCase()));
  const lines = [`HTTP/1.1 ${status} ${reason}`];
  for (const [name, value] of defaults) {
    if (!given.has(name.toLowerCase())) lines.push(`${name}: ${value}`);
    if (name === "Content-Type") {
      // RFC 9110 §7.8: a sender of Upgrade lists "upgrade" in Connection.
      const connection = status === 426 ? "upgrade, close" : "close";
      lines.push(
        `Content-Length: ${content.length}`,
        `Connection: ${connection}`,
      );
    }
  }
  for (const [name, value] of extra) lines.push(`${name}: ${value}`);
  const head = encodeLatin1(lines.join("\r\n") + "\r\n\r\n");
  const bytes = new Uint8Array(head.length + content.length);
  bytes.set(head);
  bytes.set(content, head.length);
  return bytes;
}

/**
 * Builds the answer to a failed upgrade, from the `HandshakeError` that
 * {@linkcode readHead}, {@linkcode parseRequestHead} or
 * {@linkcode validateUpgradeRequest} threw: its status (400 when it has
 * none, or one outside 400-599), with the error message as the body. The
 * messages of these functions never hold header values, so this leaks no
 * secrets. A 426 carries `Sec-WebSocket-Version: 13`, a 405 `Allow: GET`.
 *
 * @param error The error to answer.
 * @returns The whole answer, head and body.
 *
 * @example Answering a bad request
 * ```ts
 * import {
 *   errorResponseFor,
 *   parseRequestHead,
 *   validateUpgradeRequest,
 * } from "@rfc6455/websocket/handshake";
 * import { HandshakeError } from "@rfc6455/websocket/errors";
 * import assert from "node:assert/strict";
 *
 * const head = new TextEncoder().encode("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
 * try {
 *   validateUpgradeRequest(parseRequestHead(head));
 *   assert.fail("expected a HandshakeError");
 * } catch (error) {
 *   assert.ok(error instanceof HandshakeError);
 *   const answer = new TextDecoder().decode(errorResponseFor(error));
 *   assert.ok(answer.startsWith("HTTP/1.1 426 Upgrade Required\r\n"));
 *   assert.ok(answer.endsWith("Cannot upgrade to WebSocket: missing Upgrade header"));
 * }
 * ```
 */
export function errorResponseFor(
  error: HandshakeError,
): Uint8Array<ArrayBuffer> {
  return buildErrorResponse(refusalStatus(error.status), error.message);
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

function isKey(key: string): boolean {
  if (!KEY.test(key)) return false;
  try {
    return Uint8Array.fromBase64(key, { lastChunkHandling: "strict" })
      .length === 16;
  } catch {
    return false;
  }
}

function checkKey(key: string, action: string): void {
  if (!isKey(key)) {
    throw new TypeError(
      `${action}: Sec-WebSocket-Key is not 16 bytes in base64`,
    );
  }
}
