// Copyright 2026 the @rfc6455/websocket authors. MIT license.
/**
 * The echo client: connects to a URL and echoes every message back with its
 * type until the peer closes. Run it with `deno task echo-client URL`; see
 * README.md for the flags. It prints nothing per message; it exits 0 after a
 * clean close, and 1 with the reason on stderr after a failed handshake or
 * an abnormal close.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { connect } from "../client.ts";

function fail(message: string, code = 1): never {
  // deno-lint-ignore no-console
  console.error(`echo-client: ${message}`);
  Deno.exit(code);
}

const { values, positionals } = parseArgs({
  args: Deno.args,
  options: {
    ca: { type: "string", multiple: true },
    header: { type: "string", multiple: true },
    protocol: { type: "string", multiple: true },
    "max-message-size": { type: "string" },
    "no-deflate": { type: "boolean", default: false },
    help: { type: "boolean", short: "h" },
  },
  allowPositionals: true,
  strict: true,
});

if (values.help || positionals.length !== 1) {
  // deno-lint-ignore no-console
  console.log(
    "Usage: deno task echo-client URL [--ca FILE] [--header 'Name: value']... [--protocol NAME]... [--max-message-size BYTES] [--no-deflate]",
  );
  Deno.exit(values.help ? 0 : 2);
}

const headers: [string, string][] = [];
for (const line of values.header ?? []) {
  const colon = line.indexOf(":");
  if (colon <= 0) fail(`--header must look like "Name: value"`, 2);
  headers.push([line.slice(0, colon).trim(), line.slice(colon + 1).trim()]);
}
let maxMessageSize = 64 * 1024 * 1024;
if (values["max-message-size"] !== undefined) {
  maxMessageSize = Number(values["max-message-size"]);
  if (!Number.isSafeInteger(maxMessageSize) || maxMessageSize < 0) {
    fail("--max-message-size must be a non-negative integer", 2);
  }
}
const caCerts = await Promise.all(
  (values.ca ?? []).map((file) => Deno.readTextFile(file)),
);

let ws;
try {
  ws = await connect(positionals[0]!, {
    headers,
    protocols: values.protocol ?? [],
    maxMessageSize,
    deflate: !values["no-deflate"],
    ...(caCerts.length > 0 ? { caCerts } : {}),
  });
} catch (error) {
  fail(error instanceof Error ? error.message : String(error));
}

try {
  // Views of the read buffer: send() copies each before the next is read.
  for await (const message of ws.messages({ copy: false })) {
    await ws.send(message);
  }
} catch {
  // The close info below says what happened.
}
const { code, reason, wasClean } = await ws.closed;
if (!wasClean) {
  fail(
    `connection closed abnormally with code ${code}${
      reason ? ` "${reason}"` : ""
    }`,
  );
}
Deno.exit(0);
