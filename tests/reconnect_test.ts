// Copyright 2026 the @rfc6455/websocket authors. MIT license.
// reconnecting(): end to end over loopback, against our serve(), Deno's
// built-in server (Deno.serve + Deno.upgradeWebSocket), Node's `ws` and raw
// sockets that misbehave. Waits are driven by onRetry and an injected
// random(), never asserted by timing.

import assert from "node:assert/strict";
import http from "node:http";
// @ts-types="npm:@types/ws@8.18.1"
import { WebSocketServer as NodeWebSocketServer } from "npm:ws@8.23.0";
import type { WebSocketClient } from "../client.ts";
import { ConnectionClosedError, HandshakeError } from "../errors.ts";
import { reconnecting, type ReconnectOptions } from "../reconnect.ts";
import { serve } from "../server.ts";
import { makeCertificate, opensslAvailable } from "./_tls.ts";
import { deadline } from "./_util.ts";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/** A port on 127.0.0.1 that nobody listens on (it was free a moment ago). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

/** What onRetry was called with. */
interface Retry {
  error: unknown;
  attempt: number;
  delay: number;
}

/**
 * Iterates `reconnecting(url, options)` with `body` until the body returns
 * true (then breaks) or the iteration ends; resolves with the retries seen
 * and the error it threw, within the deadline.
 */
async function drive(
  url: string,
  options: ReconnectOptions,
  body: (ws: WebSocketClient, index: number) => Promise<boolean> | boolean,
): Promise<{ retries: Retry[]; error: unknown; connections: number }> {
  const retries: Retry[] = [];
  let connections = 0;
  let error: unknown;
  await deadline(
    (async () => {
      try {
        for await (
          const ws of reconnecting(url, {
            ...options,
            onRetry: (error, attempt, delay) => {
              retries.push({ error, attempt, delay });
              options.onRetry?.(error, attempt, delay);
            },
          })
        ) {
          if (await body(ws, connections++)) break;
        }
      } catch (thrown) {
        error = thrown;
      }
    })(),
    "reconnecting loop",
  );
  return { retries, error, connections };
}

/** Reads `ws` to its end; resolves with its messages. */
async function readAll(ws: WebSocketClient): Promise<unknown[]> {
  const messages: unknown[] = [];
  for await (const message of ws) messages.push(message);
  return messages;
}

/** A raw TCP server that runs `onConnection` for each accepted socket. */
function rawServer(
  onConnection: (conn: Deno.Conn) => Promise<void>,
): { port: number } & AsyncDisposable {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const tasks = new Set<Promise<void>>();
  const loop = (async () => {
    for await (const conn of listener) {
      const task = onConnection(conn)
        .catch(() => {})
        .finally(() => {
          try {
            conn.close();
          } catch {
            // Closed already.
          }
          tasks.delete(task);
        });
      tasks.add(task);
    }
  })().catch(() => {});
  return {
    port: listener.addr.port,
    async [Symbol.asyncDispose]() {
      listener.close();
      await loop;
      await Promise.all(tasks);
    },
  };
}

/** Reads from `conn` until the end of an HTTP request head. */
async function readRequestHead(conn: Deno.Conn): Promise<string> {
  const buffer = new Uint8Array(16_384);
  let text = "";
  while (!text.includes("\r\n\r\n")) {
    const count = await conn.read(buffer);
    if (count === null) break;
    text += new TextDecoder().decode(buffer.subarray(0, count));
  }
  return text;
}

// ---------------------------------------------------------------------------
// Reconnecting after a close
// ---------------------------------------------------------------------------

Deno.test("reconnecting() reconnects each time serve() closes the connection", async () => {
  let visits = 0;
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (ws) => {
    await ws.send(`visit ${++visits}`);
    await ws.close(4001, "again");
  });
  const seen: unknown[] = [];
  const { retries, error } = await drive(
    `ws://127.0.0.1:${server.addr.port}/`,
    { initialDelay: 2 },
    async (ws) => {
      seen.push(...await readAll(ws));
      return seen.length === 3;
    },
  );
  assert.equal(error, undefined);
  assert.deepEqual(seen, ["visit 1", "visit 2", "visit 3"]);
  assert.equal(retries.length, 2);
  for (const { error } of retries) {
    assert.ok(error instanceof ConnectionClosedError);
    assert.equal(error.code, 4001);
    assert.equal(error.reason, "again");
  }
});

