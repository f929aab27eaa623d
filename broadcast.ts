// Copyright 2026 the @rfc6455/websocket authors. MIT license.
// This module is browser compatible: it uses the Web platform only, and does
// I/O only through the connections it is given.

/**
 * Broadcast and pub-sub topics over any connections: {@linkcode broadcast}
 * sends one message to many connections, {@linkcode Topics} subscribes
 * connections to named topics and publishes to them.
 *
 * A message is encoded once: every connection of {@linkcode serve} (or any
 * server-side {@linkcode WebSocketConnection}) queues the same frame bytes,
 * without encoding or copying the message again for each one. A connection
 * that does not read fast enough (a slow consumer) never makes the server
 * queue without limit: while more than `backpressureLimit` bytes wait to be
 * written to it, a message is not queued for it (`"skip"`, the default) or
 * the connection is closed with 1013 (`"drop"`); the result of every
 * broadcast names those connections.
 *
 * @example A chat room
 * ```ts
 * import { serve } from "@rfc6455/websocket/server";
 * import { Topics } from "@rfc6455/websocket/broadcast";
 * import assert from "node:assert/strict";
 *
 * const topics = new Topics();
 * const joined = Promise.withResolvers<void>();
 * await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (ws) => {
 *   topics.subscribe(ws, "room");
 *   if (topics.subscriberCount("room") === 2) joined.resolve();
 *   for await (const message of ws) topics.publish("room", message, { except: ws });
 * });
 * const url = `ws://127.0.0.1:${server.addr.port}/`;
 * const alice = new WebSocket(url);
 * const bob = new WebSocket(url);
 * await Promise.all([joined.promise, new Promise((open) => alice.onopen = open)]);
 * alice.onmessage = () => assert.fail("alice does not hear herself");
 * const heard = new Promise((resolve) => bob.onmessage = (event) => resolve(event.data));
 * alice.send("hi bob");
 * assert.equal(await heard, "hi bob");
 * const closed = [alice, bob].map((ws) => new Promise((done) => ws.onclose = done));
 * alice.close();
 * bob.close();
 * await Promise.all(closed);
 * ```
 *
 * @module
 */

import { queueFrame } from "./_broadcast.ts";
import {
  WebSocketConnection,
  type WebSocketData,
  type WebSocketSession,
} from "./connection.ts";
import { encodeFrame } from "./frame.ts";

/**
 * What a broadcast does with a slow consumer, a connection with more than
 * `backpressureLimit` bytes waiting to be written: `"skip"` does not queue
 * the message for it (it stays open and gets later messages once it has
 * caught up); `"drop"` closes it with 1013 (try again later).
 *
 * @example Dropping slow consumers
 * ```ts
 * import type { SlowConsumerPolicy } from "@rfc6455/websocket/broadcast";
 * import assert from "node:assert/strict";
 *
 * const policy: SlowConsumerPolicy = "drop";
 * assert.equal(policy, "drop");
 * ```
 */
export type SlowConsumerPolicy = "skip" | "drop";

/**
 * Options of a {@linkcode Topics}: how it treats slow consumers, and
 * whether it compresses. Sizes are in bytes.
 *
 * @example Tight limits for a ticker
 * ```ts
 * import { Topics, type TopicsOptions } from "@rfc6455/websocket/broadcast";
 *
 * const options: TopicsOptions = { backpressureLimit: 64 * 1024, slowConsumer: "drop" };
 * const topics = new Topics(options);
 * void topics;
 * ```
 */
