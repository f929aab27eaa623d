// Copyright 2026 the @rfc6455/websocket authors. MIT license.
// This module is browser compatible: it uses the Web platform only, and does
// I/O only through the transport it is given.
// Private helper of connection.ts: the send path of one connection. Frames
// are encoded into batch buffers and written by one pump, replies to the
// messages of one read together, with the queue's size reported for
// backpressure. Not an entry point.

import { encodeFrameInto, type Frame, frameSize } from "./frame.ts";
import { giveSlab, isSlab, SLAB_SIZE, takeSlab } from "./_simd.ts";

/** What the writer needs of the transport of {@linkcode FrameWriter}. */
export interface WriterTransport {
  writable: WritableStream<Uint8Array>;
  write?(data: Uint8Array): Promise<number>;
  close?(): void;
}

/** What the writer asks of its connection. */
export interface WriterHooks {
  /** The masking key of the next frame (clients), or `undefined` (servers). */
  mask: (() => Uint8Array) | undefined;
  /** Whether the connection is open (writes may then wait for replies). */
  isOpen(): boolean;
  /** Whether received messages wait to be consumed. */
  hasUnread(): boolean;
  /** A write failed: the transport is broken. */
  onError(error: unknown): void;
}

// Frames are encoded straight into a shared batch buffer, written with one
// write: one of BATCH_SIZE bytes for frames up to SMALL_FRAME bytes, one of
// LARGE_BATCH_SIZE bytes (several 64 KiB frames) for frames up to
// BATCH_FRAME_LIMIT; a larger frame gets a buffer of its own. Buffers the
// transport's own write() is done with are kept for the next frames (up to
// MAX_SPARES of them, each of at most MAX_SPARE bytes). A client's batches
// are slabs of the SIMD pool of _simd.ts, which masks them faster:
// taken when a batch starts, given back once its write is settled, or when
// the writer stops and they will never be written.
const SMALL_FRAME = 16 * 1024;
const BATCH_SIZE = 64 * 1024;
const BATCH_FRAME_LIMIT = 64 * 1024 + 14;
const LARGE_BATCH_SIZE = SLAB_SIZE;
const MAX_SPARE = 256 * 1024 + 16;
const MAX_SPARES = 2;

// Runs a callback on the next task: setImmediate where the runtime has it
// (Deno, Node: about 5x cheaper than setTimeout(0) in Deno 2.9.6, and the
// pump defers every write batch), setTimeout(0) elsewhere (browsers).
const immediate = globalThis as {
  setImmediate?: (callback: () => void) => unknown;
  clearImmediate?: (handle: unknown) => void;
};
const nextTask: (callback: () => void) => unknown =
  immediate.setImmediate?.bind(globalThis) ??
    ((callback) => setTimeout(callback, 0));
const cancelTask: (handle: unknown) => void =
  immediate.clearImmediate?.bind(globalThis) ??
    ((handle) => clearTimeout(handle as number));

// The frames of enqueueEncoded() that other writers write too: never a
// spare.
const shared = new WeakSet<Uint8Array>();

/** A promise that is already resolved, shared. */
export const RESOLVED: Promise<void> = Promise.resolve();

// §5.3: a fresh, unpredictable key for every frame; drawn from the CSPRNG in
// blocks to keep the cost per frame small.
const maskPool = new Uint8Array(4096);
let maskPoolOffset = maskPool.length;

/** A masking key from the CSPRNG (RFC 6455 §5.3), valid until the next call. */
export function randomMask(): Uint8Array {
  if (maskPoolOffset === maskPool.length) {
    crypto.getRandomValues(maskPool);
    maskPoolOffset = 0;
  }
  // A view is enough: the encoder copies the key into the frame at once.
  const mask = maskPool.subarray(maskPoolOffset, maskPoolOffset + 4);
  maskPoolOffset += 4;
  return mask;
}

/**
 * The send side of a connection: a queue of encoded frames, the pump that
 * writes them, the pong owed to the peer, and the waiters for the queue to
 * drain below its high-water mark.
 */
export class FrameWriter {
  readonly #transport: WriterTransport;
  readonly #hooks: WriterHooks;
  readonly #highWaterMark: number;
  #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  #batch: Uint8Array<ArrayBuffer> | undefined;
  #batchLength = 0;
  #spares: Uint8Array<ArrayBuffer>[] = [];
  // The pump: the buffers it writes one after the other (`#writing`, from
  // `#index` on; `#offset` bytes of the one at `#index` are written), and
  // the waiters for it to stop.
  #pumpActive = false;
  #writing: Uint8Array[] = [];
  #index = 0;
  #offset = 0;
  #idle: PromiseWithResolvers<void> | undefined;
  #replying = false;
  #pumpTimer: unknown;
  #pong: Uint8Array | undefined;
  #writer: WritableStreamDefaultWriter<Uint8Array> | undefined;
  // What every caller of drained() waits for, until the queue drains.
  #drain: PromiseWithResolvers<void> | undefined;
  /** Set by `stop()`: the error of every later `drained()`. */
  #stopped: { error: unknown } | undefined;

