// Copyright 2026 the @rfc6455/websocket authors. MIT license.
// Runs Python `websockets` peers for the interop tests. They use Debian's
// `python3-websockets` (10.4 on Debian 12), installed for /usr/bin/python3
// only: the `python3` first on PATH may be another one without it.

/** The interpreter that has Debian's `websockets`. */
export const PYTHON = "/usr/bin/python3";

const decoder = new TextDecoder();

function probe(): string | undefined {
  try {
    const output = new Deno.Command(PYTHON, {
      args: ["-c", "import websockets; print(websockets.__version__)"],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    return output.success ? decoder.decode(output.stdout).trim() : undefined;
  } catch {
    return undefined; // no /usr/bin/python3 at all
  }
}

/** The version of Python's `websockets`, or `undefined` when it is missing. */
export const pythonWebsockets: string | undefined = probe();

/**
 * A running Python script: its stdout as lines, its stderr kept for error
 * messages. Disposing kills it if it still runs and waits for it.
 */
export class PythonPeer implements AsyncDisposable {
  readonly #child: Deno.ChildProcess;
  readonly #lines: ReadableStreamDefaultReader<string>;
  readonly #stderr: Promise<string>;
  #buffer = "";
  #exited = false;

  constructor(script: string, args: string[] = []) {
    this.#child = new Deno.Command(PYTHON, {
      args: ["-c", script, ...args],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#lines = this.#child.stdout.pipeThrough(new TextDecoderStream())
      .getReader();
    this.#stderr = new Response(this.#child.stderr).text();
    this.#child.status.then(() => this.#exited = true);
  }

  /** The next line of stdout; rejects with the stderr if the script ended. */
  async readLine(): Promise<string> {
    while (true) {
      const end = this.#buffer.indexOf("\n");
      if (end !== -1) {
        const line = this.#buffer.slice(0, end);
        this.#buffer = this.#buffer.slice(end + 1);
        return line;
      }
      const { value, done } = await this.#lines.read();
      if (done) {
        const status = await this.#child.status;
        throw new Error(
          `Python peer ended with code ${status.code} before a line: ${await this
            .#stderr}`,
        );
      }
      this.#buffer += value;
    }
  }

  /** Waits for the script to exit and returns its exit code. */
  async exitCode(): Promise<number> {
    return (await this.#child.status).code;
  }

  /** The stderr of the script, once it has ended. */
  stderr(): Promise<string> {
    return this.#stderr;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (!this.#exited) {
      try {
        this.#child.kill("SIGKILL");
      } catch {
        // It exited meanwhile.
      }
    }
    await this.#child.status;
    await this.#lines.cancel().catch(() => {});
    await this.#stderr.catch(() => "");
  }
}

/**
 * An echo server: prints its port, then for each connection a JSON line with
 * the `Sec-WebSocket-Extensions` of its answer. argv[1] is a JSON object of
 * `ServerPerMessageDeflateFactory` arguments, `null` for the library's
 * default compression, or `"off"` for none.
 */
export const PYTHON_ECHO_SERVER = `
import asyncio, json, sys, websockets
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory

config = json.loads(sys.argv[1])
kwargs = {}
if config == "off":
    kwargs["compression"] = None
elif config is not None:
    kwargs["extensions"] = [ServerPerMessageDeflateFactory(**config)]

async def handler(ws, path=None):
    print(json.dumps(ws.response_headers.get("Sec-WebSocket-Extensions")), flush=True)
    async for message in ws:
        await ws.send(message)

async def main():
    async with websockets.serve(handler, "127.0.0.1", 0, max_size=None, **kwargs) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()

asyncio.run(main())
`;

/**
 * A client that echoes test messages through a server and prints one JSON
 * line: the `Sec-WebSocket-Extensions` of the answer, the names of the
 * extensions it runs, and whether each echo came back equal. argv[1] is the
 * URL, argv[2] as for the server, with `ClientPerMessageDeflateFactory`.
 */
export const PYTHON_ECHO_CLIENT = `
import asyncio, json, random, sys, websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

url = sys.argv[1]
config = json.loads(sys.argv[2])
kwargs = {}
if config == "off":
    kwargs["compression"] = None
elif config is not None:
    kwargs["extensions"] = [ClientPerMessageDeflateFactory(**config)]

async def main():
    async with websockets.connect(url, max_size=None, **kwargs) as ws:
        text = json.dumps([{"id": i, "name": "user-%d" % i, "tags": ["a", "b"]} for i in range(20000)])
        noise = random.Random(7).randbytes(1 << 20)
        messages = [text, "small", noise, bytes(range(256)) * 4096, "", text]
        echoed = []
        for message in messages:
            await ws.send(message)
            echoed.append(await ws.recv() == message)
        print(json.dumps({
            "extensions": ws.response_headers.get("Sec-WebSocket-Extensions"),
            "running": [extension.name for extension in ws.extensions],
            "echoed": echoed,
        }), flush=True)

asyncio.run(main())
`;