export interface TopicsOptions {
  /**
   * The most bytes that may wait to be written to one connection, in bytes
   * (its `bufferedAmount`, with what waits to be compressed): a message
   * that would pass it is not queued, and `slowConsumer` says what becomes
   * of the connection. A connection with nothing queued always takes one
   * message, however large. The connection's own `maxBufferedAmount`
   * applies too.
   *
   * @default {1048576} (1 MiB)
   */
  backpressureLimit?: number;
  /**
   * What to do with a connection over `backpressureLimit`: `"skip"` the
   * message for it, or `"drop"` the connection (closed with 1013).
   *
   * @default {"skip"}
   */
  slowConsumer?: SlowConsumerPolicy;
  /**
   * Whether connections that negotiated permessage-deflate compress the
   * message, each with its own compression context: one compression per
   * connection, where the default sends every connection the same
   * uncompressed frame (RSV1 clear, which RFC 7692 §6 allows on any
   * message). `publish()` may say otherwise for one message.
   *
   * @default {false}
   */
  compress?: boolean;
}

/**
 * Options of one message: {@linkcode Topics.publish}'s, and with
 * {@linkcode TopicsOptions} those of {@linkcode broadcast}.
 *
 * @typeParam T The type of the connections.
 *
 * @example Relaying a message to everyone but its sender
 * ```ts
 * import type { PublishOptions } from "@rfc6455/websocket/broadcast";
 * import type { WebSocketSession } from "@rfc6455/websocket/connection";
 *
 * function relayOptions(sender: WebSocketSession): PublishOptions {
 *   return { except: sender, binary: false };
 * }
 * void relayOptions;
 * ```
 */
export interface PublishOptions<T extends WebSocketSession = WebSocketSession> {
  /**
   * Whether the message is binary; absent, a string is text and bytes are
   * binary. Bytes sent as text must be UTF-8.
   *
   * @default {undefined}
   */
  binary?: boolean;
  /**
   * Whether deflate connections compress it (see
   * {@linkcode TopicsOptions.compress}); absent, the `Topics`' choice.
   *
   * @default {undefined}
   */
  compress?: boolean;
  /**
   * A connection that does not get the message (its sender, say).
   *
   * @default {undefined}
   */
  except?: T;
}

/**
 * Options of {@linkcode broadcast}: those of a {@linkcode Topics} and of
 * one message.
 *
 * @typeParam T The type of the connections.
 *
 * @example Skipping connections with 64 KiB waiting
 * ```ts
 * import type { BroadcastOptions } from "@rfc6455/websocket/broadcast";
 *
 * const options: BroadcastOptions = { backpressureLimit: 65536, binary: true };
 * void options;
 * ```
 */
export interface BroadcastOptions<T extends WebSocketSession = WebSocketSession>
  extends TopicsOptions, PublishOptions<T> {}

/**
 * What a broadcast did: how many connections it queued the message for,
 * and the slow consumers it skipped or dropped.
 *
 * @typeParam T The type of the connections.
 *
 * @example Logging slow consumers
 * ```ts
 * import type { BroadcastResult } from "@rfc6455/websocket/broadcast";
 *
 * function report(result: BroadcastResult): string {
 *   return `${result.sent} sent, ${result.skipped.length} skipped, ${result.dropped.length} dropped`;
 * }
 * void report;
 * ```
 */
export interface BroadcastResult<
  T extends WebSocketSession = WebSocketSession,
> {
  /** The connections the message was queued for (or handed to `send()`). */
  sent: number;
  /** The slow consumers the message was not queued for (`"skip"`). */
  skipped: readonly T[];
  /** The slow consumers closed with 1013 (`"drop"`), without the message. */
  dropped: readonly T[];
}

/**
 * The close code a dropped slow consumer gets: 1013, try again later (the
 * server is closing the connection for a temporary condition: the client
 * may reconnect, and should catch up on what it missed).
 *
 * @example The value
 * ```ts
 * import { SLOW_CONSUMER_CLOSE_CODE } from "@rfc6455/websocket/broadcast";
 * import assert from "node:assert/strict";
 *
 * assert.equal(SLOW_CONSUMER_CLOSE_CODE, 1013);
 * ```
 */
export const SLOW_CONSUMER_CLOSE_CODE = 1013;

