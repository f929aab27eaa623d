// Copyright 2026 the @rfc6455/websocket authors. MIT license.
// This module is browser compatible: it uses only the Web platform.
// Private helper of handshake.ts (which re-exports its public part): HTTP/1.1
// message heads, read from a stream with a size limit and parsed strictly
// (RFC 9110, RFC 9112), and the checks of header fields given by callers.
// Not an entry point.

import { HandshakeError } from "./errors.ts";

const DEFAULT_MAX_HEAD_SIZE = 16384;
const DEFAULT_MAX_HEADERS = 100;
const CR = 0x0d;
const LF = 0x0a;

// RFC 9110 §5.6.2: token = 1*tchar.
export const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const ABOVE_LATIN1 = /[\u0100-\uffff]/;
// RFC 9112 §3: request-line = method SP request-target SP HTTP-version.
const REQUEST_LINE =
  /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e]+) (HTTP\/[0-9]\.[0-9])$/;
// RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ].
// The SP before an empty reason phrase is optional here: many servers omit it.
const STATUS_LINE =
  /^(HTTP\/[0-9]\.[0-9]) ([1-5][0-9]{2})(?: ([\t\x20-\x7e\x80-\xff]*))?$/;

/** The reason phrases of the statuses the handshake and serve() answer with. */
export const STATUS_TEXT: Readonly<Record<number, string>> = {
  101: "Switching Protocols",
  200: "OK",
  201: "Created",
  202: "Accepted",
  204: "No Content",
  301: "Moved Permanently",
  302: "Found",
  303: "See Other",
  304: "Not Modified",
  307: "Temporary Redirect",
  308: "Permanent Redirect",
  400: "Bad Request",
  401: "Unauthorized",
  402: "Payment Required",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  406: "Not Acceptable",
  407: "Proxy Authentication Required",
  408: "Request Timeout",
  409: "Conflict",
  410: "Gone",
  411: "Length Required",
  412: "Precondition Failed",
  413: "Content Too Large",
  414: "URI Too Long",
  415: "Unsupported Media Type",
  416: "Range Not Satisfiable",
  417: "Expectation Failed",
  421: "Misdirected Request",
  422: "Unprocessable Content",
  426: "Upgrade Required",
  428: "Precondition Required",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  451: "Unavailable For Legal Reasons",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
};

/**
 * The status a refused upgrade is answered with: the error's own when it is
 * a 4xx or 5xx, else 400.
 */
export function refusalStatus(status: number | undefined): number {
  return status !== undefined && Number.isInteger(status) && status >= 400 &&
      status <= 599
    ? status
    : 400;
}

/**
 * The headers an error answer of `status` carries besides the body's:
 * what a 426 needs to say (RFC 6455 §4.4, RFC 9110 §15.5.22) and a 405's
 * `Allow` (RFC 9110 §15.5.6).
 */
export function refusalHeaders(status: number): [string, string][] {
  if (status === 426) {
    return [["Sec-WebSocket-Version", "13"], ["Upgrade", "websocket"]];
  }
  return status === 405 ? [["Allow", "GET"]] : [];
}

// ---------------------------------------------------------------------------
// Reading an HTTP/1.1 head
// ---------------------------------------------------------------------------

/**
 * Options of {@linkcode readHead}.
 *
 * @example Reading with a smaller limit and a deadline
 * ```ts
 * import type { ReadHeadOptions } from "@rfc6455/websocket/handshake";
 * import assert from "node:assert/strict";
 *
 * const options: ReadHeadOptions = {
 *   maxHeadSize: 8192,
 *   signal: AbortSignal.timeout(10_000),
 * };
 * assert.equal(options.maxHeadSize, 8192);
 * ```
 */
