// Copyright 2026 the @rfc6455/websocket authors. MIT license.
// This module is browser compatible: it uses only the Web platform.
// Private helper of connection.ts: the buffer a connection reads its
// transport into, decoded in place. Not an entry point.

// The buffer grows (x4) when a read fills all the room it was given (half the
// buffer or more), up to
// MAX_READ_BUFFER, and shrinks (/4) after SHRINK_AFTER reads in a row that use
// at most an eighth of it. Shrinking on one small read made it swing: under a
// steady load reads alternate between full and nearly empty, and every swing
// allocated (and zeroed) a new buffer. A frame larger than the buffer grows it
// as its bytes arrive, never past the frame's size (plus MIN_ROOM); once that
// frame is consumed the buffer goes back to MAX_READ_BUFFER, and one larger
// than MAX_READ_BUFFER is never read into again: the payload of such a frame
// may be handed out as a view without a copy.
/** The smallest read buffer. */
const MIN_READ_BUFFER = 16 * 1024;
/** The read buffer for a steady load; only a larger frame makes it larger. */
export const MAX_READ_BUFFER = 256 * 1024;
const SHRINK_AFTER = 64;
// Room under MIN_ROOM at the end moves the unconsumed bytes to the front.
const MIN_ROOM = 4 * 1024;
// Buffers whose lent views were all given back are reused, up to MAX_SPARES:
// enough for the read queue of a connection (1 MiB) in buffers of
// MAX_READ_BUFFER, and a consumer that holds one more. The one read into
// last is reused first: it is the likeliest to be in the CPU's cache. A read
// that finds its buffer free (the consumer caught up) keeps KEEP_SPARES of
// them: under a steady load of large messages the consumer catches up every
// few reads, and dropping them all there made a new 256 KiB buffer every 25
// messages of 64 KiB (about one buffer switch in ten; each new buffer is
// zeroed, faulted in page by page, and counts towards the garbage collector's
// external memory). `trim()` (at each keepalive ping of the connection) drops
// the rest, so an idle connection keeps its buffer alone; with keepalive off
// it keeps up to KEEP_SPARES (MAX_SPARES while a consumer holds a view).
const MAX_SPARES = 6;
const KEEP_SPARES = 2;
// The bytes of buffers that lent views may pin at once: MAX_PINNED, or
// twice the bytes of the views, whichever is more. Past it a view is not
// lent (the caller copies): a peer that sends one small message per read to
// a consumer that does not keep up would otherwise pin a whole buffer per
// queued message (16 x 256 KiB for 16 messages of 4 KiB), while the views
// of a steady load of large messages (the read queue's 1 MiB in 5 or 6
// buffers) stay lent.
const MAX_PINNED = 4 * MAX_READ_BUFFER;

/** A buffer, and how many of its views are lent. */
interface Slot {
  bytes: Uint8Array<ArrayBuffer>;
  lent: number;
}

// The buffers of every connection with views lent: send() on any connection
// copies such a view before it waits (a relay passes one connection's views
// to another's send()).
const lentBuffers = new WeakSet<ArrayBufferLike>();

/**
 * Whether `view` is a view of a buffer that some connection lent views of,
 * not all given back yet: its bytes may be read over once they are.
 */
