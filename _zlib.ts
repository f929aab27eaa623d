// Copyright 2026 the @rfc6455/websocket authors. MIT license.
// This module uses the Web platform and `node:zlib` only (no `Deno.*`).
// Private helper of deflate.ts: zlib streams driven through the synchronous
// binding under `node:zlib`, one message at a time in slices of about 2 ms
// separated by timers, with module-wide limits on suspended work and a pool
// of idle streams. Not an entry point.

import zlib from "node:zlib";
import { ProtocolError } from "./errors.ts";

const { Z_NO_FLUSH, Z_SYNC_FLUSH } = zlib.constants;

/** Input bytes handed to zlib in one call, so that every call is short. */
const INPUT_SLICE = 64 * 1024;
/**
 * Output buffer shared by all contexts: every call writes here first, and
 * the bytes are copied out before anything can yield, so sharing is safe.
 */
const SCRATCH = new Uint8Array(64 * 1024);
/** Output chunks of a large message grow up to this size. */
const MAX_CHUNK = 1024 * 1024;
/**
 * Milliseconds of work a message may take at once: one done by then settles
 * without a timer or an extra task.
 */
export const FIRST_SLICE_MS = 1;
/**
 * Milliseconds of work in each later slice of a long message. A 0 ms timer
 * set when a slice starts (see {@linkcode Tick}) fires about 2 ms later on
 * Deno 2.9.6 (measured: 2.1 ms with nothing else to do, the same with
 * `setTimeout(resolve, 1)`), so a slice this long finds it due and waits
 * for nothing; with 1 ms slices a job spent about 40 % of its time waiting.
 */
export const SLICE_MS = 2;
/** Jobs that may be suspended in the middle of a message, module-wide. */
const MAX_SUSPENDED_JOBS = 10;
/** Idle contexts kept per configuration for directions without takeover. */
const MAX_IDLE_CONTEXTS = 4;

/**
 * The synchronous binding under the stream classes of `node:zlib` (Node's
 * `zlib.js` and Deno's port drive it the same way for `deflateRawSync`). The
 * streams' own `write()`/`flush()` do the same work chained by `nextTick`,
 * which on Deno 2.9.6 never lets timers or I/O run while a large message is
 * processed, and cost 2 to 3 times more per small message; driving the binding
 * directly gives exact output sizes, exact limits and our own yield points.
 */
interface ZlibHandle {
  writeSync(
    flush: number,
    input: Uint8Array,
    inputOffset: number,
    inputLength: number,
    output: Uint8Array,
    outputOffset: number,
    outputLength: number,
  ): void;
  reset(): void;
  onerror: (message: string, errno: number) => void;
}

interface ZlibEngine {
  _handle: ZlibHandle | null;
  /** After each call: `[availOut, availIn]`. */
  _writeState: Uint32Array;
  close(): void;
}

/** One zlib deflate or inflate stream. */
export class ZlibContext {
  readonly #engine: ZlibEngine;
  readonly #handle: ZlibHandle;
  readonly #state: Uint32Array;
  /** The zlib error of the last call, if any. */
  error: string | undefined;
  /** Holds data of an earlier message, or ended: reset before reuse. */
  dirty = false;
  /** Set for a pooled context (no context takeover). */
  readonly poolKey: string | undefined;

  constructor(
    inflate: boolean,
    windowBits: number,
    level: number,
    memLevel: number,
    poolKey?: string,
  ) {
    this.poolKey = poolKey;
    // chunkSize 64 (the minimum): the stream's own output buffer is unused.
    const engine =
      (inflate
        ? zlib.createInflateRaw({ windowBits, chunkSize: 64 })
        : zlib.createDeflateRaw({
          windowBits,
          level,
          memLevel,
          chunkSize: 64,
        })) as unknown as ZlibEngine;
    const handle = engine._handle;
    if (
      handle === null || typeof handle.writeSync !== "function" ||
      !(engine._writeState instanceof Uint32Array)
    ) {
      throw new TypeError(
        "Cannot create permessage-deflate context: node:zlib has no synchronous handle on this runtime",
      );
    }
    this.#engine = engine;
    this.#handle = handle;
    this.#state = engine._writeState;
    // Called synchronously from writeSync on a zlib error.
    handle.onerror = (message) => {
      this.error = message;
    };
  }