export interface ReadHeadOptions {
  /**
   * The largest head accepted, in bytes, counting the request or status
   * line, the header lines and the final empty line. A longer head fails
   * with a `HandshakeError` of status 431 as soon as the limit is passed.
   *
   * @default {16384}
   */
  maxHeadSize?: number;
  /**
   * Aborts the wait for the head: `readHead` then rejects with
   * `signal.reason`. The reader is left as it is.
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
}

/**
 * The result of {@linkcode readHead}.
 *
 * @example Splitting a head from what follows it
 * ```ts
 * import { readHead, type HeadResult } from "@rfc6455/websocket/handshake";
 * import assert from "node:assert/strict";
 *
 * const bytes = new TextEncoder().encode("HTTP/1.1 101 Switching Protocols\r\n\r\nxyz");
 * const result: HeadResult = await readHead(ReadableStream.from([bytes]).getReader());
 * assert.equal(new TextDecoder().decode(result.rest), "xyz");
 * ```
 */
export interface HeadResult {
  /** The bytes of the head, up to and including its final CRLFCRLF. */
  head: Uint8Array<ArrayBuffer>;
  /**
   * The bytes that arrived after the head in the same chunk: the first
   * bytes of the body or of the WebSocket frames. Empty when there were
   * none.
   */
  rest: Uint8Array<ArrayBuffer>;
}

/**
 * Reads an HTTP/1.1 head (a request or a status line, then header lines,
 * then an empty line) from a stream reader, chunk by chunk, until the first
 * CRLFCRLF.
 *
 * It looks at each byte once, fails fast on a bare CR or LF (RFC 9112 §2.2,
 * which this module applies strictly), and never holds more than
 * `maxHeadSize` bytes of head plus one chunk. It neither releases nor cancels
 * the reader: the caller keeps reading the frames from it, after `rest`.
 *
 * @param reader The reader of the connection's bytes.
 * @param options The size limit and the abort signal.
 * @returns The head and the bytes that followed it.
 * @throws {HandshakeError} With status 431 if the head is longer than
 * `maxHeadSize`, with status 400 on a bare CR or LF or if the stream ends
 * before the head does.
 * @throws {RangeError} If `maxHeadSize` is not an integer of at least 4.
 * @throws {unknown} `signal.reason` if the signal aborts the wait, and any
 * error of the reader.
 *
 * @example Reading a request head
 * ```ts
 * import { parseRequestHead, readHead } from "@rfc6455/websocket/handshake";
 * import assert from "node:assert/strict";
 *
 * const text = "GET /chat HTTP/1.1\r\nHost: example.com\r\n\r\n";
 * const stream = ReadableStream.from([new TextEncoder().encode(text)]);
 * const { head, rest } = await readHead(stream.getReader(), { maxHeadSize: 4096 });
 * assert.equal(parseRequestHead(head).target, "/chat");
 * assert.equal(rest.length, 0);
 * ```
 */
export async function readHead(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  options: ReadHeadOptions = {},
): Promise<HeadResult> {
  const maxHeadSize = checkMaxHeadSize(options.maxHeadSize);
  return await scanHead(
    reader,
    EMPTY,
    maxHeadSize,
    options.signal,
    `head is larger than ${maxHeadSize} bytes`,
  );
}

const EMPTY = new Uint8Array(0);

/** `maxHeadSize`, or its default; a `RangeError` if it is not valid. */
export function checkMaxHeadSize(value: number | undefined): number {
  const maxHeadSize = value ?? DEFAULT_MAX_HEAD_SIZE;
  if (!Number.isSafeInteger(maxHeadSize) || maxHeadSize < 4) {
    throw new RangeError(
      `Cannot read HTTP head: maxHeadSize must be an integer of at least 4, got ${maxHeadSize}`,
    );
  }
  return maxHeadSize;
}

/**
 * The most header lines a head may have: `value`, or the default when it is
 * absent. Throws a RangeError unless it is a non-negative integer.
 */
export function checkMaxHeaders(
  value: number | undefined,
  kind: "request" | "response" = "request",
): number {
  const maxHeaders = value ?? DEFAULT_MAX_HEADERS;
  if (!Number.isSafeInteger(maxHeaders) || maxHeaders < 0) {
    throw new RangeError(
      `Cannot parse HTTP ${kind}: maxHeaders must be a non-negative integer, got ${maxHeaders}`,
    );
  }
  return maxHeaders;
}

// Reads a head of at most `limit` bytes whose first bytes may be in `start`
// (bytes read already: what followed an interim response), then in the
// reader's chunks. `tooLarge` says what passing the limit means.
async function scanHead(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  start: Uint8Array,
  limit: number,
  signal: AbortSignal | undefined,
  tooLarge: string,
): Promise<HeadResult> {
  const parts: Uint8Array[] = [];
  let size = 0;
  // How much of CR LF CR LF the last bytes matched: 0, 1 (CR), 2 (CR LF) or
  // 3 (CR LF CR). It carries the overlap from chunk to chunk, so each byte is
  // looked at once.
  let state = 0;
  let value: Uint8Array = start;
  while (true) {
    if (value.length === 0) {
      const result = await readChunk(reader, signal);
      if (result.done) {
        // The cause tells a peer that went away from one that sent bytes
        // that are not HTTP (reconnecting() retries the first only).
        const eof = new Error("The connection ended before the head did");
        eof.name = "UnexpectedEof";
        throw new HandshakeError(
          `Cannot read HTTP head: connection closed after ${size} bytes`,
          { status: 400, cause: eof },
        );
      }
      value = result.value;
    }
    const end = Math.min(value.length, limit - size);
    for (let i = 0; i < end; i++) {
      const byte = value[i];
      if (byte === CR) {
        if (state === 1 || state === 3) throw bareByte("CR", size + i - 1);
        state = state === 2 ? 3 : 1;
      } else if (byte === LF) {
        if (state === 1) {
          state = 2;
        } else if (state === 3) {
          const length = i + 1;
          const head = new Uint8Array(size + length);
          let offset = 0;
          for (const part of parts) {
            head.set(part, offset);
            offset += part.length;
          }
          head.set(value.subarray(0, length), offset);
          return { head, rest: value.slice(length) };
        } else {
          throw bareByte("LF", size + i);
        }
      } else {
        if (state === 1 || state === 3) throw bareByte("CR", size + i - 1);
        state = 0;
      }
    }
    if (value.length > end) {
      throw new HandshakeError(`Cannot read HTTP head: ${tooLarge}`, {
        status: 431,
      });
    }
    // A copy: a chunk may be a view into a larger buffer (each read of a
    // Deno socket's readable is a view into its own 64 KiB buffer), and a head
    // trickled in one byte per read would otherwise keep maxHeadSize of
    // those alive: 1 GiB for the default 16 KiB.
    parts.push(value.slice());
    size += value.length;
    value = EMPTY;
  }
}

function bareByte(name: string, position: number): HandshakeError {
  return new HandshakeError(
    `Cannot read HTTP head: bare ${name} at byte ${position}, lines must end with CRLF`,
    { status: 400 },
  );
}

export function readChunk(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  signal: AbortSignal | undefined,
): Promise<ReadableStreamReadResult<Uint8Array>> {
  if (signal === undefined) return reader.read();
  signal.throwIfAborted();
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    reader.read()
      .then(resolve, reject)
      .finally(() => signal.removeEventListener("abort", onAbort));
  });
}

