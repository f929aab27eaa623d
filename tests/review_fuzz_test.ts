// Review: a randomized stress of the read buffer (views, copies, cuts).
import assert from "node:assert/strict";
import { concatAll, patternBytes, writeAll } from "./_util.ts";
import { WebSocketConnection } from "../connection.ts";
import { encodeFrame, OPCODE } from "../frame.ts";

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

function rng(seed: number) {
  let x = seed | 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x1_0000_0000;
  };
}

const SIZES = [
  0,
  3,
  4096,
  4097,
  5000,
  12_000,
  16 * 1024,
  40_000,
  65_536,
  130_000,
  250_000,
  256 * 1024,
  256 * 1024 + 1,
  300_000,
  600_000,
];

async function run(seed: number, mode: "borrow" | "copy" | "mixed") {
  const random = rng(seed);
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [peer, accepted] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
    listener.accept(),
  ]);
  const conn = new WebSocketConnection(accepted, {
    pingInterval: 0,
    role: "server",
  });
  const sent: Uint8Array[] = [];
  const frames: Uint8Array[] = [];
  for (let i = 0; i < 60; i++) {
    const size = SIZES[Math.floor(random() * SIZES.length)]!;
    const payload = patternBytes(size, seed * 1000 + i + 1);
    sent.push(payload);
    const r = random();
    if (r < 0.15 && size > 10) {
      const cut = Math.floor(size / 2);
      frames.push(clientFrame(payload.subarray(0, cut), OPCODE.Binary, false));
      frames.push(clientFrame(patternBytes(5, i), OPCODE.Ping));
      frames.push(clientFrame(payload.subarray(cut), OPCODE.Continuation));
    } else {
      frames.push(clientFrame(payload));
      if (r > 0.9) frames.push(clientFrame(patternBytes(100, i), OPCODE.Ping));
    }
  }
  const stream = concatAll(frames);
  const writing = (async () => {
    let from = 0;
    while (from < stream.length) {
      const n = 1 + Math.floor(random() * random() * 400_000);
      const to = Math.min(stream.length, from + n);
      await writeAll(peer, stream.subarray(from, to));
      from = to;
      if (random() < 0.5) await new Promise((r) => setTimeout(r, 0));
    }
  })();
  // Drain the pongs.
  const draining = (async () => {
    const sink = new Uint8Array(65536);
    try {
      while ((await peer.read(sink)) !== null) { /* discard */ }
    } catch { /* closed */ }
  })();
  const borrowing = conn.messages({ copy: false });
  const copying = conn.messages();
  const kept: { message: Uint8Array; index: number }[] = [];
  let held: { message: Uint8Array; index: number } | undefined;
  for (let i = 0; i < sent.length; i++) {
    const useBorrow = mode === "borrow" || (mode === "mixed" && random() < 0.5);
    if (held !== undefined) {
      // The held view is intact until this iterator's next call.
      sameBytes(held.message, sent[held.index]!, `held ${held.index}`);
    }
    const result = await (useBorrow ? borrowing : copying).next();
    assert.equal(result.done, false);
    const message = result.value as Uint8Array;
    sameBytes(message, sent[i]!, `message ${i} on arrival`);
    if (useBorrow) held = { message, index: i };
    else kept.push({ message, index: i });
    // Hold it a while: reads go on.
    if (random() < 0.3) await new Promise((r) => setTimeout(r, 0));
    if (held !== undefined && useBorrow) {
      sameBytes(held.message, sent[held.index]!, `held ${held.index} later`);
    }
    if (useBorrow === false && held !== undefined && mode === "mixed") {
      sameBytes(held.message, sent[held.index]!, `held ${held.index} mixed`);
    }
  }
  for (const { message, index } of kept) {
    sameBytes(message, sent[index]!, `kept ${index}`);
  }
  await borrowing.return!();
  await writing;
  await writeAll(
    peer,
    clientFrame(new Uint8Array([0x03, 0xe8]), OPCODE.Close),
  );
  await conn.closed;
  peer.close();
  await draining;
}

Deno.test("review: fuzz the read buffer", async (t) => {
  for (let seed = 1; seed <= 12; seed++) {
    for (const mode of ["borrow", "copy", "mixed"] as const) {
      await t.step(`seed ${seed} ${mode}`, () => run(seed, mode));
    }
  }
});
