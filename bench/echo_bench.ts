// Copyright 2026 the @rfc6455/websocket authors. MIT license.
/**
 * The echo benchmark: `deno task bench:echo [--quick] [--reps N] [--seconds S]
 * [--only servers|clients]` (`--only` runs one of the two parts below).
 *
 * Part 1, servers: our `serve()` (twice: with the echo service's handler,
 * which takes binary messages as views with `messages({ copy: false })`, and
 * with `for await (const m of ws)`, which copies each), Deno's built-in
 * `Deno.serve` + `Deno.upgradeWebSocket`, and a raw TCP echo (the ceiling, loaded with the
 * same bytes by a raw TCP client), each in its own process
 * (`bench/echo_server.ts`), loaded by our client in another process
 * (`bench/client.ts`), for 64 B, 1 KiB and 64 KiB binary messages, on
 * 1 connection with 64 messages in flight and on 100 connections with 8 in
 * flight each. The server's CPU time is read from `/proc/<pid>/stat`
 * (utime + stime) right before and right after the load, handshakes and
 * closes excluded; a second table splits it per message into user space
 * (utime) and the kernel (stime), which shows what a server spends beyond
 * the socket's own cost.
 *
 * Part 2, clients: our `connect()` (views, and copying) against Deno's
 * built-in `WebSocket` through the same server (our `serve()`), in messages per CLIENT
 * CPU-second (`process.cpuUsage()` in the client), and each client's CPU per
 * message split into user space and the kernel.
 *
 * Runs are interleaved (ours, builtin, raw, ours, builtin, raw, ...) and
 * every figure is the median of the repetitions; the ratios are ratios of
 * medians measured in this one run, so that the noise of a shared machine
 * hits both sides alike. The message counts are calibrated by a warm-up run
 * of each scenario so that one run lasts about `--seconds`.
 *
 * @module
 */

import { parseArgs } from "node:util";

const SERVER = new URL("./echo_server.ts", import.meta.url).pathname;
const CLIENT = new URL("./client.ts", import.meta.url).pathname;

type ServerImpl = "ours" | "ours-copy" | "builtin" | "raw";
type ClientImpl = "ours" | "ours-copy" | "builtin" | "raw";

interface Scenario {
  size: number;
  connections: number;
  window: number;
}

/** One load, as the client reported it, plus the server's CPU time. */
interface Sample {
  count: number;
  seconds: number;
  rate: number;
  clientCpu: number;
  /** The part of clientCpu spent in the kernel (system time). */
  clientSystem: number;
  serverCpu: number;
  /** The part of serverCpu spent in the kernel (system time). */
  serverSystem: number;
}

interface Server {
  impl: ServerImpl;
  child: Deno.ChildProcess;
  port: number;
}

const children = new Set<Deno.ChildProcess>();
const encoder = new TextEncoder();

function log(message: string): void {
  // deno-lint-ignore no-console
  console.log(message);
}

function progress(message: string): void {
  // deno-lint-ignore no-console
  console.error(message);
}

async function clockTicks(): Promise<number> {
  try {
    const { stdout, success } = await new Deno.Command("getconf", {
      args: ["CLK_TCK"],
      stdout: "piped",
      stderr: "null",
    }).output();
    const ticks = Number(new TextDecoder().decode(stdout).trim());
    if (success && Number.isFinite(ticks) && ticks > 0) return ticks;
  } catch {
    // No getconf: Linux uses 100 everywhere that matters.
  }
  return 100;
}

/** CPU seconds of a process, all its threads: in user space and in the kernel. */
interface Cpu {
  user: number;
  system: number;
}

// The user and system CPU seconds of a process, all its threads.
function processCpu(pid: number, ticks: number): Cpu {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // The command name (field 2) may hold spaces; fields restart after ")".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15, i.e. 11 and 12 after field 3.
  return {
    user: Number(fields[11]) / ticks,
    system: Number(fields[12]) / ticks,
  };
}