export function isLentView(view: Uint8Array): boolean {
  return lentBuffers.has(view.buffer);
}

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
  #slot: Slot;
  #start = 0;
  #end = 0;
  #grow = false;
  #smallReads = 0;
  // Views lent and not released, over all slots.
  #lent = 0;
  // The bytes of the buffers with views lent, and of those views.
  #pinned = 0;
  #lentBytes = 0;
  // Earlier buffers: those with views lent, and free spares.
  #others: Slot[] = [];

  /** Starts with `head`, the bytes that came with the handshake, pending. */
  constructor(head?: Uint8Array) {
    const length = head?.length ?? 0;
    const bytes = new Uint8Array(Math.max(MIN_READ_BUFFER, length + MIN_ROOM));
    if (head !== undefined) bytes.set(head);
    this.#slot = { bytes, lent: 0 };
    this.#end = length;
  }

  /** The bytes read and not consumed yet. */
  get pending(): Uint8Array<ArrayBuffer> {
    return this.#slot.bytes.subarray(this.#start, this.#end);
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
    const slot = this.#slot;
    const bytes = slot.bytes;
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
    if (size !== bytes.length || slot.lent > 0) {
      const next = this.#spare(size) ??
        { bytes: new Uint8Array(size), lent: 0 };
      next.bytes.set(bytes.subarray(this.#start, this.#end));
      this.#retire(slot);
      if (size !== bytes.length) {
        // Spares of the old size are of no use to the reads to come.
        this.#others = this.#others.filter((other) =>
          other.lent > 0 || other.bytes.length === size
        );
      }
      this.#slot = next;
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
      // No view holds any buffer: the consumer caught up. Every other
      // buffer is a free spare; the ones read into last stay.
      if (this.#lent === 0 && this.#others.length > KEEP_SPARES) {
        this.#others.splice(0, this.#others.length - KEEP_SPARES);
      }
    }
    return this.#slot.bytes.subarray(this.#end);
  }

  /** Records a read of `count` bytes into the last `room()`. */
  filled(count: number, room: number): void {
    this.#end += count;
    const size = this.#slot.bytes.length;
    // A read that filled a room of half the buffer or more: the peer sends
    // faster than the buffer takes (a small room left by the bytes of a cut
    // frame says nothing).
    if (count === room && count >= size / 2 && size < MAX_READ_BUFFER) {
      this.#grow = true;
      this.#smallReads = 0;
    } else if (count > size / 8) {
      this.#smallReads = 0;
    } else {
      this.#smallReads++;
    }
  }

  /**
   * Hands out one more view of the pending bytes: the buffer is not read
   * into again until the view is released.
   */
  lend(view: Uint8Array): void {
    if (this.#slot.lent++ === 0) {
      this.#pinned += this.#slot.bytes.length;
      lentBuffers.add(this.#slot.bytes.buffer);
    }
    this.#lent++;
    this.#lentBytes += view.byteLength;
  }

  /**
   * Whether one more view may be lent: the buffers that lent views pin stay
   * within MAX_PINNED bytes, or twice the bytes of the views lent.
   */
  canLend(view: Uint8Array): boolean {
    return this.#slot.lent > 0 ||
      this.#pinned + this.#slot.bytes.length <=
        Math.max(MAX_PINNED, 2 * (this.#lentBytes + view.byteLength));
  }

  /** Whether `view` was lent and not released. */
  isLent(view: Uint8Array): boolean {
    return this.#lent > 0 && this.#slotOf(view) !== undefined;
  }

  /** Gives back a view that `lend()` handed out. */
  release(view: Uint8Array): void {
    if (this.#lent === 0) return;
    const slot = this.#slotOf(view);
    if (slot === undefined) return;
    slot.lent--;
    this.#lent--;
    this.#lentBytes -= view.byteLength;
    if (slot.lent > 0) return;
    this.#pinned -= slot.bytes.length;
    lentBuffers.delete(slot.bytes.buffer);
    // A buffer given back is a spare only if a read may use it: an
    // oversized one (a frame's own) is dropped at once, not kept as long as
    // every read has a view out.
    if (slot !== this.#slot && slot.bytes.length > MAX_READ_BUFFER) {
      this.#others.splice(this.#others.indexOf(slot), 1);
    }
  }

  // The slot with views lent that `view` is a view of.
  #slotOf(view: Uint8Array): Slot | undefined {
    const buffer = view.buffer;
    if (this.#slot.bytes.buffer === buffer) {
      return this.#slot.lent > 0 ? this.#slot : undefined;
    }
    for (const slot of this.#others) {
      if (slot.bytes.buffer === buffer) return slot.lent > 0 ? slot : undefined;
    }
    return undefined;
  }

  /** Drops the free spares: the buffers with views lent stay. */
  trim(): void {
    if (this.#others.length === 0) return;
    this.#others = this.#others.filter((slot) => slot.lent > 0);
  }

  // The free buffer of `size` bytes read into last (retired last).
  #spare(size: number): Slot | undefined {
    const others = this.#others;
    for (let i = others.length - 1; i >= 0; i--) {
      const slot = others[i]!;
      if (slot.lent === 0 && slot.bytes.length === size) {
        others.splice(i, 1);
        return slot;
      }
    }
    return undefined;
  }

  // Keeps a buffer that views hold (until they are released), or a free one
  // as a spare, up to MAX_SPARES free ones (an oversized one never).
  #retire(slot: Slot): void {
    const others = this.#others;
    if (slot.lent === 0) {
      if (slot.bytes.length > MAX_READ_BUFFER) return;
      let free = 0;
      for (const other of others) if (other.lent === 0) free++;
      if (free >= MAX_SPARES) return;
    } else {
      // Drop the free spares beyond the bound first.
      let free = 0;
      this.#others = others.filter((other) =>
        other.lent > 0 ||
        (other.bytes.length <= MAX_READ_BUFFER && ++free <= MAX_SPARES)
      );
    }
    this.#others.push(slot);
  }
}