  /** Runs one zlib call; read `availOut` and `availIn` after it. */
  write(
    flush: number,
    input: Uint8Array,
    inputOffset: number,
    inputLength: number,
    output: Uint8Array,
    outputOffset: number,
    outputLength: number,
  ): void {
    this.#handle.writeSync(
      flush,
      input,
      inputOffset,
      inputLength,
      output,
      outputOffset,
      outputLength,
    );
  }

  get availOut(): number {
    return this.#state[0] ?? 0;
  }

  get availIn(): number {
    return this.#state[1] ?? 0;
  }

  reset(): void {
    this.#handle.reset();
    this.error = undefined;
    this.dirty = false;
  }

  close(): void {
    this.#engine.close();
  }
}

/**
 * Collects the output of one message: one copy per byte past the first 64 KiB,
 * made by `assemble()` in slices like the zlib work.
 */
export class Sink {
  #chunks: Uint8Array<ArrayBuffer>[] = [];
  buffer: Uint8Array<ArrayBuffer> = SCRATCH;
  offset = 0;
  size = 0;
  /** The message being copied together by `assemble()`, and its progress. */
  #result: Uint8Array<ArrayBuffer> | undefined;
  #copied = 0;
  #position = 0;

  commit(length: number): void {
    this.offset += length;
    this.size += length;
    if (this.offset === this.buffer.length) {
      this.#chunks.push(
        this.buffer === SCRATCH ? SCRATCH.slice() : this.buffer,
      );
      this.buffer = new Uint8Array(
        Math.min(MAX_CHUNK, Math.max(SCRATCH.length * 2, this.size)),
      );
      this.offset = 0;
    }
  }

  /** Moves pending bytes out of the shared scratch buffer before a yield. */
  detach(): void {
    if (this.buffer === SCRATCH && this.offset > 0) {
      this.#chunks.push(SCRATCH.slice(0, this.offset));
      this.buffer = new Uint8Array(SCRATCH.length * 2);
      this.offset = 0;
    }
  }

  /**
   * Copies the bytes, minus the last `trim` of them, into one buffer until
   * `deadline` (from `performance.now()`) has passed: copying a 48 MiB
   * message takes 10 to 30 ms. Returns the bytes once all are copied, else
   * `undefined`, to be called again after a yield. Once chunks exist
   * `buffer` is never the scratch buffer, so nothing needs to be detached
   * between calls.
   */
  assemble(
    trim: number,
    deadline: number,
  ): Uint8Array<ArrayBuffer> | undefined {
    const total = Math.max(0, this.size - trim);
    if (this.#chunks.length === 0) {
      return this.buffer.slice(0, total);
    }
    if (this.#result === undefined) {
      this.#chunks.push(this.buffer.subarray(0, this.offset));
      this.#result = new Uint8Array(total);
    }
    const result = this.#result;
    const chunks = this.#chunks;
    while (this.#copied < chunks.length) {
      const chunk = chunks[this.#copied++]!;
      const take = Math.min(chunk.length, total - this.#position);
      result.set(
        take === chunk.length ? chunk : chunk.subarray(0, take),
        this.#position,
      );
      this.#position += take;
      if (this.#copied < chunks.length && performance.now() > deadline) {
        return undefined;
      }
    }
    this.#chunks = [];
    return result;
  }
}

/** The state of one message going through zlib, resumable between slices. */
export interface Job {
  context: ZlibContext;
  inflate: boolean;
  /** zlib is done and `context` was given back: only the copy is left. */
  zlibDone: boolean;
  inputs: Uint8Array[];
  index: number;
  offset: number;
  sink: Sink;
  limit: number;
}

/**
 * Advances `job` until its input is used up or `deadline` (from
 * `performance.now()`) has passed. Returns `true` when the job is done.
 */
export function advance(job: Job, deadline: number): boolean {
  const { context, sink } = job;
  while (job.index < job.inputs.length) {
    const input = job.inputs[job.index]!;
    const end = Math.min(input.length, job.offset + INPUT_SLICE);
    const last = job.index === job.inputs.length - 1 && end === input.length;
    const length = end - job.offset;
    const room = sink.buffer.length - sink.offset;
    context.write(
      job.inflate || last ? Z_SYNC_FLUSH : Z_NO_FLUSH,
      input,
      job.offset,
      length,
      sink.buffer,
      sink.offset,
      room,
    );
    if (context.error !== undefined) {
      const detail = context.error;
      throw job.inflate
        ? new ProtocolError(
          `Cannot decompress message: invalid compressed data (${detail})`,
          1007,
        )
        : new Error(`Cannot compress message: zlib failed (${detail})`);
    }
    const availOut = context.availOut;
    const availIn = context.availIn;
    sink.commit(room - availOut);
    if (sink.size > job.limit) {
      throw new ProtocolError(
        `Cannot decompress message: it inflates to more than ${job.limit} bytes`,
        1009,
      );
    }
    job.offset += length - availIn;
    if (availOut === 0) {
      // More output may be pending: call again with the rest of the slice.
      if (deadline !== Infinity && performance.now() > deadline) return false;
      continue;
    }
    if (availIn > 0) {
      // Input left and room to spare: the DEFLATE stream ended with a
      // BFINAL block (RFC 7692 §7.2.3.4). What follows is ignored and the
      // context must be reset before the next message.
      context.dirty = true;
      return true;
    }
    if (job.offset === input.length) {
      job.index++;
      job.offset = 0;
    }
    if (deadline !== Infinity && performance.now() > deadline) {
      return job.index === job.inputs.length;
    }
  }
  return true;
}

let suspendedJobs = 0;
const slotWaiters: (() => void)[] = [];

export function acquireSlot(): Promise<void> | undefined {
  if (suspendedJobs < MAX_SUSPENDED_JOBS) {
    suspendedJobs++;
    return undefined;
  }
  return new Promise((resolve) => slotWaiters.push(resolve));
}

export function releaseSlot(): void {
  const next = slotWaiters.shift();
  if (next) next(); // the slot passes on
  else suspendedJobs--;
}

/**
 * A 0 ms timer that a long job sets before a slice of work and waits for
 * after it, so that the event loop runs between two slices, timers and
 * socket reads and writes of other connections included. Waiting for a timer
 * is what makes Deno 2.9.6 poll sockets: a job yielding with `setImmediate()`
 * of `node:timers` (or a `MessageChannel` message) let timers run but left a
 * ping to another connection on the same server unanswered until the message
 * was done (a median of 40 to 80 ms against a client sending messages that
 * inflate to 48 MiB, 3 ms with this, the client in another process; one in
 * the same process waits 3-4 slices), and a timer set only after the
 * slice costs 2 ms of waiting per slice. `cancel()` clears the timer and ends
 * the wait at once, so that a closed context leaves no timer behind.
 */
export class Tick {
  /** Resolves when the timer fires or on `cancel()`. */
  readonly done: Promise<void>;
  readonly #resolve: () => void;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor() {
    const { promise, resolve } = Promise.withResolvers<void>();
    this.done = promise;
    this.#resolve = resolve;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      resolve();
    }, 0);
  }

  cancel(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#resolve();
  }
}

