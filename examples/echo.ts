// Copyright 2026 the @rfc6455/websocket authors. MIT license.
/**
 * The echo service: echoes every message with its type, on any path and
 * query string. Run it with `deno task echo` (see README.md for the flags).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { serve } from "../server.ts";
import { echoHandler } from "./echo_handler.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    hostname: { type: "string", default: "0.0.0.0" },
    port: { type: "string", default: "8080" },
    cert: { type: "string" },
    key: { type: "string" },
    "max-message-size": { type: "string" },
    "no-deflate": { type: "boolean", default: false },
    help: { type: "boolean", short: "h" },
  },
  strict: true,
});

if (values.help) {
  // deno-lint-ignore no-console
  console.log(
    "Usage: deno task echo [--hostname 0.0.0.0] [--port 8080] [--cert FILE --key FILE] [--max-message-size BYTES] [--no-deflate]",
  );
  Deno.exit(0);
}

function integer(name: string, text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0) {
    // deno-lint-ignore no-console
    console.error(
      `echo: --${name} must be a non-negative integer, got "${text}"`,
    );
    Deno.exit(2);
  }
  return value;
}

if ((values.cert === undefined) !== (values.key === undefined)) {
  // deno-lint-ignore no-console
  console.error("echo: --cert and --key go together");
  Deno.exit(2);
}
const tls = values.cert !== undefined && values.key !== undefined;
const server = serve({
  hostname: values.hostname,
  port: integer("port", values.port),
  ...(tls
    ? {
      cert: await Deno.readTextFile(values.cert!),
      key: await Deno.readTextFile(values.key!),
    }
    : {}),
  ...(values["max-message-size"] === undefined ? {} : {
    maxMessageSize: integer("max-message-size", values["max-message-size"]),
  }),
  deflate: !values["no-deflate"],
  // An echo holds no secrets and uses no cookies: any page may use it.
  insecureSkipOriginCheck: true,
  // Browsers fail a connection whose offered subprotocol is not selected,
  // so accept the first one offered.
  protocols: (offered) => offered[0],
  onListen: ({ hostname, port }) => {
    // deno-lint-ignore no-console
    console.log(`listening on ${tls ? "wss" : "ws"}://${hostname}:${port}`);
  },
}, echoHandler);

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => {
    void server.shutdown().then(() => Deno.exit(0));
  });
}
await server.finished;
