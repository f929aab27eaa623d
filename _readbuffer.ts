// Copyright 2026 the @rfc6455/websocket authors. MIT license.
// This module is browser compatible: it uses only the Web platform.
// Private helper of connection.ts: the buffer a connection reads its
// transport into, decoded in place. Not an entry point.

// The buffer grows (x4) when a read fills all the room it was given, up to
// MAX_READ_BUFFER, and shrinks (/4) after SHRINK_AFTER reads in a row that use
// at most an eighth of it. Shrinking on one small read made it swing: under a
// steady load reads alternate between full and nearly empty, and every swing
// allocated (and zeroed) a new buffer. A frame larger than the buffer grows it
// as its bytes arrive, never past the frame's size (plus MIN_ROOM); once that
// frame is consumed the buffer goes back to MAX_READ_BUFFER, and one larger
// than MAX_READ_BUFFER is never read into again: the payload of such a frame
// may be handed out as a view without a copy.
/** The smallest read buffer. */
export const MIN_READ_BUFFER = 16 * 1024;
/** The read buffer for a steady load; only a larger frame makes it larger. */
export const MAX_READ_BUFFER = 256 * 1024;
const SHRINK_AFTER = 64;
// Room under MIN_ROOM at the end moves the unconsumed bytes to the front.
const MIN_ROOM = 4 * 1024;
// Buffers whose lent views were all given back are reused, up to MAX_SPARES:
// enough for the read queue of a connection (1 MiB) in buffers of
// MAX_READ_BUFFER, and a consumer that holds one more. They are dropped as
// soon as a read finds its buffer free, which a consumer that keeps up
// makes true at the first pause in the load.
const MAX_SPARES = 6;

/**
 * The read buffer of one connection: bytes are read into `room()`, decoded
 * in place from `pending`, and `consume()`d. The bytes of an incomplete frame
 * stay, and the next read appends to them, so every frame ends up whole in one
 * buffer and its payload can be handed out as a view, without a copy.
 *
 * A view handed out is `lend()`ed: its bytes are never overwritten, because
 * the next read goes to another buffer while a view of this one is out; the
 * buffer is reused once every view is given back with `release()`. A view
 * that is never given back keeps its buffer alive, and nothing else.
 */
export class ReadBuffer {
  #bytes: Uint8Array<ArrayBuffer>;
  #start = 0;
  #end = 0;
  #grow = false;
  #smallReads = 0;
  #lent = new Map<ArrayBufferLike, number>();
  #spares: Uint8Array<ArrayBuffer>[] = [];

  /** Starts with `head`, the bytes that came with the handshake, pending. */
  constructor(head?: Uint8Array) {
    const length = head?.length ?? 0;
    this.#bytes = new Uint8Array(
      Math.max(MIN_READ_BUFFER, length + MIN_ROOM),
    );
    if (head !== undefined) this.#bytes.set(head);
    this.#end = length;
  }

  /** The bytes read and not consumed yet. */
  get pending(): Uint8Array<ArrayBuffer> {
    return this.#bytes.subarray(this.#start, this.#end);
  }

  /** The size of the buffer in use. */
  get size(): number {
    return this.#bytes.length;
  }

  /** Marks the first `count` pending bytes as consumed. */
  consume(count: number): void {
    this.#start += count;
    if (this.#start === this.#end) this.#start = this.#end = 0;
  }

  /**
   * The room for the next read, after the pending bytes. `frameSize` is the
   * size of the incomplete frame the pending bytes start, when known (0 if
   * not): the buffer grows for it up to that size, not more.
   */
  room(frameSize: number): Uint8Array<ArrayBuffer> {
    const bytes = this.#bytes;
    const tail = this.#end - this.#start;
    let size = bytes.length;
    if (this.#grow) {
      size = Math.min(size * 4, MAX_READ_BUFFER);
    } else if (size > MAX_READ_BUFFER && tail < MAX_READ_BUFFER - MIN_ROOM) {
      // The large frame that grew the buffer is consumed.
      size = MAX_READ_BUFFER;
    } else if (this.#smallReads >= SHRINK_AFTER && size > MIN_READ_BUFFER) {
      size = Math.max(size / 4, MIN_READ_BUFFER);
    }
    if (tail + MIN_ROOM > size) {
      // A frame larger than the buffer: grow with the bytes that arrive, and
      // never past the frame (a header alone does not allocate its size).
      const need = tail + MIN_ROOM;
      size = Math.max(size * 2, need);
      if (frameSize > tail) size = Math.min(size, Math.max(frameSize, need));
    }
    if (size !== bytes.length || this.#isLent(bytes)) {
      const next = this.#spare(size) ?? new Uint8Array(size);
      next.set(bytes.subarray(this.#start, this.#end));
      this.#retire(bytes);
      this.#bytes = next;
      this.#start = 0;
      this.#end = tail;
      this.#grow = false;
      this.#smallReads = 0;
    } else {
      if (this.#start > 0 && size - this.#end < MIN_ROOM) {
        bytes.copyWithin(0, this.#start, this.#end);
        this.#start = 0;
        this.#end = tail;
      }
      if (this.#spares.length > 0) this.#dropFreeSpares();
    }
    return this.#bytes.subarray(this.#end);
  }

  /** Records a read of `count` bytes into the last `room()`. */
  filled(count: number, room: number): void {
    this.#end += count;
    const size = this.#bytes.length;
    if (count === room && size < MAX_READ_BUFFER) {
      this.#grow = true;
      this.#smallReads = 0;
    } else if (count > size / 8) {
      this.#smallReads = 0;
    } else {
      this.#smallReads++;
    }
  }

  /** Hands out `view`, a view of the buffer: its bytes stay as they are. */
  lend(view: Uint8Array): void {
    const buffer = view.buffer;
    this.#lent.set(buffer, (this.#lent.get(buffer) ?? 0) + 1);
  }

  /** Whether `view` was lent and not released. */
  isLent(view: Uint8Array): boolean {
    return this.#lent.size > 0 && this.#lent.has(view.buffer);
  }

  /** Gives back a view that `lend()` handed out. */
  release(view: Uint8Array): void {
    const buffer = view.buffer;
    const count = this.#lent.get(buffer);
    if (count === undefined) return;
    if (count > 1) this.#lent.set(buffer, count - 1);
    else this.#lent.delete(buffer);
  }

  #isLent(bytes: Uint8Array): boolean {
    return this.#lent.size > 0 && this.#lent.has(bytes.buffer);
  }

  #spare(size: number): Uint8Array<ArrayBuffer> | undefined {
    const spares = this.#spares;
    for (let i = 0; i < spares.length; i++) {
      const spare = spares[i]!;
      if (spare.length === size && !this.#isLent(spare)) {
        spares.splice(i, 1);
        return spare;
      }
    }
    return undefined;
  }

  #dropFreeSpares(): void {
    this.#spares = this.#spares.filter((spare) => this.#isLent(spare));
  }

  #retire(bytes: Uint8Array<ArrayBuffer>): void {
    if (bytes.length > MAX_READ_BUFFER) return;
    const spares = this.#spares;
    if (spares.length === MAX_SPARES) {
      // Keep the ones that may serve soon: drop a spare no view holds.
      const index = spares.findIndex((spare) => !this.#isLent(spare));
      if (index === -1) return;
      spares.splice(index, 1);
    }
    spares.push(bytes);
  }
}
