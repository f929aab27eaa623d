// Copyright 2026 the @rfc6455/websocket authors. MIT license.
// This module is browser compatible: it uses only the Web platform.

/**
 * The error classes of the module: one per kind of failure a peer or the
 * network can cause. Mistakes of the caller (a bad argument) throw the
 * built-in `TypeError` and `RangeError` instead.
 *
 * @example Telling the failures apart
 * ```ts
 * import { ProtocolError } from "@rfc6455/websocket/errors";
 * import assert from "node:assert/strict";
 *
 * const error = new ProtocolError("Cannot decode frame: reserved opcode 3", 1002);
 * assert.equal(error.name, "ProtocolError");
 * assert.equal(error.closeCode, 1002);
 * ```
 *
 * @module
 */

/**
 * A peer broke RFC 6455 or RFC 7692, or exceeded a limit. `closeCode` is the
 * close code sent (or to be sent) to the peer because of it: 1002 for a
 * protocol error, 1007 for invalid UTF-8 or a corrupt compressed message,
 * 1009 for a message or frame that is too big, 1008 for a policy violation.
 *
 * @example Reading the close code
 * ```ts
 * import { ProtocolError } from "@rfc6455/websocket/errors";
 * import assert from "node:assert/strict";
 *
 * const error = new ProtocolError("Cannot read message: it is 70000000 bytes, limit is 67108864", 1009);
 * assert.equal(error.closeCode, 1009);
 * assert.ok(error instanceof Error);
 * ```
 */
export class ProtocolError extends Error {
  /** The close code that reports this error to the peer. */
  readonly closeCode: number;

  /**
   * Creates a protocol error.
   *
   * @param message What was wrong, in the module's message style.
   * @param closeCode The close code that reports it to the peer.
   * @param options The standard error options (`cause`).
   */
  constructor(message: string, closeCode = 1002, options?: ErrorOptions) {
    super(message, options);
    this.name = "ProtocolError";
    this.closeCode = closeCode;
  }
}

/**
 * The parts of a failed handshake that an {@linkcode HandshakeError} carries.
 *
 * @example Details of a refused upgrade
 * ```ts
 * import { HandshakeError, type HandshakeErrorDetails } from "@rfc6455/websocket/errors";
 * import assert from "node:assert/strict";
 *
 * const details: HandshakeErrorDetails = { status: 426, header: "sec-websocket-version" };
 * const error = new HandshakeError("Cannot upgrade to WebSocket: Sec-WebSocket-Version is not 13", details);
 * assert.equal(error.header, "sec-websocket-version");
 * ```
 */
export interface HandshakeErrorDetails {
  /** The HTTP status of the answer, when there was an answer. */
  status?: number;
  /** The headers of the answer or request that failed, when there were any. */
  headers?: Headers;
  /**
   * The first bytes of the answer's body (bounded), when the peer sent one.
   * Read it with `new TextDecoder().decode(error.body)`.
   */
  body?: Uint8Array<ArrayBuffer>;
  /** The name of the header that was missing or wrong, lower case. */
  header?: string;
  /** The standard error cause. */
  cause?: unknown;
}

/**
 * The opening handshake failed: the server answered with something other
 * than a valid `101 Switching Protocols`, or a client sent an invalid upgrade
 * request. It names the header that was wrong and carries the status,
 * headers and (bounded) body of the answer.
 *
 * @example Inspecting a failed handshake
 * ```ts
 * import { HandshakeError } from "@rfc6455/websocket/errors";
 * import assert from "node:assert/strict";
 *
 * const error = new HandshakeError("Cannot open WebSocket: server answered 403 Forbidden", {
 *   status: 403,
 *   headers: new Headers({ "content-type": "text/plain" }),
 *   body: new TextEncoder().encode("go away"),
 * });
 * assert.equal(error.status, 403);
 * assert.equal(new TextDecoder().decode(error.body), "go away");
 * ```
 */
export class HandshakeError extends Error {
  /** The HTTP status of the answer, when there was an answer. */
  readonly status: number | undefined;
  // Kept out of the error's own properties: logging the error (console,
  // Deno.inspect) must not print a request's Authorization or Cookie.
  readonly #headers: Headers | undefined;
  /** The first bytes of the answer's body, when the peer sent one. */
  readonly body: Uint8Array<ArrayBuffer> | undefined;
  /** The name of the header that was missing or wrong, lower case. */
  readonly header: string | undefined;

  /**
   * Creates a handshake error.
   *
   * @param message What was wrong, in the module's message style.
   * @param details The status, headers, body and header name.
   */
  constructor(message: string, details: HandshakeErrorDetails = {}) {
    super(
      message,
      details.cause === undefined ? undefined : { cause: details.cause },
    );
    this.name = "HandshakeError";
    this.status = details.status;
    this.#headers = details.headers;
    this.body = details.body;
    this.header = details.header;
  }

  /**
   * The headers of the answer (client side) or the request (server side).
   * Not an own property, so logging the error does not print them (a
   * request's `Authorization` or `Cookie`, a response's `Set-Cookie`).
   */
  get headers(): Headers | undefined {
    return this.#headers;
  }
}

/**
 * An operation needed an open connection, but it was closed: `send()` or
 * `ping()` after the close, or a pending `ping()` when the connection ended.
 * `code` and `reason` are the connection's close code and reason.
 *
 * @example After the close
 * ```ts
 * import { ConnectionClosedError } from "@rfc6455/websocket/errors";
 * import assert from "node:assert/strict";
 *
 * const error = new ConnectionClosedError(1000, "bye");
 * assert.equal(error.code, 1000);
 * assert.match(error.message, /closed with code 1000/);
 * ```
 */
export class ConnectionClosedError extends Error {
  /** The close code of the connection (1006 when it closed abnormally). */
  readonly code: number;
  /** The close reason of the connection. */
  readonly reason: string;

  /**
   * Creates a connection-closed error.
   *
   * @param code The close code of the connection.
   * @param reason The close reason of the connection.
   * @param options The standard error options (`cause`).
   */
  constructor(code: number, reason: string, options?: ErrorOptions) {
    super(
      `Cannot use WebSocket: connection closed with code ${code}${
        reason ? ` "${reason}"` : ""
      }`,
      options,
    );
    this.name = "ConnectionClosedError";
    this.code = code;
    this.reason = reason;
  }
}
