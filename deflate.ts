// Copyright 2026 the @rfc6455/websocket authors. MIT license.
// This module uses the Web platform and `node:zlib` only (no `Deno.*`).

/**
 * RFC 7692 permessage-deflate: negotiation of its four parameters
 * ({@linkcode createDeflateOffer}, {@linkcode acceptDeflateOffer},
 * {@linkcode acceptDeflateResponse}) and per-message compression with
 * context takeover ({@linkcode PerMessageDeflate}), built on `node:zlib`.
 *
 * | limit | default |
 * | --- | --- |
 * | inflated size of one message (`maxMessageSize`) | 64 MiB, then `ProtocolError` 1009 |
 * | corrupt compressed data | `ProtocolError` 1007 |
 * | smallest message that is compressed (`threshold`) | 1024 bytes |
 * | zlib level / memLevel | 3 / 8 |
 * | zlib work at once, then in each slice between two turns of the event loop (timers and sockets) | about 1 ms, then about 2 ms |
 * | zlib jobs that may be suspended at once, module-wide | 10 |
 *
 * Memory per connection, with context takeover in both directions and the
 * default 15-bit windows: about 256 KiB for the compressor
 * (`(1 << (windowBits + 2)) + (1 << (memLevel + 9))`) and 39 KiB for the
 * decompressor (`(1 << windowBits)` plus about 7 KiB). A direction without
 * context takeover holds no zlib memory between messages: it borrows a stream
 * from a small module-wide pool for each message.
 *
 * @example Negotiating and compressing
 * ```ts
 * import {
 *   acceptDeflateOffer,
 *   acceptDeflateResponse,
 *   createDeflateOffer,
 *   PerMessageDeflate,
 * } from "@rfc6455/websocket/deflate";
 * import assert from "node:assert/strict";
 *
 * const offer = createDeflateOffer({ clientNoContextTakeover: true });
 * const accepted = acceptDeflateOffer([offer]);
 * assert.ok(accepted);
 * const clientParams = acceptDeflateResponse(accepted.response, {
 *   clientNoContextTakeover: true,
 * });
 * assert.deepEqual(clientParams, accepted.params);
 *
 * const client = new PerMessageDeflate(clientParams, "client");
 * const server = new PerMessageDeflate(accepted.params, "server");
 * const text = new TextEncoder().encode("Hello, Hello, Hello");
 * const compressed = await client.compress(text);
 * assert.deepEqual(await server.decompress(compressed), text);
 * client.close();
 * server.close();
 * ```
 *
 * @module
 */

import { HandshakeError } from "./errors.ts";
import {
  acquireSlot,
  advance,
  borrowContext,
  enqueue,
  FIRST_SLICE_MS,
  type Job,
  type Queue,
  releaseSlot,
  returnContext,
  Sink,
  SLICE_MS,
  Tick,
  ZlibContext,
} from "./_zlib.ts";
import type { ExtensionOffer } from "./handshake.ts";

// Re-exported so that this entry point documents every type it uses.
export type { ExtensionOffer } from "./handshake.ts";

/**
 * How permessage-deflate is offered, accepted and run. The same options serve
 * a client (what it asks for) and a server (what it allows).
 *
 * @example A small window for many connections
 * ```ts
 * import { createDeflateOffer, type PerMessageDeflateOptions } from "@rfc6455/websocket/deflate";
 * import assert from "node:assert/strict";
 *
 * const options: PerMessageDeflateOptions = { clientMaxWindowBits: 10, serverNoContextTakeover: true };
 * assert.equal(createDeflateOffer(options).params.length, 2);
 * ```
 */
export interface PerMessageDeflateOptions {
  /**
   * Ask for (client) or impose (server) `server_no_context_takeover`: the
   * server compresses each message on its own, which costs compression ratio
   * and frees the server's compressor memory between messages.
   *
   * @default {false}
   */
  serverNoContextTakeover?: boolean;
  /**
   * Offer (client) or impose (server) `client_no_context_takeover`: the
   * client compresses each message on its own.
   *
   * @default {false}
   */
  clientNoContextTakeover?: boolean;
  /**
   * The LZ77 window of the server's compressor, in bits (8 to 15). A client
   * sends it as `server_max_window_bits` (left out when `undefined`); a server
   * never uses a larger window and says so in its response when it is below
   * 15.
   *
   * @default {15}
   */
  serverMaxWindowBits?: number;
  /**
   * The LZ77 window of the client's compressor, in bits (8 to 15). A client
   * offers `client_max_window_bits` with this value, or without a value when
   * `undefined`. A server limits the client to it, and declines offers that
   * do not let it do so when it is below 15 (RFC 7692 §7.1.2.2).
   *
   * @default {15}
   */
  clientMaxWindowBits?: number;
  /**
   * The zlib compression level, 0 (store) to 9 (smallest). 3 is about twice
   * as fast as zlib's usual 6 on JSON messages and its output is 1 to 11 %
   * larger (measured on Deno 2.9.6).
   *
   * @default {3}
   */
  level?: number;
  /**
   * The zlib memory level, 1 to 9: the compressor's hash table and buffers
   * take `1 << (memLevel + 9)` bytes.
   *
   * @default {8}
   */
  memLevel?: number;
  /**
   * The size in bytes below which a message is sent uncompressed
   * ({@linkcode PerMessageDeflate.prototype.shouldCompress}).
   *
   * @default {1024}
   */
  threshold?: number;
}