Deno.test("reconnecting() reconnects each time Deno.serve closes the connection", async () => {
  let visits = 0;
  await using server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen() {},
  }, (request) => {
    const { socket, response } = Deno.upgradeWebSocket(request);
    socket.onopen = () => {
      socket.send(`visit ${++visits}`);
      socket.close(4002, "later");
    };
    return response;
  });
  const seen: unknown[] = [];
  const { retries, error } = await drive(
    `ws://127.0.0.1:${server.addr.port}/`,
    { initialDelay: 2 },
    async (ws) => {
      seen.push(...await readAll(ws));
      return seen.length === 3;
    },
  );
  assert.equal(error, undefined);
  assert.deepEqual(seen, ["visit 1", "visit 2", "visit 3"]);
  assert.deepEqual(
    retries.map(({ error }) => (error as ConnectionClosedError).code),
    [4002, 4002],
  );
});

Deno.test("reconnecting() waits for the previous connection to close before connecting again", async () => {
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (ws) => {
    for await (const message of ws) await ws.send(message);
  });
  let previous: WebSocketClient | undefined;
  const { error, connections } = await drive(
    `ws://127.0.0.1:${server.addr.port}/`,
    { initialDelay: 0 },
    (ws, index) => {
      // Each connection starts once the one before has closed.
      assert.equal(previous?.isOpen ?? false, false);
      previous = ws;
      if (index === 2) return true;
      // The body returns at once; the connection stays open a while.
      setTimeout(() => ws.close(), 20);
      return false;
    },
  );
  assert.equal(error, undefined);
  assert.equal(connections, 3);
});

// ---------------------------------------------------------------------------
// Which failures are retried
// ---------------------------------------------------------------------------

Deno.test("reconnecting() retries while the port refuses, and connects once a server listens", async () => {
  const port = freePort();
  let server: ReturnType<typeof serve> | undefined;
  try {
    const { retries, error, connections } = await drive(
      `ws://127.0.0.1:${port}/`,
      {
        initialDelay: 2,
        onRetry: (_error, attempt) => {
          if (attempt === 3) {
            server = serve(
              { hostname: "127.0.0.1", port },
              (ws) => ws.send("up"),
            );
          }
        },
      },
      async (ws) => {
        assert.deepEqual(await readAll(ws), ["up"]);
        return true;
      },
    );
    assert.equal(error, undefined);
    assert.equal(connections, 1);
    assert.deepEqual(retries.map(({ attempt }) => attempt), [1, 2, 3]);
    for (const { error } of retries) {
      assert.ok(error instanceof Error);
      assert.equal(error.name, "ConnectionRefused");
    }
  } finally {
    await server?.shutdown();
  }
});

Deno.test("reconnecting() retries 503 from serve() and throws 403 at once", async () => {
  const answers = [503, 503, 101, 403];
  const seen: number[] = [];
  await using server = serve({
    hostname: "127.0.0.1",
    port: 0,
    upgrade: () => {
      const status = answers.shift() ?? 403;
      seen.push(status);
      return status === 101 ? undefined : new Response("busy", { status });
    },
  }, async (ws) => {
    await ws.close();
  });
  const { retries, error, connections } = await drive(
    `ws://127.0.0.1:${server.addr.port}/`,
    { initialDelay: 2, stableAfter: 0 },
    async (ws) => {
      await ws.closed;
      return false;
    },
  );
  assert.equal(connections, 1);
  assert.deepEqual(seen, [503, 503, 101, 403]);
  assert.deepEqual(
    retries.map(({ error }) =>
      error instanceof HandshakeError
        ? error.status
        : (error as ConnectionClosedError).code
    ),
    [503, 503, 1000],
  );
  assert.ok(error instanceof HandshakeError);
  assert.equal(error.status, 403);
  assert.equal(new TextDecoder().decode(error.body), "busy");
});