const DEFAULT_BACKPRESSURE_LIMIT = 1024 * 1024;
const SLOW_CONSUMER_REASON = "Slow consumer";
const NONE: readonly never[] = Object.freeze([]);
const encoder = new TextEncoder();

// The bytes handed to a connection's own send() (a deflate connection that
// compresses, a session of createFetchHandler) until that send settles: not
// in its bufferedAmount while they wait to be compressed. Counting them until
// the send settles may count a message twice (in bufferedAmount too, once
// compressed): a slow consumer is then found early, never late.
const pending = new WeakMap<WebSocketSession, number>();

interface Settings {
  backpressureLimit: number;
  slowConsumer: SlowConsumerPolicy;
  compress: boolean;
}

function settingsOf(options: TopicsOptions, action: string): Settings {
  const {
    backpressureLimit = DEFAULT_BACKPRESSURE_LIMIT,
    slowConsumer = "skip",
    compress = false,
  } = options;
  if (!Number.isSafeInteger(backpressureLimit) || backpressureLimit < 0) {
    throw new RangeError(
      `Cannot ${action}: backpressureLimit is ${backpressureLimit}, expected a non-negative integer`,
    );
  }
  if (slowConsumer !== "skip" && slowConsumer !== "drop") {
    throw new TypeError(
      `Cannot ${action}: slowConsumer is ${
        describe(slowConsumer)
      }, expected "skip" or "drop"`,
    );
  }
  checkBoolean(compress, "compress", action);
  return { backpressureLimit, slowConsumer, compress };
}

function checkBoolean(value: unknown, name: string, action: string): void {
  if (value !== undefined && typeof value !== "boolean") {
    throw new TypeError(
      `Cannot ${action}: ${name} is ${describe(value)}, expected a boolean`,
    );
  }
}

function describe(value: unknown): string {
  return typeof value === "string" ? `"${value}"` : typeof value;
}

/** A message encoded once, its frame made when a connection takes it. */
class Message {
  readonly opcode: number;
  readonly payload: Uint8Array;
  #frame: Uint8Array | undefined;

  constructor(
    data: WebSocketData,
    binary: boolean | undefined,
    action: string,
  ) {
    let bytes: Uint8Array;
    if (typeof data === "string") bytes = encoder.encode(data);
    else if (data instanceof ArrayBuffer) bytes = new Uint8Array(data);
    else if (ArrayBuffer.isView(data)) {
      bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    } else {
      throw new TypeError(
        `Cannot ${action}: data is ${
          data === null ? "null" : typeof data
        }, expected string, ArrayBuffer or ArrayBufferView`,
      );
    }
    checkBoolean(binary, "binary", action);
    this.opcode = (binary ?? typeof data !== "string") ? 0x2 : 0x1;
    this.payload = bytes;
  }

  /**
   * The frame (RFC 6455 §5.2, unmasked: a server's), which copies the
   * payload: later changes to the caller's bytes do not reach it.
   */
  get frame(): Uint8Array {
    this.#frame ??= encodeFrame({
      fin: true,
      rsv1: false,
      rsv2: false,
      rsv3: false,
      opcode: this.opcode,
      payload: this.payload,
    });
    return this.#frame;
  }

  /** The payload inside the frame: bytes that never change. */
  get ownPayload(): Uint8Array {
    const frame = this.frame;
    return frame.subarray(frame.length - this.payload.length);
  }
}