/**
 * The options of a {@linkcode PerMessageDeflate}: the compression settings
 * and the limit on inflated messages.
 *
 * @example A 1 MiB limit on inflated messages
 * ```ts
 * import type { PerMessageDeflateContextOptions } from "@rfc6455/websocket/deflate";
 * import assert from "node:assert/strict";
 *
 * const options: PerMessageDeflateContextOptions = { maxMessageSize: 1 << 20, level: 1 };
 * assert.equal(options.maxMessageSize, 1048576);
 * ```
 */
export interface PerMessageDeflateContextOptions
  extends PerMessageDeflateOptions {
  /**
   * The largest message, in bytes after inflation, that
   * {@linkcode PerMessageDeflate.prototype.decompress} returns; a larger one
   * is refused with a `ProtocolError` whose `closeCode` is 1009.
   *
   * @default {67108864}
   */
  maxMessageSize?: number;
}

/**
 * The negotiated parameters of permessage-deflate (RFC 7692 §7.1).
 *
 * @example The parameters when nothing was restricted
 * ```ts
 * import { acceptDeflateOffer, type DeflateParams } from "@rfc6455/websocket/deflate";
 * import assert from "node:assert/strict";
 *
 * const params: DeflateParams | undefined = acceptDeflateOffer([{ name: "permessage-deflate", params: [] }])?.params;
 * assert.deepEqual(params, {
 *   serverNoContextTakeover: false,
 *   clientNoContextTakeover: false,
 *   serverMaxWindowBits: 15,
 *   clientMaxWindowBits: 15,
 * });
 * ```
 */
export interface DeflateParams {
  /** The server compresses every message with an empty window. */
  serverNoContextTakeover: boolean;
  /** The client compresses every message with an empty window. */
  clientNoContextTakeover: boolean;
  /** The window of the server's compressor in bits, 8 to 15 (15 when not negotiated). */
  serverMaxWindowBits: number;
  /** The window of the client's compressor in bits, 8 to 15 (15 when not negotiated). */
  clientMaxWindowBits: number;
}

/**
 * The answer of {@linkcode acceptDeflateOffer} when it accepts an offer.
 *
 * @example Accepting an offer
 * ```ts
 * import { acceptDeflateOffer, type AcceptedDeflateOffer } from "@rfc6455/websocket/deflate";
 * import assert from "node:assert/strict";
 *
 * const accepted: AcceptedDeflateOffer | undefined = acceptDeflateOffer([
 *   { name: "permessage-deflate", params: [["server_no_context_takeover", true]] },
 * ]);
 * assert.deepEqual(accepted?.response.params, [["server_no_context_takeover", true]]);
 * ```
 */
export interface AcceptedDeflateOffer {
  /** The extension to send back in `Sec-WebSocket-Extensions`. */
  response: ExtensionOffer;
  /** The parameters both sides now use. */
  params: DeflateParams;
}

const EXTENSION_NAME = "permessage-deflate";
const SERVER_NO_CONTEXT_TAKEOVER = "server_no_context_takeover";
const CLIENT_NO_CONTEXT_TAKEOVER = "client_no_context_takeover";
const SERVER_MAX_WINDOW_BITS = "server_max_window_bits";
const CLIENT_MAX_WINDOW_BITS = "client_max_window_bits";
// RFC 7692 §7.1.2.1, §7.1.2.2: a decimal integer 8 to 15, no leading zeros.
const WINDOW_BITS = /^(?:[89]|1[0-5])$/;

const DEFAULT_LEVEL = 3;
const DEFAULT_MEM_LEVEL = 8;
const DEFAULT_THRESHOLD = 1024;
const DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024;

/**
 * Builds the permessage-deflate offer of a client for its
 * `Sec-WebSocket-Extensions` header. It always carries
 * `client_max_window_bits`, without a value unless `clientMaxWindowBits` is
 * set, so that a server may limit the client's window (RFC 7692 §7.1.2.2).
 *
 * @param options What to ask the server for.
 * @returns The offer, parameters in the order of RFC 7692 §7.1.
 * @throws {RangeError} If an option is out of range, by the checks of the
 * {@linkcode PerMessageDeflate} constructor (a window size not an integer
 * from 8 to 15, `level`, `memLevel` or `threshold`, and `maxMessageSize`
 * when the options carry one), so that a client refuses it before it
 * connects.
 *
 * @example Offers with and without options
 * ```ts
 * import { createDeflateOffer } from "@rfc6455/websocket/deflate";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(createDeflateOffer(), {
 *   name: "permessage-deflate",
 *   params: [["client_max_window_bits", true]],
 * });
 * assert.deepEqual(
 *   createDeflateOffer({ serverNoContextTakeover: true, serverMaxWindowBits: 10 }),
 *   {
 *     name: "permessage-deflate",
 *     params: [
 *       ["server_no_context_takeover", true],
 *       ["server_max_window_bits", "10"],
 *       ["client_max_window_bits", true],
 *     ],
 *   },
 * );
 * ```
 */