// ---------------------------------------------------------------------------
// Parsing an HTTP/1.1 head
// ---------------------------------------------------------------------------

/**
 * Options of {@linkcode parseRequestHead} and {@linkcode parseResponseHead}.
 *
 * @example Allowing fewer header lines
 * ```ts
 * import { parseRequestHead, type ParseHeadOptions } from "@rfc6455/websocket/handshake";
 * import assert from "node:assert/strict";
 *
 * const options: ParseHeadOptions = { maxHeaders: 1 };
 * const head = new TextEncoder().encode("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n");
 * assert.throws(() => parseRequestHead(head, options), { status: 431 });
 * ```
 */
export interface ParseHeadOptions {
  /**
   * The largest number of header lines accepted. More fail with a
   * `HandshakeError` of status 431.
   *
   * @default {100}
   */
  maxHeaders?: number;
}

/**
 * A parsed HTTP/1.1 request head.
 *
 * @example Reading the parts of a request
 * ```ts
 * import { parseRequestHead, type RequestHead } from "@rfc6455/websocket/handshake";
 * import assert from "node:assert/strict";
 *
 * const head = new TextEncoder().encode("GET /a?b HTTP/1.1\r\nHost: x\r\n\r\n");
 * const request: RequestHead = parseRequestHead(head);
 * assert.deepEqual(request.rawHeaders, [["Host", "x"]]);
 * ```
 */