// Sends `message` to every connection of `targets` but `except`, by the
// rules of `settings`.
function deliver<T extends WebSocketSession>(
  targets: Iterable<T>,
  message: Message,
  settings: Settings,
  except: T | undefined,
): BroadcastResult<T> {
  const size = message.payload.length;
  const limit = settings.backpressureLimit;
  const compress = settings.compress;
  let sent = 0;
  let skipped: T[] | undefined;
  let dropped: T[] | undefined;
  const slow = (ws: T): void => {
    if (settings.slowConsumer === "skip") {
      (skipped ??= []).push(ws);
      return;
    }
    (dropped ??= []).push(ws);
    ws.close(SLOW_CONSUMER_CLOSE_CODE, SLOW_CONSUMER_REASON);
  };
  for (const ws of targets) {
    if (ws === except || !ws.isOpen) continue;
    const waiting = ws.bufferedAmount + (pending.get(ws) ?? 0);
    // As send() does with maxBufferedAmount: an empty queue takes any one
    // message, so the limit is never passed by more than one message.
    if (waiting > 0 && waiting + size > limit) {
      slow(ws);
      continue;
    }
    if (ws instanceof WebSocketConnection) {
      const outcome = queueFrame(ws, message.frame, size, compress);
      if (outcome === "closed") continue;
      if (outcome === "full") {
        slow(ws);
        continue;
      }
      if (outcome === "queued") {
        sent++;
        continue;
      }
    }
    sendOwn(ws, message, compress);
    sent++;
  }
  return { sent, skipped: skipped ?? NONE, dropped: dropped ?? NONE };
}

// The connection encodes the message itself: it compresses it, or it is not
// a WebSocketConnection (a session of createFetchHandler, a client).
function sendOwn(
  ws: WebSocketSession,
  message: Message,
  compress: boolean,
): void {
  const payload = message.ownPayload;
  const size = payload.length;
  pending.set(ws, (pending.get(ws) ?? 0) + size);
  const settle = (): void => {
    const left = (pending.get(ws) ?? 0) - size;
    if (left > 0) pending.set(ws, left);
    else pending.delete(ws);
  };
  let sending: Promise<void>;
  try {
    sending = ws.send(payload, { binary: message.opcode === 0x2, compress });
  } catch {
    // A session that throws instead of rejecting: it is closing.
    settle();
    return;
  }
  // A send that fails (the connection closed meanwhile) is that
  // connection's business: its `closed` tells.
  sending.then(settle, settle);
}

/**
 * Sends one message to every open connection of `connections` (for one,
 * `server.connections` of {@linkcode serve}), without waiting: the message
 * is encoded once, and every connection queues the same frame. A slow
 * consumer (more than `backpressureLimit` bytes waiting) is skipped or
 * dropped, and named in the result. Connections that are closing are left
 * out.
 *
 * @typeParam T The type of the connections.
 * @param connections The connections to send to.
 * @param data The message: a string is text, bytes are binary (unless
 * `options.binary` says otherwise).
 * @param options Slow consumers, compression, the message type, a
 * connection to leave out.
 * @returns How many connections the message was queued for, and the slow
 * consumers skipped or dropped.
 * @throws {TypeError} If `data` is not a string or bytes, or an option has
 * the wrong type.
 * @throws {RangeError} If `backpressureLimit` is not a non-negative integer.
 *
 * @example News for every connection of a server
 * ```ts
 * import { serve } from "@rfc6455/websocket/server";
 * import { broadcast } from "@rfc6455/websocket/broadcast";
 * import assert from "node:assert/strict";
 *
 * const opened = Promise.withResolvers<void>();
 * await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (ws) => {
 *   if (server.connections.size === 2) opened.resolve();
 *   await ws.closed;
 * });
 * const url = `ws://127.0.0.1:${server.addr.port}/`;
 * const clients = [new WebSocket(url), new WebSocket(url)];
 * await opened.promise;
 * const heard = clients.map((ws) => new Promise((resolve) => ws.onmessage = (event) => resolve(event.data)));
 * const result = broadcast(server.connections, "news");
 * assert.deepEqual(result, { sent: 2, skipped: [], dropped: [] });
 * assert.deepEqual(await Promise.all(heard), ["news", "news"]);
 * const closed = clients.map((ws) => new Promise((done) => ws.onclose = done));
 * for (const ws of clients) ws.close();
 * await Promise.all(closed);
 * ```
 */