export function createDeflateOffer(
  options: PerMessageDeflateOptions = {},
): ExtensionOffer {
  checkOptions(options, "create permessage-deflate offer");
  const params: [string, string | true][] = [];
  if (options.serverNoContextTakeover) {
    params.push([SERVER_NO_CONTEXT_TAKEOVER, true]);
  }
  if (options.clientNoContextTakeover) {
    params.push([CLIENT_NO_CONTEXT_TAKEOVER, true]);
  }
  if (options.serverMaxWindowBits !== undefined) {
    params.push([SERVER_MAX_WINDOW_BITS, String(options.serverMaxWindowBits)]);
  }
  params.push([
    CLIENT_MAX_WINDOW_BITS,
    options.clientMaxWindowBits === undefined
      ? true
      : String(options.clientMaxWindowBits),
  ]);
  return { name: EXTENSION_NAME, params };
}

/**
 * Picks, for a server, the first permessage-deflate offer of a client that it
 * can accept, and builds the response. Offers of other extensions are
 * skipped; an offer with an unknown, repeated or invalid parameter is
 * declined, not fatal (RFC 7692 §5, §7). An offer is also declined when
 * `clientMaxWindowBits` is below 15 and the offer does not carry
 * `client_max_window_bits`, since the client could then not be limited.
 *
 * The response echoes `server_no_context_takeover` and
 * `client_no_context_takeover` when offered or configured, sends
 * `server_max_window_bits` when offered or below 15, and
 * `client_max_window_bits` when the client's window ends up below 15.
 *
 * @param offers The parsed `Sec-WebSocket-Extensions` of the request, in order.
 * @param options What the server allows.
 * @returns The response and parameters, or `undefined` to decline.
 * @throws {RangeError} If an option is out of range.
 *
 * @example Taking the first acceptable offer
 * ```ts
 * import { acceptDeflateOffer } from "@rfc6455/websocket/deflate";
 * import assert from "node:assert/strict";
 *
 * const accepted = acceptDeflateOffer([
 *   { name: "permessage-deflate", params: [["server_max_window_bits", "16"]] },
 *   { name: "permessage-deflate", params: [["client_max_window_bits", true]] },
 * ], { clientMaxWindowBits: 10 });
 * assert.deepEqual(accepted?.response, {
 *   name: "permessage-deflate",
 *   params: [["client_max_window_bits", "10"]],
 * });
 * assert.equal(accepted?.params.clientMaxWindowBits, 10);
 * assert.equal(acceptDeflateOffer([{ name: "x-webkit-deflate-frame", params: [] }]), undefined);
 * ```
 */
export function acceptDeflateOffer(
  offers: ExtensionOffer[],
  options: PerMessageDeflateOptions = {},
): AcceptedDeflateOffer | undefined {
  checkOptions(options, "accept permessage-deflate offer");
  for (const offer of offers) {
    if (offer.name.toLowerCase() !== EXTENSION_NAME) continue;
    const offered = parseParams(offer.params, false);
    if (typeof offered === "string") continue; // RFC 7692 §7: decline
    const clientLimit = options.clientMaxWindowBits ?? 15;
    // RFC 7692 §7.1.2.2: without the parameter in the offer the response
    // must not carry it, so the client's window cannot be limited.
    if (offered.clientMaxWindowBits === undefined && clientLimit < 15) {
      continue;
    }
    const params: DeflateParams = {
      serverNoContextTakeover: offered.serverNoContextTakeover ||
        options.serverNoContextTakeover === true,
      clientNoContextTakeover: offered.clientNoContextTakeover ||
        options.clientNoContextTakeover === true,
      serverMaxWindowBits: Math.min(
        offered.serverMaxWindowBits ?? 15,
        options.serverMaxWindowBits ?? 15,
      ),
      clientMaxWindowBits: Math.min(
        typeof offered.clientMaxWindowBits === "number"
          ? offered.clientMaxWindowBits
          : 15,
        clientLimit,
      ),
    };
    const response: [string, string | true][] = [];
    // RFC 7692 §7.1.1.1: an accepted server_no_context_takeover is echoed.
    if (params.serverNoContextTakeover) {
      response.push([SERVER_NO_CONTEXT_TAKEOVER, true]);
    }
    if (params.clientNoContextTakeover) {
      response.push([CLIENT_NO_CONTEXT_TAKEOVER, true]);
    }
    // RFC 7692 §7.1.2.1: an offered server_max_window_bits must be answered.
    if (
      offered.serverMaxWindowBits !== undefined ||
      params.serverMaxWindowBits < 15
    ) {
      response.push([
        SERVER_MAX_WINDOW_BITS,
        String(params.serverMaxWindowBits),
      ]);
    }
    if (params.clientMaxWindowBits < 15) {
      response.push([
        CLIENT_MAX_WINDOW_BITS,
        String(params.clientMaxWindowBits),
      ]);
    }
    return { response: { name: EXTENSION_NAME, params: response }, params };
  }
  return undefined;
}