Deno.test("reconnecting() retries 503 and 429 from Node's ws and throws its 401", async () => {
  const answers = [503, 429, 401];
  const server = http.createServer();
  const wss = new NodeWebSocketServer({
    server,
    verifyClient: (_info, callback) =>
      callback(false, answers.shift() ?? 401, "no"),
  });
  const listening = Promise.withResolvers<void>();
  server.listen(0, "127.0.0.1", () => listening.resolve());
  await deadline(listening.promise, "ws server listening");
  const address = server.address();
  assert.ok(address !== null && typeof address === "object");
  try {
    const { retries, error, connections } = await drive(
      `ws://127.0.0.1:${address.port}/`,
      { initialDelay: 2 },
      () => true,
    );
    assert.equal(connections, 0);
    assert.deepEqual(
      retries.map(({ error }) => (error as HandshakeError).status),
      [503, 429],
    );
    assert.ok(error instanceof HandshakeError);
    assert.equal(error.status, 401);
  } finally {
    const closed = Promise.withResolvers<void>();
    wss.close();
    server.close(() => closed.resolve());
    server.closeAllConnections();
    await deadline(closed.promise, "ws server close");
  }
});

Deno.test("reconnecting() waits at least a refusal's Retry-After, within maxDelay", async () => {
  const answers: Array<[number, Record<string, string>]> = [
    [503, { "Retry-After": "1" }],
    [429, { "Retry-After": "0" }],
    [503, {}],
  ];
  await using server = serve({
    hostname: "127.0.0.1",
    port: 0,
    upgrade: () => {
      const answer = answers.shift();
      return answer === undefined
        ? undefined
        : new Response(null, { status: answer[0], headers: answer[1] });
    },
  }, (ws) => ws.send("hi"));
  const { retries, error } = await drive(
    `ws://127.0.0.1:${server.addr.port}/`,
    { initialDelay: 0, maxDelay: 15, random: () => 0 },
    () => true,
  );
  assert.equal(error, undefined);
  // 1 s asked for, 15 ms allowed; then none asked for, and no jitter.
  assert.deepEqual(retries.map(({ delay }) => delay), [15, 0, 0]);
});

Deno.test("reconnecting() throws the last failure after maxRetries in a row", async () => {
  let requests = 0;
  await using server = serve({
    hostname: "127.0.0.1",
    port: 0,
    upgrade: () => {
      requests++;
      return new Response(null, { status: 502 });
    },
  }, () => {});
  const { retries, error } = await drive(
    `ws://127.0.0.1:${server.addr.port}/`,
    { initialDelay: 1, maxRetries: 2 },
    () => true,
  );
  assert.equal(retries.length, 2);
  assert.equal(requests, 3);
  assert.ok(error instanceof HandshakeError);
  assert.equal(error.status, 502);

  const none = await drive(
    `ws://127.0.0.1:${server.addr.port}/`,
    { maxRetries: 0 },
    () => true,
  );
  assert.equal(none.retries.length, 0);
  assert.ok(none.error instanceof HandshakeError);
});

Deno.test("reconnecting() retries a server that closes before answering, not one that answers garbage", async () => {
  {
    await using server = rawServer(async (conn) => {
      await readRequestHead(conn);
    });
    const { retries, error } = await drive(
      `ws://127.0.0.1:${server.port}/`,
      { initialDelay: 1, maxRetries: 2 },
      () => true,
    );
    assert.equal(retries.length, 2);
    assert.ok(error instanceof HandshakeError);
    assert.match(error.message, /connection closed/);
  }
  {
    await using server = rawServer(async (conn) => {
      await readRequestHead(conn);
      await conn.write(new TextEncoder().encode("HTTP/1.1 503 Busy\n\n"));
    });
    const { retries, error } = await drive(
      `ws://127.0.0.1:${server.port}/`,
      { initialDelay: 1 },
      () => true,
    );
    assert.equal(retries.length, 0);
    assert.ok(error instanceof HandshakeError);
    assert.match(error.message, /bare LF/);
  }
});