export function broadcast<T extends WebSocketSession>(
  connections: Iterable<T>,
  data: WebSocketData,
  options: BroadcastOptions<T> = {},
): BroadcastResult<T> {
  const action = "broadcast message";
  const settings = settingsOf(options, action);
  const message = new Message(data, options.binary, action);
  return deliver(connections, message, settings, options.except);
}

/**
 * Named topics that connections subscribe to, and publishing to them, as
 * {@linkcode broadcast} does: encoded once, slow consumers skipped or
 * dropped. A connection leaves every topic by itself once closed; a topic
 * without subscribers takes no memory. Works with any
 * {@linkcode WebSocketSession}: the connections of {@linkcode serve}, and
 * those of {@linkcode createFetchHandler} (which encode each message
 * themselves).
 *
 * @typeParam T The type of the connections.
 *
 * @example Publishing to subscribers only
 * ```ts
 * import { serve } from "@rfc6455/websocket/server";
 * import { Topics } from "@rfc6455/websocket/broadcast";
 * import assert from "node:assert/strict";
 *
 * const topics = new Topics({ slowConsumer: "drop" });
 * let subscribed = 0;
 * const ready = Promise.withResolvers<void>();
 * await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (ws, request) => {
 *   topics.subscribe(ws, new URL(request.url).searchParams.get("topic") ?? "");
 *   if (++subscribed === 2) ready.resolve();
 *   await ws.closed;
 * });
 * const port = server.addr.port;
 * const news = new WebSocket(`ws://127.0.0.1:${port}/?topic=news`);
 * const sport = new WebSocket(`ws://127.0.0.1:${port}/?topic=sport`);
 * await ready.promise;
 * const heard = new Promise((resolve) => news.onmessage = (event) => resolve(event.data));
 * sport.onmessage = () => assert.fail("sport is not subscribed to news");
 * assert.equal(topics.publish("news", "extra!").sent, 1);
 * assert.equal(await heard, "extra!");
 * const closed = [news, sport].map((ws) => new Promise((done) => ws.onclose = done));
 * news.close();
 * sport.close();
 * await Promise.all(closed);
 * ```
 */
export class Topics<T extends WebSocketSession = WebSocketSession> {
  readonly #settings: Settings;
  readonly #subscribers = new Map<string, Set<T>>();
  readonly #topicsOf = new Map<T, Set<string>>();
  // The connections whose `closed` makes them leave (once each).
  readonly #watched = new WeakSet<T>();

  /**
   * Makes an empty set of topics.
   *
   * @param options Slow consumers and compression, for every publish.
   * @throws {TypeError} If `slowConsumer` or `compress` has the wrong type.
   * @throws {RangeError} If `backpressureLimit` is not a non-negative
   * integer.
   */
  constructor(options: TopicsOptions = {}) {
    this.#settings = settingsOf(options, "create Topics");
  }

  /**
   * Subscribes `ws` to `topic`, until `unsubscribe()` or until it closes. A
   * connection that is not open is not subscribed.
   *
   * @param ws The connection.
   * @param topic Any string.
   * @returns Whether it was subscribed now (false: it was already, or it is
   * not open).
   * @throws {TypeError} If `ws` is not a connection or `topic` not a string.
   */
  subscribe(ws: T, topic: string): boolean {
    checkArguments(ws, topic, "subscribe");
    if (!ws.isOpen) return false;
    let subscribers = this.#subscribers.get(topic);
    if (subscribers?.has(ws)) return false;
    if (subscribers === undefined) {
      subscribers = new Set();
      this.#subscribers.set(topic, subscribers);
    }
    subscribers.add(ws);
    let topics = this.#topicsOf.get(ws);
    if (topics === undefined) {
      topics = new Set();
      this.#topicsOf.set(ws, topics);
    }
    topics.add(topic);
    if (!this.#watched.has(ws)) {
      this.#watched.add(ws);
      const leave = () => this.#leaveAll(ws);
      ws.closed.then(leave, leave);
    }
    return true;
  }

