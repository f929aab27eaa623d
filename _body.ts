// Copyright 2026 the @rfc6455/websocket authors. MIT license.
// This module is browser compatible: it uses only the Web platform.
// Private helper of client.ts: the first bytes of the body of a refused
// handshake (or of a proxy's refusal), read with a size limit for the
// HandshakeError; chunked bodies are decoded (RFC 9112 §7.1). Not an entry
// point.

import { readChunk, trimOws } from "./_http.ts";

// The chunk sizes, extensions and CRLFs read along with a chunked body, at
// most, in bytes. Past this the capture ends, so that a server sending
// framing without data (endless zeros or extensions) is not read on until
// the deadline. Node's HTTP parser allows as much for chunk extensions.
const MAX_CHUNK_FRAMING = 16384;

/**
 * Reads the body of a non-101 answer (RFC 9112 §6.3), keeping at most
 * `maxSize` bytes; `rest` holds the bytes that came with the head.
 *
 * - 204 and 304: no body.
 * - `Transfer-Encoding` with `chunked` last: the chunks are decoded until
 *   the last chunk, the limit, the end of the stream or a malformed chunk,
 *   whichever comes first (the trailer section is not read).
 * - Another `Transfer-Encoding`: the body runs to the end of the
 *   connection, so only `rest` is kept: reading on could wait for a server
 *   that keeps the connection open.
 * - `Content-Length`: read up to it.
 * - Neither: only `rest`, for the same reason.
 *
 * The body only gives the error its context, and a refusal's body may never
 * end (a stream, a long poll), so reading stops `maxWait` ms after it began
 * or when `signal` aborts; either way what came is kept, and the caller
 * decides whether an abort is an error. The bytes kept are copies, never
 * views into the reader's chunks.
 */
export async function readBody(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  rest: Uint8Array,
  { status, headers }: { status: number; headers: Headers },
  maxSize: number,
  signal: AbortSignal | undefined,
  maxWait = Infinity,
): Promise<Uint8Array<ArrayBuffer>> {
  // RFC 9112 §6.3 point 1: a 204 or 304 has no body, whatever its headers
  // say (waiting for its Content-Length would wait for the deadline).
  if (status === 204 || status === 304) return new Uint8Array(0);
  // RFC 9112 §6.3 point 3: Transfer-Encoding overrides Content-Length.
  const transferEncoding = headers.get("transfer-encoding");
  if (transferEncoding !== null) {
    if (!isChunked(transferEncoding)) return rest.slice(0, maxSize);
    const decoder = new ChunkedDecoder(maxSize);
    decoder.push(rest);
    await readUntil(
      reader,
      () => decoder.done,
      (bytes) => decoder.push(bytes),
      signal,
      maxWait,
    );
    return decoder.body;
  }
  // RFC 9112 §6.3 point 5: Content-Length = 1*DIGIT; anything else (a list,
  // a sign) is no length at all here.
  const contentLength = headers.get("content-length");
  if (contentLength === null || !/^[0-9]+$/.test(contentLength)) {
    return rest.slice(0, maxSize);
  }
  const body = new BoundedBytes(Math.min(Number(contentLength), maxSize));
  body.push(rest);
  await readUntil(
    reader,
    () => body.full,
    (bytes) => body.push(bytes),
    signal,
    maxWait,
  );
  return body.bytes();
}

// Reads chunks into `take` until `finished()`, the end of the stream,
// `signal` or `maxWait` ms, whichever comes first.
async function readUntil(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  finished: () => boolean,
  take: (bytes: Uint8Array) => void,
  signal: AbortSignal | undefined,
  maxWait: number,
): Promise<void> {
  if (finished() || signal?.aborted) return;
  const stop = new AbortController();
  const abort = () => stop.abort();
  signal?.addEventListener("abort", abort, { once: true });
  const timer = Number.isFinite(maxWait)
    ? setTimeout(abort, maxWait)
    : undefined;
  try {
    while (!finished()) {
      const { done, value } = await readChunk(reader, stop.signal);
      if (done) break;
      take(value);
    }
  } catch (error) {
    if (!stop.signal.aborted) throw error;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", abort);
  }
}

// RFC 9112 §6.1: chunked is the final transfer coding of the list.
function isChunked(transferEncoding: string): boolean {
  const codings = transferEncoding.split(",").map(trimOws).filter((coding) =>
    coding !== ""
  );
  return codings.at(-1)?.toLowerCase() === "chunked";
}

/** A byte buffer that takes at most `max` bytes, growing as they come. */
class BoundedBytes {
  readonly #max: number;
  #buffer = new Uint8Array(0);
  #length = 0;

  constructor(max: number) {
    this.#max = max;
  }

  get full(): boolean {
    return this.#length >= this.#max;
  }