Deno.test("reconnecting() retries a handshake timeout", async () => {
  // Reads the request and never answers (until the client gives up).
  await using server = rawServer(async (conn) => {
    await readRequestHead(conn);
    await conn.read(new Uint8Array(1));
  });
  const { retries, error } = await drive(
    `ws://127.0.0.1:${server.port}/`,
    { initialDelay: 1, maxRetries: 1, handshakeTimeout: 50 },
    () => true,
  );
  assert.equal(retries.length, 1);
  assert.ok(error instanceof DOMException);
  assert.equal(error.name, "TimeoutError");
});

Deno.test("reconnecting() retries a failed DNS lookup", async () => {
  // RFC 6761 §6.4: .invalid never resolves. A resolver that does not answer
  // in time gives a TimeoutError, retried too.
  const { retries, error } = await drive(
    "ws://reconnect-test.invalid/",
    { initialDelay: 1, maxRetries: 1, handshakeTimeout: 2_000, proxy: false },
    () => true,
  );
  assert.equal(retries.length, 1);
  assert.ok(error instanceof Error);
  assert.ok(
    /^failed to lookup address information/.test(error.message) ||
      error.name === "TimeoutError",
    String(error),
  );
});

Deno.test("reconnecting() throws a wrong Sec-WebSocket-Accept at once", async () => {
  await using server = rawServer(async (conn) => {
    await readRequestHead(conn);
    await conn.write(
      new TextEncoder().encode(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: d3Jvbmc=\r\n\r\n",
      ),
    );
  });
  const { retries, error } = await drive(
    `ws://127.0.0.1:${server.port}/`,
    { initialDelay: 1 },
    () => true,
  );
  assert.equal(retries.length, 0);
  assert.ok(error instanceof HandshakeError);
  assert.equal(error.header, "sec-websocket-accept");
});

Deno.test({
  name: "reconnecting() throws a certificate error at once",
  ignore: !opensslAvailable,
  async fn() {
    const { cert, key } = await makeCertificate();
    await using server = serve(
      { hostname: "127.0.0.1", port: 0, cert, key },
      () => {},
    );
    // Not given the certificate as a CA: the system's CAs do not know it.
    const { retries, error } = await drive(
      `wss://127.0.0.1:${server.addr.port}/`,
      { initialDelay: 1 },
      () => true,
    );
    assert.equal(retries.length, 0);
    assert.ok(error instanceof Error);
    assert.equal(error.name, "InvalidData");
  },
});

// ---------------------------------------------------------------------------
// The backoff
// ---------------------------------------------------------------------------

Deno.test("reconnecting() grows the ceiling of the wait by factor up to maxDelay", async () => {
  const { retries, error } = await drive(
    `ws://127.0.0.1:${freePort()}/`,
    { initialDelay: 1, factor: 2, maxDelay: 8, maxRetries: 6, random: () => 1 },
    () => true,
  );
  assert.equal((error as Error).name, "ConnectionRefused");
  assert.deepEqual(retries.map(({ delay }) => delay), [1, 2, 4, 8, 8, 8]);
  assert.deepEqual(retries.map(({ attempt }) => attempt), [1, 2, 3, 4, 5, 6]);
});

Deno.test("reconnecting() waits a random part of the ceiling (full jitter)", async () => {
  const jitter = [0.5, 0.1, 1, 0.25, 0];
  const { retries } = await drive(
    `ws://127.0.0.1:${freePort()}/`,
    {
      initialDelay: 10,
      factor: 3,
      maxDelay: 100,
      maxRetries: 5,
      random: () => jitter.shift()!,
    },
    () => true,
  );
  // Ceilings 10, 30, 90, 100, 100.
  assert.deepEqual(retries.map(({ delay }) => delay), [5, 3, 90, 25, 0]);

  // With Math.random, every wait is within its ceiling.
  const random = await drive(
    `ws://127.0.0.1:${freePort()}/`,
    { initialDelay: 4, factor: 2, maxDelay: 16, maxRetries: 8 },
    () => true,
  );
  const ceilings = [4, 8, 16, 16, 16, 16, 16, 16];
  assert.equal(random.retries.length, 8);
  random.retries.forEach(({ delay }, i) => {
    assert.ok(delay >= 0 && delay <= ceilings[i]!, `delay ${i}: ${delay}`);
  });
});