  /**
   * Unsubscribes `ws` from `topic`.
   *
   * @param ws The connection.
   * @param topic The topic.
   * @returns Whether it was subscribed.
   * @throws {TypeError} If `ws` is not a connection or `topic` not a string.
   */
  unsubscribe(ws: T, topic: string): boolean {
    checkArguments(ws, topic, "unsubscribe");
    const topics = this.#topicsOf.get(ws);
    if (topics === undefined || !topics.delete(topic)) return false;
    if (topics.size === 0) this.#topicsOf.delete(ws);
    this.#leave(ws, topic);
    return true;
  }

  /**
   * Whether `ws` is subscribed to `topic`.
   *
   * @param ws The connection.
   * @param topic The topic.
   * @returns Whether it is subscribed.
   */
  isSubscribed(ws: T, topic: string): boolean {
    return this.#topicsOf.get(ws)?.has(topic) ?? false;
  }

  /**
   * The topics `ws` is subscribed to.
   *
   * @param ws The connection.
   * @returns Its topics, in the order it subscribed.
   */
  subscriptions(ws: T): string[] {
    return [...this.#topicsOf.get(ws) ?? []];
  }

  /**
   * The number of connections subscribed to `topic`.
   *
   * @param topic The topic.
   * @returns Its subscribers (0 for a topic nobody subscribed to).
   */
  subscriberCount(topic: string): number {
    return this.#subscribers.get(topic)?.size ?? 0;
  }

  /**
   * Sends one message to every open subscriber of `topic`, without waiting,
   * as {@linkcode broadcast} does: encoded once, slow consumers skipped or
   * dropped (a dropped one leaves its topics once closed).
   *
   * @param topic The topic.
   * @param data The message: a string is text, bytes are binary (unless
   * `options.binary` says otherwise).
   * @param options The message type, compression, a connection to leave
   * out.
   * @returns How many subscribers the message was queued for, and the slow
   * consumers skipped or dropped.
   * @throws {TypeError} If `topic` is not a string, `data` not a string or
   * bytes, or an option has the wrong type.
   */
  publish(
    topic: string,
    data: WebSocketData,
    options: PublishOptions<T> = {},
  ): BroadcastResult<T> {
    const action = "publish message";
    if (typeof topic !== "string") {
      throw new TypeError(
        `Cannot ${action}: topic is ${describe(topic)}, expected a string`,
      );
    }
    const message = new Message(data, options.binary, action);
    checkBoolean(options.compress, "compress", action);
    const subscribers = this.#subscribers.get(topic);
    if (subscribers === undefined) {
      return { sent: 0, skipped: NONE, dropped: NONE };
    }
    const settings = options.compress === undefined
      ? this.#settings
      : { ...this.#settings, compress: options.compress };
    return deliver(subscribers, message, settings, options.except);
  }

  #leave(ws: T, topic: string): void {
    const subscribers = this.#subscribers.get(topic);
    if (subscribers === undefined) return;
    subscribers.delete(ws);
    if (subscribers.size === 0) this.#subscribers.delete(topic);
  }

  #leaveAll(ws: T): void {
    this.#watched.delete(ws);
    const topics = this.#topicsOf.get(ws);
    if (topics === undefined) return;
    this.#topicsOf.delete(ws);
    for (const topic of topics) this.#leave(ws, topic);
  }
}

function checkArguments(ws: unknown, topic: unknown, action: string): void {
  if (
    typeof ws !== "object" || ws === null ||
    typeof (ws as Partial<WebSocketSession>).send !== "function" ||
    !((ws as Partial<WebSocketSession>).closed instanceof Promise)
  ) {
    throw new TypeError(
      `Cannot ${action}: connection is ${
        ws === null ? "null" : typeof ws
      }, expected a WebSocketSession`,
    );
  }
  if (typeof topic !== "string") {
    throw new TypeError(
      `Cannot ${action}: topic is ${describe(topic)}, expected a string`,
    );
  }
}
