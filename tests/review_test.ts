// Review of the read buffer change: reproductions of the findings.
import assert from "node:assert/strict";
import { concatAll, patternBytes, writeAll } from "./_util.ts";
import { WebSocketConnection } from "../connection.ts";
import { encodeFrame, OPCODE } from "../frame.ts";
import { ReadBuffer } from "../_readbuffer.ts";
import { PerMessageDeflate } from "../deflate.ts";

const RAW_MASK = new Uint8Array([0x37, 0xfa, 0x21, 0x3d]);

function clientFrame(
  payload: Uint8Array,
  opcode: number = OPCODE.Binary,
  fin = true,
): Uint8Array {
  return encodeFrame({
    fin,
    rsv1: false,
    rsv2: false,
    rsv3: false,
    opcode,
    payload,
    mask: RAW_MASK,
  });
}

function sameBytes(a: unknown, b: Uint8Array, what: string): void {
  assert.ok(a instanceof Uint8Array, `${what}: not bytes`);
  assert.equal(a.length, b.length, `${what}: length`);
  for (let i = 0; i < b.length; i++) {
    if (a[i] !== b[i]) assert.fail(`${what}: byte ${i} differs`);
  }
}

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

async function tcpServer() {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [peer, accepted] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
    listener.accept(),
  ]);
  const conn = new WebSocketConnection(accepted, {
    pingInterval: 0,
    role: "server",
  });
  return { conn, peer };
}

async function closeFromPeer(conn: WebSocketConnection, peer: Deno.Conn) {
  await writeAll(
    peer,
    clientFrame(new Uint8Array([0x03, 0xe8]), OPCODE.Close),
  );
  await conn.closed;
  peer.close();
}

// Finding 1: an oversized buffer lent to a borrower is kept as a "spare"
// after its view is released, as long as every later read has a view out
// (a borrower under steady load): 64 MiB per message, up to 6 of them.
Deno.test("review: a released oversized buffer is not kept as a spare", () => {
  const frame = 300_000;
  const big = new Uint8Array(frame);
  const buffer = new ReadBuffer(big);
  // The big frame (one read), its payload lent to a borrower.
  const view = buffer.pending.subarray(14);
  buffer.lend();
  buffer.consume(frame);
  // Reads go on: each brings a 5000-byte message that is lent, and the
  // consumer gives back the one before (a borrower that keeps up).
  let previous = view;
  for (let i = 0; i < 100; i++) {
    const room = buffer.room(0);
    room.fill(1, 0, 5000);
    buffer.filled(5000, room.length);
    const message = buffer.pending.subarray(8);
    buffer.lend();
    buffer.consume(5000);
    buffer.release(previous);
    previous = message;
  }
  // A frame that needs a buffer of the big one's size: the big one was
  // kept all along (it would be reused here).
  let room = buffer.room(0);
  room.fill(2);
  buffer.filled(room.length, room.length);
  const second = frame + 4096;
  for (let i = 0; i < 10; i++) {
    const pending = buffer.pending.length;
    room = buffer.room(second);
    assert.notEqual(
      room.buffer,
      view.buffer,
      `the ${big.length + 4096}-byte buffer was kept (after ${pending} bytes)`,
    );
    if (pending >= second) break;
    buffer.filled(Math.min(room.length, second - pending), room.length);
  }
});