Deno.test("reconnecting() keeps backing off from a server that accepts and closes at once", async () => {
  await using server = serve(
    { hostname: "127.0.0.1", port: 0 },
    async (ws) => {
      await ws.close();
    },
  );
  const url = `ws://127.0.0.1:${server.addr.port}/`;
  const options = { initialDelay: 1, maxDelay: 16, random: () => 1 };
  const quick = await drive(url, options, async (ws, index) => {
    await ws.closed;
    return index === 6;
  });
  assert.equal(quick.error, undefined);
  assert.deepEqual(quick.retries.map(({ delay }) => delay), [
    1,
    2,
    4,
    8,
    16,
    16,
  ]);
  for (const { error } of quick.retries) {
    assert.ok(error instanceof ConnectionClosedError);
    assert.equal(error.code, 1000);
  }

  // Connections that count as stable start the backoff over each time.
  const stable = await drive(
    url,
    { ...options, stableAfter: 0 },
    async (ws, index) => {
      await ws.closed;
      return index === 4;
    },
  );
  assert.deepEqual(stable.retries.map(({ delay }) => delay), [1, 1, 1, 1]);
  assert.deepEqual(stable.retries.map(({ attempt }) => attempt), [1, 1, 1, 1]);
});

Deno.test("reconnecting() starts the backoff over after a stable connection, not after a successful connect alone", async () => {
  // Refuses twice, accepts (the connection closes at once), refuses twice.
  const answers = [503, 503, 101, 503, 503, 101];
  await using server = serve({
    hostname: "127.0.0.1",
    port: 0,
    upgrade: () => {
      const status = answers.shift() ?? 101;
      return status === 101 ? undefined : new Response(null, { status });
    },
  }, async (ws) => {
    await ws.close();
  });
  const { retries } = await drive(
    `ws://127.0.0.1:${server.addr.port}/`,
    { initialDelay: 1, maxDelay: 100, random: () => 1 },
    async (ws, index) => {
      await ws.closed;
      return index === 1;
    },
  );
  assert.deepEqual(retries.map(({ delay }) => delay), [1, 2, 4, 8, 16]);
});

// ---------------------------------------------------------------------------
// Ending: abort, break, bad options
// ---------------------------------------------------------------------------

Deno.test("reconnecting() ends at once when the signal aborts during a wait, and leaves no timer", async () => {
  // Deno's sanitizers do not see a pending timer: watch setTimeout and
  // clearTimeout for the wait's.
  const { setTimeout: realSet, clearTimeout: realClear } = globalThis;
  const waits = new Set<unknown>();
  const cleared = new Set<unknown>();
  globalThis.setTimeout = ((handler: () => void, ms?: number) => {
    const id = realSet(handler, ms);
    if (ms === 600_000) waits.add(id);
    return id;
  }) as typeof setTimeout;
  globalThis.clearTimeout = (id: Parameters<typeof clearTimeout>[0]) => {
    cleared.add(id);
    realClear(id);
  };
  try {
    const controller = new AbortController();
    const { retries, error } = await drive(
      `ws://127.0.0.1:${freePort()}/`,
      {
        // A wait far longer than the test's deadline.
        initialDelay: 600_000,
        maxDelay: 600_000,
        random: () => 1,
        signal: controller.signal,
        onRetry: () => queueMicrotask(() => controller.abort()),
      },
      () => true,
    );
    assert.equal(retries.length, 1);
    assert.equal(retries[0]!.delay, 600_000);
    assert.ok(error instanceof DOMException);
    assert.equal(error.name, "AbortError");
    assert.equal(waits.size, 1);
    for (const id of waits) {
      assert.ok(cleared.has(id), "the wait's timer is left");
    }
  } finally {
    globalThis.setTimeout = realSet;
    globalThis.clearTimeout = realClear;
  }
});

