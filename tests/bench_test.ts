// Copyright 2026 the @rfc6455/websocket authors. MIT license.
// The benchmark tools (bench/client.ts, the `bench-client` task, and
// bench/echo_server.ts) end to end over loopback, with small loads: they
// run, report what they say, and fail loudly on a wrong echo.

import assert from "node:assert/strict";
import { deadline, WAIT } from "./_util.ts";

const SERVER = new URL("../bench/echo_server.ts", import.meta.url).pathname;
const CLIENT = new URL("../bench/client.ts", import.meta.url).pathname;

/** An echo server of bench/echo_server.ts, killed when disposed. */
async function echoServer(
  impl: string,
): Promise<{ port: number } & AsyncDisposable> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", SERVER, "--impl", impl, "--port", "0"],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream())
    .getReader();
  const dispose = async () => {
    try {
      child.kill();
    } catch {
      // Exited already.
    }
    await reader.cancel().catch(() => {});
    await child.status;
  };
  let text = "";
  try {
    while (!text.includes("\n")) {
      const { value, done } = await deadline(reader.read(), "listening line");
      if (done) throw new Error(`echo server ${impl} exited: ${text}`);
      text += value;
    }
  } catch (error) {
    await dispose();
    throw error;
  }
  const match = /^listening (\d+)$/m.exec(text);
  assert.ok(match, `echo server ${impl} printed ${JSON.stringify(text)}`);
  return { port: Number(match[1]), [Symbol.asyncDispose]: dispose };
}

/** Runs bench/client.ts with `args`; its exit code, stdout and stderr. */
async function benchClient(
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", CLIENT, "--timeout", String(WAIT), ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/** The `key=value` fields of the result line. */
function fieldsOf(stdout: string): Record<string, string> {
  const lines = stdout.trim().split("\n");
  assert.equal(lines.length, 1, `one result line, got ${stdout}`);
  return Object.fromEntries(
    lines[0]!.split(" ").map((field) => {
      const at = field.indexOf("=");
      return [field.slice(0, at), field.slice(at + 1)];
    }),
  );
}

Deno.test("bench-client: our client and the built-in one load an echo server and report rates", async (t) => {
  await using server = await echoServer("ours");
  const url = `ws://127.0.0.1:${server.port}/`;
  const cases: [string, string[], string][] = [
    ["ours, binary", ["--size", "1024", "--window", "8"], "ours"],
    ["ours, text", ["--size", "100", "--window", "4", "--text"], "ours"],
    ["ours, 64 KiB", ["--size", "65536", "--window", "4"], "ours"],
    ["ours, copying", ["--size", "1024", "--window", "8", "--copy"], "ours"],
    [
      "ours, 3 connections",
      ["--size", "64", "--window", "2", "--connections", "3"],
      "ours",
    ],
    ["built-in", ["--size", "1024", "--window", "8", "--builtin"], "builtin"],
  ];
  for (const [name, args, client] of cases) {
    await t.step(name, async () => {
      const count = 200;
      const { code, stdout, stderr } = await benchClient([
        "--url",
        url,
        "--count",
        String(count),
        ...args,
      ]);
      assert.equal(code, 0, `exit ${code}: ${stderr}`);
      const fields = fieldsOf(stdout);
      assert.equal(fields.client, client);
      assert.equal(fields.count, String(count));
      assert.equal(fields.type, args.includes("--text") ? "text" : "binary");
      const rate = Number(fields["msgs/s"]);
      const cpu = Number(fields.cpu_s);
      const system = Number(fields.system_s);
      assert.ok(rate > 0 && Number.isFinite(rate), `msgs/s=${rate}`);
      assert.ok(cpu > 0 && system >= 0 && system <= cpu, `${cpu}, ${system}`);
      // cpu_s is printed rounded to 0.1 ms, msgs_per_cpu_s to a whole
      // number: with a few ms of CPU the rounding alone is over 1%.
      const perCpu = Number(fields.msgs_per_cpu_s);
      const low = count / (cpu + 0.00005) - 1;
      const high = count / Math.max(cpu - 0.00005, 1e-9) + 1;
      assert.ok(
        perCpu >= low && perCpu <= high,
        `msgs_per_cpu_s=${perCpu} is not count / cpu_s (${count / cpu})`,
      );
      // msgs/s is count over the load's seconds (printed rounded too).
      assert.ok(
        Math.abs(rate - count / Number(fields.seconds)) <= rate * 0.01 + 1,
        `msgs/s=${rate}, seconds=${fields.seconds}`,
      );
    });
  }
});

Deno.test("bench-client: an echo that is not a WebSocket echo fails with exit 1 and a reason", async () => {
  // The raw TCP echo sends the client's masked frames back: a server must
  // not mask (RFC 6455 §5.1), so the connection fails.
  await using server = await echoServer("raw");
  const { code, stdout, stderr } = await benchClient([
    "--url",
    `ws://127.0.0.1:${server.port}/`,
    "--size",
    "100",
    "--count",
    "10",
    "--window",
    "2",
  ]);
  assert.equal(code, 1, `exit ${code}: ${stdout}`);
  assert.match(stderr, /^bench-client: /m);
  assert.doesNotMatch(stdout, /msgs\/s=/);
});

Deno.test("bench-client: bad arguments exit 2 with usage errors", async () => {
  for (
    const [args, message] of [
      [["--size", "1", "--count", "1", "--window", "1"], /--url is required/],
      [
        ["--url", "ws://127.0.0.1:9/", "--size", "0", "--count", "1"],
        /--size must be a positive integer/,
      ],
      [
        [
          "--url",
          "ws://127.0.0.1:9/",
          "--size",
          "1",
          "--count",
          "1",
          "--window",
          "1",
          "--builtin",
          "--raw",
        ],
        /exclude each other/,
      ],
    ] as const
  ) {
    const { code, stderr } = await benchClient([...args]);
    assert.equal(code, 2, `exit ${code} for ${args.join(" ")}: ${stderr}`);
    assert.match(stderr, message);
  }
});

Deno.test("bench:echo: an unknown --only part fails before any load starts", async () => {
  const bench = new URL("../bench/echo_bench.ts", import.meta.url).pathname;
  const { code, stdout, stderr } = await deadline(
    new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", bench, "--only", "both"],
      stdout: "piped",
      stderr: "piped",
    }).output(),
    "bench:echo --only both",
  );
  assert.equal(code, 1);
  assert.match(new TextDecoder().decode(stderr), /--only must be/);
  assert.equal(new TextDecoder().decode(stdout), "");
});