export interface RequestHead {
  /** The method, case-sensitive, e.g. `"GET"`. */
  method: string;
  /** The request target as sent, e.g. `"/chat?room=1"`. */
  target: string;
  /** The HTTP version, e.g. `"HTTP/1.1"`. */
  version: string;
  /** The header fields; repeated fields are joined by `Headers`. */
  headers: Headers;
  /** The header fields in their order and case, values trimmed. */
  rawHeaders: [string, string][];
}

/**
 * A parsed HTTP/1.1 response head.
 *
 * @example Reading the parts of a response
 * ```ts
 * import { parseResponseHead, type ResponseHead } from "@rfc6455/websocket/handshake";
 * import assert from "node:assert/strict";
 *
 * const head = new TextEncoder().encode("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
 * const response: ResponseHead = parseResponseHead(head);
 * assert.equal(response.statusText, "Not Found");
 * ```
 */
export interface ResponseHead {
  /** The status code, e.g. `101`. */
  status: number;
  /** The reason phrase, possibly empty, e.g. `"Switching Protocols"`. */
  statusText: string;
  /** The HTTP version, e.g. `"HTTP/1.1"`. */
  version: string;
  /**
   * The header fields; repeated fields are joined by `Headers`, folded
   * lines are unfolded.
   */
  headers: Headers;
  /**
   * The header fields in their order and case, values trimmed and
   * unfolded (each obs-fold is one space).
   */
  rawHeaders: [string, string][];
}

/**
 * Parses an HTTP/1.1 request head, as {@linkcode readHead} returns it,
 * strictly (RFC 9112 §2-§5): every line ends in CRLF and the head ends in
 * an empty line; the request line is `method SP target SP HTTP/x.y`; header
 * names are tokens followed directly by a colon; values have no control
 * characters other than HTAB. Bytes are read as Latin-1 and values are
 * trimmed of spaces and tabs.
 *
 * @param head The bytes of the head, including the final CRLFCRLF.
 * @param options The limit on header lines.
 * @returns The method, target, version and headers.
 * @throws {HandshakeError} With status 400 naming the problem (never a
 * header value), or status 431 if there are more than `maxHeaders` header
 * lines.
 * @throws {RangeError} If `maxHeaders` is not a non-negative integer.
 *
 * @example Parsing a request
 * ```ts
 * import { parseRequestHead } from "@rfc6455/websocket/handshake";
 * import assert from "node:assert/strict";
 *
 * const head = new TextEncoder().encode(
 *   "GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\r\n",
 * );
 * const request = parseRequestHead(head);
 * assert.equal(request.method, "GET");
 * assert.equal(request.headers.get("upgrade"), "websocket");
 * ```
 *
 * @example Refusing obsolete line folding
 * ```ts
 * import { parseRequestHead } from "@rfc6455/websocket/handshake";
 * import assert from "node:assert/strict";
 *
 * const head = new TextEncoder().encode("GET / HTTP/1.1\r\nA: 1\r\n 2\r\n\r\n");
 * assert.throws(() => parseRequestHead(head), { status: 400 });
 * ```
 */