Deno.test("reconnecting() closes the open connection with 1001 when the signal aborts, then throws", async () => {
  const closes: number[] = [];
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (ws) => {
    closes.push((await ws.closed).code);
  });
  const controller = new AbortController();
  const { error, connections } = await drive(
    `ws://127.0.0.1:${server.addr.port}/`,
    { initialDelay: 1, signal: controller.signal },
    async (ws) => {
      controller.abort();
      await ws.closed;
      return false;
    },
  );
  assert.equal(connections, 1);
  assert.ok(error instanceof DOMException);
  assert.equal(error.name, "AbortError");
  await server.shutdown();
  assert.deepEqual(closes, [1001]);
});

Deno.test("reconnecting() closes the connection with 1000 on break, on a throw and on dispose", async () => {
  const closes: number[] = [];
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (ws) => {
    closes.push((await ws.closed).code);
  });
  const url = `ws://127.0.0.1:${server.addr.port}/`;
  let kept: WebSocketClient | undefined;
  for await (const ws of reconnecting(url)) {
    kept = ws;
    break;
  }
  assert.equal(kept?.isOpen, false);
  assert.equal((await kept!.closed).code, 1000);

  await assert.rejects(async () => {
    for await (const ws of reconnecting(url)) {
      kept = ws;
      throw new Error("oops");
    }
  }, /oops/);
  assert.equal(kept?.isOpen, false);

  {
    await using connections = reconnecting(url);
    const first = await connections.next();
    assert.equal(first.done, false);
    kept = first.value as WebSocketClient;
    assert.equal(kept.isOpen, true);
  }
  assert.equal(kept.isOpen, false);
  await server.shutdown();
  assert.deepEqual(closes, [1000, 1000, 1000]);
});

Deno.test("reconnecting() refuses bad backoff options at once, and bad connect options before any I/O", async () => {
  const url = "ws://127.0.0.1:9/";
  const bad: Array<[ReconnectOptions, RegExp]> = [
    [{ maxDelay: -1 }, /maxDelay is -1/],
    [{ maxDelay: 2 ** 31 }, /maxDelay is 2147483648/],
    [{ maxDelay: NaN }, /maxDelay is NaN/],
    [{ initialDelay: -1 }, /initialDelay is -1/],
    [{ initialDelay: 200, maxDelay: 100 }, /initialDelay is 200.*\(100\)/],
    [{ factor: 0.5 }, /factor is 0.5/],
    [{ factor: Infinity }, /factor is Infinity/],
    [{ maxRetries: 1.5 }, /maxRetries is 1.5/],
    [{ maxRetries: -1 }, /maxRetries is -1/],
    [{ stableAfter: -1 }, /stableAfter is -1/],
    [{ stableAfter: NaN }, /stableAfter is NaN/],
  ];
  for (const [options, message] of bad) {
    assert.throws(() => reconnecting(url, options), (error: unknown) => {
      assert.ok(error instanceof RangeError);
      assert.match(error.message, /^Cannot reconnect: /);
      assert.match(error.message, message);
      return true;
    });
  }
  assert.throws(
    // @ts-expect-error: not a function.
    () => reconnecting(url, { onRetry: 1 }),
    TypeError,
  );
  // The backoff's own defaults fit a small maxDelay.
  assert.doesNotThrow(() => reconnecting(url, { maxDelay: 10 }));

  // connect()'s checks come from the first iteration, not retried.
  const cases: Array<[string, ReconnectOptions, ErrorConstructor]> = [
    ["ftp://127.0.0.1/", {}, TypeError],
    ["ws://user:%zz@127.0.0.1/", {}, TypeError],
    [url, { handshakeTimeout: 0 }, RangeError],
    [url, { headers: { Upgrade: "h2c" } }, TypeError],
  ];
  for (const [target, options, type] of cases) {
    const { retries, error } = await drive(target, options, () => true);
    assert.equal(retries.length, 0);
    assert.ok(error instanceof type, String(error));
    assert.doesNotMatch((error as Error).message, /%zz/);
  }

  // A random() out of range is refused before its wait.
  const { error } = await drive(
    `ws://127.0.0.1:${freePort()}/`,
    { random: () => 2 },
    () => true,
  );
  assert.ok(error instanceof RangeError);
  assert.match(error.message, /random\(\) returned 2/);
});