/**
 * Checks, for a client, the permessage-deflate response of a server against
 * what {@linkcode createDeflateOffer} offered with the same options, and
 * returns the negotiated parameters (RFC 7692 §7).
 *
 * @param response The permessage-deflate extension of the server's response.
 * @param options The options the offer was made with.
 * @returns The parameters both sides now use.
 * @throws {HandshakeError} With `header` `"sec-websocket-extensions"`, if the
 * response has an unknown, repeated or invalid parameter, lacks a parameter
 * the client asked for, or allows the server a larger window than asked for.
 * @throws {RangeError} If an option is out of range.
 *
 * @example Accepting and refusing responses
 * ```ts
 * import { acceptDeflateResponse } from "@rfc6455/websocket/deflate";
 * import assert from "node:assert/strict";
 *
 * const params = acceptDeflateResponse({
 *   name: "permessage-deflate",
 *   params: [["server_no_context_takeover", true], ["client_max_window_bits", "12"]],
 * });
 * assert.deepEqual(params, {
 *   serverNoContextTakeover: true,
 *   clientNoContextTakeover: false,
 *   serverMaxWindowBits: 15,
 *   clientMaxWindowBits: 12,
 * });
 * assert.throws(
 *   () =>
 *     acceptDeflateResponse(
 *       { name: "permessage-deflate", params: [["server_max_window_bits", "15"]] },
 *       { serverMaxWindowBits: 10 },
 *     ),
 *   { name: "HandshakeError", header: "sec-websocket-extensions" },
 * );
 * ```
 */
export function acceptDeflateResponse(
  response: ExtensionOffer,
  options: PerMessageDeflateOptions = {},
): DeflateParams {
  checkOptions(options, "accept permessage-deflate response");
  const fail = (detail: string) =>
    new HandshakeError(
      `Cannot accept permessage-deflate response: ${detail}`,
      { header: "sec-websocket-extensions" },
    );
  if (response.name.toLowerCase() !== EXTENSION_NAME) {
    throw fail(`extension "${response.name}" was not offered`);
  }
  const answered = parseParams(response.params, true);
  if (typeof answered === "string") throw fail(answered);
  // RFC 7692 §7.1.1.1: the server must confirm server_no_context_takeover.
  if (options.serverNoContextTakeover && !answered.serverNoContextTakeover) {
    throw fail(`"${SERVER_NO_CONTEXT_TAKEOVER}" was asked for and is missing`);
  }
  const serverBits = answered.serverMaxWindowBits;
  if (options.serverMaxWindowBits !== undefined) {
    // RFC 7692 §7.1.2.1: the server must answer with at most the value asked.
    if (serverBits === undefined) {
      throw fail(`"${SERVER_MAX_WINDOW_BITS}" was asked for and is missing`);
    }
    if (serverBits > options.serverMaxWindowBits) {
      throw fail(
        `"${SERVER_MAX_WINDOW_BITS}" is "${serverBits}", more than the "${options.serverMaxWindowBits}" asked for`,
      );
    }
  }
  const clientBits = answered.clientMaxWindowBits;
  if (typeof clientBits === "number") {
    // RFC 7692 §7.1.2.2: allowed only when offered. createDeflateOffer always
    // offers it; a value offered is a limit the response cannot raise.
    if (
      options.clientMaxWindowBits !== undefined &&
      clientBits > options.clientMaxWindowBits
    ) {
      throw fail(
        `"${CLIENT_MAX_WINDOW_BITS}" is "${clientBits}", more than the "${options.clientMaxWindowBits}" offered`,
      );
    }
  }
  return {
    serverNoContextTakeover: answered.serverNoContextTakeover,
    clientNoContextTakeover: answered.clientNoContextTakeover ||
      options.clientNoContextTakeover === true,
    serverMaxWindowBits: serverBits ?? 15,
    clientMaxWindowBits: typeof clientBits === "number"
      ? clientBits
      : options.clientMaxWindowBits ?? 15,
  };
}

interface ParsedParams {
  serverNoContextTakeover: boolean;
  clientNoContextTakeover: boolean;
  serverMaxWindowBits: number | undefined;
  /** `true`: offered without a value (allowed in an offer only). */
  clientMaxWindowBits: number | true | undefined;
}

