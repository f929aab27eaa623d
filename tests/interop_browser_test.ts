// Copyright 2026 the @rfc6455/websocket authors. MIT license.
// Interop with a browser: headless Chromium (Debian's `chromium`, which
// .ci/run installs). Chromium's own WebSocket client, on a page that serve()
// itself serves, runs the message matrix against serve(), with and without
// permessage-deflate, and meets the Origin check and the close handshake in
// both directions, over ws: and over wss: (from an https: page, with a
// certificate made in the test that Chromium is told to trust by its key
// hash). The test drives the browser with the Chrome DevTools
// Protocol over connect(): Chromium's DevTools server is one more peer that
// nobody here wrote.

import assert from "node:assert/strict";
import { connect, type WebSocketClient } from "../client.ts";
import type { CloseInfo, WebSocketSession } from "../connection.ts";
import { HandshakeError } from "../errors.ts";
import { serve, type ServeOptions, type WebSocketServer } from "../server.ts";
import { deadline } from "./_util.ts";
import { makeCertificate, opensslAvailable } from "./_tls.ts";
import { echoHandler as echo } from "../examples/echo_handler.ts";

// ---------------------------------------------------------------------------
// The browser
// ---------------------------------------------------------------------------

/** Chromium's executable: `$CHROMIUM`, or where Debian and others put it. */
function findChromium(): string | undefined {
  const candidates = [
    Deno.env.get("CHROMIUM"),
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
  ];
  for (const path of candidates) {
    if (path === undefined || path === "") continue;
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // Not there: try the next one.
    }
  }
  return undefined;
}

const CHROMIUM = findChromium();
if (CHROMIUM === undefined) {
  // deno-lint-ignore no-console
  console.warn(
    "Skipping the browser interop tests: no Chromium (install Debian's chromium, or set CHROMIUM)",
  );
}

/** How long the browser may take to start, and to run one page script. */
const LAUNCH_WAIT = 30_000;
const SCRIPT_WAIT = 60_000;

type Json = Record<string, unknown>;

/**
 * A headless Chromium, driven over the Chrome DevTools Protocol through
 * connect(). Disposing closes it (killing it if it does not exit) and
 * removes its profile directory.
 */
class Browser implements AsyncDisposable {
  readonly cdp: WebSocketClient;
  readonly #child: Deno.ChildProcess;
  readonly #profile: string;
  readonly #log: { text: string; done: Promise<void> };
  readonly #pending = new Map<number, PromiseWithResolvers<Json>>();
  readonly #reading: Promise<void>;
  #lastId = 0;

  private constructor(
    child: Deno.ChildProcess,
    profile: string,
    log: { text: string; done: Promise<void> },
    cdp: WebSocketClient,
  ) {
    this.#child = child;
    this.#profile = profile;
    this.#log = log;
    this.cdp = cdp;
    this.#reading = this.#read();
  }