  constructor(
    transport: WriterTransport,
    highWaterMark: number,
    hooks: WriterHooks,
  ) {
    this.#transport = transport;
    this.#highWaterMark = highWaterMark;
    this.#hooks = hooks;
  }

  /** Bytes queued and not yet handed to the transport. */
  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  /** Encodes one frame into the queue and starts the pump. */
  enqueue(opcode: number, payload: Uint8Array, rsv1: boolean): void {
    const frame: Frame = {
      fin: true,
      rsv1,
      rsv2: false,
      rsv3: false,
      opcode,
      payload,
    };
    const mask = this.#hooks.mask;
    if (mask !== undefined) frame.mask = mask();
    const size = frameSize(payload.length, frame.mask !== undefined);
    if (size <= BATCH_FRAME_LIMIT) {
      encodeFrameInto(frame, this.#batchFor(size), this.#batchLength);
      this.#batchLength += size;
    } else {
      this.#sealBatch();
      const buffer = this.#takeBuffer(size);
      encodeFrameInto(frame, buffer, 0);
      this.#queue.push(buffer.subarray(0, size));
    }
    this.#queuedBytes += size;
    this.start();
  }

  /**
   * Queues one frame encoded already (unmasked: a server's), whose bytes
   * must not change: a broadcast's, shared by the writers of many
   * connections. A frame that fits a batch is copied into it (it is written
   * with its neighbours); a larger one is queued as it is when the
   * transport's own write() takes it, and is never reused as a spare.
   */
  enqueueEncoded(frame: Uint8Array): void {
    const size = frame.length;
    if (size <= BATCH_FRAME_LIMIT) {
      this.#batchFor(size).set(frame, this.#batchLength);
      this.#batchLength += size;
    } else {
      this.#sealBatch();
      if (this.#transport.write !== undefined) {
        shared.add(frame);
        this.#queue.push(frame);
      } else {
        // A chunk handed to a WritableStream belongs to its reader.
        this.#queue.push(frame.slice());
      }
    }
    this.#queuedBytes += size;
    this.start();
  }

  /**
   * Owes the peer a pong with `payload` (which must not change): it goes
   * before the frames queued so far. One pong is owed at most: a newer one
   * replaces a pong not yet written (RFC 6455 §5.5.3).
   */
  pong(payload: Uint8Array): void {
    this.#pong = payload;
    this.start();
  }

  /**
   * Tells the writer that a read brought several messages: their replies are
   * likely to follow, from other promise chains, and are written together.
   */
  expectReplies(): void {
    this.#replying = true;
  }

  /**
   * Resolves at once while the queue is at most the high-water mark, else
   * when it drains to it. Rejects after `stop()`.
   */
  drained(): Promise<void> {
    if (this.#queuedBytes <= this.#highWaterMark) return RESOLVED;
    if (this.#stopped !== undefined) {
      return handled(Promise.reject(this.#stopped.error));
    }
    // Marked handled only when it is rejected (stop()): a sender that does
    // not await it must not crash the process then.
    this.#drain ??= Promise.withResolvers<void>();
    return this.#drain.promise;
  }

  /** Starts writing, at once or (replies expected) on the next task. */
  start(): void {
    if (this.#pumpActive || this.#stopped !== undefined) return;
    if (
      (this.#replying || this.#hooks.hasUnread()) && this.#hooks.isOpen() &&
      this.#queuedBytes <= this.#highWaterMark
    ) {
      // Received messages wait to be consumed, or a read just brought
      // several: their consumer is likely to send more (echoes, replies, often
      // from another promise chain than the one reading). Write them together
      // on the next task. A lone message read gets its reply written at once
      // (request/response latency), and so does a sender over the mark.
      this.#pumpTimer ??= nextTask(this.#onPumpTimer);
      return;
    }
    this.startNow();
  }

  readonly #onPumpTimer = (): void => {
    this.#pumpTimer = undefined;
    this.#replying = false;
    this.startNow();
  };

  /** Starts writing what is queued, now. */
  startNow(): void {
    if (this.#pumpTimer !== undefined) {
      cancelTask(this.#pumpTimer);
      this.#pumpTimer = undefined;
    }
    if (
      this.#pumpActive || this.#stopped !== undefined || !this.#hasOutput()
    ) {
      return;
    }
    this.#pumpActive = true;
    this.#pump();
  }

  /** Resolves when everything queued so far was written (or the pump died). */
  async flush(): Promise<void> {
    this.startNow();
    while (this.#pumpActive) await this.#pumpStopped();
  }

  /**
   * Stops for good: no more writes start, and the waiters of `drained()`
   * (now and later) reject with `error`. A write under way goes on.
   */
  stop(error: unknown): void {
    if (this.#pumpTimer !== undefined) {
      cancelTask(this.#pumpTimer);
      this.#pumpTimer = undefined;
    }
    this.#stopped ??= { error };
    // What is queued will never be written: its slabs go back to the pool
    // (the pump gives back those of the writes it has under way), and a
    // frame enqueued after this goes to a buffer of its own, never into a
    // slab that the pool may have lent to another connection meanwhile.
    if (this.#batch !== undefined) giveSlab(this.#batch);
    for (const bytes of this.#queue) giveSlab(bytes);
    this.#batch = undefined;
    this.#batchLength = 0;
    this.#queue = [];
    const drain = this.#drain;
    this.#drain = undefined;
    if (drain !== undefined) {
      handled(drain.promise);
      drain.reject(error);
    }
  }

  /**
   * Ends the writable stream of a transport without `close()`: closes it,
   * or aborts it when a write is still pending (the peer may never read it:
   * a close would queue behind that write forever).
   */
  closeStream(): void {
    const writer = this.#writer ?? tryGetWriter(this.#transport.writable);
    if (!this.#pumpActive) writer?.close().catch(() => {});
    else writer?.abort().catch(() => {});
  }

  /**
   * Resolves when no write is pending, after the transport was closed, and
   * releases the stream. A write into a stream that nobody reads can pend
   * forever, so it is abandoned (`closeStream()` aborted the stream).
   */
  async settle(): Promise<void> {
    // The pump reports its errors through onError.
    if (this.#transport.close !== undefined) await this.#pumpStopped();
    if (this.#writer !== undefined) {
      try {
        this.#writer.releaseLock();
      } catch {
        // Released already.
      }
    }
  }

  #takeBuffer(size: number): Uint8Array<ArrayBuffer> {
    if (
      size <= SLAB_SIZE && this.#hooks.mask !== undefined &&
      this.#transport.write !== undefined && this.#stopped === undefined
    ) {
      // A client's batch: masked with SIMD in a slab (in A/B runs against
      // an array: 8% more 1 KiB messages per CPU-second, and 1-7 µs less
      // user-space CPU per 64 KiB message). Only the transport's own write()
      // sees it (never a stream's reader), and it goes back to the pool once
      // written.
      const slab = takeSlab();
      if (slab !== undefined) return slab;
    }
    const spares = this.#spares;
    for (let i = spares.length - 1; i >= 0; i--) {
      const spare = spares[i]!;
      if (spare.length >= size) {
        spares[i] = spares[spares.length - 1]!;
        spares.pop();
        return spare;
      }
    }
    return new Uint8Array(Math.max(size, BATCH_SIZE));
  }

  // The batch with room for a frame of `size` bytes (at most
  // BATCH_FRAME_LIMIT) at #batchLength: a full one is sealed for a new one.
  #batchFor(size: number): Uint8Array<ArrayBuffer> {
    if (
      this.#batch === undefined ||
      this.#batchLength + size > this.#batch.length
    ) {
      this.#sealBatch();
      this.#batch = this.#takeBuffer(
        size <= SMALL_FRAME ? BATCH_SIZE : LARGE_BATCH_SIZE,
      );
    }
    return this.#batch;
  }

  #sealBatch(): void {
    if (this.#batch !== undefined && this.#batchLength > 0) {
      this.#queue.push(this.#batch.subarray(0, this.#batchLength));
      this.#batch = undefined;
      this.#batchLength = 0;
    }
  }

  #hasOutput(): boolean {
    return this.#queue.length > 0 || this.#batchLength > 0 ||
      this.#pong !== undefined;
  }

  // The pump: writes the queue, buffer after buffer, one write at a time,
  // until the queue is empty or the writer stops (a batch under way is
  // written to its end). A loop of callbacks, not an async function: a
  // sender of large messages starts the pump for every message, and an
  // async run costs a generator and its promises each time. Whatever throws
  // in it (a transport's write(), the pong's encoding) fails the writer as a
  // failed write does, and the pump ends.
  #pump(): void {
    try {
      this.#next();
    } catch (error) {
      this.#onWriteError(error);
    }
  }

  // Starts the next write (the rest of a buffer that a write took only part
  // of, the next buffer, the next batch), or ends the pump.
  #next(): void {
    if (this.#index < this.#writing.length) {
      this.#write();
      return;
    }
    this.#writing.length = 0;
    this.#index = 0;
    if (this.#stopped !== undefined) {
      this.#pumpEnded();
      return;
    }
    this.#sealBatch();
    if (this.#pong !== undefined) {
      // The pong goes first: before a close frame queued meanwhile.
      const pong = this.#pong;
      this.#pong = undefined;
      const queued = this.#queue;
      this.#queue = [];
      try {
        this.enqueue(0xa, pong, false);
        this.#sealBatch();
      } finally {
        // Queued still if the pong failed: stop() gives their slabs back.
        for (const bytes of queued) this.#queue.push(bytes);
      }
    }
    if (this.#queue.length === 0) {
      this.#pumpEnded();
      return;
    }
    // The queue is the pump's now; the next frames go to an empty array.
    const queue = this.#queue;
    this.#queue = this.#writing;
    this.#writing = queue;
    this.#write();
  }

  // Writes (the rest of) the buffer at #index; may throw.
  #write(): void {
    const bytes = this.#writing[this.#index]!;
    const transport = this.#transport;
    let written: unknown;
    if (transport.write !== undefined) {
      written = transport.write(
        this.#offset === 0 ? bytes : bytes.subarray(this.#offset),
      );
    } else {
      this.#writer ??= transport.writable.getWriter();
      written = this.#writer.write(bytes);
    }
    // A write() that returns no promise (against its type) is done.
    (written instanceof Promise ? written : Promise.resolve(written))
      .then(this.#onWritten, this.#onWriteError);
  }

  readonly #onWritten = (count: unknown): void => {
    const bytes = this.#writing[this.#index]!;
    // A transport's write() may take part of the bytes; a stream takes all.
    if (typeof count === "number" && this.#offset + count < bytes.length) {
      this.#offset += count;
      this.#pump(); // the rest of the same buffer
      return;
    }
    this.#offset = 0;
    this.#index++;
    this.#wrote(bytes.length);
    this.#recycle(bytes);
    this.#pump();
  };

  readonly #onWriteError = (error: unknown): void => {
    // The write that failed is settled, and the rest of the batch will
    // never be written: their slabs go back to the pool.
    const writing = this.#writing;
    for (let i = this.#index; i < writing.length; i++) giveSlab(writing[i]!);
    writing.length = 0;
    this.#index = 0;
    this.#offset = 0;
    try {
      this.#hooks.onError(error);
    } finally {
      this.#pumpEnded();
    }
  };

  #pumpEnded(): void {
    this.#pumpActive = false;
    const idle = this.#idle;
    this.#idle = undefined;
    idle?.resolve();
  }

  // Resolves when the pump is not running.
  #pumpStopped(): Promise<void> {
    if (!this.#pumpActive) return RESOLVED;
    this.#idle ??= Promise.withResolvers<void>();
    return this.#idle.promise;
  }

  // A batch buffer written by the transport's own write() can be reused; one
  // handed to a WritableStream belongs to its reader now.
  #recycle(bytes: Uint8Array): void {
    if (shared.has(bytes)) return;
    if (isSlab(bytes)) {
      giveSlab(bytes);
      return;
    }
    const buffer = bytes.buffer;
    if (
      this.#transport.write !== undefined && buffer instanceof ArrayBuffer &&
      bytes.byteOffset === 0 && buffer.byteLength <= MAX_SPARE &&
      this.#spares.length < MAX_SPARES
    ) {
      this.#spares.push(new Uint8Array(buffer));
    }
  }

  #wrote(bytes: number): void {
    this.#queuedBytes -= bytes;
    if (this.#drain !== undefined && this.#queuedBytes <= this.#highWaterMark) {
      const drain = this.#drain;
      this.#drain = undefined;
      drain.resolve();
    }
  }
}

function tryGetWriter(
  writable: WritableStream<Uint8Array>,
): WritableStreamDefaultWriter<Uint8Array> | undefined {
  if (writable.locked) return undefined;
  return writable.getWriter();
}

/**
 * Marks a promise handled so that a caller who does not await it does not
 * crash the process with an unhandled rejection; awaiting still throws.
 */
export function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(ignore);
  return promise;
}

function ignore(): void {}