/** Parses the parameters of an offer or response; a string says what is wrong. */
function parseParams(
  params: [string, string | true][],
  isResponse: boolean,
): ParsedParams | string {
  const parsed: ParsedParams = {
    serverNoContextTakeover: false,
    clientNoContextTakeover: false,
    serverMaxWindowBits: undefined,
    clientMaxWindowBits: undefined,
  };
  const seen = new Set<string>();
  for (const [rawName, value] of params) {
    const name = rawName.toLowerCase();
    // RFC 7692 §7: a parameter must not appear twice.
    if (seen.has(name)) return `parameter "${name}" appears twice`;
    seen.add(name);
    switch (name) {
      case SERVER_NO_CONTEXT_TAKEOVER:
      case CLIENT_NO_CONTEXT_TAKEOVER:
        // RFC 7692 §7.1.1: these parameters have no value.
        if (value !== true) return `parameter "${name}" must have no value`;
        if (name === SERVER_NO_CONTEXT_TAKEOVER) {
          parsed.serverNoContextTakeover = true;
        } else {
          parsed.clientNoContextTakeover = true;
        }
        break;
      case SERVER_MAX_WINDOW_BITS:
      case CLIENT_MAX_WINDOW_BITS: {
        // RFC 7692 §7.1.2.2: only client_max_window_bits in an offer may
        // come without a value.
        if (value === true && name === CLIENT_MAX_WINDOW_BITS && !isResponse) {
          parsed.clientMaxWindowBits = true;
          break;
        }
        if (value === true || !WINDOW_BITS.test(value)) {
          return `parameter "${name}" is ${
            value === true ? "without a value" : `"${value}"`
          }, must be an integer from 8 to 15`;
        }
        if (name === SERVER_MAX_WINDOW_BITS) {
          parsed.serverMaxWindowBits = Number(value);
        } else {
          parsed.clientMaxWindowBits = Number(value);
        }
        break;
      }
      default:
        return `parameter "${name}" is unknown`;
    }
  }
  return parsed;
}

function checkOptions(
  options: PerMessageDeflateContextOptions,
  action: string,
): void {
  checkInteger(
    options.serverMaxWindowBits,
    8,
    15,
    "serverMaxWindowBits",
    action,
  );
  checkInteger(
    options.clientMaxWindowBits,
    8,
    15,
    "clientMaxWindowBits",
    action,
  );
  checkInteger(options.level, 0, 9, "level", action);
  checkInteger(options.memLevel, 1, 9, "memLevel", action);
  checkInteger(options.threshold, 0, Infinity, "threshold", action);
  checkInteger(options.maxMessageSize, 0, Infinity, "maxMessageSize", action);
}

function checkInteger(
  value: number | undefined,
  min: number,
  max: number,
  name: string,
  action: string,
): void {
  if (value === undefined) return;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new RangeError(
      `Cannot ${action}: "${name}" is ${value}, must be an integer from ${min}${
        max === Infinity ? " up" : ` to ${max}`
      }`,
    );
  }
}

// --- Per-message compression (RFC 7692 §7.2) ------------------------------

/** RFC 7692 §7.2.1, §7.2.2: the end of a sync flush, removed and re-added. */
const TRAILER = new Uint8Array([0x00, 0x00, 0xff, 0xff]);
/** RFC 7692 §7.2.3.6: an empty message compresses to one empty stored block. */
const EMPTY_MESSAGE = 0x00;