export function parseRequestHead(
  head: Uint8Array,
  options: ParseHeadOptions = {},
): RequestHead {
  const { start, headers, rawHeaders } = parseHead(
    head,
    options,
    true,
    (line) => REQUEST_LINE.exec(line),
  );
  const [, method = "", target = "", version = ""] = start;
  return { method, target, version, headers, rawHeaders };
}

/**
 * Parses an HTTP/1.1 response head, as {@linkcode readHead} returns it,
 * with the same strict rules as {@linkcode parseRequestHead} but one. The
 * status line is `HTTP/x.y SP code SP reason`, where the reason may be
 * empty.
 *
 * The exception is obsolete line folding (obs-fold, a header line starting
 * with a space or a tab): a request with one is refused, but a user agent
 * must accept it in a response (RFC 9112 §5.2), so each fold, with the
 * spaces and tabs around it, becomes one space in the value of the field
 * it continues. A folded line right after the status line continues no
 * field and is refused.
 *
 * Its errors carry no `status`: there was no valid answer to take one from.
 *
 * @param head The bytes of the head, including the final CRLFCRLF.
 * @param options The limit on header lines.
 * @returns The status, reason phrase, version and headers.
 * @throws {HandshakeError} Naming the problem (never a header value).
 * @throws {RangeError} If `maxHeaders` is not a non-negative integer.
 *
 * @example Parsing a response
 * ```ts
 * import { parseResponseHead } from "@rfc6455/websocket/handshake";
 * import assert from "node:assert/strict";
 *
 * const head = new TextEncoder().encode(
 *   "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
 * );
 * const response = parseResponseHead(head);
 * assert.equal(response.status, 101);
 * assert.equal(response.statusText, "Switching Protocols");
 * ```
 *
 * @example Unfolding obsolete line folding
 * ```ts
 * import { parseResponseHead } from "@rfc6455/websocket/handshake";
 * import assert from "node:assert/strict";
 *
 * const head = new TextEncoder().encode(
 *   "HTTP/1.1 403 Forbidden\r\nX-Reason: not\r\n\t  today\r\n\r\n",
 * );
 * const response = parseResponseHead(head);
 * assert.equal(response.headers.get("x-reason"), "not today");
 * assert.deepEqual(response.rawHeaders, [["X-Reason", "not today"]]);
 * ```
 */
export function parseResponseHead(
  head: Uint8Array,
  options: ParseHeadOptions = {},
): ResponseHead {
  const { start, headers, rawHeaders } = parseHead(
    head,
    options,
    false,
    (line) => STATUS_LINE.exec(line),
  );
  const [, version = "", status = "", statusText = ""] = start;
  return { status: Number(status), statusText, version, headers, rawHeaders };
}

/** A final response head, the bytes after it, and how many 1xx preceded it. */
export interface FinalResponse {
  /** The final response: 101, or any status from 200 on. */
  response: ResponseHead;
  /** The bytes that came after its head, as {@linkcode HeadResult.rest}. */
  rest: Uint8Array<ArrayBuffer>;
  /** How many interim responses were skipped before it. */
  interim: number;
}

// Reads the response to a request the way a client must (RFC 9110 §15.2):
// one or more interim 1xx responses may come before the final one, and are
// parsed (strictly, as any head) and skipped. They have no body; 101 is the
// final answer to an upgrade (§15.2.2), so only the other 1xx are interim.
// All the heads together, interim ones included, stay within maxHeadSize (as
// Go's net/http counts them): a server that sends 1xx forever fails with 431
// at that limit (or at the caller's deadline), and only one head is held at
// a time.
export async function readResponseHead(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  options: ReadHeadOptions & ParseHeadOptions = {},
): Promise<FinalResponse> {
  const maxHeadSize = checkMaxHeadSize(options.maxHeadSize);
  let start: Uint8Array = EMPTY;
  let used = 0;
  let interim = 0;
  while (true) {
    const { head, rest } = await scanHead(
      reader,
      start,
      maxHeadSize - used,
      options.signal,
      interim === 0
        ? `head is larger than ${maxHeadSize} bytes`
        : `heads are larger than ${maxHeadSize} bytes together, ${interim} interim responses included`,
    );
    const response = parseResponseHead(head, options);
    if (!isInterim(response.status)) return { response, rest, interim };
    interim++;
    used += head.length;
    start = rest;
  }
}

