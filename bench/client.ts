// Copyright 2026 the @rfc6455/websocket authors. MIT license.
/**
 * The echo load generator: keeps `--window` messages of `--size` bytes in
 * flight on each of `--connections` connections until `--count` echoes came
 * back in total, checks the length and type of every echo, and prints one
 * line of `key=value` fields: `msgs/s`, `cpu_s` (this process's user +
 * system CPU seconds during the load, connecting excluded), `system_s` (the
 * kernel's part of it) and `msgs_per_cpu_s`.
 *
 * ```sh
 * deno task bench-client --url ws://127.0.0.1:8080/ --size 1024 --count 100000 --window 64
 * deno task bench-client --url ws://127.0.0.1:8080/ --size 64 --count 100000 --window 8 --connections 100 --builtin
 * deno task bench-client --url tcp://127.0.0.1:9000 --size 64 --count 100000 --window 64 --raw
 * ```
 *
 * The client is ours (`connect` from `../client.ts`) unless `--builtin`
 * picks Deno's built-in `WebSocket`; `--raw` loads a raw TCP echo with the
 * same bytes (no framing), the ceiling of `bench/echo_server.ts --impl raw`.
 * Our client reads the echoes with `messages({ copy: false })` (each binary
 * echo a view of the read buffer, checked and let go) unless `--copy` asks
 * for an array per echo, as the built-in gives.
 * Our client offers no permessage-deflate unless `--deflate` (the built-in
 * has none, and the payload is one repeated byte, which compresses to
 * nothing).
 *
 * It exits 0 after closing every connection, and 1 with a message on stderr
 * on any mismatch or failure.
 *
 * @module
 */

import process from "node:process";
import { parseArgs } from "node:util";
import { connect, type WebSocketClient } from "../client.ts";
import { writeAll } from "../_socket.ts";

interface Config {
  url: string;
  size: number;
  count: number;
  window: number;
  connections: number;
  text: boolean;
  deflate: boolean;
  copy: boolean;
  timeout: number;
}

/** Open connections, ready to be loaded. */
interface Load {
  /** Runs the load to the end. */
  run(): Promise<unknown>;
  /** Closes every connection. */
  close(): Promise<unknown>;
}

function fail(message: string, code = 1): never {
  // deno-lint-ignore no-console
  console.error(`bench-client: ${message}`);
  Deno.exit(code);
}

function positiveInteger(name: string, text: string | undefined): number {
  const value = Number(text);
  if (text === undefined || !Number.isSafeInteger(value) || value <= 0) {
    fail(`--${name} must be a positive integer, got "${text}"`, 2);
  }
  return value;
}

// How many of `total` messages connection `index` of `connections` carries.
function quotaOf(total: number, connections: number, index: number): number {
  return Math.floor(total / connections) +
    (index < total % connections ? 1 : 0);
}

/** This process's CPU seconds so far: in all, and in the kernel. */
function cpuSeconds(): { total: number; system: number } {
  const { user, system } = process.cpuUsage();
  return { total: (user + system) / 1e6, system: system / 1e6 };
}

// ---------------------------------------------------------------------------
// Our client
// ---------------------------------------------------------------------------

// One connection: a sender that keeps `window` messages in flight, awaiting
// send() for the write backpressure, and a receiver that checks each echo.
async function loadOurs(
  ws: WebSocketClient,
  quota: number,
  window: number,
  payload: string | Uint8Array,
  size: number,
  copy: boolean,
): Promise<void> {
  const text = typeof payload === "string";
  let sent = 0;
  let received = 0;
  let failed = false;
  let credit: (() => void) | undefined;
  const wait = (resolve: () => void) => credit = resolve;
  const receiver = (async () => {
    if (quota === 0) return;
    const messages = copy ? ws.messages() : ws.messages({ copy: false });
    for await (const message of messages) {
      if (
        text
          ? typeof message !== "string" || message.length !== size
          : typeof message === "string" || message.length !== size
      ) {
        throw new Error(
          `echo ${received} is ${
            typeof message === "string" ? "text" : "binary"
          } of length ${message.length}, expected ${
            text ? "text" : "binary"
          } of length ${size}`,
        );
      }
      received++;
      if (credit !== undefined) {
        const resolve = credit;
        credit = undefined;
        resolve();
      }
      if (received === quota) return;
    }
    throw new Error(
      `connection closed after ${received} of ${quota} echoes: code ${
        (await ws.closed).code
      }`,
    );
  })();
  receiver.catch(() => {
    failed = true;
    credit?.();
  });
  while (sent < quota && !failed) {
    if (sent - received >= window) {
      await new Promise<void>(wait);
      continue;
    }
    sent++;
    await ws.send(payload);
  }
  await receiver;
}