  /** Copies in as much of `bytes` as fits. */
  push(bytes: Uint8Array): void {
    const count = Math.min(bytes.length, this.#max - this.#length);
    if (count <= 0) return;
    const length = this.#length + count;
    if (length > this.#buffer.length) {
      const grown = new Uint8Array(
        Math.min(this.#max, Math.max(length, this.#buffer.length * 2, 4096)),
      );
      grown.set(this.#buffer.subarray(0, this.#length));
      this.#buffer = grown;
    }
    this.#buffer.set(bytes.subarray(0, count), this.#length);
    this.#length = length;
  }

  /** A copy of the bytes taken. */
  bytes(): Uint8Array<ArrayBuffer> {
    return this.#buffer.slice(0, this.#length);
  }
}

const HEX_DIGIT = /^[0-9A-Fa-f]$/;

// Where the decoder is in RFC 9112 §7.1:
//   chunked-body = *chunk last-chunk trailer-section CRLF
//   chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//   chunk-size   = 1*HEXDIG
//   last-chunk   = 1*("0") [ chunk-ext ] CRLF
//   chunk-ext    = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
const STATE = {
  /** The first digit of a chunk size. */
  SizeStart: 0,
  /** More digits, or what follows the size. */
  Size: 1,
  /** Whitespace after the size (BWS), before ";" or CR. */
  AfterSize: 2,
  /** A chunk extension, up to CR. */
  Extension: 3,
  /** The LF ending the size line. */
  SizeLf: 4,
  /** Chunk data. */
  Data: 5,
  /** The CR after chunk data. */
  DataCr: 6,
  /** The LF after chunk data. */
  DataLf: 7,
  /** Finished: the last chunk, the limit, or an error. */
  Done: 8,
} as const;
type State = typeof STATE[keyof typeof STATE];

/**
 * A push decoder of a chunked body (RFC 9112 §7.1) that keeps at most
 * `maxSize` bytes of data. It is done at the last chunk (the trailer
 * section is not needed), once `maxSize` bytes are kept, once more than
 * 16 KiB of framing came, or at the first byte that breaks the grammar
 * (`error` then says which); the data before stays in `body`.
 */
export class ChunkedDecoder {
  readonly #body: BoundedBytes;
  #state: State = STATE.SizeStart;
  // The chunk size being read, then the data left in the chunk.
  #size = 0;
  #framing = 0;
  #error: string | undefined;

  constructor(maxSize: number) {
    this.#body = new BoundedBytes(maxSize);
    if (this.#body.full) this.#state = STATE.Done;
  }

  /** Whether the body is complete, or its capture ended. */
  get done(): boolean {
    return this.#state === STATE.Done;
  }

  /** Why decoding stopped before the last chunk, if it did. */
  get error(): string | undefined {
    return this.#error;
  }

  /** A copy of the data decoded so far. */
  get body(): Uint8Array<ArrayBuffer> {
    return this.#body.bytes();
  }

  /** Decodes the next bytes of the body; bytes after it are ignored. */
  push(bytes: Uint8Array): void {
    let i = 0;
    while (i < bytes.length && this.#state !== STATE.Done) {
      if (this.#state === STATE.Data) {
        const count = Math.min(this.#size, bytes.length - i);
        this.#body.push(bytes.subarray(i, i + count));
        i += count;
        this.#size -= count;
        if (this.#body.full) this.#state = STATE.Done;
        else if (this.#size === 0) this.#state = STATE.DataCr;
        continue;
      }
      if (++this.#framing > MAX_CHUNK_FRAMING) {
        this.#fail(`chunk framing is larger than ${MAX_CHUNK_FRAMING} bytes`);
        break;
      }
      this.#step(bytes[i]!);
      i++;
    }
  }

  #step(byte: number): void {
    const char = String.fromCharCode(byte);
    switch (this.#state) {
      case STATE.SizeStart:
      case STATE.Size:
        if (HEX_DIGIT.test(char)) {
          this.#size = this.#size * 16 + parseInt(char, 16);
          if (this.#size > Number.MAX_SAFE_INTEGER) {
            this.#fail("chunk size is too large");
          } else {
            this.#state = STATE.Size;
          }
        } else if (this.#state === STATE.SizeStart) {
          this.#fail("chunk size is not a hexadecimal number");
        } else {
          this.#afterSize(char);
        }
        return;
      case STATE.AfterSize:
        this.#afterSize(char);
        return;
      case STATE.Extension:
        // chunk-ext holds tokens, "=" and quoted strings: no controls but
        // HTAB (RFC 9110 §5.6.4), and the line ends at CR.
        if (char === "\r") this.#state = STATE.SizeLf;
        else if ((byte < 0x20 && byte !== 0x09) || byte === 0x7f) {
          this.#fail("chunk extension has a control character");
        }
        return;
      case STATE.SizeLf:
        if (char !== "\n") {
          this.#fail("chunk size line does not end with CRLF");
        } else if (this.#size === 0) {
          // The last chunk: the data is complete.
          this.#state = STATE.Done;
        } else {
          this.#state = STATE.Data;
        }
        return;
      case STATE.DataCr:
        if (char === "\r") this.#state = STATE.DataLf;
        else this.#fail("chunk data is longer than its size");
        return;
      case STATE.DataLf:
        if (char === "\n") {
          this.#state = STATE.SizeStart;
          this.#size = 0;
        } else {
          this.#fail("chunk data does not end with CRLF");
        }
        return;
    }
  }

  // After the size: BWS, then ";" and an extension, or CR.
  #afterSize(char: string): void {
    if (char === " " || char === "\t") this.#state = STATE.AfterSize;
    else if (char === ";") this.#state = STATE.Extension;
    else if (char === "\r") this.#state = STATE.SizeLf;
    else if (char === "\n") {
      this.#fail("chunk size line does not end with CRLF");
    } else this.#fail("chunk size is not a hexadecimal number");
  }

  #fail(detail: string): void {
    this.#error = `Cannot decode chunked body: ${detail}`;
    this.#state = STATE.Done;
  }
}