/**
 * The permessage-deflate state of one connection: a compressor for the
 * messages it sends and a decompressor for those it receives, each with the
 * window and context takeover that were negotiated for its direction.
 *
 * Calls are serialized per direction: `compress()` may be called again
 * before earlier calls settle, and its promises settle in call order, each
 * message compressed after the previous one (context takeover needs it); the
 * same holds for `decompress()`. The two directions do not wait for each
 * other.
 *
 * Work runs synchronously on the `node:zlib` binding, at most 64 KiB of input
 * and 1 MiB of output per zlib call. When nothing is queued in its direction, a call
 * starts at once, and if it is done within about 1 ms (every message of a few
 * hundred KiB or less) its promise is already settled when it returns, with no
 * timer or extra task. A longer message needs one of 10 module-wide slots to
 * go on, like the `concurrencyLimit` of Node's `ws` (an 11th long message
 * waits, holding at most 1 ms worth of output), and goes on in slices of about
 * 2 ms, its zlib work and the copy of its output into one buffer alike. Each
 * slice sets a 0 ms timer when it starts and waits for it when it ends, so
 * that the event loop runs between two slices: timers, and the socket reads
 * and writes of other connections (on Deno 2.9.6 a `setImmediate()` yield
 * lets timers run but not sockets). The first 2 ms slice follows the first
 * 1 ms at once, and several long messages take their slices in turn: with
 * `n` of them running, the event loop runs about every `n` times 2 ms.
 *
 * Memory: a direction with context takeover keeps its zlib stream for the
 * life of the connection; the compressor takes about
 * `(1 << (windowBits + 2)) + (1 << (memLevel + 9))` bytes (256 KiB at 15 and
 * 8, of which about 220 KiB are touched after one small message; 130 KiB at
 * 9 and 8), the decompressor `1 << windowBits` bytes plus about 7 KiB (39 KiB
 * at 15, its window allocated on first use). A direction without context
 * takeover holds no zlib memory between messages: it borrows a reset stream
 * from a module-wide pool (at most 4 idle streams per configuration) and
 * returns it when the message is done. A message being decompressed holds at
 * most `maxMessageSize` bytes plus one chunk (up to 1 MiB) of output.
 *
 * Window of 8 bits: zlib refuses `windowBits` 8 for raw deflate (since
 * 1.2.9), so the compressor uses 9 when 8 was negotiated. That is safe: zlib
 * never emits a match farther than `windowSize - 262` bytes back
 * (`MAX_DIST`: 250 bytes for a 512-byte window), within the peer's 256-byte
 * window, across messages too. The tests check it by decoding the output.
 * The decompressor uses the negotiated window as is, 8 included.
 *
 * @example Two messages with context takeover (RFC 7692 §7.2.3.2)
 * ```ts
 * import { PerMessageDeflate } from "@rfc6455/websocket/deflate";
 * import assert from "node:assert/strict";
 *
 * const params = {
 *   serverNoContextTakeover: false,
 *   clientNoContextTakeover: false,
 *   serverMaxWindowBits: 15,
 *   clientMaxWindowBits: 15,
 * };
 * const server = new PerMessageDeflate(params, "server");
 * const hello = new TextEncoder().encode("Hello");
 * const [first, second] = await Promise.all([
 *   server.compress(hello),
 *   server.compress(hello),
 * ]);
 * assert.deepEqual(first, new Uint8Array([0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]));
 * assert.deepEqual(second, new Uint8Array([0xf2, 0x00, 0x11, 0x00, 0x00]));
 * server.close();
 * ```
 */