async function openOurs(config: Config): Promise<Load> {
  const payload = makePayload(config);
  const sockets = await Promise.all(
    Array.from(
      { length: config.connections },
      () =>
        connect(config.url, {
          pingInterval: 0,
          proxy: false,
          deflate: config.deflate,
        }),
    ),
  );
  return {
    run: () =>
      Promise.all(sockets.map((ws, i) =>
        loadOurs(
          ws,
          quotaOf(config.count, config.connections, i),
          config.window,
          payload,
          config.size,
          config.copy,
        )
      )),
    close: () => Promise.all(sockets.map((ws) => ws.close())),
  };
}

// ---------------------------------------------------------------------------
// Deno's built-in WebSocket
// ---------------------------------------------------------------------------

function openBuiltin(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      ws.onerror = null;
      resolve(ws);
    };
    ws.onerror = (event) =>
      reject(
        new Error(
          `cannot connect to ${url}: ${
            (event as ErrorEvent).message ?? "error"
          }`,
        ),
      );
  });
}

// One connection: `window` sends up front, then one send per echo, since the
// built-in send() has no backpressure to await.
function loadBuiltin(
  ws: WebSocket,
  quota: number,
  window: number,
  payload: string | Uint8Array,
  size: number,
): Promise<void> {
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  if (quota === 0) return Promise.resolve();
  const text = typeof payload === "string";
  let sent = 0;
  let received = 0;
  ws.onmessage = (event: MessageEvent) => {
    const data = event.data;
    if (
      text
        ? typeof data !== "string" || data.length !== size
        : !(data instanceof ArrayBuffer) || data.byteLength !== size
    ) {
      ws.onmessage = null;
      reject(
        new Error(
          `echo ${received} is ${
            typeof data === "string" ? "text" : "binary"
          } of length ${
            typeof data === "string" ? data.length : data.byteLength
          }, expected ${text ? "text" : "binary"} of length ${size}`,
        ),
      );
      return;
    }
    received++;
    if (sent < quota) {
      sent++;
      ws.send(payload);
    }
    if (received === quota) resolve();
  };
  ws.onclose = (event) => {
    if (received < quota) {
      reject(
        new Error(
          `connection closed after ${received} of ${quota} echoes: code ${event.code}`,
        ),
      );
    }
  };
  while (sent < quota && sent < window) {
    sent++;
    ws.send(payload);
  }
  return promise;
}

async function openBuiltins(config: Config): Promise<Load> {
  const payload = makePayload(config);
  const sockets = await Promise.all(
    Array.from({ length: config.connections }, () => openBuiltin(config.url)),
  );
  return {
    run: () =>
      Promise.all(sockets.map((ws, i) =>
        loadBuiltin(
          ws,
          quotaOf(config.count, config.connections, i),
          config.window,
          payload,
          config.size,
        )
      )),
    close: () =>
      Promise.all(sockets.map((ws) => {
        const { promise, resolve } = Promise.withResolvers<void>();
        ws.onclose = () => resolve();
        ws.close(1000);
        return promise;
      })),
  };
}

// ---------------------------------------------------------------------------
// Raw TCP: the same bytes, no framing
// ---------------------------------------------------------------------------

// One connection: a message is `size` bytes; whenever echoes free up room in
// the window, the sender writes all the messages that fit in one write.
async function loadRaw(
  conn: Deno.Conn,
  quota: number,
  window: number,
  block: Uint8Array,
  size: number,
): Promise<void> {
  let sent = 0;
  let receivedBytes = 0;
  let failed = false;
  let credit: (() => void) | undefined;
  const wait = (resolve: () => void) => credit = resolve;
  const total = quota * size;
  const receiver = (async () => {
    const buffer = new Uint8Array(256 * 1024);
    while (receivedBytes < total) {
      const count = await conn.read(buffer);
      if (count === null) {
        throw new Error(
          `connection closed after ${receivedBytes} of ${total} bytes`,
        );
      }
      receivedBytes += count;
      if (credit !== undefined) {
        const resolve = credit;
        credit = undefined;
        resolve();
      }
    }
    if (receivedBytes > total) {
      throw new Error(`received ${receivedBytes} bytes, expected ${total}`);
    }
  })();
  receiver.catch(() => {
    failed = true;
    credit?.();
  });
  while (sent < quota && !failed) {
    const room = Math.min(
      window - (sent - Math.floor(receivedBytes / size)),
      quota - sent,
    );
    if (room <= 0) {
      await new Promise<void>(wait);
      continue;
    }
    sent += room;
    await writeAll(conn, block.subarray(0, room * size));
  }
  await receiver;
}