// Reads a child's stdout line by line.
class Lines {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #decoder = new TextDecoder();
  #text = "";

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.getReader();
  }

  async next(what: string): Promise<string> {
    while (true) {
      const newline = this.#text.indexOf("\n");
      if (newline >= 0) {
        const line = this.#text.slice(0, newline);
        this.#text = this.#text.slice(newline + 1);
        return line;
      }
      const { value, done } = await this.#reader.read();
      if (done) throw new Error(`${what}: output ended early`);
      this.#text += this.#decoder.decode(value, { stream: true });
    }
  }

  async drain(): Promise<void> {
    try {
      while (!(await this.#reader.read()).done) {
        // Discard.
      }
    } catch {
      // The child is gone.
    }
  }
}

async function kill(child: Deno.ChildProcess): Promise<void> {
  if (!children.has(child)) return;
  children.delete(child);
  try {
    child.kill("SIGKILL");
  } catch {
    // Exited already.
  }
  await child.status;
}

function withTimeout<T>(
  promise: Promise<T>,
  ms: number,
  what: string,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${what}: no answer within ${ms} ms`)),
        ms,
      );
    }),
  ]).finally(() => clearTimeout(timer));
}

async function startServer(impl: ServerImpl): Promise<Server> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", SERVER, "--impl", impl, "--port", "0"],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  children.add(child);
  const lines = new Lines(child.stdout);
  const line = await withTimeout(
    lines.next(`server ${impl}`),
    30_000,
    `server ${impl}`,
  );
  const match = /^listening (\d+)$/.exec(line);
  if (match === null) {
    throw new Error(`server ${impl}: expected "listening PORT", got "${line}"`);
  }
  void lines.drain();
  return { impl, child, port: Number(match[1]) };
}

function parseResult(line: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const pair of line.split(" ")) {
    const equals = pair.indexOf("=");
    if (equals > 0) fields[pair.slice(0, equals)] = pair.slice(equals + 1);
  }
  return fields;
}

// Runs one load in a client process; the server's CPU is sampled between
// the client's "connected" and its result line (see client.ts --sync).
async function runClient(
  server: Server,
  client: ClientImpl,
  scenario: Scenario,
  count: number,
  ticks: number,
): Promise<Sample> {
  const url = client === "raw"
    ? `tcp://127.0.0.1:${server.port}`
    : `ws://127.0.0.1:${server.port}/`;
  const args = [
    "run",
    "--allow-all",
    CLIENT,
    "--url",
    url,
    "--size",
    String(scenario.size),
    "--count",
    String(count),
    "--window",
    String(scenario.window),
    "--connections",
    String(scenario.connections),
    "--sync",
    "--timeout",
    "60000",
  ];
  if (client === "ours-copy") args.push("--copy");
  else if (client !== "ours") args.push(`--${client}`);
  const child = new Deno.Command(Deno.execPath(), {
    args,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  children.add(child);
  const stderr = new Response(child.stderr).text();
  const what = `client ${client} on server ${server.impl}`;
  const writer = child.stdin.getWriter();
  const lines = new Lines(child.stdout);
  try {
    const ready = await withTimeout(lines.next(what), 60_000, what);
    if (ready !== "connected") {
      throw new Error(`${what}: expected "connected", got "${ready}"`);
    }
    const before = processCpu(server.child.pid, ticks);
    await writer.write(encoder.encode("go\n"));
    const line = await withTimeout(lines.next(what), 90_000, what);
    const after = processCpu(server.child.pid, ticks);
    await writer.write(encoder.encode("close\n"));
    await writer.close();
    const status = await withTimeout(child.status, 30_000, what);
    children.delete(child);
    if (!status.success) {
      throw new Error(`${what} failed (${status.code}): ${await stderr}`);
    }
    const fields = parseResult(line);
    const seconds = Number(fields.seconds);
    const clientCpu = Number(fields.cpu_s);
    const clientSystem = Number(fields.system_s);
    if (
      !Number.isFinite(seconds) || !Number.isFinite(clientCpu) ||
      !Number.isFinite(clientSystem)
    ) {
      throw new Error(`${what}: cannot read result line "${line}"`);
    }
    return {
      count,
      seconds,
      rate: count / seconds,
      clientCpu,
      clientSystem,
      serverCpu: after.user + after.system - before.user - before.system,
      serverSystem: after.system - before.system,
    };
  } catch (error) {
    await kill(child);
    const text = (await stderr).trim();
    if (text !== "") progress(text);
    throw error;
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? sorted[middle]!
    : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

interface Summary {
  rate: number;
  perServerCpu: number;
  perClientCpu: number;
  clientLoad: number;
  serverLoad: number;
  /** Server CPU per message, in microseconds: in user space, in the kernel. */
  serverUserUs: number;
  serverKernelUs: number;
  /** Client CPU per message, in microseconds: in user space, in the kernel. */
  clientUserUs: number;
  clientKernelUs: number;
}

function summarize(samples: Sample[]): Summary {
  return {
    rate: median(samples.map((s) => s.rate)),
    // A CPU time under one clock tick reads as 0; count it as half a tick.
    perServerCpu: median(
      samples.map((s) => s.count / Math.max(s.serverCpu, 0.005)),
    ),
    perClientCpu: median(
      samples.map((s) => s.count / Math.max(s.clientCpu, 0.0005)),
    ),
    clientLoad: median(samples.map((s) => s.clientCpu / s.seconds)),
    serverLoad: median(samples.map((s) => s.serverCpu / s.seconds)),
    serverUserUs: median(
      samples.map((s) => (s.serverCpu - s.serverSystem) / s.count * 1e6),
    ),
    serverKernelUs: median(samples.map((s) => s.serverSystem / s.count * 1e6)),
    clientUserUs: median(
      samples.map((s) => (s.clientCpu - s.clientSystem) / s.count * 1e6),
    ),
    clientKernelUs: median(samples.map((s) => s.clientSystem / s.count * 1e6)),
  };
}

function sizeName(size: number): string {
  return size >= 1024 ? `${size / 1024} KiB` : `${size} B`;
}

function count(value: number): string {
  if (value >= 10_000_000) return `${(value / 1e6).toFixed(1)}M`;
  if (value >= 100_000) return `${(value / 1e3).toFixed(0)}k`;
  if (value >= 10_000) return `${(value / 1e3).toFixed(1)}k`;
  return value.toFixed(0);
}

function percent(value: number): string {
  return `${(value * 100).toFixed(0)}%`;
}

function userKernel(user: number, kernel: number): string {
  const digits = user + kernel < 10 ? 2 : 1;
  return `${user.toFixed(digits)} / ${kernel.toFixed(digits)}`;
}

function micros(summary: Summary): string {
  return userKernel(summary.serverUserUs, summary.serverKernelUs);
}

function clientMicros(summary: Summary): string {
  return userKernel(summary.clientUserUs, summary.clientKernelUs);
}

function ratio(a: number, b: number): string {
  return `${(a / b).toFixed(2)}x`;
}

function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) =>
    Math.max(h.length, ...rows.map((row) => row[i]!.length))
  );
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  return [
    line(head),
    `| ${widths.map((w) => "-".repeat(w)).join(" | ")} |`,
    ...rows.map(line),
  ].join("\n");
}

// The number of messages that makes a run last about `seconds`, from the
// rate of a warm-up run; at least enough to fill every window a few times.
function countFor(scenario: Scenario, rate: number, seconds: number): number {
  const least = scenario.connections * scenario.window * 4;
  return Math.max(least, Math.round(rate * seconds / 100) * 100);
}

function warmupCount(scenario: Scenario): number {
  const bytes = 8 * 1024 * 1024;
  return Math.max(
    scenario.connections * scenario.window * 2,
    Math.min(20_000, Math.floor(bytes / scenario.size)),
  );
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      quick: { type: "boolean", default: false },
      reps: { type: "string" },
      seconds: { type: "string" },
      only: { type: "string" },
    },
    strict: true,
  });
  const only = values.only ?? "";
  if (only !== "" && only !== "servers" && only !== "clients") {
    throw new TypeError(`--only must be "servers" or "clients"`);
  }
  const quick = values.quick;
  const reps = Number(values.reps ?? (quick ? 3 : 5));
  const seconds = Number(values.seconds ?? (quick ? 0.15 : 0.5));
  if (!Number.isSafeInteger(reps) || reps < 1) {
    throw new TypeError(`--reps must be a positive integer`);
  }
  if (!(seconds > 0)) throw new TypeError(`--seconds must be positive`);
  const started = performance.now();
  const ticks = await clockTicks();
  const sizes = [64, 1024, 64 * 1024];
  const shapes = [
    { connections: 1, window: 64 },
    { connections: 100, window: 8 },
  ];
  const servers = await Promise.all(
    (["ours", "ours-copy", "builtin", "raw"] as const).map(startServer),
  );
  const [ours, oursCopy, builtin, raw] = servers as [
    Server,
    Server,
    Server,
    Server,
  ];

  log(
    `# Echo benchmark (${
      quick ? "quick, " : ""
    }median of ${reps}, ~${seconds} s per run, Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} CPUs, CLK_TCK ${ticks})`,
  );
  log("");
  if (only !== "clients") {
    log(
      "## Servers, loaded by our client: msgs/s and msgs per server CPU-second",
    );
    log("");
    const serverRows: string[][] = [];
    const splitRows: string[][] = [];
    for (const size of sizes) {
      for (const shape of shapes) {
        const scenario = { size, ...shape };
        const name = `${sizeName(size)}, ${shape.connections}x${shape.window}`;
        progress(`servers: ${name}`);
        const warm = warmupCount(scenario);
        const warmOurs = await runClient(ours, "ours", scenario, warm, ticks);
        const warmBuiltin = await runClient(
          builtin,
          "ours",
          scenario,
          warm,
          ticks,
        );
        const warmRaw = await runClient(raw, "raw", scenario, warm, ticks);
        const n = countFor(
          scenario,
          Math.min(warmOurs.rate, warmBuiltin.rate),
          seconds,
        );
        const nRaw = countFor(scenario, warmRaw.rate, seconds / 2);
        const samples: Record<ServerImpl, Sample[]> = {
          ours: [],
          "ours-copy": [],
          builtin: [],
          raw: [],
        };
        for (let rep = 0; rep < reps; rep++) {
          // Alternate who goes first, so none always runs after another.
          const order = rep % 2 === 0
            ? [ours, oursCopy, builtin]
            : [builtin, oursCopy, ours];
          for (const server of order) {
            samples[server.impl].push(
              await runClient(server, "ours", scenario, n, ticks),
            );
          }
          samples.raw.push(await runClient(raw, "raw", scenario, nRaw, ticks));
        }
        const o = summarize(samples.ours);
        const c = summarize(samples["ours-copy"]);
        const b = summarize(samples.builtin);
        const r = summarize(samples.raw);
        serverRows.push([
          sizeName(size),
          `${shape.connections}x${shape.window}`,
          count(n),
          count(o.rate),
          count(b.rate),
          ratio(o.rate, b.rate),
          count(o.perServerCpu),
          count(b.perServerCpu),
          `**${ratio(o.perServerCpu, b.perServerCpu)}**`,
          ratio(c.perServerCpu, b.perServerCpu),
          `${percent(o.serverLoad)} / ${percent(b.serverLoad)}`,
          `${percent(o.clientLoad)} / ${percent(b.clientLoad)}`,
          count(r.rate),
          count(r.perServerCpu),
        ]);
        splitRows.push([
          sizeName(size),
          `${shape.connections}x${shape.window}`,
          micros(o),
          micros(c),
          micros(b),
          micros(r),
        ]);
      }
    }
    log(table([
      "size",
      "conns x window",
      "msgs/run",
      "ours msgs/s",
      "builtin msgs/s",
      "ours/builtin msgs/s",
      "ours msgs/srv-cpu-s",
      "builtin msgs/srv-cpu-s",
      "ours/builtin msgs/srv-cpu-s",
      "ours copying/builtin msgs/srv-cpu-s",
      "server CPU ours / builtin",
      "client CPU ours / builtin",
      "raw TCP msgs/s",
      "raw TCP msgs/srv-cpu-s",
    ], serverRows));
    log("");
    log(
      "ours: the echo service's handler, each binary message a view of the read buffer (messages({ copy: false })); ours copying: `for await (const m of ws)`, an array per message, as the built-in gives. server CPU and client CPU: CPU seconds per wall second during the load (100% = one core); a client near 100% is the bottleneck of msgs/s.",
    );
    log("");
    log(
      "## Server CPU per message: user / kernel microseconds",
    );
    log("");
    log(table([
      "size",
      "conns x window",
      "ours",
      "ours copying",
      "builtin",
      "raw TCP",
    ], splitRows));
    log("");
    log(
      "From utime and stime in /proc/<pid>/stat over the same loads (medians; a clock tick is 1/CLK_TCK s, so short loads read coarsely). The kernel's part is the socket reads and writes (their copies, TCP), which every server pays; fewer, larger writes make it smaller. The raw TCP echo touches no byte in user space, while a WebSocket server unmasks every byte it receives and copies it into the frames it sends.",
    );
    log("");
  }
  if (only !== "servers") {
    log(
      "## Clients, through our serve(): msgs/s and msgs per client CPU-second (1 connection, 64 in flight)",
    );
    log("");
    const clientRows: string[][] = [];
    const clientSplitRows: string[][] = [];
    for (const size of sizes) {
      const scenario = { size, connections: 1, window: 64 };
      progress(`clients: ${sizeName(size)}`);
      const warm = warmupCount(scenario);
      const warmOurs = await runClient(ours, "ours", scenario, warm, ticks);
      const warmBuiltin = await runClient(
        ours,
        "builtin",
        scenario,
        warm,
        ticks,
      );
      const n = countFor(
        scenario,
        Math.min(warmOurs.rate, warmBuiltin.rate),
        seconds,
      );
      const samples: Record<"ours" | "ours-copy" | "builtin", Sample[]> = {
        ours: [],
        "ours-copy": [],
        builtin: [],
      };
      for (let rep = 0; rep < reps; rep++) {
        const order = rep % 2 === 0
          ? (["ours", "ours-copy", "builtin"] as const)
          : (["builtin", "ours-copy", "ours"] as const);
        for (const client of order) {
          samples[client].push(
            await runClient(ours, client, scenario, n, ticks),
          );
        }
      }
      const o = summarize(samples.ours);
      const c = summarize(samples["ours-copy"]);
      const b = summarize(samples.builtin);
      clientRows.push([
        sizeName(size),
        count(n),
        count(o.rate),
        count(b.rate),
        ratio(o.rate, b.rate),
        count(o.perClientCpu),
        count(b.perClientCpu),
        `**${ratio(o.perClientCpu, b.perClientCpu)}**`,
        ratio(c.perClientCpu, b.perClientCpu),
        `${percent(o.clientLoad)} / ${percent(b.clientLoad)}`,
        `${percent(o.serverLoad)} / ${percent(b.serverLoad)}`,
      ]);
      clientSplitRows.push([
        sizeName(size),
        clientMicros(o),
        clientMicros(c),
        clientMicros(b),
      ]);
    }
    log(table([
      "size",
      "msgs/run",
      "ours msgs/s",
      "builtin msgs/s",
      "ours/builtin msgs/s",
      "ours msgs/client-cpu-s",
      "builtin msgs/client-cpu-s",
      "ours/builtin msgs/client-cpu-s",
      "ours copying/builtin msgs/client-cpu-s",
      "client CPU ours / builtin",
      "server CPU",
    ], clientRows));
    log("");
    log("## Client CPU per message: user / kernel microseconds");
    log("");
    log(table(["size", "ours", "ours copying", "builtin"], clientSplitRows));
    log("");
    log(
      "From process.cpuUsage() in each client over the same loads (medians). The kernel's part is the socket reads and writes; in user space a client masks every byte it sends.",
    );
    log("");
  }
  log(
    `Total time: ${((performance.now() - started) / 1000).toFixed(0)} s`,
  );
}

async function cleanup(): Promise<void> {
  await Promise.all([...children].map(kill));
}

if (import.meta.main) {
  const onSignal = () => {
    void cleanup().then(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  let code = 0;
  try {
    await main();
  } catch (error) {
    progress(
      `echo_bench: ${error instanceof Error ? error.message : String(error)}`,
    );
    code = 1;
  } finally {
    await cleanup();
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
  Deno.exit(code);
}