// RFC 9110 §15.2: 1xx responses are interim, except 101, which ends the
// exchange in HTTP/1.1 (the connection then speaks the new protocol).
function isInterim(status: number): boolean {
  return status >= 100 && status <= 199 && status !== 101;
}

interface ParsedHead {
  start: RegExpExecArray;
  headers: Headers;
  rawHeaders: [string, string][];
}

function parseHead(
  head: Uint8Array,
  options: ParseHeadOptions,
  isRequest: boolean,
  parseStart: (line: string) => RegExpExecArray | null,
): ParsedHead {
  const kind = isRequest ? "request" : "response";
  const maxHeaders = checkMaxHeaders(options.maxHeaders, kind);
  const fail = (detail: string, status = 400) =>
    new HandshakeError(
      `Cannot parse HTTP ${kind}: ${detail}`,
      isRequest ? { status } : {},
    );
  const text = decodeLatin1(head);
  // RFC 9112 §2.1: the head ends with an empty line.
  if (!text.endsWith("\r\n\r\n")) {
    throw fail("head does not end with an empty line");
  }
  // RFC 9112 §2.2: lines end in CRLF; a bare CR or LF is refused, not
  // guessed at, since guessing differently from a proxy enables smuggling.
  const bare = /\r(?!\n)|(?<!\r)\n/.exec(text);
  if (bare !== null) {
    throw fail(
      `bare ${
        bare[0] === "\r" ? "CR" : "LF"
      } at byte ${bare.index}, lines must end with CRLF`,
    );
  }
  const lines = text.slice(0, -4).split("\r\n");
  if (lines.length - 1 > maxHeaders) {
    throw fail(`head has more than ${maxHeaders} header lines`, 431);
  }
  const start = parseStart(lines[0] ?? "");
  if (start === null) {
    throw fail(`invalid ${isRequest ? "request" : "status"} line`);
  }
  // Each field with its lines: the first after the colon, then its folds.
  const fields: [string, string[]][] = [];
  for (let index = 1; index < lines.length; index++) {
    const line = lines[index] ?? "";
    if (line === "") throw fail(`header line ${index} is empty`);
    if (line[0] === " " || line[0] === "\t") {
      // RFC 9112 §5.2: obs-fold (OWS CRLF RWS) continues the previous
      // field. A server may refuse it with 400, and does; a user agent must
      // replace each obs-fold with SP before interpreting the value.
      if (isRequest) {
        throw fail(`header line ${index} uses obsolete line folding`);
      }
      const field = fields.at(-1);
      // RFC 9112 §2.2: whitespace before the first field line is not a
      // fold; it is refused rather than skipped.
      if (field === undefined) {
        throw fail("header line 1 starts with whitespace");
      }
      field[1].push(line);
      continue;
    }
    const colon = line.indexOf(":");
    if (colon === -1) throw fail(`header line ${index} has no colon`);
    const name = line.slice(0, colon);
    // RFC 9112 §5.1: no whitespace between the field name and the colon.
    if (/[ \t]$/.test(name)) {
      throw fail(`header line ${index} has whitespace before the colon`);
    }
    if (!TOKEN.test(name)) {
      throw fail(`header line ${index} has a name that is not a token`);
    }
    fields.push([name, [line.slice(colon + 1)]]);
  }
  const headers = new Headers();
  const rawHeaders: [string, string][] = [];
  for (const [name, parts] of fields) {
    // Each obs-fold, with the whitespace around it, reads as one SP.
    const value = parts.length === 1
      ? trimOws(parts[0]!)
      : parts.map(trimOws).filter((part) => part !== "").join(" ");
    if (hasControl(value)) {
      throw fail(
        `header "${name}" has a control character in its value`,
      );
    }
    headers.append(name, value);
    rawHeaders.push([name, value]);
  }
  return { start, headers, rawHeaders };
}