  /** Starts Chromium with `extraArgs` besides the headless ones. */
  static async launch(
    executable: string,
    extraArgs: string[] = [],
  ): Promise<Browser> {
    const profile = await Deno.makeTempDir({ prefix: "rfc6455-chromium-" });
    const child = new Deno.Command(executable, {
      args: [
        "--headless",
        "--no-sandbox", // CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        `--user-data-dir=${profile}`,
        ...extraArgs,
        "about:blank",
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    // Chromium prints the DevTools URL on stderr, then keeps logging there:
    // the log is read to its end (and its tail kept for error messages).
    const url = Promise.withResolvers<string>();
    const log = { text: "", done: Promise.resolve() };
    log.done = (async () => {
      for await (
        const text of child.stderr.pipeThrough(new TextDecoderStream())
      ) {
        log.text = (log.text + text).slice(-16_384);
        const match = /DevTools listening on (ws:\/\/\S+)/.exec(log.text);
        if (match !== null) url.resolve(match[1]!);
      }
      url.reject(new Error(`Chromium exited: ${log.text}`));
    })();
    try {
      const address = await deadline(url.promise, "Chromium", LAUNCH_WAIT);
      const cdp = await connect(address, { maxMessageSize: 64 << 20 });
      return new Browser(child, profile, log, cdp);
    } catch (error) {
      await stop(child, log.done);
      await Deno.remove(profile, { recursive: true }).catch(() => {});
      throw error;
    }
  }

  async #read(): Promise<void> {
    try {
      for await (const message of this.cdp) {
        const reply = JSON.parse(String(message)) as Json;
        if (typeof reply.id !== "number") continue; // an event
        const pending = this.#pending.get(reply.id);
        this.#pending.delete(reply.id);
        const error = reply.error as { message?: string } | undefined;
        if (error !== undefined) {
          pending?.reject(new Error(`DevTools: ${error.message}`));
        } else {
          pending?.resolve((reply.result ?? {}) as Json);
        }
      }
    } catch {
      // The browser went away: the calls still pending fail below.
    }
    for (const pending of this.#pending.values()) {
      pending.reject(new Error("DevTools connection closed"));
    }
    this.#pending.clear();
  }

  /** Calls one DevTools method; `sessionId` addresses a page. */
  call(method: string, params: Json = {}, sessionId?: string): Promise<Json> {
    const id = ++this.#lastId;
    const pending = Promise.withResolvers<Json>();
    this.#pending.set(id, pending);
    const request: Json = { id, method, params };
    if (sessionId !== undefined) request.sessionId = sessionId;
    this.cdp.send(JSON.stringify(request)).catch(pending.reject);
    return deadline(pending.promise, method, SCRIPT_WAIT);
  }

  /**
   * Opens a tab at `url`; resolves with its session once it has loaded.
   * Disposing the tab closes it.
   */
  async open(url: string): Promise<AsyncDisposable & { session: string }> {
    const { targetId } = await this.call("Target.createTarget", { url });
    const close = async () => {
      await this.call("Target.closeTarget", { targetId }).catch(() => {});
    };
    const { sessionId } = await this.call("Target.attachToTarget", {
      targetId,
      flatten: true,
    });
    assert.equal(typeof sessionId, "string");
    const session = sessionId as string;
    for (let i = 0; i < 200; i++) {
      const state = await this.evaluate(
        session,
        "[location.href, document.readyState]",
      );
      if (JSON.stringify(state) === JSON.stringify([url, "complete"])) {
        return { session, [Symbol.asyncDispose]: close };
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    await close();
    throw new Error(`The page ${url} did not load`);
  }

  /** Runs an expression in a page; awaits a promise and returns its value. */
  async evaluate(sessionId: string, expression: string): Promise<unknown> {
    const reply = await this.call("Runtime.evaluate", {
      expression,
      awaitPromise: true,
      returnByValue: true,
    }, sessionId);
    const thrown = reply.exceptionDetails as Json | undefined;
    if (thrown !== undefined) {
      const exception = thrown.exception as Json | undefined;
      throw new Error(
        `The page threw: ${exception?.description ?? thrown.text}`,
      );
    }
    return (reply.result as Json).value;
  }

  /** Calls `fn` (self-contained: its source runs in the page) with `args`. */
  run<A extends unknown[], R>(
    sessionId: string,
    fn: (...args: A) => Promise<R>,
    ...args: A
  ): Promise<R> {
    const call = `(${fn.toString()})(...${JSON.stringify(args)})`;
    return this.evaluate(sessionId, call) as Promise<R>;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    // Browser.close ends the process; its reply may not make it out.
    await this.call("Browser.close").catch(() => {});
    await deadline(this.cdp.closed, "DevTools close", 10_000).catch(() => {});
    await this.#reading;
    await stop(this.#child, this.#log.done);
    await Deno.remove(this.#profile, { recursive: true }).catch(() => {});
  }
}

/**
 * The base64 SHA-256 of the public key (SubjectPublicKeyInfo) of a P-256
 * private key in PKCS #8 PEM: what Chromium's
 * `--ignore-certificate-errors-spki-list` takes to trust exactly the
 * certificates of that key, and no other.
 */
async function spkiHash(keyPem: string): Promise<string> {
  const der = Uint8Array.fromBase64(
    keyPem.replace(/-----[A-Z ]+-----/g, "").replace(/\s+/g, ""),
  );
  const algorithm = { name: "ECDSA", namedCurve: "P-256" };
  const privateKey = await crypto.subtle.importKey(
    "pkcs8",
    der,
    algorithm,
    true,
    ["sign"],
  );
  // Web Crypto exports no SPKI from a private key: go through its JWK.
  const { d: _, ...jwk } = await crypto.subtle.exportKey("jwk", privateKey);
  const publicKey = await crypto.subtle.importKey(
    "jwk",
    { ...jwk, key_ops: ["verify"] },
    algorithm,
    true,
    ["verify"],
  );
  const spki = await crypto.subtle.exportKey("spki", publicKey);
  return new Uint8Array(await crypto.subtle.digest("SHA-256", spki))
    .toBase64();
}

/** Waits for a child to exit, killing it after 10 s, and for its log. */
async function stop(child: Deno.ChildProcess, log: Promise<void>) {
  try {
    await deadline(child.status, "Chromium to exit", 10_000);
  } catch {
    child.kill("SIGKILL");
    await child.status;
  }
  await log.catch(() => {});
}

// ---------------------------------------------------------------------------
// What runs in the page (self-contained: only the browser's globals)
// ---------------------------------------------------------------------------

interface PageClose {
  code: number;
  reason: string;
  wasClean: boolean;
}

interface PageEchoResult {
  protocol: string;
  extensions: string;
  echoed: number;
  failures: string[];
  close: PageClose;
}

/**
 * Opens a WebSocket, sends every message of the matrix and checks each echo
 * (type and content), pipelines 1,000 messages, then closes with 4000.
 */
async function pageEcho(
  url: string,
  protocols: string[],
): Promise<PageEchoResult> {
  const ws = new WebSocket(url, protocols);
  ws.binaryType = "arraybuffer";
  const inbox: (string | ArrayBuffer)[] = [];
  let waiting: ((data: string | ArrayBuffer) => void) | undefined;
  const closed = new Promise<PageClose>((resolve) => {
    ws.onclose = (event) =>
      resolve({
        code: event.code,
        reason: event.reason,
        wasClean: event.wasClean,
      });
  });
  ws.onmessage = (event) => {
    const resolve = waiting;
    waiting = undefined;
    if (resolve !== undefined) resolve(event.data);
    else inbox.push(event.data);
  };
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error(`${url} failed before it opened`));
  });
  const next = (): Promise<string | ArrayBuffer> => {
    if (inbox.length > 0) return Promise.resolve(inbox.shift()!);
    return Promise.race([
      new Promise<string | ArrayBuffer>((resolve) => waiting = resolve),
      closed.then((close): never => {
        throw new Error(`closed (${close.code}) while waiting for an echo`);
      }),
    ]);
  };
  // Incompressible bytes (xorshift32) and compressible ones.
  const noise = (size: number, seed: number): Uint8Array => {
    const bytes = new Uint8Array(size);
    let x = seed | 1;
    for (let i = 0; i < size; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      bytes[i] = x & 0xff;
    }
    return bytes;
  };
  const messages: (string | Uint8Array)[] = [
    "",
    "hello",
    "héllo wörld ✓ 🙂 \u{10FFFF}",
    "a".repeat(125),
    "a".repeat(126),
    "é✓🙂".repeat(10_000),
    JSON.stringify({ items: Array.from({ length: 2000 }, (_, i) => i) }),
  ];
  for (const size of [0, 1, 125, 126, 65535, 65536, 1 << 20, 16 << 20]) {
    messages.push(noise(size, size + 7));
  }
  messages.push(new Uint8Array(1 << 20).fill(0x61));
  const failures: string[] = [];
  const same = (a: Uint8Array, b: Uint8Array): boolean => {
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  };
  let echoed = 0;
  for (const message of messages) {
    ws.send(message);
    const echo = await next();
    const name = typeof message === "string"
      ? `text of ${message.length} chars`
      : `binary of ${message.length} bytes`;
    if (typeof message === "string") {
      if (echo !== message) failures.push(`${name}: wrong echo`);
    } else if (!(echo instanceof ArrayBuffer)) {
      failures.push(`${name}: echoed as text`);
    } else if (!same(new Uint8Array(echo), message)) {
      failures.push(`${name}: wrong echo`);
    }
    echoed++;
  }
  for (let i = 0; i < 1000; i++) ws.send(`message ${i}`);
  for (let i = 0; i < 1000; i++) {
    const echo = await next();
    if (echo !== `message ${i}`) {
      failures.push(`pipelined message ${i}: got ${String(echo)}`);
      break;
    }
    echoed++;
  }
  const { protocol, extensions } = ws;
  ws.close(4000, "browser done");
  return { protocol, extensions, echoed, failures, close: await closed };
}

/** Opens a WebSocket and reports its first message and how it closed. */
async function pageOpen(
  url: string,
): Promise<{ opened: boolean; first: unknown; close: PageClose }> {
  const ws = new WebSocket(url);
  let opened = false;
  let first: unknown = null;
  ws.onopen = () => opened = true;
  ws.onmessage = (event) => first ??= event.data;
  const close = await new Promise<PageClose>((resolve) => {
    ws.onclose = (event) =>
      resolve({
        code: event.code,
        reason: event.reason,
        wasClean: event.wasClean,
      });
  });
  return { opened, first, close };
}

// ---------------------------------------------------------------------------
// The servers
// ---------------------------------------------------------------------------

const PAGE = "<!doctype html><meta charset=utf-8><title>rfc6455</title>";

/** What serve() saw of one connection. */
interface Seen {
  path: string;
  origin: string | null;
  userAgent: string | null;
  extensions: string;
  closed: Promise<CloseInfo>;
}

/**
 * serve() on 127.0.0.1 that serves a blank page on plain GETs, echoes on
 * every path but `/close` (where it sends "closing" and closes with 4001),
 * and keeps what it saw. With `cert` and `key` it is https: and wss:.
 */
function pageServer(options: ServeOptions = {}): {
  server: WebSocketServer;
  origin: string;
  seen: Seen[];
  errors: unknown[];
} {
  const seen: Seen[] = [];
  const errors: unknown[] = [];
  const server = serve({
    hostname: "127.0.0.1",
    port: 0,
    protocols: ["chat"],
    onRequest: () =>
      new Response(PAGE, { headers: { "content-type": "text/html" } }),
    onError: (error) => errors.push(error),
    ...options,
  }, async (ws: WebSocketSession, request: Request) => {
    const path = new URL(request.url).pathname;
    seen.push({
      path,
      origin: request.headers.get("origin"),
      userAgent: request.headers.get("user-agent"),
      extensions: ws.extensions,
      closed: ws.closed,
    });
    if (path === "/close") {
      await ws.send("closing");
      await ws.close(4001, "server done");
      return;
    }
    await echo(ws);
  });
  const scheme = options.cert === undefined ? "http" : "https";
  return {
    server,
    origin: `${scheme}://127.0.0.1:${server.addr.port}`,
    seen,
    errors,
  };
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

Deno.test({
  name: "Chromium's WebSocket against serve(), driven over connect()",
  ignore: CHROMIUM === undefined,
  async fn(t) {
    // The wss: step needs a certificate, trusted by its key alone.
    const certificate = opensslAvailable ? await makeCertificate() : undefined;
    const trust = certificate === undefined
      ? []
      : [`--ignore-certificate-errors-spki-list=${await spkiHash(
        certificate.key,
      )}`];
    await using browser = await Browser.launch(CHROMIUM!, trust);

    await t.step(
      "connect() talks to Chromium's DevTools server (permessage-deflate, ping)",
      async () => {
        assert.match(browser.cdp.extensions, /^permessage-deflate/);
        const version = await browser.call("Browser.getVersion");
        assert.match(String(version.product), /^(Headless)?Chrome\//);
        const rtt = await deadline(browser.cdp.ping(), "pong from Chromium");
        assert.ok(Number.isFinite(rtt) && rtt >= 0, `rtt ${rtt}`);
      },
    );

    for (
      const { deflate, tls } of [
        { deflate: true, tls: false },
        { deflate: false, tls: false },
        { deflate: true, tls: true },
      ]
    ) {
      await t.step({
        name: `RFC 6455 §5.6 the message matrix over ${
          tls ? "wss: from an https: page" : "ws:"
        }, ${deflate ? "with" : "without"} permessage-deflate`,
        ignore: tls && certificate === undefined,
        fn: async () => {
          const { server, origin, seen, errors } = pageServer({
            deflate,
            ...(tls ? certificate : {}),
          });
          try {
            await using tab = await browser.open(`${origin}/`);
            const result = await browser.run(
              tab.session,
              pageEcho,
              `${tls ? "wss" : "ws"}://127.0.0.1:${server.addr.port}/echo?x=1`,
              ["superchat", "chat"],
            );
            assert.deepEqual(result.failures, []);
            assert.equal(result.echoed, 16 + 1000);
            assert.equal(result.protocol, "chat");
            if (deflate) {
              assert.match(result.extensions, /^permessage-deflate/);
            } else {
              assert.equal(result.extensions, "");
            }
            assert.deepEqual(result.close, {
              code: 4000,
              reason: "browser done",
              wasClean: true,
            });
            // The server saw the browser's own handshake, and the close.
            assert.equal(seen.length, 1);
            assert.equal(seen[0]!.path, "/echo");
            assert.equal(seen[0]!.origin, origin);
            assert.match(seen[0]!.userAgent ?? "", /Chrome\//);
            assert.equal(seen[0]!.extensions, result.extensions);
            assert.deepEqual(
              await deadline(seen[0]!.closed, "server side closed"),
              { code: 4000, reason: "browser done", wasClean: true },
            );
            assert.deepEqual(errors, []);
          } finally {
            await server.shutdown();
          }
        },
      });
    }

    await t.step(
      "RFC 6455 §7.1.2 the server closes with 4001: the browser sees it cleanly",
      async () => {
        const { server, origin, seen } = pageServer();
        try {
          await using tab = await browser.open(`${origin}/`);
          const result = await browser.run(
            tab.session,
            pageOpen,
            `ws://127.0.0.1:${server.addr.port}/close`,
          );
          assert.deepEqual(result, {
            opened: true,
            first: "closing",
            close: { code: 4001, reason: "server done", wasClean: true },
          });
          assert.deepEqual(
            await deadline(seen[0]!.closed, "server side closed"),
            { code: 4001, reason: "server done", wasClean: true },
          );
        } finally {
          await server.shutdown();
        }
      },
    );

    await t.step(
      "RFC 6455 §10.2 a page from another origin gets 403",
      async () => {
        const target = pageServer();
        const other = pageServer();
        try {
          await using tab = await browser.open(`${other.origin}/`);
          const result = await browser.run(
            tab.session,
            pageOpen,
            `ws://127.0.0.1:${target.server.addr.port}/echo`,
          );
          assert.deepEqual(result, {
            opened: false,
            first: null,
            close: { code: 1006, reason: "", wasClean: false },
          });
          assert.equal(target.seen.length, 0);
          assert.equal(target.errors.length, 1);
          const error = target.errors[0];
          assert.ok(error instanceof HandshakeError, String(error));
          assert.equal(error.status, 403);
        } finally {
          await target.server.shutdown();
          await other.server.shutdown();
        }
      },
    );
  },
});