export class PerMessageDeflate {
  readonly #params: DeflateParams;
  readonly #role: "client" | "server";
  readonly #level: number;
  readonly #memLevel: number;
  readonly #threshold: number;
  readonly #maxMessageSize: number;
  /** Window bits of our compressor: the peer's limit for our direction. */
  readonly #deflateBits: number;
  readonly #inflateBits: number;
  readonly #deflateTakeover: boolean;
  readonly #inflateTakeover: boolean;
  #deflater: ZlibContext | undefined;
  #inflater: ZlibContext | undefined;
  /** One queue per direction: `[compress, decompress]`. */
  readonly #queues: [Queue, Queue] = [
    { tail: Promise.resolve(), pending: 0 },
    { tail: Promise.resolve(), pending: 0 },
  ];
  /** The timers of the long jobs waiting between two slices, at most one per direction. */
  readonly #ticks = new Set<Tick>();
  #closed = false;

  /**
   * Creates the compression state of one connection.
   *
   * @param params The negotiated parameters, from
   * {@linkcode acceptDeflateOffer} or {@linkcode acceptDeflateResponse}.
   * @param role Which side of the connection this is.
   * @param options Compression level, memory level, threshold and the limit
   * on inflated messages.
   * @throws {RangeError} If a parameter or an option is out of range.
   */
  constructor(
    params: DeflateParams,
    role: "client" | "server",
    options: PerMessageDeflateContextOptions = {},
  ) {
    const action = "create permessage-deflate context";
    checkInteger(
      params.serverMaxWindowBits,
      8,
      15,
      "serverMaxWindowBits",
      action,
    );
    checkInteger(
      params.clientMaxWindowBits,
      8,
      15,
      "clientMaxWindowBits",
      action,
    );
    checkOptions(options, action);
    if (role !== "client" && role !== "server") {
      throw new TypeError(`Cannot ${action}: role is "${role}"`);
    }
    this.#params = { ...params };
    this.#role = role;
    this.#level = options.level ?? DEFAULT_LEVEL;
    this.#memLevel = options.memLevel ?? DEFAULT_MEM_LEVEL;
    this.#threshold = options.threshold ?? DEFAULT_THRESHOLD;
    this.#maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    const server = role === "server";
    this.#deflateBits = server
      ? params.serverMaxWindowBits
      : params.clientMaxWindowBits;
    this.#inflateBits = server
      ? params.clientMaxWindowBits
      : params.serverMaxWindowBits;
    this.#deflateTakeover = server
      ? !params.serverNoContextTakeover
      : !params.clientNoContextTakeover;
    this.#inflateTakeover = server
      ? !params.clientNoContextTakeover
      : !params.serverNoContextTakeover;
  }

  /**
   * The negotiated parameters.
   *
   * @returns A copy of the parameters given to the constructor.
   *
   * @example Reading the parameters
   * ```ts
   * import { PerMessageDeflate } from "@rfc6455/websocket/deflate";
   * import assert from "node:assert/strict";
   *
   * const params = {
   *   serverNoContextTakeover: true,
   *   clientNoContextTakeover: false,
   *   serverMaxWindowBits: 10,
   *   clientMaxWindowBits: 15,
   * };
   * const deflate = new PerMessageDeflate(params, "client");
   * assert.deepEqual(deflate.params, params);
   * deflate.close();
   * ```
   */
  get params(): DeflateParams {
    return { ...this.#params };
  }

  /**
   * Whether a message of `size` bytes should be compressed: `size` is at
   * least the `threshold` option (1024 by default).
   *
   * @param size The size of the message in bytes.
   * @returns `true` to compress it, `false` to send it as is.
   *
   * @example The default threshold
   * ```ts
   * import { PerMessageDeflate } from "@rfc6455/websocket/deflate";
   * import assert from "node:assert/strict";
   *
   * const deflate = new PerMessageDeflate({
   *   serverNoContextTakeover: false,
   *   clientNoContextTakeover: false,
   *   serverMaxWindowBits: 15,
   *   clientMaxWindowBits: 15,
   * }, "server");
   * assert.equal(deflate.shouldCompress(1023), false);
   * assert.equal(deflate.shouldCompress(1024), true);
   * deflate.close();
   * ```
   */
  shouldCompress(size: number): boolean {
    return size >= this.#threshold;
  }

  /**
   * Compresses one whole message: raw DEFLATE ended by a sync flush whose
   * last 4 bytes (`00 00 ff ff`) are removed (RFC 7692 §7.2.1). The window
   * is kept for the next message unless this side has no context takeover.
   *
   * @param data The message payload; it is not modified.
   * @returns The compressed payload, for frames with RSV1 set.
   * @throws {TypeError} If the context is closed.
   *
   * @example Compressing "Hello" (RFC 7692 §7.2.3.1)
   * ```ts
   * import { PerMessageDeflate } from "@rfc6455/websocket/deflate";
   * import assert from "node:assert/strict";
   *
   * const deflate = new PerMessageDeflate({
   *   serverNoContextTakeover: false,
   *   clientNoContextTakeover: false,
   *   serverMaxWindowBits: 15,
   *   clientMaxWindowBits: 15,
   * }, "client");
   * const compressed = await deflate.compress(new TextEncoder().encode("Hello"));
   * assert.deepEqual(compressed, new Uint8Array([0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]));
   * deflate.close();
   * ```
   */
  compress(data: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
    return this.#submit(false, data);
  }

  /**
   * Decompresses one whole message, the payloads of its frames
   * concatenated: appends `00 00 ff ff` and inflates (RFC 7692 §7.2.2).
   * Inflation stops as soon as the output passes `maxMessageSize`, so a
   * small message that would inflate to gigabytes costs no more than the
   * limit. The window is kept for the next message unless the peer has no
   * context takeover.
   *
   * @param data The compressed payload; it is not modified.
   * @returns The message payload.
   * @throws {ProtocolError} With `closeCode` 1009 if the message inflates to
   * more than `maxMessageSize` bytes, 1007 if the data is not valid DEFLATE.
   * After either the connection should be failed with that code.
   * @throws {TypeError} If the context is closed.
   *
   * @example Decompressing a fragmented message (RFC 7692 §7.2.3.1)
   * ```ts
   * import { PerMessageDeflate } from "@rfc6455/websocket/deflate";
   * import assert from "node:assert/strict";
   *
   * const deflate = new PerMessageDeflate({
   *   serverNoContextTakeover: false,
   *   clientNoContextTakeover: false,
   *   serverMaxWindowBits: 15,
   *   clientMaxWindowBits: 15,
   * }, "server");
   * const frames = [[0xf2, 0x48, 0xcd], [0xc9, 0xc9, 0x07, 0x00]];
   * const payload = new Uint8Array(frames.flat());
   * const message = await deflate.decompress(payload);
   * assert.equal(new TextDecoder().decode(message), "Hello");
   * deflate.close();
   * ```
   */
  decompress(data: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
    return this.#submit(true, data);
  }

  /**
   * Frees both zlib streams and clears the timer of a long message between
   * two slices. Pending and later calls reject with a `TypeError`. Calling it
   * again does nothing.
   *
   * @example Closing
   * ```ts
   * import { PerMessageDeflate } from "@rfc6455/websocket/deflate";
   * import assert from "node:assert/strict";
   *
   * const deflate = new PerMessageDeflate({
   *   serverNoContextTakeover: false,
   *   clientNoContextTakeover: false,
   *   serverMaxWindowBits: 15,
   *   clientMaxWindowBits: 15,
   * }, "server");
   * deflate.close();
   * await assert.rejects(deflate.compress(new Uint8Array(10)), TypeError);
   * ```
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // A job waiting between two slices goes on at once, and fails.
    for (const tick of this.#ticks) tick.cancel();
    this.#ticks.clear();
    this.#deflater?.close();
    this.#inflater?.close();
    this.#deflater = undefined;
    this.#inflater = undefined;
  }

  #submit(
    inflate: boolean,
    data: Uint8Array,
  ): Promise<Uint8Array<ArrayBuffer>> {
    const queue = this.#queues[inflate ? 1 : 0];
    if (queue.pending === 0) {
      // Nothing queued: start now, and finish now unless it takes long.
      let step: Uint8Array<ArrayBuffer> | Job;
      try {
        step = this.#begin(inflate, data);
      } catch (error) {
        return Promise.reject(error);
      }
      if (step instanceof Uint8Array) return Promise.resolve(step);
      const job = step;
      return enqueue(queue, () => this.#continue(job));
    }
    return enqueue(queue, () => {
      const step = this.#begin(inflate, data);
      return step instanceof Uint8Array
        ? Promise.resolve(step)
        : this.#continue(step);
    });
  }

  /** Runs the first slice of a message: its result, or the job to go on with. */
  #begin(inflate: boolean, data: Uint8Array): Uint8Array<ArrayBuffer> | Job {
    this.#checkOpen(inflate);
    if (data.length === 0) {
      // Nothing to inflate: an empty payload would leave zlib inside a stored
      // block header. An empty message deflates to one byte (§7.2.3.6).
      return inflate ? new Uint8Array(0) : new Uint8Array([EMPTY_MESSAGE]);
    }
    let job: Job | undefined;
    try {
      job = this.#start(inflate, data);
      return this.#step(job, performance.now() + FIRST_SLICE_MS) ?? job;
    } catch (error) {
      if (job) this.#fail(job);
      throw error;
    }
  }

  /**
   * Runs the rest of a long job in slices, holding a module-wide slot. Each
   * slice sets a timer first and waits for it after, so that the event loop,
   * sockets included, runs between two slices (see `Tick`).
   */
  async #continue(job: Job): Promise<Uint8Array<ArrayBuffer>> {
    await acquireSlot();
    let tick: Tick | undefined;
    try {
      while (true) {
        this.#checkOpen(job.inflate);
        tick = new Tick();
        this.#ticks.add(tick);
        const result = this.#step(job, performance.now() + SLICE_MS);
        if (result !== undefined) return result;
        await tick.done;
        this.#ticks.delete(tick);
      }
    } catch (error) {
      this.#fail(job);
      throw error;
    } finally {
      if (tick !== undefined) {
        tick.cancel();
        this.#ticks.delete(tick);
      }
      releaseSlot();
    }
  }

  #checkOpen(inflate: boolean): void {
    if (this.#closed) {
      throw new TypeError(
        `Cannot ${
          inflate ? "decompress" : "compress"
        } message: permessage-deflate context is closed`,
      );
    }
  }

  #start(inflate: boolean, data: Uint8Array): Job {
    // See the class doc: zlib cannot deflate with an 8-bit window.
    const bits = inflate ? this.#inflateBits : Math.max(9, this.#deflateBits);
    const level = inflate ? 0 : this.#level;
    const memLevel = inflate ? 0 : this.#memLevel;
    let context: ZlibContext;
    if (!(inflate ? this.#inflateTakeover : this.#deflateTakeover)) {
      context = borrowContext(inflate, bits, level, memLevel);
    } else {
      context = (inflate ? this.#inflater : this.#deflater) ??
        new ZlibContext(inflate, bits, level, memLevel);
      if (inflate) this.#inflater = context;
      else this.#deflater = context;
      if (context.dirty) context.reset();
    }
    return {
      context,
      inflate,
      zlibDone: false,
      inputs: inflate ? [data, TRAILER] : [data],
      index: 0,
      offset: 0,
      sink: new Sink(),
      limit: inflate ? this.#maxMessageSize : Infinity,
    };
  }

  /**
   * Runs one slice of `job` until `deadline`: zlib, then the copy of the
   * output into one buffer. Returns the result when done, else `undefined`.
   */
  #step(job: Job, deadline: number): Uint8Array<ArrayBuffer> | undefined {
    if (!job.zlibDone) {
      if (!advance(job, deadline)) {
        // Other connections use the scratch buffer before this job resumes.
        job.sink.detach();
        return undefined;
      }
      job.zlibDone = true;
      returnContext(job.context);
    }
    // The compressor's output ends with the sync flush's 00 00 ff ff.
    return job.sink.assemble(job.inflate ? 0 : TRAILER.length, deadline);
  }

  /** Drops the context of a failed job: its state is unknown. */
  #fail(job: Job): void {
    // Given back already (maybe to the pool): its state is known.
    if (job.zlibDone) return;
    job.context.close();
    if (job.context === this.#inflater) this.#inflater = undefined;
    if (job.context === this.#deflater) this.#deflater = undefined;
  }
}