// ---------------------------------------------------------------------------
// Header fields
// ---------------------------------------------------------------------------

// RFC 9110 §5.5: field values are HTAB, SP, VCHAR and obs-text, so every
// other character below U+0020, and DEL, is refused.
export function hasControl(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if ((code < 0x20 && code !== 0x09) || code === 0x7f) return true;
  }
  return false;
}

// Trims by index, in linear time: a regex like /[ \t]+$/ tries every start
// inside a long run of spaces, quadratic in its length (a 16 KiB head of
// spaces cost a quarter of a second).
export function trimOws(text: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && isOws(text.charCodeAt(start))) start++;
  while (end > start && isOws(text.charCodeAt(end - 1))) end--;
  return start === 0 && end === text.length ? text : text.slice(start, end);
}

function isOws(code: number): boolean {
  return code === 0x20 || code === 0x09;
}

// Whether a comma separated list (RFC 9110 §5.6.1) holds a token,
// case-insensitively. Elements like "websocket/13" do not match.
export function hasToken(list: string, token: string): boolean {
  return list.split(",").some((element) =>
    trimOws(element).toLowerCase() === token
  );
}

export function isHttp11(version: string): boolean {
  return /^HTTP\/1\.[1-9]$/.test(version);
}

// Checks an extra header field against injection (RFC 9110 §5.1, §5.5) and
// returns its value trimmed. Messages name the header, never the value.
export function checkHeader(
  name: string,
  value: string,
  action: string,
): string {
  if (!TOKEN.test(name)) {
    // Only the part before the first bad character: a name that is not one
    // may be a whole "Name: value" line, the value a secret.
    const valid = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]*/.exec(name)![0];
    throw new TypeError(
      `${action}: header name ${
        name === ""
          ? "is empty"
          : `${JSON.stringify(valid + "…")} is not a token`
      }`,
    );
  }
  if (hasControl(value)) {
    throw new TypeError(
      `${action}: value of header "${name}" contains a control character`,
    );
  }
  if (ABOVE_LATIN1.test(value)) {
    throw new TypeError(
      `${action}: value of header "${name}" contains a character above U+00FF`,
    );
  }
  return trimOws(value);
}

export function checkHeaders(
  headers: [string, string][],
  owned: Set<string>,
  action: string,
): [string, string][] {
  return headers.map(([name, value]) => {
    const clean = checkHeader(name, value, action);
    if (owned.has(name.toLowerCase())) {
      throw new TypeError(
        `${action}: header "${name}" is set automatically and cannot be given`,
      );
    }
    return [name, clean];
  });
}

function decodeLatin1(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    text += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return text;
}

export function encodeLatin1(text: string): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

// RFC 9110 §7.2: Host = uri-host [ ":" port ], uri-host from RFC 3986 §3.2.2:
// an IP-literal in brackets, or a reg-name (unreserved, pct-encoded and
// sub-delims). No userinfo, no "/", "?" or "#": those would move the path of
// the URL the server builds from Host and the request target. A comma is
// refused too: it is how repeated Host fields join.
const HOST =
  /^(?:\[[0-9A-Fa-f:.]+\]|(?:[A-Za-z0-9\-._~!$&'()*+;=]|%[0-9A-Fa-f]{2})+)(?::[0-9]*)?$/;

/** Whether `value` is a valid, non-empty `Host` header value. */
export function isValidHost(value: string): boolean {
  return HOST.test(value);
}