/** The calls of one direction of one connection, run one after the other. */
export interface Queue {
  tail: Promise<void>;
  pending: number;
}

export function enqueue(
  queue: Queue,
  run: () => Promise<Uint8Array<ArrayBuffer>>,
): Promise<Uint8Array<ArrayBuffer>> {
  queue.pending++;
  const result = queue.tail.then(run);
  const settle = () => {
    queue.pending--;
  };
  queue.tail = result.then(settle, settle);
  return result;
}

/**
 * Idle contexts for directions without context takeover, shared by all
 * connections: such a context carries nothing from one message to the next,
 * so it is reset and lent to whichever connection needs one. Creating a
 * context costs about 20 µs, more than compressing a small message.
 */
const idleContexts = new Map<string, ZlibContext[]>();

export function borrowContext(
  inflate: boolean,
  windowBits: number,
  level: number,
  memLevel: number,
): ZlibContext {
  const key = `${inflate}:${windowBits}:${level}:${memLevel}`;
  const context = idleContexts.get(key)?.pop() ??
    new ZlibContext(inflate, windowBits, level, memLevel, key);
  if (context.dirty) context.reset();
  return context;
}

export function returnContext(context: ZlibContext): void {
  const key = context.poolKey;
  if (key === undefined) return;
  context.dirty = true;
  let idle = idleContexts.get(key);
  if (idle === undefined) idleContexts.set(key, idle = []);
  if (idle.length < MAX_IDLE_CONTEXTS) idle.push(context);
  else context.close();
}