// Finding 2: messages queued for an open connection with a borrower each
// pin a whole read buffer: 16 messages of 4097 bytes pin 16 x 256 KiB.
Deno.test("review: queued lent messages do not pin a read buffer each", async () => {
  const { conn, peer } = await tcpServer();
  const iterator = conn.messages({ copy: false });
  // A burst grows the read buffer to 256 KiB.
  const burst = Array.from(
    { length: 40 },
    (_, i) => patternBytes(60_000, i + 1),
  );
  const writing = writeAll(peer, concatAll(burst.map((p) => clientFrame(p))));
  for (let i = 0; i < burst.length; i++) {
    const { value } = await iterator.next();
    sameBytes(value, burst[i]!, `burst ${i}`);
  }
  await writing;
  // Nobody reads for a while: 16 small messages, one read each.
  const small = Array.from(
    { length: 16 },
    (_, i) => patternBytes(4097, i + 100),
  );
  for (const payload of small) {
    await writeAll(peer, clientFrame(payload));
    await tick(5);
  }
  await tick(20);
  const buffers = new Set<ArrayBufferLike>();
  const views: Uint8Array[] = [];
  for (let i = 0; i < small.length; i++) {
    const { value } = await iterator.next();
    sameBytes(value, small[i]!, `small ${i}`);
    views.push(value as Uint8Array);
    buffers.add((value as Uint8Array).buffer);
  }
  let pinned = 0;
  for (const b of buffers) pinned += b.byteLength;
  await iterator.return!();
  await closeFromPeer(conn, peer);
  // The queue's bound is 1 MiB (README, "Memory per connection"); the
  // messages are 16 x 4097 bytes.
  assert.ok(
    pinned <= 1024 * 1024 + 256 * 1024,
    `${small.length} queued messages of 4097 bytes pinned ${buffers.size} buffers, ${pinned} bytes`,
  );
});

// Finding 3: "Each binary message is an array of its own" (JSDoc of
// [Symbol.asyncIterator], README): a message over 256 KiB is a view of its
// frame's buffer, after the header and before bytes of the next frames.
Deno.test("review: a large message taken with copies is a view of its frame's own buffer", async () => {
  const { conn, peer } = await tcpServer();
  const large = patternBytes(300_000, 5);
  const after = patternBytes(100, 6);
  await writeAll(
    peer,
    concatAll([clientFrame(large), clientFrame(after, OPCODE.Ping)]),
  );
  const { value } = await conn[Symbol.asyncIterator]().next();
  const message = value as Uint8Array;
  sameBytes(message, large, "message");
  const { byteOffset, buffer } = message;
  await closeFromPeer(conn, peer);
  // As documented now: a view of its frame's buffer, which nothing reads
  // into again (the message is intact after the connection read on).
  assert.ok(byteOffset > 0 && buffer.byteLength > large.length);
  sameBytes(message, large, "message after later reads");
});

// Finding 4: send() copies a lent view that waits for compression only when
// the view is the sending connection's own: a relay or a broadcast that
// passes a view to another connection (with permessage-deflate) and moves on
// sends bytes read over by the next reads.
Deno.test("review: a view relayed to another compressing connection is copied", async () => {
  const { conn: source, peer } = await tcpServer();
  const params = {
    serverNoContextTakeover: true,
    clientNoContextTakeover: true,
    serverMaxWindowBits: 15,
    clientMaxWindowBits: 15,
  };
  const a = new TransformStream<Uint8Array, Uint8Array>();
  const b = new TransformStream<Uint8Array, Uint8Array>();
  const relay = new WebSocketConnection(
    { readable: a.readable, writable: b.writable },
    {
      role: "server",
      pingInterval: 0,
      deflate: new PerMessageDeflate(params, "server"),
    },
  );
  const sink = new WebSocketConnection(
    { readable: b.readable, writable: a.writable },
    {
      role: "client",
      pingInterval: 0,
      deflate: new PerMessageDeflate(params, "client"),
    },
  );
  const sent = Array.from(
    { length: 30 },
    (_, i) => patternBytes(250_000, i + 1),
  );
  // One message per read, so that the reads reuse the buffers given back.
  const writing = (async () => {
    for (const payload of sent) {
      await writeAll(peer, clientFrame(payload));
      await tick(1);
    }
  })();
  let count = 0;
  for await (const message of source.messages({ copy: false })) {
    // A broadcast: nobody awaits the send.
    relay.send(message);
    if (++count === sent.length) break;
  }
  await writing;
  const received: Uint8Array[] = [];
  for await (const message of sink) {
    received.push(message as Uint8Array);
    if (received.length === sent.length) break;
  }
  await Promise.all([relay.close(), closeFromPeer(source, peer)]);
  await sink.closed;
  for (let i = 0; i < sent.length; i++) {
    sameBytes(received[i], sent[i]!, `relayed message ${i}`);
  }
});