async function openRaw(config: Config): Promise<Load> {
  const url = new URL(config.url);
  const block = new Uint8Array(config.size * config.window).fill(0x78);
  const conns = await Promise.all(
    Array.from(
      { length: config.connections },
      () =>
        Deno.connect({
          hostname: url.hostname,
          port: Number(url.port),
          transport: "tcp",
        }),
    ),
  );
  return {
    run: () =>
      Promise.all(conns.map((conn, i) =>
        loadRaw(
          conn,
          quotaOf(config.count, config.connections, i),
          config.window,
          block,
          config.size,
        )
      )),
    close: () => {
      for (const conn of conns) conn.close();
      return Promise.resolve();
    },
  };
}

// ---------------------------------------------------------------------------

// One payload, reused for every message: ASCII text (its UTF-8 is `size`
// bytes) or binary.
function makePayload(config: Config): string | Uint8Array {
  return config.text
    ? "x".repeat(config.size)
    : new Uint8Array(config.size).fill(0x78);
}

function timeoutAfter(ms: number, what: string): Promise<never> {
  return new Promise((_, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${what} did not finish within ${ms} ms`)),
      ms,
    );
    Deno.unrefTimer(timer);
  });
}

// With --sync, the benchmark driver reads the server's CPU time between
// "connected" and the result line: each waits for a line on stdin, so that
// neither the handshakes nor the closes fall inside the measurement.
async function* stdinLines(): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let text = "";
  for await (const chunk of Deno.stdin.readable) {
    text += decoder.decode(chunk, { stream: true });
    let newline;
    while ((newline = text.indexOf("\n")) >= 0) {
      yield text.slice(0, newline);
      text = text.slice(newline + 1);
    }
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      url: { type: "string" },
      size: { type: "string" },
      count: { type: "string" },
      window: { type: "string" },
      connections: { type: "string", default: "1" },
      text: { type: "boolean", default: false },
      deflate: { type: "boolean", default: false },
      copy: { type: "boolean", default: false },
      builtin: { type: "boolean", default: false },
      raw: { type: "boolean", default: false },
      sync: { type: "boolean", default: false },
      timeout: { type: "string", default: "120000" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) {
    // deno-lint-ignore no-console
    console.log(
      "Usage: deno task bench-client --url URL --size BYTES --count N --window W [--connections C] [--text] [--deflate] [--copy] [--builtin | --raw] [--sync] [--timeout MS]",
    );
    return;
  }
  if (values.url === undefined) fail("--url is required", 2);
  if (values.builtin && values.raw) {
    fail("--builtin and --raw exclude each other", 2);
  }
  if (values.raw && values.text) fail("--raw sends bytes, not text", 2);
  const config: Config = {
    url: values.url,
    size: positiveInteger("size", values.size),
    count: positiveInteger("count", values.count),
    window: positiveInteger("window", values.window),
    connections: positiveInteger("connections", values.connections),
    text: values.text,
    deflate: values.deflate,
    copy: values.copy,
    timeout: positiveInteger("timeout", values.timeout),
  };
  const client = values.raw ? "raw" : values.builtin ? "builtin" : "ours";
  const open = values.raw ? openRaw : values.builtin ? openBuiltins : openOurs;
  const load = await Promise.race([
    open(config),
    timeoutAfter(config.timeout, "connecting"),
  ]);
  const lines = values.sync ? stdinLines() : undefined;
  if (lines !== undefined) {
    // deno-lint-ignore no-console
    console.log("connected");
    await lines.next();
  }
  const cpu = cpuSeconds();
  const start = performance.now();
  await Promise.race([load.run(), timeoutAfter(config.timeout, "load")]);
  const seconds = (performance.now() - start) / 1000;
  const cpuAfter = cpuSeconds();
  const cpuUsed = cpuAfter.total - cpu.total;
  // deno-lint-ignore no-console
  console.log(
    [
      `client=${client}`,
      `type=${config.text ? "text" : "binary"}`,
      `size=${config.size}`,
      `connections=${config.connections}`,
      `window=${config.window}`,
      `count=${config.count}`,
      `seconds=${seconds.toFixed(4)}`,
      `msgs/s=${(config.count / seconds).toFixed(0)}`,
      `cpu_s=${cpuUsed.toFixed(4)}`,
      `system_s=${(cpuAfter.system - cpu.system).toFixed(4)}`,
      `msgs_per_cpu_s=${(config.count / cpuUsed).toFixed(0)}`,
    ].join(" "),
  );
  if (lines !== undefined) await lines.next();
  await Promise.race([load.close(), timeoutAfter(config.timeout, "closing")]);
}

if (import.meta.main) {
  try {
    await main();
  } catch (error) {
    fail(error instanceof Error ? error.message : String(error));
  }
  Deno.exit(0);
}
